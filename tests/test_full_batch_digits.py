"""analysis.full_batch_digits: quick run outputs, CDAT's first lr and the sharpness, exactly."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from analysis import full_batch_digits as fb


@pytest.fixture(scope='module')
def tiny():
  """(model, x, y, loss of the flat parameters, flat parameters): 64-5-5-10 MLP, 64 digits."""
  torch.set_num_threads(1)
  x, y = fb.load_data(64, 0.3, seed=1)
  model = fb.make_mlp((5, 5), seed=1)
  names = [name for name, _ in model.named_parameters()]
  shapes = [p.shape for p in model.parameters()]

  def loss(flat):
    chunks = flat.split([s.numel() for s in shapes])
    params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
    return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

  flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
  return model, x, y, loss, flat


def explicit(loss, flat):
  """(gradient, Hessian) of loss at flat."""
  return (torch.autograd.functional.jacobian(loss, flat),
          torch.autograd.functional.hessian(loss, flat, vectorize=True))


def test_quick_mode_writes_finite_outputs(tmp_path):
  summary = fb.main(['--quick', '--out', str(tmp_path)])
  base = tmp_path / 'full_batch_digits'
  png = (base.with_suffix('.png')).read_bytes()
  assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000
  saved = json.loads(base.with_suffix('.json').read_text())['summary']
  assert saved.keys() == summary.keys()
  assert all(math.isfinite(v) for v in summary.values())
  assert all(summary[f'bound_hits/cdat_sigma={s:g}'] == 0 for s in fb.SIGMAS)
  curves = pd.read_csv(base.with_suffix('.csv'))
  steps, every = fb.QUICK.steps, fb.QUICK.sharpness_every
  assert curves.method.nunique() == 1 + len(fb.SIGMAS)
  for _, c in curves.groupby('method'):
    assert len(c) == steps + 1 and np.isfinite(c.train_loss).all()
    assert np.isfinite(c.lr[:steps]).all() and (c.lr[:steps] > 0).all()
    measured = c.sharpness.notna().to_numpy()
    np.testing.assert_array_equal(np.flatnonzero(measured), np.arange(0, steps, every))
    assert np.isfinite(c.lr_x_sharpness[measured]).all()
    assert c.train_loss.iloc[-1] < c.train_loss.iloc[0]


@pytest.mark.parametrize('sigma', [1.0, 2.0])
def test_cdat_lr_is_sigma_times_greedy_step_of_explicit_hessian_at_every_step(tiny, sigma):
  model, x, y, loss, flat = tiny
  curves = fb.train(model, x, y, 3, fb.cdat_config(sigma))
  for t in range(3):  # No EMA: lr_t depends on w_t only.
    g, hessian = explicit(loss, flat)
    expected = sigma * (g @ g) / (g @ hessian @ g)  # u = -g: -g.u = |g|^2, u^T H u = g^T H g.
    assert math.isclose(curves['lr'][t], expected.item(), rel_tol=1e-9)
    flat = flat - expected * g
    assert math.isclose(curves['loss'][t + 1], loss(flat).item(), rel_tol=1e-9)


def test_sharpness_is_top_eigenvalue_of_explicit_hessian(tiny):
  model, x, y, loss, flat = tiny
  eigenvalues, eigenvectors = torch.linalg.eigh(explicit(loss, flat)[1])
  value, vector = fb.sharpness(model, x, y)
  assert math.isclose(value, eigenvalues[-1].item(), rel_tol=1e-8)
  assert abs(vector @ eigenvectors[:, -1].numpy()) == pytest.approx(1.0, abs=1e-6)
  warm, _ = fb.sharpness(model, x, y, v0=vector)
  assert math.isclose(warm, value, rel_tol=1e-8)
  recorded = fb.train(model, x, y, 3, 0.1, sharpness_every=2)['sharpness']
  assert math.isclose(recorded[0], value, rel_tol=1e-8) and np.isnan(recorded[1])
