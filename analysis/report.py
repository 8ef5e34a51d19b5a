"""Markdown + CSV leaderboard and PNG plots: `python -m analysis.report`.

  python -m analysis.report --submission_dir DIR [DIR ...] --output_dir OUT \
      [all analysis.score flags] [--baselines nadamw,schedule_free]

Writes to OUT everything `analysis.score` writes, plus report.md,
leaderboard.csv, performance_profile.png, and per workload curves_<workload>.png
(validation metric vs global step and vs accumulated submission time: every
study's evals, target hits, median over all studies, budget cuts) and, from
measurements.csv, the panels of `curvlr.core.metric_names.CURVATURE_PLOTS`
(<kind>_<workload>.png: lr, curvature, measurement) vs global step;
speedups_vs_<baseline>.csv/.png (time-based). The first table ranks by steps to
target at any time (load-independent); the AlgoPerf time-based score follows,
labelled as such.

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

Extending: `WORKLOAD_PLOTS` lists the per-workload plot functions, each called as
f(scored, chosen, workload, output_dir, notes) -> list of PNG paths; append one to
add a figure to every workload's section.
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
from curvlr.core import metric_names

DEFAULT_BASELINES = ('nadamw', 'schedule_free')
Chosen = Dict[Tuple[str, str, str], str]  # (submission, workload, study) -> trial path


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


def speedup_cells(ratios: pd.DataFrame, labels: pd.DataFrame, gmeans: pd.Series
                  ) -> pd.DataFrame:
  """The speedup table as text: a missed target's cell is a bound and says so (both
  missed: no ratio), and a geometric mean over bounds says how many it holds."""
  def cell(value: float, label: str) -> str:
    if label == 'not run' or not np.isfinite(value):
      return label or 'n/a'
    if label.startswith('missed'):
      missed = label.split(': ', 1)[1].split(', ')
      if len(missed) == 2:
        return 'neither reached the target'
      return f'{value:.3g} (bound: {missed[0]} not reached)'
    return f'{value:.3g}'

  table = pd.DataFrame({s: [cell(ratios.loc[w, s], labels.loc[w, s]) for w in ratios.index]
                        for s in ratios.columns}, index=ratios.index)
  row = {}
  for s in ratios.columns:
    bounds = int(sum(labels[s].str.startswith('missed')))
    text = f'{gmeans[s]:.3g}' if np.isfinite(gmeans.get(s, np.nan)) else 'n/a'
    row[s] = (text if not bounds else
              f'{text} (AlgoPerf\'s, from budget + 1 s only: no measured ratio)'
              if bounds == len(ratios.index) else
              f'{text} (includes {bounds} of {len(ratios.index)} from budget + 1 s)')
  table.loc['geometric mean'] = pd.Series(row)
  return table


def context(scored: score_lib.Scored, workload: Optional[str] = None) -> str:
  """'framework(s); hardware; studies (seeds)' of all runs, or of one workload's."""
  trials = [t for t in scored.experiment.trials if workload in (None, t.workload)]
  rows = scored.result.trials
  if workload is not None:
    rows = rows[rows['workload'] == workload]
  frameworks = ', '.join(sorted({t.framework for t in trials}))
  hardware = ', '.join(sorted(set(rows['hardware'])))
  studies = sorted({len({t.study for t in trials if t.submission == s})
                    for s in {t.submission for t in trials}})
  seeds = sorted({str(t.meta.get('rng_seed', t.flags.get('rng_seed', '?'))) for t in trials})
  count = '/'.join(str(n) for n in studies)
  seed_text = (f'seed {seeds[0]}' if len(seeds) == 1 else
               f'{len(seeds)} rng seeds over {len(trials)} trials')
  return (f'{frameworks}; {hardware}; {count} stud{"y" if studies == [1] else "ies"} per '
          f'submission ({seed_text})')


