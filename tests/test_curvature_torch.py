"""PyTorch curvature oracles: exactness, references, layer types, losses, state hygiene."""
import copy

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from curvlr import spec
from curvlr.pytorch import curvature as C
from curvlr.workloads.criteo.torch_model import DlrmSmall

LT = spec.LossType
F64 = torch.float64


def _direction(model, seed=1):
  g = torch.Generator().manual_seed(seed)
  return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in model.parameters()]


def _flat(xs):
  return torch.cat([x.flatten() for x in xs])


def _close(a, b, rtol, atol=0.0):
  value = lambda t: float(t.detach()) if isinstance(t, torch.Tensor) else float(t)
  assert value(a) == pytest.approx(value(b), rel=rtol, abs=value(atol))


def _in_place_passes(model, forward_fn, direction, h, signs):
  """Forward passes at theta + s*h*u, moving the real parameters in place (independent
  of the oracles' parameter substitution), on a deep copy so buffers stay untouched."""
  model_copy = copy.deepcopy(model)
  outs = []
  for s in signs:
    saved = [p.detach().clone() for p in model_copy.parameters()]
    with torch.no_grad():
      for p, u in zip(model_copy.parameters(), direction):
        p.add_(s * h * u)
      outs.append(forward_fn(model_copy))
      for p, v in zip(model_copy.parameters(), saved):
        p.copy_(v)
  return outs


def _reference_ggn(model, forward_fn, direction, targets, loss_type, **kw):
  """GGN sums from in-place float64 central differences of the logits."""
  h = 1e-6
  (zp, aux), (z0, _), (zm, _) = [C._split_output(o) for o in _in_place_passes(
      model, forward_fn, direction, h, (1.0, 0.0, -1.0))]
  return C._output_sums(loss_type, z0, aux, targets, (zp - zm) / (2 * h), kw.get('mask'),
                        kw.get('label_smoothing', 0.0))


def _reference_hessian(model, forward_fn, direction, targets, loss_type, **kw):
  """u^T H u from in-place float64 second differences of the loss."""
  h = 1e-4
  losses = []
  for out in _in_place_passes(model, forward_fn, direction, h, (1.0, 0.0, -1.0)):
    logits, aux = C._split_output(out)
    losses.append(C.loss_sums(loss_type, logits, targets, kw.get('mask'),
                              kw.get('label_smoothing', 0.0), aux)[0])
  return (losses[0] - 2 * losses[1] + losses[2]) / h**2


# --------------------------------------------------------------------------- output space


def _output_case(loss_type):
  g = torch.Generator().manual_seed(0)
  z = torch.randn(6, 4, generator=g, dtype=F64)
  dz = torch.randn(6, 4, generator=g, dtype=F64)
  if loss_type == LT.SOFTMAX_CROSS_ENTROPY:
    y = torch.randint(0, 4, (6,), generator=g)
    ref = lambda zz: F.cross_entropy(zz, y, reduction='sum', label_smoothing=0.2)
    return z, dz, y, 0.2, ref
  if loss_type == LT.SIGMOID_CROSS_ENTROPY:
    y = torch.randint(0, 2, (6, 4), generator=g).to(F64)
    ys = 0.7 * y + 0.3 / 4  # AlgoPerf ogbg label smoothing
    ref = lambda zz: F.binary_cross_entropy_with_logits(zz, ys, reduction='sum')
    return z, dz, y, 0.3, ref
  y = torch.randn(6, 4, generator=g, dtype=F64)
  if loss_type == LT.MEAN_SQUARED_ERROR:
    return z, dz, y, 0.0, lambda zz: ((zz - y)**2).mean(1).sum()
  return z, dz, y, 0.0, lambda zz: (zz - y).abs().mean(1).sum()


@pytest.mark.parametrize('loss_type', [LT.SOFTMAX_CROSS_ENTROPY, LT.SIGMOID_CROSS_ENTROPY,
                                       LT.MEAN_SQUARED_ERROR, LT.MEAN_ABSOLUTE_ERROR])
