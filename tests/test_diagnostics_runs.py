"""Submissions with CURVLR_DIAGNOSTICS on write the diagnostics to measurements.csv."""
import csv
import math
import os
import pathlib

import pytest

from curvlr.core import metric_names
from curvlr.runner import __main__ as runner

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _diagnostic_rows(tmp_path, data_dir, framework, submission, steps=4):
  os.chdir(ROOT)
  runner.run([
      f'--framework={framework}', '--workload=criteo_embedded',
      f'--submission_path=submissions/{submission}/{framework}_submission.py',
      f'--data_dir={data_dir}', f'--experiment_dir={tmp_path}', '--experiment_name=exp',
      f'--max_global_steps={steps}', '--rng_seed=0', '--progress_every_sec=0'])
  path = tmp_path / 'exp' / f'criteo_embedded_{framework}' / 'trial_1' / 'measurements.csv'
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  return _measured(rows)


def _measured(rows):
  """The rows of the diagnostic steps, and the held-out changes' rows (logged at the
  next update, under the diagnostic step's global_step)."""
  return ([r for r in rows if r.get('sharpness')],
          [r for r in rows if r.get('quad_heldout_change')])


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
@pytest.mark.parametrize('submission', ['self_tuning/nadamw', 'self_tuning/cdat_nadamw'])
def test_columns_written(tmp_path, tiny_criteo_dir, monkeypatch, framework, submission):
  monkeypatch.setenv('CURVLR_DIAGNOSTICS', 'k=2,iterations=3')
  rows, held_out = _diagnostic_rows(tmp_path, tiny_criteo_dir, framework, submission)
  assert [int(r['global_step']) for r in rows] == [0, 2]
  # At step 0: no timed step yet, lr = 0 (no thresholds).
  late = ('diag_overhead_fraction', 'sharpness_threshold', 'precond_threshold')
  for name in set(metric_names.DIAGNOSTICS) - {'quad_heldout_change'}:
    assert all(r[name] and math.isfinite(float(r[name]))
               for r in rows[name in late:]), (name, rows)
  assert float(rows[-1]['diag_count']) == 2
  # Steps 1 and 3 evaluate the held-out changes of steps 0 and 2 (both passes with the
  # same masks: the baseline's step 0 has lr 0, so its change is exactly 0).
  assert [int(r['global_step']) for r in held_out] == [0, 2]
  changes = [float(r['quad_heldout_change']) for r in held_out]
  assert all(math.isfinite(c) for c in changes) and changes[1] != 0.0
  assert changes[0] == 0.0 or submission != 'self_tuning/nadamw'


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_schedule_free_reports_sharpness_only(tmp_path, tiny_criteo_dir, monkeypatch,
                                              framework):
  monkeypatch.setenv('CURVLR_DIAGNOSTICS', 'k=2,iterations=3')
  rows, held_out = _diagnostic_rows(tmp_path, tiny_criteo_dir, framework,
                                    'self_tuning/schedule_free_adamw')
  assert len(rows) == 2 and not held_out and all(not r.get('precond_sharpness') for r in rows)
  assert all(not r.get('quad_predicted_change') for r in rows)


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_malformed_switch_fails_at_init(tmp_path, tiny_criteo_dir, monkeypatch, framework):
  monkeypatch.setenv('CURVLR_DIAGNOSTICS', 'every=2')
  with pytest.raises(ValueError, match='CURVLR_DIAGNOSTICS'):
    _diagnostic_rows(tmp_path, tiny_criteo_dir, framework, 'self_tuning/nadamw')


def _losses(tmp_path, framework, submission):
  path = tmp_path / 'exp' / f'criteo_embedded_{framework}' / 'trial_1' / 'measurements.csv'
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  return rows, [(r['global_step'], r['loss']) for r in rows if r.get('loss')]


@pytest.mark.parametrize('submission', ['self_tuning/nadamw', 'self_tuning/cdat_nadamw',
                                        'self_tuning/schedule_free_adamw'])
