"""Schedule-Free AdamW submissions: numpy reference, PyTorch-JAX parity, eval swap, runners.

Both submissions are driven through their AlgoPerf API on a small tanh MLP with
float32 weights, against a float64 numpy reference of the update, and with each
other; tolerances are absolute on parameters of size ~1 (measured errors: README).
"""
import csv
import dataclasses
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from curvlr.core import schedule_free
from curvlr.jax import schedule_free as sf
from curvlr.runner import __main__ as runner
from curvlr.runner import backends
from test_algoperf_compat import _fake_criteo_batch
from submissions.self_tuning.schedule_free_adamw import jax_submission, pytorch_submission

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUBMISSIONS = {'pytorch': pytorch_submission, 'jax': jax_submission}
BASELINE = schedule_free.SCHEDULE_FREE_BASELINE
# Large steps, strong decay and a fast second moment make any deviation visible.
AMPLIFIED = dataclasses.replace(BASELINE, learning_rate=0.05, one_minus_beta1=0.2, beta2=0.9,
                                weight_decay=0.5)
STEPS, EVAL_AFTER = 20, (3, 9, 10, 19)  # evals after these updates (0-based)
REFERENCE_TOL = 2e-6  # float32 submissions vs the float64 reference
PARITY_TOL = 2e-6  # PyTorch vs JAX


def _weights(seed=0, d_in=5, d_hidden=8, d_out=3):
  rng = np.random.RandomState(seed)
  return {'w1': rng.randn(d_in, d_hidden) / 2, 'b1': rng.randn(d_hidden) / 10,
          'w2': rng.randn(d_hidden, d_out) / 2, 'b2': rng.randn(d_out) / 10}


def _batches(n=STEPS, seed=1, size=16):
  rng = np.random.RandomState(seed)
  return [{'inputs': rng.randn(size, 5), 'targets': rng.randn(size, 3)} for _ in range(n)]


def _mlp_grad(w, batch):
  """Gradient of sum((mlp(inputs) - targets)**2) / batch size, by hand."""
  h = np.tanh(batch['inputs'] @ w['w1'] + w['b1'])
  r = 2 * (h @ w['w2'] + w['b2'] - batch['targets']) / len(batch['targets'])
  dh = (r @ w['w2'].T) * (1 - h * h)
  return {'w1': batch['inputs'].T @ dh, 'b1': dh.sum(0), 'w2': h.T @ r, 'b2': r.sum(0)}


def reference(hp, w0, batches, warmup):
  """Schedule-free AdamW (Defazio et al. 2024, decay at y, r = 0) in numpy float64.

  -> [(y, x)] after each update; y is where the next gradient is taken.
  """
  b1, b2 = 1 - hp.one_minus_beta1, hp.beta2
  z, x = dict(w0), dict(w0)
  v = {n: np.zeros_like(w) for n, w in w0.items()}
  lr_max, weight_sum, out = 0.0, 0.0, []
  for k, batch in enumerate(batches):
    y = {n: (1 - b1) * z[n] + b1 * x[n] for n in z}
    g = _mlp_grad(y, batch)
    lr = hp.learning_rate * (min((k + 1) / warmup, 1.0) if warmup else 1.0)
    lr_max = max(lr_max, lr)
    weight_sum += lr_max**hp.weight_lr_power
    c = lr_max**hp.weight_lr_power / weight_sum
    for n in z:
      v[n] = b2 * v[n] + (1 - b2) * g[n]**2
      v_hat = v[n] / (1 - b2**(k + 1))
      z[n] = z[n] - lr * (g[n] / (np.sqrt(v_hat) + hp.eps) + hp.weight_decay * y[n])
      x[n] = (1 - c) * x[n] + c * z[n]
    out.append(({n: (1 - b1) * z[n] + b1 * x[n] for n in z}, dict(x)))
  return out


class _TorchMLP(torch.nn.Module):

  def __init__(self, w):
    super().__init__()
    for n, value in w.items():
      setattr(self, n, torch.nn.Parameter(torch.tensor(value, dtype=torch.float32)))

  def forward(self, inputs):
    return torch.tanh(inputs @ self.w1 + self.b1) @ self.w2 + self.b2


class _Workload:
  """What the submissions use of a workload: step_hint, model_fn, loss_fn, metrics_logger."""
  metrics_logger = None

  def __init__(self, framework, step_hint):
    self.framework, self.step_hint = framework, step_hint

  def model_fn(self, params, batch, model_state, mode, rng, update_batch_norm,
               dropout_rate=0.0):
    del mode, rng, update_batch_norm, dropout_rate
    if self.framework == 'pytorch':
      return params(batch['inputs']), model_state
    h = jnp.tanh(batch['inputs'] @ params['w1'] + params['b1'])
    return h @ params['w2'] + params['b2'], model_state

  def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
    del mask_batch, label_smoothing
    return {'summed': ((logits_batch - label_batch)**2).sum(),
            'n_valid_examples': len(label_batch)}


