"""Grids of local runs -> steps- and time-to-target per config, with seeds' spread.

    python -m analysis.sweep GRID.json --out DIR [--jobs 2] [--target 0.14] [--dry_run]

GRID.json (`sweeps/*.json` are the project's grids):

    {"workload": "criteo_embedded", "framework": "jax", "seeds": [0, 1, 2, 3, 4],
     "batch_sizes": [null],            # null: the submission's get_batch_size
     "eval_every_steps": 50, "max_global_steps": 1500, "stop_at_target": true,
     "baseline": "nadamw",             # the config ratios are taken against
     "configs": {
       "nadamw": {"submission": "submissions/external_tuning/nadamw/jax_submission.py",
                  "hparams": {"lr_scale": 1.0}, "stop_at_target": false},
       "cdat":   {"submission": "submissions/self_tuning/cdat_nadamw/jax_submission.py"}}}

Every (config, batch size, seed) is one `python -m curvlr.runner` run with step-based
evals (`--eval_every_steps`, load-independent) into
`DIR/runs/<config>__bs<b>__seed<s>/`; a config with `hparams` runs as an external-tuning
trial of that one point. A run is done when its `run_summary.json` exists; a rerun of the
same command skips done runs and restarts unfinished ones (resume a half-finished grid).
A run in progress holds `DIR/locks/<run>.pid`, so a second sweep on the same directory
skips it instead of restarting it.
`--jobs` runs that many in parallel (each run's steps are counted, not timed, so parallel
runs do not bias steps-to-target; their seconds are then those of a shared machine).

Outputs in DIR: `runs.csv` (one row per run: steps and seconds to the validation target,
None when missed), `summary.csv` and `summary.md` (per config and batch size: median,
95% bootstrap interval of the median, ratio of medians to the baseline with its
interval, runs that missed), and `plots/` (validation loss vs step, lr vs step,
steps-to-target per config). A missed target counts as infinitely many steps, so a
config that misses in half its seeds has an infinite median; nothing is dropped.
`--target` scores another validation target from the same runs (e.g. an older one);
the runs' own stop is the workload's target.
"""
import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from analysis import logs

RUN_SUMMARY = 'run_summary.json'
BOOTSTRAP_SAMPLES = 2000
METRIC = 'validation/loss'


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of the grid."""
  config: str
  submission: str
  hparams: Optional[dict]
  batch_size: Optional[int]
  seed: int
  stop_at_target: bool

  @property
  def name(self) -> str:
    return f'{self.config}__bs{self.batch_size or "default"}__seed{self.seed}'


def load_grid(path: str) -> dict:
  """The grid's JSON with defaults filled in; clear errors for what a run cannot use."""
  with open(path) as f:
    grid = json.load(f)
  for key in ('configs', 'seeds', 'max_global_steps'):
    if key not in grid:
      raise ValueError(f'{path}: a grid needs "{key}".')
  if not grid['configs'] or not grid['seeds']:
    raise ValueError(f'{path}: "configs" and "seeds" must not be empty.')
  for name, config in grid['configs'].items():
    if '__' in name or os.sep in name:
      raise ValueError(f'{path}: config name {name!r} must not contain "__" or "{os.sep}".')
    if 'submission' not in config:
      raise ValueError(f'{path}: config {name!r} needs "submission".')
  baseline = grid.setdefault('baseline', next(iter(grid['configs'])))
  if baseline not in grid['configs']:
    raise ValueError(f'{path}: baseline {baseline!r} is not a config.')
  grid.setdefault('workload', 'criteo_embedded')
  grid.setdefault('framework', 'jax')
  grid.setdefault('batch_sizes', [None])
  grid.setdefault('eval_every_steps', 50)
  grid.setdefault('stop_at_target', True)
  reference = grid.get('scale_with_batch')
  if reference is not None and not (isinstance(reference, int) and reference >= 1):
    raise ValueError(f'{path}: "scale_with_batch" must be the reference batch size (an int '
                     f'>= 1), got {reference!r}.')
  if reference is not None and None in grid['batch_sizes']:
    raise ValueError(f'{path}: "scale_with_batch" needs explicit "batch_sizes".')
  return grid


