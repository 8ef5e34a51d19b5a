"""PyTorch and JAX curvature oracles agree on identical weights, batch and direction."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from conftest import enable_x64

from curvlr import spec
from curvlr.jax import curvature as jc
from curvlr.pytorch import curvature as tc

LT = spec.LossType
ALL = [LT.SOFTMAX_CROSS_ENTROPY, LT.SIGMOID_CROSS_ENTROPY, LT.MEAN_SQUARED_ERROR,
       LT.MEAN_ABSOLUTE_ERROR, LT.CTC_LOSS]
_TORCH_DTYPE = {'float64': torch.float64, 'float32': torch.float32}


def _problem(loss_type, dtype):
  """Tiny MLP (torch module, JAX param dict with kernel = weight.T), batch and direction."""
  torch.manual_seed(0)
  tdtype = _TORCH_DTYPE[dtype]
  out = 5 if loss_type == LT.CTC_LOSS else 3
  model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, out)).to(tdtype)
  g = torch.Generator().manual_seed(1)
  u = [torch.randn(p.shape, generator=g, dtype=tdtype) for p in model.parameters()]
  x_shape = (3, 6, 4) if loss_type == LT.CTC_LOSS else (10, 4)
  x = torch.randn(x_shape, generator=g, dtype=tdtype)
  mask = torch.tensor([1.0, 0.0, 1.0] if loss_type == LT.CTC_LOSS else [1.0, 0.0] * 5,
                      dtype=tdtype)
  paddings = None
  if loss_type == LT.SOFTMAX_CROSS_ENTROPY:
    y = torch.randint(0, 3, (10,), generator=g)
  elif loss_type == LT.SIGMOID_CROSS_ENTROPY:
    y = torch.randint(0, 2, (10, 3), generator=g).to(tdtype)
  elif loss_type == LT.CTC_LOSS:
    paddings = torch.zeros(3, 6, dtype=tdtype)
    paddings[0, 5:] = 1  # 5 frames: enough for any 3 labels (feasible alignment)
    label_paddings = torch.zeros(3, 3, dtype=tdtype)
    label_paddings[1, 2:] = 1
    y = (torch.randint(1, 5, (3, 3), generator=g), label_paddings)
  else:
    y = torch.randn(10, 3, generator=g, dtype=tdtype)

  def to_jax(t):
    return jax.tree.map(lambda a: jnp.asarray(a.detach().numpy()), t)

  names = ('w1', 'b1', 'w2', 'b2')
  jparams = {k: to_jax(p.T if p.ndim == 2 else p) for k, p in zip(names, model.parameters())}
  ju = {k: to_jax(v.T if v.ndim == 2 else v) for k, v in zip(names, u)}
  jx = to_jax(x)

  def apply_fn(p):
    logits = jnp.tanh(jx @ p['w1'] + p['b1']) @ p['w2'] + p['b2']
    return (logits, to_jax(paddings)) if paddings is not None else logits

  torch_fwd = (lambda: (model(x), paddings)) if paddings is not None else (lambda: model(x))
  return (torch_fwd, model, u, y, mask), (apply_fn, jparams, ju, to_jax(y), to_jax(mask))


@pytest.mark.parametrize('dtype,rtol', [('float64', 1e-10), ('float32', 1e-5)])
@pytest.mark.parametrize('loss_type', ALL)
def test_torch_and_jax_oracles_agree(loss_type, dtype, rtol):
  with enable_x64(dtype == 'float64'):
    (fwd, model, u, y, mask), (apply_fn, params, ju, jy, jmask) = _problem(loss_type, dtype)
    ls = 0.1 if loss_type in (LT.SOFTMAX_CROSS_ENTROPY, LT.SIGMOID_CROSS_ENTROPY) else 0.0
    oracles = jax.jit(lambda p, v: (
        jc.ggn_quadratic_form(apply_fn, p, v, jy, loss_type, mask=jmask, label_smoothing=ls),
        jc.hessian_quadratic_form(apply_fn, p, v, jy, loss_type, mask=jmask,
                                  label_smoothing=ls)))
    jax_ggn, jax_hess = oracles(params, ju)
    torch_ggn = tc.ggn_quadratic_form(fwd, model, u, y, loss_type, mask=mask,
                                      label_smoothing=ls)
    torch_hess = tc.hessian_quadratic_form(fwd, model, u, y, loss_type, mask=mask,
                                           label_smoothing=ls)
  # PyTorch CTC: lacking double backward, the Hessian by second differences: compare it
  # at FD accuracy, relative to the curvature scale |u^T G u| (u^T H u may cancel).
  ctc = loss_type == LT.CTC_LOSS
  hess_atol = ((1e-6 if dtype == 'float64' else 1e-3) * abs(float(jax_ggn.quad)) if ctc
               else 1e-12)
  for name in ('quad', 'gu', 'loss', 'n'):
    np.testing.assert_allclose(float(getattr(torch_ggn, name)), float(getattr(jax_ggn, name)),
                               rtol=rtol, atol=1e-12, err_msg=f'ggn {name}')
  for name in ('quad', 'gu'):
    np.testing.assert_allclose(float(getattr(torch_hess, name)), float(getattr(jax_hess, name)),
                               rtol=rtol, atol=hess_atol, err_msg=f'hessian {name}')
  if loss_type == LT.MEAN_ABSOLUTE_ERROR:
    assert float(torch_ggn.quad) == float(jax_ggn.quad) == 0.0


def test_finite_difference_paths_agree():
  with enable_x64(True):
    (fwd, model, u, y, mask), (apply_fn, params, ju, jy, jmask) = _problem(
        LT.SOFTMAX_CROSS_ENTROPY, 'float64')
    jax_fd = jax.jit(lambda p, v: (
        jc.ggn_quadratic_form(apply_fn, p, v, jy, LT.SOFTMAX_CROSS_ENTROPY, mask=jmask,
                              method='fd'),
        jc.hessian_quadratic_form(apply_fn, p, v, jy, LT.SOFTMAX_CROSS_ENTROPY, mask=jmask,
                                  method='fd')))(params, ju)
  torch_fd = (tc.ggn_quadratic_form(fwd, model, u, y, LT.SOFTMAX_CROSS_ENTROPY, mask=mask,
                                    method='fd'),
              tc.hessian_quadratic_form(fwd, model, u, y, LT.SOFTMAX_CROSS_ENTROPY, mask=mask,
                                        method='fd'))
  for t, j, rtol in zip(torch_fd, jax_fd, (1e-9, 1e-6)):
    np.testing.assert_allclose(float(t.quad), float(j.quad), rtol=rtol)
