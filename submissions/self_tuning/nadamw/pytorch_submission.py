"""Self-tuning NAdamW baseline (PyTorch): AlgoPerf v0.6's, with JAX's schedule (lr = 0 after step_hint)."""
from curvlr import spec
from curvlr.core import api, batch_sizes, scalar_log, schedules
from curvlr.pytorch import diagnostics, train_step
from curvlr.pytorch.nadamw import NAdamW

HPARAMS = schedules.NADAMW_BASELINE


def get_batch_size(workload_name):
  return batch_sizes.get_batch_size(workload_name)


def init_optimizer_state(workload: spec.Workload, model_params, model_state,
                         hyperparameters, rng) -> spec.OptimizerState:
  del workload, model_state, hyperparameters, rng
  return diagnostics.with_holder({'optimizer': NAdamW(model_params.parameters(),
                              betas=(1.0 - HPARAMS.one_minus_beta1, HPARAMS.beta2),
                              eps=HPARAMS.eps, weight_decay=HPARAMS.weight_decay)}, None)


def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None) -> spec.UpdateReturn:
  del current_params_types, hyperparameters, loss_type, train_state
  model, optimizer = current_param_container, optimizer_state['optimizer']
  diag = optimizer_state.get('diagnostics')
  rng_state = diagnostics.begin(diag, global_step)  # None except on diagnostic steps
  loss, new_model_state = train_step.loss_and_grad(
      workload, model, model_state, batch, rng, dropout_rate=HPARAMS.dropout_rate,
      label_smoothing=HPARAMS.label_smoothing)
  lr = schedules.nadamw_baseline_lr(global_step, workload.step_hint, HPARAMS)
  u = optimizer.direction()  # step(lr) is direction() then apply(u, lr).
  diagnostics.update(diag, rng_state, global_step, workload, model, new_model_state, batch,
                     rng, lambda: optimizer.apply(u, lr), lr, hparams=HPARAMS,
                     direction=u, optimizer=optimizer)
  previous_lr = schedules.nadamw_baseline_lr(max(global_step - 1, 0), workload.step_hint, HPARAMS)
  if scalar_log.should_log(workload.metrics_logger, global_step, lr, previous_lr, eval_results):
    scalar_log.write(workload.metrics_logger, global_step, loss, train_step.grad_norm(model), lr)
  return optimizer_state, model, new_model_state


# Evaluate the iterate as it is; feed batches in queue order.
prepare_for_eval = api.identity_prepare_for_eval
data_selection = api.data_selection
