"""PyTorch criteo-shaped workload (AlgoPerf's Criteo1TbDlrmSmallWorkload semantics)."""
import contextlib

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from curvlr import spec
from curvlr.pytorch import distributed as dist_utils
from curvlr.workloads.criteo import workload as base
from curvlr.workloads.criteo.torch_model import DlrmSmall


def _param_type(name: str):
  if 'embedding_chunk' in name:
    return spec.ParameterType.EMBEDDING
  return spec.ParameterType.BIAS if name.endswith('bias') else spec.ParameterType.WEIGHT


class CriteoPytorchWorkload(base.CriteoWorkloadBase):
  """DLRM-small in PyTorch. Under DDP each rank sees its slice of every global batch."""

  def init_model_fn(self, rng, dropout_rate=None, aux_dropout_rate=None):
    del dropout_rate, aux_dropout_rate
    torch.random.manual_seed(int(rng[0]))
    cfg = self.cfg
    model = DlrmSmall(cfg.vocab_size, cfg.num_dense_features, cfg.num_sparse_features,
                      cfg.mlp_bottom_dims, cfg.mlp_top_dims, cfg.embed_dim)
    self._param_shapes = {k: spec.ShapeTuple(v.shape) for k, v in model.named_parameters()}
    self._param_types = {k: _param_type(k) for k in self._param_shapes}
    model.to(dist_utils.device())
    if dist_utils.world_size() > 1:
      model = torch.nn.parallel.DistributedDataParallel(model)
    return model, None

  def is_output_params(self, param_key: str) -> bool:
    # AlgoPerf checks 'top_mlp.4' (a hidden layer); the real output layer is top_mlp.9.
    return param_key in ('top_mlp.9.weight', 'top_mlp.9.bias')

  def model_fn(self, params, augmented_and_preprocessed_input_batch, model_state, mode,
               rng, update_batch_norm, dropout_rate=0.0):
    del model_state, rng, update_batch_norm
    model = params
    inputs = augmented_and_preprocessed_input_batch['inputs']
    if mode == spec.ForwardPassMode.EVAL:
      model.eval()
      context = torch.no_grad
    else:
      model.train()
      context = contextlib.nullcontext
    with context():
      logits = model(inputs, dropout_rate=dropout_rate or 0.0)
    return logits, None

  def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
    """Sigmoid cross-entropy. Returns local 'summed', 'n_valid_examples', 'per_example'."""
    del label_smoothing  # AlgoPerf's criteo loss ignores it.
    batch_size = label_batch.shape[0]
    labels = label_batch.reshape(batch_size).to(logits_batch.dtype)
    logits = logits_batch.reshape(batch_size)
    per_example = F.binary_cross_entropy_with_logits(logits, labels, reduction='none')
    if mask_batch is not None:
      mask = mask_batch.reshape(batch_size).to(per_example.dtype)
      per_example = per_example * mask
      n_valid = mask.sum()
    else:
      n_valid = torch.tensor(float(batch_size), device=per_example.device)
    return {'summed': per_example.sum(), 'n_valid_examples': n_valid,
            'per_example': per_example}

  def output_activation_fn(self, logits_batch, framework='pytorch'):
    return torch.sigmoid(logits_batch)

  def _to_local_torch(self, batch):
    """Global numpy batch -> this rank's slice as torch tensors on the device."""
    rank, world = dist_utils.rank(), dist_utils.world_size()
    out = {}
    for key, value in batch.items():
      if value.shape[0] % world:
        raise ValueError(f'Global batch size {value.shape[0]} is not divisible by the '
                         f'number of devices {world}.')
      local = np.split(value, world)[rank]
      out[key] = torch.as_tensor(local, dtype=torch.float32, device=dist_utils.device())
    return out

  def _build_input_queue(self, data_rng, split, data_dir, global_batch_size,
                         cache=None, repeat_final_dataset=None, num_batches=None):
    del data_dir, cache
    batches = self._numpy_batches(base.seed_from_rng(data_rng), split, global_batch_size,
                                  num_batches, bool(repeat_final_dataset))
    with contextlib.closing(batches):  # closing this generator stops the prefetch thread
      for batch in batches:
        local = self._to_local_torch(batch)
        if split == 'train':  # AlgoPerf's PyTorch pipeline always sends train weights.
          local['weights'] = torch.ones_like(local['targets'])
        yield local

  def _eval_model_on_split(self, split, num_examples, global_batch_size, params,
                           model_state, rng, data_dir):
    del data_dir
    total = torch.zeros((), dtype=torch.float64, device=dist_utils.device())
    for batch in self._eval_batches(split, global_batch_size):
      local = self._to_local_torch(batch)
      logits, _ = self.model_fn(params, local, model_state, spec.ForwardPassMode.EVAL,
                                rng, update_batch_norm=False)
      loss = self.loss_fn(local['targets'], logits, local.get('weights'))
      total += loss['summed'].to(torch.float64)
    if dist_utils.world_size() > 1:
      dist.all_reduce(total)
    return float(total.item() / num_examples)
