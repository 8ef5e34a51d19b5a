"""Online edge-of-stability diagnostics (JAX); decisions and names in `curvlr.core.diagnostics`.

Same quantities, conventions and warm starts as `curvlr/pytorch/diagnostics.py` (read its
docstring). Hessian-vector products are `jax.jvp` of `jax.grad` of the mean training loss
(train mode, `update_batch_norm=False`, the step's `rng`: the curvature oracles' RNG
rule) on flat vectors (`ravel_pytree`). Under `jax.jit` with the batch sharded and the
parameters replicated the loss is the global-batch one, so the eigenvalues are the
single-device ones with no explicit collective.

State: when on, the optimizer state holds a 'diagnostics' entry (`init`):
{'state': uint8[core.ENCODED_BYTES] (`core.encode`: the switch's text and `core.State`),
name: float32[number of parameters] for each eigen quantity measured (its warm start),
'held_out': float32[number of parameters] with the quadratic model (the params of the
last quadratic measurement, kept for the held-out change at the next update, `core`
docstring; meaningful while `core.State.held_out_step` is set)},
arrays of fixed shapes from init, so that array checkpoints keep them bit for bit and
restore them into a template made from any state. No entry when off, so that the states
and checkpoints of runs without diagnostics are unchanged. The switch is read once, at
init; the entry carries it from then on (resumed runs included).

One update's host side is a `Step` (`begin`): it decodes the entry, times the update
when the schedule asks (`amortization.is_timed`: waiting for the device before and after,
as the curvature policies' clock does), runs the jitted measurements on a diagnostic
step (and the held-out change on the update after one with the quadratic model: `active`)
and logs them to measurements.csv; any other step runs no extra jitted code and waits for
nothing unless timed.
"""
import functools
import math
import os
import time
from typing import List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from curvlr import spec
from curvlr.core import amortization
from curvlr.core import diagnostics as core
from curvlr.core import workload_support
from curvlr.jax import curvature, sharding, train_step
from curvlr.jax.nadamw import NAdamState


def mean_loss_fn(workload, model_state, batch, rng, dropout_rate: float,
                 label_smoothing: float):
  """params -> global-batch mean training loss, in the diagnostics' mode (docstring)."""
  loss_type = workload_support.support(workload).loss

  def loss(params):
    out = workload.model_fn(params, batch, model_state, spec.ForwardPassMode.TRAIN, rng,
                            update_batch_norm=False, dropout_rate=dropout_rate)[0]
    logits, aux = curvature._split_output(out)  # pylint: disable=protected-access
    summed, n = curvature.loss_sums(loss_type, logits, batch['targets'], batch.get('weights'),
                                    label_smoothing, aux)
    return summed / n

  return loss


def top_eigens(loss_fn, params, starts, scales, iterations: int) -> List[core.Eigen]:
  """Power iteration on S H S for each (start, S) (S None: H), H the Hessian of
  `loss_fn` at `params`; flat vectors. Jit the caller (iterations static)."""
  flat, unravel = ravel_pytree(params)
  grad = jax.grad(lambda x: loss_fn(unravel(x)))

  def hvp(v):
    return jax.jvp(grad, (flat,), (v.astype(flat.dtype),))[1]

  out = []
  for start, scale in zip(starts, scales):
    apply = hvp if scale is None else (lambda v, s=scale: s * hvp(s * v))
    out.append(core.power_iteration(apply, start, iterations))
  return out


def preconditioner_scale(nadam_state, beta2: float, eps: float) -> Optional[jax.Array]:
  """S = (sqrt(v_hat) + eps)^-1/2 flat (`NAdamState`'s nu, count); None before the first
  update."""
  t = int(nadam_state.count)
  if t == 0:
    return None
  nu, _ = ravel_pytree(nadam_state.nu)
  return jax.lax.rsqrt(jnp.sqrt(nu / (1 - beta2 ** t)) + eps)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _eigens(workload, dropout_rate, label_smoothing, names, iterations, model_state, params,
            batch, rng, starts, scales):
  loss = mean_loss_fn(workload, model_state, batch, rng, dropout_rate, label_smoothing)
  return top_eigens(loss, params, starts, [None if n == 'sharpness' else s
                                           for n, s in zip(names, scales)], iterations)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _quadratic(workload, dropout_rate, label_smoothing, model_state, params, u, lr, batch, rng):
  """-> (g.u, u^T G u, L(params + lr u) - L(params)) on `batch` with the step's masks."""
  loss = mean_loss_fn(workload, model_state, batch, rng, dropout_rate, label_smoothing)
  row = workload_support.support(workload)

  def apply_fn(p):
    return workload.model_fn(p, batch, model_state, spec.ForwardPassMode.TRAIN, rng,
                             update_batch_norm=False, dropout_rate=dropout_rate)[0]

  sums = curvature.ggn_quadratic_form(apply_fn, params, u, batch['targets'], row.loss,
                                      mask=batch.get('weights'),
                                      label_smoothing=label_smoothing).mean()
  after = loss(train_step.apply(params, u, lr))
  return sums.gu, sums.quad, after - sums.loss


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _held_out(workload, dropout_rate, label_smoothing, model_state, params, kept, batch, rng):
  """-> L(params) - L(kept) on `batch` with the step's masks (kept: flat, `ravel_pytree`)."""
  loss = mean_loss_fn(workload, model_state, batch, rng, dropout_rate, label_smoothing)
  _, unravel = ravel_pytree(params)
  return loss(params) - loss(unravel(kept))


