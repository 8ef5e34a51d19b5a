"""Shared guards of the decision logic: scalar inputs, config fields, checkpointed state.

Framework code hands reduced scalars to `curvlr.core` as Python floats, numpy scalars or
0-d tensors; the update functions store them as `float(x)` so that every state stays
JSON-serialisable (`json.dumps(state._asdict(), allow_nan=False)`).
"""
import math
from typing import Any, Callable, Mapping, NamedTuple, Type, TypeVar

State = TypeVar('State', bound=NamedTuple)


def is_finite(*values: float) -> bool:
  """True when every value is finite (not NaN, not +-inf)."""
  return all(math.isfinite(v) for v in values)


def bounded_lr(proposal: float, previous: float, reference: float, lr_max: float,
               max_growth: float, min_lr: float) -> float:
  """The step-size guard both curvature rules share (absolute lrs):

      clip(proposal, min_lr, min(lr_max, max_growth * max(previous, reference)))

  `previous` is the lr in use, `reference` the rule's starting lr; the growth reference
  is never below it, so an lr that fell towards 0 can recover. `proposal` must be finite.
  """
  upper = min(lr_max, max_growth * max(previous, reference))
  return max(min_lr, min(proposal, upper))


def check(config: Any, field: str, ok: Callable[[Any], bool], requirement: str) -> None:
  """Raises ValueError naming the config class, the field and its value unless ok(value)."""
  value = getattr(config, field)
  if not ok(value):
    raise ValueError(f'{type(config).__name__}.{field} = {value!r}: must be {requirement}.')


def restore_state(cls: Type[State], data: Mapping[str, Any]) -> State:
  """Rebuilds a state NamedTuple from `state._asdict()` after a JSON round trip.

  JSON turns tuples into lists; they are turned back into tuples. Array checkpoints
  (numpy, or JAX after device_put) hold 0-d arrays: they become Python numbers. Missing
  or unknown fields raise ValueError (a checkpoint written by another version of the code).
  """
  fields, given = set(cls._fields), set(data)
  if fields != given:
    raise ValueError(f'Cannot restore {cls.__name__}: missing fields {sorted(fields - given)}, '
                     f'unknown fields {sorted(given - fields)}.')
  return cls(**{k: _plain(v) for k, v in data.items()})


def _plain(value: Any) -> Any:
  """Lists/tuples -> tuples of plain values; 0-d arrays -> Python numbers."""
  if isinstance(value, (list, tuple)):
    return tuple(_plain(v) for v in value)
  if hasattr(value, 'item') and getattr(value, 'ndim', 0) == 0:
    return value.item()
  return value
