"""Measurements in chunks of rows (issue 10): the rule, and chunked sums = unchunked sums in
both frameworks (oracles and the submissions' `_sums`), including a last shorter chunk."""
import dataclasses
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from conftest import enable_x64

from curvlr import spec
from curvlr.core import defaults, workload_support as ws
from curvlr.jax import curvature as jc, stepsize as jax_stepsize
from curvlr.pytorch import curvature as tc, stepsize as torch_stepsize

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'bench'))
import bench_criteo1tb_scale as scale  # noqa: E402

LT = spec.LossType
HP = dataclasses.replace(defaults.HPARAMS, dropout_rate=0.0)
HP_DROPOUT = dataclasses.replace(defaults.HPARAMS, dropout_rate=0.3)


# ----------------------------------------------------------------------------- the rule


def test_chunk_rule():
  assert ws.chunks_of(8192) == ws.Chunks(2048, 4, 0)
  assert ws.chunks_of(511) == ws.Chunks(511, 1, 0) and not ws.chunks_of(511).chunked
  assert ws.chunks_of(512) == ws.Chunks(256, 2, 0)
  assert ws.chunks_of(770) == ws.Chunks(257, 2, 256)  # 3 chunks, the last shorter
  assert ws.chunks_of(10, 3, 1).spans() == ((0, 4), (4, 8), (8, 10))
  for n in (1, 7, 300, 1000, 4097, 100_003):
    c = ws.chunks_of(n)
    spans = c.spans()
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert len(spans) <= ws.MEASURE_CHUNKS
    assert len(spans) == 1 or min(b - a for a, b in spans) >= ws.MIN_CHUNK_ROWS
  with pytest.raises(ValueError):
    ws.chunks_of(0)


@pytest.mark.parametrize('base,chunked', [
    ('criteo1tb', True), ('imagenet_vit', True), ('wmt', True), ('mnist', True),
    ('fastmri', True), ('imagenet_resnet', False), ('cifar', False), ('ogbg', False),
    ('librispeech_conformer', False), ('librispeech_deepspeech', False), (None, False)])
def test_which_workloads_measure_in_chunks(base, chunked):
  """BatchNorm (batch statistics), graph batches and unknown models run in one pass."""
  attrs = {'loss_type': LT.SOFTMAX_CROSS_ENTROPY}
  if base:
    attrs['algoperf_base'] = base
  row = ws.support(type('W', (), attrs)())
  assert row.row_chunks == chunked
  assert ws.measurement_chunks(row, 4096).chunked == chunked
  assert ws.measurement_chunks(row, 4096).spans()[-1][1] == 4096


# ----------------------------------------------------------------------------- oracles

CASES = [(LT.SOFTMAX_CROSS_ENTROPY, 'ggn'), (LT.SIGMOID_CROSS_ENTROPY, 'ggn'),
         (LT.MEAN_SQUARED_ERROR, 'hessian'), (LT.MEAN_ABSOLUTE_ERROR, 'hessian'),
         (LT.CTC_LOSS, 'ggn')]
CHUNKS = ws.Chunks(4, 2, 3)  # 11 rows: 4 + 4 + 3


def _problem(loss_type, n=11):
  """Torch MLP + direction + a numpy batch {'inputs', 'targets', 'weights'} of n rows."""
  torch.manual_seed(0)
  out = 5 if loss_type == LT.CTC_LOSS else 3
  model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, out)).double()
  g = np.random.default_rng(1)
  u = [torch.tensor(g.normal(size=p.shape)) for p in model.parameters()]
  weights = (np.arange(n) % 3 != 1).astype(np.float64)
  if loss_type == LT.CTC_LOSS:
    x = g.normal(size=(n, 6, 4))
    paddings = np.zeros((n, 6))
    paddings[::2, 5:] = 1
    label_paddings = np.zeros((n, 3))
    label_paddings[1::3, 2:] = 1
    inputs, targets = (x, paddings), (g.integers(1, 5, (n, 3)), label_paddings)
  else:
    inputs = g.normal(size=(n, 4))
    targets = (g.integers(0, 3, (n,)) if loss_type == LT.SOFTMAX_CROSS_ENTROPY else
               g.integers(0, 2, (n, 3)).astype(np.float64) if loss_type == LT.SIGMOID_CROSS_ENTROPY
               else g.normal(size=(n, 3)))
  return model, u, {'inputs': inputs, 'targets': targets, 'weights': weights}


