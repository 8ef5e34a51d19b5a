"""AlgoPerf's training loop (submission_runner.py `train_once`), timing semantics included.

Timed: data_selection + update_params + loop overhead, and prepare_for_eval.
Untimed: input queue, init_model_fn, init_optimizer_state, restore, logging, evals.
The first eval follows step 1; later ones every `eval_period_time_sec` of wall-clock.
Training stops on both targets, on the budget (x1.5 for self-tuning; checked only at
eval time, as AlgoPerf), on --max_global_steps, or on TrainingCompleteError; which one
is recorded (`TrialResult.stop_reason`, `run_summary.json` in the trial directory).
"""
import dataclasses
import inspect
import os
import pathlib
import types
from typing import Any, Dict, List, Optional, Tuple

from curvlr import spec
from curvlr.runner import cpu_share, logs

SELF_TUNING_BUDGET_FACTOR = 1.5
CHECKPOINT = 'checkpoint.pkl'
RUN_SUMMARY = 'run_summary.json'
# Why a run stopped, first match wins; the values are what run_summary.json records.
STOP_REASONS = {
    'target': 'target reached (validation and test)',
    'training_complete': 'the submission raised TrainingCompleteError',
    'max_global_steps': 'reached --max_global_steps',
    'budget': 'time budget used up',
}


@dataclasses.dataclass
class TrialResult:
  trial_dir: pathlib.Path
  eval_results: List[Tuple[int, Dict[str, Any]]]
  global_step: int
  submission_time: float  # accumulated_submission_time at the end, seconds
  time_to_validation_target: Optional[float]  # seconds of submission time, None if missed
  stop_reason: str  # a key of STOP_REASONS


def stop_reason(*, goals_reached: bool, training_complete_error: bool, global_step: int,
                max_global_steps: Optional[int], is_time_remaining: bool) -> str:
  """The key of STOP_REASONS that ended a run (precedence in that dict's order)."""
  if goals_reached:
    return 'target'
  if training_complete_error:
    return 'training_complete'
  if max_global_steps is not None and global_step >= max_global_steps:
    return 'max_global_steps'
  if not is_time_remaining:
    return 'budget'
  raise ValueError('The training loop ended with no stop condition met.')


def _close(input_queue) -> None:
  """Closes the input pipeline if it can be (its prefetch thread must not outlive the run)."""
  close = getattr(input_queue, 'close', None)
  if close is not None:
    close()


