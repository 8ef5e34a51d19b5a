"""Shared fixtures: a tiny synthetic Criteo directory in the real file format; `enable_x64`."""
import contextlib
import pathlib

import pytest

from curvlr.workloads.criteo import synthetic

TINY = synthetic.SyntheticConfig(seed=1, num_train_files=2, lines_per_train_file=3_000,
                                 num_validation_lines=2_000, num_test_lines=2_000)


@contextlib.contextmanager
def enable_x64(enabled: bool = True):
  """Scoped `jax_enable_x64`. `jax.enable_x64` is absent in AlgoPerf's jax 0.7.0 (there it is
  `jax.experimental.enable_x64`, gone in jax 0.10): the config flag works on both."""
  import jax
  previous = jax.config.jax_enable_x64
  jax.config.update('jax_enable_x64', enabled)
  try:
    yield
  finally:
    jax.config.update('jax_enable_x64', previous)


@pytest.fixture(scope='session')
def tiny_criteo_dir(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp('criteo_tiny')
  synthetic.generate(out, TINY)
  return out


@pytest.fixture(scope='session')
def small_criteo_dir(tmp_path_factory) -> pathlib.Path:
  """Enough train lines for 40 steps of batch 1024 in under one epoch: on the tiny set,
  runs that long overfit (validation loss > 1), where float32 reduction-order differences
  between 1 and 2 devices grow to several percent even for the NAdamW baseline."""
  out = tmp_path_factory.mktemp('criteo_small')
  synthetic.generate(out, synthetic.SyntheticConfig(
      seed=2, num_train_files=2, lines_per_train_file=25_000, num_validation_lines=2_000,
      num_test_lines=2_000))
  return out
