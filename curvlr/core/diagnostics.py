"""Online edge-of-stability diagnostics: the framework-free part.

Quantities (all of the global-batch mean training loss L, per-example units):
- sharpness: lambda_max(H), the top Hessian eigenvalue (1/lr units), with lr x sharpness
  against 2 (gradient descent on a quadratic is stable iff lr lambda_max < 2; seed 000).
- preconditioned sharpness: lambda_max(P^-1 H), P = diag(sqrt(v_hat) + eps) NAdamW's
  current preconditioner, computed as the top eigenvalue of the symmetric
  P^-1/2 H P^-1/2 (same spectrum). Adam-type methods with momentum b1 train at
  lr x lambda_max(P^-1 H) ~ (2 + 2 b1) / (1 - b1) = 38 at b1 = 0.9 (seed 004).
- quadratic model along the step taken, params += lr u: predicted change of the loss
  lr g.u + lr^2 / 2 u^T G u (G the GGN) against the realized change
  L(params + lr u) - L(params) on the same batch (loss units; negative is a decrease),
  and on a held-out batch (`quad_heldout_change`, below).

The held-out batch of a diagnostic step t is the next update's batch B_{t+1}: NAdamW's u_t
is built from batches <= t only (its momentum), so B_{t+1} is the one batch that the step
has not seen, without holding data aside or changing the data stream. The framework keeps
a copy of params_t from update t to update t + 1 (one params-sized vector), and update
t + 1, before its own update, evaluates L_{B_{t+1}}(params_{t+1}) - L_{B_{t+1}}(params_t)
(two forward passes, in the diagnostics' mode with update t + 1's dropout masks); the value
is logged under global_step t, beside the prediction it is compared with. Its seconds are
added to the measurement of step t (`record`): the extra cost of a diagnostic is then its
step's extra time plus these two passes, and update t + 1 counts as a plain step for the
rest. No value when the run stops (or the diagnostics' schedule restarts, `start`) between
t and t + 1. (The other half of the current batch is no held-out batch: u_t used its
gradient too; a batch held aside at init would change the data stream or need data at
init, which AlgoPerf's init_optimizer_state does not get.)

Eigenvalues come from `power_iteration` (one implementation for both frameworks, on flat
vectors): power iteration rather than Lanczos because it is warm-started by one vector
(the previous top eigenvector, kept by the framework between measurements), needs no
basis of k vectors nor reorthogonalisation, and with a slowly drifting top eigenvector a
few warm-started iterations suffice; its convergence is reported as the relative
residual ||A v - lambda v|| / |lambda| of the returned Rayleigh quotient. It finds the
eigenvalue of largest magnitude: a Hessian whose most negative eigenvalue dominates
gives a negative "sharpness", logged as such.

Cost accounting. The diagnostics time their own schedule like a curvature policy
(`amortization`: every diagnostic step, the step after it, every 50th) and report their
share of the training time as `diag_overhead_fraction`. It stays apart from a curvature
policy's `overhead_fraction` rather than folded into it: that one is the quantity the
policy's budget controller is built to hold at its target (0.008 by default), the
baselines have no policy to report it, and one sum of two schedules' estimates would
hide which one costs. What is folded is the time: the seconds of the diagnostics' own
work in an update (synchronised; the update itself excluded) are taken out of the
policy's clock (`policy.exclude`). Without that, with diagnostics every 100 steps and the
policy timing every 50th, each diagnostic step would enter the controller as a plain step
tens of times too slow, raising its plain-step estimate (more curvature measurements
than the budget allows) and lowering the overhead it reports. The total overhead is
overhead_fraction + diag_overhead_fraction to first order (each leaves the other's
extra seconds out of its total).

The switch: environment variable CURVLR_DIAGNOSTICS (self-tuning submissions get no
hyperparameters) or the external-tuning hparam `diagnostics`, parsed by `parse`:
  '' or 'off'                      diagnostics off (the default)
  'on'                             `Config()` (every 100 steps, 10 iterations)
  'k=50,iterations=20,budget=0.02,quantities=sharpness+quadratic'
keys: k (EveryK schedule), budget (Budget schedule with that target; exclusive with k),
iterations, tolerance, quantities ('+'-joined subset of QUANTITIES), start.
"""
import dataclasses
import functools
import json
import logging
import math
import os
from typing import Any, Callable, NamedTuple, Optional, Tuple

