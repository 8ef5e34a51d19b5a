"""AlgoPerf v0.6 (and v0.5) scoring of loaded trials.

Mirrors `scoring/performance_profile.py` and `scoring/score_submissions.py` at
algoperf commit 2c90454f (ALGOPERF.md section 6):
  1. per trial, the first eval i with validation metric <= target (minimised
     metric, AlgoPerf's substring rule) or >= target (maximised); NaN never hits;
  2. per study, the trial with the smallest first-hit EVAL INDEX (ties: first
     trial), time = its `score` (accumulated_submission_time) at that index; inf
     when no trial hits;
  3. per workload, np.median over studies (inf takes part);
  4. held-out variant rule A (variant -> inf if its base is inf/NaN), then the 4x
     cut (t > 4 * min over submissions -> inf), then rule B (base -> inf if its
     variant is inf/NaN); variants then leave the frame;
  5. ratio r = t / min over submissions (or / the reference submission), with
     pandas `update` semantics: a NaN ratio (inf/inf) keeps the raw time;
  6. rho_s(tau) = #{w : r_sw <= tau} / denominator on tau = linspace(1, 4, 100);
  7. score = trapezoid(rho, tau) / (4 - 1).
Version rules: v0.6 expects 3 studies x 5 trials (trials not checked under
self-tuning), self-tuning budget factor 1.5; v0.5 expects 5 studies, uses the
v0.5 held-out sample and factor 3. Count mismatches warn; `strict` raises.

Deviations from AlgoPerf's code:
  - Target check: `<=`/`>=` as AlgoPerf's scoring, while AlgoPerf's runner stops
    on a strict `<` (criteo); an eval exactly at the target counts here but did
    not stop the run.
  - Budget: a hit counts only if its `score` < the trial's budget (its own
    hardware's budget, see analysis.hardware; the runner evaluates only while
    accumulated_submission_time < budget, so this is the eval the runner would
    have made). AlgoPerf's scoring applies no budget; on logs its runner wrote on
    the table's hardware this changes nothing (checked on every published set). Hits
    lost to the cut are noted. Budget None disables the cut.
  - Evals with a NaN/inf `score` never count as hits (AlgoPerf: NaN time).
  - A trial without eval_measurements.csv is dropped, as in AlgoPerf (a study left
    without trials then leaves the median); see analysis.logs.
  - Trial order for equal first-hit indices ("ties"): trial number, then path
    (deterministic). AlgoPerf takes the first row of its frame, i.e. os.listdir
    order, which depends on the filesystem; `tie_break='listdir'` reproduces it on
    the current filesystem. Where there is no tie both rules, and AlgoPerf, agree.
    When a tie between trials with different times decided a study, the result
    names it (`ties`) and the scores under the other rule (`alternative_scores`).
    This matters on real logs: the official v0.6 external leaderboard scores the
    NAdamW baseline 0.4590; 'listdir' gives 0.458965 here, 'trial_number' 0.471591
    (shampoo's fastmri study_0: trials 2 and 5 both first hit at eval 7).
  - A (submission, workload) without runs is inf (AlgoPerf: NaN from the
    pivot; identical effect on rho and score).
  - Denominator: AlgoPerf divides by 8 and raises KeyError when a base workload
    is missing. Here, when every scored workload is an AlgoPerf workload, the
    denominator is the 8 base workloads and missing ones count as not reached;
    otherwise (workloads from a targets file, e.g. criteo_embedded) it is the set
    of scored non-variant workloads. `ScoreResult.denominator` states which.
  - Variants: v0.6 applies rules A/B to every AlgoPerf registry variant found in
    the logs (as AlgoPerf's code, whose held-out list is empty, does), each with
    its class' target (analysis.targets); v0.5 to the held-out sample (AlgoPerf
    reads held_out_workloads_algoperf_v05.json from the working directory; here
    it is built in), other variants' times are reported but leave the frame. Workloads defined only by
    a targets file are never variants (AlgoPerf's substring rule would make
    e.g. 'ogbg_small' a variant of ogbg).
  - A workload without a target raises ScoringError (AlgoPerf crashes); the
    workload-count check only runs when scoring AlgoPerf workloads.
  - A metric column that is NaN at every eval never reaches the target (as in
    AlgoPerf) and is noted.
  - Reference submission: kept as in AlgoPerf, including that a finite time
    over an infinite reference time gives ratio 0, which counts as <= tau for
    every tau; a note is added when that happens.
  - numpy.trapezoid instead of the removed numpy.trapz (same numbers).
"""
import math
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis import hardware
from analysis import logs
from analysis import targets as targets_lib