def test_closed_form_output_hessians_match_autograd(loss_type):
  z, dz, y, ls, ref = _output_case(loss_type)
  sums = C._output_sums(loss_type, z, None, y, dz, None, ls)
  zz = z.clone().requires_grad_()
  loss = ref(zz)
  (g,) = torch.autograd.grad(loss, zz, create_graph=True)
  (hdz,) = torch.autograd.grad((g * dz).sum(), zz, allow_unused=True)
  hdz = torch.zeros_like(z) if hdz is None else hdz
  _close(sums.loss, loss, 1e-12)
  _close(sums.gu, (g * dz).sum(), 1e-12)
  _close(sums.quad, (hdz * dz).sum(), 1e-12, atol=1e-12)
  if loss_type == LT.MEAN_ABSOLUTE_ERROR:
    assert float(sums.quad) == 0.0


def test_softmax_dense_targets_and_masks_and_sequence_logits():
  g = torch.Generator().manual_seed(0)
  z = torch.randn(3, 5, 7, generator=g, dtype=F64)  # (B, T, V) as WMT
  dz = torch.randn(3, 5, 7, generator=g, dtype=F64)
  y = torch.randint(0, 7, (3, 5), generator=g)
  mask = (torch.rand(3, 5, generator=g) > 0.3).to(F64)
  sums = C._output_sums(LT.SOFTMAX_CROSS_ENTROPY, z, None, y, dz, mask, 0.1)
  dense = C._output_sums(LT.SOFTMAX_CROSS_ENTROPY, z, None, F.one_hot(y, 7).to(F64), dz, mask,
                         0.1)
  keep = mask.bool()
  subset = C._output_sums(LT.SOFTMAX_CROSS_ENTROPY, z[keep], None, y[keep], dz[keep], None, 0.1)
  for a, b, c in zip(sums, dense, subset):
    _close(a, b, 1e-12)
    _close(a, c, 1e-12)
  assert float(sums.n) == float(mask.sum())
  nomask = C._output_sums(LT.SOFTMAX_CROSS_ENTROPY, z, None, y, dz, None, 0.1)
  assert float(nomask.n) == 15.0  # one example per logit row, as AlgoPerf's WMT


# --------------------------------------------------------------------------- small models


def _mlp(out=3, layer_norm=False):
  torch.manual_seed(0)
  layers = [nn.Linear(5, 8), nn.Tanh()] + ([nn.LayerNorm(8)] if layer_norm else []) + [
      nn.Linear(8, out)]
  return nn.Sequential(*layers).to(F64)


def _data(n=16, classes=3, seed=0):
  g = torch.Generator().manual_seed(seed)
  return torch.randn(n, 5, generator=g, dtype=F64), torch.randint(0, classes, (n,), generator=g)


def _curvlinops(model, loss_module, x, y, u, kind):
  from curvlinops import GGNLinearOperator, HessianLinearOperator
  cls = GGNLinearOperator if kind == 'ggn' else HessianLinearOperator
  op = cls(model, loss_module, list(model.parameters()), [(x, y)], check_deterministic=False,
           num_data=x.shape[0])
  uf = _flat(u)
  return uf @ (op @ uf)


@pytest.mark.parametrize('loss_type,loss_module,ls', [
    (LT.SOFTMAX_CROSS_ENTROPY, nn.CrossEntropyLoss(reduction='sum', label_smoothing=0.1), 0.1),
    (LT.SIGMOID_CROSS_ENTROPY, nn.BCEWithLogitsLoss(reduction='sum'), 0.0),
    (LT.MEAN_SQUARED_ERROR, nn.MSELoss(reduction='sum'), 0.0)])
