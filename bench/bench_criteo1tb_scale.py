"""criteo1tb at full scale: step time, curvature-query cost, amortized overhead, memory, Schedule-Free.

AlgoPerf's criteo1tb model (DLRM-small, `curvlr/workloads/criteo/{torch,jax}_model.py`)
with criteo1tb's constants (step_hint 10,666) and, by default, its vocabulary (4,194,304
rows) and self-tuning batch (262,144), on in-memory synthetic batches drawn on the
device (no files, no download; `--num_batches` distinct batches used in turn):
  dense: log(relu(x) + 1) of heavy-tailed counts x = floor(expm1(clip(t, 0, log 1e9))),
    t = mu_j + sigma_j (0.6 a + 0.8 n) with a per-row activity a and noise n ~ N(0, 1),
    mu_j ~ U(0, 4), sigma_j ~ U(1, 2.5), and 0-35% zeros (missing) per column, as in
    `curvlr/workloads/criteo/synthetic.py`;
  categorical: 26 ids in [0, vocab): a Zipf rank (exponent U(1.05, 1.25) per column, by
    inverse CDF) over the column's raw Criteo cardinality, scattered by a multiplicative
    hash, mod the cardinality, mod vocab (the pipeline's hash % raw size, the model's
    % vocab);
  labels: Bernoulli(0.035), independent of the features (timing does not depend on them).
Everything runs through the project's real code: the workloads' model_fn / loss_fn, the
submissions' update_params (`submissions/self_tuning/*`, i.e. `curvlr/{pytorch,jax}/
stepsize.py` for the curvature ones) and the curvature oracles. Per framework:

1. Submissions (memory, warm-up, overhead). For nadamw, ggn_median_nadamw, cdat_nadamw,
   schedule_free_adamw, in this order, a submission gets its own copy of the initial
   weights (the jitted JAX steps donate their params on accelerators) and its optimizer
   state; warm-up segments run on throwaway deep copies of that state (they keep the
   JAX `update_fn`, so the compiled steps are reused; `warmup_s_*` is their wall-clock,
   compilation included): nadamw steps 0, 1; ggn_median steps W-2 .. W+1 (plain, plain,
   measurement, measurement); cdat steps 0 .. 4 (its first measurements and plain
   steps) and again step 0 (a measurement);
   schedule_free steps 0, 1. The timed steps then start from the untouched state at
   step 0, and the interval-median's at W, its first window (criteo1tb: W = 250,
   I = 625, N = 10): so they include CDAT's first measurements and one whole window.
   Memory is read around single warm-up steps that are not first calls:
   `peak_mem_<sub>_<step kind>_gib` is the peak during that step minus the device memory
   in use before the throwaway copy was made (that is: the copy's weights, optimizer
   state and the step's working memory; the shared batches, ~41 MiB each at full scale,
   are not in it). Order: nadamw plain (step 1), the curvature submissions' plain step
   (ggn_median at W - 1), ggn_median measurement (W + 1), cdat measurement (step 0).
   PyTorch on CUDA resets the peak before each probe (exact). JAX has no peak reset:
   `peak_bytes_in_use` is the process' running maximum, so a step whose peak does not
   exceed an earlier one reads 'n/a' with the bound. CPU: 'n/a' (neither framework
   reports device memory there).
   Then `--rounds` rounds time `--steps` consecutive updates per submission, in an order
   rotated every round (device-synchronised at the end of each block):
     step_s_<sub> = timed seconds / timed steps;
     overhead_cdat_nadamw = step_s_cdat / step_s_nadamw - 1 (Budget 2%: amortized by
       construction over its measurement gaps of ~50 steps);
     overhead_ggn_median_nadamw_window: the same over the timed steps (one whole window
       in rounds * steps steps, not one interval);
     overhead_ggn_median_nadamw: amortized over one interval I, extrapolated: the timed
       extra seconds (T_median - timed steps * step_s_nadamw) per measurement, times N
       measurements per interval, over I * step_s_nadamw. This assumes the interval's
       other I - rounds * steps plain steps cost a NAdamW step each; the timed plain steps
       after the window test that assumption (they are in T_median);
     schedule_free_over_nadamw_step = step_s_schedule_free / step_s_nadamw.
2. Curvature queries (bench/bench_curvature_cost.py's variants at this scale): each
   called `--warmup` times (first call, with compilation, reported as
   `first_call_s_*`), then `--repeats` rotated rounds, each call device-synchronised;
   medians, with min and max of the plain step. plain_step: the NAdamW submission's
   update_params; ggn_jvp: u^T G u on the full batch by one forward-mode JVP;
   two_batch_measurement: half-2 gradient + NAdamW direction + GGN-JVPs on both halves;
   hessian (PyTorch double backward, JAX forward-over-forward) on the full batch.

Cost at full scale, estimated before any accelerator run (none has been made yet): the
forward pass is 2.49 M multiply-adds per example (bottom MLP 0.17 M, interaction 0.09 M,
top MLP 2.22 M), 1.3 TFLOP per batch; a training step ~3x that, 3.9 TFLOP. NAdamW over the
537 M parameters (the 4.19 M x 128 table) moves ~20 float32 passes, ~45 GB, plus the
embedding gradient (~10 GB). On an H200 (67 TFLOP/s fp32, 4.8 TB/s): ~0.1 s per PyTorch
step (fp32 matmuls; TF32 is off by default there), ~0.03-0.05 s per JAX step (TF32 by
default on GPU). Defaults run ~410 submission steps (14 warm-up, 4 x 2 x 50 timed), ~50
query calls (~1-2 steps each) and ~10 JAX compilations per framework: ~1-1.5 min (PyTorch) + ~1-2 min (JAX, with
compilation), well inside 7 minutes; `wall_s_<fw>` reports the truth.

On an accelerator run one framework per process (`bench/device/run_criteo1tb_scale.sh`):
JAX preallocates 75% of the device memory. CPU smoke test (seconds):
  python bench/bench_criteo1tb_scale.py --vocab_size=1024 --batch_size=256 --steps=3 \\
      --rounds=1 --repeats=1 --warmup=1
Prints `name: value` lines; a summary comes last, the headline `overhead_cdat_nadamw_<fw>`
of the last framework last of all.
"""
import argparse
import copy
import dataclasses
import gc
import math
import os
import pathlib
import sys
import tempfile
import time

