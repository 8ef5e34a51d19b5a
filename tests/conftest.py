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
