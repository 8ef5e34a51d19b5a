"""`python -m curvlr.demo`: per-framework layout, the summary read back from the logs, exit
codes when a run or the report fails, no stale report."""
import json
import os
import pathlib
import shutil

import pytest

from analysis import report
from curvlr import demo
from curvlr.runner import loop


def _demo(tmp_path, data_dir, framework='pytorch', steps=2):
  return demo.main([f'--framework={framework}', '--submissions=nadamw',
                    f'--experiment_dir={tmp_path / "demo"}', f'--data_dir={data_dir}',
                    f'--max_global_steps={steps}', '--eval_every_steps=1'])


class FakeReport:
  """Stands in for analysis.report.main (tested in tests/test_analysis_report.py): records
  its argv, writes report.md on success, returns `code`."""

  def __init__(self):
    self.calls, self.code = [], 0

  def __call__(self, argv):
    self.calls.append(argv)
    if self.code == 0:
      out = pathlib.Path(argv[argv.index('--output_dir') + 1])
      out.mkdir(parents=True)
      (out / 'report.md').write_text('report')
    return self.code


@pytest.fixture
def fake_report(monkeypatch):
  fake = FakeReport()
  monkeypatch.setattr(report, 'main', fake)
  return fake


def test_layout_per_framework_and_no_stale_report(tmp_path, tiny_criteo_dir, fake_report,
                                                  capsys):
  assert _demo(tmp_path, tiny_criteo_dir) == 0
  top = tmp_path / 'demo' / 'pytorch'
  trial = top / 'nadamw' / 'study_0' / 'criteo_embedded_pytorch' / 'trial_1'
  assert (trial / 'eval_measurements.csv').is_file() and (trial / loop.RUN_SUMMARY).is_file()
  targets = json.loads((top / 'targets.json').read_text())
  assert targets['criteo_embedded']['target'] == demo.WORKLOAD.validation_target_value
  assert fake_report.calls == [['--submission_dir', str(top), '--output_dir',
                                str(top / 'report')]]
  out = capsys.readouterr().out
  assert 'Leaderboard (pytorch' in out and 'steps to target' in out
  assert 'nadamw' in out and loop.STOP_REASONS['max_global_steps'] in out
  assert 'Machine load' in out
  assert (top / 'report' / 'report.md').is_file()
  # A failing report afterwards: exit 1, and the earlier report is gone, not left stale.
  fake_report.code = 1
  assert _demo(tmp_path, tiny_criteo_dir) == 1
  assert 'the report failed' in capsys.readouterr().err
  assert not (top / 'report').exists()


def test_failed_run_exits_1_without_report(tmp_path, tiny_criteo_dir, fake_report, capsys):
  bad = tmp_path / 'bad'
  shutil.copytree(tiny_criteo_dir, bad)
  for f in bad.glob('day_0_*'):
    f.write_bytes(b'garbage\n' + f.read_bytes())
  stale = tmp_path / 'demo' / 'pytorch' / 'report'
  stale.mkdir(parents=True)
  (stale / 'report.md').write_text('old')
  assert _demo(tmp_path, bad) == 1
  err = capsys.readouterr().err
  assert 'demo: the nadamw run failed (CriteoFormatError' in err and 'no report' in err
  assert not stale.exists() and fake_report.calls == []
  # The failed run left nothing that would need --overwrite; a good run then works.
  assert not (tmp_path / 'demo' / 'pytorch' / 'nadamw').exists()


def test_summary_ranks_by_steps_and_keeps_columns_aligned():
  runs = [demo.RunSummary('schedule_free_adamw', 400, 380, 40.0, 0.1, 'target', (0.5, 0.6), 0.01, None),
          demo.RunSummary('nadamw', 400, 340, 60.0, 0.2, 'target', (0.5, 0.9), 0.02, None),
          demo.RunSummary('cdat_nadamw', 1500, None, None, 0.3, 'max_global_steps',
                          (1.0, 1.0), 0.0, None)]
  lines = demo.summary_text(runs, 'pytorch', 0.1445, 20).splitlines()
  header, rule, *rows = lines[1:6]
  assert [row.split()[:2] for row in rows] == [['1', 'nadamw'], ['2', 'schedule_free_adamw'],
                                              ['3', 'cdat_nadamw']]
  assert len(header) == len(rule)
  end = header.index('steps to target') + len('steps to target')
  assert [row[:end].split()[-1] for row in rows] == ['340', '380', 'reached']  # right-aligned
  assert rows[1].split()[3] == '1.12' and 'not reached' in rows[2]
  assert loop.STOP_REASONS['max_global_steps'] in rows[2]
  assert any('Steps resolve to 20 steps (the eval spacing, 5.9% of nadamw\'s 340)' in line
             for line in lines)
  assert 'CPU taken by other processes' in '\n'.join(lines)
  assert 'schedule_free_adamw 1%, nadamw 2%, cdat_nadamw 0%' in '\n'.join(lines)
  # The runs' own threads raise the load average, not the others' share: no notice.
  busy_alone = [r._replace(load=(2.0, 2.0 * (os.cpu_count() or 1))) for r in runs]
  assert 'Other jobs shared' not in demo.summary_text(busy_alone, 'pytorch', 0.1445, 20)
  shared = [runs[0]._replace(other_cpu=0.4)] + runs[1:]
  assert 'Other jobs shared' in demo.summary_text(shared, 'pytorch', 0.1445, 20)
  # Without /proc/stat the load average decides.
  unknown = [r._replace(other_cpu=None) for r in runs]
  assert 'CPU taken' not in demo.summary_text(unknown, 'pytorch', 0.1445, 20)
  assert 'Other jobs shared' not in demo.summary_text(unknown, 'pytorch', 0.1445, 20)
  assert 'Other jobs shared' in demo.summary_text(
      [unknown[0]._replace(load=(0.5, 2.0 * (os.cpu_count() or 1)))], 'pytorch', 0.1445, 20)


def test_equal_steps_share_a_rank():
  run = demo.RunSummary('nadamw', 400, 340, 60.0, 0.2, 'target', (0.5, 0.5), None, None)
  runs = [run, run._replace(name='cdat_nadamw', time_to_target=90.0),
          run._replace(name='sf', steps_to_target=None), run._replace(steps_to_target=360)]
  assert [demo.rank(r, runs) for r in runs] == [1, 1, 4, 3]


def test_jax_after_pytorch_keeps_each_framework_apart(tmp_path, tiny_criteo_dir, fake_report):
  # The sequence: `make demo` (PyTorch), then `--framework=jax`; each framework
  # scores only its own runs (one framework per submission), and the PyTorch report stays.
  assert _demo(tmp_path, tiny_criteo_dir) == 0
  assert _demo(tmp_path, tiny_criteo_dir, framework='jax') == 0
  top = tmp_path / 'demo'
  assert [call[1] for call in fake_report.calls] == [str(top / 'pytorch'), str(top / 'jax')]
  assert (top / 'pytorch' / 'report' / 'report.md').is_file()
  assert (top / 'jax' / 'nadamw' / 'study_0' / 'criteo_embedded_jax').is_dir()
  assert not list((top / 'jax').glob('*/*/*_pytorch'))
