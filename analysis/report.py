"""Markdown + CSV leaderboard and PNG plots: `python -m analysis.report`.

  python -m analysis.report --submission_dir DIR [DIR ...] --output_dir OUT \
      [all analysis.score flags] [--baselines nadamw,schedule_free]

Writes to OUT everything `analysis.score` writes, plus report.md,
leaderboard.csv, performance_profile.png, curves_<workload>.png (validation
metric vs accumulated submission time, median and min-max band over studies),
lr_<workload>.png and curvature_<workload>.png (measurements.csv columns from a
known list, vs global step), speedups_vs_<baseline>.csv/.png.

Per study the plotted trial is the one scoring chose; for a study that missed
the target, its trial with the best metric value.
Speedups follow AlgoPerf's compute_speedups.py: time-to-target ratio
t_submission / t_baseline on the median times before the 4x cut, infinite times
replaced by budget + 1 s, geometric mean of the ratios. Deviations: the budget is
the run's own resolved budget (hardware, version and ruleset factor; AlgoPerf
uses its v0.5 budget table x3 for self-tuning), infinite times stay infinite when
no budget is known, and only workloads both submissions ran (finite ratios)
enter the mean (AlgoPerf: all base workloads). Baselines are found by name: an
exact match, else names starting with the pattern, else containing it
(case-insensitive); the shortest wins.
"""
import argparse
import math
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis import logs
from analysis import plots
from analysis import score as score_lib
from analysis import scoring
from analysis import tables

LR_COLUMNS = ('lr', 'learning_rate', 'alpha', 'step_size', 'lr_scale')
LR_PREFIXES = ('lr/',)
CURVATURE_COLUMNS = ('sharpness', 'uGu', 'dGd')
CURVATURE_PREFIXES = ('cdat/', 'curvature/', 'ggn/', 'sharpness/')
MAX_PANELS = 12
DEFAULT_BASELINES = ('nadamw', 'schedule_free')


def select_columns(available: Sequence[str], names: Sequence[str],
                   prefixes: Sequence[str]) -> List[str]:
  """Known names (in list order) then prefixed columns (sorted) present in `available`."""
  exact = [c for c in names if c in available]
  prefixed = sorted(c for c in available if c.startswith(tuple(prefixes)) and c not in exact)
  return exact + prefixed


def find_baseline(pattern: str, submissions: Sequence[str]) -> Optional[str]:
  """Exact name, else shortest name starting with, else containing `pattern`."""
  lowered = {s: s.lower() for s in submissions}
  p = pattern.lower()
  for matches in ([s for s in submissions if lowered[s] == p],
                  [s for s in submissions if lowered[s].startswith(p)],
                  [s for s in submissions if p in lowered[s]]):
    if matches:
      return min(matches, key=lambda s: (len(s), s))
  return None


def representative_trials(result: scoring.ScoreResult) -> Dict[Tuple[str, str, str], str]:
  """(submission, workload, study) -> trial path: the chosen trial, else the best metric."""
  chosen = {}
  for row in result.studies.itertuples():
    if not pd.isna(row.chosen_path):
      chosen[(row.submission, row.workload, row.study)] = row.chosen_path
  for key, group in result.trials.groupby(['submission', 'workload', 'study']):
    if key not in chosen:
      ascending = bool(group['minimize'].iloc[0])
      order = group.sort_values('best_metric', ascending=ascending, na_position='last',
                                kind='stable')
      chosen[key] = order['path'].iloc[0]
  return chosen


