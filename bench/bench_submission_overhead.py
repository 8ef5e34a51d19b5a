"""Amortized overhead of our curvature submissions against NAdamW, measured beside the
policies' own accounting (criteo_embedded).

Workload `criteo_embedded` at its batch size (1024), PyTorch and JAX. Per framework,
four trainees start from identical initial weights and train on the same in-memory
batches (all pre-fetched, so data loading is not timed):

  nadamw             the NAdamW baseline: the denominator.
  nadamw_again       a second, identical NAdamW trainee: its ratio to the first is the
                     noise floor of every ratio here (`noise_<fw>`).
  policy_only        the curvature driver (CDAT's) with a schedule that never measures:
                     what the policy layer costs on a plain step (its bookkeeping, the
                     device syncs of timed steps, the logged rows).
  cdat_nadamw        CDAT at its defaults (`Budget(target=defaults.OVERHEAD_TARGET)`),
                     global steps from 0, so its warm-up measurements are included.
  ggn_median_nadamw  interval-median at its defaults; global steps from W, its first
                     window, so that the span starts a cycle of window + gap.

Each trainee first runs `--warmup` untimed steps (JAX: compilation of the plain and the
measurement steps) on a deep copy of its initial state. Then `--rounds` rounds time a
block of `--steps` consecutive updates per trainee, in an order rotated every round so
that load drift hits all alike; every trainee keeps its own global step across rounds.
The default span, 5 x 260 = 1,300 steps, covers at least one budget-spaced median cycle
(window start to window start, ~1,000-1,300 steps here) and ~10 CDAT gaps.

Lines per framework suffix <fw> (torch, jax) and curvature submission <sub>:
  step_s_<name>_<fw>          timed seconds / timed steps of all rounds
  measurements_<sub>_<fw>     measurement steps in the span
  measured_overhead_<sub>_<fw>  step_s_<sub> / step_s_nadamw - 1: the real figure
  policy_overhead_<sub>_<fw>  the policy's own accounting over the same steps
                              (`amortization.overhead_fraction` of its final state)
  noise_<fw>                  step_s_nadamw_again / step_s_nadamw - 1: an A/A ratio
  bookkeeping_overhead_<fw>   step_s_policy_only / step_s_nadamw - 1
  unexplained_<sub>_<fw>      measured - policy - bookkeeping: what neither accounts for
  cycle_steps_<sub>_<fw>      the schedule's current gap (steps between measurements,
                              or between window starts), from its timings
  cycle_overhead_<sub>_<fw>   the overhead of one such cycle, from the same timings:
                              n c / (G t + n c), n = 1 or N measurements per cycle,
                              c their mean extra seconds, t the plain step, G the gap.
                              With bookkeeping, the amortized overhead of a long run.
The overheads come last (median, then CDAT; JAX, then PyTorch), the headline
`measured_overhead_cdat_nadamw_torch` last of all. Goal (issue 16): <= 1% for both.

JAX on CPU: `--xla_cpu_experimental_ynn_fusion_type=` (YNNPACK fusions off, faster here:
see bench/bench_curvature_cost.py) is added to XLA_FLAGS before jax is imported unless
XLA_FLAGS already names it.
"""
import argparse
import copy
import dataclasses
import math
import os
import sys
import time
import types

import benchlib

benchlib.use_fast_cpu_xla()

import numpy as np  # noqa: E402

sys.path.insert(0, '.')
from curvlr import workloads  # noqa: E402
from curvlr.core import amortization, batch_sizes, defaults  # noqa: E402
from curvlr.core import policy as policy_lib  # noqa: E402
from curvlr.runner import submission as submission_lib  # noqa: E402
from curvlr.workloads.criteo import synthetic  # noqa: E402

WORKLOAD = 'criteo_embedded'
CURVATURE = ('cdat_nadamw', 'ggn_median_nadamw')
NEVER = 10 ** 9  # a schedule start no run reaches
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


def _stepsize(fw):
  if fw == 'pytorch':
    from curvlr.pytorch import stepsize
  else:
    from curvlr.jax import stepsize
  return stepsize


def _policy_only(fw):
  """A submission module: CDAT's driver with a schedule that never measures, -> (module, policy)."""
  stepsize, hparams = _stepsize(fw), defaults.HPARAMS
  policy = dataclasses.replace(defaults.CDAT_POLICY, schedule=dataclasses.replace(
      defaults.CDAT_POLICY.schedule, start=NEVER))
  if fw == 'pytorch':
    init = lambda workload, params, *_: stepsize.init_optimizer_state(workload, params, policy, hparams)
    update = lambda workload, current_param_container, model_state, batch, optimizer_state, \
        eval_results, global_step, rng, **_: stepsize.update_params(
            hparams, workload, current_param_container, model_state, batch, rng,
            optimizer_state, global_step, eval_results)
  else:
    init = lambda workload, *_: stepsize.init_optimizer_state(workload, policy, hparams)
    update = lambda workload, current_param_container, model_state, batch, optimizer_state, \
        eval_results, global_step, rng, **_: stepsize.update_params(
            policy, hparams, workload, current_param_container, model_state, batch, rng,
            optimizer_state, global_step, eval_results)
  return types.SimpleNamespace(init_optimizer_state=init, update_params=update), policy


