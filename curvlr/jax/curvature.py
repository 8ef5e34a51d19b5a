"""Curvature of the training loss along a direction u (JAX), as sums over the batch.

Same quantities, loss conventions, counts and finite-difference steps as
`curvlr/pytorch/curvature.py` (read its docstring): for the batch,
  quad = sum_n w_n u^T M_n u (M = GGN or Hessian), gu = sum_n w_n g_n . u,
  loss = sum_n w_n l_n, n = AlgoPerf's n_valid_examples.

Pure, jit-able functions (`loss_type` and `method` static). Under `jax.jit` with the
batch sharded over a mesh axis and the parameters replicated (AlgoPerf v0.6), the sums
are already global: no collective is needed.

Methods:
  GGN 'jvp'      one `jax.jvp` of the model, closed-form output-space H (CTC: the
                 per-frame softmax Fisher `ctc_fisher_quad`, a PSD upper bound of the
                 indefinite CTC output Hessian; the Hessian oracle stays exact).
  GGN 'fd'       central differences of the logits (two forward passes).
  Hessian 'jvp'  forward-over-forward `jvp(jvp(L))` (exact; cheapest in JAX).
  Hessian 'fd'   (L(theta+hu) - 2L(theta) + L(theta-hu)) / h^2 (three forward passes).
The 'fd' paths serve models whose ops lack forward-mode AD, i.e. `custom_vjp` functions
(cuDNN `dot_product_attention`, `jax.experimental.rnn.lstm`).

`apply_fn(params) -> logits` (or `(logits, logit_paddings)` for CTC) closes over the
batch, model state and rng, e.g.
  `lambda p: workload.model_fn(p, batch, state, TRAIN, rng, update_batch_norm=False)[0]`;
with `update_batch_norm=False` train-mode BatchNorm uses batch statistics and updates
nothing. Use the training step's rng for the same dropout mask.
"""
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from curvlr import spec


class CurvatureSums(NamedTuple):
  """Sums over the (global, under jit with sharding) batch; 0-d arrays."""
  quad: jax.Array
  gu: jax.Array
  loss: jax.Array
  n: jax.Array

  def mean(self) -> 'CurvatureSums':
    """Per-example means (quad/n, gu/n, loss/n, n)."""
    return CurvatureSums(self.quad / self.n, self.gu / self.n, self.loss / self.n, self.n)


def directional_derivatives(f: Callable, x, v):
  """(f(x), Df(x)[v], D^2f(x)[v, v]) by forward-over-forward; f may return a pytree."""
  (value, first), (_, second) = jax.jvp(lambda y: jax.jvp(f, (y,), (v,)), (x,), (v,))
  return value, first, second


