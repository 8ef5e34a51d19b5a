"""Self-tuning Schedule-Free AdamW baseline (JAX): optax's `contrib.schedule_free` around AdamW,
from `curvlr.jax.schedule_free` (AlgoPerf's optax 0.2.2 has neither).

The runner's params are y, where gradients are taken. `prepare_for_eval` returns
x = `schedule_free_eval_params(state, y)` and parks y in the optimizer state;
the next `update_params` trains from the parked y and ignores the x the runner
hands back, so training resumes exactly at y. Checkpoints written after an eval
hold the parked y, so a resumed run does too. Differences from AlgoPerf v0.5's
submission: README.md next to this file.
"""

import jax
import optax

from curvlr import spec
from curvlr.core import api, batch_sizes, scalar_log, schedule_free
from curvlr.jax import schedule_free as sf
from curvlr.jax import diagnostics, sharding, train_step

HPARAMS = schedule_free.SCHEDULE_FREE_BASELINE


def get_batch_size(workload_name):
  return batch_sizes.get_batch_size(workload_name)


def schedule_free_adamw(step_hint: int) -> optax.GradientTransformation:
  """optax.contrib.schedule_free_adamw's chain, with one lr per update for z and the average.

  Update k (0-based) uses lr_k = peak * min((k + 1) / warmup, 1) for both, as schedulefree
  and v0.5 do. optax's wrapper queries its warmup at k + 1 for the averaging weights but at
  k for the z step (its first z step has lr 0), so the z step's schedule is shifted here.
  Without warmup this equals optax.contrib.schedule_free_adamw(warmup_steps=None).
  `linear_schedule(0, peak, warmup)` is optax's `warmup_constant_schedule` (not in 0.2.2).
  """
  warmup = HPARAMS.warmup_steps(step_hint)
  if warmup:
    schedule = optax.linear_schedule(0.0, HPARAMS.learning_rate, warmup)
    z_schedule = lambda count: schedule(count + 1)
  else:  # a 0-step warmup schedule would keep lr at 0.
    schedule = z_schedule = HPARAMS.learning_rate
  base = optax.chain(
      sf.scale_by_rms(decay=HPARAMS.beta2, eps=HPARAMS.eps),
      optax.add_decayed_weights(HPARAMS.weight_decay),  # at y, the params update() gets
      optax.scale_by_learning_rate(z_schedule))
  return sf.schedule_free(base, learning_rate=schedule, b1=HPARAMS.beta1,
                          weight_lr_power=HPARAMS.weight_lr_power)


def init_optimizer_state(workload: spec.Workload, model_params, model_state,
                         hyperparameters, rng) -> spec.OptimizerState:
  """-> ({'sf': ScheduleFreeState, 'train_params': None | parked y} and 'diagnostics' when
  on (sharpness only), update_fn)."""
  del model_state, hyperparameters, rng
  tx = schedule_free_adamw(workload.step_hint)
  state = {'sf': sharding.replicate(tx.init(model_params)), 'train_params': None}
  entry = diagnostics.init(workload, None, preconditioner=False, direction=False)
  return diagnostics.attach(state, entry), tx.update


def _step(workload, update_fn, model_state, sf_state, params, batch, rng):
  (loss, new_model_state), grads = train_step.loss_and_grad(
      workload, params, model_state, batch, rng, HPARAMS.dropout_rate,
      HPARAMS.label_smoothing)
  updates, new_sf_state = update_fn(grads, sf_state, params)
  return (new_sf_state, optax.apply_updates(params, updates), new_model_state, loss,
          train_step.global_norm(grads))


_jitted_step = train_step.jit_step(_step)
_jitted_eval_params = jax.jit(sf.schedule_free_eval_params)


def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None) -> spec.UpdateReturn:
  del current_params_types, hyperparameters, loss_type, train_state
  opt_state, update_fn = optimizer_state
  y = opt_state['train_params']
  params = current_param_container if y is None else y
  lr = HPARAMS.learning_rate_at(global_step, workload.step_hint)
  batch = train_step.place_batch(batch)
  diag = diagnostics.begin(opt_state.get('diagnostics'), global_step, params)  # None when off
  if diag is not None and diag.active:  # the sharpness at y, before the step donates it
    diag.before_update(workload, HPARAMS, model_state, params, batch, rng, lr)
  new_sf_state, new_params, new_model_state, loss, grad_norm = _jitted_step(
      workload, update_fn, model_state, opt_state['sf'], params, batch, rng)
  previous_lr = HPARAMS.learning_rate_at(max(global_step - 1, 0), workload.step_hint)
  if scalar_log.should_log(workload.metrics_logger, global_step, lr, previous_lr, eval_results):
    scalar_log.write(workload.metrics_logger, global_step, loss, grad_norm, lr)
  new_state = diagnostics.attach({'sf': new_sf_state, 'train_params': None},
                                 None if diag is None else diag.finish(new_params))
  return (new_state, update_fn), new_params, new_model_state


def prepare_for_eval(workload, current_param_container, current_params_types, model_state,
                     hyperparameters, loss_type, optimizer_state, eval_results, global_step,
                     rng) -> spec.UpdateReturn:
  """-> x for the eval, with y parked in the optimizer state (idempotent)."""
  del workload, current_params_types, hyperparameters, loss_type, eval_results
  del global_step, rng
  opt_state, update_fn = optimizer_state
  y = opt_state['train_params']
  y = current_param_container if y is None else y
  x = _jitted_eval_params(opt_state['sf'], y)
  return ({**opt_state, 'train_params': y}, update_fn), x, model_state


data_selection = api.data_selection
