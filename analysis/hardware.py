"""Hardware-aware budgets: hardware from meta_data, reference budgets, calibration.

Hardware key, '<count>x<model>-<memory>GB' (e.g. '8xV100-16GB', '4xA100-40GB'),
from a trial's meta_data_<p>.json (smallest p), either
  ours:     `hardware.accelerator` (device name or 'cpu'), `hardware.device_count`
            (flat dotted keys or nested {"hardware": {...}})
  AlgoPerf: `gpu_model_name`, `gpu_count` (GPUtil), memory from `gpu.0.mem.total`
            (MiB) when the name does not state it.
CPUs: 'CPU(<cpu_model_name>, <cpu_count> cores)'. Neither present: 'unknown'.

Budget of a trial of workload w on hardware h (first rule that applies):
  1. the hardware table (analysis/hardware.json, plus extra tables such as the
     output of `python -m analysis.calibrate`): profile h, version, w;
  2. the targets file's `max_runtime_sec` of w, if its `hardware` is h or unstated;
  3. the runner's own budget in meta_data (`workload.max_allowed_runtime_sec`);
  4. none: no budget cut, reported as unknown.
Self-tuning multiplies it by the version's factor (v0.6: 1.5, v0.5: 3), as the
runner does. The table stores null for budgets that are not known.

Calibration: step time of a run = accumulated_submission_time / global_step at
its last eval (AlgoPerf's `step_time (s)` summary column); per workload, the
factor is median step time on the new hardware / median on the reference
hardware, and the new budget is factor x reference budget.
"""
import json
import math
import os
import re
from typing import Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis import logs
from analysis import targets as targets_lib

DEFAULT_TABLE = os.path.join(os.path.dirname(__file__), 'hardware.json')
UNKNOWN = 'unknown'
_MODEL_RE = re.compile(r'(?<![A-Z0-9])([ABHLPTVK]\d{1,3}[A-Z]?|G[BH]200|MI\d{2,3}X?)(?![A-Z0-9])')
_MEMORY_RE = re.compile(r'(\d+)\s*GB')
_MEMORY_SIZES_GB = (8, 11, 12, 16, 24, 32, 40, 48, 80, 94, 96, 141, 192)


class Hardware(NamedTuple):
  key: str  # profile key, e.g. '8xV100-16GB', or 'unknown'
  accelerator: str  # device name as logged, or 'unknown'
  device_count: Optional[int]
  source: str  # which meta_data keys it came from


class Budget(NamedTuple):
  """The budget a trial is scored against."""
  seconds: Optional[float]  # limit on accumulated_submission_time, ruleset factor in; None: no cut
  hardware: str
  source: str


def _memory_gb(memory_mib: object) -> Optional[int]:
  """GPUtil's total MiB -> nearest marketed size (16160 -> 16), if within 5%."""
  try:
    gib = float(memory_mib) / 1024
  except (TypeError, ValueError):
    return None
  size = min(_MEMORY_SIZES_GB, key=lambda s: abs(s - gib))
  return size if abs(size - gib) <= 0.05 * size else round(gib)


def normalize_accelerator(name: str, memory_mib: object = None) -> str:
  """'Tesla V100-SXM2-16GB' -> 'V100-16GB'; unknown models keep a cleaned name."""
  upper = name.upper()
  match = _MODEL_RE.search(upper)
  if match:
    model = match.group(1)
  else:
    model = re.sub(r'[^A-Z0-9]+', '-', re.sub(r'^(NVIDIA|TESLA)\s+', '', upper)).strip('-')
  memory = _MEMORY_RE.search(upper)
  memory_gb = int(memory.group(1)) if memory else _memory_gb(memory_mib)
  return f'{model}-{memory_gb}GB' if memory_gb else model


def _as_count(value: object) -> Optional[int]:
  try:
    return int(value) if value is not None else None
  except (TypeError, ValueError):
    return None


