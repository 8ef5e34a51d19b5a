"""Loading a submission module by path, as AlgoPerf's runner does, with clear errors."""
import importlib
import importlib.util
import os
import pathlib
import sys
import types

REQUIRED = ('init_optimizer_state', 'update_params', 'data_selection', 'get_batch_size')


class MissingApiError(AttributeError):
  """A submission module lacks a required AlgoPerf API function."""


def load(submission_path: str) -> types.ModuleType:
  """Relative path -> dotted module import (AlgoPerf); absolute path -> file import."""
  path = pathlib.Path(submission_path)
  if path.suffix != '.py':
    raise ValueError(f'--submission_path must name a .py file, got {submission_path!r}.')
  if not path.exists():
    raise FileNotFoundError(f'Submission file {submission_path} does not exist.')
  if path.is_absolute():
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  else:
    if os.getcwd() not in sys.path:
      sys.path.insert(0, os.getcwd())
    module = importlib.import_module(str(path.with_suffix('')).replace(os.sep, '.'))
  missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
  if missing:
    raise MissingApiError(f'Submission {submission_path} lacks the AlgoPerf API function(s) '
                         f'{", ".join(missing)} (required: {", ".join(REQUIRED)}).')
  return module


def batch_size(module: types.ModuleType, workload_name: str) -> int:
  """AlgoPerf: try the full name, on ValueError retry the base name (variant -> base)."""
  from curvlr import workloads
  try:
    return module.get_batch_size(workload_name)
  except ValueError:
    base = workloads.base_name(workload_name)
    if base == workload_name:
      raise
    return module.get_batch_size(base)