def _assert_sums_close(a, b, rtol):
  for x, y in zip(a, b):
    assert float(x) == pytest.approx(float(y), rel=rtol, abs=1e-12)


@pytest.mark.parametrize('loss_type,kind', CASES)
def test_torch_chunked_sums_equal_one_pass(loss_type, kind):
  model, u, np_batch = _problem(loss_type)
  batch = jax.tree.map(torch.as_tensor, np_batch)
  oracle = tc.ggn_quadratic_form if kind == 'ggn' else tc.hessian_quadratic_form

  def sums(part, state):
    def forward():
      if loss_type == LT.CTC_LOSS:
        return model(part['inputs'][0]), part['inputs'][1]
      return model(part['inputs'])
    return oracle(forward, model, u, part['targets'], loss_type, mask=part['weights'],
                  rng_state=state)

  whole = tc.chunked_sums(sums, batch, None, ws.Chunks(11, 1, 0))
  chunked = tc.chunked_sums(sums, batch, None, CHUNKS)
  _assert_sums_close(chunked, whole, 1e-12)
  assert float(whole.n) == float(sums(batch, None).n)
  if loss_type != LT.MEAN_ABSOLUTE_ERROR:
    assert float(whole.quad) != 0


@pytest.mark.parametrize('num_shards', [1, 2])
@pytest.mark.parametrize('loss_type,kind', CASES)
def test_jax_chunked_sums_equal_one_pass(loss_type, kind, num_shards):
  """num_shards=2: the chunks are cut from each of two blocks of 6 rows (4 + 2 each)."""
  model, u, np_batch = _problem(loss_type, n=12 if num_shards == 2 else 11)
  chunks = ws.Chunks(4, 1, 2) if num_shards == 2 else CHUNKS
  with enable_x64(True):
    names = ('w1', 'b1', 'w2', 'b2')
    to_jax = lambda p: jnp.asarray(p.detach().numpy().T if p.ndim == 2 else p.detach().numpy())
    params = {k: to_jax(p) for k, p in zip(names, model.parameters())}
    direction = {k: to_jax(v) for k, v in zip(names, u)}
    batch = jax.tree.map(jnp.asarray, np_batch)
    oracle = jc.ggn_quadratic_form if kind == 'ggn' else jc.hessian_quadratic_form

    def sums(part, key):
      del key
      def apply_fn(p):
        x = part['inputs'][0] if loss_type == LT.CTC_LOSS else part['inputs']
        logits = jnp.tanh(x @ p['w1'] + p['b1']) @ p['w2'] + p['b2']
        return (logits, part['inputs'][1]) if loss_type == LT.CTC_LOSS else logits
      return oracle(apply_fn, params, direction, part['targets'], loss_type,
                    mask=part['weights'])

    run = jax.jit(lambda b, c: jc.chunked_sums(sums, b, None, c, num_shards),
                  static_argnums=1)
    whole, chunked = run(batch, ws.Chunks(12 // num_shards, 1, 0)), run(batch, chunks)
    _assert_sums_close(chunked, whole, 1e-12)
    # The same blocks chunk by chunk, by hand: rows [0,4) and [4,6) of each block of 6.
    if num_shards == 2:
      pick = lambda rows: jax.tree.map(lambda x: x[np.r_[rows, 6 + rows]], batch)
      by_hand = [sums(pick(np.arange(0, 4)), None), sums(pick(np.arange(4, 6)), None)]
      _assert_sums_close(chunked, [a + b for a, b in zip(*by_hand)], 1e-12)


def test_torch_chunks_draw_own_masks_and_restore_the_generator():
  """With dropout a chunked measurement is deterministic for a given generator state,
  draws per-chunk masks (not one replayed mask per chunk) and leaves the global
  generators where they were."""
  torch.manual_seed(0)
  model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 1)).double()
  model.train()
  x = torch.randn(8, 4, dtype=torch.float64)
  batch = {'inputs': torch.cat([x, x]), 'targets': torch.ones(16, 1, dtype=torch.float64)}
  u = [torch.randn_like(p) for p in model.parameters()]
  per_chunk = []

  def sums(part, state):
    out = tc.ggn_quadratic_form(lambda: model(part['inputs']), model, u, part['targets'],
                                LT.SIGMOID_CROSS_ENTROPY, rng_state=state)
    per_chunk.append(float(out.quad))
    return out

  state = tc.rng_state()
  untouched = torch.rand(3)
  results = []
  for _ in range(2):
    torch.set_rng_state(state[0])
    results.append(tc.chunked_sums(sums, batch, state, ws.Chunks(8, 2, 0)))
    torch.testing.assert_close(torch.rand(3), untouched)  # the generator was not moved
  _assert_sums_close(*results, 0)
  assert per_chunk[0] != pytest.approx(per_chunk[1], rel=1e-6)  # same rows, other masks


