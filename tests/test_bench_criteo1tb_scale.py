"""Smoke test of bench/bench_criteo1tb_scale.py at a tiny scale: its main() runs in both
frameworks and prints every expected `name: value` line, finite (memory: 'n/a' on CPU)."""
import importlib.util
import math
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARGS = ['--vocab_size=512', '--batch_size=64', '--steps=3', '--rounds=1', '--repeats=1',
        '--warmup=1', '--num_batches=2']


def _load():
  spec = importlib.util.spec_from_file_location(
      'bench_criteo1tb_scale', ROOT / 'bench' / 'bench_criteo1tb_scale.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _run(framework, capsys, monkeypatch):
  monkeypatch.chdir(ROOT)  # submissions load by relative path, as in AlgoPerf
  summary = _load().main(['--framework', framework] + ARGS)
  pairs = [line.split(': ', 1) for line in capsys.readouterr().out.splitlines() if line]
  assert all(len(p) == 2 and p[0] and ' ' not in p[0] for p in pairs), pairs
  return summary, pairs


@pytest.mark.slow
@pytest.mark.parametrize('framework,sfx,hessian', [('pytorch', 'torch', 'hessian_double_backward'),
                                                    ('jax', 'jax', 'hessian_jvp')])
def test_tiny_run_prints_finite_lines(framework, sfx, hessian, capsys, monkeypatch):
  summary, pairs = _run(framework, capsys, monkeypatch)
  values = dict(pairs)
  numeric = [f'plain_step_s_{sfx}', f'ggn_jvp_over_plain_step_{sfx}',
             f'two_batch_measurement_over_plain_step_{sfx}', f'{hessian}_over_plain_step_{sfx}',
             f'schedule_free_over_nadamw_step_{sfx}', f'overhead_ggn_median_nadamw_{sfx}',
             f'overhead_ggn_median_nadamw_window_{sfx}', f'overhead_cdat_nadamw_{sfx}',
             f'first_call_s_plain_step_{sfx}', f'wall_s_{sfx}']
  for name in numeric:
    assert math.isfinite(float(values[name])), (name, values.get(name))
  assert float(values[f'plain_step_s_{sfx}']) > 0
  assert [p[0] for p in pairs[-1:]] == [f'overhead_cdat_nadamw_{sfx}']
  assert summary[f'overhead_cdat_nadamw_{sfx}'] == pytest.approx(
      float(values[f'overhead_cdat_nadamw_{sfx}']), rel=1e-3)
  # The median's timed steps start at its first window: all 3 measure; CDAT's at step 0.
  assert int(values[f'measurements_ggn_median_nadamw_{sfx}']) == 3
  assert int(values[f'measurements_cdat_nadamw_{sfx}']) >= 1
  assert int(values[f'measurements_nadamw_{sfx}']) == 0
  for kind in ('nadamw_plain', 'ggn_median_nadamw_plain', 'ggn_median_nadamw_measurement',
               'cdat_nadamw_measurement'):
    assert values[f'peak_mem_{kind}_gib_{sfx}'].startswith('n/a')  # CPU: no device memory
  assert float(values[f'batch_positive_rate_{sfx}']) < 0.1
  assert 0 <= int(values[f'batch_id_max_{sfx}']) < 512


def test_synthetic_features_are_in_the_real_value_ranges():
  bench = _load()
  rng = np.random.RandomState(1)
  n, c = 20_000, bench.feature_constants()
  draws = (rng.uniform(size=(n, 26)), rng.uniform(size=(n, 13)), rng.uniform(size=n),
           rng.normal(size=(n, 1)), rng.normal(size=(n, 13)))
  draws = tuple(d.astype(np.float32) for d in draws)
  inputs, targets = bench.criteo_like(np, np.asarray, lambda a: a.astype(np.int32),
                                      lambda a: a.astype(np.float32), draws, 4_194_304, c)
  dense, ids = inputs[:, :13], inputs[:, 13:]
  assert inputs.shape == (n, 39) and inputs.dtype == np.float32
  assert np.all(dense >= 0) and dense.max() <= np.log1p(1e9) + 1e-3
  assert 0.01 < np.mean(dense == 0) < 0.6
  assert np.all(ids >= 0) and np.all(ids < np.asarray(c.cards_int)) and ids.max() < 4_194_304
  assert np.all(ids == np.round(ids))
  assert len(np.unique(ids[:, 5])) <= 3  # the 3-value column stays within its cardinality
  # Zipf: a head value repeats, the big columns still spread over many rows.
  assert np.bincount(ids[:, 0].astype(np.int64)).max() > n / 100
  assert len(np.unique(ids[:, 0])) > n / 10
  assert 0.02 < targets.mean() < 0.05