def test_ggn_and_hessian_match_curvlinops(loss_type, loss_module, ls):
  model = _mlp(out=3)
  x, labels = _data()
  y = labels if loss_type == LT.SOFTMAX_CROSS_ENTROPY else (
      F.one_hot(labels, 3).to(F64) if loss_type == LT.SIGMOID_CROSS_ENTROPY
      else torch.randn(16, 3, dtype=F64))
  u = _direction(model)
  fwd = lambda: model(x)
  # Our MSE is a mean over the D=3 outputs; curvlinops' MSELoss(sum) sums them.
  scale = 3.0 if loss_type == LT.MEAN_SQUARED_ERROR else 1.0
  ggn_ref = _curvlinops(model, loss_module, x, y, u, 'ggn') / scale
  hess_ref = _curvlinops(model, loss_module, x, y, u, 'hessian') / scale
  for method in ('jvp', 'fd', 'auto'):
    _close(C.ggn_quadratic_form(fwd, model, u, y, loss_type, label_smoothing=ls,
                                method=method).quad, ggn_ref, 1e-12 if method != 'fd' else 1e-8)
  # FD roundoff scales with the curvature terms (~u^T G u), not with the cancelling u^T H u.
  for method, atol in (('double_backward', 1e-12), ('fd', 1e-6)):
    _close(C.hessian_quadratic_form(fwd, model, u, y, loss_type, label_smoothing=ls,
                                    method=method).quad, hess_ref, 1e-12, atol * abs(ggn_ref))


def test_gu_and_loss_are_the_exact_gradient_along_u():
  model = _mlp(layer_norm=True)
  x, y = _data()
  mask = (torch.arange(16) % 3 != 0).to(F64)
  u = _direction(model)
  loss = (F.cross_entropy(model(x), y, reduction='none', label_smoothing=0.1) * mask).sum()
  gu = _flat(torch.autograd.grad(loss, list(model.parameters()))) @ _flat(u)
  for sums in (C.ggn_quadratic_form(lambda: model(x), model, u, y, LT.SOFTMAX_CROSS_ENTROPY,
                                    mask=mask, label_smoothing=0.1, method='jvp'),
               C.hessian_quadratic_form(lambda: model(x), model, u, y,
                                        LT.SOFTMAX_CROSS_ENTROPY, mask=mask,
                                        label_smoothing=0.1, method='double_backward')):
    _close(sums.gu, gu, 1e-12)
    _close(sums.loss, loss, 1e-12)
    assert float(sums.n) == float(mask.sum())


def test_quadratic_loss_is_exact_for_every_method():
  """Linear model + MSE: L is quadratic, so G = H and central differences have no
  truncation error: with a large step (fd_scale=0.5) they are exact up to roundoff."""
  torch.manual_seed(0)
  model = nn.Linear(4, 2).to(F64)
  x, y = torch.randn(10, 4, dtype=F64), torch.randn(10, 2, dtype=F64)
  u = _direction(model)
  fwd = lambda: model(x)
  values = [C.ggn_quadratic_form(fwd, model, u, y, LT.MEAN_SQUARED_ERROR, method=m,
                                 fd_scale=0.5) for m in ('jvp', 'fd')]
  values += [C.hessian_quadratic_form(fwd, model, u, y, LT.MEAN_SQUARED_ERROR, method=m,
                                      fd_scale=0.5) for m in ('double_backward', 'fd')]
  for v in values[1:]:
    _close(v.quad, values[0].quad, 1e-12)
    _close(v.gu, values[0].gu, 1e-12)


def test_quadratic_optimal_step_reaches_zero_loss():
  """1-D linear model, MSE: alpha = -g.u / u^T G u lands on the minimiser in one step."""
  model = nn.Linear(1, 1, bias=False).to(F64)
  with torch.no_grad():
    model.weight.fill_(0.5)
  x = torch.linspace(-2.0, 3.0, 9, dtype=F64).unsqueeze(1)
  y = 3.0 * x
  u = [torch.ones(1, 1, dtype=F64)]
  for method in ('jvp', 'fd'):
    sums = C.ggn_quadratic_form(lambda: model(x), model, u, y, LT.MEAN_SQUARED_ERROR,
                                method=method)
    alpha = -sums.gu / sums.quad
    assert float(0.5 + alpha) == pytest.approx(3.0, rel=1e-9)
    assert float(((0.5 + alpha) * x - y).square().mean()) < 1e-15


