"""analysis.sweep: grid runs through the runner, resume, steps-to-target with intervals."""
import json
import math
import os
import pathlib

import numpy as np
import pandas as pd
import pytest

from analysis import sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _grid(tmp_path, data_dir, **extra):
  grid = dict(workload='criteo_embedded', framework='pytorch', seeds=[0, 1],
              max_global_steps=4, eval_every_steps=2, baseline='nadamw', data_dir=str(data_dir),
              configs={
                  'nadamw': {'submission': 'submissions/external_tuning/nadamw/pytorch_submission.py',
                             'hparams': {'lr_scale': 1.0}, 'stop_at_target': False},
                  'self': {'submission': 'submissions/self_tuning/nadamw/pytorch_submission.py'}},
              **extra)
  path = tmp_path / 'grid.json'
  path.write_text(json.dumps(grid))
  return path


def test_tiny_grid_runs_resumes_and_reports(tmp_path, tiny_criteo_dir, monkeypatch):
  """Two configs x two seeds for 4 steps: the external-tuning NAdamW at lr_scale 1 is the
  self-tuning baseline, so both configs' losses agree; a rerun runs nothing."""
  monkeypatch.chdir(ROOT)
  path, out = _grid(tmp_path, tiny_criteo_dir), tmp_path / 'out'
  assert sweep.main([str(path), f'--out={out}', '--jobs=2', '--target=10']) == 0
  runs = pd.read_csv(out / 'runs_target10.0.csv')
  assert len(runs) == 4 and set(runs.steps_to_target) == {2.0}  # first eval at step 2
  summary = pd.read_csv(out / 'summary_target10.0.csv')
  assert list(summary.steps_ratio) == [1.0, 1.0]
  assert (out / 'plots' / 'steps_to_target_bsdefault.png').exists()
  grid = sweep.load_grid(path)
  evals = {r.config: pd.read_csv(os.path.join(sweep.trial_dir(out, grid, r),
                                              'eval_measurements.csv'))
           for r in sweep.runs_of(grid) if r.seed == 0}
  np.testing.assert_allclose(evals['nadamw']['validation/loss'], evals['self']['validation/loss'],
                             rtol=1e-6)
  calls = []
  monkeypatch.setattr(sweep, '_execute', lambda *a: calls.append(a) or 0)
  done = sweep.runs_of(grid)[0]
  os.remove(os.path.join(sweep.trial_dir(out, grid, done), sweep.RUN_SUMMARY))
  assert sweep.main([str(path), f'--out={out}', '--target=10']) == 0
  assert [c[2] for c in calls] == [done]  # only the unfinished run is run again
  with pytest.raises(ValueError, match='not in the grid'):
    sweep.main([str(path), f'--out={out}', '--configs=nope'])


def test_failed_runs_are_reported_and_exit_nonzero(tmp_path, monkeypatch, capsys):
  path = _grid(tmp_path, tmp_path / 'no_data')
  monkeypatch.setattr(sweep, '_execute', lambda *a: 3)
  with pytest.raises(ValueError, match='no finished run'):
    sweep.main([str(path), f'--out={tmp_path / "out"}'])
  assert 'failed (rc 3)' in capsys.readouterr().out


def test_a_run_held_by_a_live_process_is_skipped_not_restarted(tmp_path, monkeypatch):
  grid = sweep.load_grid(_grid(tmp_path, tmp_path))
  run = sweep.runs_of(grid)[0]
  held = sweep._claim(str(tmp_path), run)  # this process holds it
  monkeypatch.setattr(sweep.subprocess, 'call', lambda *a, **k: pytest.fail('restarted'))
  assert sweep._execute(str(tmp_path), grid, run) == -1
  os.remove(held)
  with open(held, 'w') as f:
    f.write('999999999')  # a PID that is not running: stale
  monkeypatch.setattr(sweep.subprocess, 'call', lambda *a, **k: 0)
  assert sweep._execute(str(tmp_path), grid, run) == 0 and not os.path.exists(held)


def test_grid_errors_are_clear(tmp_path):
  bad = tmp_path / 'bad.json'
  for grid, message in (({'seeds': [0], 'max_global_steps': 1}, '"configs"'),
                        ({'configs': {'a__b': {'submission': 'x'}}, 'seeds': [0],
                          'max_global_steps': 1}, 'must not contain'),
                        ({'configs': {'a': {}}, 'seeds': [0], 'max_global_steps': 1},
                         'needs "submission"'),
                        ({'configs': {'a': {'submission': 'x'}}, 'seeds': [0],
                          'max_global_steps': 1, 'baseline': 'b'}, 'not a config')):
    bad.write_text(json.dumps(grid))
    with pytest.raises(ValueError, match=message):
      sweep.load_grid(bad)


def test_first_hit_is_strict_and_missed_is_inf():
  evals = pd.DataFrame({'global_step': [50, 100, 150], 'score': [5.0, 10.0, 15.0],
                        'validation/loss': [0.16, 0.15, 0.14]})
  assert sweep.first_hit(evals, 0.15) == (150.0, 15.0)  # 0.15 is not < 0.15
  assert sweep.first_hit(evals, 0.155) == (100.0, 10.0)
  assert sweep.first_hit(evals, 0.1) == (math.inf, math.inf)


