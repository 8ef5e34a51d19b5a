"""Budget-aware decisions across 2 gloo processes: ranks whose local step times differ
take identical measurement decisions from the max-reduced times (the drivers' `reduce`),
and would not without it. The policy layer runs as in the drivers (start_step, observe)
on a fake clock; no model is trained."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from curvlr.core import amortization, interval_median, policy as P
from curvlr.pytorch import distributed

STEPS = 300
POLICIES = {
    'median': P.MedianPolicy(interval_median.IntervalMedianConfig(
        step_hint=1000, warmup_steps=5, interval=10, window=3, overhead_target=0.1)),
    'cdat': P.CDATPolicy(schedule=amortization.Budget(target=0.1, untimed_warmup=1)),
}


def _decisions(policy, rank, reduce):
  """Measurement steps over STEPS updates; a plain step takes 1 s on every rank, a
  measurement step 2 s on rank 0 and 4 s on rank 1 (extra cost 1 s vs 3 s)."""
  now, state, measured = [0.0], P.init(policy), []
  clock = lambda: now[0]
  for step in range(STEPS):
    state = P.start_step(policy, state, step, 0, clock, reduce=reduce)
    measuring = P.should_measure(policy, state, step)
    if measuring:
      state = P.observe(policy, state, step, P.Measurement(-1.0, 1.0) if isinstance(
          policy, P.CDATPolicy) else P.TwoBatchMeasurement(-1.0, 1.0, float('nan'),
                                                            float('nan')))
      measured.append(step)
    now[0] += (2.0 + 2.0 * rank) if measuring else 1.0
  return measured


def _worker(rank, world, init_file, out_dir):
  dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                          world_size=world)
  out = {}
  for name, policy in POLICIES.items():
    assert P.needs_reduced_times(policy)
    out[name, 'reduced'] = _decisions(policy, rank, distributed.all_reduce_max)
    out[name, 'local'] = _decisions(policy, rank, float)
  torch.save(out, os.path.join(out_dir, f'rank{rank}.pt'))
  dist.barrier()
  dist.destroy_process_group()


def test_ranks_take_identical_budget_decisions(tmp_path):
  mp.spawn(_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2, join=True)
  ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]
  for name in POLICIES:
    reduced = [r[name, 'reduced'] for r in ranks]
    assert reduced[0] == reduced[1] and len(reduced[0]) >= 4, (name, reduced)
    assert reduced[0] == ranks[1][name, 'local']  # the slower rank's times decide
    assert ranks[0][name, 'local'] != ranks[1][name, 'local']  # without reduce: divergence
