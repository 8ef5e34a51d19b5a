"""Schedule-Free wrapper and its AdamW base as optax transformations, for every optax >= 0.2.2.

AlgoPerf v0.6 scores in optax 0.2.2, which has no `optax.contrib.schedule_free`,
`schedule_free_eval_params` or `warmup_constant_schedule`, and whose `scale_by_rms` has
neither `bias_correction` nor `eps_in_sqrt`. This module computes what optax >= 0.2.4
computes with those, operation for operation (tests compare bitwise where they exist):
  y = params (where gradients are taken),  x = (y - (1 - b1) z) / b1,
  z <- z + base_update(g),  x <- (1 - c) x + c z,  c = lr_max^r / sum(lr_max^r),
  y <- b1 x + (1 - b1) z.
The state has optax's `ScheduleFreeState` fields, so checkpoints look the same.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByRmsState(NamedTuple):
  count: jax.Array  # int32 scalar, number of updates so far
  nu: optax.Updates  # EMA of g**2, params' shapes and dtypes


class ScheduleFreeState(NamedTuple):
  b1: jax.Array  # scalar, params' lowest dtype
  weight_sum: jax.Array  # sum of lr_max**weight_lr_power so far
  step_count: jax.Array  # int32, 1 + number of updates (the schedule's argument)
  max_lr: jax.Array
  base_optimizer_state: optax.OptState
  z: optax.Params


def _increment(count: jax.Array) -> jax.Array:
  """count + 1, saturating at the int32 maximum (optax's safe_increment)."""
  top = jnp.iinfo(jnp.int32).max
  return jnp.where(count < top, count + 1, top).astype(count.dtype)


def scale_by_rms(decay: float, eps: float) -> optax.GradientTransformation:
  """g / (sqrt(nu / (1 - decay^t)) + eps), nu = EMA of g**2 from 0: optax's
  `scale_by_rms(decay, eps, eps_in_sqrt=False, bias_correction=True)`."""

  def init_fn(params):
    return ScaleByRmsState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    nu = jax.tree.map(lambda g, n: (1 - decay) * g**2 + decay * n, updates, state.nu)
    count = _increment(state.count)
    correction = 1 - decay**count
    scaled = jax.tree.map(lambda g, n: 1 / (jnp.sqrt(n / correction.astype(n.dtype)) + eps) * g,
                          updates, nu)
    return scaled, ScaleByRmsState(count, nu)

  return optax.GradientTransformation(init_fn, update_fn)


def _lowest_dtype(params) -> jnp.dtype:
  """The leaves' dtype of least precision (optax.tree.dtype(params, 'lowest'))."""
  dtypes = [jnp.asarray(leaf).dtype for leaf in jax.tree.leaves(params)]
  lowest = dtypes[0]
  for dtype in dtypes[1:]:
    lowest = dtype if jnp.promote_types(lowest, dtype) == lowest else lowest
  return lowest


def schedule_free(base_optimizer: optax.GradientTransformation,
                  learning_rate: optax.ScalarOrSchedule, b1: float = 0.9,
                  weight_lr_power: float = 2.0) -> optax.GradientTransformation:
  """optax.contrib.schedule_free (state_dtype=None): `update(g, state, y)` -> (y' - y, state).

  `learning_rate` (a schedule is queried at step_count = k + 1 for update k) sets only the
  averaging weights; base_optimizer's own lr moves z.
  """

  def init_fn(params):
    dtype = _lowest_dtype(params)
    return ScheduleFreeState(
        b1=jnp.asarray(b1, dtype=dtype), weight_sum=jnp.zeros([], dtype),
        step_count=jnp.ones([], jnp.int32), max_lr=jnp.zeros([], dtype),
        base_optimizer_state=base_optimizer.init(params),
        z=jax.tree.map(lambda p: jnp.array(p, copy=True), params))  # distinct, donatable

  def update_fn(grads, state, params):
    lr = learning_rate
    if callable(learning_rate):
      lr = jnp.asarray(learning_rate(state.step_count), dtype=state.max_lr.dtype)
    max_lr = jnp.maximum(state.max_lr, lr)
    weight = max_lr**weight_lr_power
    weight_sum = state.weight_sum + weight
    c = jnp.where(jnp.logical_or(jnp.isnan(weight), jnp.isnan(weight_sum)),
                  jnp.full(weight.shape, jnp.nan),
                  jnp.nan_to_num(weight / weight_sum, nan=0.0, posinf=jnp.inf))
    base_updates, base_state = base_optimizer.update(grads, state.base_optimizer_state, params)
    z = jax.tree.map(lambda zi, ui: jnp.asarray(zi + ui).astype(jnp.asarray(zi).dtype),
                     state.z, base_updates)
    prev_x = jax.tree.map(lambda yi, zi: (yi - (1.0 - b1) * zi) / b1, params, state.z)
    x = jax.tree.map(lambda xi, zi: (1.0 - c) * xi + c * zi, prev_x, z)
    new_params = jax.tree.map(lambda xi, zi: b1 * xi + (1.0 - b1) * zi, x, z)
    updates = jax.tree.map(lambda new, old: new - old, new_params, params)
    return updates, ScheduleFreeState(state.b1, weight_sum, _increment(state.step_count),
                                      max_lr, base_state, z)

  return optax.GradientTransformation(init_fn, update_fn)


def schedule_free_eval_params(state: ScheduleFreeState, params: optax.Params) -> optax.Params:
  """x = (y - (1 - b1) z) / b1 with b1 = state.b1: optax.contrib.schedule_free_eval_params."""
  b1 = state.b1
  return jax.tree.map(lambda yi, zi: (yi - (1.0 - b1) * zi) / b1, params, state.z)
