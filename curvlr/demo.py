"""`make demo`: train the baselines and the curvature submissions on the embedded workload,
print a steps-to-target leaderboard (load-independent) beside time-to-target and seconds
per step, and write a report.

python -m curvlr.demo [--framework=pytorch|jax] [--submissions=nadamw,schedule_free_adamw,
                      cdat_nadamw,ggn_median_nadamw] [--rng_seed=0] [--experiment_dir=DIR]

Runs land in <experiment_dir>/<framework>/<submission>/study_<seed>/criteo_embedded_<framework>/
(AlgoPerf's scoring layout) beside <experiment_dir>/<framework>/targets.json, and
`analysis.report` scores them into <experiment_dir>/<framework>/report/. Evals every
--eval_every_steps steps (default 17: 5% of the NAdamW baseline's 340 steps to target in
PyTorch), so the step counts do not depend on the machine's load; runs stop at the targets or at
--max_global_steps (default: the workload's step_hint). Exits 1 if a run or the report fails.
"""
import argparse
import csv
import json
import math
import os
import pathlib
import shutil
import sys
import traceback
from typing import List, NamedTuple, Optional

from analysis import report
from curvlr.runner import __main__ as runner
from curvlr.runner import loop
from curvlr.workloads.criteo import config

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUBMISSIONS = 'nadamw,schedule_free_adamw,cdat_nadamw,ggn_median_nadamw'
WORKLOAD = config.CRITEO_EMBEDDED
EVAL_EVERY_STEPS = 17  # 5% of the 340 steps PyTorch NAdamW took to the target (README)
OTHER_CPU_NOTICE = 0.1  # above this share of the CPU taken by others, seconds are said to be shared


def write_targets(out_dir: pathlib.Path) -> pathlib.Path:
  """The embedded workload's target and budget, for analysis (one source: config.py)."""
  path = out_dir / 'targets.json'
  path.write_text(json.dumps({WORKLOAD.name: {
      'metric': 'validation/loss', 'target': WORKLOAD.validation_target_value,
      'minimize': True, 'max_runtime_sec': WORKLOAD.max_allowed_runtime_sec}}, indent=2))
  return path


class RunSummary(NamedTuple):
  """One run, read back from its logs (eval_measurements.csv and run_summary.json)."""
  name: str
  steps: int  # global_step at the end
  steps_to_target: Optional[int]  # first eval below the validation target; None if missed
  time_to_target: Optional[float]  # its accumulated_submission_time, seconds
  seconds_per_step: float  # accumulated_submission_time / global_step at the last eval
  stop_reason: str  # a key of curvlr.runner.loop.STOP_REASONS
  load: tuple  # 1-min load average at the run's start and end
  other_cpu: Optional[float]  # share of the machine's CPU other processes took; None: unknown
  trial_dir: pathlib.Path


