"""Amortized per-step overhead of our curvature submissions against NAdamW (criteo_embedded).

Workload `criteo_embedded` at its batch size (1024), PyTorch and JAX. Per framework,
three self-tuning submissions start from identical initial weights and train on the
same in-memory batches (all pre-fetched, so data loading is not timed):

  nadamw             the NAdamW baseline: the denominator.
  cdat_nadamw        CDAT, measuring when `Budget(target=0.02)` allows; global steps
                     from 0, so its first (warm-up) measurements are included.
  ggn_median_nadamw  interval-median; global steps from W, so that rounds * steps = I
                     steps cover exactly one interval (one window of N measurements).

Each submission first runs `--warmup` untimed steps (JAX: compilation of the plain and
the measurement steps) on a deep copy of its initial state (the copy keeps the JAX
optimizer's `update_fn`, a static jit argument, so the compiled steps are reused).
Then `--rounds` rounds time a block of `--steps` consecutive updates per submission,
in an order rotated every round so that load drift hits all alike; every submission
keeps its own global step across rounds. JAX blocks end with `block_until_ready` on
the params. The curvature policies time each update up to the start of the next one
unless an eval ran in between; every round therefore passes `eval_results` one entry
longer, so that the other submissions' blocks are not charged to a policy's clock.
`step_s_<sub>_<fw>` is the timed seconds over the timed steps of all rounds (a median
per round would miss the median submission's window, which falls into one round);
`measurements_<sub>_<fw>` counts the timed steps that measured (rows with
'overhead_fraction' in an in-memory `metrics_logger`); `policy_overhead_<sub>_<fw>`
is the policy's own estimate at its last measurement (timed measurements only);
`overhead_<sub>_<fw>` = step_s_<sub> / step_s_nadamw - 1. Goals: CDAT <= 5%, median <= 3%.

JAX on CPU: `--xla_cpu_experimental_ynn_fusion_type=` (YNNPACK fusions off, faster here:
see bench/bench_curvature_cost.py) is added to XLA_FLAGS before jax is imported unless
XLA_FLAGS already names it.
Prints `name: value` lines; the overheads come last (median, then CDAT; JAX, then
PyTorch), the headline `overhead_cdat_nadamw_torch` last of all.
"""
import argparse
import copy
import os
import sys
import time

import benchlib

benchlib.use_fast_cpu_xla()

import numpy as np  # noqa: E402

sys.path.insert(0, '.')
from curvlr import workloads  # noqa: E402
from curvlr.core import batch_sizes, defaults  # noqa: E402
from curvlr.runner import submission as submission_lib  # noqa: E402
from curvlr.workloads.criteo import synthetic  # noqa: E402

WORKLOAD = 'criteo_embedded'
SUBMISSIONS = ('nadamw', 'cdat_nadamw', 'ggn_median_nadamw')
DATA = synthetic.SyntheticConfig(seed=0, num_train_files=1, lines_per_train_file=20_000,
                                 num_validation_lines=1024, num_test_lines=1024)


def _setup(fw, data_dir, num_batches):
  """-> (workload, batches, init_fn, rng_fn, sync, version lines)."""
  workload = workloads.get_workload(WORKLOAD, fw, str(data_dir))
  queue = workload._build_input_queue(  # pylint: disable=protected-access
      np.array([0, 0]), 'train', None, batch_sizes.get_batch_size(WORKLOAD))
  batches = [next(queue) for _ in range(num_batches)]
  if fw == 'pytorch':
    import torch
    model, model_state = workload.init_model_fn(np.array([0, 0]))
    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    return (workload, batches, lambda: (copy.deepcopy(model), model_state),
            lambda step: np.array([0, step]), lambda params: sync(),
            {'torch_version': torch.__version__, 'torch_num_threads': torch.get_num_threads()})
  import jax
  import jax.numpy as jnp
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  # A copy per submission: on accelerators the jitted steps donate their params.
  return (workload, batches, lambda: (jax.tree.map(jnp.copy, params), model_state),
          jax.random.PRNGKey, jax.block_until_ready,
          {'jax_version': jax.__version__, 'jax_backend': jax.default_backend(),
           'xla_flags': os.environ.get('XLA_FLAGS', '')})


