"""NAdamW (JAX), external tuning: the self-tuning baseline's update with the search-space
point's hyperparameters (`schedules.nadamw_from_point`: any NAdamWHParams field,
`lr_scale`, `schedule` in {'warmup_cosine', 'warmup_constant'} and `horizon`);
`sweeps/nadamw_headroom_jax.json` is the headroom grid of issue 11."""
import functools

import jax
import jax.numpy as jnp

from curvlr import spec
from curvlr.core import api, batch_sizes, scalar_log, schedules
from curvlr.jax import diagnostics, sharding, train_step
from curvlr.jax.nadamw import nadamw_direction

_from_point = functools.lru_cache(maxsize=None)(schedules.nadamw_from_point)


def get_batch_size(workload_name):
  return batch_sizes.get_batch_size(workload_name)


def init_optimizer_state(workload: spec.Workload, model_params, model_state,
                         hyperparameters, rng) -> spec.OptimizerState:
  del model_params, model_state, rng
  h, _, _ = _from_point(hyperparameters)
  tx = nadamw_direction(1.0 - h.one_minus_beta1, h.beta2, h.eps, h.weight_decay)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape_tuple), workload.param_shapes)
  return diagnostics.join(sharding.replicate(tx.init(zeros)),
                          diagnostics.init(workload, hyperparameters)), tx.update


_jitted_step = train_step.jit_step(train_step.nadamw_step, num_static=3, donate=(3, 4, 5))


def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None) -> spec.UpdateReturn:
  del current_params_types, loss_type, train_state
  h, shape, horizon = _from_point(hyperparameters)
  opt_state, update_fn = optimizer_state
  lr = schedules.nadamw_lr(global_step, workload.step_hint, h, shape, horizon)
  new_opt_state, new_params, new_model_state, loss, grad_norm = diagnostics.nadamw_update(
      _jitted_step, workload, h, update_fn, model_state, opt_state,
      current_param_container, train_step.place_batch(batch), rng, jnp.float32(lr),
      global_step)
  previous_lr = schedules.nadamw_lr(max(global_step - 1, 0), workload.step_hint, h, shape, horizon)
  if scalar_log.should_log(workload.metrics_logger, global_step, lr, previous_lr, eval_results):
    scalar_log.write(workload.metrics_logger, global_step, loss, grad_norm, lr)
  return (new_opt_state, update_fn), new_params, new_model_state


prepare_for_eval = api.identity_prepare_for_eval
data_selection = api.data_selection