# A diagnostic NAdamW step: the direction, the measurements, then the update. The params
# are measured after the direction step, so only the model and optimizer state are donated.
_jit_direction = train_step.jit_step(train_step.nadamw_direction_step, num_static=3,
                                     donate=(3, 4))
_jit_apply = train_step.jit_step(train_step.apply, num_static=0, donate=(0,))


def switch(hparams=None) -> str:
  """The switch's text: hparams.diagnostics (external tuning) if set, else CURVLR_DIAGNOSTICS."""
  text = getattr(hparams, 'diagnostics', None) if hparams is not None else None
  return os.environ.get(core.ENV_VAR, '') if text is None else str(text)


def _num_params(workload) -> int:
  return sum(math.prod(s.shape_tuple) for s in jax.tree.leaves(
      workload.param_shapes, is_leaf=lambda s: hasattr(s, 'shape_tuple')))


def init(workload, hparams=None, *, preconditioner: bool = True,
         direction: bool = True) -> Optional[dict]:
  """The 'diagnostics' entry of a new optimizer state, or None when off (`switch`).
  preconditioner / direction: whether the optimizer has NAdamW's preconditioner and a
  direction u to measure along (`core.restrict`; raises ValueError when nothing is left)."""
  text = switch(hparams)
  config = core.parse(text)
  if config is None:
    return None
  config = core.restrict(config, preconditioner, direction)
  start = sharding.replicate(jnp.asarray(core.initial_vector(_num_params(workload)),
                                         jnp.float32))
  entry = {'state': np.frombuffer(core.encode(text, core.State()), np.uint8),
           **{name: start for name in core.EIGEN_QUANTITIES if name in config.quantities}}
  if 'quadratic' in config.quantities:
    entry['held_out'] = jnp.zeros_like(start)
  return entry


def _nadam(opt_state) -> NAdamState:
  """The NAdamState in `nadamw_direction`'s chain state."""
  if isinstance(opt_state, NAdamState):
    return opt_state
  return next(s for s in opt_state if isinstance(s, NAdamState))


