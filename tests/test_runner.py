"""Local runner: AlgoPerf's directory layout, CSV columns, stop rules and errors."""
import csv
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

from curvlr import workloads
from curvlr.runner import __main__ as runner
from curvlr.runner import flags, logs, loop
from curvlr.workloads.criteo import config as criteo_config
from curvlr.workloads.criteo import data as data_lib

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
      *([f"--max_global_steps={steps}"] if steps else []), "--rng_seed=0",
      "--progress_every_sec=0", *extra])


def _rows(path):
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_layout_and_columns(tmp_path, tiny_criteo_dir, framework, capsys):
  (result,) = _run(tmp_path, tiny_criteo_dir, framework)
  how = 'no DDP' if framework == 'pytorch' else 'jit over all local devices'
  assert f'device: cpu x 1 (1 process, {how})' in capsys.readouterr().out
  trial = tmp_path / 'exp' / f'criteo_embedded_{framework}' / 'trial_1'
  assert result.trial_dir == trial and result.global_step == 3
  for name in ('eval_measurements.csv', 'measurements.csv', 'meta_data_0.json', 'flags_0.json',
               loop.RUN_SUMMARY):
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
  with pytest.raises(FileNotFoundError, match='does not exist'):
    _run(tmp_path, tmp_path / 'missing')
  bad = tmp_path / 'bad_submission.py'
  bad.write_text('def get_batch_size(name):\n  return 8\n')
  with pytest.raises(AttributeError, match='init_optimizer_state'):
    runner.run([f'--submission_path={bad}', f'--data_dir={tiny_criteo_dir}',
                f'--experiment_dir={tmp_path}'])


def test_unknown_workload_lists_the_valid_names(capsys):
  with pytest.raises(SystemExit) as e:
    runner.run(['--workload=nope', '--submission_path=x.py'])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "invalid choice: 'nope'" in err
  assert all(name in err for name in workloads.available())
  with pytest.raises(ValueError, match='Unknown workload'):  # the registry itself
    workloads.get_workload('nope', 'pytorch')


def test_help_text_for_every_flag():
  parser = flags.parser()
  for action in parser._actions:  # pylint: disable=protected-access
    assert action.help and action.help.strip(), action.option_strings
  workload = next(a for a in parser._actions if '--workload' in a.option_strings)  # pylint: disable=protected-access
  assert tuple(workload.choices) == workloads.available()
  for name in workloads.available():
    assert name in workload.help


def _corrupt_copy(src, dst):
  """A copy of a data directory whose first train file has a malformed first line."""
  shutil.copytree(src, dst)
  first = sorted(dst.glob('day_0_*'))[0]
  lines = first.read_bytes().split(b'\n')
  first.write_bytes(b'\n'.join([b'not\ta\tcriteo\tline'] + lines[1:]))
  return dst


def test_failed_run_leaves_no_directory_behind(tmp_path, tiny_criteo_dir):
  bad = _corrupt_copy(tiny_criteo_dir, tmp_path / 'bad_data')
  with pytest.raises(data_lib.CriteoFormatError, match='day_0_'):
    _run(tmp_path / 'exp_root', bad, steps=2)
  assert not (tmp_path / 'exp_root').exists()  # everything it created is gone
  (result,) = _run(tmp_path / 'exp_root', tiny_criteo_dir, steps=1)  # no --overwrite needed
  assert result.global_step == 1


def test_failed_resumed_or_checkpointed_runs_are_kept(tmp_path):
  run_dir = tmp_path / 'a' / 'b'
  (run_dir / 'trial_1').mkdir(parents=True)
  (run_dir / 'trial_1' / 'eval_measurements.csv').write_text('x\n')
  assert logs.remove_failed_run([], loop.CHECKPOINT) is None  # resumed: nothing created
  assert run_dir.exists()
  (run_dir / 'trial_1' / loop.CHECKPOINT).write_bytes(b'')
  assert logs.remove_failed_run([tmp_path / 'a', run_dir], loop.CHECKPOINT) == run_dir
  assert (run_dir / 'trial_1' / loop.CHECKPOINT).exists()
  (run_dir / 'trial_1' / loop.CHECKPOINT).unlink()
  assert logs.remove_failed_run([tmp_path / 'a', run_dir], loop.CHECKPOINT) is None
  assert not (tmp_path / 'a').exists()


def test_cli_exit_codes_and_messages(tmp_path, tiny_criteo_dir):
  def cli(*extra):
    return subprocess.run(
        [sys.executable, '-m', 'curvlr.runner', '--max_global_steps=1', '--progress_every_sec=0',
         '--submission_path=submissions/self_tuning/nadamw/pytorch_submission.py',
         f'--experiment_dir={tmp_path / "exp"}', *extra], cwd=ROOT, capture_output=True,
        text=True)
  bad = _corrupt_copy(tiny_criteo_dir, tmp_path / 'bad_data')
  proc = cli(f'--data_dir={bad}')
  assert proc.returncode == 2, proc.stderr
  assert 'error:' in proc.stderr and 'expected 40 tab-separated fields' in proc.stderr
  assert 'removed what it created' in proc.stderr and not (tmp_path / 'exp').exists()
  crash = tmp_path / 'crash_submission.py'
  crash.write_text(textwrap.dedent("""
      from submissions.self_tuning.nadamw.pytorch_submission import *  # noqa
      def update_params(*args, **kwargs):
        raise RuntimeError('boom')
      """))
  proc = cli(f'--data_dir={tiny_criteo_dir}', f'--submission_path={crash}')
  assert proc.returncode == 1 and 'RuntimeError: boom' in proc.stderr
  assert not (tmp_path / 'exp').exists()