def test_mae_ggn_is_zero_but_hessian_is_not():
  model = _mlp(out=2)
  x = _data()[0]
  y = torch.randn(16, 2, dtype=F64)
  u = _direction(model)
  sums = C.ggn_quadratic_form(lambda: model(x), model, u, y, LT.MEAN_ABSOLUTE_ERROR)
  assert float(sums.quad) == 0.0 and float(sums.gu) != 0.0
  hess = C.hessian_quadratic_form(lambda: model(x), model, u, y, LT.MEAN_ABSOLUTE_ERROR)
  _close(hess.quad, _reference_hessian(model, lambda m: m(x), u, y, LT.MEAN_ABSOLUTE_ERROR),
         1e-5)
  assert abs(float(hess.quad)) > 1e-3


# --------------------------------------------------------------------------- layer types


class _Attention(nn.Module):
  def __init__(self, manual):
    super().__init__()
    self.manual = manual
    self.qkv, self.out, self.norm = nn.Linear(6, 18), nn.Linear(6, 3), nn.LayerNorm(6)

  def forward(self, x):
    q, k, v = self.qkv(x).chunk(3, -1)
    if self.manual:
      a = torch.softmax(q @ k.transpose(-1, -2) / 6**0.5, -1) @ v
    else:
      a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return self.out(self.norm(x + a).mean(1))


class _Recurrent(nn.Module):
  def __init__(self):
    super().__init__()
    self.lstm, self.out = nn.LSTM(6, 5, batch_first=True), nn.Linear(5, 3)

  def forward(self, x):
    return self.out(self.lstm(x)[0][:, -1])


class _Bag(nn.Module):
  def __init__(self, bag):
    super().__init__()
    self.emb = nn.EmbeddingBag(20, 6, mode='mean') if bag else nn.Embedding(20, 6)
    self.bag, self.out = bag, nn.Linear(6, 3)

  def forward(self, ids):
    e = self.emb(ids) if self.bag else self.emb(ids).mean(1)
    return self.out(torch.tanh(e))


class _Graph(nn.Module):
  """ogbg-style message passing: gather on edges, index_add scatter, segment-sum pooling."""

  def __init__(self):
    super().__init__()
    self.embed, self.msg, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)

  def forward(self, graph):
    nodes, senders, receivers, node_graph, num_graphs = graph
    h = torch.relu(self.embed(nodes))
    agg = torch.zeros_like(h).index_add(0, receivers, self.msg(h)[senders])
    pooled = torch.zeros(num_graphs, h.shape[1], dtype=h.dtype).index_add(
        0, node_graph, torch.tanh(h + agg))
    return self.out(pooled)


def _layer_case(name):
  torch.manual_seed(0)
  g = torch.Generator().manual_seed(0)
  labels = torch.randint(0, 3, (8,), generator=g)
  if name == 'batchnorm_train':
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(8, 5, generator=g)
  elif name in ('sdpa', 'manual_attention'):
    model, x = _Attention(name == 'manual_attention'), torch.randn(8, 4, 6, generator=g)
  elif name.startswith('lstm'):
    model, x = _Recurrent(), torch.randn(8, 4, 6, generator=g)
  elif name in ('embedding', 'embedding_bag'):
    model, x = _Bag(name == 'embedding_bag'), torch.randint(0, 20, (8, 3), generator=g)
  elif name == 'graph':
    model = _Graph()
    num_nodes = 12
    x = (torch.randn(num_nodes, 4, generator=g), torch.randint(0, num_nodes, (20,), generator=g),
         torch.randint(0, num_nodes, (20,), generator=g), torch.arange(num_nodes) % 8, 8)
  dtype = torch.float32 if name == 'lstm_float32' else F64
  model = model.to(dtype)
  if isinstance(x, torch.Tensor) and x.is_floating_point():
    x = x.to(dtype)
  elif isinstance(x, tuple):
    x = (x[0].to(dtype),) + x[1:]
  return model.train(), x, labels


