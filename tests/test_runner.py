"""Local runner: AlgoPerf's directory layout, CSV columns, stop rules and errors."""
import csv
import json
import os
import pathlib
import subprocess
import sys

import pytest

from curvlr.runner import __main__ as runner

ROOT = pathlib.Path(__file__).resolve().parents[1]
EVAL_COLUMNS = ('accumulated_eval_time,accumulated_logging_time,accumulated_submission_time,'
                'global_step,preemption_count,score,test/loss,test/num_examples,'
                'total_duration,train/loss,validation/loss,validation/num_examples').split(',')


def _run(tmp_path, data_dir, framework='pytorch', steps=3, extra=()):
  os.chdir(ROOT)
  return runner.run([
      f'--framework={framework}', '--workload=criteo_embedded',
      f'--submission_path=submissions/self_tuning/nadamw/{framework}_submission.py',
      f'--data_dir={data_dir}', f'--experiment_dir={tmp_path}', '--experiment_name=exp',
      f'--max_global_steps={steps}', '--rng_seed=0', '--progress_every_sec=0', *extra])


def _rows(path):
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_layout_and_columns(tmp_path, tiny_criteo_dir, framework):
  (result,) = _run(tmp_path, tiny_criteo_dir, framework)
  trial = tmp_path / 'exp' / f'criteo_embedded_{framework}' / 'trial_1'
  assert result.trial_dir == trial and result.global_step == 3
  for name in ('eval_measurements.csv', 'measurements.csv', 'meta_data_0.json', 'flags_0.json'):
    assert (trial / name).is_file(), name
  assert not (trial / 'hparams.json').exists()  # self-tuning: no hparams
  columns, rows = _rows(trial / 'eval_measurements.csv')
  assert columns == EVAL_COLUMNS
  # First eval right after step 1 (last_eval_time starts at 0), final eval at max steps.
  assert [int(r['global_step']) for r in rows][0] == 1
  assert int(rows[-1]['global_step']) == 3
  scores = [float(r['score']) for r in rows]
  assert scores == sorted(scores) and scores[0] > 0
  m_columns, m_rows = _rows(trial / 'measurements.csv')
  assert m_columns[:len(EVAL_COLUMNS)] == EVAL_COLUMNS or 'loss' in m_columns
  assert m_rows[-1]['score'] and not m_rows[-1]['validation/loss']  # final score-only row
  meta = json.loads((trial / 'meta_data_0.json').read_text())
  assert meta['workload.step_hint'] > 0 and meta['rng_seed'] == 0
  assert meta['framework'] == framework and meta['hardware.device_count'] >= 1


def test_existing_dir_needs_overwrite(tmp_path, tiny_criteo_dir):
  _run(tmp_path, tiny_criteo_dir, steps=1)
  with pytest.raises(FileExistsError, match='--overwrite'):
    _run(tmp_path, tiny_criteo_dir, steps=1)
  _run(tmp_path, tiny_criteo_dir, steps=1, extra=['--overwrite'])


def test_resume_continues_from_checkpoint(tmp_path, tiny_criteo_dir):
  _run(tmp_path, tiny_criteo_dir, steps=2)
  (result,) = _run(tmp_path, tiny_criteo_dir, steps=4, extra=['--resume_last_run'])
  trial = result.trial_dir
  assert (trial / 'meta_data_1.json').is_file()
  _, rows = _rows(trial / 'eval_measurements.csv')
  assert [r['preemption_count'] for r in rows][-1] == '1'
  assert int(rows[-1]['global_step']) == 4


def test_clear_errors(tmp_path, tiny_criteo_dir):
  with pytest.raises(ValueError, match='Unknown workload'):
    runner.run(['--workload=nope', '--submission_path=submissions/self_tuning/nadamw/'
                'pytorch_submission.py', f'--experiment_dir={tmp_path}'])
  with pytest.raises(FileNotFoundError, match='does not exist'):
    _run(tmp_path, tmp_path / 'missing')
  bad = tmp_path / 'bad_submission.py'
  bad.write_text('def get_batch_size(name):\n  return 8\n')
  with pytest.raises(AttributeError, match='init_optimizer_state'):
    runner.run([f'--submission_path={bad}', f'--data_dir={tiny_criteo_dir}',
                f'--experiment_dir={tmp_path}'])


def test_cli_exit_code_and_message(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'curvlr.runner', '--workload=nope',
       '--submission_path=submissions/self_tuning/nadamw/pytorch_submission.py',
       f'--experiment_dir={tmp_path}'], cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 2 and 'Unknown workload' in proc.stderr


def test_eval_every_steps_evaluates_on_step_multiples(tmp_path, tiny_criteo_dir):
  (result,) = _run(tmp_path, tiny_criteo_dir, steps=7,
                   extra=['--eval_every_steps=3', '--save_checkpoints=false'])
  assert [step for step, _ in result.eval_results] == [3, 6, 7]  # and the final step
