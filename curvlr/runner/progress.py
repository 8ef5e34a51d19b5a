"""Progress lines on stdout (rank 0): step, submission time, budget, last eval."""
import sys
import time


class Progress:
  """Prints a step line at most every `every_sec` seconds, and one line per eval."""

  def __init__(self, every_sec: float, enabled: bool = True, stream=None):
    self.every_sec = every_sec
    self.enabled = enabled and every_sec > 0
    self.stream = stream  # None: sys.stdout at each print (it may be replaced meanwhile)
    self._last = time.time()
    self._last_eval = ''

  def _print(self, line: str) -> None:
    print(line, file=self.stream or sys.stdout, flush=True)

  def step(self, global_step: int, submission_time: float, budget: float) -> None:
    if self.enabled and time.time() - self._last >= self.every_sec:
      self._last = time.time()
      self._print(f'step {global_step:6d} | submission time {submission_time:8.1f} s '
                  f'of {budget:.0f} s{self._last_eval}')

  def eval(self, global_step: int, result: dict, workload) -> None:
    if not self.enabled:
      return
    val, target = result['validation/loss'], workload.validation_target_value
    self._last_eval = f' | last eval: validation/loss {val:.5f} (target {target:.5f})'
    self._print(f'eval at step {global_step:6d} | submission time {result["score"]:8.1f} s'
                f' | train/loss {result["train/loss"]:.5f} | validation/loss {val:.5f}'
                f' | test/loss {result["test/loss"]:.5f}'
                f'{"  <- target reached" if val < target else ""}')
