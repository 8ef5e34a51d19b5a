"""Discovery and damaged-log behaviour of analysis.logs (and how scoring sees it)."""
import json
import os

import numpy as np
import pytest

from analysis import fixtures as fx
from analysis import logs
from analysis import score

CRITEO = 0.123735


def write(root, submission='sub', study='study_0', trial=1, hit=1, times=(100, 200, 300),
          **kwargs):
  return fx.write_trial(root, submission, study, 'criteo1tb', trial, times,
                        fx.curve(len(times), hit, CRITEO), **kwargs)


def evals_path(trial_dir):
  return os.path.join(trial_dir, 'eval_measurements.csv')


def test_fixture_has_algoperf_criteo_columns(tmp_path):
  path = write(tmp_path)
  header = open(evals_path(path)).readline().strip().split(',')
  assert tuple(header) == fx.CRITEO_EVAL_COLUMNS


@pytest.mark.parametrize('depth', [2, 3, 4])
def test_layouts(tmp_path, depth):
  write(tmp_path / 'root')  # root/sub/study_0/criteo1tb_jax/trial_1
  root = {4: tmp_path / 'root', 3: tmp_path / 'root' / 'sub',
          2: tmp_path / 'root' / 'sub' / 'study_0'}[depth]
  (trial,) = logs.load_experiment([str(root)]).trials
  assert (trial.workload, trial.framework, trial.trial) == ('criteo1tb', 'jax', 1)
  assert trial.submission == {4: 'sub', 3: 'sub', 2: 'study_0'}[depth]
  assert trial.study == 'study_0'


def test_mixed_or_too_deep_layouts_raise(tmp_path):
  write(tmp_path / 'mixed')
  fx.write_trial(tmp_path / 'mixed', 'x', 'y', 'ogbg', 1, [1], [0.1])
  os.rename(tmp_path / 'mixed' / 'x' / 'y', tmp_path / 'mixed' / 'y')  # depth 3 next to 4
  with pytest.raises(logs.LogError, match='mixed depths'):
    logs.load_experiment([str(tmp_path / 'mixed')])
  write(tmp_path / 'deep' / 'one_level_too_many')
  with pytest.raises(logs.LogError, match='depth 5'):
    logs.load_experiment([str(tmp_path / 'deep')])


def test_timestamped_copies_merge(tmp_path):
  write(tmp_path, submission='sub', trial=1)
  write(tmp_path, submission='sub-2025-01-02-03-04-05', trial=1)
  trials = logs.load_experiment([str(tmp_path)]).trials
  assert {t.submission for t in trials} == {'sub'}
  assert len(trials) == 2  # separate trials of the same study, as in AlgoPerf


def test_mixed_frameworks_raise_or_split(tmp_path):
  write(tmp_path, study='study_0')
  fx.write_trial(tmp_path, 'sub', 'study_1', 'criteo1tb', 1, [100], [0.1], framework='pytorch')
  with pytest.raises(logs.LogError, match='several frameworks'):
    logs.load_experiment([str(tmp_path)])
  split = logs.load_experiment([str(tmp_path)], split_frameworks=True).trials
  assert sorted(t.submission for t in split) == ['sub_jax', 'sub_pytorch']


def test_missing_csv_drops_the_trial_as_algoperf_with_note(tmp_path):
  # AlgoPerf's get_experiment_df skips a trial without eval_measurements.csv: the other
  # trial of study_1 decides it, and a study without any file leaves the median.
  write(tmp_path, trial=1, hit=0)
  os.remove(evals_path(write(tmp_path, study='study_1', trial=1, hit=0)))
  write(tmp_path, study='study_1', trial=2, hit=1)
  os.remove(evals_path(write(tmp_path, study='study_2', trial=1, hit=0)))
  scored = score.score_directory([str(tmp_path)], self_tuning=True)
  assert list(scored.result.studies['time_s']) == [100.0, 200.0]
  assert list(scored.result.studies['study']) == ['study_0', 'study_1']
  dropped = [n for n in scored.experiment.notes if 'dropped, as AlgoPerf does' in n]
  assert len(dropped) == 1  # one note per (submission, workload), naming every trial
  assert dropped[0].startswith('sub/criteo1tb: 2 trial(s) without eval_measurements.csv')
  assert 'study_1/trial_1, study_2/trial_1' in dropped[0]


def test_empty_and_header_only_files(tmp_path):
  empty = write(tmp_path, trial=1)
  open(evals_path(empty), 'w').close()
  header_only = write(tmp_path, trial=2)
  with open(evals_path(header_only)) as f:
    header = f.readline()
  open(evals_path(header_only), 'w').write(header)
  experiment = logs.load_experiment([str(tmp_path)])
  assert [len(t.evals) for t in experiment.trials] == [0, 0]
  assert any('empty file' in n for n in experiment.notes)
  assert any('header only' in n for n in experiment.notes)


