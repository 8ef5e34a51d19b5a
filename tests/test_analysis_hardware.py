"""Hardware detection, budget table and resolution, calibration (analysis.hardware)."""
import json
import math

import pytest

from analysis import calibrate
from analysis import fixtures as fx
from analysis import hardware
from analysis import score
from analysis import targets

CRITEO = 0.123735
A100_META = {'gpu_model_name': 'NVIDIA A100-SXM4-40GB', 'gpu_count': 4}
H100_OURS = {'hardware': {'accelerator': 'NVIDIA H100 80GB HBM3', 'device_count': 1},
             'framework': 'jax'}


@pytest.mark.parametrize('meta, key', [
    (fx.V100_META, '8xV100-16GB'),
    (A100_META, '4xA100-40GB'),
    (H100_OURS, '1xH100-80GB'),
    ({'hardware.accelerator': 'NVIDIA H100 80GB HBM3', 'hardware.device_count': 2},
     '2xH100-80GB'),
    ({'gpu_model_name': 'NVIDIA H200', 'gpu_count': 1, 'gpu.0.mem.total': 143771.0},
     '1xH200-141GB'),
    ({'gpu_model_name': 'GeForce RTX 2080 Ti', 'gpu_count': 4}, '4xGEFORCE-RTX-2080-TI'),
    ({'hardware.accelerator': 'cpu', 'hardware.device_count': 1, 'cpu_model_name': 'EPYC',
      'cpu_count': 2}, 'CPU(EPYC, 2 cores)'),
    ({'os_platform': 'Linux'}, 'unknown'),
])
def test_detect_hardware(meta, key):
  assert hardware.detect_hardware(meta).key == key


def test_table_budgets_known_and_unknown():
  table = hardware.load_table()
  assert hardware.table_budget(table, '8xV100-16GB', 'criteo1tb', 'v0.6')[0] == 7703
  assert hardware.table_budget(table, '8xV100-16GB', 'fastmri', 'v0.5')[0] == 8859
  assert hardware.table_budget(table, '4xA100-40GB', 'criteo1tb', 'v0.6')[0] == 8915
  seconds, why = hardware.table_budget(table, '4xA100-40GB', 'fastmri', 'v0.6')
  assert seconds is None and 'unknown' in why
  assert hardware.table_budget(table, '1xH100-80GB', 'criteo1tb', 'v0.6')[0] is None


def test_budget_resolution_order():
  table = hardware.load_table()
  toy = targets.Target('toy', 'validation/loss', 0.5, True, 600.0, None, 'targets file t.json')
  seconds, source = hardware.base_budget('criteo1tb', '8xV100-16GB', 'v0.6', table, None, {})
  assert seconds == 7703 and 'hardware.json' in source
  seconds, source = hardware.base_budget('toy', '1xH100-80GB', 'v0.6', table, toy, {})
  assert seconds == 600 and 'any hardware' in source
  on_cpu = toy._replace(hardware='CPU(EPYC, 2 cores)')
  meta = {'workload.max_allowed_runtime_sec': 900}
  seconds, source = hardware.base_budget('toy', '1xH100-80GB', 'v0.6', table, on_cpu, meta)
  assert seconds == 900 and 'runner' in source
  seconds, source = hardware.base_budget('toy', '1xH100-80GB', 'v0.6', table, on_cpu, {})
  assert seconds is None and source.startswith('unknown')


