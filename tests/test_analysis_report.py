"""`python -m analysis.report`: markdown, CSVs and PNGs (analysis.report, analysis.plots)."""
import json

import numpy as np
import pandas as pd
import pytest

from analysis import fixtures as fx
from analysis import plots
from analysis import report
from analysis import score

TOY = {'metric': 'validation/loss', 'target': 0.5, 'minimize': True, 'max_runtime_sec': 1000}


def _write_runs(root):
  """nadamw 400 s, schedule_free_adamw 300 s, cdat_nadamw 200 s on a custom workload."""
  steps = np.arange(1, 401)
  for sub, t in (('nadamw', 400), ('schedule_free_adamw', 300), ('cdat_nadamw', 200)):
    measurements = {'global_step': steps, 'loss': np.linspace(1, 0.4, 400),
                    'lr': np.logspace(-2, -4, 400)}
    if sub == 'cdat_nadamw':
      measurements.update({'cdat/numerator': np.linspace(0.1, 1, 400),
                           'cdat/denominator': np.linspace(1, 2, 400),
                           'curvature/uGu': np.logspace(0, 3, 400)})
    for s in range(3):
      fx.write_trial(root, sub, f'study_{s}', 'toy', 1, (t / 2, t, 2 * t),
                     fx.curve(3, 1, 0.5), meta={}, measurements=measurements)


def test_report_cli_writes_markdown_csv_and_plots(tmp_path, capsys):
  _write_runs(tmp_path / 'runs')
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  out = tmp_path / 'out'
  assert report.main(['--submission_dir', str(tmp_path / 'runs'), '--output_dir', str(out),
                      '--targets', str(tmp_path / 'targets.json'), '--self_tuning']) == 0
  assert 'report.md' in capsys.readouterr().out
  for name in ('report.md', 'leaderboard.csv', 'scores.csv', 'performance_profile.png',
               'curves_toy.png', 'lr_toy.png', 'curvature_toy.png',
               'speedups_vs_nadamw.csv', 'speedups_vs_nadamw.png',
               'speedups_vs_schedule_free_adamw.csv', 'speedups_vs_schedule_free_adamw.png'):
    assert (out / name).stat().st_size > 0, name
  md = (out / 'report.md').read_text()
  assert '1 scored workloads: toy' in md
  assert '| unknown  | 1500     | 1.5 x 1000 s, targets file' in md  # budget stated
  assert '![curves_toy.png](curves_toy.png)' in md
  board = pd.read_csv(out / 'leaderboard.csv', index_col=0)
  assert list(board.index) == ['cdat_nadamw', 'schedule_free_adamw', 'nadamw']
  assert board.loc['cdat_nadamw', 'score'] == 1.0
  speedups = pd.read_csv(out / 'speedups_vs_nadamw.csv', index_col=0)
  assert speedups.loc['toy', 'cdat_nadamw'] == 0.5  # 200 s / 400 s
  assert speedups.loc['toy', 'schedule_free_adamw'] == 0.75


def test_speedups_fill_missed_targets_with_budget_plus_one(tmp_path):
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  for sub, hit in (('nadamw', 1), ('other', None)):
    for s in range(3):
      fx.write_trial(tmp_path / 'runs', sub, f'study_{s}', 'toy', 1, (100, 200, 300),
                     fx.curve(3, hit, 0.5), meta={})
  scored = score.score_directory([str(tmp_path / 'runs')],
                                 targets_file=str(tmp_path / 'targets.json'))
  ratios, labels, gmeans = report.speedups(scored.result, 'nadamw')
  assert ratios.loc['toy', 'other'] == pytest.approx(1001 / 200)
  assert labels.loc['toy', 'other'] == 'missed: other'
  assert gmeans['other'] == pytest.approx(1001 / 200)


def test_find_baseline_prefers_exact_then_prefix():
  subs = ['cdat_nadamw', 'nadamw_baseline', 'schedule_free_adamw', 'sf']
  assert report.find_baseline('nadamw', subs) == 'nadamw_baseline'
  assert report.find_baseline('nadamw', subs + ['nadamw']) == 'nadamw'
  assert report.find_baseline('schedule_free', subs) == 'schedule_free_adamw'
  assert report.find_baseline('shampoo', subs) is None


def test_select_columns_and_log_scale():
  available = ['global_step', 'loss', 'lr', 'cdat/numerator', 'alpha', 'curvature/uGu']
  assert report.select_columns(available, report.LR_COLUMNS, report.LR_PREFIXES) == [
      'lr', 'alpha']
  assert report.select_columns(available, report.CURVATURE_COLUMNS,
                               report.CURVATURE_PREFIXES) == ['cdat/numerator', 'curvature/uGu']
  assert plots.use_log_scale(np.array([1e-4, 1e-2]))
  assert not plots.use_log_scale(np.array([-1.0, 1.0]))
  assert not plots.use_log_scale(np.array([1.0, 2.0]))


def test_median_band_over_studies():
  curves = [(np.array([0.0, 10.0]), np.array([1.0, 0.0])),
            (np.array([0.0, 10.0]), np.array([3.0, 2.0])),
            (np.array([0.0, 5.0]), np.array([2.0, np.nan]))]
  grid, median, low, high = plots.median_band(curves, num_points=3)
  np.testing.assert_array_equal(grid, [0.0, 5.0, 10.0])
  np.testing.assert_array_equal(median, [2.0, 1.5, 1.0])  # third curve ends at x=0
  np.testing.assert_array_equal(low, [1.0, 0.5, 0.0])
  np.testing.assert_array_equal(high, [3.0, 2.5, 2.0])