def detect_hardware(meta: Mapping[str, object]) -> Hardware:
  """Hardware of a trial from its meta_data (nested or flat keys); see module docstring."""
  meta = logs.flatten(meta)
  ours = meta.get('hardware.accelerator')
  if ours is not None:
    name, count, source = str(ours), _as_count(meta.get('hardware.device_count')), 'hardware.*'
  elif meta.get('gpu_model_name') is not None:
    name = str(meta['gpu_model_name'])
    count = _as_count(meta.get('gpu_count', meta.get('gpu.count')))
    source = 'gpu_model_name/gpu_count'
  else:
    return Hardware(UNKNOWN, UNKNOWN, None, 'no hardware keys in meta_data')
  if name.strip().lower() == 'cpu':
    cpu = meta.get('hardware.cpu_model_name', meta.get('cpu_model_name', '?'))
    cores = meta.get('hardware.cpu_count', meta.get('cpu_count', '?'))
    return Hardware(f'CPU({cpu}, {cores} cores)', name, count, source)
  normalized = normalize_accelerator(name, meta.get('gpu.0.mem.total'))
  return Hardware(f'{count if count else "?"}x{normalized}', name, count, source)


def load_table(extra_paths: Sequence[str] = ()) -> Dict[str, dict]:
  """Profiles of analysis/hardware.json, then of each extra table (same format).

  A profile in a later table adds versions/workloads to (or replaces the values
  of) the same profile in an earlier one.
  """
  profiles = {}
  for path in (DEFAULT_TABLE,) + tuple(extra_paths):
    try:
      with open(path) as f:
        table = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e})') from e
    if not isinstance(table.get('profiles'), dict):
      raise ValueError(f'{path}: expected {{"profiles": {{key: {{"budgets": ...}}}}}}')
    for key, profile in table['profiles'].items():
      merged = profiles.setdefault(key, {'budgets': {}})
      for version, entry in profile.get('budgets', {}).items():
        if not isinstance(entry.get('max_runtime_sec'), dict):
          raise ValueError(f'{path}: profile {key!r} version {version!r}: '
                           '"max_runtime_sec" must be an object {workload: seconds|null}')
        old = merged['budgets'].setdefault(version, {'max_runtime_sec': {}, 'sources': {}})
        for workload, seconds in entry['max_runtime_sec'].items():
          old['max_runtime_sec'][workload] = seconds
          old['sources'][workload] = f'{os.path.basename(path)} {key} {version}: ' + entry.get(
              'source', 'no source given')
  return profiles


def table_budget(table: Mapping[str, dict], hardware: str, workload: str,
                 version: str) -> Tuple[Optional[float], str]:
  """(seconds, source) from the table; seconds None when not known."""
  entry = table.get(hardware, {}).get('budgets', {}).get(version)
  if entry is None:
    return None, f'no {version} budgets for {hardware} in the hardware table'
  seconds = entry['max_runtime_sec'].get(workload)
  if seconds is None:
    return None, f'{workload} budget on {hardware} unknown in the hardware table'
  return float(seconds), entry['sources'][workload]


def base_budget(workload: str, hardware: str, version: str, table: Mapping[str, dict],
                target: Optional[targets_lib.Target],
                meta: Mapping[str, object]) -> Tuple[Optional[float], str]:
  """Rules 1-4 of the module docstring, before the self-tuning factor."""
  seconds, why_not = table_budget(table, hardware, workload, version)
  if seconds is not None:
    return seconds, why_not
  if target is not None and target.max_runtime_sec is not None and target.hardware in (
      None, hardware):
    on = 'any hardware' if target.hardware is None else target.hardware
    return target.max_runtime_sec, f'{target.source} ({on})'
  recorded = meta.get('workload.max_allowed_runtime_sec')
  if isinstance(recorded, (int, float)) and not isinstance(recorded, bool) and recorded > 0:
    return float(recorded), 'meta_data workload.max_allowed_runtime_sec (the runner\'s own budget)'
  return None, f'unknown ({why_not}; no other budget source): no budget cut'


