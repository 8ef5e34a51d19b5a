"""Jitted pieces of a JAX AlgoPerf step shared by our submissions (pure functions)."""

import jax
import jax.numpy as jnp

from curvlr import spec
from curvlr.jax import sharding


def loss_and_grad(workload, params, model_state, batch, rng, dropout_rate, label_smoothing):
  """`loss_grad_and_count` without the count: -> ((loss, new_model_state), grads)."""
  (loss, _, new_model_state), grads = loss_grad_and_count(
      workload, params, model_state, batch, rng, dropout_rate, label_smoothing)
  return (loss, new_model_state), grads


def loss_grad_and_count(workload, params, model_state, batch, rng, dropout_rate,
                        label_smoothing):
  """-> ((loss, n_valid, new_model_state), grads): global mean loss over the n_valid
  valid examples (AlgoPerf's `n_valid_examples`).

  Inside jit with a batch sharded over devices, sums are global: no pmean needed.
  """
  def loss_fn(p):
    logits, new_model_state = workload.model_fn(
        p, batch, model_state, spec.ForwardPassMode.TRAIN, rng, update_batch_norm=True,
        dropout_rate=dropout_rate)
    out = workload.loss_fn(batch['targets'], logits, batch.get('weights'),
                           label_smoothing=label_smoothing)
    return out['summed'], (out['n_valid_examples'], new_model_state)

  (summed, (n_valid, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  grads = jax.tree.map(lambda g: g / n_valid, grads)
  return (summed / n_valid, n_valid, new_model_state), grads


def nadamw_step(workload, hparams, update_fn, model_state, opt_state, params, batch, rng, lr):
  """Gradient, NAdamW direction u (`update_fn`), params + lr * u.

  -> (new_opt_state, new_params, new_model_state, loss, grad_norm); jit with the first
  three arguments static.
  """
  (loss, new_model_state), grads = loss_and_grad(
      workload, params, model_state, batch, rng, hparams.dropout_rate, hparams.label_smoothing)
  u, new_opt_state = update_fn(grads, opt_state, params)
  new_params = jax.tree.map(lambda p, v: p + lr * v, params, u)
  return new_opt_state, new_params, new_model_state, loss, global_norm(grads)


def nadamw_direction_step(workload, hparams, update_fn, model_state, opt_state, params, batch,
                          rng):
  """`nadamw_step` without the update: -> (new_opt_state, u, new_model_state, loss,
  grad_norm), for callers that look at u before applying it (`apply`)."""
  (loss, new_model_state), grads = loss_and_grad(
      workload, params, model_state, batch, rng, hparams.dropout_rate, hparams.label_smoothing)
  u, new_opt_state = update_fn(grads, opt_state, params)
  return new_opt_state, u, new_model_state, loss, global_norm(grads)


def apply(params, u, lr):
  """params + lr * u."""
  return jax.tree.map(lambda p, v: p + lr * v, params, u)


def global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree)))


def jit_step(fn, num_static: int = 2, donate=(2, 3, 4)):
  """jit with AlgoPerf's shardings: arguments replicated except `batch`, which is batch-sharded.

  `fn(static..., model_state, opt_state, params, batch, *rest)`; buffers are donated
  on accelerators (not on CPU, where XLA cannot use them).
  """
  donate = donate if jax.default_backend() != 'cpu' else ()
  return jax.jit(fn, static_argnums=tuple(range(num_static)), donate_argnums=donate)


def place_batch(batch):
  """Batches from AlgoPerf's test harness may be host numpy arrays: shard them."""
  return sharding.shard_batch(batch)