def test_runs_scored_against_their_own_hardware_budget(tmp_path):
  # Same log (target reached at 8000 s) on two machines: inside A100's 8915 s, outside 7703 s.
  for sub, meta in (('on_v100', fx.V100_META), ('on_a100', A100_META)):
    for s in range(3):
      fx.write_trial(tmp_path, sub, f'study_{s}', 'criteo1tb', 1, (100, 8000),
                     fx.curve(2, 1, CRITEO), meta=meta)
  result = score.score_directory([str(tmp_path)], self_tuning=False).result
  assert result.raw_times.loc['on_a100', 'criteo1tb'] == 8000
  assert result.raw_times.loc['on_v100', 'criteo1tb'] == math.inf
  budgets = score.budget_summary(result).set_index('submission')
  assert budgets.loc['on_a100', 'hardware'] == '4xA100-40GB'
  assert budgets.loc['on_a100', 'budget_s'] == 8915
  assert 'a100' in budgets.loc['on_a100', 'budget_source'].lower()
  # Unknown hardware and no other source: no cut, stated as unknown.
  fx.write_trial(tmp_path / 'x', 'anon', 'study_0', 'criteo1tb', 1, (100, 99999),
                 fx.curve(2, 1, CRITEO), meta={})
  unknown = score.score_directory([str(tmp_path / 'x')]).result
  assert unknown.raw_times.loc['anon', 'criteo1tb'] == 99999
  assert unknown.trials['hardware'].iloc[0] == 'unknown'
  assert unknown.trials['budget_source'].iloc[0].startswith('unknown')


def test_hardware_override(tmp_path):
  for s in range(3):
    fx.write_trial(tmp_path, 'sub', f'study_{s}', 'criteo1tb', 1, (100, 8000),
                   fx.curve(2, 1, CRITEO))  # logged on V100
  result = score.score_directory([str(tmp_path)], hardware_arg='4xA100-40GB').result
  assert result.raw_times.loc['sub', 'criteo1tb'] == 8000


def test_step_time():
  frame = fx.eval_frame([10.0, 50.0], [1.0, 0.5], steps=[10, 100])
  assert hardware.step_time(frame) == 0.5


def _runs(root, submission, meta, step_time, n=3):
  steps = [100, 1000, 2000]
  for s in range(n):
    fx.write_trial(root, submission, f'study_{s}', 'criteo1tb', 1,
                   [step_time * st for st in steps], fx.curve(3, 2, CRITEO), steps=steps,
                   meta=meta)


def test_calibrate_cli_and_scoring_with_calibrated_budget(tmp_path, capsys):
  _runs(tmp_path / 'v100', 'nadamw', fx.V100_META, 0.5)
  _runs(tmp_path / 'h100', 'nadamw', H100_OURS, 0.25)
  out = tmp_path / 'h100.json'
  assert calibrate.main(['--reference_dir', str(tmp_path / 'v100'), '--target_dir',
                         str(tmp_path / 'h100'), '--output', str(out)]) == 0
  printed = capsys.readouterr().out
  assert '8xV100-16GB -> 1xH100-80GB' in printed
  table = json.loads(out.read_text())
  budget = table['profiles']['1xH100-80GB']['budgets']['v0.6']['max_runtime_sec']
  assert budget['criteo1tb'] == 0.5 * 7703
  # H100 hits at 0.25 * 2000 = 500 s: within 3851.5 s; the stated source is the calibration.
  result = score.score_directory([str(tmp_path / 'h100')], hardware_tables=[str(out)]).result
  assert result.trials['budget_s'].iloc[0] == 3851.5
  assert 'calibrated against 8xV100-16GB' in result.trials['budget_source'].iloc[0]


def test_calibrate_requires_known_hardware(tmp_path, capsys):
  _runs(tmp_path / 'a', 'nadamw', fx.V100_META, 0.5)
  _runs(tmp_path / 'b', 'nadamw', {}, 0.25)
  assert calibrate.main(['--reference_dir', str(tmp_path / 'a'), '--target_dir',
                         str(tmp_path / 'b'), '--output', str(tmp_path / 'o.json')]) == 1
  assert '--target_hardware' in capsys.readouterr().err
  assert calibrate.main(['--reference_dir', str(tmp_path / 'a'), '--target_dir',
                         str(tmp_path / 'b'), '--target_hardware', 'mybox',
                         '--output', str(tmp_path / 'o.json')]) == 0