def budget_cuts(result: scoring.ScoreResult, workload: str) -> List[plots.Cut]:
  """The workload's budget lines: the base budget and, self-tuning, the factor x budget."""
  rules = scoring.RULES[result.settings['version']]
  self_tuning = result.settings['ruleset'] == 'self-tuning'
  budgets = result.trials.loc[result.trials['workload'] == workload, 'budget_s']
  cuts = []
  for budget in sorted({float(b) for b in budgets if b is not None and np.isfinite(b)}):
    if self_tuning:
      base = budget / rules.self_tuning_factor
      cuts += [plots.Cut(base, f'budget {base:g} s (external tuning)'),
               plots.Cut(budget, f'self-tuning limit {rules.self_tuning_factor:g} x budget = '
                         f'{budget:g} s')]
    else:
      cuts.append(plots.Cut(budget, f'budget {budget:g} s'))
  return cuts


def _curves(scored: score_lib.Scored, chosen: Chosen,
            workload: str) -> Dict[str, List[plots.Curve]]:
  by_path = {t.path: t for t in scored.experiment.trials}
  rows = scored.result.trials.set_index('path')
  metric = scored.targets[workload].metric
  curves: Dict[str, List[plots.Curve]] = {}
  for (submission, wl, _), path in sorted(chosen.items()):
    evals = by_path[path].evals
    if wl == workload and len(evals):
      hit = int(rows.loc[path, 'first_hit_index'])
      steps = (evals['global_step'] if 'global_step' in evals
               else pd.Series(np.nan, index=evals.index))
      curves.setdefault(submission, []).append(plots.Curve(
          evals[logs.TIME_COLUMN].to_numpy(), steps.to_numpy(), evals[metric].to_numpy(),
          hit if hit >= 0 else None))
  return curves


def curve_plot(scored: score_lib.Scored, chosen: Chosen, workload: str, output_dir: str,
               notes: List[str]) -> List[str]:
  """curves_<workload>.png (see plots.plot_validation_curves)."""
  target = scored.targets[workload]
  title = (f'{workload}: {target.metric} vs global step and vs submission time\n'
           f'{context(scored, workload)}')
  return [plots.plot_validation_curves(
      _curves(scored, chosen, workload), target.metric, target.target,
      target.minimize, budget_cuts(scored.result, workload), title,
      os.path.join(output_dir, f'curves_{workload}.png'))]


def measurement_plots(scored: score_lib.Scored, chosen: Chosen, workload: str,
                      output_dir: str, notes: List[str]) -> List[str]:
  """<kind>_<workload>.png for each panel group of metric_names.CURVATURE_PLOTS present."""
  by_path = {t.path: t for t in scored.experiment.trials}
  frames: Dict[str, List[pd.DataFrame]] = {}
  for (submission, wl, _), path in sorted(chosen.items()):
    if wl == workload:
      frame, frame_notes = logs.load_measurements(by_path[path])
      notes += frame_notes
      if not frame.empty:
        frames.setdefault(submission, []).append(frame)
  logged = {c for fs in frames.values() for f in fs for c in f.columns
            if f[c].notna().any()}
  written = []
  for kind, title, names in metric_names.CURVATURE_PLOTS:
    columns = [c for c in names if c in logged]
    if not columns:
      if kind != 'lr' and frames:
        notes.append(f'{workload}: no {title} plot: measurements.csv holds none of '
                     f'{", ".join(names)} (curvlr.core.metric_names)')
      continue
    written.append(plots.plot_measurements(
        frames, columns, metric_names.HELD,
        f'{workload}: {title} vs global step (measurements.csv, one line per study)\n'
        f'{context(scored, workload)}', os.path.join(output_dir, f'{kind}_{workload}.png')))
  return written


# Per-workload figures, in report order; see the module docstring.
WORKLOAD_PLOTS = [curve_plot, measurement_plots]


def _study_table(result: scoring.ScoreResult) -> pd.DataFrame:
  frame = result.studies.assign(cell=[
      'not reached' if not np.isfinite(t) else f'{t:.6g} s, step {s:.0f}' + (
          f' (tie: trials {tied})' if tied else '')
      for t, s, tied in zip(result.studies['time_s'], result.studies['steps'],
                            result.studies['tied_trials'])])
  return frame.pivot(index=['submission', 'workload'], columns='study', values='cell')


