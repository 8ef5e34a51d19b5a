"""JAX curvature oracles against explicit Jacobians/Hessians, finite differences and theory."""
import functools

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import enable_x64

from curvlr import spec
from curvlr.jax import curvature as C

LT = spec.LossType
CLOSED_FORM = [LT.SOFTMAX_CROSS_ENTROPY, LT.SIGMOID_CROSS_ENTROPY, LT.MEAN_SQUARED_ERROR,
               LT.MEAN_ABSOLUTE_ERROR]


@pytest.fixture(autouse=True)
def x64():
  with enable_x64(True):
    yield


def _close(a, b, rtol, atol=0.0):
  assert float(a) == pytest.approx(float(b), rel=rtol, abs=atol)


def _mlp_params(key, dtype=jnp.float64, d_in=5, width=8, out=3):
  k = jax.random.split(key, 4)
  return {'w1': jax.random.normal(k[0], (d_in, width), dtype) / d_in**0.5,
          'b1': 0.1 * jax.random.normal(k[1], (width,), dtype),
          'w2': jax.random.normal(k[2], (width, out), dtype) / width**0.5,
          'b2': 0.1 * jax.random.normal(k[3], (out,), dtype)}


def _mlp(params, x):
  h = jnp.tanh(x @ params['w1'] + params['b1'])
  return h @ params['w2'] + params['b2']


def _case(loss_type, n=12, out=3, dtype=jnp.float64):
  key = jax.random.PRNGKey(0)
  k = jax.random.split(key, 5)
  params = _mlp_params(k[0], dtype, out=out)
  x = jax.random.normal(k[1], (n, 5), dtype)
  if loss_type == LT.SOFTMAX_CROSS_ENTROPY:
    y = jax.random.randint(k[2], (n,), 0, out)
  elif loss_type == LT.SIGMOID_CROSS_ENTROPY:
    y = jax.random.bernoulli(k[2], 0.5, (n, out)).astype(dtype)
  else:
    y = jax.random.normal(k[2], (n, out), dtype)
  u = jax.tree.map(lambda p: jax.random.normal(k[3], p.shape, dtype), params)
  mask = (jnp.arange(n) % 4 != 0).astype(dtype)
  return params, functools.partial(_mlp, x=x), y, u, mask


@functools.partial(jax.jit, static_argnums=0)
def _closed_and_autodiff(loss_type, z, dz, y, mask):
  sums = C._output_sums(loss_type, z, None, y, dz, mask, 0.2)
  return sums, C.directional_derivatives(
      lambda zz: C.loss_sums(loss_type, zz, y, mask, 0.2), z, dz)


@pytest.mark.parametrize('loss_type', CLOSED_FORM)
def test_closed_forms_match_autodiff_in_output_space(loss_type):
  params, apply_fn, y, _, mask = _case(loss_type)
  z = apply_fn(params)
  dz = jax.random.normal(jax.random.PRNGKey(7), z.shape, z.dtype)
  sums, ((loss, n), (gdz, _), (quad, _)) = _closed_and_autodiff(loss_type, z, dz, y, mask)
  _close(sums.loss, loss, 1e-12)
  _close(sums.gu, gdz, 1e-12)
  _close(sums.quad, quad, 1e-12, atol=1e-12)
  assert float(sums.n) == float(n) == float(mask.sum())
  if loss_type == LT.MEAN_ABSOLUTE_ERROR:
    assert float(sums.quad) == 0.0