def scaled(grid: dict, batch_size: Optional[int]) -> dict:
  """step_hint, max_global_steps and eval_every_steps of a run at `batch_size`.

  With `"scale_with_batch": R` (the reference batch size) the run sees the same examples
  as one at R: each count is multiplied by R / batch_size (rounded, >= 1), and step_hint
  (the workload's, or the grid's "step_hint") is passed to the runner; without it the
  grid's counts and the workload's step_hint hold at every batch size.
  """
  reference = grid.get('scale_with_batch')
  counts = {'max_global_steps': grid['max_global_steps'],
            'eval_every_steps': grid['eval_every_steps'], 'step_hint': grid.get('step_hint')}
  if reference is None:
    return counts
  if counts['step_hint'] is None:
    from curvlr.workloads.criteo import config
    counts['step_hint'] = config.CONFIGS[grid['workload']].step_hint
  return {k: max(1, round(v * reference / batch_size)) for k, v in counts.items()}


def runs_of(grid: dict) -> List[Run]:
  """The grid's runs, seed-major (all configs of seed 0 first), so that a half-finished
  grid holds paired seeds."""
  return [Run(name, c['submission'], c.get('hparams'), b, s,
              bool(c.get('stop_at_target', grid['stop_at_target'])))
          for s in grid['seeds'] for b in grid['batch_sizes']
          for name, c in grid['configs'].items()]


def trial_dir(out: str, grid: dict, run: Run) -> str:
  return os.path.join(out, 'runs', run.name, f'{grid["workload"]}_{grid["framework"]}',
                      'trial_1')


def is_done(out: str, grid: dict, run: Run) -> bool:
  return os.path.exists(os.path.join(trial_dir(out, grid, run), RUN_SUMMARY))


def command(out: str, grid: dict, run: Run) -> List[str]:
  """The runner's command line for `run`."""
  counts = scaled(grid, run.batch_size)
  cmd = [sys.executable, '-m', 'curvlr.runner', f'--framework={grid["framework"]}',
         f'--workload={grid["workload"]}', f'--submission_path={run.submission}',
         f'--experiment_dir={os.path.join(out, "runs")}', f'--experiment_name={run.name}',
         f'--rng_seed={run.seed}', '--overwrite', '--save_checkpoints=false',
         f'--eval_every_steps={counts["eval_every_steps"]}',
         f'--max_global_steps={counts["max_global_steps"]}',
         f'--stop_at_target={str(run.stop_at_target).lower()}', '--progress_every_sec=60']
  if counts['step_hint'] is not None:
    cmd.append(f'--step_hint={counts["step_hint"]}')
  if run.batch_size:
    cmd.append(f'--batch_size={run.batch_size}')
  if run.hparams is not None:
    point = os.path.join(out, 'points', f'{run.config}.json')
    cmd += ['--tuning_ruleset=external', f'--tuning_search_space={point}']
  if grid.get('data_dir'):
    cmd.append(f'--data_dir={grid["data_dir"]}')
  return cmd


def _write_points(out: str, grid: dict) -> None:
  os.makedirs(os.path.join(out, 'points'), exist_ok=True)
  for name, config in grid['configs'].items():
    if config.get('hparams') is not None:
      with open(os.path.join(out, 'points', f'{name}.json'), 'w') as f:
        json.dump([config['hparams']], f)


def _claim(out: str, run: Run) -> Optional[str]:
  """Takes `run`'s lock file (its PID), or None while a live process holds it: a second
  sweep on the same directory must not restart (--overwrite) a run in progress. A lock
  whose process is gone is taken over."""
  os.makedirs(os.path.join(out, 'locks'), exist_ok=True)
  path = os.path.join(out, 'locks', f'{run.name}.pid')
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      try:
        with open(path) as f:
          os.kill(int(f.read().strip() or 0), 0)
        return None  # held by a live process
      except (ProcessLookupError, ValueError, FileNotFoundError):
        try:
          os.remove(path)  # stale
        except FileNotFoundError:
          pass
        continue
      except PermissionError:
        return None  # alive, another user's
    with os.fdopen(fd, 'w') as f:
      f.write(str(os.getpid()))
    return path
  return None


