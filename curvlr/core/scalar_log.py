"""When a submission logs its training scalars (`metric_names.TRAINING`: loss, grad_norm, lr).

AlgoPerf's baselines log at steps <= 100 and every 500th step, which hides the lr
schedule between those points. Ours log at those steps and also

- right after every eval (the first update whose `eval_results` ends with an eval at
  this global step), so every eval row has the lr it was trained with beside it;
- whenever the lr moved to another bin of a logarithmic grid with ratio `1 + LR_BIN`
  (5%) since the previous update, so the logged points, drawn as steps, follow the lr
  within 5% over the whole run. A warm-up or decay to 1e-4 of the peak takes at most
  ~190 rows per factor-1e4 range; a held lr (between curvature measurements) none.
  lrs <= LR_FLOOR (1e-10) share one bin.

A pure function of the step, the current and the previous update's lr, and the eval
list, so it needs no state and is the same on every rank. Computing the scalars (a
host sync, a gradient norm) is then paid only on logged steps.
"""
import math
from typing import Any, Sequence

FIRST_STEPS = 100
EVERY = 500
LR_BIN = 0.05
LR_FLOOR = 1e-10


def lr_bin(lr: float) -> float:
  """Index of the grid cell holding `lr`; one cell for lr <= LR_FLOOR, NaN for non-finite."""
  lr = float(lr)
  if not math.isfinite(lr):
    return math.nan
  if lr <= LR_FLOOR:
    return -math.inf
  return math.floor(math.log(lr) / math.log1p(LR_BIN))


def after_eval(eval_results: Sequence[Any], global_step: int) -> bool:
  """Whether an eval ran right before update `global_step` (AlgoPerf's (step, dict) list)."""
  return bool(eval_results) and eval_results[-1][0] == global_step


def due(global_step: int, lr: float, previous_lr: float, eval_results: Sequence[Any]) -> bool:
  """Whether update `global_step` logs its scalars; `previous_lr` is update step - 1's lr."""
  if global_step <= FIRST_STEPS or global_step % EVERY == 0:
    return True
  if after_eval(eval_results, global_step):
    return True
  return lr_bin(lr) != lr_bin(previous_lr)  # NaN != NaN: a non-finite lr is always logged.


def should_log(logger, global_step: int, lr: float, previous_lr: float,
               eval_results: Sequence[Any]) -> bool:
  """`due`, and a logger to write to (AlgoPerf gives one on rank 0 only)."""
  return logger is not None and due(global_step, lr, previous_lr, eval_results)


def write(logger, global_step: int, loss, grad_norm, lr: float) -> None:
  """One `measurements.csv` row of the TRAINING scalars (converted to Python floats)."""
  logger.append_scalar_metrics(
      {'loss': float(loss), 'grad_norm': float(grad_norm), 'lr': float(lr)}, global_step)
