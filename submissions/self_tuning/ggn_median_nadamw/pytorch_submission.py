"""Interval-median GGN step sizes on NAdamW directions (PyTorch), self-tuning.

The NAdamW baseline schedule until step W; from then on windows of N two-batch
measurements of alpha = -g_1.d / (d^T G_1 d), at least I steps apart and spaced so that
they cost 0.8% of wall-clock, whose median (when positive, bounded like CDAT's lr)
becomes the lr, held in between. W, I, N from the workload's step_hint:
`curvlr/core/defaults.py`. Graph batches (ogbg) split into halves by graph, CTC batches
(librispeech) by sequence with the per-frame Fisher as the PSD GGN:
`curvlr/core/workload_support.py`.
"""
from curvlr.core import api, batch_sizes
from curvlr.pytorch import stepsize
from curvlr.core.defaults import HPARAMS, median_policy


def get_batch_size(workload_name):
  return batch_sizes.get_batch_size(workload_name)


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
  del model_state, hyperparameters, rng
  return stepsize.init_optimizer_state(workload, model_params, median_policy(workload.step_hint),
                                       HPARAMS)


def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results,
                  global_step, rng, train_state=None):
  del current_params_types, hyperparameters, loss_type, train_state
  return stepsize.update_params(HPARAMS, workload, current_param_container, model_state,
                                batch, rng, optimizer_state, global_step, eval_results)


prepare_for_eval = api.identity_prepare_for_eval
data_selection = api.data_selection