import numpy as np

from curvlr.core import amortization, guards

QUANTITIES = ('sharpness', 'preconditioned', 'quadratic')
ENV_VAR = 'CURVLR_DIAGNOSTICS'


@dataclasses.dataclass(frozen=True)
class Config:
  """What to measure and when.

  Attributes:
    quantities: subset of QUANTITIES.
    iterations: power-iteration steps per eigenvalue (one Hessian-vector product each).
    tolerance: relative residual under which an eigenvalue counts as converged.
    schedule: `curvlr.core.amortization` schedule of the diagnostic steps (its own
      timing state, separate from a curvature policy's). Default every 100 steps.
  """
  quantities: Tuple[str, ...] = QUANTITIES
  iterations: int = 10
  tolerance: float = 1e-2
  schedule: amortization.Schedule = amortization.EveryK(k=100)

  def __post_init__(self):
    guards.check(self, 'quantities', lambda v: len(v) > 0 and set(v) <= set(QUANTITIES),
                 f'a non-empty subset of {QUANTITIES}')
    guards.check(self, 'iterations', lambda v: v >= 1, '>= 1')
    guards.check(self, 'tolerance', lambda v: 0 < v < math.inf, 'finite and > 0')


def parse(text: Optional[str]) -> Optional[Config]:
  """The switch's mini-syntax (module docstring) -> Config, or None when off."""
  text = (text or '').strip()
  if text in ('', 'off', '0'):
    return None
  if text in ('on', '1'):
    return Config()
  fields = {}
  for item in text.split(','):
    key, sep, value = item.partition('=')
    key = key.strip()
    if not sep or key in fields:
      raise ValueError(f'{ENV_VAR}={text!r}: expected "off", "on" or distinct key=value '
                       f'pairs separated by commas, got {item!r}.')
    fields[key] = value.strip()
  unknown = set(fields) - {'k', 'budget', 'iterations', 'tolerance', 'quantities', 'start'}
  if unknown:
    raise ValueError(f'{ENV_VAR}={text!r}: unknown keys {sorted(unknown)}.')
  if 'k' in fields and 'budget' in fields:
    raise ValueError(f'{ENV_VAR}={text!r}: give k or budget, not both.')
  try:
    start = int(fields.get('start', 0))
    schedule = (amortization.Budget(target=float(fields['budget']), start=start)
                if 'budget' in fields else
                amortization.EveryK(k=int(fields.get('k', 100)), start=start))
    kwargs = dict(schedule=schedule)
    if 'iterations' in fields:
      kwargs['iterations'] = int(fields['iterations'])
    if 'tolerance' in fields:
      kwargs['tolerance'] = float(fields['tolerance'])
    if 'quantities' in fields:
      kwargs['quantities'] = tuple(fields['quantities'].split('+'))
    return Config(**kwargs)
  except ValueError as error:
    raise ValueError(f'{ENV_VAR}={text!r}: {error}') from error


def from_env(environ=None) -> Optional[Config]:
  """`parse` of CURVLR_DIAGNOSTICS (off when unset)."""
  return parse((os.environ if environ is None else environ).get(ENV_VAR))


class State(NamedTuple):
  """Schedule bookkeeping, the count of dropped (non-finite) values and the pending
  held-out evaluation; plain data.

  Attributes:
    held_out_step: the diagnostic step t whose params_t the framework keeps for the
      held-out change at update t + 1 (module docstring); -1 when none is pending.
    held_out_timed: whether step t's seconds were recorded (the held-out passes' seconds
      are then added to them).
  """
  timing: amortization.AmortState = amortization.AmortState()
  rejected_count: int = 0
  held_out_step: int = -1
  held_out_timed: bool = False


def to_dict(state: State) -> dict:
  """JSON-serialisable form of the state (checkpoints)."""
  return {'timing': state.timing._asdict(), 'rejected_count': state.rejected_count,
          'held_out_step': state.held_out_step, 'held_out_timed': state.held_out_timed}


def restore(data: dict) -> State:
  """Inverse of `to_dict` (after a JSON round trip)."""
  return State(amortization.restore(data['timing']), int(data['rejected_count']),
               int(data['held_out_step']), bool(data['held_out_timed']))


ENCODED_BYTES = 1024  # fixed size of `encode`'s output