# ----------------------------------------------------------------------------- submissions


@pytest.fixture(scope='module')
def dlrm(tmp_path_factory):
  """criteo1tb's DLRM at vocab 512 in both frameworks, one batch of 770 rows: the rule
  cuts it into 257 + 257 + 256."""
  data_dir = str(tmp_path_factory.mktemp('dlrm'))
  wt, wj = scale.make_workload('pytorch', 512, data_dir), scale.make_workload('jax', 512, data_dir)
  assert ws.measurement_chunks(ws.support(wj), 770) == ws.Chunks(257, 2, 256)
  return wt, wj, scale.torch_batches(1, 770, 512)[0], scale.jax_batches(1, 770, 512)[0]


def _one_pass(monkeypatch):
  monkeypatch.setattr(ws, 'measurement_chunks', lambda row, n: ws.Chunks(n, 1, 0))


def test_jax_submission_sums_chunked_equal_one_pass(dlrm, monkeypatch):
  _, wj, _, batch = dlrm
  params, _ = wj.init_model_fn(jax.random.PRNGKey(0))
  u = jax.tree.map(lambda p: 1e-2 * jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
  run = lambda: np.asarray(jax.jit(lambda p, d, b: jax_stepsize._sums(  # pylint: disable=protected-access
      wj, HP, 'ggn', None, p, d, b, jax.random.PRNGKey(2)))(params, u, batch)[:3])
  chunked = run()
  _one_pass(monkeypatch)
  whole = run()
  np.testing.assert_allclose(chunked, whole, rtol=2e-5)  # float32 reduction order
  assert whole[0] > 0


def test_torch_submission_sums_chunked_equal_one_pass(dlrm, monkeypatch):
  wt, _, batch, _ = dlrm
  torch.manual_seed(0)
  model, _ = wt.init_model_fn(np.array([0, 0]))
  g = torch.Generator().manual_seed(1)
  u = [1e-2 * torch.randn(p.shape, generator=g) for p in model.parameters()]
  run = lambda hp: np.array([float(x) for x in torch_stepsize._sums(  # pylint: disable=protected-access
      wt, model, None, batch, None, u, 'ggn', hp, tc.rng_state())[:3]])
  chunked, chunked_dropout = run(HP), run(HP_DROPOUT)
  _one_pass(monkeypatch)
  whole = run(HP)
  np.testing.assert_allclose(chunked, whole, rtol=2e-5)  # float32 reduction order
  assert whole[0] > 0
  # Dropout: other masks, the same loss scale (a sanity bound, not a parity check).
  np.testing.assert_allclose(chunked_dropout[2], whole[2], rtol=0.1)
