"""Curvature drivers on AlgoPerf batch structures (tests/structural_workloads.py), both
frameworks, dropout on: ogbg's masked per-task sigmoid with an odd graph count, and
fastMRI's MAE, whose GGN is 0 (the Hessian is measured instead)."""
import dataclasses
import math

import jax
import numpy as np
import pytest
import torch

from curvlr.core import amortization, cdat, defaults, interval_median, policy as P
from curvlr.core import workload_support
from curvlr.jax import stepsize as jax_stepsize
from curvlr.pytorch import stepsize as torch_stepsize
import structural_workloads as sw

HP = dataclasses.replace(defaults.HPARAMS, dropout_rate=0.1)
HP_NO_DROPOUT = dataclasses.replace(defaults.HPARAMS, dropout_rate=0.0)
CDAT = P.CDATPolicy(schedule=amortization.EveryK(k=1))
MEDIAN = P.MedianPolicy(interval_median.IntervalMedianConfig(
    step_hint=20, warmup_steps=2, interval=4, window=3))  # a window at steps 2-4


class Recorder:
  def __init__(self):
    self.rows = []

  def append_scalar_metrics(self, metrics, global_step, *args, **kwargs):
    del args, kwargs
    if 'overhead_fraction' in metrics:
      self.rows.append((global_step, dict(metrics)))


def run(framework, kind, policy, steps, size, hparams=HP):
  """-> (measurement rows, final policy state)."""
  if framework == 'jax':
    workload = sw.JaxWorkload(kind)
    params, _ = workload.init_model_fn()
    opt_state = jax_stepsize.init_optimizer_state(workload, policy, hparams)
  else:
    workload = sw.TorchWorkload(kind)
    torch.manual_seed(0)
    params, _ = workload.init_model_fn()
    opt_state = torch_stepsize.init_optimizer_state(workload, params, policy, hparams)
  workload.metrics_logger = Recorder()
  for step in range(steps):
    batch = sw.batch(kind, size, seed=step)
    if framework == 'jax':
      opt_state, params, _ = jax_stepsize.update_params(
          policy, hparams, workload, params, None, batch, jax.random.PRNGKey(step), opt_state,
          step, [])
    else:
      opt_state, params, _ = torch_stepsize.update_params(
          hparams, workload, params, None, sw.torch_batch(batch), None, opt_state, step, [])
  state = (opt_state['policy'].value if framework == 'pytorch'
           else P.decode(policy, bytes(opt_state[0]['policy'])))
  return workload.metrics_logger.rows, state


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
def test_cdat_on_ogbg_batches(framework):
  """Before: (9, 128) targets met a softmax loss ('size of tensor a (128) must match 9')."""
  rows, state = run(framework, 'ogbg', CDAT, 3, size=9)
  assert [s for s, _ in rows] == [0, 1, 2]
  for _, row in rows:
    assert row['g_dot_u'] < 0 < row['u_m_u'] and math.isfinite(row['u_m_u'])
  assert state.rule.lr != CDAT.rule.lr_init  # the curvature set the lr


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
def test_cdat_on_mae_measures_the_hessian(framework):
  """Before: u^T G u = 0 exactly for MAE, and CDAT doubled its lr up to the cap."""
  rows, state = run(framework, 'fastmri', CDAT, 3, size=8)
  assert len(rows) == 3
  assert all(row['u_m_u'] != 0.0 and math.isfinite(row['u_m_u']) for _, row in rows)
  assert cdat.raw_lr(CDAT.rule, state.rule) < 1e3  # with u^T G u = 0 it was sigma * n / eps


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
def test_median_on_mae_applies_a_window(framework):
  rows, state = run(framework, 'fastmri', MEDIAN, 6, size=16)
  assert [s for s, _ in rows] == [2, 3, 4]
  assert all(math.isfinite(row['dGd_1']) and row['dGd_1'] != 0.0 for _, row in rows)
  assert state.rule.applied_count + state.rule.rejected_windows == 1


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
def test_median_refused_on_ogbg_at_init(framework):
  """Before: 'Two-batch measurement needs an even number ... got 9' at step W."""
  with pytest.raises(workload_support.UnsupportedWorkload, match='graph batches'):
    run(framework, 'ogbg', MEDIAN, 0, size=9)


@pytest.mark.parametrize('kind', ['ogbg', 'fastmri'])
def test_frameworks_agree_without_dropout(kind):
  rows_j, _ = run('jax', kind, CDAT, 1, size=9, hparams=HP_NO_DROPOUT)
  rows_t, _ = run('pytorch', kind, CDAT, 1, size=9, hparams=HP_NO_DROPOUT)
  for key in ('g_dot_u', 'u_m_u'):
    assert rows_j[0][1][key] == pytest.approx(rows_t[0][1][key], rel=2e-3), key