def test_truncated_last_line_is_dropped_with_note(tmp_path):
  path = evals_path(write(tmp_path))
  text = open(path).read()
  open(path, 'w').write(text[:-25])  # cut inside the last row, no trailing newline
  (trial,) = logs.load_experiment([str(tmp_path)]).trials
  assert len(trial.evals) == 2
  assert any('partial write' in n for n in trial.notes)


def test_unterminated_complete_last_line_is_kept_with_note(tmp_path):
  path = evals_path(write(tmp_path))
  text = open(path).read()
  open(path, 'w').write(text.rstrip('\n'))
  (trial,) = logs.load_experiment([str(tmp_path)]).trials
  assert len(trial.evals) == 3
  assert any('may be truncated' in n for n in trial.notes)


def test_corrupt_row_raises_naming_file_and_line(tmp_path):
  path = evals_path(write(tmp_path))
  lines = open(path).read().splitlines(keepends=True)
  lines[2] = lines[2].replace(',', ',oops,', 1)
  open(path, 'w').write(''.join(lines))
  with pytest.raises(logs.LogError, match=r'eval_measurements.csv:3: expected 12 fields'):
    logs.load_experiment([str(tmp_path)])
  lines[2] = 'abc' + lines[2][lines[2].index(','):].replace(',oops', '', 1)
  open(path, 'w').write(''.join(lines))
  with pytest.raises(logs.LogError, match="column 'accumulated_eval_time': cannot parse 'abc'"):
    logs.load_experiment([str(tmp_path)])


def test_missing_metric_column_raises(tmp_path):
  fx.write_trial(tmp_path, 'sub', 'study_0', 'criteo1tb', 1, [100], [0.9],
                 metric='validation/accuracy')
  with pytest.raises(logs.LogError, match="no 'validation/loss' column"):
    score.score_directory([str(tmp_path)])


def test_nan_metric_and_nan_time(tmp_path):
  values = fx.curve(4, 1, CRITEO)
  values[1] = np.nan  # the first hit becomes NaN -> next eval is the first hit
  fx.write_trial(tmp_path, 'sub', 'study_0', 'criteo1tb', 1, [100, 200, 300, 400], values)
  fx.write_trial(tmp_path, 'sub', 'study_1', 'criteo1tb', 1, [100, np.nan, 300, 400],
                 fx.curve(4, 1, CRITEO))
  result = score.score_directory([str(tmp_path)], self_tuning=True)
  assert list(result.result.studies['time_s']) == [300.0, 300.0]
  assert any("'score' is NaN/inf at eval index(es) [1]" in n for n in result.experiment.notes)


def test_non_monotonic_time_is_noted_and_kept(tmp_path):
  write(tmp_path, times=(100, 300, 200))
  (trial,) = logs.load_experiment([str(tmp_path)]).trials
  assert len(trial.evals) == 3
  assert any('non-monotonic' in n and '[2]' in n for n in trial.notes)


def test_preemption_keeps_rows_and_flags_trial(tmp_path):
  # Preempted after eval 1; restored from its checkpoint: accumulated time continues.
  path = write(tmp_path, times=(100, 200, 250, 350), hit=3, steps=(100, 200, 200, 300),
               preemption_count=(0, 0, 1, 1))
  json.dump(fx.V100_META, open(os.path.join(path, 'meta_data_1.json'), 'w'))
  experiment = logs.load_experiment([str(tmp_path)])
  (trial,) = experiment.trials
  assert trial.preempted and trial.preemption_count == 1 and len(trial.evals) == 4
  result = score.score_directory([str(tmp_path)], self_tuning=True).result
  assert result.studies['time_s'].iloc[0] == 350.0
  assert result.trials['preempted'].iloc[0]


def test_corrupt_meta_json_is_ignored_with_note(tmp_path):
  path = write(tmp_path)
  open(os.path.join(path, 'meta_data_0.json'), 'w').write('{not json')
  (trial,) = logs.load_experiment([str(tmp_path)]).trials
  assert trial.meta == {}
  assert any('unreadable JSON' in n for n in trial.notes)


def test_framework_mismatch_with_meta_is_noted(tmp_path):
  write(tmp_path, meta={'framework': 'pytorch'})
  (trial,) = logs.load_experiment([str(tmp_path)]).trials
  assert trial.framework == 'jax'
  assert any("framework='pytorch'" in n for n in trial.notes)