def policy_state(fw, policy, opt_state) -> policy_lib.PolicyState:
  """The curvature policy's state inside a submission's optimizer state."""
  if fw == 'pytorch':
    return opt_state['policy'].value
  return policy_lib.decode(policy, bytes(opt_state[0]['policy']))


def cycle(policy, state):
  """-> (gap G in steps, overhead of one cycle of G steps), NaN before timings exist."""
  schedule, timing = policy.schedule, state.timing
  plain = amortization.plain_step_seconds(schedule, timing)
  if not plain or timing.timed_measure_count == 0:
    return math.nan, math.nan
  extra = timing.measure_seconds / timing.timed_measure_count - plain
  if isinstance(schedule, amortization.Windowed):
    gap, n = amortization.window_gap(schedule, timing), schedule.length
  else:
    gap, n = amortization.budget_gap(schedule, timing), 1
  return gap, n * extra / (gap * plain + n * extra)


def bench(fw, data_dir, rounds, steps, warmup):
  """-> ({name: value}, {overhead name: value}) for one framework."""
  workload, batches, init_fn, rng_fn, sync, lines = _setup(fw, data_dir, rounds * steps)
  median = defaults.median_policy(workload.step_hint)
  policies = {'cdat_nadamw': defaults.CDAT_POLICY, 'ggn_median_nadamw': median}
  starts = {'ggn_median_nadamw': median.rule.warmup_steps}
  lines.update(overhead_target=defaults.OVERHEAD_TARGET, median_start=median.rule.warmup_steps,
               median_min_interval=median.rule.interval, median_window=median.rule.window)
  subs = {name: submission_lib.load(f'submissions/self_tuning/{name}/{fw}_submission.py')
          for name in ('nadamw',) + CURVATURE}
  subs['nadamw_again'] = subs['nadamw']
  subs['policy_only'], policies['policy_only'] = _policy_only(fw)
  trainees = {}
  for name in ('nadamw', 'nadamw_again', 'policy_only') + CURVATURE:
    sub = subs[name]
    params, model_state = init_fn()
    opt_state = sub.init_optimizer_state(workload, params, model_state, None, None)
    start = starts.get(name, 0)
    trainees[name] = benchlib.Trainee(sub, params, model_state, opt_state, start)
    throwaway = benchlib.Trainee(sub, *copy.deepcopy((params, model_state, opt_state)), start)
    throwaway.run(workload, batches[:warmup], rng_fn, [])
    sync(throwaway.params)
  benchlib.time_rounds(trainees, workload, batches, rng_fn, sync, rounds, steps)
  step_s = {name: t.seconds / t.steps for name, t in trainees.items()}
  fx = 'torch' if fw == 'pytorch' else 'jax'
  for name, t in trainees.items():
    lines[f'step_s_{name}_{fx}'] = step_s[name]
  bookkeeping = step_s['policy_only'] / step_s['nadamw'] - 1.0
  overheads = {}
  for name in CURVATURE:
    state = policy_state(fw, policies[name], trainees[name].opt_state)
    accounted = amortization.overhead_fraction(state.timing)
    accounted = math.nan if accounted is None else accounted
    measured = step_s[name] / step_s['nadamw'] - 1.0
    gap, cycle_overhead = cycle(policies[name], state)
    lines[f'measurements_{name}_{fx}'] = trainees[name].recorder.measurements
    lines[f'cycle_steps_{name}_{fx}'] = gap
    lines[f'cycle_overhead_{name}_{fx}'] = cycle_overhead
    lines[f'policy_overhead_{name}_{fx}'] = accounted
    lines[f'unexplained_{name}_{fx}'] = measured - accounted - bookkeeping
    overheads[f'measured_overhead_{name}_{fx}'] = measured
  lines[f'noise_{fx}'] = step_s['nadamw_again'] / step_s['nadamw'] - 1.0
  lines[f'bookkeeping_overhead_{fx}'] = bookkeeping
  return lines, overheads


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--framework', choices=('both', 'pytorch', 'jax'), default='both')
  parser.add_argument('--quick', action='store_true',
                      help='2 rounds of 2 steps, 1 warm-up step (smoke test)')
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--steps', type=int, default=260,
                      help='timed steps per block (rounds * steps >= one median cycle)')
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
  for name in sorted(overheads, key=lambda k: ('_cdat_' in k, k)):
    print(f'{name}: {overheads[name]:.4f}')


if __name__ == '__main__':
  main()
