"""`python -m analysis.report`: markdown, CSVs and PNGs (analysis.report, analysis.plots)."""
import json

import numpy as np
import pandas as pd
import pytest

from analysis import fixtures as fx
from analysis import plots
from analysis import report
from analysis import score
from curvlr.core import defaults, policy

TOY = {'metric': 'validation/loss', 'target': 0.5, 'minimize': True, 'max_runtime_sec': 1000}


def _policy_columns(p, measurement):
  """The names `policy.metrics` writes for `p` (the writer side of metric_names)."""
  return list(policy.metrics(p, policy.observe(p, policy.init(p), 50, measurement),
                             measurement))


def _write_runs(root):
  """nadamw 400 s, schedule_free_adamw 300 s, cdat_nadamw 200 s on a custom workload;
  measurements.csv as the submissions write it: loss every step, lr whenever it changes,
  the curvature policy's own metric names (policy.metrics) at its measurements only."""
  steps = np.arange(0, 400)
  for sub, t in (('nadamw', 400), ('schedule_free_adamw', 300), ('cdat_nadamw', 200)):
    lr = np.where(steps % 50 == 0, np.logspace(-2, -4, 400), np.nan)
    measurements = {'global_step': steps, 'loss': np.linspace(1, 0.4, 400), 'lr': lr}
    if sub == 'cdat_nadamw':
      measured = steps % 100 == 0
      for name in _policy_columns(defaults.CDAT_POLICY, policy.Measurement(-1.0, 2.0)):
        measurements[name] = np.where(measured, np.logspace(-2, -3, 400), np.nan)
    for s in range(3):
      fx.write_trial(root, sub, f'study_{s}', 'toy', 1, (t / 2, t, 2 * t),
                     fx.curve(3, 1, 0.5), meta={}, measurements=measurements, ruleset='self',
                     steps=(100, 200, 400))


def test_report_cli_writes_markdown_csv_and_plots(tmp_path, capsys):
  _write_runs(tmp_path / 'runs')
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  out = tmp_path / 'out'
  # No --targets, no --self_tuning: the targets.json above the runs and the logs' flags.
  assert report.main(['--submission_dir', str(tmp_path / 'runs'), '--output_dir',
                      str(out)]) == 0
  assert 'report.md' in capsys.readouterr().out
  for name in ('report.md', 'leaderboard.csv', 'scores.csv', 'steps_to_target.csv',
               'performance_profile.png', 'curves_toy.png', 'lr_toy.png', 'curvature_toy.png',
               'measurement_toy.png', 'speedups_vs_nadamw.csv', 'speedups_vs_nadamw.png',
               'speedups_vs_schedule_free_adamw.csv', 'speedups_vs_schedule_free_adamw.png'):
    assert (out / name).stat().st_size > 0, name
  md = (out / 'report.md').read_text()
  headings = [line for line in md.splitlines() if line.startswith('## ')]
  assert headings[:2] == ['## Steps to target (load-independent)',
                          '## AlgoPerf score (time-based)']
  assert 'self-tuning ruleset (version v0.6: from the logs' in md
  assert '1 scored workloads: toy' in md
  assert '| unknown  | 1500     | 1.5 x 1000 s, targets file' in md  # budget stated
  assert '![curves_toy.png](curves_toy.png)' in md
  assert 'median of' not in md
  assert 'no curvature along the update plot' not in md  # the policy's names are drawn
  board = pd.read_csv(out / 'leaderboard.csv', index_col=0)
  assert list(board.index) == ['cdat_nadamw', 'schedule_free_adamw', 'nadamw']
  assert board.loc['cdat_nadamw', 'score'] == 1.0
  speedups = pd.read_csv(out / 'speedups_vs_nadamw.csv', index_col=0)
  assert speedups.loc['toy', 'cdat_nadamw'] == 0.5  # 200 s / 400 s
  assert speedups.loc['toy', 'schedule_free_adamw'] == 0.75


