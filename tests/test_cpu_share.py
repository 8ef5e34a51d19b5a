"""The other processes' CPU share (curvlr.runner.cpu_share): arithmetic and /proc/stat."""
import os

import pytest

from curvlr.runner import cpu_share


def test_other_share_subtracts_the_runs_own_cpu():
  before = cpu_share.Snapshot(wall=10.0, machine_busy=100.0)
  after = cpu_share.Snapshot(wall=20.0, machine_busy=118.0)  # 18 busy CPU-s in 10 s
  # The run took 18 of them: nobody else ran; it took 8: others took 10 of 20 CPU-s.
  assert cpu_share.other_share(before, after, 18.0, cores=2) == 0.0
  assert cpu_share.other_share(before, after, 8.0, cores=2) == pytest.approx(0.5)
  # Clock granularity can make the run's time exceed the machine's: clipped to [0, 1].
  assert cpu_share.other_share(before, after, 19.0, cores=2) == 0.0
  assert cpu_share.other_share(before, after, 0.0, cores=1) == 1.0
  assert cpu_share.other_share(before._replace(machine_busy=None), after, 0.0, 2) is None
  assert cpu_share.other_share(before, before, 0.0, 2) is None  # no time passed


def test_machine_busy_seconds_reads_proc_stat(tmp_path):
  stat = tmp_path / 'stat'
  hz = os.sysconf('SC_CLK_TCK')
  # user nice system idle iowait irq softirq steal guest guest_nice
  stat.write_text(f'cpu  {hz} {hz} {hz} {50 * hz} {7 * hz} {hz} {hz} {hz} 0 0\ncpu0 1 2 3\n')
  assert cpu_share.machine_busy_seconds(str(stat)) == pytest.approx(6.0)  # idle, iowait out
  stat.write_text('intr 1 2 3\n')
  assert cpu_share.machine_busy_seconds(str(stat)) is None
  assert cpu_share.machine_busy_seconds(str(tmp_path / 'missing')) is None


@pytest.mark.skipif(not os.path.exists('/proc/stat'), reason='Linux only')
def test_busy_time_covers_this_process():
  before, own = cpu_share.snapshot(), cpu_share.own_cpu_seconds()
  x = 0
  for i in range(3_000_000):
    x += i
  after, spent = cpu_share.snapshot(), cpu_share.own_cpu_seconds() - own
  assert spent > 0 and after.machine_busy - before.machine_busy >= 0.5 * spent
  share = cpu_share.other_share(before, after, spent, os.cpu_count())
  assert 0.0 <= share <= 1.0