def test_intervals_bracket_the_median_and_handle_misses():
  rng = np.random.default_rng(0)
  m, lo, hi = sweep.median_interval([100, 110, 120, 130, 140], rng)
  assert m == 120 and 100 <= lo <= m <= hi <= 140
  m, lo, hi = sweep.median_interval([100, math.inf, math.inf, math.inf, 90], rng)
  assert m == math.inf and hi == math.inf
  r, rlo, rhi = sweep.ratio_interval([50, 50, 50], [100, 100, 100], rng)
  assert (r, rlo, rhi) == (0.5, 0.5, 0.5)
  r, rlo, rhi = sweep.ratio_interval([math.inf] * 3, [math.inf] * 3, rng)
  assert math.isnan(r) and rhi == math.inf  # both missed: no ratio, interval unbounded


def test_summary_counts_misses_and_lists_seeds():
  runs = pd.DataFrame(dict(config=['b'] * 3 + ['c'] * 3, batch_size=0, seed=[0, 1, 2] * 2,
                           steps_to_target=[100, 100, 100, 80, math.inf, 70],
                           time_to_target=[10, 10, 10, 8, math.inf, 7], target=0.14,
                           eval_every_steps=50))
  summary = sweep.summarize(runs, 'b').set_index('config')
  assert summary.loc['c', 'missed'] == 1 and summary.loc['c', 'steps_median'] == 80
  assert summary.loc['c', 'per_seed_steps'] == '80 - 70'
  assert summary.loc['c', 'steps_ratio'] == 0.8
  text = sweep.markdown(summary.reset_index(), runs, 'b')
  assert '| default | c | 3 (1) | 80 [' in text
  assert text.startswith('Validation target 0.14 (strict <), evals every 50 steps')
  mixed = runs.assign(batch_size=[1024] * 3 + [4096] * 3, target=[0.14] * 3 + [0.15] * 3)
  assert 'target batch 1024: 0.14, batch 4096: 0.15 (strict' in sweep.markdown(
      sweep.summarize(mixed, 'b'), mixed, 'b')


def test_derive_targets_takes_the_median_of_the_baselines_best_by_the_fraction(tmp_path):
  grid = sweep.load_grid(_grid(tmp_path, tmp_path))
  out = tmp_path / 'out'
  for seed, values in ((0, [0.20, 0.15, 0.10]), (1, [0.20, 0.16, 0.12])):
    run = sweep.Run('nadamw', '', {}, None, seed, False)
    path = pathlib.Path(sweep.trial_dir(out, grid, run))
    path.mkdir(parents=True)
    pd.DataFrame({'global_step': [500, 1000, 1500], 'score': [1.0, 2.0, 3.0],
                  'validation/loss': values, 'test/loss': [v + 0.01 for v in values],
                  'preemption_count': 0}).to_csv(path / 'eval_measurements.csv', index=False)
    (path / sweep.RUN_SUMMARY).write_text('{}')
  grid['eval_every_steps'] = 500
  targets = sweep.derive_targets(out, grid, 0.75)  # step_hint 1500: evals up to step 1125
  assert targets['per_seed'] == {0: (0.15, pytest.approx(0.16)), 1: (0.16, pytest.approx(0.17))}
  assert targets['validation'] == pytest.approx(0.155)
  grid['eval_every_steps'] = 50
  with pytest.raises(ValueError, match='too short'):
    sweep.derive_targets(out, grid, 0.75)


def test_scale_with_batch_keeps_the_examples_and_passes_step_hint(tmp_path):
  path = tmp_path / 'g.json'
  path.write_text(json.dumps({
      'workload': 'criteo_embedded', 'seeds': [0], 'batch_sizes': [1024, 4096, 16384],
      'eval_every_steps': 50, 'max_global_steps': 1500, 'scale_with_batch': 1024,
      'targets': {'4096': 0.15},
      'configs': {'c': {'submission': 's.py'}}}))
  grid = sweep.load_grid(str(path))
  assert sweep.scaled(grid, 1024) == {'max_global_steps': 1500, 'eval_every_steps': 50,
                                      'step_hint': 1500}
  assert sweep.scaled(grid, 16384) == {'max_global_steps': 94, 'eval_every_steps': 3,
                                       'step_hint': 94}
  by_size = {r.batch_size: sweep.command(str(tmp_path), grid, r) for r in sweep.runs_of(grid)}
  assert {'--batch_size=4096', '--step_hint=375', '--eval_every_steps=12',
          '--max_global_steps=375'} <= set(by_size[4096])
  assert sweep.target_for(grid, 4096) == 0.15  # the grid's per-batch target
  assert sweep.target_for(grid, 1024) == 0.1445  # the workload's
  assert sweep.target_for(grid, 4096, override=0.2) == 0.2
  unscaled = dict(grid, scale_with_batch=None)
  assert sweep.scaled(unscaled, 16384)['step_hint'] is None  # the workload's step_hint
  path.write_text(json.dumps({'seeds': [0], 'max_global_steps': 10, 'scale_with_batch': 1024,
                              'configs': {'c': {'submission': 's.py'}}}))
  with pytest.raises(ValueError, match='explicit "batch_sizes"'):
    sweep.load_grid(str(path))
