"""CDAT step sizes on NAdamW directions (PyTorch), self-tuning.

lr = sigma * EMA(max(-g.u, 0)) / (EMA(|u^T G u|) + eps) along NAdamW's unit-lr update u
(weight decay included), u^T G u by one forward-mode JVP (GGN), measured when the
overhead-budget controller allows (0.8% of wall-clock) and held in between. Defaults and
the experiments behind them: `curvlr/core/defaults.py`.
"""
from curvlr.core import api, batch_sizes
from curvlr.pytorch import stepsize
from curvlr.core.defaults import CDAT_POLICY, HPARAMS


def get_batch_size(workload_name):
  return batch_sizes.get_batch_size(workload_name)


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
  del model_state, hyperparameters, rng
  return stepsize.init_optimizer_state(workload, model_params, CDAT_POLICY, HPARAMS)


def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None):
  del current_params_types, hyperparameters, loss_type, train_state
  return stepsize.update_params(HPARAMS, workload, current_param_container, model_state,
                                batch, rng, optimizer_state, global_step, eval_results)


prepare_for_eval = api.identity_prepare_for_eval
data_selection = api.data_selection
