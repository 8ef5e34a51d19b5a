"""Score experiment directories like AlgoPerf: `python -m analysis.score`.

  python -m analysis.score --submission_dir DIR [DIR ...] --output_dir OUT \
      [--targets FILE] [--version v0.6|v0.5] [--tuning_ruleset self|external | --self_tuning] \
      [--override_rules] [--reference SUB] [--hardware auto|none|PROFILE] \
      [--hardware_table FILE ...] [--strict] [--split_frameworks] \
      [--exclude_submissions A,B] [--tie_break trial_number|listdir]

Version and ruleset are read from the logs (analysis.rules); flags only confirm
them, or with --override_rules replace them. Targets: AlgoPerf's table plus the
nearest targets.json in or above --submission_dir, or --targets.
Writes to OUT: scores.csv, time_to_targets.csv (median over studies, before the
variant rules and 4x cut, as AlgoPerf), time_to_targets_scored.csv,
performance_profile_score.csv, trials.csv, studies.csv, budgets.csv,
steps_to_target.csv and scoring.json (settings, denominator, budgets, ties,
notes); prints the leaderboards. Scoring rules and every deviation from
AlgoPerf: analysis/scoring.py.
"""
import argparse
import json
import logging
import math
import os
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from analysis import hardware
from analysis import logs
from analysis import rules as rules_lib
from analysis import scoring
from analysis import tables
from analysis import targets as targets_lib

HARDWARE_AUTO = 'auto'  # each trial against the budget of its own logged hardware
HARDWARE_NONE = 'none'  # no budget cut (AlgoPerf's scoring; its runner enforces budgets)


class Scored(NamedTuple):
  result: scoring.ScoreResult
  experiment: logs.Experiment
  targets: Dict[str, targets_lib.Target]


def resolve_budgets(trials: Sequence[logs.Trial], targets: Dict[str, targets_lib.Target],
                    rules: scoring.Rules, self_tuning: bool, hardware_arg: str = HARDWARE_AUTO,
                    table: Optional[Dict[str, dict]] = None) -> Dict[str, hardware.Budget]:
  """Trial path -> Budget (see analysis.hardware for the resolution order)."""
  if hardware_arg == HARDWARE_NONE:
    off = hardware.Budget(None, 'not used', 'budget cut disabled (--hardware none)')
    return {t.path: off for t in trials}
  table = hardware.load_table() if table is None else table
  override = None if hardware_arg == HARDWARE_AUTO else hardware_arg
  factor = rules.self_tuning_factor if self_tuning else 1.0
  return {t.path: hardware.resolve_budget(t, rules.version, factor, table,
                                          targets.get(t.workload), override)
          for t in trials}


def _meta_notes(trials: Sequence[logs.Trial], budgets: Dict[str, hardware.Budget]) -> List[str]:
  """One note per (submission, workload) with trials lacking meta_data, naming the budget used."""
  missing = {}
  for t in trials:
    if not t.meta:
      missing.setdefault((t.submission, t.workload), []).append(t)
  notes = []
  for (submission, workload), group in sorted(missing.items()):
    budget = budgets[group[0].path]
    used = ('no budget cut' if budget.seconds is None else
            f'budget {budget.seconds:g} s ({budget.source})')
    notes.append(f'{submission}/{workload}: {len(group)} trial(s) without meta_data_<p>.json '
                 f'(e.g. {group[0].path}): hardware and the runner\'s budget unknown; {used}')
  return notes


def _targets(submission_dirs: Sequence[str], targets_file: Optional[str],
             trials: Sequence[logs.Trial]) -> tuple:
  """(targets, where they came from); a workload without one raises, naming where it looked."""
  searched = []
  if targets_file is None:
    targets_file, searched = targets_lib.find_targets_file(submission_dirs)
  targets = targets_lib.get_targets(targets_file)
  missing = sorted({t.workload for t in trials if t.workload not in targets})
  if missing:
    looked = (f'the targets file {targets_file}' if targets_file else
              f'a {targets_lib.TARGETS_FILENAME} in ' + ', '.join(searched))
    raise scoring.ScoringError(
        f'no target for workload(s) {missing}: not in AlgoPerf\'s table and not in {looked}. '
        'Pass --targets FILE (format: analysis/targets.py).')
  return targets, targets_file or 'AlgoPerf table'


