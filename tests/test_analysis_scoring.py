"""AlgoPerf scoring rules on hand-computable logs (analysis.scoring, analysis.score)."""
import json
import math
import os

import numpy as np
import pytest

from analysis import fixtures as fx
from analysis import score
from analysis import scoring
from analysis import targets

CRITEO = 0.123735
H = 3 / 99  # tau grid spacing


def tau(i):
  return 1 + i * H


def write_study(root, submission, study, hit_indices, workload='criteo1tb',
                times=(100, 200, 300, 400, 500), target=CRITEO, **kwargs):
  """One study: trial k first reaches the target at eval hit_indices[k-1] (None: never)."""
  for k, hit in enumerate(hit_indices, start=1):
    fx.write_trial(root, submission, study, workload, k, times,
                   fx.curve(len(times), hit, target), **kwargs)


def write_submission(root, submission, study_hits, **kwargs):
  for s, hits in enumerate(study_hits):
    write_study(root, submission, f'study_{s}', hits, **kwargs)


def toy_targets(tmp_path, names=('toy_a', 'toy_b')):
  path = tmp_path / 'targets.json'
  path.write_text(json.dumps({n: {'metric': 'validation/loss', 'target': 0.5} for n in names}))
  return str(path)


def score_dir(root, **kwargs):
  return score.score_directory([str(root)], **kwargs).result


# --- per-trial rules --------------------------------------------------------------------


def test_first_hit_uses_le_for_minimized_and_ge_for_maximized():
  times = np.array([1.0, 2.0, 3.0])
  assert scoring.first_hit_index([0.5, 0.2, 0.1], times, 0.2, minimize=True) == 1
  assert scoring.first_hit_index([0.5, 0.7, 0.9], times, 0.7, minimize=False) == 1
  assert scoring.first_hit_index([0.5, 0.4, 0.3], times, 0.2, minimize=True) == -1


def test_nan_metric_never_reaches_and_nan_time_cannot_hit():
  times = np.array([1.0, 2.0, 3.0])
  assert scoring.first_hit_index([np.nan, np.nan, 0.1], times, 0.2, True) == 2
  assert scoring.first_hit_index([np.nan] * 3, times, 0.2, True) == -1
  assert scoring.first_hit_index([0.1, 0.1, 0.1], [np.nan, 2.0, 3.0], 0.2, True) == 1


def test_budget_masks_hits_at_or_beyond_budget():
  values, times = [0.5, 0.1, 0.1], [100.0, 200.0, 300.0]
  assert scoring.first_hit_index(values, times, 0.2, True, budget_sec=200.0) == -1
  assert scoring.first_hit_index(values, times, 0.2, True, budget_sec=200.5) == 1


def test_check_if_minimized_is_algoperf_substring_rule():
  assert targets.check_if_minimized('validation/loss')
  assert targets.check_if_minimized('validation/wer')
  assert not targets.check_if_minimized('validation/ssim')
  assert not targets.check_if_minimized('validation/mean_average_precision')
  assert not targets.check_if_minimized('best_validation/accuracy')
  with pytest.raises(ValueError, match='not found'):
    targets.check_if_minimized('validation/perplexity')


# --- study / workload / profile ---------------------------------------------------------


def test_trial_choice_is_smallest_first_hit_index_not_smallest_time(tmp_path):
  # trial 1: fast evals, hit at index 3 (t=30); trial 2: slow evals, hit at index 2 (t=600).
  fx.write_trial(tmp_path, 'sub', 'study_0', 'criteo1tb', 1, [10, 20, 30, 40],
                 fx.curve(4, 3, CRITEO))
  fx.write_trial(tmp_path, 'sub', 'study_0', 'criteo1tb', 2, [200, 400, 600, 800],
                 fx.curve(4, 2, CRITEO))
  result = score_dir(tmp_path, self_tuning=True)
  study = result.studies.iloc[0]
  assert (study.chosen_trial, study.eval_index, study.time_s) == (2, 2, 600.0)


def test_tie_on_first_hit_index_goes_to_first_trial():
  assert scoring.best_trial([-1, 2, 2, 3]) == 1
  assert scoring.best_trial([-1, -1]) is None


