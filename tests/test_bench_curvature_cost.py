"""Smoke test of bench/bench_curvature_cost.py: it runs and prints parseable, positive ratios."""
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_run_prints_positive_finite_ratios():
  proc = subprocess.run(
      [sys.executable, 'bench/bench_curvature_cost.py', '--quick', '--no_curvlinops'],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [line for line in proc.stdout.splitlines() if line.strip()]
  pairs = [line.split(': ', 1) for line in lines]
  assert all(len(p) == 2 and p[0] and ' ' not in p[0] for p in pairs), proc.stdout
  values = dict(pairs)
  ratios = {k: float(v) for k, v in values.items() if k.startswith('ratio_')}
  for suffix in ('torch', 'jax'):
    assert f'ratio_ggn_jvp_{suffix}' in ratios
    assert float(values[f'plain_step_s_{suffix}']) > 0
  assert all(math.isfinite(r) and r > 0 for r in ratios.values()), ratios
  assert [p[0] for p in pairs[-2:]] == ['ggn_jvp_full_batch_over_plain_step_jax',
                                        'ggn_jvp_full_batch_over_plain_step_torch']
