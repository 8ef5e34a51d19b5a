"""Smoke test of bench/bench_submission_overhead.py: parseable lines, finite overheads."""
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CURVATURE = ('cdat_nadamw', 'ggn_median_nadamw')


@pytest.mark.slow
def test_quick_pytorch_run_prints_finite_overheads():
  proc = subprocess.run(
      [sys.executable, 'bench/bench_submission_overhead.py', '--quick', '--framework', 'pytorch'],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [line for line in proc.stdout.splitlines() if line.strip()]
  pairs = [line.split(': ', 1) for line in lines]
  assert all(len(p) == 2 and p[0] and ' ' not in p[0] for p in pairs), proc.stdout
  values = dict(pairs)
  for name in ('nadamw', 'nadamw_again', 'policy_only') + CURVATURE:
    assert float(values[f'step_s_{name}_torch']) > 0
  # Quick mode: CDAT measures at its first two steps, the median at every step (W, W + 1, ...).
  assert int(values['measurements_cdat_nadamw_torch']) >= 1
  assert int(values['measurements_ggn_median_nadamw_torch']) == 4
  overheads = {name: float(values[f'measured_overhead_{name}_torch']) for name in CURVATURE}
  assert all(math.isfinite(x) and x > -1 for x in overheads.values()), overheads
  assert math.isfinite(float(values['bookkeeping_overhead_torch']))
  assert math.isfinite(float(values['noise_torch']))
  for name in CURVATURE:  # measured = accounted + bookkeeping + unexplained, exactly
    parts = [float(values[f'{k}_torch']) for k in (
        f'policy_overhead_{name}', 'bookkeeping_overhead', f'unexplained_{name}')]
    if all(math.isfinite(x) for x in parts):
      assert sum(parts) == pytest.approx(overheads[name], abs=2e-4)
  assert [p[0] for p in pairs[-2:]] == ['measured_overhead_ggn_median_nadamw_torch',
                                        'measured_overhead_cdat_nadamw_torch']