def test_median_over_studies_with_inf(tmp_path):
  # hits at eval index 0, miss, 2 -> times 100, inf, 300 -> median 300.
  write_submission(tmp_path / 'a', 'a', [[0], [None], [2]])
  # two misses of three -> median inf.
  write_submission(tmp_path / 'a', 'b', [[0], [None], [None]])
  result = score_dir(tmp_path / 'a', self_tuning=True)
  assert list(result.studies.loc[result.studies.submission == 'a', 'time_s']) == [
      100.0, math.inf, 300.0]
  assert result.raw_times.loc['a', 'criteo1tb'] == 300.0
  assert result.raw_times.loc['b', 'criteo1tb'] == math.inf
  # A single submission that reached one of the 8 base workloads scores exactly 1/8.
  assert result.scores['a'] == 0.125
  assert result.scores['b'] == 0.0


def test_known_profile_and_score_over_scored_custom_workloads(tmp_path):
  # fast: toy_a 100 s, toy_b 100 s; slow: toy_a 250 s (ratio 2.5), toy_b never.
  for sub, hits in (('fast', {'toy_a': 0, 'toy_b': 0}), ('slow', {'toy_a': 0, 'toy_b': None})):
    for workload, hit in hits.items():
      times = (100, 200, 300) if sub == 'fast' or workload == 'toy_b' else (250, 500, 750)
      for s in range(3):
        write_study(tmp_path, sub, f'study_{s}', [hit], workload=workload, times=times,
                    target=0.5)
  result = score_dir(tmp_path, targets_file=toy_targets(tmp_path), self_tuning=True)
  assert result.denominator == ('toy_a', 'toy_b')
  assert 'scored workloads' in result.denominator_note
  assert result.ratios.loc['slow', 'toy_a'] == 2.5
  np.testing.assert_array_equal(result.profile.loc['fast'], np.ones(100))
  first = int(np.ceil((2.5 - 1) / H))  # first tau_i >= 2.5 -> i = 50
  expected_rho = np.where(np.arange(100) >= first, 0.5, 0.0)
  np.testing.assert_array_equal(result.profile.loc['slow'], expected_rho)
  assert result.scores['fast'] == pytest.approx(1.0, abs=1e-15)
  # area: 0.5 * (4 - tau_50) plus half a trapezoid 0.5 * H / 2 on [tau_49, tau_50].
  assert result.scores['slow'] == pytest.approx(0.5 * ((4 - tau(first)) + H / 2) / 3, rel=1e-12)


def test_four_x_cut(tmp_path):
  # best 100 s; 400 s is exactly 4x (kept, counts only at tau = 4); 401 s is cut.
  for sub, t in (('best', 100), ('at4x', 400), ('over', 401)):
    for s in range(3):
      write_study(tmp_path, sub, f'study_{s}', [0], times=(t, 2 * t))
  result = score_dir(tmp_path, self_tuning=True)
  assert result.times.loc['at4x', 'criteo1tb'] == 400
  assert result.times.loc['over', 'criteo1tb'] == math.inf
  assert result.raw_times.loc['over', 'criteo1tb'] == 401  # before the cut, as AlgoPerf
  assert result.profile.loc['at4x'].iloc[-1] == 0.125
  assert result.profile.loc['at4x'].iloc[:-1].sum() == 0
  assert result.scores['at4x'] == pytest.approx(0.125 * (H / 2) / 3, rel=1e-12)
  assert result.scores['over'] == 0.0


def test_v05_held_out_variant_miss_voids_base(tmp_path):
  held_out = targets.V05_HELD_OUT_WORKLOADS
  for sub in ('a', 'b'):
    for workload in targets.BASE_WORKLOADS + held_out:
      t = targets.ALGOPERF_TARGETS[workload]
      misses_variant = sub == 'a' and workload == 'criteo1tb_embed_init'
      for s in range(5):
        fx.write_trial(tmp_path, sub, f'study_{s}', workload, 1, (100, 200),
                       fx.curve(2, None if misses_variant else 0, t.target, t.minimize),
                       metric=t.metric)
  v05 = score_dir(tmp_path, version='v0.5', self_tuning=True)
  assert v05.raw_times.loc['a', 'criteo1tb'] == 100  # reached ...
  assert v05.times.loc['a', 'criteo1tb'] == math.inf  # ... but voided by its variant
  assert v05.scores['a'] == pytest.approx(7 / 8)
  assert v05.scores['b'] == pytest.approx(1.0)
  assert list(v05.times.columns) == list(targets.BASE_WORKLOADS)


def test_v05_variant_is_void_when_base_missed(tmp_path):
  for workload, hit in (('criteo1tb', None), ('criteo1tb_embed_init', 0)):
    t = targets.ALGOPERF_TARGETS[workload]
    for s in range(5):
      fx.write_trial(tmp_path, 'a', f'study_{s}', workload, 1, (100, 200),
                     fx.curve(2, hit, t.target))
  times = scoring.apply_variant_rules(
      score_dir(tmp_path, version='v0.5', self_tuning=True).raw_times, ['criteo1tb_embed_init'])
  assert times.loc['a', 'criteo1tb_embed_init'] == math.inf


