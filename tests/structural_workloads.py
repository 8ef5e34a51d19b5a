"""Small workloads whose batches have the structure, dtypes and losses of AlgoPerf's.

A tanh MLP on (B, 8) inputs in both frameworks (same initial weights), with the batch
and loss conventions of one AlgoPerf workload (`algoperf_base` tells
`curvlr.core.workload_support` which):
  ogbg     sigmoid per task, targets and mask (B, 128), B odd (AlgoPerf pads a graph);
           `loss_type` SOFTMAX as AlgoPerf's ogbg says.
  fastmri  MAE over (B, 4, 4) images, per-example weights (B,).
Not a model of those workloads: only what a curvature driver sees of them.
"""
import numpy as np

from curvlr import spec

KINDS = {
    'ogbg': dict(loss_type=spec.LossType.SOFTMAX_CROSS_ENTROPY, out=(128,)),
    'fastmri': dict(loss_type=spec.LossType.MEAN_ABSOLUTE_ERROR, out=(4, 4)),
}
HIDDEN = 16


def init_weights(kind, seed=0):
  rng = np.random.default_rng(seed)
  out = int(np.prod(KINDS[kind]['out']))
  return {'w1': rng.normal(0, 0.5, (8, HIDDEN)).astype(np.float32),
          'b1': np.zeros(HIDDEN, np.float32),
          'w2': rng.normal(0, 0.5, (HIDDEN, out)).astype(np.float32),
          'b2': np.zeros(out, np.float32)}


def batch(kind, size, seed=0):
  """Numpy batch dict in AlgoPerf's layout for `kind`."""
  rng = np.random.default_rng(seed)
  inputs = rng.normal(size=(size, 8)).astype(np.float32)
  out = KINDS[kind]['out']
  if kind == 'ogbg':
    targets = (rng.random((size,) + out) < 0.3).astype(np.float32)
    weights = (rng.random((size,) + out) < 0.8).astype(np.float32)
    weights[-1] = 0.0  # the padding graph
  else:
    targets = rng.normal(size=(size,) + out).astype(np.float32)
    weights = np.ones(size, np.float32)
  return {'inputs': inputs, 'targets': targets, 'weights': weights}


def _loss_sums(np_like, kind, targets, logits, mask):
  """(summed, n_valid, per_example) as the AlgoPerf workload's loss_fn."""
  if kind == 'ogbg':
    per = (np_like['softplus'](logits) - targets * logits)  # sigmoid BCE with logits
    mask = np_like['ones_like'](per) if mask is None else mask
    return (per * mask).sum(), mask.sum(), (per * mask).sum(-1)
  per = np_like['abs'](logits - targets).reshape(logits.shape[0], -1).mean(-1)
  mask = np_like['ones_like'](per) if mask is None else mask
  return (per * mask).sum(), mask.sum(), per * mask


class _Base:
  def __init__(self, kind):
    self.kind, self.algoperf_base = kind, kind
    self.loss_type = KINDS[kind]['loss_type']
    self.step_hint, self.metrics_logger = 200, None


class JaxWorkload(_Base):
  """The JAX side: params are a dict of jnp arrays."""

  def init_model_fn(self, rng=None, seed=0):
    import jax
    import jax.numpy as jnp
    from curvlr.jax import sharding
    params = sharding.replicate(jax.tree.map(jnp.asarray, init_weights(self.kind, seed)))
    self.param_shapes = jax.tree.map(lambda p: spec.ShapeTuple(p.shape), params)
    return params, None

  def model_fn(self, params, batch, model_state, mode, rng, update_batch_norm,
               dropout_rate=0.0):
    import jax
    import jax.numpy as jnp
    del mode, update_batch_norm
    h = jnp.tanh(batch['inputs'] @ params['w1'] + params['b1'])
    if dropout_rate and rng is not None:
      keep = jax.random.bernoulli(rng, 1.0 - dropout_rate, h.shape)
      h = jnp.where(keep, h / (1.0 - dropout_rate), 0.0)
    out = h @ params['w2'] + params['b2']
    return out.reshape((out.shape[0],) + KINDS[self.kind]['out']), model_state

  def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
    import jax
    import jax.numpy as jnp
    del label_smoothing
    ops = {'softplus': jax.nn.softplus, 'abs': jnp.abs, 'ones_like': jnp.ones_like}
    summed, n, per = _loss_sums(ops, self.kind, label_batch, logits_batch, mask_batch)
    return {'summed': summed, 'n_valid_examples': n, 'per_example': per}


class TorchWorkload(_Base):
  """The PyTorch side: a torch.nn.Module with the same weights."""

  def init_model_fn(self, rng=None, seed=0):
    import torch

    weights = init_weights(self.kind, seed)

    class MLP(torch.nn.Module):
      def __init__(self):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.tensor(weights['w1']))
        self.b1 = torch.nn.Parameter(torch.tensor(weights['b1']))
        self.w2 = torch.nn.Parameter(torch.tensor(weights['w2']))
        self.b2 = torch.nn.Parameter(torch.tensor(weights['b2']))

      def forward(self, x, dropout_rate=0.0):
        h = torch.tanh(x @ self.w1 + self.b1)
        h = torch.nn.functional.dropout(h, dropout_rate, self.training) if dropout_rate else h
        return h @ self.w2 + self.b2

    return MLP(), None

  def model_fn(self, params, batch, model_state, mode, rng, update_batch_norm,
               dropout_rate=0.0):
    del rng, update_batch_norm
    params.train(mode == spec.ForwardPassMode.TRAIN)
    out = params(batch['inputs'], dropout_rate)
    return out.reshape((out.shape[0],) + KINDS[self.kind]['out']), model_state

  def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
    import torch
    del label_smoothing
    ops = {'softplus': torch.nn.functional.softplus, 'abs': torch.abs,
           'ones_like': torch.ones_like}
    summed, n, per = _loss_sums(ops, self.kind, label_batch, logits_batch, mask_batch)
    return {'summed': summed, 'n_valid_examples': n, 'per_example': per}


def torch_batch(numpy_batch):
  import torch
  return {k: torch.as_tensor(v) for k, v in numpy_batch.items()}
