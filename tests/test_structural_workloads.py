"""Curvature drivers on AlgoPerf batch structures (tests/structural_workloads.py), both
frameworks, dropout on: ogbg's graph batches (masked per-task sigmoid, odd graph count,
two-batch halves by graph), fastMRI's MAE, whose GGN is 0 (the Hessian is measured
instead), and librispeech's CTC (tuple inputs and targets with paddings; the GGN's
per-frame softmax Fisher; halves and sub-batches by sequence)."""
import dataclasses
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import torch

from curvlr.core import amortization, cdat, defaults, guards, interval_median, policy as P
from curvlr.jax import stepsize as jax_stepsize
from curvlr.pytorch import stepsize as torch_stepsize
import structural_workloads as sw

ROOT = pathlib.Path(__file__).resolve().parents[1]
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


def run(framework, kind, policy, steps, size, hparams=HP, data_dropout=False,
        batches=None):
  """-> (measurement rows, final policy state). batches: step -> numpy batch (default
  `sw.batch(kind, size, seed=step)`); PyTorch wraps the model in DDP under a process group."""
  batches = batches or (lambda step: sw.batch(kind, size, seed=step))
  if framework == 'jax':
    workload = sw.JaxWorkload(kind)
    params, _ = workload.init_model_fn()
    opt_state = jax_stepsize.init_optimizer_state(workload, policy, hparams)
  else:
    workload = sw.TorchWorkload(kind)
    torch.manual_seed(0)
    params, _ = workload.init_model_fn()
    if torch.distributed.is_initialized():
      params = torch.nn.parallel.DistributedDataParallel(params)
    opt_state = torch_stepsize.init_optimizer_state(workload, params, policy, hparams)
  workload.data_dropout = data_dropout
  workload.metrics_logger = Recorder()
  for step in range(steps):
    batch = batches(step)
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


def _assert_window_applied(rows, state):
  """The window's median alpha, bounded, is the lr from its last step on."""
  alphas = [-row['gd_1'] / row['dGd_1'] for _, row in rows]
  config = MEDIAN.rule
  start = interval_median.warmup_end_lr(config)
  assert state.rule.applied_count == 1
  assert state.rule.last_median == pytest.approx(statistics.median(alphas), rel=1e-6)
  assert state.rule.lr == pytest.approx(guards.bounded_lr(
      statistics.median(alphas), start, start, config.lr_max, config.max_growth,
      config.min_lr), rel=1e-12)
  assert rows[-1][1]['lr'] == state.rule.lr != start


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
def test_median_on_ogbg_graph_batches(framework):
  """Before: refused at init ('cannot be split into halves by rows (graph batches)');
  earlier, 'Two-batch measurement needs an even number ... got 9' at step W. Now the
  halves are the batch with its (B, 128) weights masked by graph (odd count, padding)."""
  rows, state = run(framework, 'ogbg', MEDIAN, 6, size=33)
  assert [s for s, _ in rows] == [2, 3, 4]
  for _, row in rows:
    assert row['gd_1'] < 0 < row['dGd_1'] and math.isfinite(row['dGd_1'])
  _assert_window_applied(rows, state)


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
def test_debiased_cdat_on_ogbg_graph_batches(framework):
  """Before: refused at init, as the interval-median."""
  policy = P.CDATPolicy(schedule=amortization.EveryK(k=1), debiased=True)
  rows, state = run(framework, 'ogbg', policy, 3, size=9)
  assert [s for s, _ in rows] == [0, 1, 2]
  for _, row in rows:
    assert row['gd_1'] < 0 < row['dGd_1'] and math.isfinite(row['cdat_raw_lr'])
  assert state.rule.lr != policy.rule.lr_init


def test_graph_halves_agree_across_frameworks():
  """Same params, batch, direction and dropout masks (drawn from the batch): the
  interval-median's two-batch scalars and lr agree between PyTorch and JAX."""
  rows = {}
  for framework in ('jax', 'pytorch'):
    rows[framework], state = run(framework, 'ogbg', MEDIAN, 5, size=33, data_dropout=True)
    _assert_window_applied(rows[framework], state)
  for (step_j, row_j), (step_t, row_t) in zip(rows['jax'], rows['pytorch']):
    assert step_j == step_t
    for key in ('gd_1', 'dGd_1', 'lr'):
      assert row_j[key] == pytest.approx(row_t[key], rel=2e-3), (step_j, key)


