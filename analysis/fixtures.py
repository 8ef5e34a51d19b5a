"""Writes small synthetic run directories in AlgoPerf's layout (tests, demos).

`write_trial` produces `<root>/<submission>/<study>/<workload>_<framework>/trial_<k>/`
with eval_measurements.csv in AlgoPerf's exact column set (criteo: the columns
listed in ALGOPERF.md 2.5; other metrics: the same set with `loss` renamed),
meta_data_0.json and flags_0.json with AlgoPerf's keys, and optionally
measurements.csv.
"""
import json
import os
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

CRITEO_EVAL_COLUMNS = (
    'accumulated_eval_time', 'accumulated_logging_time', 'accumulated_submission_time',
    'global_step', 'preemption_count', 'score', 'test/loss', 'test/num_examples',
    'total_duration', 'train/loss', 'validation/loss', 'validation/num_examples')

V100_META = {'gpu_model_name': 'Tesla V100-SXM2-16GB', 'gpu_count': 8,
             'cpu_model_name': 'Intel(R) Xeon(R) CPU @ 2.20GHz', 'cpu_count': 96,
             'os_platform': 'Linux-5.15-x86_64-with-glibc2.31', 'python_version': '3.11.10'}


def curve(num_evals: int, hit_index: Optional[int], target: float,
          minimize: bool = True) -> np.ndarray:
  """Metric values that first reach `target` at `hit_index` (None: never)."""
  gap = np.linspace(1.0, 0.1, num_evals)  # shrinking distance to the target
  sign = 1.0 if minimize else -1.0
  values = target + sign * gap
  if hit_index is not None:
    values[hit_index:] = target - sign * 0.01 * np.arange(1, num_evals - hit_index + 1)
  return values


def eval_frame(times: Sequence[float], values: Sequence[float],
               metric: str = 'validation/loss', steps: Optional[Sequence[int]] = None,
               preemption_count: Sequence[int] = ()) -> pd.DataFrame:
  """eval_measurements.csv rows: columns sorted like AlgoPerf's first-row keys."""
  n = len(times)
  name = metric.split('/', 1)[1]
  times = np.asarray(times, dtype=float)
  values = np.asarray(values, dtype=float)
  eval_time = 10.0 * np.arange(1, n + 1)
  columns = {
      'accumulated_eval_time': eval_time,
      'accumulated_logging_time': 0.5 * np.arange(n),
      'accumulated_submission_time': times,
      'global_step': np.asarray(steps if steps is not None else 100 * np.arange(1, n + 1)),
      'preemption_count': np.asarray(preemption_count if len(preemption_count) else [0] * n),
      'score': times,
      f'test/{name}': values + 0.002,
      'test/num_examples': [95_000_000] * n,
      'total_duration': times + eval_time,
      f'train/{name}': values - 0.002,
      metric: values,
      'validation/num_examples': [83_274_637] * n,
  }
  return pd.DataFrame({k: columns[k] for k in sorted(columns)})


def write_trial(root: str, submission: str, study: str, workload: str, trial: int,
                times: Sequence[float], values: Sequence[float],
                metric: str = 'validation/loss', framework: str = 'jax',
                steps: Optional[Sequence[int]] = None, preemption_count: Sequence[int] = (),
                meta: Optional[Mapping[str, object]] = None,
                flags: Optional[Mapping[str, object]] = None,
                measurements: Optional[Dict[str, Sequence[float]]] = None,
                ruleset: Optional[str] = None) -> str:
  """Writes one trial dir; returns its path. meta=None writes 8xV100 AlgoPerf keys;
  `ruleset` ('self'/'external') is written as flags' tuning_ruleset (None: not recorded)."""
  path = os.path.join(root, submission, study, f'{workload}_{framework}', f'trial_{trial}')
  os.makedirs(path, exist_ok=True)
  frame = eval_frame(times, values, metric, steps, preemption_count)
  frame.to_csv(os.path.join(path, 'eval_measurements.csv'), index=False)
  with open(os.path.join(path, 'meta_data_0.json'), 'w') as f:
    json.dump(dict(V100_META if meta is None else meta), f, indent=2)
  with open(os.path.join(path, 'flags_0.json'), 'w') as f:
    recorded = {'framework': framework}
    if ruleset is not None:
      recorded['tuning_ruleset'] = ruleset
    json.dump(dict(recorded, **(flags or {})), f, indent=2)
  if measurements is not None:
    pd.DataFrame(measurements).to_csv(os.path.join(path, 'measurements.csv'), index=False)
  return path
