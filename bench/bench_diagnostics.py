"""Cost of the edge-of-stability diagnostics against a plain NAdamW step, and their amortized
overhead at the default schedule (criteo_embedded, JAX and PyTorch in one run).

The self-tuning NAdamW baseline submission on `criteo_embedded` (DLRM-small, vocab 8,192)
at `--batch_size` (default: the workload's, 1024), one fixed batch, two trainees per
framework, each with its own weights and optimizer state:

  plain        diagnostics off (CURVLR_DIAGNOSTICS unset at init): one `update_params`.
  diagnostic   CURVLR_DIAGNOSTICS='k=1,iterations=<--iterations>' at init: every update
               is a diagnostic step (sharpness and preconditioned sharpness by
               `iterations` Hessian-vector products each, the quadratic model: one GGN
               JVP and one forward pass after the update) and the held-out step of the
               previous one (two forward passes at the current and the kept params), so
               one update costs a plain step plus everything one diagnostic measurement
               costs (`curvlr.core.diagnostics`), host side (decode, logging) included.

Both are called `--warmup` times untimed (JAX: compilation; the first diagnostic update
has no held-out step and no preconditioner yet), then `--repeats` rounds time each once,
in an order rotated every round (`benchlib.time_variants`); medians are printed. From
them, with c = diagnostic - plain and t = plain:

  extra_over_plain_<fw>     c / t: one diagnostic measurement in plain steps.
  amortized_overhead_default_<fw>   c / (k t + c) at the default schedule (`Config()`:
                            every k = 100 steps): the share of training time spent on
                            diagnostics (the goal of issue 12: at most 0.02).
  k_for_2pct_<fw>           the fewest steps between measurements that keep it <= 0.02.

Prints `name: value` lines; the headline (JAX then PyTorch amortized overhead) comes last.
"""
import argparse
import math
import os
import sys

import benchlib

benchlib.use_fast_cpu_xla()

import numpy as np  # noqa: E402

sys.path.insert(0, '.')
from curvlr import workloads  # noqa: E402
from curvlr.core import batch_sizes  # noqa: E402
from curvlr.core import diagnostics as diag_core  # noqa: E402
from curvlr.runner import submission as submission_lib  # noqa: E402
from curvlr.workloads.criteo import synthetic  # noqa: E402

WORKLOAD = 'criteo_embedded'
STEP = 100  # first global step (past the warm-up's start: lr > 0)
DATA = synthetic.SyntheticConfig(seed=0, num_train_files=1, lines_per_train_file=20_000,
                                 num_validation_lines=1024, num_test_lines=1024)
TARGET = 0.02


def _first_batch(workload, batch_size):
  return next(workload._build_input_queue(  # pylint: disable=protected-access
      np.array([0, 0]), 'train', None, batch_size))


def _init(fn, switch):
  """fn() with CURVLR_DIAGNOSTICS = switch (None: unset) during the call."""
  previous = os.environ.pop(diag_core.ENV_VAR, None)
  if switch is not None:
    os.environ[diag_core.ENV_VAR] = switch
  try:
    return fn()
  finally:
    os.environ.pop(diag_core.ENV_VAR, None)
    if previous is not None:
      os.environ[diag_core.ENV_VAR] = previous


class _Logger:
  """In-memory metrics_logger: counts the diagnostic and held-out rows."""

  def __init__(self):
    self.rows = {'sharpness': 0, 'quad_heldout_change': 0}

  def append_scalar_metrics(self, metrics, global_step, *args, **kwargs):
    del global_step, args, kwargs
    for name in self.rows:
      self.rows[name] += name in metrics


