"""Command-line flags: the names and defaults of AlgoPerf's submission_runner.py where they apply."""
import argparse


def _bool(value: str) -> bool:
  if value.lower() in ('1', 'true', 'yes'):
    return True
  if value.lower() in ('0', 'false', 'no'):
    return False
  raise argparse.ArgumentTypeError(f'expected true/false, got {value!r}')


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m curvlr.runner',
      description='Local AlgoPerf-compatible runner (same flags, loop, timing and logs as '
                  'submission_runner.py) for the embedded criteo-shaped workloads.')
  p.add_argument('--submission_path', required=True,
                 help='Path to a submission .py file (relative, as in AlgoPerf, or absolute).')
  p.add_argument('--workload', default='criteo_embedded')
  p.add_argument('--framework', default='pytorch', choices=('pytorch', 'jax'))
  p.add_argument('--tuning_ruleset', default='self', choices=('external', 'self'),
                 help="AlgoPerf's default is 'external'; ours is 'self' (our submissions "
                      'are self-tuning).')
  p.add_argument('--tuning_search_space', default=None)
  p.add_argument('--num_tuning_trials', type=int, default=1)
  p.add_argument('--hparam_start_index', type=int, default=None)
  p.add_argument('--hparam_end_index', type=int, default=None)
  p.add_argument('--data_dir', default=None,
                 help='Criteo day files; default for criteo_embedded: synthetic data '
                      'generated once into ~/.cache/curvlr (or $CURVLR_CACHE_DIR).')
  p.add_argument('--experiment_dir', default='experiments')
  p.add_argument('--experiment_name', default=None,
                 help='Default: <submission>_<framework>.')
  p.add_argument('--max_global_steps', type=int, default=None)
  p.add_argument('--rng_seed', type=int, default=None)
  p.add_argument('--overwrite', type=_bool, nargs='?', const=True, default=False)
  p.add_argument('--resume_last_run', type=_bool, nargs='?', const=True, default=False)
  p.add_argument('--append_timestamp', type=_bool, nargs='?', const=True, default=False)
  p.add_argument('--save_checkpoints', type=_bool, nargs='?', const=True, default=True)
  p.add_argument('--skip_evals', type=_bool, nargs='?', const=True, default=False)
  p.add_argument('--eval_every_steps', type=int, default=None,
                 help='Ours, for shared machines: eval every N steps instead of every '
                      "eval_period_time_sec of wall-clock, and train until the steps run out "
                      '(--max_global_steps) or the targets are hit, ignoring the time budget. '
                      'Logs keep accumulated_submission_time.')
  p.add_argument('--progress_every_sec', type=float, default=10.0,
                 help='Seconds between progress lines (ours; 0 disables).')
  return p
