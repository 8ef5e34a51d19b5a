"""AlgoPerf's PyTorch DLRM-small (criteo1tb_pytorch/models.py), re-implemented.

Same layer names (`bot_mlp.{0,2,4}`, `top_mlp.{0,2,4,6,9}`, `embedding_chunk_{0..3}`),
initialisers and forward pass. Like AlgoPerf's model, the four embedding chunks are
registered parameters that the forward pass reads from a plain Python list
(`embedding_table_chucks`), so `torch.func.functional_call` sees zero tangents for
them: our curvature oracles are tested against exactly this structure.
"""
import math

import torch
from torch import nn
import torch.nn.functional as F


class _RateDropout(nn.Module):
  """Dropout whose rate is given per call (AlgoPerf passes `dropout_rate` to model_fn)."""

  def forward(self, x, rate=0.0):
    return F.dropout(x, p=rate, training=self.training) if rate else x


def dot_interact(dense_features, sparse_features):
  """(B, D), (B, F, D) -> (B, D + (F+1)(F+2)/2): upper-triangle dot products incl. diagonal."""
  combined = torch.cat((dense_features.unsqueeze(1), sparse_features), dim=1)
  interactions = torch.bmm(combined, combined.transpose(1, 2))
  rows, cols = torch.triu_indices(combined.shape[1], combined.shape[1])
  return torch.cat((dense_features, interactions[:, rows, cols]), dim=1)


class DlrmSmall(nn.Module):
  """DLRM-small: bottom MLP on dense features, embedding lookups, dot interaction, top MLP."""

  def __init__(self, vocab_size, num_dense_features=13, num_sparse_features=26,
               mlp_bottom_dims=(512, 256, 128), mlp_top_dims=(1024, 1024, 512, 256, 1),
               embed_dim=128, num_embedding_chunks=4):
    super().__init__()
    self.vocab_size = vocab_size
    self.num_dense_features = num_dense_features
    self.num_sparse_features = num_sparse_features
    self.embed_dim = embed_dim
    chunk_size = math.ceil(vocab_size / num_embedding_chunks)
    scale = 1.0 / math.sqrt(vocab_size)
    self.embedding_table_chucks = []  # AlgoPerf's name (sic) and plain-list storage.
    for i in range(num_embedding_chunks):
      chunk = nn.Parameter(torch.rand(chunk_size, embed_dim) * scale)
      self.register_parameter(f'embedding_chunk_{i}', chunk)
      self.embedding_table_chucks.append(chunk)

    layers, fan_in = [], num_dense_features
    for fan_out in mlp_bottom_dims:
      layers += [nn.Linear(fan_in, fan_out), nn.ReLU(inplace=True)]
      fan_in = fan_out
    self.bot_mlp = nn.Sequential(*layers)
    for m in self.bot_mlp:
      if isinstance(m, nn.Linear):
        limit = math.sqrt(6.0 / (m.in_features + m.out_features))
        nn.init.uniform_(m.weight, -limit, limit)
        nn.init.normal_(m.bias, 0.0, math.sqrt(1.0 / m.out_features))

    num_pairs = (num_sparse_features + 1) * (num_sparse_features + 2) // 2
    layers, fan_in = [], mlp_bottom_dims[-1] + num_pairs
    for i, fan_out in enumerate(mlp_top_dims):
      layers.append(nn.Linear(fan_in, fan_out))
      if i < len(mlp_top_dims) - 1:
        layers.append(nn.ReLU(inplace=True))
      if i == len(mlp_top_dims) - 2:
        layers.append(_RateDropout())
      fan_in = fan_out
    self.top_mlp = nn.Sequential(*layers)
    for m in self.top_mlp:
      if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.in_features + m.out_features)))
        nn.init.normal_(m.bias, 0.0, math.sqrt(1.0 / m.out_features))

  def forward(self, x, dropout_rate=0.0):
    """x: (B, 39) float32, 13 dense then 26 categorical ids -> logits (B, 1)."""
    batch_size = x.shape[0]
    dense, sparse = torch.split(
        x, [self.num_dense_features, self.num_sparse_features], dim=1)
    embedded_dense = self.bot_mlp(dense)
    idx = sparse.to(torch.int32).reshape(-1) % self.vocab_size
    table = torch.cat(self.embedding_table_chucks, dim=0)
    embedded_sparse = table[idx].reshape(batch_size, -1, self.embed_dim)
    h = dot_interact(embedded_dense, embedded_sparse)
    for layer in self.top_mlp:
      h = layer(h, dropout_rate) if isinstance(layer, _RateDropout) else layer(h)
    return h
