"""AlgoPerf's NAdamW direction as an optax GradientTransformation.

`nadamw_direction(b1, b2, eps, weight_decay)` maps gradients to the descent direction
at unit learning rate, weight decay included (the step is params + lr * u):
  u = -( m_hat / (sqrt(v_hat) + eps) + weight_decay * p ),
  m_hat = (b1 m + (1 - b1) g) / (1 - b1^t),  v_hat = v / (1 - b2^t).
This is AlgoPerf's `scale_by_nadam` + `add_decayed_weights`. It differs from
`optax.nadamw` (which bias-corrects the two Nesterov terms with 1 - b1^(t+1) and
1 - b1^t separately) by O(1 - b1) relative in m_hat; tests quantify it.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class NAdamState(NamedTuple):
  count: jax.Array  # int32 scalar, number of updates so far
  mu: optax.Updates
  nu: optax.Updates


def scale_by_nadam(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
  def init_fn(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return NAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

  def update_fn(grads, state, params=None):
    del params
    mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
    count = state.count + 1
    t = count.astype(jnp.float32)
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    updates = jax.tree.map(
        lambda m, v, g: ((b1 * m + (1 - b1) * g) / bc1) / (jnp.sqrt(v / bc2) + eps),
        mu, nu, grads)
    return updates, NAdamState(count, mu, nu)

  return optax.GradientTransformation(init_fn, update_fn)


def nadamw_direction(b1: float, b2: float, eps: float,
                     weight_decay: float) -> optax.GradientTransformation:
  """Gradients -> NAdamW descent direction u at unit lr (same convention as PyTorch)."""
  return optax.chain(scale_by_nadam(b1, b2, eps), optax.add_decayed_weights(weight_decay),
                     optax.scale(-1.0))
