"""Smoke test of bench/bench_memory.py at tiny sizes: both frameworks print every peak and
ratio line, finite and positive, with the DLRM ratios last (no memory thresholds)."""
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_run_prints_positive_finite_ratios():
  proc = subprocess.run(
      [sys.executable, 'bench/bench_memory.py', '--vocab_size=512', '--batch_size=64',
       '--small_batch=8'], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  pairs = [line.split(': ', 1) for line in proc.stdout.splitlines() if line.strip()]
  assert all(len(p) == 2 and p[0] and ' ' not in p[0] for p in pairs), proc.stdout
  values = dict(pairs)
  for sfx in ('jax', 'torch'):
    for name in ('dlrm', 'ogbg', 'fastmri', 'librispeech_conformer'):
      for kind in ('plain', 'cdat', 'two_batch'):
        assert float(values[f'peak_mib_{name}_{kind}_{sfx}']) > 0, (name, kind, sfx)
      for kind in ('cdat', 'two_batch'):
        ratio = float(values[f'ratio_{name}_{kind}_over_plain_{sfx}'])
        assert math.isfinite(ratio) and ratio > 0, (name, kind, sfx)
  assert [p[0] for p in pairs[-4:]] == [
      'ratio_dlrm_cdat_over_plain_jax', 'ratio_dlrm_two_batch_over_plain_jax',
      'ratio_dlrm_cdat_over_plain_torch', 'ratio_dlrm_two_batch_over_plain_torch']
