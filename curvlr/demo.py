"""`make demo`: train the baselines and the curvature submissions on the embedded workload,
print time-to-target, write a report.

python -m curvlr.demo [--framework=jax] [--submissions=nadamw,schedule_free_adamw,cdat_nadamw,
                                          ggn_median_nadamw] [--rng_seed=0]

Runs land in <experiment_dir>/<submission>/study_<seed>/criteo_embedded_<framework>/
(AlgoPerf's scoring layout), and `analysis.report` scores them into <experiment_dir>/report.
"""
import argparse
import json
import pathlib

from analysis import report
from curvlr.runner import __main__ as runner
from curvlr.workloads.criteo import config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def targets_file(out_dir: pathlib.Path) -> pathlib.Path:
  """The embedded workload's target and budget, for analysis (one source: config.py)."""
  cfg = config.CRITEO_EMBEDDED
  path = out_dir / 'targets.json'
  path.write_text(json.dumps({cfg.name: {
      'metric': 'validation/loss', 'target': cfg.validation_target_value, 'minimize': True,
      'max_runtime_sec': cfg.max_allowed_runtime_sec}}, indent=2))
  return path


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--framework', default='pytorch', choices=('pytorch', 'jax'))
  p.add_argument('--submissions',
                 default='nadamw,schedule_free_adamw,cdat_nadamw,ggn_median_nadamw')
  p.add_argument('--rng_seed', type=int, default=0)
  p.add_argument('--experiment_dir', default=str(ROOT / 'experiments' / 'demo'))
  args = p.parse_args(argv)
  out = pathlib.Path(args.experiment_dir)
  summary = []
  for name in args.submissions.split(','):
    (result,) = runner.run([
        f'--framework={args.framework}', '--workload=criteo_embedded',
        f'--submission_path={ROOT}/submissions/self_tuning/{name}/{args.framework}_submission.py',
        f'--experiment_dir={out / name}', f'--experiment_name=study_{args.rng_seed}',
        f'--rng_seed={args.rng_seed}', '--overwrite', '--save_checkpoints=false'])
    summary.append((name, result))
  print('\nsubmission          steps  time-to-target (s of submission time)  logs')
  for name, r in summary:
    ttt = f'{r.time_to_validation_target:.1f}' if r.time_to_validation_target else 'not reached'
    print(f'{name:18s} {r.global_step:6d}  {ttt:>38s}  {r.trial_dir}')
  report.main(['--submission_dir', str(out), '--output_dir', str(out / 'report'),
               '--self_tuning', '--targets', str(targets_file(out))])


if __name__ == '__main__':
  main()