_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE.parent), str(_HERE)]

import benchlib  # noqa: E402

benchlib.use_fast_cpu_xla()

import numpy as np  # noqa: E402

import bench_curvature_cost  # noqa: E402
from curvlr.core import defaults  # noqa: E402
from curvlr.runner import submission as submission_lib  # noqa: E402
from curvlr.workloads.criteo import config as config_lib  # noqa: E402
from curvlr.workloads.criteo import data as data_lib  # noqa: E402

SUBMISSIONS = ('nadamw', 'ggn_median_nadamw', 'cdat_nadamw', 'schedule_free_adamw')
HESSIAN = {'pytorch': 'hessian_double_backward', 'jax': 'hessian_jvp'}
SUFFIX = {'pytorch': 'torch', 'jax': 'jax'}
GIB = 2.0**30

# Synthetic batches: constants of the distributions in the module docstring.
POSITIVE_RATE = 0.035
MAX_COUNT = 1e9
_HASH_MULTIPLIER = -1640531535  # 0x9E3779B1 as int32 (Knuth's multiplicative hash)


@dataclasses.dataclass(frozen=True)
class FeatureConstants:
  """Per-column constants of the synthetic features (numpy; float32 / int32)."""
  zipf: np.ndarray  # (26,) Zipf exponents, in (1.05, 1.25)
  cards: np.ndarray  # (26,) float32 raw Criteo cardinalities
  cards_int: np.ndarray  # (26,) int32, the same
  salts: np.ndarray  # (26,) int32 per-column hash offsets
  mu: np.ndarray  # (13,)
  sigma: np.ndarray  # (13,)
  missing: np.ndarray  # (13,) probability of a missing (zero) dense value


