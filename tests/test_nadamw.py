"""NAdamW: JAX vs an independent reference, PyTorch vs JAX, and the shared schedule."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from curvlr.core import schedules
from curvlr.jax.nadamw import nadamw_direction
from curvlr.pytorch.nadamw import NAdamW

B1, B2, EPS, WD = 0.93, 0.995, 1e-8, 0.08


def reference_nadamw(p, grads, lrs):
  """AlgoPerf's update rule (ALGOPERF.md 5.3) in a few lines of numpy float64."""
  m, v = np.zeros_like(p), np.zeros_like(p)
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g * g
    m_hat = (B1 * m + (1 - B1) * g) / (1 - B1**t)
    v_hat = v / (1 - B2**t)
    p = p - lr * (m_hat / (np.sqrt(v_hat) + EPS) + WD * p)
  return p


def _problem(steps=5, n=7, seed=0):
  rng = np.random.RandomState(seed)
  return rng.randn(n), [rng.randn(n) for _ in range(steps)], [1e-2 * (k + 1) for k in range(steps)]


def test_jax_matches_reference():
  p0, grads, lrs = _problem()
  tx = nadamw_direction(B1, B2, EPS, WD)
  p, state = jnp.asarray(p0, jnp.float32), tx.init(jnp.asarray(p0, jnp.float32))
  for g, lr in zip(grads, lrs):
    u, state = tx.update(jnp.asarray(g, jnp.float32), state, p)
    p = p + lr * u
  np.testing.assert_allclose(np.asarray(p), reference_nadamw(p0, grads, lrs), atol=1e-6)


def test_torch_matches_reference_and_jax():
  p0, grads, lrs = _problem()
  param = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float32))
  opt = NAdamW([param], betas=(B1, B2), eps=EPS, weight_decay=WD)
  for g, lr in zip(grads, lrs):
    param.grad = torch.tensor(g, dtype=torch.float32)
    opt.step(lr)
  np.testing.assert_allclose(param.detach().numpy(), reference_nadamw(p0, grads, lrs), atol=1e-6)


@pytest.mark.parametrize('b1', [0.0, B1])
def test_optax_nadamw_differs_only_in_nesterov_bias_correction(b1):
  """optax bias-corrects the two Nesterov terms separately; equal when b1 = 0."""
  p0, grads, lrs = _problem(steps=3)
  ours_tx = nadamw_direction(b1, B2, EPS, WD)
  ref_tx = optax.nadamw(1.0, b1=b1, b2=B2, eps=EPS, weight_decay=WD)
  p, q = jnp.asarray(p0, jnp.float32), jnp.asarray(p0, jnp.float32)
  s_ours, s_ref = ours_tx.init(p), ref_tx.init(q)
  for g, lr in zip(grads, lrs):
    u, s_ours = ours_tx.update(jnp.asarray(g, jnp.float32), s_ours, p)
    p = p + lr * u
    upd, s_ref = ref_tx.update(jnp.asarray(g, jnp.float32), s_ref, q)
    q = q + lr * upd
  gap = float(jnp.abs(p - q).max())
  assert gap < 1e-6 if b1 == 0.0 else gap > 1e-4


def test_schedule_matches_optax_join_schedules():
  step_hint, peak = 100, 2.0
  warmup = int(0.02 * step_hint)
  ref = optax.join_schedules(
      [optax.linear_schedule(0.0, peak, warmup),
       optax.cosine_decay_schedule(peak, max(step_hint - warmup, 1))], [warmup])
  hp = schedules.NAdamWHParams(learning_rate=peak)
  for k in (0, 1, 2, 3, 50, 99, 100, 150):
    assert math.isclose(schedules.nadamw_baseline_lr(k, step_hint, hp), float(ref(k)),
                        rel_tol=1e-6, abs_tol=1e-7), k
  assert schedules.nadamw_baseline_lr(150, step_hint, hp) == 0.0  # JAX semantics
