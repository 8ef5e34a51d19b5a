"""Cost of one curvature query against one plain NAdamW step (criteo_embedded, PyTorch and JAX).

Workload `criteo_embedded` (DLRM-small, vocab 8,192) at its batch size (1024), one
fixed batch, the NAdamW baseline's train-mode forward (dropout 0.1) for every query and
the NAdamW unit-lr direction u as the direction. Per framework, every variant is run
`--warmup` times untimed (JAX: compilation), then `--repeats` rounds time each variant
once, in an order rotated every round so that load drift hits all alike; medians
are printed. Variants (`<name>_s_<fw>`, `ratio_<name>_<fw>` = time / plain step):

  plain_step            one `update_params` of the NAdamW baseline submission
                        (forward + backward + optimizer): the denominator.
  forward, forward_backward   references: one train-mode forward; loss and gradient.
  ggn_jvp, ggn_fd       `ggn_quadratic_form` on the full batch (one forward-mode pass;
                        two forward passes).
  hessian_double_backward (torch), hessian_jvp (JAX forward-over-forward), hessian_fd
                        `hessian_quadratic_form` on the full batch.
  ggn_jvp_quarter_batch `ggn_jvp` on the first 256 examples (`sub_batch`).
  two_batch_ggn         the interval-median measurement's curvature: `ggn_jvp` on
                        half 1 (g1.d, d G1 d: debiased alpha) and on half 2 (g2.d,
                        d G2 d: biased alpha) for a given d.
  two_batch_measurement two_batch_ggn plus what d needs when the training step keeps
                        the full batch: gradient of half 2 (forward + backward) and
                        the NAdamW direction from it (torch: `NAdamW.direction()`,
                        which also advances the moments; JAX: the pure update, no
                        state kept). If the measurement step instead trains on half 2
                        (the thesis), that gradient and direction are the step itself.
  curvlinops_ggn_matvec, curvlinops_ggn_quad (torch) curvlinops 3.0.1 `G u` and
                        `u^T (G u)` on the same model and batch. AlgoPerf's DLRM reads
                        its embedding chunks from a plain list, which `functional_call`
                        does not swap: curvlinops then misses the embedding part of G.
                        The timed operator wraps the model so that it reads the chunks
                        from its attributes; `curvlinops_*_rel_err` compare both with
                        `ggn_jvp` (dropout off, as curvlinops re-runs the forward pass).
`ggn_jvp_fd_rel_diff_<fw>` is |fd - jvp| / jvp for the GGN form at the default FD step.

JAX on CPU: jax 0.10 routes dots into YNNPACK fusions by default. With them off
(`--xla_cpu_experimental_ynn_fusion_type=`, an empty list) the same jitted functions,
A/B-compiled in one process and timed interleaved (2 loaded cores), ran 2-14% faster
(forward_backward 0.77 vs 0.87 s, ggn_jvp 0.73 vs 0.83 s, hessian_jvp 1.21 vs 1.38 s;
forward alike), so the flag is added to XLA_FLAGS before jax is imported unless
XLA_FLAGS already names it.
Prints `name: value` lines; the headline (JAX then PyTorch GGN-JVP ratio) comes last.
"""
import argparse
from importlib import metadata
import os
import sys

import benchlib

benchlib.use_fast_cpu_xla()

import numpy as np  # noqa: E402

sys.path.insert(0, '.')
from curvlr import spec  # noqa: E402
from curvlr import workloads  # noqa: E402
from curvlr.core import batch_sizes, schedules  # noqa: E402
from curvlr.runner import submission as submission_lib  # noqa: E402
from curvlr.workloads.criteo import synthetic  # noqa: E402

WORKLOAD = 'criteo_embedded'
HPARAMS = schedules.NADAMW_BASELINE
STEP = 100  # global step passed to update_params (past warm-up start: lr > 0)
DATA = synthetic.SyntheticConfig(seed=0, num_train_files=1, lines_per_train_file=20_000,
                                 num_validation_lines=1024, num_test_lines=1024)
