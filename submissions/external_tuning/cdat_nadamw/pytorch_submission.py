"""CDAT on NAdamW directions (PyTorch), external tuning: sigma, ema_decay, curvature
('ggn' | 'hessian') and measure_every (measure every k steps) come from
`tuning_search_spaces/cdat_nadamw.json`; optional debiased, biased_diagnostics, lr_max,
ema_unit, numerator_clip and shape (`defaults.cdat_policy_from_hparams`); the NAdamW direction is the baseline's."""
from curvlr.core import api, batch_sizes
from curvlr.core.defaults import HPARAMS, cdat_policy_from_hparams
from curvlr.pytorch import stepsize


def get_batch_size(workload_name):
  return batch_sizes.get_batch_size(workload_name)


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
  del model_state, rng
  policy = cdat_policy_from_hparams(hyperparameters, workload.step_hint)
  return stepsize.init_optimizer_state(workload, model_params, policy, HPARAMS, hyperparameters)


def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None):
  del current_params_types, hyperparameters, loss_type, train_state
  return stepsize.update_params(HPARAMS, workload, current_param_container, model_state,
                                batch, rng, optimizer_state, global_step, eval_results)


prepare_for_eval = api.identity_prepare_for_eval
data_selection = api.data_selection