@pytest.mark.parametrize('kind', ['ogbg', 'fastmri', 'librispeech_conformer'])
def test_frameworks_agree_without_dropout(kind):
  rows_j, _ = run('jax', kind, CDAT, 1, size=9, hparams=HP_NO_DROPOUT)
  rows_t, _ = run('pytorch', kind, CDAT, 1, size=9, hparams=HP_NO_DROPOUT)
  for key in ('g_dot_u', 'u_m_u'):
    assert rows_j[0][1][key] == pytest.approx(rows_t[0][1][key], rel=2e-3), key


CTC = 'librispeech_conformer'


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
def test_median_on_ctc_sequence_batches(framework):
  """Before: refused at init ('the CTC output Hessian is indefinite'). Now the halves are
  the sequences at even and odd positions of the tuple leaves, d^T G d the Fisher form."""
  rows, state = run(framework, CTC, MEDIAN, 6, size=8)
  assert [s for s, _ in rows] == [2, 3, 4]
  for _, row in rows:
    assert row['gd_1'] < 0 < row['dGd_1'] and math.isfinite(row['dGd_1'])
  _assert_window_applied(rows, state)


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
@pytest.mark.parametrize('policy', [
    P.CDATPolicy(schedule=amortization.EveryK(k=1), debiased=True),
    P.CDATPolicy(schedule=amortization.EveryK(k=1, measure_fraction=0.5))],
    ids=['debiased', 'sub_batch'])
def test_cdat_on_ctc_sequence_batches(framework, policy):
  """Before: both refused at init (no halves; no sub-batch of tuple batches)."""
  rows, state = run(framework, CTC, policy, 3, size=8)
  assert [s for s, _ in rows] == [0, 1, 2]
  for _, row in rows:
    assert row['u_m_u' if 'u_m_u' in row else 'dGd_1'] > 0
    assert math.isfinite(row['cdat_raw_lr'])
  assert state.rule.lr != policy.rule.lr_init


def test_ctc_halves_agree_across_frameworks():
  """Same params, batch, direction and dropout masks (drawn from the batch): the
  interval-median's scalars and lr on CTC agree between PyTorch and JAX."""
  rows = {}
  for framework in ('jax', 'pytorch'):
    rows[framework], state = run(framework, CTC, MEDIAN, 5, size=8, data_dropout=True)
    _assert_window_applied(rows[framework], state)
  for (step_j, row_j), (step_t, row_t) in zip(rows['jax'], rows['pytorch']):
    assert step_j == step_t
    for key in ('gd_1', 'dGd_1', 'lr'):
      assert row_j[key] == pytest.approx(row_t[key], rel=2e-3), (step_j, key)


def _two_batch_and_full(framework, batch, kind='ogbg'):
  """-> ((loss, grad norm) of a two-batch step, the same of a plain step, measurement)."""
  if framework == 'jax':
    from curvlr.jax import train_step
    workload = sw.JaxWorkload(kind)
    params, _ = workload.init_model_fn()
    state, update_fn = jax_stepsize.init_optimizer_state(workload, MEDIAN, HP_NO_DROPOUT)
    rng = jax.random.PRNGKey(0)
    _, _, _, loss, norm, scalars = jax_stepsize._two_batch_step(
        workload, HP_NO_DROPOUT, update_fn, False, None, state['nadam'], params, batch, rng)
    (full, _), grads = train_step.loss_and_grad(workload, params, None, batch, rng, 0.0, 0.0)
    return (float(loss), float(norm)), (float(full), float(train_step.global_norm(grads))), \
        np.asarray(scalars)[:2]
  from curvlr.pytorch import train_step
  workload = sw.TorchWorkload(kind)
  model, _ = workload.init_model_fn()
  optimizer = torch_stepsize.init_optimizer_state(workload, model, MEDIAN,
                                                  HP_NO_DROPOUT)['optimizer']
  batch = sw.torch_batch(batch)
  loss, _, measurement = torch_stepsize._two_batch_step(
      workload, model, None, batch, None, optimizer, HP_NO_DROPOUT, False)
  norm = float(train_step.grad_norm(model))
  full, _ = train_step.loss_and_grad(workload, model, None, batch, None, dropout_rate=0.0)
  return (float(loss), norm), (float(full), float(train_step.grad_norm(model))), \
      np.asarray(measurement[:2])


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
@pytest.mark.parametrize('empty_half', [False, True])
def test_graph_halves_rebuild_the_batch_gradient(framework, empty_half):
  """The halves' weight-sum mix is the whole batch's loss and gradient; a half without
  valid graphs adds nothing (its measurement is NaN, which the rules drop)."""
  batch = sw.batch('ogbg', 9, seed=3)
  if empty_half:
    batch['weights'][1::2] = 0.0  # half 2 holds no valid graph
  two_batch, full, measured = _two_batch_and_full(framework, batch)
  assert two_batch == pytest.approx(full, rel=1e-5)
  assert np.isnan(measured).all() if empty_half else np.isfinite(measured).all()


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
def test_ctc_halves_rebuild_the_batch_gradient(framework):
  """Halves of tuple leaves by sequence, mixed by label counts: the whole batch's loss
  and gradient."""
  two_batch, full, measured = _two_batch_and_full(framework, sw.batch(CTC, 8, seed=3), CTC)
  assert two_batch == pytest.approx(full, rel=1e-5)
  assert np.isfinite(measured).all()


