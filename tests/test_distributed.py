"""`differentiable_all_reduce_sum`: the values and gradients of the deprecated
`torch.distributed.nn.all_reduce` over 2 gloo processes, without its FutureWarning."""
import os
import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.multiprocessing as mp

from curvlr.pytorch import distributed


def _grads(reduce, rank):
  x = torch.tensor([1.0 + rank, -2.0, 0.5 * rank], dtype=torch.float64, requires_grad=True)
  y = reduce((x ** 2).sum() * (rank + 1))
  (3.0 * y).backward()
  return y.detach(), x.grad


def _worker(rank, world, init_file, out_dir):
  dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                          world_size=world)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    ours = _grads(distributed.differentiable_all_reduce_sum, rank)
  ours_warned = any(issubclass(w.category, FutureWarning) for w in caught)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', FutureWarning)
    old = _grads(dist_nn.all_reduce, rank)
  torch.save({'ours': ours, 'old': old, 'ours_warned': ours_warned},
             os.path.join(out_dir, f'rank{rank}.pt'))
  dist.destroy_process_group()


def test_matches_deprecated_all_reduce_without_warning(tmp_path):
  mp.spawn(_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2, join=True)
  for rank in range(2):
    out = torch.load(tmp_path / f'rank{rank}.pt')
    assert not out['ours_warned']
    assert type(out['ours'][0]) is torch.Tensor  # a plain tensor, waited on
    for a, b in zip(out['ours'], out['old']):
      torch.testing.assert_close(a, b, rtol=0, atol=0)
    # y = sum_r (r+1)|x_r|^2 = 1*5 + 2*8.25; every rank's 3y sends 3 back through the
    # all-reduce, whose backward sums them: dL/dx_r = (3 * 2) * (r+1) * 2 x_r.
    assert float(out['ours'][0]) == 21.5
    x = torch.tensor([1.0 + rank, -2.0, 0.5 * rank], dtype=torch.float64)
    torch.testing.assert_close(out['ours'][1], 12.0 * (rank + 1) * x)


def test_identity_without_process_group():
  t = torch.tensor([1.0, 2.0], requires_grad=True)
  assert distributed.differentiable_all_reduce_sum(t) is t