def encode(switch: str, state: State) -> bytes:
  """The switch's text and the state as UTF-8 JSON padded with spaces to ENCODED_BYTES:
  exact, and storable as a uint8 array of one fixed shape in array checkpoints (as
  `policy.encode`), so that a checkpoint carries the configuration it was measured with."""
  data = json.dumps({'switch': switch, **to_dict(state)}, allow_nan=False).encode()
  if len(data) > ENCODED_BYTES:
    raise ValueError(f'diagnostics state needs {len(data)} bytes > {ENCODED_BYTES}.')
  return data.ljust(ENCODED_BYTES)


@functools.lru_cache(maxsize=None)
def _parse_cached(text: str) -> Config:
  return parse(text)


def decode(data: bytes) -> Tuple[str, Config, State]:
  """Inverse of `encode`: (the switch's text, its Config, the state)."""
  fields = json.loads(bytes(data).decode())
  return fields['switch'], _parse_cached(fields['switch']), restore(fields)


def restrict(config: Config, preconditioner: bool, direction: bool) -> Config:
  """`config` without what an optimizer cannot give: 'preconditioned' needs NAdamW's
  preconditioner, 'quadratic' the step's direction. Raises ValueError when nothing is left."""
  quantities = tuple(q for q in config.quantities if (q != 'preconditioned' or preconditioner)
                     and (q != 'quadratic' or direction))
  if not quantities:
    raise ValueError(f'{ENV_VAR}: none of {config.quantities} can be measured with this '
                     'optimizer.')
  return dataclasses.replace(config, quantities=quantities)


EIGEN_QUANTITIES = ('sharpness', 'preconditioned')  # power iterations, in this order
_EIGEN_PREFIX = {'sharpness': 'sharpness', 'preconditioned': 'precond_sharpness'}


def eigen_values(names, eigens) -> dict:
  """`Measurement` fields of the eigen quantities `names` from their `Eigen`s."""
  out = {}
  for name, e in zip(names, eigens):
    out[_EIGEN_PREFIX[name]] = float(e.value)
    out[_EIGEN_PREFIX[name] + '_residual'] = float(e.residual)
  return out


def should_measure(config: Config, state: State, step: int) -> bool:
  return amortization.should_measure(config.schedule, state.timing, step)


def held_out_due(state: State, step: int) -> bool:
  """Whether update `step` evaluates the held-out change of diagnostic step `step` - 1."""
  return state.held_out_step >= 0 and state.held_out_step == step - 1


def record(config: Config, state: State, step: int, measured: bool,
           seconds: Optional[float], held_out_seconds: Optional[float] = None) -> State:
  """Records update `step` and its wall time (reduced over ranks; None if untimed).

  held_out_seconds: the time of the held-out passes run in this update (None: none run):
  taken out of this update's seconds and added to the pending measurement's, when both
  were timed. Ends the pending held-out evaluation unless this update measured the
  quadratic model again (`pending`).
  """
  timing = state.timing
  if held_out_seconds is not None:
    if seconds is not None:
      seconds = max(seconds - held_out_seconds, 0.0)
    if state.held_out_timed and math.isfinite(held_out_seconds) and held_out_seconds >= 0:
      timing = timing._replace(
          last_measure_seconds=timing.last_measure_seconds + held_out_seconds,
          measure_seconds=timing.measure_seconds + held_out_seconds)
  new = amortization.record(config.schedule, timing, step, measured, seconds)
  pending = state.held_out_step == step
  return state._replace(
      timing=new, held_out_step=step if pending else -1,
      held_out_timed=pending and new.timed_measure_count > timing.timed_measure_count)


def pending(state: State, step: int) -> State:
  """The state after diagnostic step `step` kept its params for the held-out change."""
  return state._replace(held_out_step=step)


def held_out_metrics(state: State, change: float) -> Tuple[dict, State]:
  """{'quad_heldout_change': change} (to log under the diagnostic step) and the state;
  a non-finite change is dropped and counted in rejected_count."""
  if math.isfinite(change):
    return {'quad_heldout_change': float(change)}, state
  logging.warning('curvlr diagnostics: dropped non-finite quad_heldout_change.')
  return {}, state._replace(rejected_count=state.rejected_count + 1)


