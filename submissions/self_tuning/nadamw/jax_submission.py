"""Self-tuning NAdamW baseline (JAX): AlgoPerf v0.6's external-tuning JAX file with the
self-tuning hyperparameters, free of the self-tuning JAX file's bugs (ALGOPERF.md 5.5)."""

import jax
import jax.numpy as jnp

from curvlr import spec
from curvlr.core import api, batch_sizes, scalar_log, schedules
from curvlr.jax import diagnostics, sharding, train_step
from curvlr.jax.nadamw import nadamw_direction

HPARAMS = schedules.NADAMW_BASELINE


def get_batch_size(workload_name):
  return batch_sizes.get_batch_size(workload_name)


def init_optimizer_state(workload: spec.Workload, model_params, model_state,
                         hyperparameters, rng) -> spec.OptimizerState:
  del model_params, model_state, hyperparameters, rng
  tx = nadamw_direction(1.0 - HPARAMS.one_minus_beta1, HPARAMS.beta2, HPARAMS.eps,
                        HPARAMS.weight_decay)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape_tuple), workload.param_shapes)
  return diagnostics.join(sharding.replicate(tx.init(zeros)),
                          diagnostics.init(workload, None)), tx.update


_jitted_step = train_step.jit_step(train_step.nadamw_step, num_static=3, donate=(3, 4, 5))


def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None) -> spec.UpdateReturn:
  del current_params_types, hyperparameters, loss_type, train_state
  opt_state, update_fn = optimizer_state
  lr = schedules.nadamw_baseline_lr(global_step, workload.step_hint, HPARAMS)
  new_opt_state, new_params, new_model_state, loss, grad_norm = diagnostics.nadamw_update(
      _jitted_step, workload, HPARAMS, update_fn, model_state, opt_state,
      current_param_container, train_step.place_batch(batch), rng, jnp.float32(lr),
      global_step)
  previous_lr = schedules.nadamw_baseline_lr(max(global_step - 1, 0), workload.step_hint, HPARAMS)
  if scalar_log.should_log(workload.metrics_logger, global_step, lr, previous_lr, eval_results):
    scalar_log.write(workload.metrics_logger, global_step, loss, grad_norm, lr)
  return (new_opt_state, update_fn), new_params, new_model_state


# Evaluate the iterate as it is; feed batches in queue order.
prepare_for_eval = api.identity_prepare_for_eval
data_selection = api.data_selection