def bench(fw, data_dir, rounds, steps, warmup):
  """-> ({name: value}, {overhead name: value}) for one framework."""
  workload, batches, init_fn, rng_fn, sync, lines = _setup(fw, data_dir, rounds * steps)
  median = defaults.median_policy(workload.step_hint)
  starts = {'nadamw': 0, 'cdat_nadamw': 0, 'ggn_median_nadamw': median.rule.warmup_steps}
  lines.update(median_start=median.rule.warmup_steps, median_interval=median.rule.interval)
  trainees = {}
  for name in SUBMISSIONS:
    sub = submission_lib.load(f'submissions/self_tuning/{name}/{fw}_submission.py')
    params, model_state = init_fn()
    opt_state = sub.init_optimizer_state(workload, params, model_state, None, None)
    trainees[name] = benchlib.Trainee(sub, params, model_state, opt_state, starts[name])
    throwaway = benchlib.Trainee(sub, *copy.deepcopy((params, model_state, opt_state)), starts[name])
    throwaway.run(workload, batches[:warmup], rng_fn, [])
    sync(throwaway.params)
  benchlib.time_rounds(trainees, workload, batches, rng_fn, sync, rounds, steps)
  step_s = {name: t.seconds / t.steps for name, t in trainees.items()}
  suffix = 'torch' if fw == 'pytorch' else 'jax'
  for name, t in trainees.items():
    lines[f'step_s_{name}_{suffix}'] = step_s[name]
    lines[f'measurements_{name}_{suffix}'] = t.recorder.measurements
  for name in SUBMISSIONS[1:]:
    lines[f'policy_overhead_{name}_{suffix}'] = trainees[name].recorder.overhead_fraction
  overheads = {f'overhead_{name}_{suffix}': step_s[name] / step_s['nadamw'] - 1.0
               for name in SUBMISSIONS[1:]}
  return lines, overheads


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--framework', choices=('both', 'pytorch', 'jax'), default='both')
  parser.add_argument('--quick', action='store_true',
                      help='2 rounds of 2 steps, 1 warm-up step (smoke test)')
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--steps', type=int, default=100,
                      help='timed steps per block (rounds * steps = I = 500 on criteo_embedded)')
  parser.add_argument('--warmup', type=int, default=12,
                      help='untimed steps per submission; > N so that the median one '
                           'also runs a plain step')
  args = parser.parse_args()
  rounds, steps, warmup = (2, 2, 1) if args.quick else (args.rounds, args.steps, args.warmup)

  data_dir = synthetic.ensure_dataset('.cache/bench', DATA)
  print(f'workload: {WORKLOAD}')
  print(f'batch_size: {batch_sizes.get_batch_size(WORKLOAD)}')
  print(f'rounds: {rounds}')
  print(f'steps_per_round: {steps}')
  print(f'warmup_steps: {warmup}')
  print(f'cpu_count: {os.cpu_count()}')
  print(f'load_avg_1min_start: {os.getloadavg()[0]:.2f}')
  frameworks = ('jax', 'pytorch') if args.framework == 'both' else (args.framework,)
  overheads = {}
  for fw in frameworks:
    start = time.perf_counter()
    lines, fw_overheads = bench(fw, data_dir, rounds, steps, warmup)
    lines[f'wall_s_{fw}'] = round(time.perf_counter() - start)
    for name, value in lines.items():
      print(f'{name}: {value:.4f}' if isinstance(value, float) else f'{name}: {value}')
    overheads.update(fw_overheads)
  print(f'load_avg_1min_end: {os.getloadavg()[0]:.2f}')
  for name in sorted(overheads, key=lambda k: (k.startswith('overhead_cdat'), k)):
    print(f'{name}: {overheads[name]:.4f}')


if __name__ == '__main__':
  main()
