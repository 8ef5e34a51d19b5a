"""Run directory, CSV metric logs and JSON metadata in AlgoPerf's layout and formats.

Layout: <experiment_dir>/<experiment_name>/<workload>_<framework>/trial_<k>/ with
eval_measurements.csv, measurements.csv, meta_data_<p>.json, flags_<p>.json and,
for external tuning, hparams.json. CSV columns follow AlgoPerf's MetricLogger: the
first row's keys sorted, later new keys appended in order of first appearance.
"""
import csv
import json
import math
import os
import pathlib
import platform
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psutil


def workload_dir(experiment_dir: str, experiment_name: str, workload: str,
                 framework: str, overwrite: bool, resume: bool
                 ) -> Tuple[pathlib.Path, List[pathlib.Path]]:
  """Creates (or reuses on resume) <experiment_dir>/<name>/<workload>_<framework>.

  An existing directory without --overwrite or --resume_last_run is an error (AlgoPerf
  prompts on stdin instead, which dies in scripts).
  -> (the directory, the directories this call created, outermost first; for
  `remove_failed_run`).
  """
  path = pathlib.Path(os.path.expanduser(experiment_dir)) / experiment_name / (
      f'{workload}_{framework}')
  if path.exists() and not resume:
    if not overwrite:
      raise FileExistsError(
          f'Experiment directory {path} already exists. Pass --overwrite to replace it, '
          '--resume_last_run to continue it, or choose another --experiment_name.')
    shutil.rmtree(path)
  created = [d for d in reversed((path, *path.parents)) if not d.exists()]
  path.mkdir(parents=True, exist_ok=True)
  return path, created


def remove_failed_run(created: Sequence[pathlib.Path],
                      checkpoint_name: str) -> Optional[pathlib.Path]:
  """After a failed run: removes the directories `workload_dir` created, unless the run
  directory (the last of them) holds a checkpoint, which --resume_last_run can continue.

  Outer directories are removed only if empty. -> the directory kept, or None.
  """
  if not created:
    return None
  run_dir = created[-1]
  if any(run_dir.glob(f'trial_*/{checkpoint_name}')):
    return run_dir
  shutil.rmtree(run_dir, ignore_errors=True)
  for d in reversed(created[:-1]):
    if d.is_dir() and not any(d.iterdir()):
      d.rmdir()
  return None


class CsvLog:
  """Append-only CSV with AlgoPerf's column rule; rewrites the file only when columns grow."""

  def __init__(self, path: pathlib.Path):
    self.path = pathlib.Path(path)
    self.columns = []
    self.rows = []
    if self.path.exists() and self.path.stat().st_size:
      with open(self.path, newline='') as f:
        reader = csv.DictReader(f)
        self.columns = list(reader.fieldnames or [])
        self.rows = list(reader)

  def append(self, row: Dict[str, Any]) -> None:
    new = [k for k in row if k not in self.columns]
    if not self.columns:
      new = sorted(new)
    self.columns += new
    self.rows.append({k: _csv_value(v) for k, v in row.items()})
    if new:
      with open(self.path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
    else:
      with open(self.path, 'a', newline='') as f:
        csv.DictWriter(f, fieldnames=self.columns).writerow(self.rows[-1])


def _csv_value(v):
  if hasattr(v, 'item'):
    v = v.item()
  if isinstance(v, float) and math.isnan(v):
    return 'nan'
  return v


class MetricLogger:
  """`append_scalar_metrics` as AlgoPerf's: evals go to both CSVs, others to measurements."""

  def __init__(self, trial_dir: pathlib.Path):
    self.measurements = CsvLog(trial_dir / 'measurements.csv')
    self.eval_measurements = CsvLog(trial_dir / 'eval_measurements.csv')

  def append_scalar_metrics(self, metrics: Dict[str, Any], global_step: int,
                            preemption_count: Optional[int] = None,
                            is_eval: bool = False) -> None:
    row = dict(metrics)
    row['global_step'] = global_step
    if preemption_count is not None:
      row['preemption_count'] = preemption_count
    self.measurements.append(row)
    if is_eval:
      self.eval_measurements.append(row)


def write_json(path: pathlib.Path, obj: Dict[str, Any]) -> None:
  with open(path, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)


def hardware_info(framework: str) -> Dict[str, Any]:
  """Accelerator kind and count of this run (read by analysis/ to pick fair budgets)."""
  info = {'framework': framework}
  if framework == 'jax':
    import jax
    devices = jax.devices()
    info['hardware.accelerator'] = devices[0].device_kind if devices[0].platform != 'cpu' else 'cpu'
    info['hardware.device_count'] = len(devices)
    info['jax_version'] = jax.__version__
  else:
    import torch
    from curvlr.pytorch import distributed
    if torch.cuda.is_available():
      info['hardware.accelerator'] = torch.cuda.get_device_name(0)
      for i in range(torch.cuda.device_count()):
        info[f'gpu_{i}_name'] = torch.cuda.get_device_name(i)
    else:
      info['hardware.accelerator'] = 'cpu'
    info['hardware.device_count'] = distributed.world_size()
    info['torch_version'] = torch.__version__
  return info


def meta_data(workload, framework: str, rng_seed: int) -> Dict[str, Any]:
  """AlgoPerf's meta_data: public primitive workload properties, system info, seed."""
  meta = {}
  for name in dir(type(workload)):
    if name.startswith('_') or not isinstance(getattr(type(workload), name, None), property):
      continue
    try:
      value = getattr(workload, name)
    except (NotImplementedError, ValueError):
      continue
    if isinstance(value, (int, float, str, bool)):
      meta[f'workload.{name}'] = value
  meta.update({
      'rng_seed': rng_seed,
      'os_platform': platform.platform(),
      'python_version': platform.python_version(),
      'cpu_model_name': platform.processor() or platform.machine(),
      'cpu_count': psutil.cpu_count(),
      'virtual_memory_total': psutil.virtual_memory().total,
      'command_line': ' '.join(sys.argv),
  })
  meta.update(hardware_info(framework))
  try:
    meta['git_commit_hash'] = subprocess.run(
        ['git', 'rev-parse', 'HEAD'], capture_output=True, text=True, timeout=5,
        cwd=pathlib.Path(__file__).parent).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    pass
  return meta
