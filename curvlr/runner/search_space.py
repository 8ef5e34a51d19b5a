"""External-tuning search spaces in AlgoPerf's two JSON forms -> hyperparameter points."""
import collections
import json
import math
from typing import Any, Dict, List

import numpy as np


def load_points(path: str, num_trials: int, seed: int) -> List[Any]:
  """List form: the first `num_trials` points in order. Dict form: quasi-random points.

  The dict form ({name: {min, max, scaling}} or {name: {feasible_points}}) is sampled
  with a scrambled Halton sequence seeded by `seed` (AlgoPerf's own sampler uses an
  unseeded shuffle, so its points are not reproducible either way).
  """
  with open(path) as f:
    space = json.load(f)
  if isinstance(space, list):
    points = space[:num_trials]
  elif isinstance(space, dict):
    points = _sample(space, num_trials, seed)
  else:
    raise ValueError(f'{path}: a search space is a JSON list of points or a dict of ranges.')
  if not points:
    raise ValueError(f'{path}: the search space holds no point.')
  names = sorted({k for p in points for k in p})
  Hyperparameters = collections.namedtuple('Hyperparameters', names)
  return [Hyperparameters(**{k: p.get(k) for k in names}) for p in points]


def _sample(space: Dict[str, Dict], num_trials: int, seed: int) -> List[Dict[str, Any]]:
  from scipy.stats import qmc
  names = sorted(space)
  u = qmc.Halton(d=len(names), scramble=True, seed=seed).random(num_trials)
  points = []
  for row in u:
    point = {}
    for name, x in zip(names, row):
      spec = space[name]
      if 'feasible_points' in spec:
        options = spec['feasible_points']
        point[name] = options[min(int(x * len(options)), len(options) - 1)]
      elif spec.get('scaling', 'linear') == 'log':
        point[name] = spec['min'] * math.exp(x * math.log(spec['max'] / spec['min']))
      else:
        point[name] = spec['min'] + x * (spec['max'] - spec['min'])
      if isinstance(point[name], np.generic):
        point[name] = point[name].item()
    points.append(point)
  return points