# name -> (GGN method 'auto' picks, Hessian method 'auto' picks)
_LAYERS = {
    'batchnorm_train': ('jvp', 'double_backward'),
    'sdpa': ('jvp', 'double_backward'),
    'manual_attention': ('jvp', 'double_backward'),
    'lstm_float64': ('jvp', 'double_backward'),
    'lstm_float32': ('fd', 'double_backward'),  # CPU mkldnn LSTM has no forward AD
    'embedding': ('jvp', 'double_backward'),
    'embedding_bag': ('fd', 'fd'),  # neither forward AD nor double backward
    'graph': ('jvp', 'double_backward'),
}


@pytest.mark.parametrize('name', sorted(_LAYERS))
def test_layer_types_auto_method_and_values(name):
  model, x, y = _layer_case(name)
  u = _direction(model)
  buffers = {k: v.clone() for k, v in model.named_buffers()}
  loss = LT.SOFTMAX_CROSS_ENTROPY
  ggn = C.ggn_quadratic_form(lambda: model(x), model, u, y, loss, label_smoothing=0.1)
  hess = C.hessian_quadratic_form(lambda: model(x), model, u, y, loss, label_smoothing=0.1)
  assert C._METHOD_CACHE[model] == dict(zip(('ggn', 'hessian'), _LAYERS[name]))
  for k, v in model.named_buffers():  # BatchNorm: no running-statistics update
    assert torch.equal(v, buffers[k]), k
  ref_model = copy.deepcopy(model).double()
  ref_x = x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x
  ref_u = [v.double() for v in u]
  fwd = lambda m: m(ref_x)
  ggn_ref = _reference_ggn(ref_model, fwd, ref_u, y, loss, label_smoothing=0.1)
  hess_ref = _reference_hessian(ref_model, fwd, ref_u, y, loss, label_smoothing=0.1)
  is64 = next(model.parameters()).dtype == F64
  rtol = 1e-7 if is64 else 1e-3
  _close(ggn.quad, ggn_ref.quad, rtol if _LAYERS[name][0] == 'jvp' else max(rtol, 1e-6))
  _close(ggn.gu, ggn_ref.gu, rtol if _LAYERS[name][0] == 'jvp' else max(rtol, 1e-6))
  _close(hess.quad, hess_ref, 1e-5 if is64 else 1e-2)


def test_train_mode_batchnorm_uses_batch_statistics_and_keeps_buffers():
  model, x, y = _layer_case('batchnorm_train')
  bn = model[1]
  with torch.no_grad():
    bn.running_mean.fill_(5.0)  # would change the output if eval statistics were used
  buffers = {k: v.clone() for k, v in model.named_buffers()}
  u = _direction(model)
  for method in ('jvp', 'fd'):
    C.ggn_quadratic_form(lambda: model(x), model, u, y, LT.SOFTMAX_CROSS_ENTROPY, method=method)
  for method in ('double_backward', 'fd'):
    C.hessian_quadratic_form(lambda: model(x), model, u, y, LT.SOFTMAX_CROSS_ENTROPY,
                             method=method)
  assert int(bn.num_batches_tracked) == 0
  for k, v in model.named_buffers():
    assert torch.equal(v, buffers[k]), k


def _tiny_dlrm():
  torch.manual_seed(0)
  model = DlrmSmall(vocab_size=64, num_dense_features=3, num_sparse_features=2,
                    mlp_bottom_dims=(6, 4), mlp_top_dims=(6, 4, 1), embed_dim=4).double()
  g = torch.Generator().manual_seed(0)
  x = torch.cat([torch.randn(10, 3, generator=g, dtype=F64),
                 torch.randint(0, 64, (10, 2), generator=g).to(F64)], 1)
  y = torch.randint(0, 2, (10,), generator=g).to(F64)
  return model, x, y