def speedups(result: scoring.ScoreResult, base: str
             ) -> Tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
  """(ratios, labels, geometric means); ratios/labels: workloads both ran x other submissions."""
  raw = result.raw_times[list(result.times.columns)]
  ran = result.trials.groupby(['submission', 'workload'])['budget_s'].max()
  others = [s for s in raw.index if s != base]
  workloads = [w for w in raw.columns if (base, w) in ran.index and any(
      (s, w) in ran.index for s in others)]
  ratios = pd.DataFrame(np.nan, index=pd.Index(workloads, name='workload'), columns=others)
  labels = pd.DataFrame('', index=ratios.index, columns=others)

  def filled(submission: str, workload: str) -> float:
    t, budget = raw.loc[submission, workload], ran[(submission, workload)]
    return budget + 1 if math.isinf(t) and np.isfinite(budget) else t

  for s in others:
    for w in workloads:
      if (s, w) not in ran.index:
        labels.loc[w, s] = 'not run'
        continue
      ratios.loc[w, s] = filled(s, w) / filled(base, w)
      missed = [n for n in (s, base) if math.isinf(raw.loc[n, w])]
      labels.loc[w, s] = ('missed: ' + ', '.join(missed)) if missed else ''
  valid = ratios.where(np.isfinite(ratios) & (ratios > 0))
  gmeans = np.exp(np.log(valid).mean(axis=0)).rename('geometric mean')
  return ratios, labels, gmeans


def _curves(scored: score_lib.Scored, chosen: Dict[Tuple[str, str, str], str],
            workload: str) -> Dict[str, List[plots.Curve]]:
  by_path = {t.path: t for t in scored.experiment.trials}
  metric = scored.targets[workload].metric
  curves: Dict[str, List[plots.Curve]] = {}
  for (submission, wl, _), path in sorted(chosen.items()):
    evals = by_path[path].evals
    if wl == workload and len(evals):
      curves.setdefault(submission, []).append(
          (evals[logs.TIME_COLUMN].to_numpy(), evals[metric].to_numpy()))
  return curves


def _measurement_plots(scored: score_lib.Scored, chosen: Dict[Tuple[str, str, str], str],
                       workload: str, output_dir: str, notes: List[str]) -> List[str]:
  by_path = {t.path: t for t in scored.experiment.trials}
  frames: Dict[str, List[pd.DataFrame]] = {}
  for (submission, wl, _), path in sorted(chosen.items()):
    if wl == workload:
      frame, frame_notes = logs.load_measurements(by_path[path])
      notes += frame_notes
      if not frame.empty:
        frames.setdefault(submission, []).append(frame)
  available = sorted({c for fs in frames.values() for f in fs for c in f.columns})
  written = []
  for kind, title, names, prefixes in (
      ('lr', 'learning rate', LR_COLUMNS, LR_PREFIXES),
      ('curvature', 'curvature metrics', CURVATURE_COLUMNS, CURVATURE_PREFIXES)):
    columns = select_columns(available, names, prefixes)
    if len(columns) > MAX_PANELS:
      notes.append(f'{workload}: {len(columns)} {kind} columns; plotted the first {MAX_PANELS}')
      columns = columns[:MAX_PANELS]
    if columns:
      written.append(plots.plot_measurements(
          frames, columns, workload, title, os.path.join(output_dir, f'{kind}_{workload}.png')))
  return written


def _study_table(result: scoring.ScoreResult) -> pd.DataFrame:
  table = result.studies.pivot(index=['submission', 'workload'], columns='study',
                               values='time_s')
  table['median'] = result.studies.groupby(['submission', 'workload'])['time_s'].apply(
      lambda s: float(np.median(s.to_numpy())))
  return table


def _image(path: str) -> str:
  name = os.path.basename(path)
  return f'![{name}]({name})'


