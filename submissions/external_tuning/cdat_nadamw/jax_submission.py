"""CDAT on NAdamW directions (JAX), external tuning: see pytorch_submission.py."""
from curvlr.core import api, batch_sizes
from curvlr.core.defaults import HPARAMS, cdat_policy_from_hparams
from curvlr.jax import stepsize


def get_batch_size(workload_name):
  return batch_sizes.get_batch_size(workload_name)


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
  del model_params, model_state, rng
  policy = cdat_policy_from_hparams(hyperparameters, workload.step_hint)
  return stepsize.init_optimizer_state(workload, policy, HPARAMS, hyperparameters)


def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None):
  del current_params_types, loss_type, train_state
  return stepsize.update_params(cdat_policy_from_hparams(hyperparameters, workload.step_hint),
                                HPARAMS, workload,
                                current_param_container, model_state, batch, rng,
                                optimizer_state, global_step, eval_results)


prepare_for_eval = api.identity_prepare_for_eval
data_selection = api.data_selection