class Step:
  """The diagnostics of one update (host side, not stored): `begin`, then, when `active`
  (a diagnostic step or a held-out one), `before_update` (or `nadamw_step`), then `finish`
  for the new entry."""

  def __init__(self, entry: dict, step: int, params):
    self.switch, self.config, self.state = core.decode(
        np.asarray(entry['state'], np.uint8).tobytes())
    self.vectors = {k: v for k, v in entry.items() if k != 'state'}
    self.step = step
    self.measuring = core.should_measure(self.config, self.state, step)
    self.held_out_due = core.held_out_due(self.state, step)
    self.active = self.measuring or self.held_out_due
    self._start = None
    self._held_out_seconds = None
    self.seconds = 0.0  # the diagnostics' own work in this update (`before_update`)
    if amortization.is_timed(self.config.schedule, self.state.timing, step, self.measuring):
      jax.block_until_ready(params)
      self._start = time.perf_counter()

  def before_update(self, workload, hparams, model_state, params, batch, rng, lr: float, *,
                    u=None, nadam_state=None) -> None:
    """At `params` (before params + lr u), on the placed `batch` with the step's `rng`:
    the held-out change due (logged under step - 1), then `measure` on a diagnostic step.
    Sets `seconds` (waiting for the inputs first, so that they are the diagnostics' own:
    what a curvature policy's clock leaves out, `policy.exclude`)."""
    if not self.active:
      return
    jax.block_until_ready((params, model_state))
    start = time.perf_counter()
    if self.held_out_due:
      change = float(_held_out(workload, hparams.dropout_rate, hparams.label_smoothing,
                               model_state, params, self.vectors['held_out'], batch, rng))
      self._held_out_seconds = time.perf_counter() - start
      out, self.state = core.held_out_metrics(self.state, change)
      if workload.metrics_logger is not None and out:
        workload.metrics_logger.append_scalar_metrics(out, self.step - 1)
    if self.measuring:
      self.measure(workload, hparams, model_state, params, batch, rng, lr, u=u,
                   nadam_state=nadam_state)  # blocks: its values go to the host
    self.seconds = time.perf_counter() - start

  def measure(self, workload, hparams, model_state, params, batch, rng, lr: float, *,
              u=None, nadam_state=None) -> None:
    """Measures at `params` (before params + lr u) on the placed `batch` with the step's
    `rng`, and logs to measurements.csv. u: this step's direction (None: no quadratic
    model); nadam_state: the NAdamW state after this step's update (None: not NAdamW, no
    preconditioned sharpness); hparams: dropout_rate, label_smoothing and, with
    nadam_state, beta2, eps, one_minus_beta1."""
    config = core.restrict(self.config, nadam_state is not None, u is not None)
    static = (workload, hparams.dropout_rate, hparams.label_smoothing)
    names, starts, scales = [], [], []
    for name in core.EIGEN_QUANTITIES:
      if name not in config.quantities:
        continue
      scale = jnp.zeros(())
      if name == 'preconditioned':
        scale = preconditioner_scale(_nadam(nadam_state), hparams.beta2, hparams.eps)
        if scale is None:
          continue
      names.append(name)
      starts.append(self.vectors[name])
      scales.append(scale)
    values = {}
    if names:
      eigens = _eigens(*static, tuple(names), config.iterations, model_state, params, batch,
                       rng, starts, scales)
      self.vectors.update({name: e.vector for name, e in zip(names, eigens)})
      values.update(core.eigen_values(names, eigens))
    if 'quadratic' in config.quantities:
      gu, quad, change = _quadratic(*static, model_state, params, u, jnp.float32(lr), batch,
                                    rng)
      values.update(g_dot_u=float(gu), u_ggn_u=float(quad), realized_change=float(change))
      self.vectors['held_out'] = ravel_pytree(params)[0].astype(jnp.float32)
    beta1 = None if nadam_state is None else 1.0 - hparams.one_minus_beta1
    out, self.state = core.metrics(config, self.state, core.Measurement(**values), lr, beta1)
    if 'quadratic' in config.quantities:
      self.state = core.pending(self.state, self.step)
    if workload.metrics_logger is not None:
      workload.metrics_logger.append_scalar_metrics(out, self.step)

  def nadamw_step(self, workload, hparams, update_fn, model_state, opt_state, params, batch,
                  rng, lr):
    """`train_step.nadamw_step`'s outputs (same arguments; lr a float32 scalar), with
    `before_update` between the direction and the update."""
    opt_state, u, model_state, loss, grad_norm = _jit_direction(
        workload, hparams, update_fn, model_state, opt_state, params, batch, rng)
    self.before_update(workload, hparams, model_state, params, batch, rng, float(lr), u=u,
                       nadam_state=opt_state)
    return opt_state, _jit_apply(params, u, lr), model_state, loss, grad_norm

  def finish(self, params) -> dict:
    """Records the update (its seconds when timed, after waiting for `params`, the
    update's output) -> the new 'diagnostics' entry."""
    seconds = None
    if self._start is not None:
      jax.block_until_ready(params)
      seconds = time.perf_counter() - self._start
    self.state = core.record(self.config, self.state, self.step, self.measuring, seconds,
                             self._held_out_seconds)
    return {'state': np.frombuffer(core.encode(self.switch, self.state), np.uint8),
            **self.vectors}


def begin(entry: Optional[dict], step: int, params) -> Optional[Step]:
  """Call first in update_params with the state's 'diagnostics' entry (None when off: no
  diagnostics, returns None) and the params the update starts from."""
  return None if entry is None else Step(entry, step, params)


def attach(state: dict, entry: Optional[dict]) -> dict:
  """A dict optimizer state with the 'diagnostics' entry (`init`), unchanged when off."""
  return state if entry is None else {**state, 'diagnostics': entry}


def join(inner, entry: Optional[dict]):
  """A NAdamW baseline's optimizer state: the bare optax state `inner` when off (so that
  its checkpoints are unchanged), {'nadam': inner, 'diagnostics': entry} when on."""
  return inner if entry is None else {'nadam': inner, 'diagnostics': entry}


def _split(opt_state):
  """Inverse of `join`: (inner state, entry or None)."""
  if isinstance(opt_state, dict) and 'diagnostics' in opt_state:
    return opt_state['nadam'], opt_state['diagnostics']
  return opt_state, None


def nadamw_update(plain_step, workload, hparams, update_fn, model_state, opt_state, params,
                  batch, rng, lr, global_step: int):
  """One update of a NAdamW baseline (`join`'s state) with the diagnostics around it:
  `plain_step` (jitted `train_step.nadamw_step`, same arguments) unless they are active
  at `global_step`, then `Step.nadamw_step`. -> (new opt_state, new params, new
  model_state, loss, grad_norm)."""
  inner, entry = _split(opt_state)
  diag = begin(entry, global_step, params)  # None when off
  step = plain_step if diag is None or not diag.active else diag.nadamw_step
  inner, params, model_state, loss, grad_norm = step(
      workload, hparams, update_fn, model_state, inner, params, batch, rng, lr)
  return (join(inner, None if diag is None else diag.finish(params)), params, model_state,
          loss, grad_norm)