def test_softmax_sequence_logits_dense_targets_and_smoothing():
  k = jax.random.split(jax.random.PRNGKey(1), 4)
  z = jax.random.normal(k[0], (3, 5, 7))
  dz = jax.random.normal(k[1], (3, 5, 7))
  y = jax.random.randint(k[2], (3, 5), 0, 7)
  mask = jax.random.bernoulli(k[3], 0.7, (3, 5)).astype(jnp.float64)

  @jax.jit
  def run(z, dz, y, mask):
    smoothed = 0.9 * jax.nn.one_hot(y, 7) + 0.1 / 7
    return (C._output_sums(LT.SOFTMAX_CROSS_ENTROPY, z, None, y, dz, mask, 0.1),
            C._output_sums(LT.SOFTMAX_CROSS_ENTROPY, z, None, jax.nn.one_hot(y, 7), dz, mask,
                           0.1),
            (mask * -(jax.nn.log_softmax(z) * smoothed).sum(-1)).sum(),
            C._output_sums(LT.SOFTMAX_CROSS_ENTROPY, z, None, y, dz, None, 0.1).n)

  a, b, ref, n = run(z, dz, y, mask)
  for u, v in zip(a, b):
    _close(u, v, 1e-12)
  _close(a.loss, ref, 1e-12)
  assert float(n) == 15


@pytest.mark.parametrize('loss_type', CLOSED_FORM)
def test_ggn_and_hessian_match_explicit_matrices(loss_type):
  """u^T J^T H_out J u and u^T H u from full jacrev/hessian matrices of raveled params."""
  params, apply_fn, y, u, mask = _case(loss_type)
  ggn_ref, hess_ref, gu_ref, loss_ref, ggn, hess = jax.jit(
      functools.partial(_explicit_and_oracles, loss_type, apply_fn))(params, u, y, mask)
  _close(ggn.quad, ggn_ref, 1e-10, atol=1e-12)
  _close(hess.quad, hess_ref, 1e-10)
  for sums in (ggn, hess):
    _close(sums.gu, gu_ref, 1e-10)
    _close(sums.loss, loss_ref, 1e-12)


def _explicit_and_oracles(loss_type, apply_fn, params, u, y, mask):
  flat, unravel = ravel_pytree(params)
  u_flat = ravel_pytree(u)[0]
  z = apply_fn(params)
  jac = jax.jacrev(lambda f: apply_fn(unravel(f)).reshape(-1))(flat)
  out_loss = lambda zf: C.loss_sums(loss_type, zf.reshape(z.shape), y, mask, 0.1)[0]
  h_out = jax.hessian(out_loss)(z.reshape(-1))
  ggn_ref = u_flat @ jac.T @ h_out @ jac @ u_flat
  full_loss = lambda f: out_loss(apply_fn(unravel(f)).reshape(-1))
  hess_ref = u_flat @ jax.hessian(full_loss)(flat) @ u_flat
  gu_ref = jax.grad(full_loss)(flat) @ u_flat
  ggn = C.ggn_quadratic_form(apply_fn, params, u, y, loss_type, mask=mask, label_smoothing=0.1)
  hess = C.hessian_quadratic_form(apply_fn, params, u, y, loss_type, mask=mask,
                                  label_smoothing=0.1)
  return ggn_ref, hess_ref, gu_ref, full_loss(flat), ggn, hess


def test_quadratic_loss_is_exact_for_every_method():
  """Linear model + MSE: G = H and central differences have no truncation error."""
  k = jax.random.split(jax.random.PRNGKey(2), 4)
  params = {'w': jax.random.normal(k[0], (4, 2)), 'b': jax.random.normal(k[1], (2,))}
  x, y = jax.random.normal(k[2], (10, 4)), jax.random.normal(k[3], (10, 2))
  apply_fn = lambda p: x @ p['w'] + p['b']
  u = jax.tree.map(jnp.ones_like, params)
  results = jax.jit(lambda p, v: [
      f(apply_fn, p, v, y, LT.MEAN_SQUARED_ERROR, method=m, fd_scale=0.5)
      for f in (C.ggn_quadratic_form, C.hessian_quadratic_form) for m in ('jvp', 'fd')])(
          params, u)
  for r in results[1:]:
    _close(r.quad, results[0].quad, 1e-12)
    _close(r.gu, results[0].gu, 1e-12)


