"""2 JAX CPU devices and 2 gloo processes give the single-device results."""
import csv
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _evals(trial_dir):
  with open(trial_dir / 'eval_measurements.csv', newline='') as f:
    return [(int(r['global_step']), float(r['train/loss']), float(r['validation/loss']))
            for r in csv.DictReader(f)]


def _run(cmd, env_extra, tmp_path, name, framework, data_dir, steps=4):
  env = dict(os.environ, **env_extra)
  args = [f'--framework={framework}', '--workload=criteo_embedded',
          f'--submission_path=submissions/self_tuning/nadamw/{framework}_submission.py',
          f'--data_dir={data_dir}', f'--experiment_dir={tmp_path}', f'--experiment_name={name}',
          f'--max_global_steps={steps}', '--rng_seed=0', '--progress_every_sec=0',
          '--save_checkpoints=false']
  proc = subprocess.run(cmd + args, cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return _evals(tmp_path / name / f'criteo_embedded_{framework}' / 'trial_1')


def test_jax_two_devices_match_one(tmp_path, tiny_criteo_dir):
  cmd = [sys.executable, '-m', 'curvlr.runner']
  one = _run(cmd, {'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}, tmp_path,
             'one', 'jax', tiny_criteo_dir)
  two = _run(cmd, {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}, tmp_path,
             'two', 'jax', tiny_criteo_dir)
  assert [s for s, *_ in one] == [s for s, *_ in two]
  for (_, t1, v1), (_, t2, v2) in zip(one, two):  # same rng: same dropout masks
    assert t1 == pytest.approx(t2, rel=1e-5) and v1 == pytest.approx(v2, rel=1e-5)


def test_torchrun_two_processes_match_one(tmp_path, tiny_criteo_dir):
  one = _run([sys.executable, '-m', 'curvlr.runner'], {}, tmp_path, 'one', 'pytorch',
             tiny_criteo_dir)
  two = _run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
              '--nproc_per_node=2', '-m', 'curvlr.runner'], {'OMP_NUM_THREADS': '1'},
             tmp_path, 'two', 'pytorch', tiny_criteo_dir)
  assert [s for s, *_ in one] == [s for s, *_ in two]
  # Dropout masks come from each rank's torch RNG, so trajectories differ slightly.
  for (_, t1, v1), (_, t2, v2) in zip(one, two):
    assert t1 == pytest.approx(t2, rel=2e-3) and v1 == pytest.approx(v2, rel=2e-3)