def _execute(out: str, grid: dict, run: Run) -> int:
  """Runs `run`; -> the runner's exit code, or -1 when another sweep holds it."""
  lock = _claim(out, run)
  if lock is None:
    return -1
  try:
    os.makedirs(os.path.join(out, 'logs'), exist_ok=True)
    with open(os.path.join(out, 'logs', f'{run.name}.log'), 'w') as log:
      return subprocess.call(command(out, grid, run), stdout=log, stderr=subprocess.STDOUT)
  finally:
    os.remove(lock)


def run_grid(out: str, grid: dict, jobs: int = 1) -> List[str]:
  """Runs what is not done yet, `jobs` at a time; -> names of the runs that failed."""
  _write_points(out, grid)
  todo = [r for r in runs_of(grid) if not is_done(out, grid, r)]
  print(f'sweep: {len(runs_of(grid)) - len(todo)} runs done, {len(todo)} to run '
        f'({jobs} at a time); logs in {os.path.join(out, "logs")}', flush=True)
  failed = []
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    futures = {pool.submit(_execute, out, grid, r): r for r in todo}
    for k, future in enumerate(concurrent.futures.as_completed(futures), start=1):
      run, rc = futures[future], future.result()
      if rc > 0:
        failed.append(run.name)
      status = {0: 'done', -1: 'skipped: another sweep is running it'}.get(
          rc, f'failed (rc {rc})')
      print(f'sweep: [{k}/{len(todo)}] {run.name}: {status}', flush=True)
  return failed


def first_hit(evals: pd.DataFrame, target: float) -> tuple:
  """(global_step, score seconds) of the first eval with validation/loss < target (strict,
  as AlgoPerf), or (inf, inf)."""
  if METRIC not in evals or evals.empty:
    return math.inf, math.inf
  hits = evals[evals[METRIC] < target]
  if hits.empty:
    return math.inf, math.inf
  first = hits.iloc[0]
  return float(first['global_step']), float(first['score'])


def target_for(grid: dict, batch_size: Optional[int], override: Optional[float] = None) -> float:
  """The validation target of runs at `batch_size`: `override`, else the grid's
  "targets"[str(batch_size)] (per-batch targets of a batch-size study), else the
  workload's."""
  if override is not None:
    return override
  return float(grid.get('targets', {}).get(str(batch_size), _workload_target(grid)))


def collect(out: str, grid: dict, target: Optional[float] = None) -> pd.DataFrame:
  """One row per finished run: steps/seconds to its target (`target_for`), final and best
  validation loss."""
  rows = []
  for run in runs_of(grid):
    if not is_done(out, grid, run):
      continue
    trial = logs.load_trial(trial_dir(out, grid, run), run.config, 'sweep')
    run_target = target_for(grid, run.batch_size, target)
    steps, seconds = first_hit(trial.evals, run_target)
    evals = trial.evals
    rows.append(dict(config=run.config, batch_size=run.batch_size or 0, seed=run.seed,
                     steps_to_target=steps, time_to_target=seconds,
                     last_step=float(evals['global_step'].max()) if len(evals) else math.nan,
                     best_validation_loss=float(evals[METRIC].min()) if len(evals) else math.nan,
                     eval_every_steps=scaled(grid, run.batch_size)['eval_every_steps'],
                     target=run_target))
  return pd.DataFrame(rows)


def median_interval(values: Sequence[float], rng: np.random.Generator,
                    level: float = 0.95) -> tuple:
  """(median, low, high): the sample median and a percentile-bootstrap interval of it.

  inf (a missed target) is a value like any other: medians and quantiles are order
  statistics (`method='inverted_cdf'`), so no inf - inf arises.
  """
  x = np.asarray(values, dtype=float)
  boot = np.median(rng.choice(x, size=(BOOTSTRAP_SAMPLES, len(x))), axis=1)
  q = (1 - level) / 2
  return (float(np.median(x)), float(np.quantile(boot, q, method='inverted_cdf')),
          float(np.quantile(boot, 1 - q, method='inverted_cdf')))