_BLOCKS = dict(size=9, num_nodes=24)  # per device: 9 graphs (odd), the last padding


def device_batches(kind, step):
  """-> (global batch, [the 2 devices' blocks]): ogbg's odd graph blocks, or CTC's 8
  sequences as two blocks of 4."""
  if kind == 'ogbg':
    return sw.device_blocks(seed=step, **_BLOCKS)
  whole = sw.batch(kind, 8, seed=step)
  block = lambda k: {key: tuple(x[4 * k:4 * k + 4] for x in v) for key, v in whole.items()}
  return whole, [block(0), block(1)]


def _torch_rank(rank, init_file, out_dir, kind):
  torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                                       world_size=2)
  torch.set_num_threads(1)
  rows, _ = run('pytorch', kind, MEDIAN, 5, None, hparams=HP_NO_DROPOUT,
                batches=lambda step: device_batches(kind, step)[1][rank])
  torch.save(rows, os.path.join(out_dir, f'rank{rank}.pt'))
  torch.distributed.destroy_process_group()


_JAX_TWO_DEVICES = textwrap.dedent("""
    import json, sys, jax
    assert jax.device_count() == 2, jax.devices()
    import test_structural_workloads as t
    kind = sys.argv[1]
    rows, _ = t.run('jax', kind, t.MEDIAN, 5, None, hparams=t.HP_NO_DROPOUT,
                    batches=lambda step: t.device_batches(kind, step)[0])
    print('ROWS', json.dumps(rows))
""")


@pytest.mark.parametrize('kind', ['ogbg', CTC])
def test_halves_on_two_devices_agree_across_frameworks(tmp_path, kind):
  """Two devices, one block each (ogbg: odd graph blocks; CTC: 4 sequences of tuple
  leaves): JAX (2 virtual devices, the batch sharded) and PyTorch (2 gloo ranks, DDP)
  take the same halves (positions within each block) and reduce them to the same
  scalars and lr."""
  torch.multiprocessing.spawn(_torch_rank, args=(str(tmp_path / 'init'), str(tmp_path), kind),
                              nprocs=2, join=True)
  keys = ('gd_1', 'dGd_1', 'lr')
  ranks = [[(s, {k: row[k] for k in keys}) for s, row in torch.load(tmp_path / f'rank{r}.pt')]
           for r in range(2)]
  assert ranks[0] == ranks[1]  # the same reduced scalars on every rank
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
             PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / 'tests')]), JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', _JAX_TWO_DEVICES, kind], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  jax_rows = json.loads(proc.stdout.split('ROWS', 1)[1])
  assert [s for s, _ in jax_rows] == [s for s, _ in ranks[0]] == [2, 3, 4]
  for (_, row_j), (_, row_t) in zip(jax_rows, ranks[0]):
    for key in keys:
      assert row_j[key] == pytest.approx(row_t[key], rel=2e-3), key
