"""Learning-rate schedules and the NAdamW baseline's constants (framework-free).

`warmup_cosine` has the exact semantics of AlgoPerf's JAX self-tuning NAdamW
schedule (ALGOPERF.md 5.2), which both of our frameworks use: linear warmup from
0 over `warmup_steps` updates, cosine decay over `decay_steps`, and 0 afterwards
(PyTorch's CosineAnnealingLR would climb back up beyond step_hint).
"""
import dataclasses
import math
from typing import Any, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class NAdamWHParams:
  """AlgoPerf v0.6 self-tuning NAdamW baseline (algorithms/baselines/self_tuning)."""
  learning_rate: float = 0.0017486387539278373
  one_minus_beta1: float = 0.06733926164
  beta2: float = 0.9955159689799007
  weight_decay: float = 0.08121616522670176
  warmup_factor: float = 0.02
  eps: float = 1e-8
  dropout_rate: float = 0.1
  label_smoothing: float = 0.0
  grad_clip: Optional[float] = None


NADAMW_BASELINE = NAdamWHParams()


def warmup_cosine(step: int, peak_lr: float, warmup_steps: int, decay_steps: int) -> float:
  """lr of update `step` (0-based): peak*k/w during warmup, then half-cosine to 0, then 0.

  Equals optax.join_schedules([linear_schedule(0, peak, w), cosine_decay_schedule(peak, T)],
  [w]) at every step (the first update has lr 0; lr is 0 from step w + T on).
  """
  if step < 0 or warmup_steps < 0 or decay_steps < 1:
    raise ValueError(f'warmup_cosine(step={step}, warmup_steps={warmup_steps}, '
                     f'decay_steps={decay_steps}): need step >= 0, warmup_steps >= 0, '
                     'decay_steps >= 1.')
  if step < warmup_steps:
    return peak_lr * step / warmup_steps
  progress = min(step - warmup_steps, decay_steps) / decay_steps
  return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps(step_hint: int, hparams: NAdamWHParams = NADAMW_BASELINE) -> int:
  """The baseline's warm-up length in updates: int(warmup_factor * step_hint)."""
  return int(hparams.warmup_factor * step_hint)


def nadamw_baseline_lr(step: int, step_hint: int,
                       hparams: NAdamWHParams = NADAMW_BASELINE) -> float:
  """The baseline's lr at update `step`.

  w = int(warmup_factor * step_hint) warmup steps, T = max(step_hint - w, 1) decay steps.
  """
  warmup = warmup_steps(step_hint, hparams)
  return warmup_cosine(step, hparams.learning_rate, warmup, max(step_hint - warmup, 1))


SHAPES = ('warmup_cosine', 'warmup_constant')


def warmup_constant(step: int, peak_lr: float, warmup_steps: int) -> float:
  """lr of update `step`: peak*k/w during warmup, then peak (the "best constant lr" probe)."""
  if step < 0 or warmup_steps < 0:
    raise ValueError(f'warmup_constant(step={step}, warmup_steps={warmup_steps}): need both >= 0.')
  return peak_lr * step / warmup_steps if step < warmup_steps else peak_lr


def nadamw_lr(step: int, step_hint: int, hparams: NAdamWHParams = NADAMW_BASELINE,
              shape: str = 'warmup_cosine', horizon: float = 1.0) -> float:
  """lr of update `step` for the baseline's warm-up and `shape` after it (`SHAPES`).

  horizon: 'warmup_cosine' decays to 0 at update round(horizon * step_hint) instead of
  step_hint (the warm-up, int(warmup_factor * step_hint), is the baseline's); the
  "decay earlier" probe of the headroom grid. In (0, 1].
  """
  if not 0 < horizon <= 1:
    raise ValueError(f'horizon = {horizon}: must be in (0, 1].')
  warmup = warmup_steps(step_hint, hparams)
  if shape == 'warmup_cosine':
    end = max(round(horizon * step_hint), warmup + 1)
    return warmup_cosine(step, hparams.learning_rate, warmup, end - warmup)
  if shape == 'warmup_constant':
    return warmup_constant(step, hparams.learning_rate, warmup)
  raise ValueError(f'schedule shape {shape!r}: expected one of {SHAPES}.')


def nadamw_from_point(point: Any) -> Tuple[NAdamWHParams, str, float]:
  """External tuning: (NAdamWHParams, shape, horizon) from a search-space point.

  Fields named like NAdamWHParams' replace the baseline's values; `lr_scale` multiplies
  the baseline's learning_rate (the headroom grid: 2^k x the tuned peak, same shape);
  `schedule` picks the shape (default 'warmup_cosine') and `horizon` its end as a
  fraction of step_hint (`nadamw_lr`, default 1); `diagnostics` (the switch of
  `curvlr.core.diagnostics`) is read by the diagnostics, not here. Unknown fields are an
  error, so that a misspelt hyperparameter cannot fall back to the baseline silently.
  """
  values = {k: v for k, v in point._asdict().items() if v is not None and k != 'diagnostics'}
  shape = values.pop('schedule', 'warmup_cosine')
  scale = float(values.pop('lr_scale', 1.0))
  horizon = float(values.pop('horizon', 1.0))
  names = {f.name for f in dataclasses.fields(NAdamWHParams)}
  unknown = sorted(set(values) - names)
  if unknown:
    raise ValueError(f'NAdamW hyperparameters {unknown} unknown; expected any of '
                     f'{sorted(names | {"lr_scale", "schedule", "horizon"})}.')
  if shape not in SHAPES:
    raise ValueError(f'schedule {shape!r}: expected one of {SHAPES}.')
  hparams = dataclasses.replace(NADAMW_BASELINE, **values)
  if not 0 < horizon <= 1:
    raise ValueError(f'horizon = {horizon}: must be in (0, 1].')
  return (dataclasses.replace(hparams, learning_rate=hparams.learning_rate * scale), shape,
          horizon)
