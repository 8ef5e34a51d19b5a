"""Targets discovery: `analysis.score` / `analysis.report` find the `targets.json` the demo
writes beside its runs, and a workload without a target is an error that says where
they looked and what to pass (exit 1, no traceback)."""
import json
import os

import pytest

from analysis import fixtures as fx
from analysis import report
from analysis import score
from analysis import targets

TOY = {'metric': 'validation/loss', 'target': 0.5, 'minimize': True, 'max_runtime_sec': 1000}


def _runs(root):
  for s in range(3):
    fx.write_trial(str(root), 'nadamw', f'study_{s}', 'toy', 1, (10, 20, 30),
                   fx.curve(3, 1, 0.5), meta={}, ruleset='self')


def _no_targets_above(path):
  """Skips when a targets.json outside the test's directory would be found (a stray file
  in /tmp or above would make the 'missing' case find one)."""
  directory = os.path.dirname(os.path.abspath(path))
  while True:
    if os.path.isfile(os.path.join(directory, targets.TARGETS_FILENAME)):
      pytest.skip(f'{directory}/targets.json exists outside the test directory')
    if os.path.dirname(directory) == directory:
      return
    directory = os.path.dirname(directory)


def test_nearest_targets_file_in_or_above_the_runs(tmp_path):
  # The demo's layout: <dir>/targets.json beside <dir>/<submission>/...; a submission
  # directory below it finds the same file, a closer one wins.
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': TOY}))
  _runs(tmp_path)
  for start in (tmp_path, tmp_path / 'nadamw', tmp_path / 'nadamw' / 'study_0'):
    path, searched = targets.find_targets_file([str(start)])
    assert path == str(tmp_path / 'targets.json') and searched[0] == str(start)
  (tmp_path / 'nadamw' / 'targets.json').write_text(json.dumps({'toy': TOY}))
  assert targets.find_targets_file([str(tmp_path / 'nadamw')])[0] == str(
      tmp_path / 'nadamw' / 'targets.json')
  with pytest.raises(ValueError, match='different targets files'):
    targets.find_targets_file([str(tmp_path), str(tmp_path / 'nadamw')])


def test_scoring_a_subdirectory_uses_the_file_above(tmp_path):
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': {**TOY, 'target': 0.45}}))
  _runs(tmp_path)
  result = score.score_directory([str(tmp_path / 'nadamw')]).result
  assert set(result.trials['target']) == {0.45}


@pytest.mark.parametrize('main', [score.main, report.main])
def test_missing_targets_is_a_clear_error(tmp_path, capsys, main):
  _no_targets_above(tmp_path / 'runs')
  _runs(tmp_path / 'runs')
  assert main(['--submission_dir', str(tmp_path / 'runs'), '--output_dir',
               str(tmp_path / 'out')]) == 1
  err = capsys.readouterr().err
  assert err.startswith("error: no target for workload(s) ['toy']")
  assert str(tmp_path / 'runs') in err and '--targets FILE' in err
  assert 'Traceback' not in err
