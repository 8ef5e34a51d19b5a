"""Compatibility with the real AlgoPerf package (skipped where it is not installed)."""
import pytest

from curvlr import spec


def test_standin_enum_values_match_algoperf_v06():
  assert [m.value for m in spec.LossType] == [0, 1, 2, 3, 4]
  assert spec.LossType.SIGMOID_CROSS_ENTROPY.value == 1
  assert [m.value for m in spec.ForwardPassMode] == [0, 1]
  assert len(spec.ParameterType) == 15


def test_real_spec_is_used_when_installed():
  algoperf_spec = pytest.importorskip('algoperf.spec')
  assert spec.ALGOPERF_AVAILABLE
  assert spec.LossType is algoperf_spec.LossType
  assert spec.TrainingCompleteError is algoperf_spec.TrainingCompleteError