def sub_batch(tree: Any, max_examples: int, num_shards: int = 1) -> Any:
  """`max_examples` examples of every leaf (leading axis), `max_examples/num_shards` from
  each of `num_shards` contiguous blocks, so a batch sharded over that many devices
  keeps every device busy and moves no data. Not for graph batches (ogbg)."""
  if max_examples % num_shards:
    raise ValueError(f'curvature.py: max_examples={max_examples} is not a multiple of '
                     f'num_shards={num_shards}.')

  def take(x):
    blocks = x.reshape((num_shards, x.shape[0] // num_shards) + x.shape[1:])
    return blocks[:, :max_examples // num_shards].reshape((max_examples,) + x.shape[1:])

  return jax.tree.map(take, tree)


def chunked_sums(sums_fn: Callable, batch, rng, chunks, num_shards: int = 1) -> CurvatureSums:
  """The sum over chunks of `sums_fn(chunk, key) -> CurvatureSums`.

  chunks: `workload_support.Chunks` of each device's rows; chunk k holds rows
  [start_k, stop_k) of every one of the `num_shards` contiguous device blocks of every
  leaf of `batch` (no data moves under sharding). The equal chunks run in a `lax.map`,
  so one chunk's passes are live at a time; a shorter last chunk runs after them. The key
  of chunk k is `fold_in(rng, k)` (None stays None); unchunked: `sums_fn(batch, rng)`.
  """
  if not chunks.chunked:
    return sums_fn(batch, rng)

  def rows(start, size):
    def take(x):
      blocks = x.reshape((num_shards, x.shape[0] // num_shards) + x.shape[1:])
      part = jax.lax.dynamic_slice_in_dim(blocks, start, size, axis=1)
      return part.reshape((num_shards * size,) + x.shape[1:])
    return jax.tree.map(take, batch)

  key = lambda k: None if rng is None else jax.random.fold_in(rng, k)
  parts = jax.lax.map(lambda k: sums_fn(rows(k * chunks.rows, chunks.rows), key(k)),
                      jnp.arange(chunks.count))
  total = jax.tree.map(lambda x: x.sum(0), parts)
  if chunks.remainder:
    last = sums_fn(rows(chunks.count * chunks.rows, chunks.remainder), key(chunks.count))
    total = jax.tree.map(jnp.add, total, last)
  return total


# ----------------------------------------------------------------------------- output space


def _split_output(out):
  """apply_fn's output -> (logits, aux): aux is logit_paddings for CTC, else None."""
  if isinstance(out, (tuple, list)):
    return out[0], out[1]
  return out, None


def _targets_dot(targets, x, label_smoothing):
  """sum_c y_c x_c over the last axis with smoothed targets y = (1-ls)*onehot + ls/C."""
  num_classes = x.shape[-1]
  if jnp.issubdtype(targets.dtype, jnp.floating) and targets.shape == x.shape:
    y = (1.0 - label_smoothing) * targets.astype(x.dtype) + label_smoothing / num_classes
    return (y * x).sum(-1)
  picked = jnp.take_along_axis(x, targets.astype(jnp.int32)[..., None], axis=-1)[..., 0]
  return (1.0 - label_smoothing) * picked + label_smoothing / num_classes * x.sum(-1)


def _smoothed_binary_targets(targets, logits, label_smoothing):
  y = targets.reshape(logits.shape).astype(logits.dtype)
  return (1.0 - label_smoothing) * y + label_smoothing / logits.shape[-1]


def _residual(logits, targets):
  return (logits - targets.reshape(logits.shape).astype(logits.dtype)).reshape(
      logits.shape[0], -1)


def _element_losses(loss_type, logits, aux, targets, label_smoothing):
  """Per-element losses; elements are what the mask weights."""
  if loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY:
    return -_targets_dot(targets, jax.nn.log_softmax(logits), label_smoothing)
  if loss_type == spec.LossType.SIGMOID_CROSS_ENTROPY:
    return optax.sigmoid_binary_cross_entropy(
        logits, _smoothed_binary_targets(targets, logits, label_smoothing))
  if loss_type == spec.LossType.MEAN_SQUARED_ERROR:
    return jnp.square(_residual(logits, targets)).mean(1)
  if loss_type == spec.LossType.MEAN_ABSOLUTE_ERROR:
    return jnp.abs(_residual(logits, targets)).mean(1)
  if loss_type == spec.LossType.CTC_LOSS:
    labels, label_paddings = targets
    return optax.ctc_loss(jax.nn.log_softmax(logits), aux, labels, label_paddings)
  raise ValueError(f'curvature.py: unsupported loss_type {loss_type!r}')


def ctc_fisher_quad(logits, logit_paddings, dz):
  """Per-sequence dz^T F dz (B,): F the per-frame softmax Fisher of the CTC loss, summed
  over unpadded frames (`curvlr/pytorch/curvature.py`'s docstring); logits, dz (B,T,V)."""
  p = jax.nn.softmax(logits)
  per_frame = (p * jnp.square(dz - (p * dz).sum(-1, keepdims=True))).sum(-1)
  return jnp.where(logit_paddings == 0, per_frame, 0).sum(-1)


def _output_derivatives(loss_type, logits, aux, targets, dz, label_smoothing):
  """Per-element (g . dz, dz^T H dz) in logit space."""
  if loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY:
    p = jax.nn.softmax(logits)
    mean_dz = (p * dz).sum(-1)
    quad = (p * jnp.square(dz - mean_dz[..., None])).sum(-1)  # Var_p(dz) >= 0
    return mean_dz - _targets_dot(targets, dz, label_smoothing), quad
  if loss_type == spec.LossType.SIGMOID_CROSS_ENTROPY:
    y = _smoothed_binary_targets(targets, logits, label_smoothing)
    return ((jax.nn.sigmoid(logits) - y) * dz,
            jax.nn.sigmoid(logits) * jax.nn.sigmoid(-logits) * jnp.square(dz))
  if loss_type == spec.LossType.MEAN_SQUARED_ERROR:
    r, v = _residual(logits, targets), dz.reshape(dz.shape[0], -1)
    return 2.0 * (r * v).sum(1) / r.shape[1], 2.0 * jnp.square(v).sum(1) / r.shape[1]
  if loss_type == spec.LossType.MEAN_ABSOLUTE_ERROR:
    r, v = _residual(logits, targets), dz.reshape(dz.shape[0], -1)
    return (jnp.sign(r) * v).sum(1) / r.shape[1], jnp.zeros(r.shape[:1], r.dtype)
  if loss_type == spec.LossType.CTC_LOSS:
    losses = lambda z: _element_losses(loss_type, z, aux, targets, label_smoothing)
    gdz = jax.jvp(losses, (logits,), (dz,))[1]
    return gdz, ctc_fisher_quad(logits, aux, dz)
  raise ValueError(f'curvature.py: unsupported loss_type {loss_type!r}')


def _weights_and_count(loss_type, element_shape, targets, mask, dtype):
  """-> (weights broadcastable to the elements or None, n as a 0-d float array)."""
  if loss_type == spec.LossType.CTC_LOSS:
    lengths = (1 - targets[1]).sum(-1).astype(dtype)
    w = None if mask is None else mask.astype(dtype).reshape(lengths.shape)
    return w, (lengths if w is None else w * lengths).sum()
  if mask is None:
    n = (math.prod(element_shape) if loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY
         else element_shape[0])
    return None, jnp.asarray(n, dtype)
  w = mask.astype(dtype)
  return w.reshape(w.shape + (1,) * (len(element_shape) - w.ndim)), w.sum()


def _weighted_sum(x, w):
  return x.sum() if w is None else (jnp.where(w != 0, x, 0) * w).sum()


def loss_sums(loss_type, logits, targets, mask=None, label_smoothing=0.0, logit_paddings=None):
  """(sum_n w_n l_n, n) with the conventions above."""
  losses = _element_losses(loss_type, logits, logit_paddings, targets, label_smoothing)
  w, n = _weights_and_count(loss_type, losses.shape, targets, mask, logits.dtype)
  return _weighted_sum(losses, w), n


def _output_sums(loss_type, logits, aux, targets, dz, mask, label_smoothing):
  losses = _element_losses(loss_type, logits, aux, targets, label_smoothing)
  gdz, quad = _output_derivatives(loss_type, logits, aux, targets, dz, label_smoothing)
  w, n = _weights_and_count(loss_type, losses.shape, targets, mask, logits.dtype)
  return CurvatureSums(_weighted_sum(quad, w), _weighted_sum(gdz, w), _weighted_sum(losses, w), n)


# ----------------------------------------------------------------------------- oracles


def _fd_step(params, direction, fd_scale, order):
  """h = c (1 + ||theta||) / ||u||, c = fd_scale or eps^(1/3) (order 1) / eps^(1/4)/2 (order 2)."""
  eps = float(jnp.finfo(jax.tree.leaves(params)[0].dtype).eps)
  c = fd_scale if fd_scale is not None else (eps ** (1 / 3) if order == 1 else eps ** 0.25 / 2)
  norm = lambda t: jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(t)))
  u_norm = norm(direction)
  return jnp.where(u_norm > 0, c * (1 + norm(params)) / jnp.where(u_norm > 0, u_norm, 1), 1.0)


def _shifted(params, direction, step):
  return jax.tree.map(lambda p, u: p + (step * u).astype(p.dtype), params, direction)


def _check_method(method, allowed=('jvp', 'fd')):
  if method not in allowed:
    raise ValueError(f'curvature.py: method must be one of {allowed}, got {method!r}.')


def ggn_quadratic_form(apply_fn: Callable, params, direction, targets, loss_type, *,
                       mask: Optional[jax.Array] = None, label_smoothing: float = 0.0,
                       method: str = 'jvp', fd_scale: Optional[float] = None) -> CurvatureSums:
  """u^T G u, g . u, loss (sums over the batch) and n; direction has params' structure."""
  _check_method(method)
  split = lambda p: _split_output(apply_fn(p))
  if method == 'jvp':
    logits, dz, aux = jax.jvp(split, (params,), (direction,), has_aux=True)
    return _output_sums(loss_type, logits, aux, targets, dz, mask, label_smoothing)
  h = _fd_step(params, direction, fd_scale, 1)
  z_plus, aux = split(_shifted(params, direction, h))
  z_minus, _ = split(_shifted(params, direction, -h))
  return _output_sums(loss_type, (z_plus + z_minus) / 2, aux, targets,
                      (z_plus - z_minus) / (2 * h).astype(z_plus.dtype), mask, label_smoothing)


def hessian_quadratic_form(apply_fn: Callable, params, direction, targets, loss_type, *,
                           mask: Optional[jax.Array] = None, label_smoothing: float = 0.0,
                           method: str = 'jvp',
                           fd_scale: Optional[float] = None) -> CurvatureSums:
  """u^T H u, g . u, loss (sums over the batch) and n; direction has params' structure."""
  _check_method(method)

  def losses(p):
    logits, aux = _split_output(apply_fn(p))
    return _element_losses(loss_type, logits, aux, targets, label_smoothing)

  if method == 'jvp':
    center, first, second = directional_derivatives(losses, params, direction)
    w, n = _weights_and_count(loss_type, center.shape, targets, mask, center.dtype)
    return CurvatureSums(_weighted_sum(second, w), _weighted_sum(first, w),
                         _weighted_sum(center, w), n)
  h = _fd_step(params, direction, fd_scale, 2)
  plus, center, minus = (losses(_shifted(params, direction, h)), losses(params),
                         losses(_shifted(params, direction, -h)))
  w, n = _weights_and_count(loss_type, center.shape, targets, mask, center.dtype)
  h = h.astype(center.dtype)
  # Differences per element before summing: roundoff ~eps*l_n per element, not eps*sum.
  return CurvatureSums(_weighted_sum(plus - 2 * center + minus, w) / h**2,
                       _weighted_sum(plus - minus, w) / (2 * h), _weighted_sum(center, w), n)