def build_report(scored: score_lib.Scored, output_dir: str,
                 baselines: Sequence[str] = DEFAULT_BASELINES) -> List[str]:
  """Writes the report files; returns their paths."""
  result = scored.result
  paths = score_lib.write_scores(scored, output_dir)
  notes = list(result.notes) + list(scored.experiment.notes)
  board = score_lib.leaderboard(result)
  paths.append(os.path.join(output_dir, 'leaderboard.csv'))
  board.to_csv(paths[-1])
  profile_png = plots.plot_profile(result.profile, result.scores, result.denominator_note,
                                   result.settings['reference'],
                                   os.path.join(output_dir, 'performance_profile.png'))
  paths.append(profile_png)
  s = result.settings
  md = [
      '# Benchmark report', '',
      f'AlgoPerf {s["version"]} scoring, {s["ruleset"]} ruleset; ratios against '
      f'{s["reference"]}; tau = {s["taus"]}; targets: {s["targets"]}; hardware budgets: '
      f'{s["hardware"]}.', '',
      f'Denominator of the performance profile: {result.denominator_note}.', '',
      '## Leaderboard', '',
      'score = normalised area under rho(tau) on [1, 4]; `t_<workload>`: median over studies '
      'of the time to target (s of accumulated submission time) after the 4x cut.', '',
      tables.markdown(board), '', _image(profile_png), '',
      '## Time to target per study (s)', '',
      'Per study: the trial with the smallest first-hit eval index; inf: no trial reached the '
      'target within its budget.', '',
      tables.markdown(_study_table(result)), '',
  ]
  for pattern in baselines:
    base = find_baseline(pattern, list(result.scores.index))
    if base is None or len(result.scores) < 2:
      md += [f'No speedups against `{pattern}`: no such submission among the '
             f'{len(result.scores)} scored.', '']
      continue
    ratios, labels, gmeans = speedups(result, base)
    table = ratios.copy()
    table.loc['geometric mean'] = gmeans
    csv_path = os.path.join(output_dir, f'speedups_vs_{base}.csv')
    table.to_csv(csv_path)
    png = plots.plot_speedups(ratios, labels, base,
                              os.path.join(output_dir, f'speedups_vs_{base}.png'))
    paths += [csv_path, png]
    md += [f'## Speedups against `{base}` (matched `{pattern}`)', '',
           f'Time-to-target ratio t / t_{base} (< 1: faster); missed targets count as budget '
           '+ 1 s where the budget is known.', '',
           tables.markdown(table.astype(object).where(table.notna(), None)), '']
    flagged = [f'{s}/{w}: {labels.loc[w, s]}' for w in labels.index for s in labels.columns
               if labels.loc[w, s]]
    if flagged:
      md += ['Marked cells: ' + '; '.join(flagged), '']
    md += [_image(png), '']
  chosen = representative_trials(result)
  md += ['## Curves', '']
  for workload in sorted(result.trials['workload'].unique()):
    target = scored.targets[workload]
    png = plots.plot_validation_curves(
        _curves(scored, chosen, workload), workload, target.metric, target.target,
        target.minimize, list(result.trials.loc[result.trials['workload'] == workload, 'budget_s']),
        os.path.join(output_dir, f'curves_{workload}.png'))
    paths.append(png)
    md += [f'### {workload}', '', _image(png), '']
    for extra in _measurement_plots(scored, chosen, workload, output_dir, notes):
      paths.append(extra)
      md += [_image(extra), '']
  md += ['## Budgets', '', 'A time to target at or beyond the budget counts as not reached.',
         '', tables.markdown(score_lib.budget_summary(result), index=False), '']
  if notes:
    md += ['## Notes', ''] + [f'- {n}' for n in notes] + ['']
  paths.append(os.path.join(output_dir, 'report.md'))
  with open(paths[-1], 'w') as f:
    f.write('\n'.join(md))
  return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m analysis.report',
                                   description=__doc__.split('\n')[0])
  score_lib.add_scoring_flags(parser)
  parser.add_argument('--baselines', default=','.join(DEFAULT_BASELINES),
                      help='comma-separated name patterns of the submissions to compare with')
  args = parser.parse_args(argv)
  try:
    scored = score_lib.score_from_args(args)
  except (ValueError, OSError) as e:  # LogError, ScoringError, bad input files
    print(f'error: {e}', file=sys.stderr)
    return 1
  paths = build_report(scored, args.output_dir, [b for b in args.baselines.split(',') if b])
  print(score_lib.summary_text(scored))
  print(f'\nWrote {len(paths)} files to {args.output_dir}; open '
        f'{os.path.join(args.output_dir, "report.md")}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
