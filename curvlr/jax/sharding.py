"""One-axis data-parallel mesh, as AlgoPerf v0.6 (jit + GSPMD, no pmap)."""
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def mesh() -> Mesh:
  return Mesh(jax.devices(), ('batch',))


def replicated() -> NamedSharding:
  return NamedSharding(mesh(), P())


def batch_sharded() -> NamedSharding:
  return NamedSharding(mesh(), P('batch'))


def replicate(tree):
  return jax.device_put(tree, replicated())


def shard_batch(tree):
  return jax.device_put(tree, batch_sharded())
