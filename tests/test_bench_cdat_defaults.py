"""Smoke test of bench/bench_cdat_defaults.py: it runs and prints parseable, finite results."""
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ('nadamw', 'default', 'sigma1', 'every_step', 'every50', 'hessian_every50')


@pytest.mark.slow
def test_quick_run_prints_finite_results():
  proc = subprocess.run([sys.executable, 'bench/bench_cdat_defaults.py', '--quick'],
                        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  pairs = [line.split(': ', 1) for line in proc.stdout.splitlines() if line.strip()]
  assert all(len(p) == 2 and p[0] and ' ' not in p[0] for p in pairs), proc.stdout
  values = dict(pairs)
  steps = int(values['steps'])
  for name in CONFIGS:
    for key in (f'val_loss_{steps}_{name}', f'lr_final_{name}'):
      assert math.isfinite(float(values[key])) and float(values[key]) >= 0, key
    assert int(values[f'measurements_{name}']) >= (name != 'nadamw')
  assert int(values['measurements_every_step']) == steps
  assert pairs[-1][0] == f'val_loss_{steps}_default_minus_nadamw'
  assert math.isfinite(float(pairs[-1][1]))