def _to_numpy(framework, params):
  if framework == 'pytorch':
    return {n: p.detach().numpy().astype(np.float64) for n, p in params.named_parameters()}
  return {n: np.asarray(p, np.float64) for n, p in params.items()}


def _batch(framework, batch):
  if framework == 'pytorch':
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in batch.items()}
  return {k: jnp.asarray(v, jnp.float32) for k, v in batch.items()}


class _Run:
  """One submission on the MLP problem, through init/update_params/prepare_for_eval."""

  def __init__(self, framework, step_hint, w0=None):
    self.framework, self.sub = framework, SUBMISSIONS[framework]
    self.workload = _Workload(framework, step_hint)
    w0 = _weights() if w0 is None else w0
    self.params = (_TorchMLP(w0) if framework == 'pytorch' else
                   {n: jnp.asarray(w, jnp.float32) for n, w in w0.items()})
    self.opt_state = self.sub.init_optimizer_state(self.workload, self.params, None, None,
                                                   None)

  def update(self, step, batch):
    self.opt_state, self.params, _ = self.sub.update_params(
        self.workload, self.params, None, None, None, _batch(self.framework, batch), None,
        self.opt_state, [], step, jax.random.PRNGKey(step))
    return _to_numpy(self.framework, self.params)

  def prepare_for_eval(self, step):
    self.opt_state, self.params, _ = self.sub.prepare_for_eval(
        self.workload, self.params, None, None, None, None, self.opt_state, [], step, None)
    return _to_numpy(self.framework, self.params)

  def trajectory(self, batches, eval_after=EVAL_AFTER, start=0):
    """-> ({step: y after it}, {step: x after it, for steps in eval_after})."""
    ys, xs = {}, {}
    for step, batch in enumerate(batches, start=start):
      ys[step] = self.update(step, batch)
      if step in eval_after:
        xs[step] = self.prepare_for_eval(step + 1)
    return ys, xs


def _max_err(a, b):
  return max(float(np.max(np.abs(a[n] - b[n]))) for n in a)


def test_hyperparameters_are_v05s():
  assert (BASELINE.learning_rate, BASELINE.beta1, BASELINE.weight_lr_power) == (0.0025, 0.9, 2)
  assert round(BASELINE.beta2, 5) == 0.99552 and round(BASELINE.weight_decay, 4) == 0.0812
  assert BASELINE.warmup_steps(10_666) == 159  # criteo1tb, as v0.5
  assert BASELINE.warmup_steps(1_500) == 22 and BASELINE.warmup_steps(40) == 0
  assert BASELINE.learning_rate_at(0, 1_500) == pytest.approx(0.0025 / 22)
  assert BASELINE.learning_rate_at(21, 1_500) == BASELINE.learning_rate_at(10**6, 1_500) == 0.0025
  assert BASELINE.learning_rate_at(0, 40) == 0.0025


@pytest.mark.parametrize('step_hint', [400, 40])  # 6 warmup steps; none
@pytest.mark.parametrize('hp', [BASELINE, AMPLIFIED], ids=['baseline', 'amplified'])
@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_submission_matches_numpy_reference(monkeypatch, framework, hp, step_hint):
  """y after every update and x at every eval, with evals interleaved as the runner does."""
  monkeypatch.setattr(SUBMISSIONS[framework], 'HPARAMS', hp)
  batches = _batches()
  ref = reference(hp, _weights(), batches, warmup=int(0.02 * step_hint * 0.75))
  ys, xs = _Run(framework, step_hint).trajectory(batches)
  assert max(_max_err(ys[k], ref[k][0]) for k in ys) < REFERENCE_TOL
  assert max(_max_err(xs[k], ref[k][1]) for k in xs) < REFERENCE_TOL
  assert _max_err(ys[STEPS - 1], _weights()) > 1e3 * REFERENCE_TOL  # the weights moved


@pytest.mark.parametrize('hp', [BASELINE, AMPLIFIED], ids=['baseline', 'amplified'])
def test_pytorch_and_jax_agree(monkeypatch, hp):
  for sub in SUBMISSIONS.values():
    monkeypatch.setattr(sub, 'HPARAMS', hp)
  batches = _batches()
  ys_t, xs_t = _Run('pytorch', 400).trajectory(batches)
  ys_j, xs_j = _Run('jax', 400).trajectory(batches)
  assert max(_max_err(ys_t[k], ys_j[k]) for k in ys_t) < PARITY_TOL
  assert max(_max_err(xs_t[k], xs_j[k]) for k in xs_t) < PARITY_TOL