def feature_constants(seed: int = 0) -> FeatureConstants:
  rng = np.random.RandomState(seed)
  cards = np.asarray(data_lib.RAW_VOCAB_SIZES)
  return FeatureConstants(
      zipf=rng.uniform(1.05, 1.25, data_lib.NUM_SPARSE).astype(np.float32),
      cards=cards.astype(np.float32), cards_int=cards.astype(np.int32),
      salts=rng.randint(0, 2**30, data_lib.NUM_SPARSE).astype(np.int32),
      mu=rng.uniform(0.0, 4.0, data_lib.NUM_DENSE).astype(np.float32),
      sigma=rng.uniform(1.0, 2.5, data_lib.NUM_DENSE).astype(np.float32),
      missing=(rng.uniform(0.0, 0.5, data_lib.NUM_DENSE)**1.5).astype(np.float32))


def criteo_like(xp, asarray, to_int, to_float32, draws, vocab_size, c: FeatureConstants):
  """Synthetic criteo1tb examples in any numpy-like namespace `xp` (torch, jax.numpy).

  draws: (u_ids (B, 26), u_missing (B, 13), u_labels (B,) ~ U[0, 1); activity (B, 1),
  noise (B, 13) ~ N(0, 1)); `asarray` puts numpy constants next to them; `to_int` casts
  to a signed integer type of at least 32 bits (int32 arithmetic wraps, as the hash wants).
  -> (inputs (B, 39) float32: 13 dense then 26 ids in [0, vocab_size), targets (B,)).
  """
  u_ids, u_missing, u_labels, activity, noise = draws
  one_minus_s, card = asarray(1.0 - c.zipf), asarray(c.cards)
  x = ((card**one_minus_s - 1.0) * u_ids + 1.0)**(1.0 / one_minus_s)  # Zipf inverse CDF
  rank = to_int(xp.minimum(xp.floor(x), card) - 1.0)  # x >= 1: (..) <= 1, exponent < 0
  hashed = (rank * _HASH_MULTIPLIER + asarray(c.salts)) & 0x7FFFFFFF
  ids = (hashed % asarray(c.cards_int)) % vocab_size
  t = asarray(c.mu) + asarray(c.sigma) * (0.6 * activity + 0.8 * noise)
  counts = xp.floor(xp.expm1(xp.clip(t, 0.0, math.log(MAX_COUNT))))
  dense = xp.where(u_missing < asarray(c.missing), 0.0, xp.log1p(counts))
  return (xp.concatenate([dense, to_float32(ids)], axis=1),
          to_float32(u_labels < POSITIVE_RATE))


def torch_batches(num_batches, batch_size, vocab_size, seed=0):
  """Train batches on the torch device, as AlgoPerf's PyTorch pipeline sends them."""
  import torch
  from curvlr.pytorch import distributed
  device = distributed.device()
  gen = torch.Generator(device=device).manual_seed(seed)
  c = feature_constants(seed)
  out = []
  for _ in range(num_batches):
    draws = tuple(f(shape, generator=gen, device=device) for f, shape in (
        (torch.rand, (batch_size, data_lib.NUM_SPARSE)),
        (torch.rand, (batch_size, data_lib.NUM_DENSE)), (torch.rand, (batch_size,)),
        (torch.randn, (batch_size, 1)), (torch.randn, (batch_size, data_lib.NUM_DENSE))))
    inputs, targets = criteo_like(
        torch, lambda a: torch.as_tensor(a, device=device), lambda a: a.to(torch.int64),
        lambda a: a.to(torch.float32), draws, vocab_size, c)
    out.append({'inputs': inputs, 'targets': targets, 'weights': torch.ones_like(targets)})
  return out


