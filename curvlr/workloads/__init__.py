"""Workload registry of the local runner: name + framework -> Workload instance."""
import dataclasses
from typing import Optional

from curvlr.workloads.criteo import config as criteo_config

FRAMEWORKS = ('pytorch', 'jax')


def available() -> tuple:
  return tuple(sorted(criteo_config.CONFIGS))


def base_name(name: str) -> str:
  """The workload a variant derives from (AlgoPerf's get_base_workload_name), else `name`."""
  return criteo_config.BASE_NAMES.get(name, name)


def get_workload(name: str, framework: str, data_dir: Optional[str] = None,
                 step_hint: Optional[int] = None):
  """Builds a workload; unknown names or frameworks raise ValueError listing the valid ones.

  step_hint: replaces the workload's (batch-size studies: the same examples at another
  batch size); None keeps it.
  """
  if name not in criteo_config.CONFIGS:
    raise ValueError(f'Unknown workload {name!r}. Available: {", ".join(available())}.')
  if framework not in FRAMEWORKS:
    raise ValueError(f'Unknown framework {framework!r}. Use one of {FRAMEWORKS}.')
  cfg = criteo_config.CONFIGS[name]
  if step_hint is not None:
    if step_hint < 1:
      raise ValueError(f'step_hint = {step_hint}: must be >= 1.')
    cfg = dataclasses.replace(cfg, step_hint=int(step_hint))
  if framework == 'pytorch':
    from curvlr.workloads.criteo.pytorch_workload import CriteoPytorchWorkload
    return CriteoPytorchWorkload(cfg, data_dir)
  from curvlr.workloads.criteo.jax_workload import CriteoJaxWorkload
  return CriteoJaxWorkload(cfg, data_dir)
