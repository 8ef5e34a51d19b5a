"""Regression: excerpts of real published AlgoPerf logs (tests/data/published/SOURCE.md)
score to their known values, under the rules their logs state, with AlgoPerf's trial choice."""
import os

import numpy as np
import pandas as pd
import pytest

from analysis import rules
from analysis import score
from analysis import scoring

DATA = os.path.join(os.path.dirname(__file__), 'data', 'published')
V05_SELF = os.path.join(DATA, 'v05_self_tuning_criteo')
V06_EXTERNAL = os.path.join(DATA, 'v06_external_tuning_fastmri')


def profile_score(ratio: float, num_workloads: int = 8) -> float:
  """Score of a submission whose only finite ratio is `ratio` (one workload of 8)."""
  taus = np.linspace(1, 4, 100)
  return float(np.trapezoid((taus >= ratio) / num_workloads, taus) / 3)


def spec_best_trial(group: pd.DataFrame, metric: str, target: float, minimize: bool):
  """The best trial as ALGOPERF.md's scoring section defines it, written independently of
  ours: the trial whose first eval at or beyond the target has the smallest index, the
  first listed among equals; (trial, eval index), or (-1, -1) when none reaches it."""
  best = None
  for trial, values in group[metric].items():
    hits = [i for i, v in enumerate(values) if (v <= target if minimize else v >= target)]
    if hits and (best is None or hits[0] < best[1]):
      best = (trial, hits[0])
  return best or (-1, -1)


def test_v05_self_tuning_criteo_scores_with_no_flags():
  scored = score.score_directory([V05_SELF])
  result = scored.result
  assert result.settings['version'] == 'v0.5'  # 5 studies (criteo's budget is 7703 s in both)
  assert result.settings['ruleset'] == 'self-tuning'  # flags: tuning_ruleset 'self'
  raw = result.raw_times
  assert raw.loc['schedule_free_adamw', 'criteo1tb'] == pytest.approx(5763.72, abs=0.01)
  assert raw.loc['baseline', 'criteo1tb'] == pytest.approx(5794.33, abs=0.01)
  assert raw.loc['schedule_free_adamw', 'criteo1tb_embed_init'] == pytest.approx(1924.59,
                                                                              abs=0.01)
  assert raw.loc['baseline', 'criteo1tb_embed_init'] == pytest.approx(503.145, abs=0.001)
  sf = result.studies[(result.studies['submission'] == 'schedule_free_adamw')
                      & (result.studies['workload'] == 'criteo1tb')]
  np.testing.assert_allclose(sf['time_s'], [4565.02, 5163.86, 6482.91, 5763.72, 6845.33],
                             atol=0.01)
  assert result.scores['schedule_free_adamw'] == 0.125
  assert result.scores['baseline'] == pytest.approx(profile_score(5794.33474445343 /
                                                                  5763.720262289047), rel=1e-12)
  assert not result.ties


def test_v05_logs_refuse_v06_rules_naming_what_the_logs_say():
  with pytest.raises(rules.RulesError, match=r'--version v0.6 contradicts the logs, which say '
                     r'benchmark version v0.5 \(5 studies per workload\)'):
    score.score_directory([V05_SELF], version='v0.6')
  with pytest.raises(rules.RulesError, match='--tuning_ruleset external contradicts'):
    score.score_directory([V05_SELF], self_tuning=False)
  forced = score.score_directory([V05_SELF], version='v0.6', override_rules=True).result
  assert forced.settings['version'] == 'v0.6'
  assert any('--override_rules' in n for n in forced.notes)


def test_v06_external_fastmri_tie_is_named_with_both_rules_scores():
  result = score.score_directory([V06_EXTERNAL]).result
  assert result.settings['version'] == 'v0.6'  # fastmri budget 4430 s in meta_data
  assert result.settings['ruleset'] == 'external tuning'
  assert result.raw_times.loc['shampoo', 'fastmri'] == pytest.approx(841.177, abs=0.001)
  assert result.raw_times.loc['baseline', 'fastmri'] == pytest.approx(873.26, abs=0.01)
  shampoo0 = result.studies[(result.studies['submission'] == 'shampoo')
                            & (result.studies['study'] == 'study_0')].iloc[0]
  assert (shampoo0['chosen_trial'], shampoo0['eval_index'], shampoo0['tied_trials']) == (
      2, 7, '2,5')
  assert any(t.startswith('shampoo/fastmri/study_0: trials 2, 5 first reach the target at '
                          'eval 7') for t in result.ties)
  assert result.alternative_scores is not None
  note = next(n for n in result.notes if 'tie(s) between trials' in n)
  assert 'With --tie_break listdir' in note and 'shampoo/fastmri/study_0' in note
  assert result.notes[0] is note  # first, so a truncated note list still shows it
  line = score.rules_line(result)
  assert "Tie rule 'trial_number' decided" in line and '--tie_break listdir gives' in line


@pytest.mark.parametrize('order', ['trial_number', 'reversed'])
def test_trial_choice_is_algoperfs_for_the_same_row_order(order):
  # AlgoPerf's choice depends only on row order when trials tie; given the same order
  # (trial number; or reversed, as some filesystem might list them) we choose the same.
  result = score.score_directory([V06_EXTERNAL]).result
  trials = result.trials
  for (sub, study), group in trials.groupby(['submission', 'study']):
    group = group.sort_values('trial', ascending=(order == 'trial_number'))
    frame = pd.DataFrame({
        'validation/ssim': [np.asarray(pd.read_csv(os.path.join(p, 'eval_measurements.csv'))
                                       ['validation/ssim']) for p in group['path']],
        'score': [np.asarray(pd.read_csv(os.path.join(p, 'eval_measurements.csv'))['score'])
                  for p in group['path']]}, index=list(group['trial']))
    trial, index = spec_best_trial(frame, 'validation/ssim', 0.723653, minimize=False)
    ours = scoring.best_trial(list(group['first_hit_index']))
    assert group['trial'].iloc[ours] == trial, (sub, study)
    assert group['first_hit_index'].iloc[ours] == index