def test_steps_table_ranks_by_steps_not_time(tmp_path):
  # 'slow' needs fewer steps but more seconds per step (a loaded machine).
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  for sub, times, steps in (('fast', (10, 20, 30), (100, 200, 300)),
                            ('slow', (50, 100, 150), (50, 100, 150))):
    for s in range(3):
      fx.write_trial(tmp_path / 'runs', sub, f'study_{s}', 'toy', 1, times,
                     fx.curve(3, 1, 0.5), meta={}, steps=steps, ruleset='self')
  result = score.score_directory([str(tmp_path / 'runs')]).result
  table = score.steps_table(result)
  assert list(table['submission']) == ['slow', 'fast']
  assert list(table['steps_to_target']) == [100.0, 200.0]
  assert list(table['time_to_target_s']) == [100.0, 20.0]
  assert list(table['s_per_step']) == [1.0, 0.1]
  assert result.scores['fast'] == 1.0  # the time-based score still favours 'fast'


def test_budget_cuts_mark_base_and_self_tuning_limit(tmp_path):
  _write_runs(tmp_path / 'runs')
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  result = score.score_directory([str(tmp_path / 'runs')]).result
  cuts = report.budget_cuts(result, 'toy')
  assert [c.x for c in cuts] == [1000.0, 1500.0]
  assert 'self-tuning limit 1.5 x budget' in cuts[1].label


def test_context_names_framework_hardware_and_seeds(tmp_path):
  _write_runs(tmp_path / 'runs')
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  scored = score.score_directory([str(tmp_path / 'runs')])
  assert report.context(scored, 'toy') == 'jax; unknown; 3 studies per submission (seed ?)'


def test_clipped_points_are_counted_and_marked():
  from matplotlib.figure import Figure
  ax = Figure().subplots()
  assert plots.mark_clipped(ax, np.array([1, 2, 3, 4]), np.array([5.0, 0.5, -3.0, 0.2]),
                            (0.0, 1.0), 'red') == 2
  assert len(ax.lines) == 2  # one marker set above, one below


def test_a_submission_entirely_outside_the_y_range_says_so():
  # v0.6 external imagenet_vit: the diverged baseline (accuracy 0.001) is all at the edge.
  low = [plots.Curve(np.array([1.0, 2.0]), np.array([1, 2]), np.array([0.001, np.nan]))] * 3
  assert plots.outside_note(low, (0.6, 0.8)) == '; all 3 evals below the y range'
  mixed = [plots.Curve(np.array([1.0, 2.0]), np.array([1, 2]), np.array([0.001, 0.9]))]
  assert plots.outside_note(mixed, (0.6, 0.8)) == '; all 2 evals outside the y range'
  inside = [plots.Curve(np.array([1.0]), np.array([1]), np.array([0.7]))]
  assert plots.outside_note(inside, (0.6, 0.8)) == ''


def test_speedups_fill_missed_targets_with_budget_plus_one(tmp_path):
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  for sub, hit in (('nadamw', 1), ('other', None)):
    for s in range(3):
      fx.write_trial(tmp_path / 'runs', sub, f'study_{s}', 'toy', 1, (100, 200, 300),
                     fx.curve(3, hit, 0.5), meta={}, ruleset='external')
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


def test_log_scale_rule():
  assert plots.use_log_scale(np.array([1e-4, 1e-2]))
  assert not plots.use_log_scale(np.array([-1.0, 1.0]))
  assert not plots.use_log_scale(np.array([1.0, 2.0]))