def test_quadratic_optimal_step_reaches_zero_loss():
  """1-D linear model, MSE: alpha = -g.u / u^T G u lands on the minimiser in one step."""
  x = jnp.linspace(-2.0, 3.0, 9)[:, None]
  y = 3.0 * x
  apply_fn = lambda p: p['theta'] * x
  params, u = {'theta': jnp.array(0.5)}, {'theta': jnp.array(1.0)}
  for method in ('jvp', 'fd'):
    sums = C.ggn_quadratic_form(apply_fn, params, u, y, LT.MEAN_SQUARED_ERROR, method=method)
    theta = 0.5 - sums.gu / sums.quad
    _close(theta, 3.0, 1e-9)
    assert float(jnp.mean((theta * x - y)**2)) < 1e-15


@pytest.mark.parametrize('dtype,ggn_rtol,hess_rtol', [(jnp.float64, 1e-9, 1e-6),
                                                       (jnp.float32, 3e-4, 3e-3)])
def test_finite_difference_accuracy(dtype, ggn_rtol, hess_rtol):
  k = jax.random.split(jax.random.PRNGKey(3), 4)
  params = _mlp_params(k[0], dtype, d_in=8, width=32, out=10)
  x = jax.random.normal(k[1], (64, 8), dtype)
  y = jax.random.randint(k[2], (64,), 0, 10)
  u = jax.tree.map(lambda p: jax.random.normal(k[3], p.shape, dtype), params)
  apply_fn = functools.partial(_mlp, x=x)
  oracles = jax.jit(lambda p, v: [
      f(apply_fn, p, v, y, LT.SOFTMAX_CROSS_ENTROPY, method=m).quad
      for f in (C.ggn_quadratic_form, C.hessian_quadratic_form) for m in ('fd', 'jvp')])
  ggn_fd, ggn, hess_fd, hess = oracles(params, u)
  _close(ggn_fd, ggn, ggn_rtol)
  _close(hess_fd, hess, hess_rtol)


@jax.custom_vjp
def _custom_tanh(x):
  return jnp.tanh(x)


_custom_tanh.defvjp(lambda x: (jnp.tanh(x), jnp.tanh(x)),
                    lambda t, g: (g * (1 - t**2),))


def test_fd_serves_custom_vjp_models():
  """jax.jvp cannot enter custom_vjp functions (cuDNN attention, rnn.lstm): use 'fd'."""
  params, apply_fn, y, u, _ = _case(LT.SOFTMAX_CROSS_ENTROPY)
  x = apply_fn.keywords['x']
  custom = lambda p: _custom_tanh(x @ p['w1'] + p['b1']) @ p['w2'] + p['b2']
  with pytest.raises(TypeError, match='custom_vjp'):
    C.ggn_quadratic_form(custom, params, u, y, LT.SOFTMAX_CROSS_ENTROPY)
  exact = C.ggn_quadratic_form(apply_fn, params, u, y, LT.SOFTMAX_CROSS_ENTROPY)
  _close(C.ggn_quadratic_form(custom, params, u, y, LT.SOFTMAX_CROSS_ENTROPY,
                              method='fd').quad, exact.quad, 1e-8)


def _ctc_case():
  k = jax.random.split(jax.random.PRNGKey(4), 4)
  params = _mlp_params(k[0], d_in=4, out=5)
  frames = jax.random.normal(k[1], (3, 7, 4))
  logit_paddings = jnp.zeros((3, 7)).at[1, 5:].set(1.0)
  labels = jax.random.randint(k[2], (3, 3), 1, 5)
  label_paddings = jnp.zeros((3, 3)).at[2, 2:].set(1.0)
  u = jax.tree.map(lambda p: jax.random.normal(k[3], p.shape), params)
  apply_fn = lambda p: (_mlp(p, frames), logit_paddings)
  return params, apply_fn, (labels, label_paddings), u