TRAIN = spec.ForwardPassMode.TRAIN


def _halves(batch):
  half = batch['targets'].shape[0] // 2
  return ({k: v[:half] for k, v in batch.items()}, {k: v[half:] for k, v in batch.items()})


def _rel_err(a, b):
  return abs(float(a) - float(b)) / abs(float(b))


def _first_batch(workload):
  return next(workload._build_input_queue(  # pylint: disable=protected-access
      np.array([0, 0]), 'train', None, batch_sizes.get_batch_size(WORKLOAD)))


def torch_variants(workload, batch, use_curvlinops=False, fd_check=True):
  """-> (variants, extra `name: value` lines) for PyTorch, on `workload` and one train `batch`.

  fd_check: also compare the GGN finite difference with the JVP (two more queries).
  """
  import torch
  from curvlr.pytorch import curvature as C
  from curvlr.pytorch import train_step

  batch_size = batch['targets'].shape[0]
  sub = submission_lib.load('submissions/self_tuning/nadamw/pytorch_submission.py')
  model, _ = workload.init_model_fn(np.array([0, 0]))
  opt = sub.init_optimizer_state(workload, model, None, None, None)
  rng = np.array([0, STEP])
  lt = workload.loss_type
  sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None

  train_step.loss_and_grad(workload, model, None, batch, rng, dropout_rate=HPARAMS.dropout_rate)
  u = opt['optimizer'].direction()

  def forward_fn(b, dropout_rate=HPARAMS.dropout_rate):
    return lambda: workload.model_fn(model, b, None, TRAIN, rng, update_batch_norm=False,
                                     dropout_rate=dropout_rate)[0]

  def ggn(b, d, method='jvp', dropout_rate=HPARAMS.dropout_rate):
    return C.ggn_quadratic_form(forward_fn(b, dropout_rate), model, d, b['targets'], lt,
                                mask=b['weights'], method=method)

  def hessian(b, method):
    return C.hessian_quadratic_form(forward_fn(b), model, u, b['targets'], lt,
                                    mask=b['weights'], method=method)

  def plain_step():
    sub.update_params(workload, model, None, None, None, batch, None, opt, [], STEP, rng)
    sync()

  def forward():
    with torch.no_grad():
      forward_fn(batch)()
    sync()

  def forward_backward():
    train_step.loss_and_grad(workload, model, None, batch, rng, dropout_rate=HPARAMS.dropout_rate)
    sync()

  half_1, half_2 = _halves(batch)
  quarter = C.sub_batch(batch, batch_size // 4)

  def two_batch_measurement():
    train_step.loss_and_grad(workload, model, None, half_2, rng, dropout_rate=HPARAMS.dropout_rate)
    d = opt['optimizer'].direction()
    return float(ggn(half_1, d).quad), float(ggn(half_2, d).quad)

  variants = {
      'plain_step': plain_step,
      'forward': forward,
      'forward_backward': forward_backward,
      'ggn_jvp': lambda: float(ggn(batch, u).quad),
      'ggn_fd': lambda: float(ggn(batch, u, 'fd').quad),
      'hessian_double_backward': lambda: float(hessian(batch, 'double_backward').quad),
      'hessian_fd': lambda: float(hessian(batch, 'fd').quad),
      'ggn_jvp_quarter_batch': lambda: float(ggn(quarter, u).quad),
      'two_batch_ggn': lambda: (float(ggn(half_1, u).quad), float(ggn(half_2, u).quad)),
      'two_batch_measurement': two_batch_measurement,
  }
  lines = {'torch_version': torch.__version__, 'torch_num_threads': torch.get_num_threads()}
  if fd_check:
    lines['ggn_jvp_fd_rel_diff_torch'] = _rel_err(ggn(batch, u, 'fd').quad, ggn(batch, u).quad)
  if use_curvlinops:
    variants.update(_curvlinops_variants(model, batch, u, float(ggn(batch, u, dropout_rate=0.0).quad),
                                         lines))
  return variants, lines


def _curvlinops_variants(model, batch, u, reference, lines):
  """curvlinops G u and u^T G u (embedding-aware wrapper); value checks go to `lines`."""
  import curvlinops
  import torch

  class ChunksFromAttributes(torch.nn.Module):
    """`functional_call` swaps attributes; the forward copies them into the chunk list."""

    def __init__(self):
      super().__init__()
      self.model = model

    def forward(self, inputs):
      held = model.embedding_table_chucks
      model.embedding_table_chucks = [
          getattr(model, f'embedding_chunk_{i}') for i in range(len(held))]
      try:
        return model(inputs)
      finally:
        model.embedding_table_chucks = held

  x, y = batch['inputs'], batch['targets'].reshape(-1, 1)
  loss = torch.nn.BCEWithLogitsLoss(reduction='sum')
  uf = torch.cat([t.flatten() for t in u])

  def operator(module):
    return curvlinops.GGNLinearOperator(module, loss, list(module.parameters()), [(x, y)],
                                        check_deterministic=False, num_data=x.shape[0])

  plain, wrapped = operator(model), operator(ChunksFromAttributes())
  lines['curvlinops_version'] = metadata.version('curvlinops-for-pytorch')
  try:
    lines['curvlinops_plain_model_rel_err'] = _rel_err(uf @ (plain @ uf), reference)
  except RuntimeError as e:  # torch 2.13: vmap cannot unbatch the chunks' missing tangents
    lines['curvlinops_plain_model_error'] = str(e).splitlines()[0]
  lines['curvlinops_wrapped_model_rel_err'] = _rel_err(uf @ (wrapped @ uf), reference)
  return {'curvlinops_ggn_matvec': lambda: (wrapped @ uf).sum().item(),
          'curvlinops_ggn_quad': lambda: (uf @ (wrapped @ uf)).item()}


def jax_variants(workload, batch, fd_check=True):
  """-> (variants, extra `name: value` lines) for JAX; every variant is one jitted call."""
  import jax
  import jax.numpy as jnp
  from curvlr.jax import curvature as C
  from curvlr.jax import train_step

  batch_size = batch['targets'].shape[0]
  sub = submission_lib.load('submissions/self_tuning/nadamw/jax_submission.py')
  params, _ = workload.init_model_fn(jax.random.PRNGKey(0))
  opt_state, update_fn = sub.init_optimizer_state(workload, params, None, None, None)
  rng = jax.random.PRNGKey(STEP)
  lt = workload.loss_type

  def grads(p, b):
    return train_step.loss_and_grad(workload, p, None, b, rng, HPARAMS.dropout_rate,
                                    HPARAMS.label_smoothing)[1]

  def ggn(p, d, b, method='jvp'):
    apply_fn = lambda q: workload.model_fn(q, b, None, TRAIN, rng, False, HPARAMS.dropout_rate)[0]
    return C.ggn_quadratic_form(apply_fn, p, d, b['targets'], lt, mask=b.get('weights'),
                                method=method).quad

  def hessian(p, d, b, method):
    apply_fn = lambda q: workload.model_fn(q, b, None, TRAIN, rng, False, HPARAMS.dropout_rate)[0]
    return C.hessian_quadratic_form(apply_fn, p, d, b['targets'], lt, mask=b.get('weights'),
                                    method=method).quad

  def two_batch_ggn(p, d, b):
    half_1, half_2 = _halves(b)
    return ggn(p, d, half_1), ggn(p, d, half_2)

  def two_batch_measurement(p, s, b):
    d, _ = update_fn(grads(p, _halves(b)[1]), s, p)
    return two_batch_ggn(p, d, b)

  u = jax.jit(lambda p, s, b: update_fn(grads(p, b), s, p)[0])(params, opt_state, batch)
  # The plain step's own copies: on accelerators the NAdamW step donates its params and state.
  state = {'opt': (jax.tree.map(jnp.copy, opt_state), update_fn),
           'params': jax.tree.map(jnp.copy, params)}

  def plain_step():
    state['opt'], state['params'], _ = sub.update_params(
        workload, state['params'], None, None, None, batch, None, state['opt'], [], STEP, rng)
    jax.block_until_ready(state['params'])

  def timed(fn, *args):
    fn = jax.jit(fn)
    return lambda: jax.block_until_ready(fn(*args))

  forward = lambda p, b: workload.model_fn(p, b, None, TRAIN, rng, False, HPARAMS.dropout_rate)[0]
  variants = {
      'plain_step': plain_step,
      'forward': timed(forward, params, batch),
      'forward_backward': timed(grads, params, batch),
      'ggn_jvp': timed(ggn, params, u, batch),
      'ggn_fd': timed(lambda p, d, b: ggn(p, d, b, 'fd'), params, u, batch),
      'hessian_jvp': timed(lambda p, d, b: hessian(p, d, b, 'jvp'), params, u, batch),
      'hessian_fd': timed(lambda p, d, b: hessian(p, d, b, 'fd'), params, u, batch),
      'ggn_jvp_quarter_batch': timed(
          lambda p, d, b: ggn(p, d, C.sub_batch(b, batch_size // 4, jax.device_count())),
          params, u, batch),
      'two_batch_ggn': timed(two_batch_ggn, params, u, batch),
      'two_batch_measurement': timed(two_batch_measurement, params, opt_state, batch),
  }
  lines = {'jax_version': jax.__version__, 'jax_backend': jax.default_backend(),
           'xla_flags': os.environ.get('XLA_FLAGS', '')}
  if fd_check:
    ggn_jit = jax.jit(ggn, static_argnums=3)
    lines['ggn_jvp_fd_rel_diff_jax'] = _rel_err(ggn_jit(params, u, batch, 'fd'),
                                                ggn_jit(params, u, batch, 'jvp'))
  return variants, lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--framework', choices=('both', 'pytorch', 'jax'), default='both')
  parser.add_argument('--quick', action='store_true', help='1 warm-up, 1 repeat (smoke test)')
  parser.add_argument('--repeats', type=int, default=9)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--no_curvlinops', action='store_true')
  args = parser.parse_args()
  warmup, repeats = (1, 1) if args.quick else (args.warmup, args.repeats)

  data_dir = synthetic.ensure_dataset('.cache/bench', DATA)
  print(f'workload: {WORKLOAD}')
  print(f'batch_size: {batch_sizes.get_batch_size(WORKLOAD)}')
  print(f'warmup: {warmup}')
  print(f'repeats: {repeats}')
  print(f'cpu_count: {os.cpu_count()}')
  print(f'load_avg_1min_start: {os.getloadavg()[0]:.2f}')
  frameworks = ('jax', 'pytorch') if args.framework == 'both' else (args.framework,)
  headlines = []
  for fw in frameworks:
    suffix = 'torch' if fw == 'pytorch' else 'jax'
    workload = workloads.get_workload(WORKLOAD, fw, str(data_dir))
    if fw == 'pytorch':
      variants, lines = torch_variants(workload, _first_batch(workload), not args.no_curvlinops)
    else:
      variants, lines = jax_variants(workload, _first_batch(workload))
    for name, value in lines.items():
      print(f'{name}: {value:.3g}' if isinstance(value, float) else f'{name}: {value}')
    medians = benchlib.medians(benchlib.time_variants(variants, warmup, repeats)[0])
    for name, seconds in medians.items():
      print(f'{name}_s_{suffix}: {seconds:.4f}')
    for name, seconds in medians.items():
      if name != 'plain_step':
        print(f'ratio_{name}_{suffix}: {seconds / medians["plain_step"]:.3f}')
    headlines.append(f'ggn_jvp_full_batch_over_plain_step_{suffix}: '
                     f'{medians["ggn_jvp"] / medians["plain_step"]:.3f}')
  print(f'load_avg_1min_end: {os.getloadavg()[0]:.2f}')
  for line in headlines:
    print(line)


if __name__ == '__main__':
  main()
