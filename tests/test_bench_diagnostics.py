"""Smoke test of bench/bench_diagnostics.py at tiny sizes: both frameworks print every
line, finite and positive where they must be, with the amortized overheads last (no
timed assertions)."""
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_run_prints_costs_and_overheads():
  proc = subprocess.run(
      [sys.executable, 'bench/bench_diagnostics.py', '--batch_size=64', '--iterations=2',
       '--warmup=2', '--repeats=1'],
      cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  pairs = [line.split(': ', 1) for line in proc.stdout.splitlines() if line.strip()]
  assert all(len(p) == 2 and p[0] and ' ' not in p[0] for p in pairs), proc.stdout
  values = dict(pairs)
  for sfx in ('jax', 'torch'):
    assert int(values[f'diagnostic_rows_{sfx}']) == 3 and int(values[f'held_out_rows_{sfx}']) == 2
    for name in ('plain_step_s', 'diagnostic_step_s'):
      assert float(values[f'{name}_{sfx}']) > 0, (name, sfx)
    assert math.isfinite(float(values[f'extra_over_plain_{sfx}']))
    assert int(values[f'k_for_2pct_{sfx}']) >= 1
    assert math.isfinite(float(values[f'amortized_overhead_default_{sfx}']))
  assert [p[0] for p in pairs[-2:]] == ['amortized_overhead_default_jax',
                                        'amortized_overhead_default_torch']