def score_directory(submission_dirs: Sequence[str], targets_file: Optional[str] = None,
                    version: Optional[str] = None, self_tuning: Optional[bool] = None,
                    reference: Optional[str] = None, hardware_arg: str = HARDWARE_AUTO,
                    hardware_tables: Sequence[str] = (), strict: bool = False,
                    split_frameworks: bool = False, exclude_submissions: Sequence[str] = (),
                    tie_break: str = 'trial_number', override_rules: bool = False) -> Scored:
  """Loads, detects the rules, resolves budgets and scores; see the module docstring.

  `version` / `self_tuning`: None reads them from the logs (analysis.rules); a value
  that contradicts the logs raises rules.RulesError unless `override_rules`.
  `targets_file`: None looks for a targets.json beside the runs (nearest ancestor).
  """
  if version is not None and version not in scoring.RULES:
    raise ValueError(f'unknown version {version!r}; one of {sorted(scoring.RULES)}')
  experiment = logs.load_experiment(submission_dirs, split_frameworks, exclude_submissions)
  if not experiment.trials:
    raise scoring.ScoringError('no trials with an eval_measurements.csv under '
                               f'{list(submission_dirs)}')
  targets, targets_source = _targets(submission_dirs, targets_file, experiment.trials)
  table = hardware.load_table(hardware_tables)
  detected = rules_lib.detect(experiment.trials, table, override_rules)
  flag_ruleset = None if self_tuning is None else ('self' if self_tuning else 'external')
  version, ruleset, rule_notes = rules_lib.resolve(detected, version, flag_ruleset,
                                                   override_rules)
  rules, self_tuning = scoring.RULES[version], ruleset == 'self'
  budgets = resolve_budgets(experiment.trials, targets, rules, self_tuning, hardware_arg, table)
  result = scoring.score_trials(experiment.trials, targets, rules, budgets, self_tuning,
                                reference, strict, tie_break)
  settings = dict(result.settings, submission_dirs=list(submission_dirs),
                  targets=targets_source, hardware=hardware_arg,
                  hardware_tables=[hardware.DEFAULT_TABLE] + list(hardware_tables),
                  rules_from=rules_lib.provenance(detected, version, ruleset))
  notes = rule_notes + _meta_notes(experiment.trials, budgets) + result.notes
  return Scored(result._replace(settings=settings, notes=notes), experiment, targets)


def leaderboard(result: scoring.ScoreResult) -> pd.DataFrame:
  """Rank (equal scores share one), score, #workloads reached within 4x of the best,
  scored median times (s)."""
  board = pd.DataFrame({'score': result.scores})
  board['within_4x'] = [
      f'{int(np.isfinite(result.times.loc[s]).sum())}/{len(result.denominator)}'
      for s in board.index]
  board = board.join(result.times.add_prefix('t_'))
  if result.alternative_scores is not None:
    other = next(r for r in scoring.TIE_BREAKS if r != result.settings['tie_break'])
    board[f'score_tie_break_{other}'] = result.alternative_scores
  board = board.sort_values('score', ascending=False, kind='stable')
  board.insert(0, 'rank', board['score'].rank(method='min', ascending=False).astype(int))
  board.index.name = 'submission'
  return board


def steps_table(result: scoring.ScoreResult) -> pd.DataFrame:
  """Load-independent comparison, one row per (workload, submission), ranked by steps
  (equal steps share a rank, as do all that did not reach the target).

  Columns: median over studies of the fewest steps a trial of the study took to the
  target (the `global_step` of its first eval reaching it, at any time: the time budget
  would let the machine's load decide; inf: not reached), studies reached so, median time
  to target (s; AlgoPerf's, within the budget), median seconds per step over all trials
  (accumulated_submission_time / global_step).
  """
  rows = []
  for (workload, submission), group in result.studies.groupby(['workload', 'submission']):
    trials = result.trials[(result.trials['workload'] == workload) &
                           (result.trials['submission'] == submission)]
    steps = group['steps_any_time'].to_numpy(dtype=float)
    rows.append({
        'workload': workload, 'submission': submission,
        'steps_to_target': float(np.median(steps)),
        'reached': f'{int(np.isfinite(steps).sum())}/{len(group)} studies',
        'time_to_target_s': float(np.median(group['time_s'].to_numpy(dtype=float))),
        's_per_step': float(np.nanmedian(trials['step_time_s'].to_numpy(dtype=float)))
                      if trials['step_time_s'].notna().any() else math.nan,
    })
  table = pd.DataFrame(rows).sort_values(['workload', 'steps_to_target', 'submission'],
                                         kind='stable')
  ranks = table.groupby('workload')['steps_to_target'].rank(method='min', na_option='bottom')
  table.insert(1, 'rank', ranks.astype(int))
  table['steps_to_target'] = table['steps_to_target'].map(
      lambda v: v if math.isfinite(v) else 'not reached')
  table['time_to_target_s'] = table['time_to_target_s'].map(
      lambda v: v if math.isfinite(v) else 'not reached')
  return table.set_index('workload')


