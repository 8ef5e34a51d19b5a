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
  for name in ('nadamw',) + CURVATURE:
    assert float(values[f'step_s_{name}_torch']) > 0
  assert int(values['measurements_nadamw_torch']) == 0
  # Quick mode: CDAT measures at its first two steps, the median at every step (W, W + 1, ...).
  assert int(values['measurements_cdat_nadamw_torch']) >= 1
  assert int(values['measurements_ggn_median_nadamw_torch']) == 4
  overheads = {name: float(values[f'overhead_{name}_torch']) for name in CURVATURE}
  assert all(math.isfinite(x) and x > -1 for x in overheads.values()), overheads
  assert [p[0] for p in pairs[-2:]] == ['overhead_ggn_median_nadamw_torch',
                                        'overhead_cdat_nadamw_torch']
