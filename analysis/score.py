"""Score experiment directories like AlgoPerf v0.6: `python -m analysis.score`.

  python -m analysis.score --submission_dir DIR [DIR ...] --output_dir OUT \
      [--targets FILE] [--version v0.6|v0.5] [--self_tuning] [--reference SUB] \
      [--hardware auto|none|PROFILE] [--hardware_table FILE ...] [--strict] \
      [--split_frameworks] [--exclude_submissions A,B] [--tie_break trial_number|listdir]

Writes to OUT: scores.csv, time_to_targets.csv (median over studies, before the
variant rules and 4x cut, as AlgoPerf), time_to_targets_scored.csv,
performance_profile_score.csv, trials.csv, studies.csv, budgets.csv and
scoring.json (settings, denominator, budgets, notes); prints the leaderboard.
Scoring rules and every deviation from AlgoPerf: analysis/scoring.py.
"""
import argparse
import json
import logging
import os
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from analysis import hardware
from analysis import logs
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
                    hardware_tables: Sequence[str] = ()) -> Dict[str, hardware.Budget]:
  """Trial path -> Budget (see analysis.hardware for the resolution order)."""
  if hardware_arg == HARDWARE_NONE:
    off = hardware.Budget(None, 'not used', 'budget cut disabled (--hardware none)')
    return {t.path: off for t in trials}
  table = hardware.load_table(hardware_tables)
  override = None if hardware_arg == HARDWARE_AUTO else hardware_arg
  factor = rules.self_tuning_factor if self_tuning else 1.0
  return {t.path: hardware.resolve_budget(t, rules.version, factor, table,
                                          targets.get(t.workload), override)
          for t in trials}


def score_directory(submission_dirs: Sequence[str], targets_file: Optional[str] = None,
                    version: str = 'v0.6', self_tuning: bool = False,
                    reference: Optional[str] = None, hardware_arg: str = HARDWARE_AUTO,
                    hardware_tables: Sequence[str] = (), strict: bool = False,
                    split_frameworks: bool = False, exclude_submissions: Sequence[str] = (),
                    tie_break: str = 'trial_number') -> Scored:
  """Loads, resolves budgets and scores; see the module docstring for the flags."""
  if version not in scoring.RULES:
    raise ValueError(f'unknown version {version!r}; one of {sorted(scoring.RULES)}')
  rules = scoring.RULES[version]
  experiment = logs.load_experiment(submission_dirs, split_frameworks, exclude_submissions)
  targets = targets_lib.get_targets(targets_file)
  budgets = resolve_budgets(experiment.trials, targets, rules, self_tuning, hardware_arg,
                            hardware_tables)
  result = scoring.score_trials(experiment.trials, targets, rules, budgets, self_tuning,
                                reference, strict, tie_break)
  settings = dict(result.settings, submission_dirs=list(submission_dirs),
                  targets=targets_file or 'AlgoPerf table', hardware=hardware_arg,
                  hardware_tables=[hardware.DEFAULT_TABLE] + list(hardware_tables))
  return Scored(result._replace(settings=settings), experiment, targets)


def leaderboard(result: scoring.ScoreResult) -> pd.DataFrame:
  """Rank, score, #workloads reached within 4x of the best, scored median times (s)."""
  board = pd.DataFrame({'score': result.scores})
  board['within_4x'] = [
      f'{int(np.isfinite(result.times.loc[s]).sum())}/{len(result.denominator)}'
      for s in board.index]
  board = board.join(result.times.add_prefix('t_'))
  board = board.sort_values('score', ascending=False, kind='stable')
  board.insert(0, 'rank', range(1, len(board) + 1))
  board.index.name = 'submission'
  return board


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
      'notes': result.notes + scored.experiment.notes,
  }
  paths.append(os.path.join(output_dir, 'scoring.json'))
  with open(paths[-1], 'w') as f:
    json.dump(summary, f, indent=2, default=str)
  return paths


def summary_text(scored: Scored, max_notes: int = 20) -> str:
  """The human-readable stdout summary (at most `max_notes` notes)."""
  result = scored.result
  s = result.settings
  lines = [
      f'AlgoPerf {s["version"]} scoring, {s["ruleset"]} ruleset; ratios against '
      f'{s["reference"]}; tau = {s["taus"]}',
      f'Denominator: {result.denominator_note}',
      '', tables.markdown(leaderboard(result)), '',
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
                      help='JSON targets file for workloads outside AlgoPerf\'s table')
  parser.add_argument('--version', choices=sorted(scoring.RULES), default='v0.6')
  parser.add_argument('--self_tuning', action='store_true',
                      help='self-tuning ruleset: budget x1.5 (v0.6) / x3 (v0.5), no trial count')
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
  return score_directory(
      args.submission_dir, args.targets, args.version, args.self_tuning, args.reference,
      args.hardware, args.hardware_table, args.strict, args.split_frameworks,
      [s for s in args.exclude_submissions.split(',') if s], args.tie_break)


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
