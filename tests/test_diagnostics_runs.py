"""Submissions with CURVLR_DIAGNOSTICS on write the diagnostics to measurements.csv."""
import csv
import math
import os
import pathlib

import pytest

from curvlr.core import metric_names
from curvlr.runner import __main__ as runner

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _diagnostic_rows(tmp_path, data_dir, framework, submission, steps=4):
  os.chdir(ROOT)
  runner.run([
      f'--framework={framework}', '--workload=criteo_embedded',
      f'--submission_path=submissions/{submission}/{framework}_submission.py',
      f'--data_dir={data_dir}', f'--experiment_dir={tmp_path}', '--experiment_name=exp',
      f'--max_global_steps={steps}', '--rng_seed=0', '--progress_every_sec=0'])
  path = tmp_path / 'exp' / f'criteo_embedded_{framework}' / 'trial_1' / 'measurements.csv'
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  return [r for r in rows if r.get('sharpness')]


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
@pytest.mark.parametrize('submission', ['self_tuning/nadamw', 'self_tuning/cdat_nadamw'])
def test_columns_written(tmp_path, tiny_criteo_dir, monkeypatch, framework, submission):
  monkeypatch.setenv('CURVLR_DIAGNOSTICS', 'k=2,iterations=3')
  rows = _diagnostic_rows(tmp_path, tiny_criteo_dir, framework, submission)
  assert [int(r['global_step']) for r in rows] == [0, 2]
  # At step 0: no timed step yet, lr = 0 (no thresholds).
  late = ('diag_overhead_fraction', 'sharpness_threshold', 'precond_threshold')
  for name in metric_names.DIAGNOSTICS:
    assert all(r[name] and math.isfinite(float(r[name]))
               for r in rows[name in late:]), (name, rows)
  assert float(rows[-1]['diag_count']) == 2


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_schedule_free_reports_sharpness_only(tmp_path, tiny_criteo_dir, monkeypatch,
                                              framework):
  monkeypatch.setenv('CURVLR_DIAGNOSTICS', 'k=2,iterations=3')
  rows = _diagnostic_rows(tmp_path, tiny_criteo_dir, framework, 'self_tuning/schedule_free_adamw')
  assert len(rows) == 2 and all(not r.get('precond_sharpness') for r in rows)
  assert all(not r.get('quad_predicted_change') for r in rows)


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_malformed_switch_fails_at_init(tmp_path, tiny_criteo_dir, monkeypatch, framework):
  monkeypatch.setenv('CURVLR_DIAGNOSTICS', 'every=2')
  with pytest.raises(ValueError, match='CURVLR_DIAGNOSTICS'):
    _diagnostic_rows(tmp_path, tiny_criteo_dir, framework, 'self_tuning/nadamw')