def budget_summary(result: scoring.ScoreResult) -> pd.DataFrame:
  """Distinct (submission, workload, hardware, budget, source) with trial counts."""
  keys = ['submission', 'workload', 'hardware', 'budget_s', 'budget_source']
  rows = result.trials.assign(budget_s=result.trials['budget_s'].fillna(np.inf))
  summary = rows.groupby(keys, dropna=False).size().rename('trials').reset_index()
  summary['budget_s'] = summary['budget_s'].replace(np.inf, np.nan)
  return summary


def write_scores(scored: Scored, output_dir: str) -> List[str]:
  """Writes the files listed in the module docstring; returns their paths."""
  result = scored.result
  os.makedirs(output_dir, exist_ok=True)
  frames = {
      'scores.csv': leaderboard(result),
      'time_to_targets.csv': result.raw_times,
      'time_to_targets_scored.csv': result.times,
      'performance_profile_score.csv': result.profile,
      'trials.csv': result.trials.set_index('submission'),
      'studies.csv': result.studies.set_index('submission'),
      'budgets.csv': budget_summary(result).set_index('submission'),
      'steps_to_target.csv': steps_table(result),
  }
  paths = []
  for name, frame in frames.items():
    paths.append(os.path.join(output_dir, name))
    frame.to_csv(paths[-1])
  summary = {
      'settings': result.settings,
      'denominator': list(result.denominator),
      'denominator_note': result.denominator_note,
      'scores': {s: float(v) for s, v in result.scores.items()},
      'budgets': budget_summary(result).replace({np.nan: None}).to_dict(orient='records'),
      'ties': result.ties,
      'alternative_scores': (None if result.alternative_scores is None else
                             {k: float(v) for k, v in result.alternative_scores.items()}),
      'notes': result.notes + scored.experiment.notes,
  }
  paths.append(os.path.join(output_dir, 'scoring.json'))
  with open(paths[-1], 'w') as f:
    json.dump(summary, f, indent=2, default=str)
  return paths


def tie_sentence(result: scoring.ScoreResult) -> str:
  """Which tie rule decided how many studies, and what the other rule scores; '' if none."""
  if not result.ties:
    return ''
  rule = result.settings['tie_break']
  other = next(r for r in scoring.TIE_BREAKS if r != rule)
  changed = [f'{name} {result.alternative_scores[name]:.4f} (not {result.scores[name]:.4f})'
             for name in result.scores.index
             if result.alternative_scores[name] != result.scores[name]]
  count = len(result.ties)
  return (f'Tie rule {rule!r} decided {count} stud{"y" if count == 1 else "ies"} (trials '
          'first reaching the target at the same eval; AlgoPerf takes the first in os.listdir '
          f'order); --tie_break {other} gives ' +
          (', '.join(changed) if changed else 'the same scores'))


def rules_line(result: scoring.ScoreResult) -> str:
  """The rules scored under and where each came from, and what a tie decided."""
  s = result.settings
  line = (f'AlgoPerf {s["version"]} scoring, {s["ruleset"]} ruleset '
          f'({s.get("rules_from", "source not recorded")}); ratios against {s["reference"]}; '
          f'tau = {s["taus"]}')
  ties = tie_sentence(result)
  return f'{line}. {ties}' if ties else line