@pytest.mark.parametrize('change, steps, reason', [
    (dict(validation_target_value=10.0, test_target_value=10.0), 5, 'target'),
    (dict(max_allowed_runtime_sec=1e-9), 5, 'budget'),
    ({}, 2, 'max_global_steps'),
])
def test_stop_reason_recorded_and_printed(tmp_path, tiny_criteo_dir, monkeypatch, capsys,
                                          change, steps, reason):
  cfg = criteo_config.CONFIGS['criteo_embedded']
  monkeypatch.setitem(criteo_config.CONFIGS, 'criteo_embedded',
                      dataclasses.replace(cfg, **change))
  (result,) = _run(tmp_path, tiny_criteo_dir, steps=steps, extra=['--save_checkpoints=false'])
  assert result.stop_reason == reason
  summary = json.loads((result.trial_dir / loop.RUN_SUMMARY).read_text())
  assert summary['stop_reason'] == reason and summary['global_step'] == result.global_step
  assert summary['stop_reason_text'] == loop.STOP_REASONS[reason]
  if reason == 'target':
    assert result.global_step == 1 and summary['steps_to_validation_target'] == 1
  else:
    assert summary['steps_to_validation_target'] is None
  out = capsys.readouterr().out
  assert f'stopped after {result.global_step} steps: {loop.STOP_REASONS[reason]}' in out


def test_training_complete_error_is_a_stop_reason(tmp_path, tiny_criteo_dir):
  done = tmp_path / 'done_submission.py'
  done.write_text(textwrap.dedent("""
      from curvlr import spec
      from submissions.self_tuning.nadamw import pytorch_submission as base
      from submissions.self_tuning.nadamw.pytorch_submission import *  # noqa
      def update_params(*args, **kwargs):
        if kwargs['global_step'] == 2:
          raise spec.TrainingCompleteError
        return base.update_params(*args, **kwargs)
      """))
  (result,) = runner.run([
      f'--submission_path={done}', f'--data_dir={tiny_criteo_dir}',
      f'--experiment_dir={tmp_path}', '--max_global_steps=10', '--progress_every_sec=0',
      '--save_checkpoints=false'])
  assert result.stop_reason == 'training_complete' and result.global_step == 3


def test_stop_reason_precedence():
  kw = dict(goals_reached=False, training_complete_error=False, global_step=5,
            max_global_steps=5, is_time_remaining=False)
  assert loop.stop_reason(**{**kw, 'goals_reached': True}) == 'target'
  assert loop.stop_reason(**{**kw, 'training_complete_error': True}) == 'training_complete'
  assert loop.stop_reason(**kw) == 'max_global_steps'
  assert loop.stop_reason(**{**kw, 'max_global_steps': None}) == 'budget'
  with pytest.raises(ValueError):
    loop.stop_reason(**{**kw, 'max_global_steps': None, 'is_time_remaining': True})


def test_header_states_device_processes_and_hyperparameters(tmp_path, tiny_criteo_dir, capsys):
  _run(tmp_path, tiny_criteo_dir, steps=1, extra=['--save_checkpoints=false'])
  out = capsys.readouterr().out
  assert 'device: cpu x 1 (1 process, no DDP)' in out
  assert 'hyperparameters: none (self-tuning' in out
  (result,) = runner.run([
      '--tuning_ruleset=external', '--tuning_search_space=tuning_search_spaces/cdat_nadamw.json',
      '--submission_path=submissions/external_tuning/cdat_nadamw/pytorch_submission.py',
      f'--data_dir={tiny_criteo_dir}', f'--experiment_dir={tmp_path}', '--experiment_name=ext',
      '--max_global_steps=1', '--progress_every_sec=0', '--save_checkpoints=false'])
  hparams = json.loads((result.trial_dir / 'hparams.json').read_text())
  out = capsys.readouterr().out
  assert 'hyperparameters: ' + ', '.join(f'{k}={v}' for k, v in sorted(hparams.items())) in out


def test_eval_every_steps_evaluates_on_step_multiples(tmp_path, tiny_criteo_dir):
  (result,) = _run(tmp_path, tiny_criteo_dir, steps=7,
                   extra=['--eval_every_steps=3', '--save_checkpoints=false'])
  assert [step for step, _ in result.eval_results] == [3, 6, 7]  # and the final step


def test_stop_at_target_false_trains_past_the_target(tmp_path, tiny_criteo_dir, monkeypatch):
  cfg = criteo_config.CONFIGS['criteo_embedded']
  monkeypatch.setitem(criteo_config.CONFIGS, 'criteo_embedded',
                      dataclasses.replace(cfg, validation_target_value=10.0,
                                          test_target_value=10.0))
  (result,) = _run(tmp_path, tiny_criteo_dir, steps=4,
                   extra=['--eval_every_steps=2', '--stop_at_target=false',
                          '--save_checkpoints=false'])
  summary = json.loads((result.trial_dir / loop.RUN_SUMMARY).read_text())
  assert result.global_step == 4 and result.stop_reason == 'max_global_steps'
  assert summary['steps_to_validation_target'] == 2  # the first hit is still recorded
  with pytest.raises(ValueError, match='trains forever'):
    _run(tmp_path, tiny_criteo_dir, steps=None,
         extra=['--eval_every_steps=2', '--stop_at_target=false', '--overwrite'])


def test_batch_size_flag_overrides_the_submission(tmp_path, tiny_criteo_dir, capsys):
  _run(tmp_path, tiny_criteo_dir, steps=1, extra=['--batch_size=64', '--save_checkpoints=false'])
  assert '| batch size 64 |' in capsys.readouterr().out
