"""Edge-of-stability diagnostics: core logic, PyTorch exactness on known spectra and a dense
Hessian, the preconditioner convention."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from curvlr import spec
from curvlr.core import amortization, diagnostics, metric_names
from curvlr.pytorch import diagnostics as tdiag
from curvlr.pytorch.nadamw import NAdamW

LT = spec.LossType
SPECTRUM = np.array([5.0, 3.0, 1.0, 0.5, 0.25, 0.1])


# ----------------------------------------------------------------------------- core


def test_parse_off_on_and_keys():
  assert diagnostics.parse(None) is None and diagnostics.parse(' off ') is None
  assert diagnostics.parse('on') == diagnostics.Config()
  c = diagnostics.parse('budget=0.02,iterations=4,quantities=sharpness+quadratic,start=3')
  assert c.schedule == amortization.Budget(target=0.02, start=3)
  assert c.iterations == 4 and c.quantities == ('sharpness', 'quadratic')
  assert diagnostics.parse('k=7').schedule == amortization.EveryK(k=7)
  assert diagnostics.from_env({'CURVLR_DIAGNOSTICS': 'k=9'}).schedule.k == 9
  assert diagnostics.from_env({}) is None


@pytest.mark.parametrize('text', ['yes', 'k=1,k=2', 'k=2,budget=0.1', 'kk=2', 'k=0',
                                  'iterations=x', 'quantities=sharpness+foo', 'budget=2'])
def test_parse_malformed_is_a_clear_error(text):
  with pytest.raises(ValueError, match='CURVLR_DIAGNOSTICS'):
    diagnostics.parse(text)


def test_thresholds_and_prediction():
  assert diagnostics.sharpness_threshold(0.1) == pytest.approx(20.0)
  assert diagnostics.preconditioned_threshold(0.1, 0.9) == pytest.approx(380.0)
  assert diagnostics.sharpness_threshold(0.0) == math.inf
  assert diagnostics.predicted_change(0.5, -2.0, 4.0) == pytest.approx(-1.0 + 0.5)


def test_power_iteration_on_known_spectrum():
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  a = q @ np.diag(SPECTRUM) @ q.T
  e = diagnostics.power_iteration(lambda v: a @ v, rng.normal(size=6), 60)
  assert e.value == pytest.approx(5.0, rel=1e-10)
  assert e.residual < 1e-8
  warm = diagnostics.power_iteration(lambda v: a @ v, e.vector, 1)  # warm start: converged
  assert warm.value == pytest.approx(5.0, rel=1e-10) and warm.residual < 1e-8
  cold = diagnostics.power_iteration(lambda v: a @ v, rng.normal(size=6), 1)
  assert cold.residual > 1e-2


def test_metrics_names_and_non_finite_dropped():
  c = diagnostics.Config()
  m = diagnostics.Measurement(10.0, 1e-3, 300.0, 0.5, -2.0, 4.0, -0.4)
  out, state = diagnostics.metrics(c, diagnostics.State(), m, 0.1, 0.9)
  assert set(out) == set(metric_names.DIAGNOSTICS) - {'quad_heldout_change'}  # own row
  assert out['lr_sharpness'] == pytest.approx(1.0)
  assert out['lr_precond_sharpness'] == pytest.approx(30.0)
  assert out['sharpness_converged'] == 1.0 and out['precond_converged'] == 0.0
  assert out['quad_predicted_change'] == pytest.approx(-0.2 + 0.02)
  assert state.rejected_count == 0
  bad = m._replace(sharpness=math.nan)
  out, state = diagnostics.metrics(c, state, bad, 0.1, 0.9)
  assert 'sharpness' not in out and 'lr_sharpness' not in out
  assert out['diag_rejected'] == 1.0 and state.rejected_count == 1
  out, _ = diagnostics.metrics(c, state, m, 0.0, 0.9)  # lr = 0: no thresholds
  assert 'sharpness_threshold' not in out and 'precond_threshold' not in out


# ----------------------------------------------------------------------------- PyTorch


def quadratic_problem():
  """Linear model, MSE loss: H = 2/N X^T X = diag(SPECTRUM) (N = d examples)."""
  d = len(SPECTRUM)
  x = torch.diag(torch.tensor(np.sqrt(SPECTRUM * d / 2.0)))
  y = torch.randn(d, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
  model = nn.Linear(d, 1, bias=False).double()
  return model, x, y


def test_torch_sharpness_exact_on_quadratic():
  model, x, y = quadratic_problem()
  start = torch.ones(len(SPECTRUM), dtype=torch.float64)
  (e,) = tdiag.top_eigens(lambda: model(x), model, y, LT.MEAN_SQUARED_ERROR, [start],
                          [None], 200)
  assert float(e.value) == pytest.approx(5.0, rel=1e-10)
  assert float(e.residual) < 1e-6


def test_torch_preconditioned_sharpness_exact_on_quadratic():
  model, x, y = quadratic_problem()
  p = torch.tensor([10.0, 1.0, 0.5, 2.0, 0.01, 1.0], dtype=torch.float64)
  expected = float(np.max(SPECTRUM / p.numpy()))  # P^-1 H diagonal: 25
  start = torch.ones(len(SPECTRUM), dtype=torch.float64)
  (e,) = tdiag.top_eigens(lambda: model(x), model, y, LT.MEAN_SQUARED_ERROR, [start],
                          [p.rsqrt()], 300)
  assert float(e.value) == pytest.approx(expected, rel=1e-8)


def tiny_network(seed=0):
  torch.manual_seed(seed)
  model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
  g = torch.Generator().manual_seed(seed + 1)
  x = torch.randn(16, 3, dtype=torch.float64, generator=g)
  y = torch.randint(0, 3, (16,), generator=g)
  return model, x, y


def dense_hessian(model, x, y):
  params = list(model.parameters())
  shapes = [p.shape for p in params]
  sizes = [p.numel() for p in params]

  def loss(flat):
    ws = [t.view(s) for t, s in zip(torch.split(flat, sizes), shapes)]
    h = torch.tanh(x @ ws[0].T + ws[1])
    return nn.functional.cross_entropy(h @ ws[2].T + ws[3], y)

  flat = torch.cat([p.detach().reshape(-1) for p in params])
  return torch.autograd.functional.hessian(loss, flat)


def test_torch_sharpness_matches_dense_eigendecomposition():
  model, x, y = tiny_network()
  eig = torch.linalg.eigvalsh(dense_hessian(model, x, y))
  top = eig[eig.abs().argmax()]
  start = torch.randn(len(eig), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
  (e,) = tdiag.top_eigens(lambda: model(x), model, y, LT.SOFTMAX_CROSS_ENTROPY, [start],
                          [None], 500)
  assert float(e.value) == pytest.approx(float(top), rel=1e-6)


def test_torch_preconditioner_is_nadamw_denominator():
  model, x, y = tiny_network()
  opt = NAdamW(model.parameters(), betas=(0.9, 0.99), eps=1e-3, weight_decay=0.0)
  assert tdiag.preconditioner_scale(opt) is None
  nn.functional.cross_entropy(model(x), y).backward()
  u = torch.cat([t.reshape(-1) for t in opt.direction()])
  g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
  s = tdiag.preconditioner_scale(opt)
  # First step: m = 0.1 g, m_hat = (0.9 m + 0.1 g) / 0.1 = 1.9 g, u = -m_hat / P = -1.9 g s^2.
  torch.testing.assert_close(u, -(1.9 * g * s**2).to(u.dtype))


# ----------------------------------------------------------------------------- JAX, parity


def _jax_mean_loss(loss_type, forward, targets):
  from curvlr.jax import curvature as jcurv  # pylint: disable=import-outside-toplevel

  def loss(params):
    summed, n = jcurv.loss_sums(loss_type, forward(params), targets)
    return summed / n

  return loss


def test_jax_sharpness_and_preconditioned_exact_on_quadratic():
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from curvlr.jax import diagnostics as jdiag  # pylint: disable=import-outside-toplevel
  _, x, y = quadratic_problem()
  x, y = jnp.asarray(x.numpy(), jnp.float32), jnp.asarray(y.numpy(), jnp.float32)
  loss = _jax_mean_loss(LT.MEAN_SQUARED_ERROR, lambda p: x @ p['w'], y)
  params = {'w': jnp.zeros((len(SPECTRUM), 1))}
  p = jnp.asarray([10.0, 1.0, 0.5, 2.0, 0.01, 1.0])
  start = jnp.ones(len(SPECTRUM))
  e, pe = jdiag.top_eigens(loss, params, [start, start], [None, 1 / jnp.sqrt(p)], 300)
  assert float(e.value) == pytest.approx(5.0, rel=1e-5)
  assert float(pe.value) == pytest.approx(float(np.max(SPECTRUM / np.asarray(p))), rel=1e-5)


def test_jax_matches_pytorch_on_the_same_weights_and_batch():
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from curvlr.jax import diagnostics as jdiag  # pylint: disable=import-outside-toplevel
  model, x, y = tiny_network()
  model = model.float()
  w = [p.detach().numpy() for p in model.parameters()]
  jparams = {'a': jnp.asarray(w[0].T), 'b': jnp.asarray(w[1]), 'c': jnp.asarray(w[2].T),
             'd': jnp.asarray(w[3])}
  jx = jnp.asarray(x.float().numpy())
  forward = lambda p: jnp.tanh(jx @ p['a'] + p['b']) @ p['c'] + p['d']
  loss = _jax_mean_loss(LT.SOFTMAX_CROSS_ENTROPY, forward, jnp.asarray(y.numpy()))
  # The same start in both (flat orders differ: torch (out, in) rows, jax sorted keys of
  # (in, out)), a diagonal S that differs per entry, 5 iterations: not converged, so equal
  # values need equal arithmetic, not just the same limit.
  start = torch.from_numpy(diagnostics.initial_vector(31))
  scale = torch.linspace(0.5, 2.0, 31, dtype=torch.float64)

  def to_jax(v):
    parts = torch.split(v, [12, 4, 12, 3])
    a, b, c, d = parts[0].view(4, 3).T, parts[1], parts[2].view(3, 4).T, parts[3]
    return jnp.asarray(torch.cat([a.reshape(-1), b, c.reshape(-1), d]).numpy(), jnp.float32)

  t_plain, t_pre = tdiag.top_eigens(lambda: model(x.float()), model, y,
                                    LT.SOFTMAX_CROSS_ENTROPY, [start, start], [None, scale], 5)
  j_plain, j_pre = jdiag.top_eigens(loss, jparams, [to_jax(start)] * 2,
                                    [None, to_jax(scale)], 5)
  for t, j in ((t_plain, j_plain), (t_pre, j_pre)):
    assert float(j.value) == pytest.approx(float(t.value), rel=1e-4)
    assert float(j.residual) == pytest.approx(float(t.residual), rel=1e-3)
    np.testing.assert_allclose(np.asarray(j.vector), to_jax(t.vector), atol=1e-4)
  assert float(t_plain.residual) > 1e-3  # not converged: the comparison is per iteration


# ----------------------------------------------------------------------------- held-out change


def test_record_moves_the_held_out_seconds_to_the_measurement():
  c = diagnostics.Config(schedule=amortization.EveryK(k=3))
  s = diagnostics.pending(diagnostics.State(), 0)
  s = diagnostics.record(c, s, 0, True, 5.0)
  assert s.held_out_step == 0 and s.held_out_timed and diagnostics.held_out_due(s, 1)
  assert not diagnostics.held_out_due(s, 2)
  s = diagnostics.record(c, s, 1, False, 1.5, held_out_seconds=0.5)
  assert s.held_out_step == -1 and not diagnostics.held_out_due(s, 2)
  assert s.timing.plain_seconds == pytest.approx(1.0)  # 1.5 s less the held-out passes
  assert s.timing.measure_seconds == pytest.approx(5.5)  # the measurement pays them
  assert diagnostics.restore(diagnostics.to_dict(s)) == s
  # An untimed measurement (warm-up): the held-out seconds leave the plain step only.
  c = diagnostics.Config(schedule=amortization.EveryK(k=3, untimed_warmup=1))
  s = diagnostics.record(c, diagnostics.pending(diagnostics.State(), 0), 0, True, 5.0)
  assert s.held_out_step == 0 and not s.held_out_timed
  s = diagnostics.record(c, s, 1, False, 1.5, held_out_seconds=0.5)
  assert s.timing.measure_seconds == 0.0 and s.timing.timed_measure_count == 0
  out, s = diagnostics.held_out_metrics(s, math.nan)
  assert out == {} and s.rejected_count == 1
  assert diagnostics.held_out_metrics(s, -0.25)[0] == {'quad_heldout_change': -0.25}


def _held_out_problem():
  """Linear model, MSE: the change between w0 and w1 = w0 + delta on batch (x, y) is
  exactly (2 r0 . X delta + |X delta|^2) / N with r0 = X w0 - y (float64)."""
  rng = np.random.default_rng(4)
  x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 1))
  w0, delta = rng.normal(size=(5, 1)), 0.1 * rng.normal(size=(5, 1))
  r0, xd = x @ w0 - y, x @ delta
  return x, y, w0, w0 + delta, float((2 * r0.T @ xd + xd.T @ xd).item() / len(x))


def test_torch_held_out_change_exact_on_quadratic_and_params_restored():
  x, y, w0, w1, expected = _held_out_problem()
  model = nn.Linear(5, 1, bias=False).double()
  with torch.no_grad():
    model.weight.copy_(torch.from_numpy(w1.T))
  holder = tdiag.Diagnostics(diagnostics.Config())
  holder.held_out = torch.from_numpy(w0.T.copy()).reshape(-1)
  before = model.weight.detach().clone()
  change = tdiag._held_out_change(holder, lambda: model(torch.from_numpy(x)), model,  # pylint: disable=protected-access
                                  torch.from_numpy(y), LT.MEAN_SQUARED_ERROR, None, 0.0, None)
  assert change == pytest.approx(expected, rel=1e-12)
  assert torch.equal(model.weight, before)  # bit for bit


class _LinearJaxWorkload:
  """model_fn of a bias-free linear model, params {'w': (5, 1)}, MSE."""
  loss_type = LT.MEAN_SQUARED_ERROR

  def model_fn(self, params, batch, model_state, mode, rng, update_batch_norm,
               dropout_rate=0.0):
    del mode, rng, update_batch_norm, dropout_rate
    return batch['inputs'] @ params['w'], model_state


def test_jax_held_out_change_exact_on_quadratic_and_matches_pytorch():
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from curvlr.jax import diagnostics as jdiag  # pylint: disable=import-outside-toplevel
  x, y, w0, w1, expected = _held_out_problem()
  batch = {'inputs': jnp.asarray(x, jnp.float32), 'targets': jnp.asarray(y, jnp.float32)}
  change = float(jdiag._held_out(_LinearJaxWorkload(), 0.0, 0.0, None,  # pylint: disable=protected-access
                                 {'w': jnp.asarray(w1, jnp.float32)},
                                 jnp.asarray(w0.reshape(-1), jnp.float32), batch, None))
  assert change == pytest.approx(expected, rel=1e-4)  # float32
  model = nn.Linear(5, 1, bias=False)
  with torch.no_grad():
    model.weight.copy_(torch.from_numpy(w1.T).float())
  holder = tdiag.Diagnostics(diagnostics.Config())
  holder.held_out = torch.from_numpy(w0.T.copy()).reshape(-1).float()
  torch_change = tdiag._held_out_change(  # pylint: disable=protected-access
      holder, lambda: model(torch.from_numpy(x).float()), model,
      torch.from_numpy(y).float(), LT.MEAN_SQUARED_ERROR, None, 0.0, None)
  assert change == pytest.approx(torch_change, rel=1e-5)


def test_policy_clock_leaves_the_diagnostics_seconds_out():
  """A curvature policy's step time excludes `policy.exclude`d seconds (the diagnostics'),
  so that its budget controller sees its own costs only."""
  from curvlr.core import policy as P  # pylint: disable=import-outside-toplevel
  policy = P.CDATPolicy(schedule=amortization.EveryK(k=2))
  state = P.start_step(policy, P.init(policy), 0, 0, clock=lambda: 100.0)
  state = P.exclude(P.observe(policy, state, 0, P.Measurement(-1.0, 10.0)), 2.5)
  state = P.start_step(policy, state, 1, 0, clock=lambda: 104.0)  # 4 s, 2.5 s diagnostics
  assert state.timing.measure_seconds == pytest.approx(1.5) and state.clock.excluded == 0.0
  state = P.start_step(policy, state, 2, 0, clock=lambda: 105.0)  # plain, nothing excluded
  assert state.timing.plain_seconds == pytest.approx(1.0)