def test_list_held_embedding_chunks_get_their_tangents():
  """AlgoPerf criteo's DLRM reads its embedding chunks from a plain list."""
  model, x, y = _tiny_dlrm()
  names = [n for n, _ in model.named_parameters()]
  u = [v if 'embedding_chunk' in n else None for n, v in zip(names, _direction(model))]
  dense_u = [torch.zeros_like(p) if v is None else v for p, v in zip(model.parameters(), u)]
  ref = _reference_ggn(model, lambda m: m(x), dense_u, y, LT.SIGMOID_CROSS_ENTROPY)
  assert float(ref.quad) > 1e-6
  for method in ('jvp', 'fd', 'auto'):
    sums = C.ggn_quadratic_form(lambda: model(x), model, u, y, LT.SIGMOID_CROSS_ENTROPY,
                                method=method)
    _close(sums.quad, ref.quad, 1e-7)
    _close(sums.gu, ref.gu, 1e-7)
  hess = C.hessian_quadratic_form(lambda: model(x), model, u, y, LT.SIGMOID_CROSS_ENTROPY)
  _close(hess.quad, _reference_hessian(model, lambda m: m(x), dense_u, y,
                                       LT.SIGMOID_CROSS_ENTROPY), 1e-5)
  # The trap this guards against: functional_call gives the list-held chunks zero tangents.
  params = dict(model.named_parameters())
  tangents = {n: v for n, v in zip(names, dense_u)}
  _, jvp = torch.func.jvp(lambda p: torch.func.functional_call(model, p, (x,)), (params,),
                          (tangents,))
  assert float(jvp.detach().abs().max()) == 0.0


def test_tied_weights_and_wrappers():
  torch.manual_seed(0)
  model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Tanh(),
                        nn.Linear(4, 4, bias=False)).double()
  model[2].weight = model[0].weight  # one Parameter registered twice
  x, y = torch.randn(6, 4, dtype=F64), torch.randint(0, 4, (6,))
  u = _direction(model)
  assert len(u) == 1
  ref = _reference_ggn(model, lambda m: m(x), u, y, LT.SOFTMAX_CROSS_ENTROPY)
  compiled = torch.compile(model)  # never called: only `._orig_mod` is read
  sums = C.ggn_quadratic_form(lambda: model(x), compiled, u, y, LT.SOFTMAX_CROSS_ENTROPY,
                              method='jvp')
  _close(sums.quad, ref.quad, 1e-7)


def test_state_restored_on_exceptions():
  model, x, y = _tiny_dlrm()
  chunks = list(model.embedding_table_chucks)
  params = list(model.parameters())
  u = _direction(model)

  def failing_forward():
    model(x)
    raise RuntimeError('boom')

  for method in ('jvp', 'fd'):
    with pytest.raises(RuntimeError, match='boom'):
      C.ggn_quadratic_form(failing_forward, model, u, y, LT.SIGMOID_CROSS_ENTROPY, method=method)
  with pytest.raises(RuntimeError, match='boom'):
    C.hessian_quadratic_form(failing_forward, model, u, y, LT.SIGMOID_CROSS_ENTROPY)
  assert all(a is b for a, b in zip(model.embedding_table_chucks, chunks))
  assert all(a is b for a, b in zip(model.parameters(), params))
  assert all(isinstance(p, nn.Parameter) for p in model.parameters())