TAUS = np.linspace(1.0, 4.0, 100)
TIE_BREAKS = ('trial_number', 'listdir')


class Rules(NamedTuple):
  version: str
  num_studies: int
  num_trials: int
  self_tuning_factor: float  # budget multiplier of the self-tuning ruleset
  held_out: Tuple[str, ...]  # non-empty only in v0.5


RULES = {
    'v0.6': Rules('v0.6', 3, 5, 1.5, ()),
    'v0.5': Rules('v0.5', 5, 5, 3.0, targets_lib.V05_HELD_OUT_WORKLOADS),
}


class ScoringError(ValueError):
  """Raised for count mismatches under `strict`, or an unusable reference."""


class ScoreResult(NamedTuple):
  trials: pd.DataFrame  # one row per trial
  studies: pd.DataFrame  # one row per (submission, workload, study)
  raw_times: pd.DataFrame  # submissions x workloads, median over studies (s), as time_to_targets.csv
  times: pd.DataFrame  # submissions x profile workloads after variant rules and 4x cut (s)
  ratios: pd.DataFrame  # submissions x profile workloads
  profile: pd.DataFrame  # submissions x TAUS, rho_s(tau)
  scores: pd.Series  # benchmark score per submission, in [0, 1]
  denominator: Tuple[str, ...]  # workloads rho divides by
  denominator_note: str
  settings: Dict[str, object]
  notes: List[str]
  ties: List[str] = []  # one sentence per study a tie between trials decided
  alternative_scores: Optional[pd.Series] = None  # scores under the other tie rule, if ties


def reached(values: np.ndarray, target: float, minimize: bool) -> np.ndarray:
  """Boolean per eval: metric <= target (minimize) or >= target; NaN -> False."""
  op = np.less_equal if minimize else np.greater_equal
  with np.errstate(invalid='ignore'):
    return op(np.asarray(values, dtype=float), target)


def first_hit_index(values: np.ndarray, times: np.ndarray, target: float, minimize: bool,
                    budget_sec: Optional[float] = None) -> int:
  """Index of the first eval reaching the target with a finite time (< budget); -1 if none."""
  times = np.asarray(times, dtype=float)
  hit = reached(values, target, minimize) & np.isfinite(times)
  if budget_sec is not None:
    hit &= times < budget_sec
  return int(np.argmax(hit)) if hit.any() else -1


def best_trial(first_hits: Sequence[int]) -> Optional[int]:
  """Position of the trial with the smallest first-hit index >= 0 (ties: first)."""
  hits = [(index, position) for position, index in enumerate(first_hits) if index >= 0]
  return min(hits)[1] if hits else None


def _void_if_missed(times: pd.DataFrame, keep: str, check: str) -> None:
  """AlgoPerf's variant_criteria_filter: times[keep] = inf where times[check] is inf/NaN."""
  missed = np.isinf(times[check]) | times[check].isna()
  times.loc[missed, keep] = np.inf


def apply_four_x_cut(times: pd.DataFrame) -> pd.DataFrame:
  """t > 4 * (min over submissions, NaN skipped) -> inf, per workload."""
  cut = times.copy()
  cut[times.gt(4 * times.min(axis=0), axis=1)] = np.inf
  return cut