def test_jax_off_writes_no_columns_and_on_keeps_the_losses(tmp_path, tiny_criteo_dir,
                                                           monkeypatch, submission):
  """Off: no diagnostic column, no 'diagnostics' entry in the checkpoint; on: the same
  training losses as off (the measurements do not touch the trajectory)."""
  import pickle  # pylint: disable=import-outside-toplevel
  monkeypatch.delenv('CURVLR_DIAGNOSTICS', raising=False)
  _diagnostic_rows(tmp_path / 'off', tiny_criteo_dir, 'jax', submission)
  rows, off = _losses(tmp_path / 'off', 'jax', submission)
  assert not set(metric_names.DIAGNOSTICS) & set(rows[0])
  trial = tmp_path / 'off' / 'exp' / 'criteo_embedded_jax' / 'trial_1'
  with open(trial / 'checkpoint.pkl', 'rb') as f:
    opt_state = pickle.load(f)['opt_state']
  assert not (isinstance(opt_state, dict) and 'diagnostics' in opt_state)
  monkeypatch.setenv('CURVLR_DIAGNOSTICS', 'k=2,iterations=3')
  _diagnostic_rows(tmp_path / 'on', tiny_criteo_dir, 'jax', submission)
  _, on = _losses(tmp_path / 'on', 'jax', submission)
  assert on == off and len(off) >= 2


