"""Shared fixtures: a tiny synthetic Criteo directory in the real file format."""
import pathlib

import pytest

from curvlr.workloads.criteo import synthetic

TINY = synthetic.SyntheticConfig(seed=1, num_train_files=2, lines_per_train_file=3_000,
                                 num_validation_lines=2_000, num_test_lines=2_000)


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