def _image(path: str) -> str:
  name = os.path.basename(path)
  return f'![{name}]({name})'


def _speedup_section(result: scoring.ScoreResult, pattern: str, output_dir: str, title: str,
                     paths: List[str]) -> List[str]:
  base = find_baseline(pattern, list(result.scores.index))
  if base is None or len(result.scores) < 2:
    return [f'No speedups against `{pattern}`: no such submission among the '
            f'{len(result.scores)} scored.', '']
  ratios, labels, gmeans = speedups(result, base)
  table = ratios.copy()
  table.loc['geometric mean'] = gmeans
  csv_path = os.path.join(output_dir, f'speedups_vs_{base}.csv')
  table.to_csv(csv_path)
  png = plots.plot_speedups(ratios, labels, gmeans, base, title,
                            os.path.join(output_dir, f'speedups_vs_{base}.png'))
  paths += [csv_path, png]
  md = [f'## Speedups against `{base}` (time-based; matched `{pattern}`)', '',
        f'Time-to-target ratio t / t_{base} (< 1: faster); a missed target counts as budget '
        '+ 1 s where the budget is known (AlgoPerf\'s compute_speedups), so such a cell is a '
        'bound, not a measurement.', '',
        tables.markdown(speedup_cells(ratios, labels, gmeans)), '']
  return md + [_image(png), '']


def build_report(scored: score_lib.Scored, output_dir: str,
                 baselines: Sequence[str] = DEFAULT_BASELINES) -> List[str]:
  """Writes the report files; returns their paths."""
  result = scored.result
  paths = score_lib.write_scores(scored, output_dir)
  notes = list(result.notes) + list(scored.experiment.notes)
  board = score_lib.leaderboard(result)
  paths.append(os.path.join(output_dir, 'leaderboard.csv'))
  board.to_csv(paths[-1])
  s = result.settings
  title = f'AlgoPerf {s["version"]}, {s["ruleset"]}; {context(scored)}'
  profile_png = plots.plot_profile(result.profile, result.scores, result.denominator_note,
                                   s['reference'], title,
                                   os.path.join(output_dir, 'performance_profile.png'))
  paths.append(profile_png)
  md = [
      '# Benchmark report', '',
      f'{score_lib.rules_line(result)}; targets: {s["targets"]}; hardware budgets: '
      f'{s["hardware"]}. Runs: {context(scored)}.', '',
      '## Steps to target (load-independent)', '',
      '`steps_to_target`: median over studies of the `global_step` of the first eval reaching '
      'the target, at any time (a run past the time budget still counts here; not reached: '
      'no eval did). Steps do not depend on the machine\'s load; `time_to_target_s` '
      '(AlgoPerf\'s, within the budget) and `s_per_step` (accumulated submission time / '
      'global_step) do.', '',
      tables.markdown(score_lib.steps_table(result)), '',
      '## AlgoPerf score (time-based)', '',
      f'Denominator of the performance profile: {result.denominator_note}. score = '
      'normalised area under rho(tau) on [1, 4]; `t_<workload>`: median over studies of the '
      'time to target (s of accumulated submission time) after the 4x cut.', '',
      tables.markdown(board), '', _image(profile_png), '',
      '## Time to target per study', '',
      'Per study: the trial with the smallest first-hit eval index; not reached: no trial '
      'reached the target within its budget.', '',
      tables.markdown(_study_table(result)), '',
  ]
  for pattern in baselines:
    md += _speedup_section(result, pattern, output_dir, title, paths)
  chosen = representative_trials(result)
  md += ['## Curves', '']
  for workload in sorted(result.trials['workload'].unique()):
    md += [f'### {workload}', '']
    for make in WORKLOAD_PLOTS:
      for png in make(scored, chosen, workload, output_dir, notes):
        paths.append(png)
        md += [_image(png), '']
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