def jax_batches(num_batches, batch_size, vocab_size, seed=0):
  """Train batches on the JAX devices, sharded over the batch axis."""
  import jax
  import jax.numpy as jnp
  from curvlr.jax import sharding
  c = feature_constants(seed)

  @jax.jit
  def draw(key):
    k = jax.random.split(key, 5)
    draws = (jax.random.uniform(k[0], (batch_size, data_lib.NUM_SPARSE)),
             jax.random.uniform(k[1], (batch_size, data_lib.NUM_DENSE)),
             jax.random.uniform(k[2], (batch_size,)),
             jax.random.normal(k[3], (batch_size, 1)),
             jax.random.normal(k[4], (batch_size, data_lib.NUM_DENSE)))
    inputs, targets = criteo_like(jnp, jnp.asarray, lambda a: a.astype(jnp.int32),
                                  lambda a: a.astype(jnp.float32), draws, vocab_size, c)
    return {'inputs': inputs, 'targets': targets}

  keys = jax.random.split(jax.random.PRNGKey(seed), num_batches)
  return [sharding.shard_batch(draw(k)) for k in keys]


def batch_lines(batches, suffix):
  """Value-range checks of the synthetic batches (host copies of the first one)."""
  x, y = (np.asarray(batches[0][k].cpu() if hasattr(batches[0][k], 'cpu') else batches[0][k])
          for k in ('inputs', 'targets'))
  ids = x[:, data_lib.NUM_DENSE:]
  return {f'batch_positive_rate_{suffix}': float(y.mean()),
          f'batch_dense_max_{suffix}': float(x[:, :data_lib.NUM_DENSE].max()),
          f'batch_dense_zero_fraction_{suffix}': float((x[:, :data_lib.NUM_DENSE] == 0).mean()),
          f'batch_id_max_{suffix}': int(ids.max()),
          f'batch_unique_id_fraction_{suffix}': float(np.unique(ids).size / ids.size)}


def make_workload(fw, vocab_size, data_dir):
  """criteo1tb's constants with `vocab_size` rows; `data_dir` is never read (all split
  sizes are nominal, batches come from memory)."""
  cfg = dataclasses.replace(config_lib.CRITEO1TB, vocab_size=vocab_size)
  if fw == 'pytorch':
    from curvlr.workloads.criteo.pytorch_workload import CriteoPytorchWorkload
    return CriteoPytorchWorkload(cfg, data_dir)
  from curvlr.workloads.criteo.jax_workload import CriteoJaxWorkload
  return CriteoJaxWorkload(cfg, data_dir)


