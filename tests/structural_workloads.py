"""Small workloads whose batches have the structure, dtypes and losses of AlgoPerf's.

A tanh MLP in both frameworks (same initial weights), with the batch and loss
conventions of one AlgoPerf workload (`algoperf_base` tells
`curvlr.core.workload_support` which):
  ogbg     graph batches: `inputs` a `Graphs` tuple of (N, 8) node features and (B,)
           node counts (the last graph is padding, one node, weight 0), as jraph's
           GraphsTuple; the MLP runs per node (dropout per node) and sums each graph's
           nodes, so graphs do not interact and rows of `nodes` are not graphs. Sigmoid
           per task, targets and mask (B, 128), B odd; `loss_type` SOFTMAX as
           AlgoPerf's ogbg says.
  fastmri  MAE over (B, 4, 4) images from (B, 8) inputs, per-example weights (B,).
  librispeech_conformer  CTC: `inputs` (frames (B, T, 8), frame paddings (B, T)), the MLP
           runs per frame (dropout per frame) and returns (logits (B, T, V), logit
           paddings = frame paddings); `targets` (labels (B, S) in 1..V-1, 0 where padded,
           label paddings (B, S)); no weights. The loss is AlgoPerf's: summed per-sequence
           CTC (blank 0) over the label count.
Not a model of those workloads: only what a curvature driver sees of them.

`data_dropout = True` replaces the frameworks' random dropout masks by one drawn from
the batch (`_data_keep`), so that PyTorch and JAX apply identical masks: a parity check.
"""
from typing import NamedTuple

import numpy as np

from curvlr import spec


class Graphs(NamedTuple):
  """The fields of a jraph.GraphsTuple the test model reads."""
  nodes: np.ndarray   # (N, 8) float32
  n_node: np.ndarray  # (B,) int32, N = n_node.sum()

KINDS = {
    'ogbg': dict(loss_type=spec.LossType.SOFTMAX_CROSS_ENTROPY, out=(128,)),
    'fastmri': dict(loss_type=spec.LossType.MEAN_ABSOLUTE_ERROR, out=(4, 4)),
    'librispeech_conformer': dict(loss_type=spec.LossType.CTC_LOSS, out=(6,)),
}
FRAMES, LABELS = 8, 3  # CTC: T frames and S label slots per sequence
HIDDEN = 16


def init_weights(kind, seed=0):
  rng = np.random.default_rng(seed)
  out = int(np.prod(KINDS[kind]['out']))
  return {'w1': rng.normal(0, 0.5, (8, HIDDEN)).astype(np.float32),
          'b1': np.zeros(HIDDEN, np.float32),
          'w2': rng.normal(0, 0.5, (HIDDEN, out)).astype(np.float32),
          'b2': np.zeros(out, np.float32)}


def batch(kind, size, seed=0, num_nodes=None):
  """Numpy batch dict in AlgoPerf's layout for `kind`; `size` examples (graphs). ogbg:
  the padding graph holds the nodes up to `num_nodes` (>= 1, default 1), as jraph pads."""
  rng = np.random.default_rng(seed)
  out = KINDS[kind]['out']
  if kind == 'ogbg':
    n_node = rng.integers(1, 4, size - 1)
    pad = 1 if num_nodes is None else num_nodes - int(n_node.sum())
    n_node = np.append(n_node, pad).astype(np.int32)
    inputs = Graphs(rng.normal(size=(int(n_node.sum()), 8)).astype(np.float32), n_node)
    targets = (rng.random((size,) + out) < 0.3).astype(np.float32)
    weights = (rng.random((size,) + out) < 0.8).astype(np.float32)
    weights[-1] = 0.0  # the padding graph
  elif kind == 'librispeech_conformer':
    frame_lengths = rng.integers(FRAMES - 2, FRAMES + 1, size)  # >= 2 * LABELS: feasible
    label_lengths = rng.integers(1, LABELS + 1, size)
    frame_paddings = (np.arange(FRAMES) >= frame_lengths[:, None]).astype(np.float32)
    label_paddings = (np.arange(LABELS) >= label_lengths[:, None]).astype(np.float32)
    labels = rng.integers(1, out[0], (size, LABELS)) * (1 - label_paddings).astype(np.int32)
    inputs = (rng.normal(size=(size, FRAMES, 8)).astype(np.float32), frame_paddings)
    return {'inputs': inputs, 'targets': (labels.astype(np.int32), label_paddings)}
  else:
    inputs = rng.normal(size=(size, 8)).astype(np.float32)
    targets = rng.normal(size=(size,) + out).astype(np.float32)
    weights = np.ones(size, np.float32)
  return {'inputs': inputs, 'targets': targets, 'weights': weights}


def _output(kind, out, batch):
  """The model_fn output from the MLP's (rows, out) array."""
  if kind == 'librispeech_conformer':
    return out.reshape(batch['inputs'][1].shape + KINDS[kind]['out']), batch['inputs'][1]
  return out.reshape((out.shape[0],) + KINDS[kind]['out'])


def _loss_sums(np_like, kind, targets, logits, mask):
  """(summed, n_valid, per_example) as the AlgoPerf workload's loss_fn."""
  if kind == 'ogbg':
    per = (np_like['softplus'](logits) - targets * logits)  # sigmoid BCE with logits
    mask = np_like['ones_like'](per) if mask is None else mask
    return (per * mask).sum(), mask.sum(), (per * mask).sum(-1)
  per = np_like['abs'](logits - targets).reshape(logits.shape[0], -1).mean(-1)
  mask = np_like['ones_like'](per) if mask is None else mask
  return (per * mask).sum(), mask.sum(), per * mask


