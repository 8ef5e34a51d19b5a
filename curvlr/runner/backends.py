"""What differs between frameworks in the runner: clock, process rank, checkpoints."""
import pathlib
import pickle
import time
from typing import Any, Dict, Tuple


class PytorchBackend:
  """DDP under torchrun (gloo on CPU, nccl on GPU); every clock read is a collective."""
  name = 'pytorch'

  def __init__(self):
    from curvlr.pytorch import distributed
    distributed.init_from_env()
    self._dist = distributed

  @property
  def is_rank0(self) -> bool:
    return self._dist.rank() == 0

  @property
  def num_devices(self) -> int:
    return self._dist.world_size()

  def get_time(self) -> float:
    import torch
    if torch.cuda.is_available():
      torch.cuda.synchronize()
    return self._dist.all_reduce_max(time.time())

  def sum_over_processes(self, value: float) -> float:
    """Sum of a Python float over ranks (a collective under DDP)."""
    return self._dist.all_reduce_sum_float(value)

  def save_checkpoint(self, path: pathlib.Path, params, model_state, optimizer_state,
                      extra: Dict[str, Any]) -> None:
    import torch
    model = getattr(params, 'module', params)
    torch.save({'model': model.state_dict(), 'model_state': model_state,
                'optimizer_state': {k: v.state_dict() for k, v in optimizer_state.items()
                                    if hasattr(v, 'state_dict')},
                'extra': extra}, path)

  def load_checkpoint(self, path: pathlib.Path, params, model_state,
                      optimizer_state) -> Tuple[Any, Any, Any, Dict[str, Any]]:
    import torch
    ckpt = torch.load(path, map_location=self._dist.device(), weights_only=False)
    getattr(params, 'module', params).load_state_dict(ckpt['model'])
    for key, value in ckpt['optimizer_state'].items():
      optimizer_state[key].load_state_dict(value)
    return params, ckpt['model_state'], optimizer_state, ckpt['extra']

  def finish(self) -> None:
    import torch.distributed as dist
    if self._dist.is_distributed():
      dist.barrier()
      dist.destroy_process_group()


class JaxBackend:
  """Single process over all local devices (jit + GSPMD). No device sync in the clock,
  as in AlgoPerf: asynchronously dispatched work is charged when something waits on it."""
  name = 'jax'
  is_rank0 = True

  @property
  def num_devices(self) -> int:
    import jax
    return jax.local_device_count()

  def get_time(self) -> float:
    return time.time()

  def sum_over_processes(self, value: float) -> float:
    return value  # one process

  def save_checkpoint(self, path, params, model_state, optimizer_state, extra) -> None:
    import jax
    opt_state, _ = optimizer_state
    with open(path, 'wb') as f:
      pickle.dump(jax.device_get({'params': params, 'model_state': model_state,
                                  'opt_state': opt_state, 'extra': extra}), f)

  def load_checkpoint(self, path, params, model_state, optimizer_state):
    from curvlr.jax import sharding
    with open(path, 'rb') as f:
      ckpt = pickle.load(f)
    _, update_fn = optimizer_state
    return (sharding.replicate(ckpt['params']), ckpt['model_state'],
            (sharding.replicate(ckpt['opt_state']), update_fn), ckpt['extra'])

  def finish(self) -> None:
    pass


def for_framework(framework: str):
  return JaxBackend() if framework == 'jax' else PytorchBackend()
