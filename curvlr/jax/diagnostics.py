"""Online edge-of-stability diagnostics (JAX); decisions and names in `curvlr.core.diagnostics`.

Same quantities, conventions and warm starts as `curvlr/pytorch/diagnostics.py` (read its
docstring). Hessian-vector products are `jax.jvp` of `jax.grad` of the mean training loss
(train mode, `update_batch_norm=False`, the step's `rng`: the curvature oracles' RNG
rule) on flat vectors (`ravel_pytree`). Under `jax.jit` with the batch sharded and the
parameters replicated the loss is the global-batch one, so the eigenvalues are the
single-device ones with no explicit collective.
"""
import functools
from typing import List, Optional

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from curvlr import spec
from curvlr.core import diagnostics as core
from curvlr.core import workload_support
from curvlr.jax import curvature


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


class Diagnostics:
  """Config, core state and warm starts (flat arrays) of one run."""

  def __init__(self, config: core.Config):
    self.config = config
    self.state = core.State()
    self.vectors = {}


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _eigens(workload, hparams, names, iterations, model_state, params, batch, rng, starts,
            scales):
  loss = mean_loss_fn(workload, model_state, batch, rng, hparams.dropout_rate,
                      hparams.label_smoothing)
  return top_eigens(loss, params, starts, [None if n == 'sharpness' else s
                                           for n, s in zip(names, scales)], iterations)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _quadratic(workload, hparams, model_state, params, u, lr, batch, rng):
  loss = mean_loss_fn(workload, model_state, batch, rng, hparams.dropout_rate,
                      hparams.label_smoothing)
  row = workload_support.support(workload)

  def apply_fn(p):
    return workload.model_fn(p, batch, model_state, spec.ForwardPassMode.TRAIN, rng,
                             update_batch_norm=False, dropout_rate=hparams.dropout_rate)[0]

  sums = curvature.ggn_quadratic_form(apply_fn, params, u, batch['targets'], row.loss,
                                      mask=batch.get('weights'),
                                      label_smoothing=hparams.label_smoothing).mean()
  after = loss(jax.tree.map(lambda p, v: p + lr * v, params, u))
  return sums.gu, sums.quad, after - sums.loss


def measure(holder: Diagnostics, workload, hparams, model_state, params, batch, rng, u,
            lr: float, nadam_state) -> dict:
  """The diagnostic scalars at params before params + lr u (`core.metrics` dict); u and
  nadam_state are this step's direction and NAdamW state after its update."""
  config = holder.config
  names, starts, scales = [], [], []
  for name in ('sharpness', 'preconditioned'):
    if name not in config.quantities:
      continue
    scale = None
    if name == 'preconditioned':
      scale = preconditioner_scale(nadam_state, hparams.beta2, hparams.eps)
      if scale is None:
        continue
    start = holder.vectors.get(name)
    if start is None:
      start = jnp.asarray(core.initial_vector(ravel_pytree(params)[0].size), jnp.float32)
    names.append(name)
    starts.append(start)
    scales.append(scale if scale is not None else jnp.zeros(()))
  values = {}
  if names:
    eigens = _eigens(workload, hparams, tuple(names), config.iterations, model_state, params,
                     batch, rng, starts, scales)
    for name, e in zip(names, eigens):
      holder.vectors[name] = e.vector
      prefix = 'sharpness' if name == 'sharpness' else 'precond_sharpness'
      values[prefix] = float(e.value)
      values[prefix + '_residual'] = float(e.residual)
  if 'quadratic' in config.quantities:
    gu, quad, change = _quadratic(workload, hparams, model_state, params, u, jnp.float32(lr),
                                  batch, rng)
    values.update(g_dot_u=float(gu), u_ggn_u=float(quad), realized_change=float(change))
  out, holder.state = core.metrics(config, holder.state, core.Measurement(**values), lr,
                                   1.0 - hparams.one_minus_beta1)
  return out
