"""Per-step overhead of the local runner against a bare training loop (PyTorch).

Same model, same submission, same in-memory batches: the bare loop calls
`update_params` back to back; the runner adds its rng plumbing, clock reads,
train_state and bookkeeping (evals skipped). Prints `name: value` lines; headline last.
"""
import itertools
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, '.')
from curvlr.runner import backends, loop, rng as rng_lib  # noqa: E402
from curvlr.runner import submission as submission_lib  # noqa: E402
from curvlr.workloads.criteo import synthetic  # noqa: E402
from curvlr.workloads.criteo.pytorch_workload import CriteoPytorchWorkload  # noqa: E402
from curvlr.workloads.criteo import config  # noqa: E402

STEPS, BATCH = 40, 1024


def main():
  data_dir = synthetic.ensure_dataset('.cache/bench', synthetic.SyntheticConfig(
      seed=0, num_train_files=1, lines_per_train_file=20_000, num_validation_lines=1024,
      num_test_lines=1024))
  workload = CriteoPytorchWorkload(config.CRITEO_EMBEDDED, str(data_dir))
  queue = workload._build_input_queue(np.array([0, 0]), 'train', None, BATCH)  # pylint: disable=protected-access
  batches = [next(queue) for _ in range(8)]
  sub = submission_lib.load('submissions/self_tuning/nadamw/pytorch_submission.py')

  def bare():
    params, state = workload.init_model_fn(np.array([0, 0]))
    opt = sub.init_optimizer_state(workload, params, state, None, None)
    start = time.perf_counter()
    for step, batch in zip(range(STEPS), itertools.cycle(batches)):
      opt, params, state = sub.update_params(workload, params, None, state, None, batch,
                                             None, opt, [], step, np.array([0, step]))
    return (time.perf_counter() - start) / STEPS

  def runner():
    workload._build_input_queue = lambda *a, **k: itertools.cycle(batches)  # pylint: disable=protected-access
    result = loop.train_once(
        workload, sub, backends.PytorchBackend(), rng_lib.NumpyPRNG,
        trial_dir=pathlib.Path(tempfile.mkdtemp()),
        data_dir=None, global_batch_size=BATCH, global_eval_batch_size=BATCH,
        hyperparameters=None, rng_seed=0, max_global_steps=STEPS,
        self_tuning=True, resume=False, save_checkpoints=False, skip_evals=True)
    return result.submission_time / result.global_step

  torch.set_num_threads(2)
  bare_s, runner_s = [], []
  for _ in range(3):  # interleave to share machine noise
    bare_s.append(bare())
    runner_s.append(runner())
  b, r = float(np.median(bare_s)), float(np.median(runner_s))
  print(f'bare_loop_s_per_step: {b:.4f}')
  print(f'runner_s_per_step: {r:.4f}')
  print(f'runner_overhead_ratio: {r / b:.3f}')


if __name__ == '__main__':
  main()
