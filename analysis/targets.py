"""Workload targets: AlgoPerf's table, JSON targets files, and metric direction.

AlgoPerf (`scoring/scoring_utils.py::get_workload_metrics_and_targets`) reads a
workload's target by instantiating its class; we keep the same values as a table
(ALGOPERF.md section 3; every registry variant from its class in
`algoperf/workloads/*/*_jax/workload.py` at algoperf commit 2c90454f).

Workloads outside AlgoPerf (e.g. this project's `criteo_embedded`) come from a
targets file, JSON:

  {"criteo_embedded": {"metric": "validation/loss", "target": 0.1357,
                       "minimize": true, "max_runtime_sec": 600,
                       "hardware": "1xCPU(...)"}}

`minimize` may be omitted when AlgoPerf's substring rule can decide it; a value
that contradicts the rule is an error. `max_runtime_sec` (optional) is the
budget of the workload on `hardware` (optional; omitted means "any hardware");
`analysis.hardware` uses it when its table has no budget for the run's hardware.
A targets-file entry replaces the table's entry of the same name.
"""
import json
import math
import os
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

# AlgoPerf's `check_if_minimized` registry, same entries in the same order.
MIN_EVAL_METRICS = ('ce_loss', 'error_rate', 'ctc_loss', 'wer', 'l1_loss', 'loss')
MAX_EVAL_METRICS = ('mean_average_precision', 'ssim', 'accuracy', 'bleu')


def _minimize_registry() -> Dict[str, bool]:
  registry = {}
  for minimize, metrics in ((True, MIN_EVAL_METRICS), (False, MAX_EVAL_METRICS)):
    for split in ('train', 'validation'):
      for metric in metrics:
        registry[f'{split}/{metric}'] = minimize
  registry['train_cost'] = True
  return registry


MINIMIZE_REGISTRY = _minimize_registry()

BASE_WORKLOADS = (
    'criteo1tb', 'fastmri', 'imagenet_resnet', 'imagenet_vit',
    'librispeech_conformer', 'librispeech_deepspeech', 'ogbg', 'wmt')

# The v0.5 held-out sample (seed 3438810845), scoring/algoperf_v05/*.json.
V05_HELD_OUT_WORKLOADS = (
    'librispeech_conformer_layernorm', 'imagenet_resnet_large_bn_init',
    'ogbg_model_size', 'wmt_glu_tanh', 'fastmri_tanh', 'criteo1tb_embed_init')

# Every non-base workload in AlgoPerf's registry whose name contains a base name
# (algoperf/workloads/workloads.py at 2c90454f). AlgoPerf's v0.6 scoring applies
# the variant rules to any of these found in the logs.
ALGOPERF_VARIANTS = (
    'criteo1tb_test', 'criteo1tb_layernorm', 'criteo1tb_embed_init', 'criteo1tb_resnet',
    'fastmri_model_size', 'fastmri_tanh', 'fastmri_layernorm', 'imagenet_resnet_silu',
    'imagenet_resnet_gelu', 'imagenet_resnet_large_bn_init', 'imagenet_vit_glu',
    'imagenet_vit_post_ln', 'imagenet_vit_map', 'librispeech_conformer_attention_temperature',
    'librispeech_conformer_layernorm', 'librispeech_conformer_gelu',
    'librispeech_deepspeech_tanh', 'librispeech_deepspeech_no_resnet',
    'librispeech_deepspeech_norm_and_spec_aug', 'ogbg_gelu', 'ogbg_silu', 'ogbg_model_size',
    'wmt_post_ln', 'wmt_attention_temp', 'wmt_glu_tanh')


class Target(NamedTuple):
  """What a workload must reach, and (optionally) within which budget."""
  workload: str
  metric: str  # eval_measurements.csv column, e.g. 'validation/loss'
  target: float
  minimize: bool  # True: reached when metric <= target; False: when >= target
  max_runtime_sec: Optional[float] = None  # budget on `hardware`; None: not stated
  hardware: Optional[str] = None  # hardware key the budget refers to; None: any
  source: str = ''


def check_if_minimized(col_name: str) -> bool:
  """AlgoPerf's rule: first registry key that is a substring of the column name."""
  for prefix in ('best_', 'final_'):
    col_name = col_name.replace(prefix, '')
  for col, minimize in MINIMIZE_REGISTRY.items():
    if col in col_name:
      return minimize
  raise ValueError(
      f'Column {col_name!r} not found in the minimize registry as either a column '
      'name or a substring of a column name; state "minimize" in the targets file.')


def get_base_workload_name(workload: str) -> str:
  """AlgoPerf's rule: the first base workload whose name is a substring."""
  for base in BASE_WORKLOADS:
    if base in workload:
      return base
  return workload


_ALGOPERF_SOURCE = 'AlgoPerf v0.6 workload classes (ALGOPERF.md section 3)'
_VARIANT_SOURCE = 'AlgoPerf variant classes, algoperf@2c90454f workload.py'

ALGOPERF_TARGETS: Dict[str, Target] = {
    t.workload: t for t in (
        Target('criteo1tb', 'validation/loss', 0.123735, True, source=_ALGOPERF_SOURCE),
        Target('fastmri', 'validation/ssim', 0.723653, False, source=_ALGOPERF_SOURCE),
        Target('imagenet_resnet', 'validation/accuracy', 0.77431, False,
               source=_ALGOPERF_SOURCE),
        Target('imagenet_vit', 'validation/accuracy', 0.77309, False,
               source=_ALGOPERF_SOURCE),
        Target('librispeech_conformer', 'validation/wer', 0.085884, True,
               source=_ALGOPERF_SOURCE),
        Target('librispeech_deepspeech', 'validation/wer', 0.119936, True,
               source=_ALGOPERF_SOURCE),
        Target('ogbg', 'validation/mean_average_precision', 0.28098, False,
               source=_ALGOPERF_SOURCE),
        Target('wmt', 'validation/bleu', 30.8491, False, source=_ALGOPERF_SOURCE),
    )
}

