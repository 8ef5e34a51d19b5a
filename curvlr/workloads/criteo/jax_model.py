"""AlgoPerf's JAX DLRM-small (criteo1tb_jax/models.py) as pure functions of a param dict.

The param tree matches AlgoPerf's flax tree: `Dense_0..Dense_2` (bottom MLP),
`embedding_table`, `Dense_3..Dense_7` (top MLP), each Dense with `kernel` (in, out)
and `bias`. Initialisers as in AlgoPerf: bottom Glorot-uniform / N(0, 1/fan_out),
top N(0, 2/(fan_in+fan_out)) / N(0, 1/fan_out), table U[0,1)/sqrt(vocab).
"""
import math

import jax
import jax.numpy as jnp


def init_params(rng, vocab_size, num_dense_features=13, num_sparse_features=26,
                mlp_bottom_dims=(512, 256, 128), mlp_top_dims=(1024, 1024, 512, 256, 1),
                embed_dim=128):
  """-> nested dict of float32 arrays."""
  params = {}
  keys = iter(jax.random.split(rng, 2 * (len(mlp_bottom_dims) + len(mlp_top_dims)) + 1))
  fan_in, layer = num_dense_features, 0
  for fan_out in mlp_bottom_dims:
    params[f'Dense_{layer}'] = {
        'kernel': jax.nn.initializers.glorot_uniform()(next(keys), (fan_in, fan_out)),
        'bias': math.sqrt(1.0 / fan_out) * jax.random.normal(next(keys), (fan_out,))}
    fan_in, layer = fan_out, layer + 1
  params['embedding_table'] = jax.random.uniform(
      next(keys), (vocab_size, embed_dim)) / math.sqrt(vocab_size)
  num_pairs = (num_sparse_features + 1) * (num_sparse_features + 2) // 2
  fan_in = mlp_bottom_dims[-1] + num_pairs
  for fan_out in mlp_top_dims:
    std = math.sqrt(2.0 / (fan_in + fan_out))
    params[f'Dense_{layer}'] = {
        'kernel': std * jax.random.normal(next(keys), (fan_in, fan_out)),
        'bias': math.sqrt(1.0 / fan_out) * jax.random.normal(next(keys), (fan_out,))}
    fan_in, layer = fan_out, layer + 1
  return params


def dot_interact(concat_features):
  """(B, F+1, D) -> (B, (F+1)(F+2)/2): upper-triangle dot products incl. diagonal."""
  xactions = jnp.einsum('bfd,bgd->bfg', concat_features, concat_features)
  rows, cols = jnp.triu_indices(concat_features.shape[1])
  return xactions[:, rows, cols]


def apply(params, inputs, *, num_bottom_layers=3, num_dense_features=13,
          dropout_rate=0.0, dropout_rng=None):
  """inputs: (B, 39) float -> logits (B, 1). Dropout (train only) after the 256-unit layer."""
  vocab_size, embed_dim = params['embedding_table'].shape
  batch_size = inputs.shape[0]
  dense = inputs[:, :num_dense_features]
  sparse = inputs[:, num_dense_features:].astype(jnp.int32)
  h = dense
  for i in range(num_bottom_layers):
    h = jax.nn.relu(h @ params[f'Dense_{i}']['kernel'] + params[f'Dense_{i}']['bias'])
  bottom = h
  idx = jnp.reshape(sparse, (-1,)) % vocab_size
  embedded = params['embedding_table'][idx].reshape(batch_size, -1, embed_dim)
  interactions = dot_interact(jnp.concatenate([bottom[:, None, :], embedded], axis=1))
  h = jnp.concatenate([bottom, interactions], axis=1)
  num_layers = len(params) - 1
  for i in range(num_bottom_layers, num_layers):
    h = h @ params[f'Dense_{i}']['kernel'] + params[f'Dense_{i}']['bias']
    if i < num_layers - 1:
      h = jax.nn.relu(h)
    if i == num_layers - 2 and dropout_rate and dropout_rng is not None:
      keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, h.shape)
      h = jnp.where(keep, h / (1.0 - dropout_rate), 0.0)
  return h