def _data_keep(np_like, batch, shape, rate):
  """A dropout keep-mask of `shape` (rows: nodes, frames or examples) drawn from the
  batch's integer content (which examples have weight, or labels), identical in both
  frameworks."""
  weights = batch['weights'] if 'weights' in batch else 1 - batch['targets'][1]
  weights = weights.reshape(weights.shape[0], -1)
  valid = (weights != 0).sum(-1) > 0
  salt = (valid * np_like['arange'](1, valid.shape[0] + 1)).sum()
  rows = np_like['arange'](shape[0]).reshape(-1, 1)
  cols = np_like['arange'](shape[1]).reshape(1, -1)
  return (rows * 31 + cols * 17 + salt * 7) % 100 >= round(100 * rate)


def _rows_and_pool(np_like, inputs):
  """-> (rows the MLP runs on, (B, rows) 0/1 matrix summing each graph's nodes or None)."""
  if isinstance(inputs, tuple) and not isinstance(inputs, Graphs):  # CTC frames
    return inputs[0].reshape(-1, inputs[0].shape[-1]), None
  if not isinstance(inputs, Graphs):
    return inputs, None
  end = np_like['cumsum'](inputs.n_node)
  start = (end - inputs.n_node).reshape(-1, 1)
  node = np_like['arange'](inputs.nodes.shape[0]).reshape(1, -1)
  return inputs.nodes, ((node >= start) & (node < end.reshape(-1, 1))) * 1.0


class _Base:
  data_dropout = False

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
    ops = {'arange': jnp.arange, 'cumsum': jnp.cumsum}
    x, pool = _rows_and_pool(ops, batch['inputs'])
    h = jnp.tanh(x @ params['w1'] + params['b1'])
    if dropout_rate and (rng is not None or self.data_dropout):
      keep = (_data_keep(ops, batch, h.shape, dropout_rate) if self.data_dropout
              else jax.random.bernoulli(rng, 1.0 - dropout_rate, h.shape))
      h = jnp.where(keep, h / (1.0 - dropout_rate), 0.0)
    out = (h if pool is None else pool @ h) @ params['w2'] + params['b2']
    return _output(self.kind, out, batch), model_state

  def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
    import jax
    import jax.numpy as jnp
    del label_smoothing
    if self.kind == 'librispeech_conformer':  # AlgoPerf's librispeech JAX loss_fn
      import optax
      (logits, logit_paddings), (labels, label_paddings) = logits_batch, label_batch
      per = optax.ctc_loss(jax.nn.log_softmax(logits), logit_paddings, labels, label_paddings)
      return {'summed': per.sum(), 'per_example': per,
              'n_valid_examples': jnp.clip((1 - label_paddings).sum(), min=1.0)}
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

      def forward(self, x, pool, dropout_rate=0.0, keep=None):
        h = torch.tanh(x @ self.w1 + self.b1)
        if keep is not None and self.training:
          h = torch.where(keep, h / (1.0 - dropout_rate), 0.0)
        elif dropout_rate:
          h = torch.nn.functional.dropout(h, dropout_rate, self.training)
        return (h if pool is None else pool @ h) @ self.w2 + self.b2

    return MLP(), None

  def model_fn(self, params, batch, model_state, mode, rng, update_batch_norm,
               dropout_rate=0.0):
    import torch
    del rng, update_batch_norm
    params.train(mode == spec.ForwardPassMode.TRAIN)
    ops = {'arange': torch.arange, 'cumsum': lambda x: torch.cumsum(x, 0)}
    x, pool = _rows_and_pool(ops, batch['inputs'])
    keep = (_data_keep(ops, batch, (x.shape[0], HIDDEN), dropout_rate)
            if self.data_dropout and dropout_rate else None)
    out = params(x, pool, dropout_rate, keep)
    return _output(self.kind, out, batch), model_state

  def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
    import torch
    del label_smoothing
    if self.kind == 'librispeech_conformer':  # AlgoPerf's librispeech PyTorch loss_fn
      (logits, logit_paddings), (labels, label_paddings) = logits_batch, label_batch
      per = torch.nn.functional.ctc_loss(
          torch.log_softmax(logits, -1).transpose(0, 1), labels.long(),
          (1 - logit_paddings).sum(-1).long(), (1 - label_paddings).sum(-1).long(),
          blank=0, reduction='none')
      n = max((1 - label_paddings).sum(), 1)
      return {'summed': per.sum(), 'n_valid_examples': n, 'per_example': per}
    ops = {'softplus': torch.nn.functional.softplus, 'abs': torch.abs,
           'ones_like': torch.ones_like}
    summed, n, per = _loss_sums(ops, self.kind, label_batch, logits_batch, mask_batch)
    return {'summed': summed, 'n_valid_examples': n, 'per_example': per}


def device_blocks(size, num_nodes, seed, blocks=2):
  """ogbg batches of `blocks` devices, each `size` graphs and `num_nodes` nodes (its last
  graph padding), as AlgoPerf lays them out: -> (global batch, [per-device batches])."""
  parts = [batch('ogbg', size, seed=seed * blocks + k, num_nodes=num_nodes)
           for k in range(blocks)]
  glued = {k: np.concatenate([p[k] for p in parts]) for k in ('targets', 'weights')}
  glued['inputs'] = Graphs(*(np.concatenate(f) for f in zip(*(p['inputs'] for p in parts))))
  return glued, parts


def torch_batch(numpy_batch):
  import torch
  convert = lambda v: (type(v)(*map(torch.as_tensor, v)) if isinstance(v, Graphs)
                       else tuple(map(torch.as_tensor, v)) if isinstance(v, tuple)
                       else torch.as_tensor(v))
  return {k: convert(v) for k, v in numpy_batch.items()}