def read_run(name: str, trial_dir: pathlib.Path, target: float) -> RunSummary:
  """Steps/time to `target` (validation loss, strict <) from the run's own eval log."""
  with open(trial_dir / 'eval_measurements.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f'{trial_dir}/eval_measurements.csv holds no eval.')
  summary = json.loads((trial_dir / loop.RUN_SUMMARY).read_text())
  hit = next((r for r in rows if float(r['validation/loss']) < target), None)
  last = rows[-1]
  return RunSummary(
      name, summary['global_step'],
      int(hit['global_step']) if hit else None,
      float(hit['accumulated_submission_time']) if hit else None,
      float(last['accumulated_submission_time']) / int(last['global_step']),
      summary['stop_reason'],
      (summary['loadavg_1min_start'], summary['loadavg_1min_end']),
      summary.get('cpu_share_other_processes'), trial_dir)


def rank(run: RunSummary, runs: List[RunSummary]) -> int:
  """1 + the number of runs with fewer steps to target (ties share a rank; misses last)."""
  def steps(r):
    return math.inf if r.steps_to_target is None else r.steps_to_target
  return 1 + sum(steps(r) < steps(run) for r in runs)


def summary_text(runs: List[RunSummary], framework: str, target: float, eval_every: int,
                 reference: str = 'nadamw') -> str:
  """The leaderboard by steps to target, then time and seconds per step, then the load."""
  ranked = sorted(runs, key=lambda r: (r.steps_to_target is None, r.steps_to_target or 0))
  ref = next((r for r in runs if r.name == reference and r.steps_to_target), None)
  width = max(len('submission'), *(len(r.name) for r in runs))
  head = (f'{"rank":>4s}  {"submission":{width}s}  {"steps to target":>15s}  '
          f'{"vs " + reference:>10s}  '
          f'{"time to target (s)":>18s}  {"s/step":>7s}  {"steps":>5s}  stopped because')
  lines = [f'Leaderboard ({framework}, {WORKLOAD.name}, validation target {target}, eval every '
           f'{eval_every} steps; by steps, which the machine\'s load cannot change):',
           head, '-' * len(head)]
  for r in ranked:
    steps = str(r.steps_to_target) if r.steps_to_target else 'not reached'
    ratio = f'{r.steps_to_target / ref.steps_to_target:.2f}' if ref and r.steps_to_target else '-'
    ttt = f'{r.time_to_target:.1f}' if r.time_to_target is not None else 'not reached'
    lines.append(f'{rank(r, runs):4d}  {r.name:{width}s}  {steps:>15s}  {ratio:>10s}  {ttt:>18s}  '
                 f'{r.seconds_per_step:7.3f}  {r.steps:5d}  {loop.STOP_REASONS[r.stop_reason]}')
  cores = os.cpu_count() or 1
  lines.append(f'Machine load (1-min average, {cores} cores, the runs\' own threads included) at '
               'start/end of each run: '
               + ', '.join(f'{r.name} {r.load[0]:.1f}/{r.load[1]:.1f}' for r in runs) + '.')
  if all(r.other_cpu is not None for r in runs):
    lines.append(f'CPU taken by other processes while each run trained (share of the {cores} '
                 'cores): ' + ', '.join(f'{r.name} {100 * r.other_cpu:.0f}%' for r in runs) + '.')
    loaded = max(r.other_cpu for r in runs) > OTHER_CPU_NOTICE
  else:  # no /proc/stat: the load average is all there is
    loaded = max(max(r.load) for r in runs) > cores
  if loaded:
    lines.append('Other jobs shared the machine: seconds per step, time to target and the '
                 'AlgoPerf time score in the report measure them too; the steps column does '
                 'not.')
  share = (f', {100 * eval_every / ref.steps_to_target:.1f}% of {reference}\'s '
           f'{ref.steps_to_target}' if ref else '')
  lines.append(f'Steps resolve to {eval_every} steps (the eval spacing{share}). The report\'s '
               'AlgoPerf score ranks by time (v0.6 self-tuning rules).')
  return '\n'.join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m curvlr.demo', description=__doc__.split('\n')[0])
  p.add_argument('--framework', default='pytorch', choices=('pytorch', 'jax'),
                 help='Framework of every run (default pytorch).')
  p.add_argument('--submissions', default=SUBMISSIONS,
                 help=f'Comma-separated self-tuning submissions (default {SUBMISSIONS}).')
  p.add_argument('--rng_seed', type=int, default=0, help='Seed of every run (the study).')
  p.add_argument('--experiment_dir', default=str(ROOT / 'experiments' / 'demo'),
                 help='Root; runs and report go to <experiment_dir>/<framework>/.')
  p.add_argument('--eval_every_steps', type=int, default=EVAL_EVERY_STEPS,
                 help=f'Eval spacing in steps, the resolution of steps to target (default '
                      f'{EVAL_EVERY_STEPS}: 5%% of NAdamW\'s 340).')
  p.add_argument('--max_global_steps', type=int, default=WORKLOAD.step_hint,
                 help=f'Step limit of a run that misses the target (default: step_hint, '
                      f'{WORKLOAD.step_hint}).')
  p.add_argument('--data_dir', default=None,
                 help='Criteo-format day files (default: the generated synthetic set).')
  args = p.parse_args(argv)
  out = pathlib.Path(args.experiment_dir) / args.framework
  out.mkdir(parents=True, exist_ok=True)
  shutil.rmtree(out / 'report', ignore_errors=True)  # never leave a stale report behind
  write_targets(out)
  target = WORKLOAD.validation_target_value
  runs = []
  for name in args.submissions.split(','):
    path = ROOT / 'submissions' / 'self_tuning' / name / f'{args.framework}_submission.py'
    flags = [f'--framework={args.framework}', f'--workload={WORKLOAD.name}',
             f'--submission_path={path}', f'--experiment_dir={out / name}',
             f'--experiment_name=study_{args.rng_seed}', f'--rng_seed={args.rng_seed}',
             f'--eval_every_steps={args.eval_every_steps}',
             f'--max_global_steps={args.max_global_steps}', '--overwrite',
             '--save_checkpoints=false']
    flags += [f'--data_dir={args.data_dir}'] if args.data_dir else []
    try:
      (result,) = runner.run(flags)
      runs.append(read_run(name, result.trial_dir, target))
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      print(f'\ndemo: the {name} run failed ({type(e).__name__}: {e}); no report written.',
            file=sys.stderr)
      return 1
  print('\n' + summary_text(runs, args.framework, target, args.eval_every_steps) + '\n',
        flush=True)
  ours = {out / r.name / f'study_{args.rng_seed}' for r in runs}
  earlier = sorted(str(d.relative_to(out)) for d in out.glob('*/study_*') if d not in ours)
  if earlier:
    print(f'The report also scores earlier runs in {out}: {", ".join(earlier)}.\n')
  try:
    code = report.main(['--submission_dir', str(out), '--output_dir', str(out / 'report')])
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    code = 'an exception'
  if code:
    print(f'demo: the report failed (analysis.report: {code}); the runs are in {out}.',
          file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
