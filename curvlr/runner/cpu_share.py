"""How much of the machine's CPU other processes took while a run trained (Linux).

The 1-minute load average counts the run's own threads (a run using both cores of an idle
2-core machine reads ~2) and lags by a minute, so it cannot tell a busy run from a loaded
machine. This counts what the others took instead:

    other share = (busy CPU seconds of the whole machine - CPU seconds of the run's processes)
                  / (wall seconds x cores)

in [0, 1]: 0 on an idle machine, 0.5 when other jobs kept one of two cores busy. Machine
busy time is /proc/stat's user + nice + system + irq + softirq + steal; the run's CPU time
is its processes' user + system time (all DDP ranks summed by the caller). Elsewhere than
Linux the share is unknown (None).
"""
import os
import time
from typing import NamedTuple, Optional

_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system [idle iowait] irq softirq steal


class Snapshot(NamedTuple):
  wall: float  # time.monotonic(), s
  machine_busy: Optional[float]  # busy CPU seconds of all cores since boot; None off Linux


def machine_busy_seconds(stat_path: str = '/proc/stat') -> Optional[float]:
  """Busy CPU seconds of all cores since boot, or None where /proc/stat is unreadable."""
  try:
    with open(stat_path) as f:
      fields = f.readline().split()
  except OSError:
    return None
  if not fields or fields[0] != 'cpu' or len(fields) < 9:
    return None
  ticks = [int(fields[1 + i]) for i in _BUSY_FIELDS]
  return sum(ticks) / os.sysconf('SC_CLK_TCK')


def own_cpu_seconds() -> float:
  """User + system CPU seconds of this process (all its threads)."""
  t = os.times()
  return t.user + t.system


def snapshot() -> Snapshot:
  return Snapshot(time.monotonic(), machine_busy_seconds())


def other_share(before: Snapshot, after: Snapshot, run_cpu_seconds: float,
                cores: int) -> Optional[float]:
  """Share of the machine's CPU capacity [0, 1] others used between the two snapshots,
  given the run's own CPU seconds over the same interval; None if unknown."""
  wall = after.wall - before.wall
  if before.machine_busy is None or after.machine_busy is None or wall <= 0 or cores < 1:
    return None
  others = after.machine_busy - before.machine_busy - run_cpu_seconds
  return min(1.0, max(0.0, others / (wall * cores)))