def test_dropout_sees_one_mask_and_rng_is_restored():
  torch.manual_seed(0)
  model = nn.Sequential(nn.Linear(5, 32), nn.Tanh(), nn.Dropout(0.5), nn.Linear(32, 3)).double()
  x, y = _data()
  u = _direction(model)
  state = torch.get_rng_state()
  jvp = C.ggn_quadratic_form(lambda: model(x), model, u, y, LT.SOFTMAX_CROSS_ENTROPY,
                             method='jvp')
  assert torch.equal(torch.get_rng_state(), state)
  fd = C.ggn_quadratic_form(lambda: model(x), model, u, y, LT.SOFTMAX_CROSS_ENTROPY,
                            method='fd')
  db = C.hessian_quadratic_form(lambda: model(x), model, u, y, LT.SOFTMAX_CROSS_ENTROPY,
                                method='double_backward')
  hfd = C.hessian_quadratic_form(lambda: model(x), model, u, y, LT.SOFTMAX_CROSS_ENTROPY,
                                 method='fd')
  _close(jvp.quad, fd.quad, 1e-8)
  _close(db.quad, hfd.quad, 1e-6)
  _close(jvp.loss, db.loss, 1e-12)  # the same mask in every pass and call


def _ctc_case(dtype=F64):
  torch.manual_seed(0)
  g = torch.Generator().manual_seed(0)
  model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 5)).to(dtype)
  frames = torch.randn(3, 7, 4, generator=g, dtype=dtype)
  logit_paddings = torch.zeros(3, 7, dtype=dtype)
  logit_paddings[1, 5:] = 1
  labels = torch.randint(1, 5, (3, 3), generator=g)
  label_paddings = torch.zeros(3, 3, dtype=dtype)
  label_paddings[2, 2:] = 1
  fwd = lambda m: (m(frames), logit_paddings)
  fwd.frames = frames
  return model, fwd, (labels, label_paddings)


def test_ctc_ggn_is_the_per_frame_fisher_hessian_exact():
  """GGN: d^T J^T F J d with F the per-frame softmax Fisher over unpadded frames (dense
  brute force), above the exact CTC curvature; the Hessian stays exact (FD)."""
  model, fwd, targets = _ctc_case()
  u = _direction(model)
  mask = torch.tensor([1.0, 1.0, 0.0], dtype=F64)
  ggn = C.ggn_quadratic_form(lambda: fwd(model), model, u, targets, LT.CTC_LOSS, mask=mask)
  assert C._METHOD_CACHE[model]['ggn'] == 'jvp'
  ref = _reference_ggn(model, fwd, u, targets, LT.CTC_LOSS, mask=mask)
  _close(ggn.gu, ref.gu, 1e-7)
  z, paddings = fwd(model)
  params = list(model.parameters())
  call = lambda *ps: torch.func.functional_call(
      model, dict(zip([n for n, _ in model.named_parameters()], ps)), (fwd.frames,))
  jac = torch.cat([j.reshape(z.numel(), -1) for j in torch.autograd.functional.jacobian(
      call, tuple(p.detach() for p in params))], 1)  # (B*T*V, P)
  p = torch.softmax(z.detach(), -1)
  blocks = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (B, T, V, V)
  weights = mask[:, None] * (1 - paddings)
  fisher = torch.block_diag(*(weights[..., None, None] * blocks).reshape(
      (-1,) + blocks.shape[-2:]))
  ju = jac @ torch.cat([v.reshape(-1) for v in u])
  _close(ggn.quad, ju @ fisher @ ju, 1e-10)
  loss = lambda t: (C._ctc_losses(z.detach() + t * ju.reshape(z.shape), paddings, targets)
                    * mask).sum()
  exact = (loss(1e-4) - 2 * loss(0.0) + loss(-1e-4)) / 1e-8  # u^T J^T (F - C) J u
  assert float(exact) < float(ggn.quad)
  assert float(ggn.n) == 3.0 + 3.0  # label lengths 3, 3 (masked third sequence)
  hess = C.hessian_quadratic_form(lambda: fwd(model), model, u, targets, LT.CTC_LOSS, mask=mask)
  assert C._METHOD_CACHE[model]['hessian'] == 'fd'  # ctc_loss has no double backward
  _close(hess.quad, _reference_hessian(model, fwd, u, targets, LT.CTC_LOSS, mask=mask), 1e-5)