def ratio_interval(values: Sequence[float], base: Sequence[float], rng: np.random.Generator,
                   level: float = 0.95) -> tuple:
  """(ratio of medians, low, high), seeds of both resampled independently."""
  x, y = np.asarray(values, float), np.asarray(base, float)
  with np.errstate(invalid='ignore', divide='ignore'):
    boot = (np.median(rng.choice(x, size=(BOOTSTRAP_SAMPLES, len(x))), axis=1)
            / np.median(rng.choice(y, size=(BOOTSTRAP_SAMPLES, len(y))), axis=1))
    boot = np.where(np.isnan(boot), np.inf, boot)  # inf / inf: both missed
    q = (1 - level) / 2
    return (float(np.median(x) / np.median(y)), float(np.quantile(boot, q, method='inverted_cdf')),
            float(np.quantile(boot, 1 - q, method='inverted_cdf')))


def summarize(runs: pd.DataFrame, baseline: str, seed: int = 0) -> pd.DataFrame:
  """Per (batch size, config): medians with intervals and ratios to `baseline`."""
  rng = np.random.default_rng(seed)
  rows = []
  for (batch_size, config), group in runs.groupby(['batch_size', 'config'], sort=False):
    base = runs[(runs.batch_size == batch_size) & (runs.config == baseline)]
    row = dict(batch_size=batch_size, config=config, seeds=len(group),
               missed=int(np.isinf(group.steps_to_target).sum()))
    for column, short in (('steps_to_target', 'steps'), ('time_to_target', 'seconds')):
      m, lo, hi = median_interval(group[column], rng)
      row.update({f'{short}_median': m, f'{short}_low': lo, f'{short}_high': hi})
      if len(base):
        r, rlo, rhi = ratio_interval(group[column], base[column], rng)
        row.update({f'{short}_ratio': r, f'{short}_ratio_low': rlo,
                    f'{short}_ratio_high': rhi})
    row['per_seed_steps'] = ' '.join(
        '-' if math.isinf(v) else str(int(v)) for v in group.sort_values('seed').steps_to_target)
    rows.append(row)
  return pd.DataFrame(rows)


def _fmt(v: float, digits: int = 0) -> str:
  return 'missed' if math.isinf(v) else f'{v:.{digits}f}'


def _per_batch(runs: pd.DataFrame, column: str) -> str:
  """'0.14' or 'batch 1024: 0.14, batch 4096: 0.15' from the runs' `column`."""
  values = runs.groupby('batch_size')[column].first()
  if values.nunique() == 1:
    return f'{values.iloc[0]:g}'
  return ', '.join(f'batch {b or "default"}: {v:g}' for b, v in values.items())


def markdown(summary: pd.DataFrame, runs: pd.DataFrame, baseline: str) -> str:
  lines = [f'Validation target {_per_batch(runs, "target")} (strict <), evals every '
           f'{_per_batch(runs, "eval_every_steps")} steps; medians over seeds, [95% bootstrap '
           f'interval]; ratios to `{baseline}` at the same batch size.', '',
           '| batch | config | seeds (missed) | steps to target | x baseline | seconds | '
           'x baseline | per-seed steps |', '|---|---|---|---|---|---|---|---|']
  for r in summary.itertuples():
    ratio = (f'{_fmt(r.steps_ratio, 2)} [{_fmt(r.steps_ratio_low, 2)}, '
             f'{_fmt(r.steps_ratio_high, 2)}]' if hasattr(r, 'steps_ratio') else '-')
    tratio = (f'{_fmt(r.seconds_ratio, 2)} [{_fmt(r.seconds_ratio_low, 2)}, '
              f'{_fmt(r.seconds_ratio_high, 2)}]' if hasattr(r, 'seconds_ratio') else '-')
    lines.append(
        f'| {r.batch_size or "default"} | {r.config} | {r.seeds} ({r.missed}) | '
        f'{_fmt(r.steps_median)} [{_fmt(r.steps_low)}, {_fmt(r.steps_high)}] | {ratio} | '
        f'{_fmt(r.seconds_median, 1)} | {tratio} | {r.per_seed_steps} |')
  return '\n'.join(lines) + '\n'