def test_reference_submission_ratio(tmp_path):
  for sub, t in (('ref', 200), ('fast', 100)):
    for s in range(3):
      write_study(tmp_path, sub, f'study_{s}', [0], times=(t, 2 * t))
  result = score_dir(tmp_path, self_tuning=True, reference='ref')
  assert result.ratios.loc['fast', 'criteo1tb'] == 0.5
  assert result.scores['fast'] == 0.125
  with pytest.raises(scoring.ScoringError, match='reference'):
    score_dir(tmp_path, self_tuning=True, reference='missing')


def test_count_checks_warn_and_strict_raises(tmp_path):
  write_submission(tmp_path, 'sub', [[0, 0]])  # 1 study of 2 trials
  result = score_dir(tmp_path)
  assert any('expects 3 studies per workload; found 1 for sub/criteo1tb' in n
             for n in result.notes)
  assert any('Expecting 5 trials' in n for n in result.notes)
  assert not any('trials' in n for n in score_dir(tmp_path, self_tuning=True).notes
                 if n.startswith('In Study'))
  with pytest.raises(scoring.ScoringError, match='Expecting 8 workloads'):
    score_dir(tmp_path, strict=True)


def test_one_study_runs_give_one_note_for_all_submissions(tmp_path):
  for name in ('a', 'b', 'c', 'd'):
    write_submission(tmp_path, name, [[0]])
  notes = [n for n in score_dir(tmp_path, self_tuning=True).notes if 'studies' in n]
  assert notes == ['v0.6 expects 3 studies per workload; found 1 for a/criteo1tb, b/criteo1tb, '
                   'c/criteo1tb, d/criteo1tb: the medians are over 1 study']


def test_self_tuning_budget_factor(tmp_path):
  # V100 criteo budget 7703 s: a hit at 9000 s counts only with the 1.5x self-tuning budget.
  write_submission(tmp_path, 'sub', [[1]] * 3, times=(100, 9000, 9100))
  assert score_dir(tmp_path).raw_times.loc['sub', 'criteo1tb'] == math.inf
  assert score_dir(tmp_path).trials['reached_after_budget'].all()
  (note,) = [n for n in score_dir(tmp_path).notes if 'at or after their budget' in n]
  assert note.startswith('3 trial(s) reach the target only at or after their budget')
  assert 'sub/criteo1tb (3)' in note and '--hardware none' in note
  assert not any('after their budget' in n for n in score_dir(tmp_path, self_tuning=True).notes)
  assert score_dir(tmp_path, self_tuning=True).raw_times.loc['sub', 'criteo1tb'] == 9000
  assert score_dir(tmp_path, hardware_arg='none').raw_times.loc['sub', 'criteo1tb'] == 9000
  # v0.5: x3 (3 studies say v0.6, so re-scoring as v0.5 needs the override).
  budgets = score_dir(tmp_path, version='v0.5', self_tuning=True,
                      override_rules=True).trials['budget_s']
  assert set(budgets) == {3 * 7703}


def test_workload_without_target_is_an_error_naming_where_it_looked(tmp_path):
  write_submission(tmp_path / 'exp', 'sub', [[0]] * 3)
  write_study(tmp_path / 'exp', 'sub', 'study_0', [0], workload='mystery')
  with pytest.raises(scoring.ScoringError,
                     match=r"no target for workload\(s\) \['mystery'\].*targets.json in "
                     + str(tmp_path / 'exp')):
    score_dir(tmp_path / 'exp', self_tuning=True)


def test_targets_file_errors_name_the_problem(tmp_path):
  path = tmp_path / 't.json'
  path.write_text(json.dumps({'w': {'metric': 'validation/loss', 'target': 1,
                                    'minimize': False}}))
  with pytest.raises(ValueError, match='contradicts'):
    targets.load_targets_file(str(path))
  path.write_text(json.dumps({'w': {'metric': 'validation/perplexity', 'target': 1}}))
  with pytest.raises(ValueError, match='minimize'):
    targets.load_targets_file(str(path))
  path.write_text(json.dumps({'w': {'metric': 'validation/perplexity', 'target': 1,
                                    'minimize': True, 'max_runtime_sec': 60}}))
  assert targets.load_targets_file(str(path))['w'].max_runtime_sec == 60