# validation_target_value of every variant class in AlgoPerf's registry (the metric is
# the base workload's); equal to submissions_algorithms' scoring/workload_targets.json.
_VARIANT_TARGETS = {
    'criteo1tb_test': 0.123735,
    'criteo1tb_layernorm': 0.123757,
    'criteo1tb_embed_init': 0.129657,
    'criteo1tb_resnet': 0.12415,
    'fastmri_model_size': 0.723559,
    'fastmri_tanh': 0.71784,
    'fastmri_layernorm': 0.723284,
    'imagenet_resnet_silu': 0.75445,
    'imagenet_resnet_gelu': 0.76765,
    'imagenet_resnet_large_bn_init': 0.76526,
    'imagenet_vit_glu': 0.75738,
    'imagenet_vit_post_ln': 0.75312,
    'imagenet_vit_map': 0.77113,
    'librispeech_conformer_attention_temperature': 0.109977,
    'librispeech_conformer_layernorm': 0.09731,
    'librispeech_conformer_gelu': 0.094114,
    'librispeech_deepspeech_tanh': 0.150883,
    'librispeech_deepspeech_no_resnet': 0.131564,
    'librispeech_deepspeech_norm_and_spec_aug': 0.14342,
    'ogbg_gelu': 0.27771,
    'ogbg_silu': 0.282178,
    'ogbg_model_size': 0.269446,
    'wmt_post_ln': 30.0779,
    'wmt_attention_temp': 29.3379,
    'wmt_glu_tanh': 29.5779,
}
ALGOPERF_TARGETS.update({
    name: ALGOPERF_TARGETS[get_base_workload_name(name)]._replace(
        workload=name, target=value, source=_VARIANT_SOURCE)
    for name, value in _VARIANT_TARGETS.items()})


def _parse_entry(workload: str, entry: object, path: str) -> Target:
  """One targets-file entry -> Target; errors name the file, workload and field."""
  where = f'{path}: workload {workload!r}'
  if not isinstance(entry, Mapping):
    raise ValueError(f'{where}: expected an object, got {entry!r}')
  unknown = set(entry) - {'metric', 'target', 'minimize', 'max_runtime_sec', 'hardware'}
  if unknown:
    raise ValueError(f'{where}: unknown field(s) {sorted(unknown)}')
  metric = entry.get('metric')
  if not isinstance(metric, str) or not metric:
    raise ValueError(f'{where}: "metric" must be a column name such as '
                     f'"validation/loss", got {metric!r}')
  target = entry.get('target')
  if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(
      target):
    raise ValueError(f'{where}: "target" must be a finite number, got {target!r}')
  try:
    rule = check_if_minimized(metric)
  except ValueError:
    rule = None
  minimize = entry.get('minimize', rule)
  if not isinstance(minimize, bool):
    raise ValueError(f'{where}: "minimize" must be true or false (AlgoPerf\'s registry '
                     f'does not know {metric!r}), got {minimize!r}')
  if rule is not None and minimize != rule:
    raise ValueError(f'{where}: "minimize": {minimize} contradicts AlgoPerf\'s rule for '
                     f'{metric!r} (minimize={rule})')
  budget = entry.get('max_runtime_sec')
  if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                             or not budget > 0 or not math.isfinite(budget)):
    raise ValueError(f'{where}: "max_runtime_sec" must be a positive number or null, '
                     f'got {budget!r}')
  hardware = entry.get('hardware')
  if hardware is not None and not isinstance(hardware, str):
    raise ValueError(f'{where}: "hardware" must be a string, got {hardware!r}')
  return Target(workload, metric, float(target), minimize,
                None if budget is None else float(budget), hardware, f'targets file {path}')


def load_targets_file(path: str) -> Dict[str, Target]:
  """Reads a targets JSON file (format in the module docstring)."""
  try:
    with open(path) as f:
      raw = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON ({e})') from e
  if not isinstance(raw, Mapping) or not raw:
    raise ValueError(f'{path}: expected a non-empty object {{workload: {{...}}}}')
  return {w: _parse_entry(w, entry, path) for w, entry in raw.items()}


def get_targets(targets_file: Optional[str] = None) -> Dict[str, Target]:
  """AlgoPerf's table, extended/overridden by `targets_file`."""
  targets = dict(ALGOPERF_TARGETS)
  if targets_file:
    targets.update(load_targets_file(targets_file))
  return targets


TARGETS_FILENAME = 'targets.json'


def find_targets_file(submission_dirs: Sequence[str]) -> Tuple[Optional[str], List[str]]:
  """The nearest `targets.json` in each dir or its ancestors (e.g. the one the demo writes
  at the top of its experiment directory).

  Returns:
    (path or None, every directory searched, nearest first).
  Raises:
    ValueError: the dirs lead to different files (pass one with --targets).
  """
  found, searched = [], []
  for start in submission_dirs:
    directory = os.path.abspath(start)
    while True:
      searched.append(directory)
      candidate = os.path.join(directory, TARGETS_FILENAME)
      if os.path.isfile(candidate):
        found.append(candidate)
        break
      parent = os.path.dirname(directory)
      if parent == directory:
        break
      directory = parent
  if len(set(found)) > 1:
    raise ValueError(f'the submission dirs lead to different targets files {sorted(set(found))}; '
                     'pass the one to use with --targets')
  return (found[0] if found else None), list(dict.fromkeys(searched))
