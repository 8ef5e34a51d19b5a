"""Peak memory of a curvature measurement step over a plain NAdamW step (PyTorch and JAX, CPU).

Workloads: `dlrm` (AlgoPerf's criteo1tb DLRM-small, `curvlr/workloads/criteo/*_model.py`,
criteo1tb's constants with `--vocab_size` rows, synthetic batches of
`bench/bench_criteo1tb_scale.py`) at `--batch_size`, and the structural stand-ins of
`tests/structural_workloads.py` (ogbg graph batches, fastmri MAE, librispeech CTC) at
`--small_batch`. Step kinds, each through the submissions' own `update_params`
(`submissions/self_tuning/*/<fw>_submission.py`) at a global step where the policy
measures (checked: a measurement row is logged) or does not:
  plain        nadamw at step 1 (the denominator);
  cdat         cdat_nadamw at step 0 (its first measurement: gradient, u, GGN-JVP);
  two_batch    ggn_median_nadamw at step W (two half-batch gradients, look-ahead d,
               GGN-JVP on half 1).

JAX: exact and load-independent. The jitted programs that update_params calls are
intercepted with their real arguments (nothing runs), compiled, and read by XLA's
`memory_analysis()`: bytes = argument + output + temp - alias. A measurement step is
two programs (measure, then params + lr u): its peak is max(measure program, its
arguments and outputs + the apply program's output and temp), as both stay live.
PyTorch: peak resident set of a fresh subprocess per kind. glibc's mmap threshold is
fixed (MALLOC_MMAP_THRESHOLD_=65536) so that freed tensors go back to the kernel (with
its default dynamic threshold freed memory stays resident and hides later peaks); one
warm-up step of the same kind (the policy state restored after it, so the probe step
measures again) creates the lazy NAdamW moments and one-time buffers; then VmHWM is
reset (`/proc/self/clear_refs` 5) and the probe step runs. bytes = the tensors held
across steps (weights, NAdamW moments, batch: exact sizes) + VmHWM - VmRSS just before
the step (`step_only_mib_*`: its working memory, page-granular), as JAX's arguments +
outputs + temp.
Prints `name: value` lines (MiB, ratios); headline (DLRM ratios, JAX then PyTorch) last.
"""
import argparse
import copy
import json
import os
import pathlib
import subprocess
import sys
import tempfile

_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE.parent), str(_HERE)]

import benchlib  # noqa: E402

benchlib.use_fast_cpu_xla()

import numpy as np  # noqa: E402

MIB = 2.0**20
STRUCTURAL = ('ogbg', 'fastmri', 'librispeech_conformer')
SUBMISSION = {'plain': 'nadamw', 'cdat': 'cdat_nadamw', 'two_batch': 'ggn_median_nadamw'}
KINDS = tuple(SUBMISSION)


def _global_step(kind, workload):
  """-> (global step of the probe, whether the policy measures there)."""
  if kind == 'plain':
    return 1, False
  if kind == 'cdat':
    return 0, True
  from curvlr.core import defaults
  return defaults.median_policy(workload.step_hint).rule.warmup_steps, True


def _make(fw, name, vocab_size, batch_size, data_dir):
  """-> (workload, numpy-or-device batch) for `name` in framework `fw`."""
  if name == 'dlrm':
    import bench_criteo1tb_scale as scale
    workload = scale.make_workload(fw, vocab_size, data_dir)
    make = scale.torch_batches if fw == 'pytorch' else scale.jax_batches
    return workload, make(1, batch_size, vocab_size)[0]
  sys.path.insert(0, str(_HERE.parent / 'tests'))
  import structural_workloads as sw
  workload = sw.JaxWorkload(name) if fw == 'jax' else sw.TorchWorkload(name)
  batch = sw.batch(name, batch_size + (name == 'ogbg'), seed=0)  # ogbg: + padding graph
  return workload, (sw.torch_batch(batch) if fw == 'pytorch' else batch)


# ----------------------------------------------------------------------------- JAX


class _Intercepted(Exception):
  pass


def _nbytes(tree):
  import jax
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(tree) if hasattr(x, 'shape'))


def _program_bytes(jitted, args):
  """(total, argument, output, temp) bytes of `jitted` compiled for `args`."""
  m = jitted.lower(*args).compile().memory_analysis()
  total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
           - m.alias_size_in_bytes)
  return total, m.argument_size_in_bytes, m.output_size_in_bytes, m.temp_size_in_bytes


def jax_step_bytes(kind, workload, batch):
  """Peak bytes of one `kind` step of the JAX submission (module docstring)."""
  import jax
  import jax.numpy as jnp
  from curvlr.jax import stepsize
  from curvlr.runner import submission as submission_lib
  sub = submission_lib.load(f'submissions/self_tuning/{SUBMISSION[kind]}/jax_submission.py')
  params, model_state = workload.init_model_fn(jax.random.PRNGKey(0))
  opt_state = sub.init_optimizer_state(workload, params, model_state, None, None)
  step, measures = _global_step(kind, workload)
  owner, attr = ((sub, '_jitted_step') if kind == 'plain' else
                 (stepsize, '_jit_cdat' if kind == 'cdat' else '_jit_two_batch'))
  jitted, seen = getattr(owner, attr), {}

  def spy(*args):
    seen['bytes'] = _program_bytes(jitted, args)
    seen['out'] = jax.eval_shape(jitted, *args)
    raise _Intercepted

  setattr(owner, attr, spy)
  try:
    sub.update_params(workload, params, None, model_state, None, batch, None, opt_state, [],
                      step, jax.random.PRNGKey(step))
  except _Intercepted:
    pass
  finally:
    setattr(owner, attr, jitted)
  if 'bytes' not in seen:
    raise RuntimeError(f'bench_memory.py: {kind} step {step} did not call {attr}.')
  total, argument, output, _ = seen['bytes']
  if not measures:
    return total
  u = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), seen['out'][1])
  apply_total, apply_arg, _, _ = _program_bytes(stepsize._jit_apply, (params, u, jnp.float32(1)))
  return max(total, argument + output + apply_total - apply_arg)