def plot(out: str, grid: dict, runs: pd.DataFrame) -> List[str]:
  """validation loss vs step, lr vs step (per config, all seeds), steps-to-target."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  os.makedirs(os.path.join(out, 'plots'), exist_ok=True)
  configs = list(grid['configs'])
  colors = {c: plt.cm.tab10(k % 10) for k, c in enumerate(configs)}
  paths = []
  for batch_size in grid['batch_sizes']:
    tag = f'bs{batch_size or "default"}'
    at = runs[runs.batch_size == (batch_size or 0)]
    target = float(at.target.iloc[0]) if len(at) else target_for(grid, batch_size)
    fig_v, ax_v = plt.subplots(figsize=(8, 5))
    fig_l, ax_l = plt.subplots(figsize=(8, 5))
    for run in runs_of(grid):
      if run.batch_size != batch_size or not is_done(out, grid, run):
        continue
      trial = logs.load_trial(trial_dir(out, grid, run), run.config, 'sweep')
      label = run.config if run.seed == grid['seeds'][0] else None
      if METRIC in trial.evals:
        ax_v.plot(trial.evals['global_step'], trial.evals[METRIC], color=colors[run.config],
                  lw=0.8, alpha=0.7, label=label)
      measurements, _ = logs.load_measurements(trial)
      if 'lr' in measurements:
        lr = measurements[['global_step', 'lr']].dropna()
        ax_l.plot(lr['global_step'], lr['lr'], color=colors[run.config], lw=0.8, alpha=0.7,
                  label=label)
    ax_v.axhline(target, color='k', ls='--', lw=0.8, label=f'target {target}')
    ax_v.set(xlabel='step', ylabel=METRIC, title=f'{grid["workload"]} {tag}: validation loss',
             ylim=(target - 0.01, target + 0.02))
    ax_l.set(xlabel='step', ylabel='lr', yscale='log', title=f'{grid["workload"]} {tag}: lr')
    for fig, ax, name in ((fig_v, ax_v, 'validation'), (fig_l, ax_l, 'lr')):
      ax.legend(fontsize=7)
      path = os.path.join(out, 'plots', f'{name}_{tag}.png')
      fig.savefig(path, dpi=110, bbox_inches='tight')
      plt.close(fig)
      paths.append(path)
    paths.append(_steps_plot(out, tag, configs, colors, at, target))
  return paths


def _steps_plot(out: str, tag: str, configs: List[str], colors: dict, runs: pd.DataFrame,
                target: float) -> str:
  """Steps to target per config at one batch size (dots: seeds; bar: median)."""
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(max(6, len(configs)), 4))
  for k, config in enumerate(configs):
    group = runs[runs.config == config]
    finite = group.steps_to_target[np.isfinite(group.steps_to_target)]
    ax.scatter(np.full(len(finite), k), finite, color=colors[config], s=14)
    if len(group) and np.isfinite(np.median(group.steps_to_target)):
      ax.hlines(np.median(group.steps_to_target), k - 0.3, k + 0.3, color='k')
    missed = len(group) - len(finite)
    if missed:
      ax.annotate(f'{missed} missed', (k, ax.get_ylim()[1]), ha='center', fontsize=7)
  ax.set_xticks(range(len(configs)), configs, rotation=30, ha='right', fontsize=8)
  ax.set(ylabel='steps to target', title=f'{tag}: steps to validation {target} (bar: median)')
  path = os.path.join(out, 'plots', f'steps_to_target_{tag}.png')
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)
  return path


def derive_targets(out: str, grid: dict, fraction: float = 0.75,
                   batch_size: Optional[int] = None) -> dict:
  """AlgoPerf's target procedure in steps: per seed of the grid's baseline at `batch_size`
  (default: the grid's first), the best validation (and test) loss among evals at steps
  <= fraction x step_hint (scaled with the batch size under "scale_with_batch"); the
  targets are the medians over seeds.
  -> {'validation': median, 'test': median, 'per_seed': ..., 'step': ...}."""
  from curvlr.workloads.criteo import config
  batch_size = grid['batch_sizes'][0] if batch_size is None else batch_size
  counts = scaled(grid, batch_size)
  step_hint = counts['step_hint'] or config.CONFIGS[grid['workload']].step_hint
  last = fraction * step_hint
  per_seed = {}
  for run in runs_of(grid):
    if (run.config != grid['baseline'] or run.batch_size != batch_size
        or not is_done(out, grid, run)):
      continue
    evals = logs.load_trial(trial_dir(out, grid, run), run.config, 'sweep').evals
    early = evals[evals['global_step'] <= last]
    if early.empty or early['global_step'].max() < last - counts['eval_every_steps']:
      raise ValueError(f'{run.name}: no eval within {counts["eval_every_steps"]} steps of '
                       f'step {last:g}; the run is too short to set a target.')
    per_seed[run.seed] = (float(early[METRIC].min()), float(early['test/loss'].min()))
  if not per_seed:
    raise ValueError(f'{out}: no finished run of the baseline {grid["baseline"]!r}.')
  values = np.array(list(per_seed.values()))
  return {'validation': float(np.median(values[:, 0])), 'test': float(np.median(values[:, 1])),
          'per_seed': per_seed, 'step': last}


def report(out: str, grid: dict, target: Optional[float] = None) -> pd.DataFrame:
  """Writes runs.csv, summary.csv, summary.md and plots/ for `target` (None: each batch
  size's `target_for`); -> the summary."""
  runs = collect(out, grid, target)
  if runs.empty:
    raise ValueError(f'{out}: no finished run to summarize.')
  summary = summarize(runs, grid['baseline'])
  suffix = '' if target is None or target == _workload_target(grid) else f'_target{target}'
  runs.to_csv(os.path.join(out, f'runs{suffix}.csv'), index=False)
  summary.to_csv(os.path.join(out, f'summary{suffix}.csv'), index=False)
  text = markdown(summary, runs, grid['baseline'])
  with open(os.path.join(out, f'summary{suffix}.md'), 'w') as f:
    f.write(text)
  plot(out, grid, runs)
  print(text, end='')
  return summary


def _workload_target(grid: dict) -> float:
  from curvlr.workloads.criteo import config
  return config.CONFIGS[grid['workload']].validation_target_value


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog='python -m analysis.sweep', description=__doc__.split('\n')[0])
  p.add_argument('grid', help='grid JSON (module docstring)')
  p.add_argument('--out', required=True, help='output directory (reused to resume)')
  p.add_argument('--jobs', type=int, default=1, help='runs in parallel')
  p.add_argument('--target', type=float, default=None,
                 help="validation target to score (default: the workload's)")
  p.add_argument('--report_only', action='store_true', help='summarize what is done, run nothing')
  p.add_argument('--derive_targets', type=float, default=None, metavar='FRACTION',
                 help="print the targets AlgoPerf's procedure gives: the baseline's best "
                      'validation/test loss by FRACTION x step_hint, median over seeds')
  p.add_argument('--configs', default=None,
                 help='comma-separated subset of the grid\'s configs (default: all; the '
                      'baseline is always kept)')
  args = p.parse_args(argv)
  grid = load_grid(args.grid)
  if args.configs:
    wanted = set(args.configs.split(',')) | {grid['baseline']}
    unknown = sorted(wanted - set(grid['configs']))
    if unknown:
      raise ValueError(f'--configs: {unknown} not in the grid ({sorted(grid["configs"])}).')
    grid['configs'] = {k: v for k, v in grid['configs'].items() if k in wanted}
  if args.derive_targets is not None:
    for batch_size in grid['batch_sizes']:
      targets = derive_targets(args.out, grid, args.derive_targets, batch_size)
      at = f'batch {batch_size or "default"}'
      for seed, (val, test) in sorted(targets['per_seed'].items()):
        print(f'{at}, seed {seed}: best validation/loss {val:.5f}, test/loss {test:.5f} by '
              f'step {targets["step"]:g}')
      print(f'{at} validation_target: {targets["validation"]:.5f}\n'
            f'{at} test_target: {targets["test"]:.5f}')
    return 0
  failed = [] if args.report_only else run_grid(args.out, grid, args.jobs)
  report(args.out, grid, args.target)
  if failed:
    print(f'sweep: {len(failed)} runs failed: {", ".join(failed)} (logs in '
          f'{os.path.join(args.out, "logs")}); rerun to retry them.', file=sys.stderr)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