def resolve_budget(trial: logs.Trial, version: str, factor: float, table: Mapping[str, dict],
                   target: Optional[targets_lib.Target],
                   hardware_override: Optional[str] = None) -> Budget:
  """The Budget of one trial; `factor` is the ruleset multiplier (1 for external)."""
  hardware = hardware_override or detect_hardware(trial.meta).key
  seconds, source = base_budget(trial.workload, hardware, version, table, target, trial.meta)
  if seconds is None:
    return Budget(None, hardware, source)
  if factor != 1:
    return Budget(seconds * factor, hardware, f'{factor:g} x {seconds:g} s, {source}')
  return Budget(seconds, hardware, source)


def step_time(evals: pd.DataFrame) -> float:
  """accumulated_submission_time / global_step at the last eval with both valid (s)."""
  time_col = 'accumulated_submission_time' if 'accumulated_submission_time' in evals else 'score'
  if evals.empty or time_col not in evals or 'global_step' not in evals:
    return math.nan
  time = evals[time_col].to_numpy()
  steps = evals['global_step'].to_numpy()
  valid = np.flatnonzero(np.isfinite(time) & np.isfinite(steps) & (steps > 0))
  return float(time[valid[-1]] / steps[valid[-1]]) if valid.size else math.nan


class Calibration(NamedTuple):
  reference: str  # hardware key of the reference runs
  target: str  # hardware key of the new runs
  version: str
  table: pd.DataFrame  # one row per workload, columns in `calibrate`


def calibrate(reference_trials: Sequence[logs.Trial], new_trials: Sequence[logs.Trial],
              reference: str, target: str, version: str, table: Mapping[str, dict],
              targets: Mapping[str, targets_lib.Target]) -> Calibration:
  """Per-workload time-scale factor and budget for `target` hardware.

  Workloads that lack runs on either side, or a reference budget, get NaN.
  """
  rows = []
  workloads = sorted({t.workload for t in reference_trials} | {t.workload for t in new_trials})
  for workload in workloads:
    ref = [step_time(t.evals) for t in reference_trials if t.workload == workload]
    new = [step_time(t.evals) for t in new_trials if t.workload == workload]
    ref = [s for s in ref if math.isfinite(s)]
    new = [s for s in new if math.isfinite(s)]
    ref_step = float(np.median(ref)) if ref else math.nan
    new_step = float(np.median(new)) if new else math.nan
    factor = new_step / ref_step
    ref_budget, ref_source = base_budget(workload, reference, version, table,
                                         targets.get(workload), {})
    ref_budget = math.nan if ref_budget is None else ref_budget
    rows.append({
        'workload': workload, 'reference_step_time_s': ref_step, 'reference_runs': len(ref),
        'new_step_time_s': new_step, 'new_runs': len(new), 'factor': factor,
        'reference_budget_s': ref_budget, 'reference_budget_source': ref_source,
        'budget_s': factor * ref_budget,
    })
  return Calibration(reference, target, version, pd.DataFrame(rows))


def calibration_table(cal: Calibration, note: str = '') -> dict:
  """A hardware table (hardware.json format) holding the calibrated budgets."""
  budgets = {r.workload: (None if not math.isfinite(r.budget_s) else round(float(r.budget_s), 1))
             for r in cal.table.itertuples()}
  factors = ', '.join(f'{r.workload} x{r.factor:.4g} (median step {r.new_step_time_s:.4g} s over '
                      f'{r.new_runs} runs vs {r.reference_step_time_s:.4g} s over '
                      f'{r.reference_runs})' for r in cal.table.itertuples())
  source = f'calibrated against {cal.reference}: {factors}' + (f'; {note}' if note else '')
  return {'profiles': {cal.target: {
      'description': f'calibrated from {cal.reference} step times',
      'budgets': {cal.version: {'source': source, 'max_runtime_sec': budgets}}}}}