# ----------------------------------------------------------------------------- PyTorch


def _status(key):
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(key + ':'):
        return int(line.split()[1]) * 1024
  raise KeyError(key)


def _tensor_bytes(tree):
  import torch
  if isinstance(tree, torch.Tensor):
    return tree.numel() * tree.element_size()
  if isinstance(tree, dict):
    return sum(_tensor_bytes(v) for v in tree.values())
  if isinstance(tree, (tuple, list)):
    return sum(_tensor_bytes(v) for v in tree)
  return 0


def torch_probe(kind, name, vocab_size, batch_size):
  """In a fresh process: bytes of one `kind` step (module docstring). -> dict."""
  import torch
  from curvlr.runner import submission as submission_lib
  torch.manual_seed(0)
  with tempfile.TemporaryDirectory() as data_dir:
    workload, batch = _make('pytorch', name, vocab_size, batch_size, data_dir)
    sub = submission_lib.load(f'submissions/self_tuning/{SUBMISSION[kind]}/pytorch_submission.py')
    model, model_state = workload.init_model_fn(np.array([0, 0]))
    opt = sub.init_optimizer_state(workload, model, model_state, None, None)
    step, measures = _global_step(kind, workload)
    recorder = benchlib.Recorder()
    workload.metrics_logger = recorder
    holder = opt.get('policy')
    initial = copy.deepcopy(holder.value) if holder is not None else None

    def run():
      sub.update_params(workload, model, None, model_state, None, batch, None, opt, [],
                        step, np.array([0, step]))

    run()  # warm-up: lazy moments, one-time buffers
    if holder is not None:
      holder.value = copy.deepcopy(initial)  # the probe measures again (or not) at `step`
    before = recorder.measurements
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')  # resets VmHWM to the current RSS
    resident = _status('VmRSS')
    run()
    peak = _status('VmHWM')
    state = [t for g in opt['optimizer'].state.values() for t in g.values()]
    held = _tensor_bytes(list(model.parameters()) + state + [batch])
  if (recorder.measurements > before) != measures:
    raise RuntimeError(f'bench_memory.py: {kind} step {step} measured={not measures}.')
  return {'bytes': held + peak - resident, 'step_bytes': peak - resident}


def torch_step_bytes(kind, name, vocab_size, batch_size):
  env = {**os.environ, 'MALLOC_MMAP_THRESHOLD_': '65536'}
  out = subprocess.run(
      [sys.executable, __file__, '--_probe', kind, '--_workload', name,
       f'--vocab_size={vocab_size}', f'--batch_size={batch_size}'],
      env=env, capture_output=True, text=True, check=False)
  if out.returncode:
    raise RuntimeError(out.stderr[-3000:])
  return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--framework', choices=('both', 'jax', 'pytorch'), default='both')
  parser.add_argument('--vocab_size', type=int, default=65_536)
  parser.add_argument('--batch_size', type=int, default=8192, help='DLRM batch')
  parser.add_argument('--small_batch', type=int, default=2048, help='structural stand-ins')
  parser.add_argument('--workloads', default='dlrm,' + ','.join(STRUCTURAL))
  parser.add_argument('--_probe', choices=KINDS, help=argparse.SUPPRESS)
  parser.add_argument('--_workload', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args._probe:
    print(json.dumps(torch_probe(args._probe, args._workload, args.vocab_size,
                                 args.batch_size)))
    return None
  frameworks = ('jax', 'pytorch') if args.framework == 'both' else (args.framework,)
  names = args.workloads.split(',')
  print(f'dlrm_vocab_size: {args.vocab_size}')
  print(f'dlrm_batch_size: {args.batch_size}')
  print(f'small_batch: {args.small_batch}')
  headline = {}
  for fw in frameworks:
    sfx = 'torch' if fw == 'pytorch' else 'jax'
    for name in names:
      size = args.batch_size if name == 'dlrm' else args.small_batch
      if fw == 'jax':
        with tempfile.TemporaryDirectory() as data_dir:
          workload, batch = _make('jax', name, args.vocab_size, size, data_dir)
          mem = {k: jax_step_bytes(k, workload, batch) for k in KINDS}
      else:
        probes = {k: torch_step_bytes(k, name, args.vocab_size, size) for k in KINDS}
        mem = {k: p['bytes'] for k, p in probes.items()}
        for k, p in probes.items():
          print(f'step_only_mib_{name}_{k}_{sfx}: {p["step_bytes"] / MIB:.2f}')
      for k in KINDS:
        print(f'peak_mib_{name}_{k}_{sfx}: {mem[k] / MIB:.2f}', flush=True)
      for k in KINDS[1:]:
        ratio = mem[k] / mem['plain']
        line = f'ratio_{name}_{k}_over_plain_{sfx}'
        if name == 'dlrm':
          headline[line] = ratio
        else:
          print(f'{line}: {ratio:.3f}', flush=True)
  for line, ratio in headline.items():
    print(f'{line}: {ratio:.3f}')
  return headline


if __name__ == '__main__':
  main()