def _subprocess_rows(cmd, env_extra, tmp_path, framework, submission, extra=()):
  """Diagnostic rows of a 4-step run of `cmd` (the runner, or torchrun around it)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  env = dict(os.environ, **env_extra)
  proc = subprocess.run(
      cmd + [f'--framework={framework}', '--workload=criteo_embedded',
             f'--submission_path=submissions/{submission}/{framework}_submission.py',
             f'--data_dir={env_extra["DATA_DIR"]}', f'--experiment_dir={tmp_path}',
             '--experiment_name=exp', '--max_global_steps=4', '--rng_seed=0',
             '--progress_every_sec=0', '--save_checkpoints=false', *extra],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows, _ = _losses(tmp_path, framework, submission)
  return _measured(rows)


# float32 sums in another order: ~1e-7 relative in H v. P^-1/2 = (sqrt(v_hat) + eps)^-1/2
# scales entries whose gradient is ~0 (embedding rows the batch missed) by up to 1/sqrt(eps),
# so the preconditioned value of 3 unconverged iterations moves ~2e-4 relative.
TOLERANCES = {'sharpness': dict(rel=1e-5), 'precond_sharpness': dict(rel=1e-3),
              'quad_predicted_change': dict(rel=1e-5, abs=1e-7),
              'quad_realized_change': dict(rel=1e-5, abs=1e-6)}


def _assert_rows_match(one, two):
  """`_measured` pairs of two runs: the same steps and values."""
  held_out_tolerance = {'quad_heldout_change': dict(rel=1e-5, abs=1e-6)}
  for a_rows, b_rows, tolerances in ((one[0], two[0], TOLERANCES),
                                     (one[1], two[1], held_out_tolerance)):
    assert [r['global_step'] for r in a_rows] == [r['global_step'] for r in b_rows] == ['0', '2']
    for a, b in zip(a_rows, b_rows):
      for name, tol in tolerances.items():
        assert float(b[name]) == pytest.approx(float(a[name]), **tol), (name, a['global_step'])


def test_jax_two_devices_match_one(tmp_path, tiny_criteo_dir):
  """2 virtual CPU devices (batch sharded, params replicated) give the 1-device values."""
  import sys  # pylint: disable=import-outside-toplevel
  out = {}
  for count in (1, 2):
    env = dict(CURVLR_DIAGNOSTICS='k=2,iterations=3', DATA_DIR=str(tiny_criteo_dir),
               XLA_FLAGS=f'--xla_force_host_platform_device_count={count}')
    out[count] = _subprocess_rows([sys.executable, '-m', 'curvlr.runner'], env,
                                  tmp_path / str(count), 'jax', 'self_tuning/nadamw')
  _assert_rows_match(out[1], out[2])


def test_torchrun_two_processes_match_one(tmp_path, tiny_criteo_dir):
  """2 gloo processes (each half the batch, H v all-reduced) give the 1-process values.

  External-tuning NAdamW with dropout 0 (each rank draws its own dropout masks, so with
  dropout the two runs would train on different masks) and the switch as the point's
  `diagnostics` hyperparameter (CURVLR_DIAGNOSTICS unset)."""
  import json  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  space = tmp_path / 'space.json'
  space.write_text(json.dumps([{'dropout_rate': 0.0, 'diagnostics': 'k=2,iterations=3'}]))
  extra = ('--tuning_ruleset=external', f'--tuning_search_space={space}')
  env = dict(CURVLR_DIAGNOSTICS='', DATA_DIR=str(tiny_criteo_dir), OMP_NUM_THREADS='1')
  runner_cmd = ['-m', 'curvlr.runner']
  one = _subprocess_rows([sys.executable, *runner_cmd], env, tmp_path / '1', 'pytorch',
                         'external_tuning/nadamw', extra)
  two = _subprocess_rows([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                          '--nproc_per_node=2', *runner_cmd], env, tmp_path / '2', 'pytorch',
                         'external_tuning/nadamw', extra)
  _assert_rows_match(one, two)


@pytest.mark.parametrize('framework', ['jax', 'pytorch'])
def test_resume_continues_the_diagnostics(tmp_path, tiny_criteo_dir, monkeypatch, framework):
  """3 steps, then a resumed run to 5, give the uninterrupted 5-step diagnostics: the
  checkpoint after step 2 holds its pending held-out params (evaluated at step 3), the
  warm starts (step 4's eigenvalues) and the counts (diag_count 3 at step 4).

  PyTorch: external-tuning NAdamW with dropout 0 and the switch as the point's
  `diagnostics` (a resumed run does not restore the torch generators, so dropout masks
  would differ); JAX: the self-tuning baseline and CURVLR_DIAGNOSTICS (masks from the
  step's rng)."""
  import json  # pylint: disable=import-outside-toplevel
  submission, extra = 'self_tuning/nadamw', []
  if framework == 'pytorch':
    monkeypatch.delenv('CURVLR_DIAGNOSTICS', raising=False)
    submission = 'external_tuning/nadamw'
    space = tmp_path / 'space.json'
    space.write_text(json.dumps([{'dropout_rate': 0.0, 'diagnostics': 'k=2,iterations=3'}]))
    extra = ['--tuning_ruleset=external', f'--tuning_search_space={space}']
  else:
    monkeypatch.setenv('CURVLR_DIAGNOSTICS', 'k=2,iterations=3')

  def run(root, steps, *more):
    os.chdir(ROOT)
    runner.run([
        f'--framework={framework}', '--workload=criteo_embedded',
        f'--submission_path=submissions/{submission}/{framework}_submission.py',
        f'--data_dir={tiny_criteo_dir}', f'--experiment_dir={root}', '--experiment_name=exp',
        f'--max_global_steps={steps}', '--rng_seed=0', '--progress_every_sec=0', *extra, *more])
    return _measured(_losses(root, framework, submission)[0])

  whole = run(tmp_path / 'whole', 5)
  run(tmp_path / 'parts', 3)
  parts = run(tmp_path / 'parts', 5, '--resume_last_run')
  # PyTorch on CPU is not bit-reproducible run to run (~2e-5 relative in the preconditioned
  # value of 3 unconverged iterations already at step 0): the multi-device tolerances.
  held_out_tolerance = {'quad_heldout_change': dict(rel=1e-5, abs=1e-6)}
  for a_rows, b_rows, tolerances in ((whole[0], parts[0], TOLERANCES),
                                     (whole[1], parts[1], held_out_tolerance)):
    assert [r['global_step'] for r in a_rows] == [r['global_step'] for r in b_rows] == [
        '0', '2', '4'][:len(a_rows)] and len(a_rows) >= 2
    for a, b in zip(a_rows, b_rows):
      for name, tol in tolerances.items():
        assert float(b[name]) == pytest.approx(float(a[name]), **tol), (name, a['global_step'])
  assert [r['global_step'] for r in parts[1]] == ['0', '2']  # step 2's: after the resume
  assert float(parts[0][-1]['diag_count']) == 3