# --------------------------------------------------------------------------- FD accuracy, API


@pytest.mark.parametrize('dtype,ggn_rtol,hess_rtol', [(F64, 1e-9, 1e-6),
                                                       (torch.float32, 3e-4, 3e-3)])
def test_finite_difference_accuracy(dtype, ggn_rtol, hess_rtol):
  torch.manual_seed(0)
  model = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 10))
  model = model.to(dtype)
  x, y = torch.randn(256, 8, dtype=dtype), torch.randint(0, 10, (256,))
  u = _direction(model)
  fwd = lambda: model(x)
  L = LT.SOFTMAX_CROSS_ENTROPY
  exact = C.ggn_quadratic_form(fwd, model, u, y, L, method='jvp')
  _close(C.ggn_quadratic_form(fwd, model, u, y, L, method='fd').quad, exact.quad, ggn_rtol)
  exact = C.hessian_quadratic_form(fwd, model, u, y, L, method='double_backward')
  _close(C.hessian_quadratic_form(fwd, model, u, y, L, method='fd').quad, exact.quad, hess_rtol)


def test_sub_batch_and_none_direction_entries():
  model = _mlp()
  x, y = _data()
  batch = {'inputs': x, 'targets': y, 'weights': torch.ones(16, dtype=F64)}
  small = C.sub_batch(batch, 5)
  assert small['inputs'].shape == (5, 5) and small['weights'].shape == (5,)
  u = _direction(model)
  sums = C.ggn_quadratic_form(lambda: model(small['inputs']), model, u, small['targets'],
                              LT.SOFTMAX_CROSS_ENTROPY, mask=small['weights'])
  ref = C.ggn_quadratic_form(lambda: model(x[:5]), model, u, y[:5], LT.SOFTMAX_CROSS_ENTROPY)
  for a, b in zip(sums, ref):
    _close(a, b, 1e-12)
  partial = [None, None] + u[2:]
  zeroed = [torch.zeros_like(v) for v in u[:2]] + u[2:]
  for fn in (C.ggn_quadratic_form, C.hessian_quadratic_form):
    a = fn(lambda: model(x), model, partial, y, LT.SOFTMAX_CROSS_ENTROPY)
    b = fn(lambda: model(x), model, zeroed, y, LT.SOFTMAX_CROSS_ENTROPY)
    _close(a.quad, b.quad, 1e-12)
    none = fn(lambda: model(x), model, [None] * len(u), y, LT.SOFTMAX_CROSS_ENTROPY)
    assert float(none.quad) == 0.0 and float(none.loss) == pytest.approx(float(a.loss))


def test_bad_direction_and_method_raise():
  model = _mlp()
  x, y = _data()
  with pytest.raises(ValueError, match='align it with module.parameters'):
    C.ggn_quadratic_form(lambda: model(x), model, [None], y, LT.SOFTMAX_CROSS_ENTROPY)
  bad = [torch.zeros(2)] + [None] * 3
  with pytest.raises(ValueError, match=r'direction\[0\] has shape'):
    C.ggn_quadratic_form(lambda: model(x), model, bad, y, LT.SOFTMAX_CROSS_ENTROPY)
  with pytest.raises(ValueError, match="method must be"):
    C.hessian_quadratic_form(lambda: model(x), model, _direction(model), y,
                             LT.SOFTMAX_CROSS_ENTROPY, method='jvp')


def test_mean_and_single_process_all_reduce():
  sums = C.CurvatureSums(torch.tensor(6.0), torch.tensor(-2.0), torch.tensor(4.0),
                         torch.tensor(2.0))
  assert tuple(float(v) for v in sums.mean()) == (3.0, -1.0, 2.0, 2.0)
  assert tuple(float(v) for v in C.all_reduce_sums(sums)) == (6.0, -2.0, 4.0, 2.0)
