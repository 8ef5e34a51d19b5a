"""Command-line flags: the names and defaults of AlgoPerf's submission_runner.py where they apply."""
import argparse

from curvlr import workloads
from curvlr.workloads.criteo import config as criteo_config


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
  p.add_argument('--workload', default='criteo_embedded', choices=workloads.available(),
                 metavar='{' + ','.join(workloads.available()) + '}',
                 help=_workload_help())
  p.add_argument('--framework', default='pytorch', choices=workloads.FRAMEWORKS,
                 help='pytorch (DDP when started by torchrun) or jax (jit over all local '
                      'devices).')
  p.add_argument('--tuning_ruleset', default='self', choices=('external', 'self'),
                 help="AlgoPerf's default is 'external'; ours is 'self' (our submissions "
                      'are self-tuning).')
  p.add_argument('--tuning_search_space', default=None,
                 help='External tuning only: JSON search space, a list of points or a dict '
                      'of {name: {min, max, scaling} | {feasible_points}}.')
  p.add_argument('--num_tuning_trials', type=int, default=1,
                 help='External tuning: number of hyperparameter points (trials) to run.')
  p.add_argument('--hparam_start_index', type=int, default=None,
                 help='External tuning: run only trials from this 0-based index on.')
  p.add_argument('--hparam_end_index', type=int, default=None,
                 help='External tuning: run only trials before this 0-based index.')
  p.add_argument('--data_dir', default=None,
                 help='Criteo day files; default for criteo_embedded: synthetic data '
                      'generated once into ~/.cache/curvlr (or $CURVLR_CACHE_DIR).')
  p.add_argument('--experiment_dir', default='experiments',
                 help='Root of the logs: <experiment_dir>/<experiment_name>/'
                      '<workload>_<framework>/trial_<k>/.')
  p.add_argument('--experiment_name', default=None,
                 help='Default: <submission>_<framework>.')
  p.add_argument('--max_global_steps', type=int, default=None,
                 help='Stop after this many steps (with a final eval). Default: no limit.')
  p.add_argument('--rng_seed', type=int, default=None,
                 help='Seed of data order, init and dropout. Default: a random one.')
  p.add_argument('--overwrite', type=_bool, nargs='?', const=True, default=False,
                 help='Delete an existing run directory of this experiment first.')
  p.add_argument('--resume_last_run', type=_bool, nargs='?', const=True, default=False,
                 help='Continue an existing run from its checkpoint.')
  p.add_argument('--append_timestamp', type=_bool, nargs='?', const=True, default=False,
                 help='Append -YYYY-MM-DD-HH-MM-SS to the experiment name.')
  p.add_argument('--save_checkpoints', type=_bool, nargs='?', const=True, default=True,
                 help='Keep the latest checkpoint (checkpoint.pkl) after every eval.')
  p.add_argument('--skip_evals', type=_bool, nargs='?', const=True, default=False,
                 help='No evals (targets are then never reached; for timing).')
  p.add_argument('--eval_every_steps', type=int, default=None,
                 help='Ours, for shared machines: eval every N steps instead of every '
                      "eval_period_time_sec of wall-clock, and train until the steps run out "
                      '(--max_global_steps) or the targets are hit, ignoring the time budget. '
                      'Logs keep accumulated_submission_time.')
  p.add_argument('--batch_size', type=int, default=None,
                 help="Ours, for batch-size studies: the global train batch size instead of the "
                      "submission's get_batch_size (step_hint and targets stay the workload's "
                      'unless --step_hint is given).')
  p.add_argument('--step_hint', type=int, default=None,
                 help="Ours, for batch-size studies: replaces the workload's step_hint (the "
                      'steps the baseline schedule spans), e.g. 1500 x 1024 / B at batch B '
                      'for the same examples.')
  p.add_argument('--stop_at_target', type=_bool, nargs='?', const=True, default=True,
                 help='Ours: false trains on past the targets (whole curves, to set targets or '
                      'score several from one run); the first hit is still recorded.')
  p.add_argument('--progress_every_sec', type=float, default=10.0,
                 help='Seconds between progress lines (ours; 0 disables).')
  return p


def _workload_help() -> str:
  return 'One of: ' + '; '.join(
      f'{name} ({criteo_config.CONFIGS[name].description}; validation target '
      f'{criteo_config.CONFIGS[name].validation_target_value})'
      for name in workloads.available()) + '.'
