"""`make demo`: train the baselines on the embedded workload and print time-to-target.

python -m curvlr.demo [--framework=jax] [--submissions=nadamw,...] [--rng_seed=0]
"""
import argparse
import pathlib

from curvlr.runner import __main__ as runner

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--framework', default='pytorch', choices=('pytorch', 'jax'))
  p.add_argument('--submissions', default='nadamw')
  p.add_argument('--rng_seed', type=int, default=0)
  p.add_argument('--experiment_dir', default=str(ROOT / 'experiments' / 'demo'))
  args = p.parse_args(argv)
  summary = []
  for name in args.submissions.split(','):
    (result,) = runner.run([
        f'--framework={args.framework}', '--workload=criteo_embedded',
        f'--submission_path={ROOT}/submissions/self_tuning/{name}/{args.framework}_submission.py',
        f'--experiment_dir={args.experiment_dir}', f'--experiment_name={name}',
        f'--rng_seed={args.rng_seed}', '--overwrite', '--save_checkpoints=false'])
    summary.append((name, result))
  print('\nsubmission        steps  time-to-target (s of submission time)  logs')
  for name, r in summary:
    ttt = f'{r.time_to_validation_target:.1f}' if r.time_to_validation_target else 'not reached'
    print(f'{name:16s} {r.global_step:6d}  {ttt:>38s}  {r.trial_dir}')


if __name__ == '__main__':
  main()