def summary_text(scored: Scored, max_notes: int = 20) -> str:
  """The human-readable stdout summary (at most `max_notes` notes)."""
  result = scored.result
  lines = [
      rules_line(result),
      f'Denominator: {result.denominator_note}',
      '', 'Steps to target (load-independent), time to target and seconds per step '
      '(medians over studies):', tables.markdown(steps_table(result)), '',
      'AlgoPerf score (time-based):', tables.markdown(leaderboard(result)), '',
      'Budgets (time-to-target at or beyond the budget counts as not reached):',
      tables.markdown(budget_summary(result), index=False),
  ]
  notes = result.notes + scored.experiment.notes
  if notes:
    lines += ['', f'Notes ({len(notes)}):'] + [f'  - {n}' for n in notes[:max_notes]]
    if len(notes) > max_notes:
      lines.append(f'  ... {len(notes) - max_notes} more in scoring.json')
  return '\n'.join(lines)


def add_scoring_flags(parser: argparse.ArgumentParser) -> None:
  """Flags shared by analysis.score and analysis.report."""
  parser.add_argument('--submission_dir', nargs='+', required=True,
                      help='submission dir(s): <dir>/<submission>/<study>/<workload>_<fw>/'
                      'trial_<k>, or one submission / one experiment dir')
  parser.add_argument('--output_dir', required=True)
  parser.add_argument('--targets', default=None,
                      help='JSON targets file for workloads outside AlgoPerf\'s table '
                      '(default: the nearest targets.json in --submission_dir or above)')
  parser.add_argument('--version', choices=sorted(scoring.RULES), default=None,
                      help='benchmark version (default: read from the logs; a contradicting '
                      'value is an error without --override_rules)')
  parser.add_argument('--tuning_ruleset', choices=rules_lib.RULESETS, default=None,
                      help='self: budget x1.5 (v0.6) / x3 (v0.5), no trial count (default: '
                      'read from the logs\' flags)')
  parser.add_argument('--self_tuning', dest='tuning_ruleset', action='store_const',
                      const='self', help='same as --tuning_ruleset self')
  parser.add_argument('--override_rules', action='store_true',
                      help='score under --version/--tuning_ruleset even where the logs say '
                      'otherwise (deliberate re-scoring; noted in every output)')
  parser.add_argument('--reference', default=None,
                      help='submission whose times are the ratio denominator (default: fastest)')
  parser.add_argument('--hardware', default=HARDWARE_AUTO,
                      help='auto: each run against its logged hardware\'s budget; none: no '
                      'budget cut; or a hardware profile key such as 8xV100-16GB for all runs')
  parser.add_argument('--hardware_table', nargs='*', default=[],
                      help='extra hardware tables (hardware.json format, e.g. from '
                      'analysis.calibrate)')
  parser.add_argument('--strict', action='store_true',
                      help='raise on study/trial/workload count mismatches')
  parser.add_argument('--split_frameworks', action='store_true',
                      help='score <submission>_<framework> separately when one workload has '
                      'runs in several frameworks')
  parser.add_argument('--exclude_submissions', default='',
                      help='comma-separated submission names to leave out')
  parser.add_argument('--tie_break', choices=scoring.TIE_BREAKS, default='trial_number',
                      help='trial order for equal first-hit eval indices; listdir: '
                      'AlgoPerf\'s literal (filesystem-dependent) os.listdir order')


def score_from_args(args: argparse.Namespace) -> Scored:
  """Scores per the shared flags; loader warnings go to the summary, not to stderr."""
  logging.getLogger('analysis').setLevel(logging.ERROR)
  self_tuning = None if args.tuning_ruleset is None else args.tuning_ruleset == 'self'
  return score_directory(
      args.submission_dir, args.targets, args.version, self_tuning, args.reference,
      args.hardware, args.hardware_table, args.strict, args.split_frameworks,
      [s for s in args.exclude_submissions.split(',') if s], args.tie_break,
      args.override_rules)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m analysis.score',
                                   description=__doc__.split('\n')[0])
  add_scoring_flags(parser)
  args = parser.parse_args(argv)
  try:
    scored = score_from_args(args)
  except (ValueError, OSError) as e:  # LogError, ScoringError, bad input files
    print(f'error: {e}', file=sys.stderr)
    return 1
  paths = write_scores(scored, args.output_dir)
  print(summary_text(scored))
  print(f'\nWrote {len(paths)} files to {args.output_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