_OPTAX_SF = pytest.mark.skipif(
    not hasattr(optax.contrib, 'schedule_free'),
    reason='optax < 0.2.4 (AlgoPerf pins 0.2.2) has no contrib.schedule_free*')


def _optax_submission_optimizer(step_hint):
  """The submission's optimizer built from optax >= 0.2.4's own parts."""
  hp, warmup = BASELINE, BASELINE.warmup_steps(step_hint)
  schedule = optax.schedules.warmup_constant_schedule(0.0, hp.learning_rate, warmup)
  base = optax.chain(
      optax.scale_by_rms(decay=hp.beta2, eps=hp.eps, eps_in_sqrt=False, bias_correction=True),
      optax.add_decayed_weights(hp.weight_decay),
      optax.scale_by_learning_rate(lambda count: schedule(count + 1)))
  return optax.contrib.schedule_free(base, learning_rate=schedule, b1=hp.beta1,
                                     weight_lr_power=hp.weight_lr_power)


def _sf_trajectory(tx, eval_params, steps=8):
  """[(updates, z, x)] after each of `steps` jitted updates on random gradients."""
  params = {n: jnp.asarray(w, jnp.float32) for n, w in _weights().items()}
  state, update, out = tx.init(params), jax.jit(tx.update), []
  for k in range(steps):
    grads = {n: jax.random.normal(jax.random.PRNGKey(k), p.shape) for n, p in params.items()}
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append((updates, state.z, jax.jit(eval_params)(state, params)))
  return out


@_OPTAX_SF
def test_jax_schedule_free_is_optax_contrib_bitwise():
  """curvlr.jax.schedule_free's parts equal optax's schedule_free, scale_by_rms(bias_correction)
  and warmup_constant_schedule bit for bit, x from schedule_free_eval_params included."""
  ours = _sf_trajectory(jax_submission.schedule_free_adamw(400), sf.schedule_free_eval_params)
  theirs = _sf_trajectory(_optax_submission_optimizer(400),
                          optax.contrib.schedule_free_eval_params)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_array_equal(a, b)


def test_jax_schedule_free_eval_params_formula():
  """x = (y - (1 - b1) z) / b1, with b1 from the state (the float32 0.9, as optax)."""
  state = jax_submission.schedule_free_adamw(400).init(
      {n: jnp.asarray(w, jnp.float32) for n, w in _weights().items()})
  state = state._replace(z={n: jnp.asarray(w, jnp.float32) for n, w in _weights(seed=1).items()})
  y = {n: jnp.asarray(w, jnp.float32) for n, w in _weights(seed=2).items()}
  x = jax.jit(sf.schedule_free_eval_params)(state, y)
  b1 = float(state.b1)
  assert b1 == float(np.float32(BASELINE.beta1)) and state.b1.dtype == jnp.float32
  for n in y:
    expected = (np.float64(y[n]) - (1 - b1) * np.float64(state.z[n])) / b1
    np.testing.assert_allclose(np.float64(x[n]), expected, rtol=0, atol=1e-6)
    assert x[n].dtype == jnp.float32


@_OPTAX_SF
@pytest.mark.parametrize('step_hint', [400, 40])
def test_jax_optimizer_is_optax_schedule_free_adamw_up_to_warmup(step_hint):
  """Same chain as optax's wrapper; only its warmup z-steps (lr k/w, not (k+1)/w) differ."""
  hp = BASELINE
  ours = jax_submission.schedule_free_adamw(step_hint)
  optax_own = optax.contrib.schedule_free_adamw(
      hp.learning_rate, hp.warmup_steps(step_hint) or None, hp.beta1, hp.beta2, hp.eps,
      hp.weight_decay, hp.weight_lr_power)
  params = {n: jnp.asarray(w, jnp.float32) for n, w in _weights().items()}
  states = [tx.init(params) for tx in (ours, optax_own)]
  grads = {n: jnp.ones_like(p) for n, p in params.items()}
  (u_ours, _), (u_optax, _) = [jax.jit(tx.update)(grads, s, params)
                               for tx, s in zip((ours, optax_own), states)]
  same = all(bool(jnp.array_equal(u_ours[n], u_optax[n])) for n in params)
  assert same == (hp.warmup_steps(step_hint) == 0)


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_eval_returns_x_and_training_resumes_at_y(monkeypatch, framework):
  monkeypatch.setattr(SUBMISSIONS[framework], 'HPARAMS', AMPLIFIED)
  batches = _batches(n=8)
  ys_plain, _ = _Run(framework, 400).trajectory(batches, eval_after=())
  run = _Run(framework, 400)
  ys, xs = run.trajectory(batches[:4], eval_after=(3,))
  assert _max_err(xs[3], ys[3]) > 1e-3  # the eval point x is not y
  assert _max_err(run.prepare_for_eval(4), xs[3]) == 0  # a second call keeps x
  ys_after, _ = run.trajectory(batches[4:], eval_after=(), start=4)
  # PyTorch moves y -> x -> y in place (float32 rounding); JAX resumes from the parked y.
  tol = 1e-6 if framework == 'pytorch' else 0
  assert max(_max_err(ys_after[k], ys_plain[k]) for k in ys_after) <= tol


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_checkpoint_after_eval_resumes_at_y(tmp_path, monkeypatch, framework):
  """The runner saves (x, optimizer state) after an eval; a restored run continues exactly."""
  monkeypatch.setattr(SUBMISSIONS[framework], 'HPARAMS', AMPLIFIED)
  batches = _batches(n=8)
  whole = _Run(framework, 400)
  ys_whole, _ = whole.trajectory(batches, eval_after=(3,))
  first = _Run(framework, 400)
  first.trajectory(batches[:4], eval_after=(3,))
  backend = backends.for_framework(framework)
  backend.save_checkpoint(tmp_path / 'ckpt', first.params, None, first.opt_state, {})
  resumed = _Run(framework, 400, w0={n: np.zeros_like(w) for n, w in _weights().items()})
  resumed.params, _, resumed.opt_state, _ = backend.load_checkpoint(
      tmp_path / 'ckpt', resumed.params, None, resumed.opt_state)
  ys_resumed, _ = resumed.trajectory(batches[4:], eval_after=(), start=4)
  assert max(_max_err(ys_resumed[k], ys_whole[k]) for k in ys_resumed) == 0