def step_tflop(cfg, batch_size):
  """Estimated TFLOP of one training step (3x the forward pass's 2 x multiply-adds)."""
  dims = (cfg.num_dense_features,) + cfg.mlp_bottom_dims
  macs = sum(a * b for a, b in zip(dims, dims[1:]))
  fields = cfg.num_sparse_features + 1
  macs += fields * fields * cfg.embed_dim
  dims = (cfg.mlp_bottom_dims[-1] + fields * (fields + 1) // 2,) + cfg.mlp_top_dims
  macs += sum(a * b for a, b in zip(dims, dims[1:]))
  return 3 * 2 * macs * batch_size / 1e12


class TorchFramework:
  """What the bench needs from PyTorch: init, copies, rng, sync, device memory."""
  name = 'pytorch'

  def __init__(self, workload):
    import torch
    self.torch = torch
    self.cuda = torch.cuda.is_available()
    self.model, self.model_state = workload.init_model_fn(np.array([0, 0]))

  def fresh(self):
    return copy.deepcopy(self.model), self.model_state

  @staticmethod
  def rng(step):
    return np.array([0, step])

  def sync(self, params=None):
    del params
    if self.cuda:
      self.torch.cuda.synchronize()

  def memory_in_use(self):
    self.sync()
    return self.torch.cuda.memory_allocated() if self.cuda else None

  def peak_of(self, fn):
    """-> (peak bytes during fn(), None) or (None, None) without CUDA."""
    if not self.cuda:
      fn()
      return None, None
    self.sync()
    self.torch.cuda.reset_peak_memory_stats()
    fn()
    self.sync()
    return self.torch.cuda.max_memory_allocated(), None

  def release(self):
    gc.collect()
    if self.cuda:
      self.torch.cuda.empty_cache()

  def lines(self):
    t = self.torch
    return {'torch_version': t.__version__, 'torch_num_threads': t.get_num_threads(),
            'torch_device': t.cuda.get_device_name() if self.cuda else 'cpu',
            'torch_float32_matmul_precision': t.get_float32_matmul_precision()}


class JaxFramework:
  """What the bench needs from JAX: init, copies, rng, sync, device memory."""
  name = 'jax'

  def __init__(self, workload):
    import jax
    import jax.numpy as jnp
    self.jax, self.jnp = jax, jnp
    self.params, self.model_state = workload.init_model_fn(jax.random.PRNGKey(0))
    self.device = jax.devices()[0]

  def fresh(self):
    return self.jax.tree.map(self.jnp.copy, self.params), self.model_state

  def rng(self, step):
    return self.jax.random.PRNGKey(step)

  def sync(self, params=None):
    self.jax.block_until_ready(params if params is not None else self.params)

  def _stats(self):
    return self.device.memory_stats() or {}

  def memory_in_use(self):
    return self._stats().get('bytes_in_use')

  def peak_of(self, fn):
    """-> (peak, None) if fn() raised the process' peak, (None, bound) if not."""
    before = self._stats().get('peak_bytes_in_use')
    fn()
    peak = self._stats().get('peak_bytes_in_use')
    if peak is None:
      return None, None
    return (peak, None) if peak > before else (None, peak)

  def release(self):
    gc.collect()

  def lines(self):
    jax = self.jax
    return {'jax_version': jax.__version__, 'jax_backend': jax.default_backend(),
            'jax_device': self.device.device_kind, 'jax_device_count': jax.device_count(),
            'jax_default_matmul_precision': jax.config.jax_default_matmul_precision,
            'xla_flags': os.environ.get('XLA_FLAGS', '')}


def _plan(median):
  """submission -> (first timed global step, warm-up segments). Each segment runs on a
  fresh deep copy of the submission's initial state: a list of (global step, memory
  label or None); a labelled step is a memory probe, never a first call."""
  w = median.rule.warmup_steps
  return {'nadamw': (0, [[(0, None), (1, 'plain')]]),
          'ggn_median_nadamw': (w, [[(w - 2, None), (w - 1, 'plain'), (w, None),
                                     (w + 1, 'measurement')]]),
          'cdat_nadamw': (0, [[(k, None) for k in range(5)], [(0, 'measurement')]]),
          'schedule_free_adamw': (0, [[(0, None), (1, None)]])}


def _mem_value(peak, bound, base):
  if peak is not None and base is not None:
    return (peak - base) / GIB
  if bound is not None and base is not None:
    return f'n/a (<= {(bound - base) / GIB:.3f}: JAX peak not raised by this step)'
  return 'n/a (no device memory statistics)'


def _warm_up(fw, workload, batches, sub, state, segments, memory, name):
  """Runs the warm-up segments on throwaway copies of `state`, probing memory."""
  for segment in segments:
    base = fw.memory_in_use()  # before the copy: the probe counts the copy's own state
    throwaway = benchlib.Trainee(sub, *copy.deepcopy(state), segment[0][0])
    for k, (step, label) in enumerate(segment):
      throwaway.step = step
      run = lambda k=k: throwaway.run(workload, [batches[k % len(batches)]], fw.rng, [])
      if label is None:
        run()
        continue
      peak, bound = fw.peak_of(lambda: (run(), fw.sync(throwaway.params)))
      memory[f'{name}_{label}'] = _mem_value(peak, bound, base)
    fw.sync(throwaway.params)
    del throwaway
    fw.release()


def submissions_section(fw, workload, batches, rounds, steps, evals_before=1):
  """Memory probes, warm-up and rotated timed rounds of SUBMISSIONS. -> (lines, summary)."""
  sfx = SUFFIX[fw.name]
  median = defaults.median_policy(workload.step_hint)
  plan = _plan(median)
  lines = {'median_W': median.rule.warmup_steps, 'median_I': median.rule.interval,
           'median_N': median.rule.window}
  memory, trainees = {}, {}
  for name in SUBMISSIONS:
    first, segments = plan[name]
    sub = submission_lib.load(f'submissions/self_tuning/{name}/{fw.name}_submission.py')
    params, model_state = fw.fresh()
    # One optimizer state for the throwaways and the trainee: the copies keep the JAX
    # `update_fn`, a static jit argument, so the warm-up's compiled steps are reused.
    state = (params, model_state,
             sub.init_optimizer_state(workload, params, model_state, None, None))
    start = time.perf_counter()
    _warm_up(fw, workload, batches, sub, state, segments, memory, name)
    lines[f'warmup_s_{name}_{sfx}'] = time.perf_counter() - start
    trainees[name] = benchlib.Trainee(sub, *state, first)
  benchlib.time_rounds(trainees, workload, batches, fw.rng, fw.sync, rounds, steps,
                       evals_before)
  step_s = {name: t.seconds / t.steps for name, t in trainees.items()}
  for name, t in trainees.items():
    lines[f'step_s_{name}_{sfx}'] = step_s[name]
    lines[f'measurements_{name}_{sfx}'] = t.recorder.measurements
  for name in ('cdat_nadamw', 'ggn_median_nadamw'):
    lines[f'policy_overhead_{name}_{sfx}'] = trainees[name].recorder.overhead_fraction
  for key, value in memory.items():
    lines[f'peak_mem_{key}_gib_{sfx}'] = value
  t_nadamw = step_s['nadamw']
  med = trainees['ggn_median_nadamw']
  extra, m = med.seconds - med.steps * t_nadamw, med.recorder.measurements
  summary = {
      f'schedule_free_over_nadamw_step_{sfx}': step_s['schedule_free_adamw'] / t_nadamw,
      f'overhead_ggn_median_nadamw_window_{sfx}': step_s['ggn_median_nadamw'] / t_nadamw - 1,
      f'overhead_ggn_median_nadamw_{sfx}': (
          extra / m * median.rule.window / (median.rule.interval * t_nadamw) if m else
          'n/a (no timed measurement)'),
      f'overhead_cdat_nadamw_{sfx}': step_s['cdat_nadamw'] / t_nadamw - 1,
  }
  for kind in ('cdat_nadamw_measurement', 'ggn_median_nadamw_measurement',
               'ggn_median_nadamw_plain'):
    num, den = memory.get(kind), memory.get('nadamw_plain')
    summary[f'peak_mem_{kind}_over_nadamw_plain_{sfx}'] = (
        num / den if isinstance(num, float) and isinstance(den, float) else 'n/a')
  del trainees, med
  fw.release()
  return lines, summary


def cost_section(fw, workload, batch, warmup, repeats):
  """bench_curvature_cost's variants at this scale. -> (lines, summary)."""
  sfx = SUFFIX[fw.name]
  if fw.name == 'pytorch':
    variants, _ = bench_curvature_cost.torch_variants(workload, batch, fd_check=False)
  else:
    variants, _ = bench_curvature_cost.jax_variants(workload, batch, fd_check=False)
  lines = {}
  names = ('plain_step', 'ggn_jvp', 'two_batch_measurement', HESSIAN[fw.name])
  times, first = benchlib.time_variants({n: variants[n] for n in names}, warmup, repeats)
  del variants
  med = benchlib.medians(times)
  plain = med['plain_step']
  lines[f'plain_step_s_{sfx}'] = plain
  lines[f'plain_step_s_min_{sfx}'] = min(times['plain_step'])
  lines[f'plain_step_s_max_{sfx}'] = max(times['plain_step'])
  lines[f'achieved_tflop_per_s_plain_step_{sfx}'] = (
      step_tflop(workload.cfg, batch['targets'].shape[0]) / plain)
  for name in names[1:]:
    lines[f'{name}_s_{sfx}'] = med[name]
    lines[f'{name}_s_spread_{sfx}'] = (max(times[name]) - min(times[name])) / med[name]
  for name in names:
    lines[f'first_call_s_{name}_{sfx}'] = first.get(name, math.nan)
  summary = {f'plain_step_s_{sfx}': plain}
  summary.update({f'{n}_over_plain_step_{sfx}': med[n] / plain for n in names[1:]})
  fw.release()
  return lines, summary


def run_framework(fw_name, args, data_dir):
  """-> (lines, summary) for one framework."""
  start = time.perf_counter()
  workload = make_workload(fw_name, args.vocab_size, data_dir)
  fw = TorchFramework(workload) if fw_name == 'pytorch' else JaxFramework(workload)
  make = torch_batches if fw_name == 'pytorch' else jax_batches
  batches = make(args.num_batches, args.batch_size, args.vocab_size)
  fw.sync(batches[-1]['inputs'])
  lines = fw.lines()
  lines[f'setup_s_{SUFFIX[fw_name]}'] = time.perf_counter() - start
  lines.update(batch_lines(batches, SUFFIX[fw_name]))
  sub_lines, summary = submissions_section(fw, workload, batches, args.rounds, args.steps)
  lines.update(sub_lines)
  cost_lines, cost_summary = cost_section(fw, workload, batches[0], args.warmup, args.repeats)
  lines.update(cost_lines)
  lines[f'wall_s_{SUFFIX[fw_name]}'] = time.perf_counter() - start
  return lines, {**cost_summary, **summary}


def _print(name, value):
  print(f'{name}: {value:.4g}' if isinstance(value, float) else f'{name}: {value}', flush=True)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--framework', choices=('both', 'pytorch', 'torch', 'jax'),
                      default='both')
  parser.add_argument('--vocab_size', type=int, default=config_lib.CRITEO1TB.vocab_size)
  parser.add_argument('--batch_size', type=int, default=262_144)
  parser.add_argument('--steps', type=int, default=50,
                      help='timed steps per submission per round')
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=10, help='timed calls per query variant')
  parser.add_argument('--warmup', type=int, default=2, help='untimed calls per query variant')
  parser.add_argument('--num_batches', type=int, default=4)
  args = parser.parse_args(argv)
  for name in ('vocab_size', 'steps', 'rounds', 'repeats', 'warmup', 'num_batches'):
    if getattr(args, name) < 1:
      parser.error(f'--{name} must be >= 1, got {getattr(args, name)}.')
  if args.batch_size < 2 or args.batch_size % 2:
    parser.error(f'--batch_size must be even and >= 2 (two-batch halves), got {args.batch_size}.')
  return args


def main(argv=None):
  args = parse_args(argv)
  frameworks = {'both': ('jax', 'pytorch'), 'torch': ('pytorch',)}.get(
      args.framework, (args.framework,))
  print('workload: criteo1tb (synthetic in-memory batches)')
  for name in ('vocab_size', 'batch_size', 'steps', 'rounds', 'repeats', 'warmup',
               'num_batches'):
    _print(name, getattr(args, name))
  _print('step_tflop_estimate', step_tflop(config_lib.CRITEO1TB, args.batch_size))
  _print('cpu_count', os.cpu_count())
  _print('load_avg_1min_start', os.getloadavg()[0])
  summary = {}
  with tempfile.TemporaryDirectory() as data_dir:
    for fw_name in frameworks:
      lines, fw_summary = run_framework(fw_name, args, data_dir)
      for name, value in lines.items():
        _print(name, value)
      summary.update(fw_summary)
  _print('load_avg_1min_end', os.getloadavg()[0])
  for name in sorted(summary, key=lambda k: (k.startswith('overhead_cdat'), k.split('_')[-1])):
    _print(name, summary[name])
  return summary


if __name__ == '__main__':
  main()
