"""AlgoPerf's `spec` names: the real `algoperf.spec` when importable, else a stand-in.

The stand-in mirrors algoperf v0.6 (names and enum values), so submissions written
against it run unchanged under the real `submission_runner.py`, where the real
enums are the ones the workloads see.
"""
try:  # pragma: no cover - exercised only where AlgoPerf is installed
  from algoperf.spec import *  # noqa: F401,F403
  from algoperf import spec as _real
  ALGOPERF_AVAILABLE = True
  LossType = _real.LossType
  ForwardPassMode = _real.ForwardPassMode
  ParameterType = _real.ParameterType
  ShapeTuple = _real.ShapeTuple
  TrainingCompleteError = _real.TrainingCompleteError
  Workload = _real.Workload
except ImportError:
  ALGOPERF_AVAILABLE = False
  import abc
  import enum
  from typing import Any, Dict, Tuple, Union

  class LossType(enum.Enum):
    SOFTMAX_CROSS_ENTROPY = 0
    SIGMOID_CROSS_ENTROPY = 1
    MEAN_SQUARED_ERROR = 2
    CTC_LOSS = 3
    MEAN_ABSOLUTE_ERROR = 4

  class ForwardPassMode(enum.Enum):
    TRAIN = 0
    EVAL = 1

  class ParameterType(enum.Enum):
    WEIGHT = 0
    BIAS = 1
    CONV_WEIGHT = 2
    BATCH_NORM_SCALE = 3
    BATCH_NORM_BIAS = 4
    LAYER_NORM_SCALE = 5
    LAYER_NORM_BIAS = 6
    EMBEDDING = 7
    ATTENTION_Q = 8
    ATTENTION_K = 9
    ATTENTION_V = 10
    ATTENTION_OUT = 11
    ATTENTION_QKV = 12
    ATTENTION_KV = 13
    ATTENTION_BIAS = 14

  class ShapeTuple:
    """Wraps a shape so that pytree utilities treat it as a leaf."""

    def __init__(self, shape_tuple):
      self.shape_tuple = tuple(shape_tuple)

    def __repr__(self):
      return f'ShapeTuple({self.shape_tuple})'

    def __eq__(self, other):
      return isinstance(other, ShapeTuple) and self.shape_tuple == other.shape_tuple

  class TrainingCompleteError(Exception):
    """Raised by `update_params` to end training early."""

  Hyperparameters = Any
  RandomState = Any
  ModelAuxiliaryState = Any
  OptimizerState = Union[Dict[str, Any], Tuple[Any, Any]]
  ParameterContainer = Any
  UpdateReturn = Tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]

  class Workload(metaclass=abc.ABCMeta):
    """Marker base class; the embedded workloads implement AlgoPerf's interface."""
