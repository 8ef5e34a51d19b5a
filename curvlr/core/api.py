"""Framework-free AlgoPerf API functions that several submissions share verbatim."""


def data_selection(workload, input_queue, optimizer_state, current_param_container,
                   model_state, hyperparameters, global_step, rng):
  """The next batch of the runner's input queue (AlgoPerf's baselines do exactly this)."""
  del workload, optimizer_state, current_param_container, model_state, hyperparameters
  del global_step, rng
  return next(input_queue)


def identity_prepare_for_eval(workload, current_param_container, current_params_types,
                              model_state, hyperparameters, loss_type, optimizer_state,
                              eval_results, global_step, rng):
  """Evaluates the training iterate as it is: -> (optimizer_state, params, model_state)."""
  del workload, current_params_types, hyperparameters, loss_type, eval_results
  del global_step, rng
  return optimizer_state, current_param_container, model_state
