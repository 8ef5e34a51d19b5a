"""Self-tuning Schedule-Free AdamW baseline (PyTorch): `schedulefree.AdamWScheduleFree`.

Between updates the model holds y, where gradients are taken; `prepare_for_eval`
moves it to the average x (`optimizer.eval()`) and the next `update_params` moves
it back (`optimizer.train()`). A checkpoint written after an eval holds x in the
model and the optimizer's mode in its state_dict, so a resumed run also returns
to y. Differences from AlgoPerf v0.5's submission: README.md next to this file.
"""
import schedulefree

from curvlr import spec
from curvlr.core import api, batch_sizes, scalar_log, schedule_free
from curvlr.pytorch import diagnostics, train_step

HPARAMS = schedule_free.SCHEDULE_FREE_BASELINE


def get_batch_size(workload_name):
  return batch_sizes.get_batch_size(workload_name)


def init_optimizer_state(workload: spec.Workload, model_params, model_state,
                         hyperparameters, rng) -> spec.OptimizerState:
  del model_state, hyperparameters, rng
  return diagnostics.with_holder({'optimizer': schedulefree.AdamWScheduleFree(
      model_params.parameters(), lr=HPARAMS.learning_rate,
      betas=(HPARAMS.beta1, HPARAMS.beta2), eps=HPARAMS.eps,
      weight_decay=HPARAMS.weight_decay,
      warmup_steps=HPARAMS.warmup_steps(workload.step_hint), r=0.0,
      weight_lr_power=HPARAMS.weight_lr_power)}, None)


def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None) -> spec.UpdateReturn:
  del current_params_types, hyperparameters, loss_type, train_state
  model, optimizer = current_param_container, optimizer_state['optimizer']
  optimizer.train()  # x -> y after an eval; no-op otherwise.
  diag = optimizer_state.get('diagnostics')
  rng_state = diagnostics.begin(diag, global_step)  # None except on diagnostic steps
  loss, new_model_state = train_step.loss_and_grad(
      workload, model, model_state, batch, rng, dropout_rate=HPARAMS.dropout_rate,
      label_smoothing=HPARAMS.label_smoothing)
  lr = HPARAMS.learning_rate_at(global_step, workload.step_hint)
  previous_lr = HPARAMS.learning_rate_at(max(global_step - 1, 0), workload.step_hint)
  log = scalar_log.should_log(workload.metrics_logger, global_step, lr, previous_lr,
                              eval_results)
  grad_norm = train_step.grad_norm(model) if log else None  # before step(), which
  # Diagnostics: the sharpness at y only (no NAdamW preconditioner, no quadratic model).
  diagnostics.update(diag, rng_state, global_step, workload, model, new_model_state, batch,
                     rng, optimizer.step, lr,
                     hparams=HPARAMS)                 # step() normalises .grad in place
  if log:
    scalar_log.write(workload.metrics_logger, global_step, loss, grad_norm,
                     optimizer.param_groups[0]['scheduled_lr'])
  return optimizer_state, model, new_model_state


def prepare_for_eval(workload, current_param_container, current_params_types, model_state,
                     hyperparameters, loss_type, optimizer_state, eval_results, global_step,
                     rng) -> spec.UpdateReturn:
  """Moves the parameters in place from y to the average x (idempotent)."""
  del workload, current_params_types, hyperparameters, loss_type, eval_results
  del global_step, rng
  optimizer_state['optimizer'].eval()
  return optimizer_state, current_param_container, model_state


data_selection = api.data_selection