def test_score_cli_writes_files_and_prints_table(tmp_path, capsys):
  write_submission(tmp_path / 'runs', 'nadamw', [[0]] * 3)
  out = tmp_path / 'out'
  assert score.main(['--submission_dir', str(tmp_path / 'runs'), '--output_dir', str(out),
                     '--self_tuning']) == 0
  printed = capsys.readouterr().out
  assert '| nadamw' in printed and '0.125' in printed
  assert '8xV100-16GB' in printed and '11554.5' in printed  # budget stated
  for name in ('scores.csv', 'time_to_targets.csv', 'performance_profile_score.csv',
               'trials.csv', 'studies.csv', 'budgets.csv', 'scoring.json'):
    assert (out / name).exists(), name
  summary = json.loads((out / 'scoring.json').read_text())
  assert summary['scores'] == {'nadamw': 0.125}
  assert summary['budgets'][0]['hardware'] == '8xV100-16GB'


def test_score_cli_reports_errors(tmp_path, capsys):
  assert score.main(['--submission_dir', str(tmp_path), '--output_dir', str(tmp_path)]) == 1
  assert 'no trial_<k> directories' in capsys.readouterr().err


def test_tie_break_listdir_follows_directory_listing(tmp_path):
  # Trials 1 and 2 both first hit at eval 1, at different times.
  fx.write_trial(tmp_path, 'sub', 'study_0', 'criteo1tb', 1, (100, 300), fx.curve(2, 1, CRITEO))
  fx.write_trial(tmp_path, 'sub', 'study_0', 'criteo1tb', 2, (100, 200), fx.curve(2, 1, CRITEO))
  by_number = score_dir(tmp_path, self_tuning=True).studies.iloc[0]
  assert (by_number.chosen_trial, by_number.time_s) == (1, 300.0)
  listing = os.listdir(tmp_path / 'sub' / 'study_0' / 'criteo1tb_jax')
  first = int(listing[0].split('_')[1])
  by_listing = score_dir(tmp_path, self_tuning=True, tie_break='listdir').studies.iloc[0]
  assert by_listing.chosen_trial == first
  assert by_listing.time_s == {1: 300.0, 2: 200.0}[first]


def _write_workloads(root, hits, studies=3):
  """hits: {(submission, workload): hit index or None}, AlgoPerf targets and metrics."""
  for (sub, workload), hit in hits.items():
    t = targets.ALGOPERF_TARGETS[workload]
    for s in range(studies):
      fx.write_trial(root, sub, f'study_{s}', workload, 1, (100, 200),
                     fx.curve(2, hit, t.target, t.minimize), metric=t.metric, ruleset='self')


def test_v06_any_registry_variant_voids_its_base_when_missed(tmp_path):
  # wmt_post_ln is not a v0.5 held-out workload; under v0.6 AlgoPerf applies the rules to
  # every registry variant in the logs, with the variant class' target (30.0779).
  _write_workloads(tmp_path, {('a', 'wmt'): 0, ('a', 'wmt_post_ln'): None,
                              ('b', 'wmt'): 1, ('b', 'wmt_post_ln'): 0})
  result = score_dir(tmp_path)
  assert result.settings['variants'] == ['wmt_post_ln']
  assert result.raw_times.loc['a', 'wmt'] == 100
  assert result.times.loc['a', 'wmt'] == math.inf  # rule B
  assert result.times.loc['b', 'wmt'] == 200
  assert not any('no target' in n for n in result.notes)


def test_v06_variant_is_void_when_its_base_missed(tmp_path):
  _write_workloads(tmp_path, {('a', 'ogbg'): None, ('a', 'ogbg_gelu'): 0})
  result = score_dir(tmp_path)
  times = scoring.apply_variant_rules(result.raw_times, result.settings['variants'])
  assert times.loc['a', 'ogbg_gelu'] == math.inf  # rule A


def test_v05_other_variants_are_reported_not_applied(tmp_path):
  # v0.5 restricts the frame to base + held-out workloads: wmt_post_ln's miss voids nothing.
  # (wmt_glu_tanh, the held-out wmt variant, must be reached or it voids wmt.)
  _write_workloads(tmp_path, {('a', 'wmt'): 0, ('a', 'wmt_post_ln'): None,
                              ('a', 'wmt_glu_tanh'): 0}, studies=5)
  result = score_dir(tmp_path)
  assert result.settings['version'] == 'v0.5'
  assert result.times.loc['a', 'wmt'] == 100
  assert any("['wmt_post_ln'] are AlgoPerf variants outside this version" in n
             for n in result.notes)