def apply_variant_rules(times: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
  """Rule A, 4x cut, rule B (see module docstring); returns all columns."""
  out = times.copy()
  for variant in variants:
    _void_if_missed(out, variant, targets_lib.get_base_workload_name(variant))
  out = apply_four_x_cut(out)
  for variant in variants:
    _void_if_missed(out, targets_lib.get_base_workload_name(variant), variant)
  return out


def performance_ratios(times: pd.DataFrame, reference: Optional[str] = None) -> pd.DataFrame:
  """t / min over submissions (or / reference's t); NaN ratios keep t (pandas update)."""
  if reference is None:
    ratio = times.div(times.min(axis=0), axis=1)
  else:
    if reference not in times.index:
      raise ScoringError(f'reference submission {reference!r} not among {list(times.index)}')
    ratio = times.div(times.loc[reference, :], axis=1)
  return ratio.where(ratio.notna(), times)


def performance_profile(ratios: pd.DataFrame, num_workloads: int,
                        taus: np.ndarray = TAUS) -> pd.DataFrame:
  """rho_s(tau) = #{w: r_sw <= tau} / num_workloads; columns are the taus."""
  rho = {tau: (ratios <= tau).sum(axis=1) / num_workloads for tau in taus}
  return pd.DataFrame(rho, index=ratios.index)


def benchmark_scores(profile: pd.DataFrame) -> pd.Series:
  """Normalised area under rho: trapezoid(rho, tau) / (tau_max - tau_min)."""
  taus = np.asarray(profile.columns, dtype=float)
  area = np.trapezoid(profile.to_numpy(dtype=float), x=taus, axis=1)
  return pd.Series(area / (taus.max() - taus.min()), index=profile.index, name='score')


def _problem(strict: bool, notes: List[str], message: str) -> None:
  if strict:
    raise ScoringError(message)
  notes.append(message)


def _best_value(values: np.ndarray, times: np.ndarray, minimize: bool) -> Tuple[float, float]:
  if not np.isfinite(values).any():
    return math.nan, math.nan
  index = int(np.nanargmin(values) if minimize else np.nanargmax(values))
  return float(values[index]), float(times[index])


def _trial_row(trial: logs.Trial, target: targets_lib.Target,
               budget: hardware.Budget) -> Dict[str, object]:
  evals = trial.evals
  if len(evals) and target.metric not in evals:
    raise logs.LogError(f'{trial.path}/{logs.EVAL_FILE}: no {target.metric!r} column '
                        f'(columns: {list(evals.columns)})')
  values = evals[target.metric].to_numpy(dtype=float) if len(evals) else np.zeros(0)
  times = evals[logs.TIME_COLUMN].to_numpy(dtype=float) if len(evals) else np.zeros(0)
  index = first_hit_index(values, times, target.target, target.minimize, budget.seconds)
  unbudgeted = first_hit_index(values, times, target.target, target.minimize)
  best, time_to_best = _best_value(values, times, target.minimize)
  steps = (evals['global_step'].to_numpy(dtype=float) if 'global_step' in evals
           else np.full(len(evals), math.nan))
  return {
      'submission': trial.submission, 'workload': trial.workload,
      'framework': trial.framework, 'study': trial.study, 'trial': trial.trial,
      'hardware': budget.hardware, 'budget_s': budget.seconds, 'budget_source': budget.source,
      'num_evals': len(evals), 'metric': target.metric, 'target': target.target,
      'minimize': target.minimize,
      'reached': index >= 0, 'first_hit_index': index,
      'time_to_target_s': float(times[index]) if index >= 0 else math.inf,
      'steps_to_target': float(steps[index]) if index >= 0 else math.inf,
      'steps_to_target_any_time': float(steps[unbudgeted]) if unbudgeted >= 0 else math.inf,
      'metric_all_nan': bool(len(values)) and not np.isfinite(values).any(),
      'reached_after_budget': index < 0 <= unbudgeted,
      'best_metric': best, 'time_to_best_s': time_to_best,
      'step_time_s': hardware.step_time(evals), 'preempted': trial.preempted,
      'path': trial.path, 'listing_rank': trial.listing_rank,
  }


def _study_rows(trial_rows: pd.DataFrame, tie_break: str
                ) -> Tuple[List[Dict[str, object]], List[str]]:
  """One row per study, and a sentence for each study a tie decided."""
  rows, ties = [], []
  keys = ['submission', 'workload', 'study']
  for (submission, workload, study), group in trial_rows.groupby(keys, sort=True):
    if tie_break == 'listdir':
      ranks = list(group['listing_rank'])
      group = group.iloc[sorted(range(len(group)), key=ranks.__getitem__)]
    position = best_trial(list(group['first_hit_index']))
    chosen = None if position is None else group.iloc[position]
    tied = (group[group['first_hit_index'] == chosen['first_hit_index']]
            if chosen is not None else group.iloc[:0])
    if tied['time_to_target_s'].nunique() > 1:
      others = ', '.join(f'trial {int(r.trial)} {r.time_to_target_s:g} s'
                         for r in tied.itertuples() if r.path != chosen['path'])
      ties.append(f'{submission}/{workload}/{study}: trials '
                  f'{", ".join(str(int(t)) for t in sorted(tied["trial"]))} first reach the '
                  f'target at eval {int(chosen["first_hit_index"])}; tie rule {tie_break!r} '
                  f'took trial {int(chosen["trial"])} ({chosen["time_to_target_s"]:g} s; '
                  f'not {others})')
    rows.append({
        'submission': submission, 'workload': workload, 'study': study,
        'num_trials': len(group),
        'chosen_trial': None if chosen is None else int(chosen['trial']),
        'chosen_path': None if chosen is None else chosen['path'],
        'eval_index': -1 if chosen is None else int(chosen['first_hit_index']),
        'time_s': math.inf if chosen is None else float(chosen['time_to_target_s']),
        'steps': math.inf if chosen is None else float(chosen['steps_to_target']),
        'steps_any_time': float(group['steps_to_target_any_time'].min()),
        'tied_trials': ','.join(str(int(t)) for t in sorted(tied['trial'])) if len(tied) > 1
                       else '',
    })
  return rows, ties


def _check_counts(trial_rows: pd.DataFrame, rules: Rules, self_tuning: bool, strict: bool,
                  algoperf_mode: bool, notes: List[str]) -> None:
  """AlgoPerf's count checks; study-count mismatches are gathered into one note."""
  expected_workloads = len(targets_lib.BASE_WORKLOADS) + len(rules.held_out)
  few_studies = {}
  for submission, by_sub in trial_rows.groupby('submission'):
    num_workloads = by_sub['workload'].nunique()
    if algoperf_mode and num_workloads != expected_workloads:
      _problem(strict, notes, f'Expecting {expected_workloads} workloads but found '
               f'{num_workloads} workloads for {submission}.')
    for workload, by_wl in by_sub.groupby('workload'):
      num_studies = by_wl['study'].nunique()
      if num_studies != rules.num_studies:
        if strict:
          raise ScoringError(f'Expecting {rules.num_studies} studies for workload {workload} '
                             f'but found {num_studies} studies for {submission}.')
        few_studies.setdefault(num_studies, []).append(f'{submission}/{workload}')
      for study, by_study in by_wl.groupby('study'):
        if len(by_study) != rules.num_trials and not self_tuning:
          _problem(strict, notes, f'In Study {study}: Expecting {rules.num_trials} trials '
                   f'for workload {workload} but found {len(by_study)} trials for '
                   f'{submission}.')
  for count, where in sorted(few_studies.items()):
    notes.append(f'{rules.version} expects {rules.num_studies} studies per workload; found '
                 f'{count} for {", ".join(where)}: the medians are over {count} '
                 f'stud{"y" if count == 1 else "ies"}')


def _workload_sets(present: Sequence[str], rules: Rules
                   ) -> Tuple[bool, List[str], List[str], List[str]]:
  """(algoperf_mode, profile workloads, variants, unscored variants)."""
  base = targets_lib.BASE_WORKLOADS
  registry_variants = rules.held_out or targets_lib.ALGOPERF_VARIANTS
  custom = [w for w in present if w not in base and w not in targets_lib.ALGOPERF_VARIANTS
            and w not in rules.held_out]
  if custom:
    profile = sorted(w for w in present if w in base or w in custom)
    variants = [w for w in registry_variants if targets_lib.get_base_workload_name(w) in profile
                and (w in present or w in rules.held_out)]
  else:
    profile = list(base)
    variants = [w for w in registry_variants if w in present or w in rules.held_out]
  unscored = sorted(w for w in present if w not in profile and w not in variants)
  return not custom, profile, variants, unscored


def _median_times(studies: pd.DataFrame, columns: Sequence[str],
                  notes: List[str]) -> pd.DataFrame:
  """submissions x columns: np.median of study times; no runs -> inf (noted)."""
  medians = studies.groupby(['submission', 'workload'])['time_s'].apply(
      lambda s: float(np.median(s.to_numpy())))
  submissions = sorted(studies['submission'].unique())
  raw = pd.DataFrame(np.inf, index=pd.Index(submissions, name='submission'), columns=columns)
  for (submission, workload), value in medians.items():
    raw.loc[submission, workload] = value
  missing = [(s, w) for s in submissions for w in columns if (s, w) not in medians.index]
  if missing:
    notes.append('no runs, counted as not reached (inf): ' +
                 ', '.join(f'{s}/{w}' for s, w in missing))
  return raw


def _denominator(algoperf_mode: bool, present: Sequence[str],
                 profile_workloads: Sequence[str]) -> Tuple[Tuple[str, ...], str]:
  """(workloads rho divides by, a sentence saying which)."""
  if not algoperf_mode:
    return tuple(profile_workloads), (f'{len(profile_workloads)} scored workloads: '
                                      f'{", ".join(profile_workloads)}')
  absent = [w for w in targets_lib.BASE_WORKLOADS if w not in present]
  note = f'{len(targets_lib.BASE_WORKLOADS)} AlgoPerf base workloads'
  if absent:
    note += f' ({", ".join(absent)} without runs: not reached)'
  return tuple(targets_lib.BASE_WORKLOADS), note


def _nan_metric_notes(trial_rows: pd.DataFrame) -> List[str]:
  notes = []
  for (submission, workload), group in trial_rows[trial_rows['metric_all_nan']].groupby(
      ['submission', 'workload']):
    notes.append(f'{submission}/{workload}: {group["metric"].iloc[0]} is NaN at every eval '
                 f'in {len(group)} trial(s) (e.g. {group["path"].iloc[0]}); they count as never '
                 'reaching the target')
  return notes


def _after_budget_note(trial_rows: pd.DataFrame) -> List[str]:
  """One note naming the trials whose only target hits came at or after their budget."""
  late = trial_rows[trial_rows['reached_after_budget']]
  if late.empty:
    return []
  where = ', '.join(f'{s}/{w} ({len(g)})' for (s, w), g in late.groupby(['submission',
                                                                         'workload']))
  return [f'{len(late)} trial(s) reach the target only at or after their budget and count as '
          f'not reached here: {where}. AlgoPerf\'s scoring code applies no budget (its runner '
          'stops at the budget); --hardware none scores without the cut']


def score_trials(trials: Sequence[logs.Trial], targets: Mapping[str, targets_lib.Target],
                 rules: Rules, budgets: Mapping[str, hardware.Budget],
                 self_tuning: bool = False, reference: Optional[str] = None,
                 strict: bool = False, tie_break: str = 'trial_number') -> ScoreResult:
  """Scores trials against targets; `budgets` maps trial path -> Budget.

  `tie_break` orders the trials of a study for equal first-hit indices:
  'trial_number' (then path), or 'listdir', AlgoPerf's literal order (os.listdir,
  filesystem dependent). When a tie decided a study, the scores under the other
  rule are in `alternative_scores`.
  Raises:
    ScoringError: a workload without a target, no trials, or (strict) bad counts.
  """
  if tie_break not in TIE_BREAKS:
    raise ScoringError(f'tie_break must be one of {TIE_BREAKS}, got {tie_break!r}')
  if not trials:
    raise ScoringError('no trials to score')
  no_target = sorted({t.workload for t in trials if t.workload not in targets})
  if no_target:
    raise ScoringError(f'no target for workload(s) {no_target} (not in AlgoPerf\'s table; '
                       'pass a targets file)')
  notes = []
  no_budget = hardware.Budget(None, hardware.UNKNOWN, 'no budget given')
  trial_rows = pd.DataFrame([_trial_row(t, targets[t.workload], budgets.get(t.path, no_budget))
                             for t in trials])
  notes += _after_budget_note(trial_rows) + _nan_metric_notes(trial_rows)
  present = sorted(trial_rows['workload'].unique())
  algoperf_mode, profile_workloads, variants, unscored = _workload_sets(present, rules)
  _check_counts(trial_rows, rules, self_tuning, strict, algoperf_mode, notes)
  if unscored:
    notes.append(f'workload(s) {unscored} are AlgoPerf variants outside this version\'s '
                 'rules: time reported, not in the profile')
  denominator, note = _denominator(algoperf_mode, present, profile_workloads)

  def profile_of(rule: str, notes: List[str]):
    rows, ties = _study_rows(trial_rows, rule)
    studies = pd.DataFrame(rows).astype({'chosen_trial': 'Int64'})
    columns = sorted(set(present) | set(profile_workloads) | set(variants))
    raw = _median_times(studies, columns, notes)
    times = apply_variant_rules(raw, variants)[profile_workloads]
    ratios = performance_ratios(times, reference)
    profile = performance_profile(ratios, len(denominator))
    return studies, raw, times, ratios, profile, benchmark_scores(profile), ties

  studies, raw, times, ratios, profile, scores, ties = profile_of(tie_break, notes)
  alternative = None
  if ties:
    other = next(rule for rule in TIE_BREAKS if rule != tie_break)
    alternative = profile_of(other, [])[5]
    changed = ', '.join(f'{name} {scores[name]:.4f} -> {alternative[name]:.4f}'
                        for name in scores.index if abs(scores[name] - alternative[name]) > 0)
    notes.insert(0, f'{len(ties)} tie(s) between trials decided a study (tie rule {tie_break!r}; '
                 'AlgoPerf takes whichever trial os.listdir lists first, which depends on the '
                 f'filesystem). With --tie_break {other}: ' + (changed or 'same scores') +
                 '. Ties: ' + '; '.join(ties))
  if reference is not None and ((ratios == 0) & np.isinf(times.loc[reference])).any().any():
    notes.append(f'reference {reference!r} missed a target another submission reached; as '
                 'in AlgoPerf that ratio is 0 and counts as <= tau for every tau')
  settings = {
      'version': rules.version, 'ruleset': 'self-tuning' if self_tuning else 'external tuning',
      'reference': reference or 'fastest submission per workload', 'strict': strict,
      'taus': f'linspace(1, 4, {len(TAUS)})', 'variants': variants, 'tie_break': tie_break,
  }
  return ScoreResult(trial_rows, studies, raw, times, ratios, profile, scores, denominator,
                     note, settings, notes, ties, alternative)