def _evals(trial_dir):
  with open(trial_dir / 'eval_measurements.csv', newline='') as f:
    return [(int(r['global_step']), float(r['train/loss']), float(r['validation/loss']))
            for r in csv.DictReader(f)]


def _runner_args(framework, data_dir, tmp_path, name, steps=3):
  return [f'--framework={framework}', '--workload=criteo_embedded',
          f'--submission_path=submissions/self_tuning/schedule_free_adamw/'
          f'{framework}_submission.py', f'--data_dir={data_dir}',
          f'--experiment_dir={tmp_path}', f'--experiment_name={name}',
          f'--max_global_steps={steps}', '--rng_seed=0', '--progress_every_sec=0',
          '--save_checkpoints=false']


@pytest.mark.slow
@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_runner_one_and_two_devices(tmp_path, monkeypatch, tiny_criteo_dir, framework):
  """Our runner, in process on one device, and on 2 gloo processes / 2 XLA CPU devices."""
  monkeypatch.chdir(ROOT)
  (result,) = runner.run(_runner_args(framework, tiny_criteo_dir, tmp_path, 'one'))
  one = _evals(result.trial_dir)
  assert [s for s, *_ in one] == [1, 3] and all(math.isfinite(v) for _, *r in one for v in r)
  if framework == 'jax':
    cmd = [sys.executable, '-m', 'curvlr.runner']
    env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  else:
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           '--nproc_per_node=2', '-m', 'curvlr.runner']
    env = {'OMP_NUM_THREADS': '1'}
  proc = subprocess.run(cmd + _runner_args(framework, tiny_criteo_dir, tmp_path, 'two'),
                        cwd=ROOT, env=dict(os.environ, **env), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  two = _evals(tmp_path / 'two' / f'criteo_embedded_{framework}' / 'trial_1')
  assert [s for s, *_ in two] == [s for s, *_ in one]
  for (_, t1, v1), (_, t2, v2) in zip(one, two):  # no dropout: same trajectory
    assert t1 == pytest.approx(t2, rel=1e-5) and v1 == pytest.approx(v2, rel=1e-5)


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_on_algoperf_criteo1tb_test(framework):
  """Steps, evals and steps again on AlgoPerf's own criteo1tb_test workload (if installed)."""
  module = pytest.importorskip(f'algoperf.workloads.criteo1tb.criteo1tb_{framework}.workload')
  from algoperf import random_utils as prng
  workload = module.Criteo1TbDlrmSmallTestWorkload()
  sub = SUBMISSIONS[framework]
  rng = prng.PRNGKey(0)
  params, model_state = workload.init_model_fn(rng)
  opt_state = sub.init_optimizer_state(workload, params, model_state, None, rng)
  for step in range(3):
    opt_state, params, model_state = sub.update_params(
        workload, params, workload.model_params_types, model_state, None,
        _fake_criteo_batch(framework), workload.loss_type, opt_state, [], step, rng)
    if step == 1:
      opt_state, params, model_state = sub.prepare_for_eval(
          workload, params, workload.model_params_types, model_state, None,
          workload.loss_type, opt_state, [], step + 1, rng)
  assert sub.get_batch_size('criteo1tb') == 262_144