def test_median_band_is_over_all_studies_with_finished_ones_held():
  # The third study ends at x=0 (its second value is NaN): it holds 2.0 from there on, so
  # the median stays over three studies instead of over the survivors.
  curves = [(np.array([0.0, 10.0]), np.array([1.0, 0.0])),
            (np.array([0.0, 10.0]), np.array([3.0, 2.0])),
            (np.array([0.0, 5.0]), np.array([2.0, np.nan]))]
  grid, median, low, high = plots.median_band(curves, num_points=3)
  np.testing.assert_array_equal(grid, [0.0, 5.0, 10.0])
  np.testing.assert_array_equal(median, [2.0, 2.0, 2.0])
  # The grid starts once every study has its first eval.
  late = curves[:2] + [(np.array([4.0, 6.0]), np.array([2.0, 2.0]))]
  assert plots.median_band(late, num_points=3)[0][0] == 4.0
  np.testing.assert_array_equal(low, [1.0, 0.5, 0.0])
  np.testing.assert_array_equal(high, [3.0, 2.5, 2.0])
  # Runs that stop at the target: the median reaches it once most studies have.
  stopped = [(np.array([0.0, 4.0]), np.array([1.0, 0.4])),
             (np.array([0.0, 6.0]), np.array([1.0, 0.4])),
             (np.array([0.0, 10.0]), np.array([1.0, 0.8]))]
  grid, median, _, _ = plots.median_band(stopped, num_points=11)
  assert median[-1] == 0.4


def test_equal_steps_and_scores_share_a_rank(tmp_path):
  # 'a' and 'b' need the same steps, 'c' and 'd' never reach the target: ranks 1, 1, 3, 3
  # (not an order that alphabetical ties would make up).
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  for sub, hit in (('d', None), ('b', 2), ('a', 2), ('c', None)):
    for s in range(3):
      fx.write_trial(tmp_path / 'runs', sub, f'study_{s}', 'toy', 1, (10, 20, 30),
                     fx.curve(3, hit, 0.5), meta={}, steps=(100, 200, 300), ruleset='self')
  result = score.score_directory([str(tmp_path / 'runs')]).result
  table = score.steps_table(result)
  assert list(zip(table['submission'], table['rank'])) == [('a', 1), ('b', 1), ('c', 3),
                                                           ('d', 3)]
  board = score.leaderboard(result)
  assert list(board['rank']) == [1, 1, 3, 3]


def test_held_values_last_to_the_run_end():
  x, y = plots.held_until(np.array([10.0, 40.0]), np.array([1e-3, 2e-3]), 80.0)
  np.testing.assert_array_equal(x, [10.0, 40.0, 80.0])
  np.testing.assert_array_equal(y, [1e-3, 2e-3, 2e-3])
  x, y = plots.held_until(np.array([10.0, 80.0]), np.array([1.0, 2.0]), 80.0)
  np.testing.assert_array_equal(x, [10.0, 80.0])  # logged at the end already


def test_speedup_cells_name_bounds_instead_of_numbers():
  ratios = pd.DataFrame({'a': [0.5, 1001 / 200, 1.0]}, index=['w1', 'w2', 'w3'])
  labels = pd.DataFrame({'a': ['', 'missed: a', 'missed: a, nadamw']}, index=ratios.index)
  cells = report.speedup_cells(ratios, labels, pd.Series({'a': 1.36}))
  assert list(cells['a']) == ['0.5', '5 (bound: a not reached)', 'neither reached the target',
                              '1.36 (includes 2 of 3 from budget + 1 s)']
  only = report.speedup_cells(ratios.iloc[2:], labels.iloc[2:], pd.Series({'a': 1.0}))
  assert 'no measured ratio' in only.loc['geometric mean', 'a']


def test_steps_to_target_ignore_the_time_budget(tmp_path):
  # A loaded machine: the target is reached at step 300 but after 1,600 s, past the 1,500 s
  # self-tuning limit. The time score misses it; the steps table does not.
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  for s in range(3):
    fx.write_trial(tmp_path / 'runs', 'loaded', f'study_{s}', 'toy', 1, (400, 800, 1600),
                   fx.curve(3, 2, 0.5), meta={}, steps=(100, 200, 300), ruleset='self')
  result = score.score_directory([str(tmp_path / 'runs')]).result
  table = score.steps_table(result)
  assert list(table['steps_to_target']) == [300.0]
  assert list(table['reached']) == ['3/3 studies']
  assert list(table['time_to_target_s']) == ['not reached']
  assert result.scores['loaded'] == 0.0