def _dense_ctc_forms(params, apply_fn, targets, u, mask):
  """Brute force: J (dense, by jacfwd), the per-frame Fisher F as a dense block-diagonal
  matrix over unpadded frames, and the exact CTC output Hessian H (jax.hessian)."""
  flat, unravel = ravel_pytree(params)
  logits, paddings = apply_fn(params)
  jac = jax.jacfwd(lambda f: apply_fn(unravel(f))[0].reshape(-1))(flat)  # (B*T*V, P)
  p = jax.nn.softmax(logits)
  blocks = jax.vmap(jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q)))(p)  # (B, T, V, V)
  weights = mask[:, None] * (1 - paddings)  # sequence weight on unpadded frames
  fisher = jax.scipy.linalg.block_diag(*(weights[..., None, None] * blocks).reshape(
      (-1,) + blocks.shape[-2:]))
  loss = lambda z: C.loss_sums(LT.CTC_LOSS, z.reshape(logits.shape), targets, mask, 0.0,
                               paddings)[0]
  hess = jax.hessian(loss)(logits.reshape(-1))
  ju = jac @ ravel_pytree(u)[0]
  return ju @ fisher @ ju, ju @ hess @ ju, fisher - hess


def test_ctc_ggn_is_the_per_frame_fisher_and_counts_tokens():
  """The CTC "GGN" is d^T J^T F J d with F the per-frame softmax Fisher over unpadded
  frames (dense brute force), >= 0, and >= the exact CTC GGN (F - C <= F)."""
  params, apply_fn, targets, u = _ctc_case()
  mask = jnp.array([1.0, 1.0, 0.0])
  ggn = jax.jit(lambda p, v: C.ggn_quadratic_form(apply_fn, p, v, targets, LT.CTC_LOSS,
                                                  mask=mask))(params, u)
  fisher_form, exact_form, gap = _dense_ctc_forms(params, apply_fn, targets, u, mask)
  _close(ggn.quad, fisher_form, 1e-10)
  assert float(exact_form) < float(ggn.quad)  # C > 0 along this direction
  assert float(jnp.linalg.eigvalsh(gap).min()) > -1e-10  # F - H = C is PSD
  logits, paddings = apply_fn(params)
  ju = jax.jvp(lambda q: apply_fn(q)[0], (params,), (u,))[1]
  _, gdz = jax.jvp(lambda z: C.loss_sums(LT.CTC_LOSS, z, targets, mask, 0.0, paddings)[0],
                   (logits,), (ju,))
  _close(ggn.gu, gdz, 1e-10)
  assert float(ggn.n) == 6.0  # label lengths 3 + 3; the third sequence is masked
  for seed in range(5):
    v = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(seed), p.shape), params)
    assert float(C.ggn_quadratic_form(apply_fn, params, v, targets, LT.CTC_LOSS).quad) >= 0


def test_sub_batch_takes_equal_slices_of_each_shard():
  batch = {'inputs': jnp.arange(16.0).reshape(8, 2), 'targets': jnp.arange(8)}
  small = C.sub_batch(batch, 4, num_shards=2)
  np.testing.assert_array_equal(small['targets'], [0, 1, 4, 5])
  np.testing.assert_array_equal(C.sub_batch(batch, 3)['targets'], [0, 1, 2])
  with pytest.raises(ValueError, match='multiple of num_shards'):
    C.sub_batch(batch, 3, num_shards=2)


def test_zero_direction_and_mean():
  params, apply_fn, y, u, _ = _case(LT.SOFTMAX_CROSS_ENTROPY)
  zero = jax.tree.map(jnp.zeros_like, u)
  for method in ('jvp', 'fd'):
    sums = C.ggn_quadratic_form(apply_fn, params, zero, y, LT.SOFTMAX_CROSS_ENTROPY,
                                method=method)
    assert float(sums.quad) == 0.0 and float(sums.gu) == 0.0 and np.isfinite(float(sums.loss))
  s = C.CurvatureSums(jnp.array(6.0), jnp.array(-2.0), jnp.array(4.0), jnp.array(2.0)).mean()
  assert tuple(float(v) for v in s) == (3.0, -1.0, 2.0, 2.0)
  with pytest.raises(ValueError, match='method must be'):
    C.hessian_quadratic_form(apply_fn, params, u, y, LT.SOFTMAX_CROSS_ENTROPY,
                             method='double_backward')