class Eigen(NamedTuple):
  """A power-iteration estimate: Rayleigh quotient `value`, its relative residual
  ||A v - value v|| / |value| and the next warm start `vector` (unit norm)."""
  value: Any
  residual: Any
  vector: Any


def power_iteration(apply: Callable[[Any], Any], start, iterations: int) -> Eigen:
  """`iterations` steps of power iteration on the symmetric operator `apply` from `start`.

  Works on any flat vector type with @, * and / (torch tensors, jax arrays, numpy); costs
  exactly `iterations` calls of `apply`: the last call gives both the residual of the
  returned Rayleigh quotient and the next warm start. A zero or non-finite product gives
  non-finite values (dropped by `metrics`).
  """
  v = start / (start @ start) ** 0.5
  for _ in range(iterations):
    w = apply(v)
    value = v @ w
    r = w - value * v
    residual = (r @ r) ** 0.5 / abs(value)
    v = w / (w @ w) ** 0.5
  return Eigen(value, residual, v)


def initial_vector(size: int):
  """The cold start of every power iteration (numpy float64, fixed seed): the same on
  every rank and in both frameworks."""
  return np.random.default_rng(0).standard_normal(size)


def sharpness_threshold(lr: float) -> float:
  """2 / lr: gradient descent's stability edge (1/lr units; inf at lr = 0)."""
  return 2.0 / lr if lr > 0 else math.inf


def preconditioned_threshold(lr: float, beta1: float) -> float:
  """(2 + 2 beta1) / ((1 - beta1) lr): preconditioned EMA-momentum's edge (seed 004)."""
  return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr) if lr > 0 else math.inf


def predicted_change(lr: float, g_dot_u: float, u_g_u: float) -> float:
  """lr g.u + lr^2 / 2 u^T G u: the quadratic model's loss change for params += lr u."""
  return lr * g_dot_u + 0.5 * lr * lr * u_g_u


class Measurement(NamedTuple):
  """Reduced floats of one diagnostic step; NaN for a quantity not measured."""
  sharpness: float = math.nan
  sharpness_residual: float = math.nan
  precond_sharpness: float = math.nan
  precond_sharpness_residual: float = math.nan
  g_dot_u: float = math.nan
  u_ggn_u: float = math.nan
  realized_change: float = math.nan


def metrics(config: Config, state: State, measurement: Measurement, lr: float,
            beta1: Optional[float]) -> Tuple[dict, State]:
  """Named scalars (`metric_names.DIAGNOSTICS`) of one measurement at lr, and the state.

  Non-finite measured values are dropped from the dict, counted in `diag_rejected` (once
  per measurement) and logged; thresholds are dropped silently where lr = 0 makes them inf.
  beta1: the preconditioner's momentum (None: no preconditioned threshold).
  Call before `record`s this step: diag_count counts this measurement, and
  diag_overhead_fraction covers the steps before it.
  """
  m = measurement
  out = {}
  if 'sharpness' in config.quantities:
    out.update(sharpness=m.sharpness, sharpness_residual=m.sharpness_residual,
               lr_sharpness=lr * m.sharpness, sharpness_threshold=sharpness_threshold(lr),
               sharpness_converged=float(m.sharpness_residual <= config.tolerance))
  if 'preconditioned' in config.quantities:
    out.update(precond_sharpness=m.precond_sharpness,
               precond_sharpness_residual=m.precond_sharpness_residual,
               lr_precond_sharpness=lr * m.precond_sharpness,
               precond_converged=float(m.precond_sharpness_residual <= config.tolerance))
    if beta1 is not None:
      out['precond_threshold'] = preconditioned_threshold(lr, beta1)
  if 'quadratic' in config.quantities:
    out.update(quad_predicted_change=predicted_change(lr, m.g_dot_u, m.u_ggn_u),
               quad_realized_change=m.realized_change)
  bad = sorted(k for k, v in out.items() if not math.isfinite(v) and 'threshold' not in k)
  if bad:
    logging.warning('curvlr diagnostics: dropped non-finite %s.', bad)
    state = state._replace(rejected_count=state.rejected_count + 1)
  out = {k: float(v) for k, v in out.items() if math.isfinite(v)}
  out.update(diag_overhead_fraction=amortization.overhead_fraction(state.timing),
             diag_count=state.timing.measure_count + 1, diag_rejected=state.rejected_count)
  return {k: (math.nan if v is None else float(v)) for k, v in out.items()}, state