def torch_variants(workload, batch, switch):
  """-> ({'plain', 'diagnostic'}: one update each, blocking), the diagnostic logger."""
  import torch
  sub = submission_lib.load('submissions/self_tuning/nadamw/pytorch_submission.py')
  sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
  logger = _Logger()

  def trainee(switch_text):
    model, _ = workload.init_model_fn(np.array([0, 0]))
    opt = _init(lambda: sub.init_optimizer_state(workload, model, None, None, None),
                switch_text)
    state = {'step': STEP}

    def update():
      workload.metrics_logger = logger if switch_text else None
      step = state['step']
      sub.update_params(workload, model, None, None, None, batch, None, opt, [], step,
                        np.array([0, step]))
      state['step'] += 1
      sync()
    return update

  return {'plain': trainee(None), 'diagnostic': trainee(switch)}, logger


def jax_variants(workload, batch, switch):
  """-> ({'plain', 'diagnostic'}: one update each, blocking), the diagnostic logger."""
  import jax
  sub = submission_lib.load('submissions/self_tuning/nadamw/jax_submission.py')
  logger = _Logger()

  def trainee(switch_text):
    params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
    opt = _init(lambda: sub.init_optimizer_state(workload, params, None, None, None),
                switch_text)
    state = {'opt': opt, 'params': params, 'step': STEP}

    def update():
      workload.metrics_logger = logger if switch_text else None
      step = state['step']
      state['opt'], state['params'], _ = sub.update_params(
          workload, state['params'], None, None, None, batch, None, state['opt'], [], step,
          jax.random.PRNGKey(step))
      state['step'] += 1
      jax.block_until_ready(state['params'])
    return update

  return {'plain': trainee(None), 'diagnostic': trainee(switch)}, logger


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--framework', choices=('both', 'pytorch', 'jax'), default='both')
  parser.add_argument('--batch_size', type=int, default=batch_sizes.get_batch_size(WORKLOAD))
  parser.add_argument('--iterations', type=int, default=diag_core.Config().iterations)
  parser.add_argument('--repeats', type=int, default=9)
  parser.add_argument('--warmup', type=int, default=2)
  args = parser.parse_args()
  switch = f'k=1,iterations={args.iterations}'
  k = diag_core.Config().schedule.k

  data_dir = synthetic.ensure_dataset('.cache/bench', DATA)
  print(f'workload: {WORKLOAD}')
  print(f'batch_size: {args.batch_size}')
  print(f'iterations: {args.iterations}')
  print(f'default_k: {k}')
  print(f'warmup: {args.warmup}')
  print(f'repeats: {args.repeats}')
  print(f'cpu_count: {os.cpu_count()}')
  print(f'load_avg_1min_start: {os.getloadavg()[0]:.2f}')
  frameworks = ('jax', 'pytorch') if args.framework == 'both' else (args.framework,)
  headlines = []
  for fw in frameworks:
    suffix = 'torch' if fw == 'pytorch' else 'jax'
    workload = workloads.get_workload(WORKLOAD, fw, str(data_dir))
    make = torch_variants if fw == 'pytorch' else jax_variants
    variants, logger = make(workload, _first_batch(workload, args.batch_size), switch)
    medians = benchlib.medians(benchlib.time_variants(variants, args.warmup, args.repeats)[0])
    plain, extra = medians['plain'], medians['diagnostic'] - medians['plain']
    calls = args.warmup + args.repeats
    print(f'diagnostic_rows_{suffix}: {logger.rows["sharpness"]}')  # one per call
    print(f'held_out_rows_{suffix}: {logger.rows["quad_heldout_change"]}')  # calls - 1
    assert logger.rows['sharpness'] == calls and logger.rows['quad_heldout_change'] == calls - 1
    print(f'plain_step_s_{suffix}: {plain:.4f}')
    print(f'diagnostic_step_s_{suffix}: {medians["diagnostic"]:.4f}')
    print(f'extra_over_plain_{suffix}: {extra / plain:.3f}')
    print(f'k_for_2pct_{suffix}: {max(1, math.ceil(extra * (1 - TARGET) / (TARGET * plain)))}')
    headlines.append(f'amortized_overhead_default_{suffix}: {extra / (k * plain + extra):.4f}')
  print(f'load_avg_1min_end: {os.getloadavg()[0]:.2f}')
  for line in headlines:
    print(line)


if __name__ == '__main__':
  main()
