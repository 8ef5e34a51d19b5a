"""`python -m curvlr.runner`: AlgoPerf's score_submission_on_workload, locally."""
import datetime
import os
import sys

from curvlr.runner import flags as flags_lib


def run(argv=None):
  args = flags_lib.parser().parse_args(argv)
  # Imports after parsing so that --help is instant.
  from curvlr import workloads
  from curvlr.runner import backends, logs, loop, search_space, submission as submission_lib

  if args.tuning_ruleset == 'self' and args.tuning_search_space:
    raise ValueError('--tuning_search_space must not be set with --tuning_ruleset=self.')
  if args.tuning_ruleset == 'external' and not args.tuning_search_space:
    raise ValueError('--tuning_ruleset=external needs --tuning_search_space.')
  if args.eval_every_steps and not args.stop_at_target and args.max_global_steps is None:
    raise ValueError('--eval_every_steps with --stop_at_target=false trains forever: set '
                     '--max_global_steps.')
  if args.batch_size is not None and args.batch_size < 1:
    raise ValueError(f'--batch_size={args.batch_size}: must be >= 1.')
  backend = backends.for_framework(args.framework)
  workload = workloads.get_workload(args.workload, args.framework, args.data_dir,
                                    args.step_hint)
  submission = submission_lib.load(args.submission_path)
  batch_size = args.batch_size or submission_lib.batch_size(submission, args.workload)
  eval_batch_size = (submission.get_eval_batch_size(args.workload)
                     if hasattr(submission, 'get_eval_batch_size') else workload.eval_batch_size)
  for name, size in (('train', batch_size), ('eval', eval_batch_size)):
    if size % backend.num_devices:
      raise ValueError(f'The global {name} batch size ({size}) has to be divisible by '
                       f'the number of devices ({backend.num_devices}).')

  name = args.experiment_name or (
      f'{os.path.basename(os.path.dirname(args.submission_path))}_{args.framework}')
  if args.append_timestamp:
    name += datetime.datetime.now().strftime('-%Y-%m-%d-%H-%M-%S')
  seed = args.rng_seed if args.rng_seed is not None else int.from_bytes(os.urandom(4), 'little') >> 1
  if args.tuning_ruleset == 'self':
    trials = [None]
  else:
    trials = search_space.load_points(args.tuning_search_space, args.num_tuning_trials, seed)
    trials = trials[args.hparam_start_index:args.hparam_end_index]
  wl_dir, created = None, []
  if backend.is_rank0:
    wl_dir, created = logs.workload_dir(args.experiment_dir, name, args.workload,
                                        args.framework, args.overwrite, args.resume_last_run)
  wl_dir = _broadcast_path(backend, wl_dir, args, name)
  try:
    return _run_trials(args, backend, workload, submission, wl_dir, trials, seed,
                       batch_size, eval_batch_size)
  except Exception:
    # What this invocation created and cannot be resumed goes, so that the next attempt
    # needs no --overwrite; a directory holding a checkpoint stays for --resume_last_run.
    if backend.is_rank0:
      kept = logs.remove_failed_run(created, loop.CHECKPOINT)
      if kept:
        print(f'The failed run kept {kept}: it holds a checkpoint that --resume_last_run '
              'continues (--overwrite starts afresh).', file=sys.stderr, flush=True)
      elif created:
        print(f'The failed run removed what it created ({created[-1]}).', file=sys.stderr,
              flush=True)
    raise


def _run_trials(args, backend, workload, submission, wl_dir, trials, seed, batch_size,
                eval_batch_size):
  """Runs every trial into wl_dir/trial_<k>; -> [loop.TrialResult]."""
  from curvlr.runner import logs, loop, progress, rng as rng_lib
  prng = rng_lib.for_framework(args.framework)
  show = progress.Progress(args.progress_every_sec, enabled=backend.is_rank0)
  results = []
  for index, hparams in enumerate(trials, start=(args.hparam_start_index or 0) + 1):
    trial_dir = wl_dir / f'trial_{index}'
    trial_dir.mkdir(parents=True, exist_ok=True)
    if backend.is_rank0:
      logs.write_json(trial_dir / 'flags_0.json', vars(args))
      if hparams is not None:
        logs.write_json(trial_dir / 'hparams.json', hparams._asdict())
      print(f'{args.framework} | {args.workload} | {args.submission_path} | trial {index} '
            f'| batch size {batch_size} | step_hint {workload.step_hint} | seed {seed} '
            f'| logs: {trial_dir}\n'
            f'  {_device_line(args.framework, backend)}\n'
            f'  hyperparameters: {_hparams_line(hparams)}', flush=True)
    result = loop.train_once(
        workload, submission, backend, prng, trial_dir=trial_dir, data_dir=args.data_dir,
        global_batch_size=batch_size, global_eval_batch_size=eval_batch_size,
        hyperparameters=hparams, rng_seed=seed, max_global_steps=args.max_global_steps,
        self_tuning=args.tuning_ruleset == 'self', resume=args.resume_last_run,
        save_checkpoints=args.save_checkpoints, skip_evals=args.skip_evals, progress=show,
        eval_every_steps=args.eval_every_steps,
        stop_at_target=args.stop_at_target)
    results.append(result)
    if backend.is_rank0:
      ttt = (f'{result.time_to_validation_target:.1f} s of submission time'
             if result.time_to_validation_target is not None else 'not reached')
      print(f'trial {index}: stopped after {result.global_step} steps: '
            f'{loop.STOP_REASONS[result.stop_reason]}; time to validation target '
            f'({workload.validation_target_value}): {ttt}; logs in {trial_dir}', flush=True)
  backend.finish()
  return results


def _device_line(framework: str, backend) -> str:
  """'device: cpu x 2 (2 processes, DDP)' and the like."""
  from curvlr.runner import logs
  info = logs.hardware_info(framework)
  if framework == 'pytorch':
    procs = backend.num_devices
    how = 'DDP' if procs > 1 else 'no DDP'
  else:
    procs, how = 1, 'jit over all local devices'
  return (f'device: {info["hardware.accelerator"]} x {info["hardware.device_count"]} '
          f'({procs} process{"es" if procs > 1 else ""}, {how})')


def _hparams_line(hparams) -> str:
  if hparams is None:
    return 'none (self-tuning: the submission sets its own)'
  return ', '.join(f'{k}={v}' for k, v in hparams._asdict().items())


def _broadcast_path(backend, path, args, name):
  """Every rank uses rank 0's directory (only rank 0 creates or clears it)."""
  import pathlib
  if backend.name == 'pytorch' and backend.num_devices > 1:
    import torch.distributed as dist
    box = [str(path) if path is not None else None]
    dist.broadcast_object_list(box, src=0)
    return pathlib.Path(box[0])
  return path


def main():
  from curvlr.runner.submission import MissingApiError
  try:
    run()
  except (ValueError, FileNotFoundError, FileExistsError, MissingApiError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  main()
