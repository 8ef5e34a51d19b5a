"""Helpers shared by the bench scripts: the CPU XLA flag, interleaved timing, submission trainees.

Not a benchmark itself (no `bench_` prefix, so `make bench` does not run it).
"""
import importlib.metadata
import os
import re
import statistics
import time

YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
YNN_FLAG_SINCE = (0, 8, 1)  # first jaxlib whose XLA knows YNN_FLAG


def _jaxlib_version() -> tuple:
  """(major, minor, patch) of the installed jaxlib, without importing jax; () if absent."""
  try:
    return tuple(int(p) for p in re.findall(r'\d+', importlib.metadata.version('jaxlib'))[:3])
  except importlib.metadata.PackageNotFoundError:
    return ()


def use_fast_cpu_xla() -> None:
  """Turns jax's YNNPACK CPU fusions off (`YNN_FLAG=`, an empty list; 2-14% faster here,
  see bench/bench_curvature_cost.py) before jax is imported, unless XLA_FLAGS already
  names the flag or JAX_PLATFORMS names accelerators only (the flag is a CPU one).
  Version switch: XLA aborts on an unknown flag, and jaxlib < 0.8.1 (AlgoPerf pins 0.7.0)
  has no YNNPACK fusions to turn off, so there the flag is left out."""
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if YNN_FLAG in os.environ.get('XLA_FLAGS', '') or (platforms and 'cpu' not in platforms):
    return
  if _jaxlib_version() < YNN_FLAG_SINCE:
    return
  os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {YNN_FLAG}='.strip()


def time_variants(variants, warmup, repeats):
  """-> ({name: [seconds per timed call]}, {name: seconds of the first warm-up call}).

  Each call of variants[name]() must block until its work is done. Every variant is
  called `warmup` times untimed (the first call, timed apart, carries compilation),
  then `repeats` rounds call each once, in an order rotated every round so that load
  drift hits all alike.
  """
  first = {}
  for name, fn in variants.items():
    for i in range(warmup):
      start = time.perf_counter()
      fn()
      if i == 0:
        first[name] = time.perf_counter() - start
  names, times = list(variants), {name: [] for name in variants}
  for r in range(repeats):
    for name in rotated(names, r):
      start = time.perf_counter()
      variants[name]()
      times[name].append(time.perf_counter() - start)
  return times, first


def medians(times):
  return {name: statistics.median(t) for name, t in times.items()}


def rotated(names, r):
  return names[r % len(names):] + names[:r % len(names)]


class Recorder:
  """In-memory `metrics_logger`: counts the rows logged by measurement steps."""

  def __init__(self):
    self.measurements = 0
    self.overhead_fraction = float('nan')

  def append_scalar_metrics(self, metrics, global_step, *args, **kwargs):
    del global_step, args, kwargs
    if 'overhead_fraction' in metrics:
      self.measurements += 1
      self.overhead_fraction = metrics['overhead_fraction']


class Trainee:
  """One submission's training state, global step and timed seconds."""

  def __init__(self, sub, params, model_state, opt_state, step):
    self.sub, self.params, self.model_state, self.opt_state = sub, params, model_state, opt_state
    self.step, self.seconds, self.steps, self.recorder = step, 0.0, 0, Recorder()

  def run(self, workload, batches, rng_fn, eval_results):
    """Runs one update per batch from the current global step."""
    workload.metrics_logger = self.recorder
    for batch in batches:
      self.opt_state, self.params, self.model_state = self.sub.update_params(
          workload=workload, current_param_container=self.params, current_params_types=None,
          model_state=self.model_state, hyperparameters=None, batch=batch, loss_type=None,
          optimizer_state=self.opt_state, eval_results=eval_results,
          global_step=self.step, rng=rng_fn(self.step))
      self.step += 1


def time_rounds(trainees, workload, batches, rng_fn, sync, rounds, steps, evals_before=0):
  """`rounds` rounds of `steps` consecutive updates per trainee, in an order rotated every
  round; adds the synchronised seconds and the steps to every trainee.

  Round r uses batches[(r * steps + i) % len(batches)] and passes `eval_results` of length
  evals_before + r, as AlgoPerf's (step, result) pairs with step -1 (never the current
  step, so no update counts as 'right after an eval'): the curvature policies time each
  update up to the start of the next one unless an eval ran in between, so that the other
  trainees' blocks are not charged to a policy's clock.
  """
  names = list(trainees)
  for r in range(rounds):
    block = [batches[(r * steps + i) % len(batches)] for i in range(steps)]
    for name in rotated(names, r):
      trainee = trainees[name]
      start = time.perf_counter()
      trainee.run(workload, block, rng_fn, [(-1, {})] * (evals_before + r))
      sync(trainee.params)
      trainee.seconds += time.perf_counter() - start
      trainee.steps += len(block)