def train_once(workload, submission: types.ModuleType, backend, prng, *, trial_dir,
               data_dir, global_batch_size, global_eval_batch_size, hyperparameters,
               rng_seed, max_global_steps, self_tuning, resume, save_checkpoints,
               skip_evals=False, progress=None, eval_every_steps=None,
               stop_at_target=True) -> TrialResult:
  """One training run into `trial_dir` (created by the caller).

  eval_every_steps: ours, for load-independent experiments on shared machines: evals
  every that many steps instead of by wall-clock, and no time budget.
  stop_at_target: ours; False trains on past the targets (whole curves, e.g. to set
  targets or to score several of them from one run). The first hit is still recorded.
  """
  rng = prng.key(rng_seed)
  data_rng, opt_init_rng, model_init_rng, rng = prng.split(rng, 4)
  input_queue = workload._build_input_queue(data_rng, 'train', data_dir, global_batch_size)  # pylint: disable=protected-access
  try:
    params, model_state = workload.init_model_fn(model_init_rng)
    optimizer_state = submission.init_optimizer_state(
        workload, params, model_state, hyperparameters, opt_init_rng)
    prepare_for_eval = getattr(submission, 'prepare_for_eval', None)
    pass_train_state = 'train_state' in inspect.signature(submission.update_params).parameters

    state = dict(validation_goal_reached=False, test_goal_reached=False,
                 is_time_remaining=True, last_eval_time=0.0, training_complete=False,
                 accumulated_submission_time=0.0, accumulated_eval_time=0.0,
                 accumulated_logging_time=0.0, last_step_end_time=None)
    global_step, preemption_count, eval_results = 0, 0, []
    training_complete_error = False
    load_start = os.getloadavg()
    cpu_start, own_cpu_start = cpu_share.snapshot(), cpu_share.own_cpu_seconds()
    checkpoint = trial_dir / CHECKPOINT
    if resume and checkpoint.exists():
      params, model_state, optimizer_state, extra = backend.load_checkpoint(
          checkpoint, params, model_state, optimizer_state)
      global_step, eval_results = extra['global_step'], extra['eval_results']
      preemption_count = extra['preemption_count'] + 1
      state.update(extra['train_state'], training_complete=False)
      for _ in range(global_step):  # Deterministic data: skip what was consumed.
        next(input_queue)

    logger = None
    if backend.is_rank0:
      logs.write_json(trial_dir / f'meta_data_{preemption_count}.json',
                      logs.meta_data(workload, backend.name, rng_seed))
      logger = logs.MetricLogger(trial_dir)
    workload.metrics_logger = logger

    budget = workload.max_allowed_runtime_sec * (SELF_TUNING_BUDGET_FACTOR if self_tuning else 1)
    global_start_time = backend.get_time()
    state['last_step_end_time'] = global_start_time
    goals_reached = (stop_at_target and state['validation_goal_reached']
                     and state['test_goal_reached'])
    while state['is_time_remaining'] and not goals_reached and not state['training_complete']:
      step_rng = prng.fold_in(rng, global_step)
      data_select_rng, update_rng, prep_eval_rng, eval_rng = prng.split(step_rng, 4)
      batch = submission.data_selection(workload, input_queue, optimizer_state, params,
                                        model_state, hyperparameters, global_step,
                                        data_select_rng)
      try:
        kwargs = {'train_state': types.MappingProxyType(state)} if pass_train_state else {}
        optimizer_state, params, model_state = submission.update_params(
            workload=workload, current_param_container=params,
            current_params_types=workload.model_params_types, model_state=model_state,
            hyperparameters=hyperparameters, batch=batch, loss_type=workload.loss_type,
            optimizer_state=optimizer_state, eval_results=eval_results,
            global_step=global_step, rng=update_rng, **kwargs)
      except spec.TrainingCompleteError:
        state['training_complete'] = True
        training_complete_error = True
      global_step += 1
      if max_global_steps is not None and global_step == max_global_steps:
        state['training_complete'] = True
      train_step_end_time = backend.get_time()
      state['accumulated_submission_time'] += train_step_end_time - state['last_step_end_time']

      if eval_every_steps:
        eval_due = global_step % eval_every_steps == 0
      else:
        eval_due = train_step_end_time - state['last_eval_time'] >= workload.eval_period_time_sec
      if not skip_evals and (eval_due or state['training_complete']):
        del batch
        if prepare_for_eval is not None:
          prep_start = backend.get_time()
          optimizer_state, params, model_state = prepare_for_eval(
              workload=workload, current_param_container=params,
              current_params_types=workload.model_params_types, model_state=model_state,
              hyperparameters=hyperparameters, loss_type=workload.loss_type,
              optimizer_state=optimizer_state, eval_results=eval_results,
              global_step=global_step, rng=prep_eval_rng)
          state['accumulated_submission_time'] += backend.get_time() - prep_start
        state['is_time_remaining'] = (bool(eval_every_steps)
                                      or state['accumulated_submission_time'] < budget)
        if state['is_time_remaining']:
          eval_start = backend.get_time()
          result = workload.eval_model(global_eval_batch_size, params, model_state, eval_rng,
                                       data_dir, None, global_step)
          state['validation_goal_reached'] |= workload.has_reached_validation_target(result)
          state['test_goal_reached'] |= workload.has_reached_test_target(result)
          goals_reached = (stop_at_target and state['validation_goal_reached']
                           and state['test_goal_reached'])
          eval_end = backend.get_time()
          state['accumulated_eval_time'] += eval_end - eval_start
          result.update(score=state['accumulated_submission_time'],
                        total_duration=eval_end - global_start_time,
                        accumulated_submission_time=state['accumulated_submission_time'],
                        accumulated_eval_time=state['accumulated_eval_time'],
                        accumulated_logging_time=state['accumulated_logging_time'])
          eval_results.append((global_step, result))
          logging_start = backend.get_time()
          if logger is not None:
            logger.append_scalar_metrics(result, global_step, preemption_count, is_eval=True)
          if save_checkpoints:
            extra = dict(global_step=global_step, eval_results=eval_results,
                         preemption_count=preemption_count,
                         train_state={k: v for k, v in state.items()
                                      if k != 'last_step_end_time'})
            if backend.is_rank0:
              backend.save_checkpoint(trial_dir / (CHECKPOINT + '.tmp'), params, model_state,
                                      optimizer_state, extra)
              os.replace(trial_dir / (CHECKPOINT + '.tmp'), checkpoint)
          state['accumulated_logging_time'] += backend.get_time() - logging_start
          state['last_eval_time'] = backend.get_time()
          if progress is not None:
            progress.eval(global_step, result, workload)
      if progress is not None:
        progress.step(global_step, state['accumulated_submission_time'], budget)
      state['last_step_end_time'] = backend.get_time()

    if logger is not None:
      logger.append_scalar_metrics({'score': state['accumulated_submission_time']},
                                   global_step, preemption_count)
    hit = next(((step, r['score']) for step, r in eval_results
                if workload.has_reached_validation_target(r)), (None, None))
    reason = stop_reason(goals_reached=goals_reached,
                         training_complete_error=training_complete_error,
                         global_step=global_step, max_global_steps=max_global_steps,
                         is_time_remaining=state['is_time_remaining'])
    wall_time = backend.get_time() - global_start_time  # a collective under DDP: every rank
    run_cpu = backend.sum_over_processes(cpu_share.own_cpu_seconds() - own_cpu_start)
    other_cpu = cpu_share.other_share(cpu_start, cpu_share.snapshot(), run_cpu,
                                      os.cpu_count() or 1)
    if backend.is_rank0:
      logs.write_json(trial_dir / RUN_SUMMARY, {
          'stop_reason': reason, 'stop_reason_text': STOP_REASONS[reason],
          'global_step': global_step, 'preemption_count': preemption_count,
          'accumulated_submission_time': state['accumulated_submission_time'],
          'accumulated_eval_time': state['accumulated_eval_time'],
          'num_evals': len(eval_results),
          'steps_to_validation_target': hit[0], 'time_to_validation_target': hit[1],
          'validation_target_value': workload.validation_target_value,
          'loop_wall_time_sec': wall_time,  # training loop incl. evals, excl. init
          'loadavg_1min_start': load_start[0], 'loadavg_1min_end': os.getloadavg()[0],
          'cpu_share_other_processes': other_cpu,  # cpu_share.py; None off Linux
          'cpu_count': os.cpu_count()})
    return TrialResult(trial_dir, eval_results, global_step,
                       state['accumulated_submission_time'], hit[1], reason)
  finally:
    _close(input_queue)
