"""Process-group helpers: rank, world size, device, and reductions that every rank agrees on."""
import os

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol


def is_distributed() -> bool:
  return dist.is_available() and dist.is_initialized()


def rank() -> int:
  return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
  return dist.get_world_size() if is_distributed() else 1


def device() -> torch.device:
  if torch.cuda.is_available():
    return torch.device(f'cuda:{int(os.environ.get("LOCAL_RANK", 0))}')
  return torch.device('cpu')


def init_from_env() -> None:
  """Starts the process group under torchrun (LOCAL_RANK set): nccl on GPU, gloo on CPU."""
  if 'LOCAL_RANK' in os.environ and not is_distributed():
    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    dist.init_process_group(backend)
    if torch.cuda.is_available():
      torch.cuda.set_device(device())


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
  """Sum over ranks (identity without a process group); returns a new tensor."""
  out = tensor.clone()
  if is_distributed():
    dist.all_reduce(out)
  return out


def differentiable_all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
  """Sum over ranks that autograd differentiates (the backward sums the gradient over
  ranks); identity without a process group.

  The replacement torch recommends for the deprecated `torch.distributed.nn.all_reduce`
  (functional collectives, whose all_reduce has a registered autograd formula), waited on
  here so that callers get a plain tensor.
  """
  if not is_distributed():
    return tensor
  return funcol.wait_tensor(funcol.all_reduce(tensor, 'sum', dist.group.WORLD))


def _all_reduce_float(value: float, op) -> float:
  """`op` of a Python float over ranks in float64 (identity without a process group)."""
  if not is_distributed():
    return value
  t = torch.tensor([value], dtype=torch.float64, device=device())
  dist.all_reduce(t, op=op)
  return float(t.item())


def all_reduce_max(value: float) -> float:
  """Max of a Python float over ranks, so timing-driven decisions agree on every rank."""
  return _all_reduce_float(value, dist.ReduceOp.MAX)


def all_reduce_sum_float(value: float) -> float:
  """Sum of a Python float over ranks (identity without a process group)."""
  return _all_reduce_float(value, dist.ReduceOp.SUM)
