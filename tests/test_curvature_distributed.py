"""Curvature sums across devices: 2 gloo processes (PyTorch) and 2 virtual CPU devices (JAX)
give the single-process full-batch values."""
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from curvlr import spec
from curvlr.pytorch import curvature as C

ROOT = pathlib.Path(__file__).resolve().parents[1]
LT = spec.LossType
_METHODS = (('ggn', 'jvp'), ('ggn', 'fd'), ('hessian', 'double_backward'), ('hessian', 'fd'))


def _problem():
  torch.manual_seed(0)
  model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 3)).double()
  g = torch.Generator().manual_seed(1)
  x = torch.randn(12, 5, generator=g, dtype=torch.float64)
  y = torch.randint(0, 3, (12,), generator=g)
  mask = (torch.arange(12) % 5 != 0).to(torch.float64)
  u = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in model.parameters()]
  return model, x, y, mask, u


def _all_sums(module, forward_fn, u, y, mask):
  out = {}
  for kind, method in _METHODS:
    fn = C.ggn_quadratic_form if kind == 'ggn' else C.hessian_quadratic_form
    sums = fn(forward_fn, module, u, y, LT.SOFTMAX_CROSS_ENTROPY, mask=mask,
              label_smoothing=0.1, method=method)
    out[(kind, method)] = torch.stack([torch.as_tensor(v, dtype=torch.float64)
                                       for v in C.all_reduce_sums(sums)])
  return out


def _worker(rank, world, init_file, out_dir):
  dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                          world_size=world)
  torch.set_num_threads(1)
  model, x, y, mask, u = _problem()
  ddp = nn.parallel.DistributedDataParallel(model)
  part = slice(rank * 12 // world, (rank + 1) * 12 // world)
  local = C.unwrap(ddp)
  sums = _all_sums(ddp, lambda: local(x[part]), u, y[part], mask[part])
  torch.save(sums, os.path.join(out_dir, f'rank{rank}.pt'))
  dist.destroy_process_group()


def test_two_gloo_processes_all_reduce_to_the_full_batch(tmp_path):
  mp.spawn(_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2, join=True)
  model, x, y, mask, u = _problem()
  full = _all_sums(model, lambda: model(x), u, y, mask)
  ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]
  for key, value in full.items():
    assert torch.equal(ranks[0][key], ranks[1][key]), key  # every rank sees the same values
    rtol = 1e-6 if key[1] == 'fd' else 1e-12  # FD amplifies BLAS roundoff differences
    np.testing.assert_allclose(ranks[0][key].numpy(), value.numpy(), rtol=rtol, err_msg=key)


_JAX_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from curvlr import spec
    from curvlr.jax import curvature as C
    jax.config.update('jax_enable_x64', True)
    assert jax.device_count() == 2, jax.devices()
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    params = {'w1': jax.random.normal(k[0], (5, 8)), 'b1': jnp.zeros(8),
              'w2': jax.random.normal(k[1], (8, 3)) / 3, 'b2': jnp.zeros(3)}
    u = jax.tree.map(lambda p: jax.random.normal(k[2], p.shape), params)
    batch = {'inputs': jax.random.normal(k[3], (16, 5)),
             'targets': jax.random.randint(k[4], (16,), 0, 3),
             'weights': (jnp.arange(16) % 5 != 0).astype(jnp.float64)}

    def oracles(params, u, batch):
      apply_fn = lambda p: (jnp.tanh(batch['inputs'] @ p['w1'] + p['b1']) @ p['w2'] + p['b2'])
      kw = dict(mask=batch['weights'], label_smoothing=0.1)
      return [f(apply_fn, params, u, batch['targets'], spec.LossType.SOFTMAX_CROSS_ENTROPY,
                method=m, **kw)
              for f in (C.ggn_quadratic_form, C.hessian_quadratic_form) for m in ('jvp', 'fd')]

    mesh = Mesh(jax.devices(), ('batch',))
    sharded = jax.device_put(batch, NamedSharding(mesh, P('batch')))
    assert len(sharded['inputs'].sharding.device_set) == 2
    rep = lambda t: jax.device_put(t, NamedSharding(mesh, P()))
    got = jax.jit(oracles)(rep(params), rep(u), sharded)
    one = jax.devices()[0]
    want = jax.jit(oracles)(*jax.device_put((params, u, batch), one))
    for i, (g, w) in enumerate(zip(got, want)):  # jvp, fd, jvp, fd: FD amplifies roundoff
      np.testing.assert_allclose(np.array(g), np.array(w), rtol=1e-12 if i % 2 == 0 else 1e-7)
    sub = jax.jit(lambda b: C.sub_batch(b, 8, num_shards=2))(sharded)
    got = jax.jit(oracles)(rep(params), rep(u), sub)
    want = jax.jit(oracles)(*jax.device_put((params, u, C.sub_batch(batch, 8, num_shards=2)), one))
    for i, (g, w) in enumerate(zip(got, want)):  # jvp, fd, jvp, fd: FD amplifies roundoff
      np.testing.assert_allclose(np.array(g), np.array(w), rtol=1e-12 if i % 2 == 0 else 1e-7)
    print('OK')
""")


def test_two_virtual_jax_devices_match_one():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
             PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', _JAX_SCRIPT], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 and 'OK' in proc.stdout, proc.stderr[-3000:]
