"""AlgoPerf's rng plumbing: raw JAX keys for JAX, a numpy int32 pair for PyTorch."""
import numpy as np

_MIN_INT32, _MAX_INT32 = np.iinfo(np.int32).min, np.iinfo(np.int32).max


class NumpyPRNG:
  """Counter-free splittable rng on int32 pairs, like algoperf.random_utils' numpy fallback."""

  @staticmethod
  def key(seed: int) -> np.ndarray:
    return NumpyPRNG.split(np.asarray([0, seed % 2**32], np.int64), 2)[0]

  @staticmethod
  def split(key, num: int = 2) -> np.ndarray:
    state = np.random.RandomState((np.asarray(key, np.int64).ravel() % 2**32).astype(np.uint32))
    return state.randint(_MIN_INT32, _MAX_INT32, size=(num, 2), dtype=np.int32)

  @staticmethod
  def fold_in(key, data: int) -> np.ndarray:
    mixed = np.asarray(key, np.int64).ravel().copy()
    mixed[-1] = (mixed[-1] * 1_000_003 + data) % 2**32
    return NumpyPRNG.split(mixed, 1)[0]


class JaxPRNG:
  """Raw (uint32[2]) threefry keys, as AlgoPerf's runner uses."""

  @staticmethod
  def key(seed: int):
    import jax
    return jax.random.PRNGKey(seed)

  @staticmethod
  def split(key, num: int = 2):
    import jax
    return jax.random.split(key, num)

  @staticmethod
  def fold_in(key, data: int):
    import jax
    return jax.random.fold_in(key, data)


def for_framework(framework: str):
  return JaxPRNG if framework == 'jax' else NumpyPRNG
