"""JAX criteo-shaped workload: params replicated, batches sharded over a 'batch' mesh axis."""
import contextlib
import functools

import jax
import jax.numpy as jnp

from curvlr import spec
from curvlr.jax import sharding
from curvlr.workloads.criteo import jax_model
from curvlr.workloads.criteo import workload as base


def _param_type(path) -> 'spec.ParameterType':
  name = '/'.join(str(getattr(k, 'key', k)) for k in path)
  if 'embedding' in name:
    return spec.ParameterType.EMBEDDING
  return spec.ParameterType.BIAS if name.endswith('bias') else spec.ParameterType.WEIGHT


def sigmoid_cross_entropy(labels, logits, mask=None):
  """Per-example -[y log s(z) + (1-y) log s(-z)] (B,), masked; -> (summed, n_valid, per_example)."""
  batch_size = labels.shape[0]
  labels = jnp.reshape(labels, (batch_size,)).astype(logits.dtype)
  logits = jnp.reshape(logits, (batch_size,))
  per_example = -(labels * jax.nn.log_sigmoid(logits) + (1 - labels) * jax.nn.log_sigmoid(-logits))
  if mask is not None:
    mask = jnp.reshape(mask, (batch_size,)).astype(per_example.dtype)
    per_example = per_example * mask
    n_valid = jnp.sum(mask)
  else:
    n_valid = jnp.asarray(batch_size, per_example.dtype)
  return jnp.sum(per_example), n_valid, per_example


class CriteoJaxWorkload(base.CriteoWorkloadBase):
  """DLRM-small in JAX, jit/GSPMD over all local devices."""

  def init_model_fn(self, rng, dropout_rate=None, aux_dropout_rate=None):
    del dropout_rate, aux_dropout_rate
    cfg = self.cfg
    params = jax_model.init_params(
        rng, cfg.vocab_size, cfg.num_dense_features, cfg.num_sparse_features,
        cfg.mlp_bottom_dims, cfg.mlp_top_dims, cfg.embed_dim)
    self._param_shapes = jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)
    self._param_types = jax.tree_util.tree_map_with_path(lambda p, _: _param_type(p), params)
    return sharding.replicate(params), None

  def is_output_params(self, param_key: str) -> bool:
    return param_key == f'Dense_{len(self.cfg.mlp_bottom_dims) + len(self.cfg.mlp_top_dims) - 1}'

  def model_fn(self, params, augmented_and_preprocessed_input_batch, model_state, mode,
               rng, update_batch_norm, dropout_rate=0.0):
    del model_state, update_batch_norm
    train = mode == spec.ForwardPassMode.TRAIN
    logits = jax_model.apply(
        params, augmented_and_preprocessed_input_batch['inputs'],
        num_bottom_layers=len(self.cfg.mlp_bottom_dims),
        num_dense_features=self.cfg.num_dense_features,
        dropout_rate=dropout_rate if train else 0.0, dropout_rng=rng if train else None)
    return logits, None

  def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
    """Sigmoid cross-entropy; label_smoothing is ignored as in AlgoPerf's criteo."""
    del label_smoothing
    summed, n_valid, per_example = sigmoid_cross_entropy(label_batch, logits_batch, mask_batch)
    return {'summed': summed, 'n_valid_examples': n_valid, 'per_example': per_example}

  def output_activation_fn(self, logits_batch, framework='jax'):
    return jax.nn.sigmoid(logits_batch)

  def _build_input_queue(self, data_rng, split, data_dir, global_batch_size,
                         cache=None, repeat_final_dataset=None, num_batches=None):
    del data_dir, cache
    num_devices = jax.device_count()
    batches = self._numpy_batches(base.seed_from_rng(data_rng), split, global_batch_size,
                                  num_batches, bool(repeat_final_dataset))
    with contextlib.closing(batches):  # closing this generator stops the prefetch thread
      for batch in batches:
        if global_batch_size % num_devices:
          raise ValueError(f'Global batch size {global_batch_size} is not divisible by the '
                           f'number of devices {num_devices}.')
        yield sharding.shard_batch(batch)

  @functools.partial(jax.jit, static_argnums=(0,))
  def _eval_batch_summed(self, params, batch):
    logits, _ = self.model_fn(params, batch, None, spec.ForwardPassMode.EVAL, None, False)
    summed, _, _ = sigmoid_cross_entropy(batch['targets'], logits, batch.get('weights'))
    return summed

  def _eval_model_on_split(self, split, num_examples, global_batch_size, params,
                           model_state, rng, data_dir):
    del model_state, rng, data_dir
    total = 0.0
    for batch in self._eval_batches(split, global_batch_size):
      total += float(self._eval_batch_summed(params, sharding.shard_batch(batch)))
    return total / num_examples
