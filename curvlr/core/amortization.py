"""When to measure curvature: one schedule component shared by CDAT and interval-median.

Every schedule has the same optax-like interface:

    state = init(config)
    if should_measure(config, state, step): ...measure at this step...
    state = record(config, state, step, measured, seconds)

`should_measure` is a deterministic pure function of (config, state, step), and `record`
of its arguments; under multi-device training the caller feeds identical REDUCED step
times to every rank (e.g. the max over ranks), so all ranks take identical decisions and
stay in lockstep. `record` keeps timing statistics for every schedule; only `Budget`
decides from them. `measure_fraction` (fraction of the global batch to measure the
curvature on) is carried for the framework code; the decisions do not read it.

Schedules (steps are 0-based `global_step`s; nothing is measured before `start`):
- EveryK(k): start, start + k, start + 2k, ...
- Windowed(interval I, length N): windows of N consecutive steps starting at
  start + j*I, i.e. start + j*I + i for i in [0, N). With `target` set the windows are
  budget-aware: the next window starts once step - (start of the last window) >=
  max(I, G_N) with G_N = ceil(N * c * (1 - target) / (target * t)), c the mean extra
  cost of the timed measurement steps so far and t as below: a cycle of one window and
  its gap then spends at most `target` of its time measuring, and I is a minimum.
- Geometric(first_gap, max_gap, growth): dense early, sparse later. Measurements at
  start, then after gaps g_j = clip(round(first_gap * growth**j), 1, max_gap).
- Budget(target): an overhead-budget controller. The first measurement is at `start`;
  afterwards the next one comes once step - last_measured_step >= G with

      G = max(min_gap, ceil(c * (1 - target) / (target * t)))   (capped by max_gap),

  where t is the bias-corrected EMA of plain-step seconds and c = (seconds of the last
  measurement step) - t is its extra cost. A cycle of one measurement step and G - 1
  plain steps then spends c / (G t + c) <= target of its time on measuring: each
  measurement pays for itself with the gap that follows it, so the cumulative overhead
  stays at target whatever the costs do, and a change of cost takes effect right after
  the first measurement at the new cost. G is recomputed at every step from the current
  t. max_gap, when set, wins over the budget.

Timing. Only some steps are timed (`is_timed`): every measurement step, the plain step
right after one, every `timing_every`-th step, and every step until a first plain step
has been timed. Timing a step costs a device sync at
its start and end under asynchronous dispatch (JAX, CUDA), which is why not every step
is timed: a per-step sync would itself cost a few percent. Plain-step statistics come
from these samples; `overhead_fraction` extrapolates them to all recorded steps.
"""
import dataclasses
import math
from typing import NamedTuple, Optional, Tuple, Union

from curvlr.core import guards


@dataclasses.dataclass(frozen=True)
class _Schedule:
  """Keyword-only fields shared by all schedules.

  Attributes:
    start: first step at which a measurement may happen.
    measure_fraction: fraction of the global batch used for a measurement, in (0, 1];
      read by the framework code.
    time_ema_decay: decay of the EMA of plain-step seconds, in [0, 1).
    untimed_warmup: the first this-many measurement steps and plain steps are not
      timed: they carry one-time costs (JIT compilation, lazy allocation) that would
      otherwise dominate the estimates. Use 1 under JAX.
    timing_every: plain steps at multiples of this are timed (besides the step after
      each measurement), >= 1.
  """
  start: int = dataclasses.field(default=0, kw_only=True)
  measure_fraction: float = dataclasses.field(default=1.0, kw_only=True)
  time_ema_decay: float = dataclasses.field(default=0.9, kw_only=True)
  untimed_warmup: int = dataclasses.field(default=0, kw_only=True)
  timing_every: int = dataclasses.field(default=50, kw_only=True)

  def __post_init__(self):
    guards.check(self, 'start', lambda v: v >= 0, '>= 0')
    guards.check(self, 'timing_every', lambda v: v >= 1, '>= 1')
    guards.check(self, 'untimed_warmup', lambda v: v >= 0, '>= 0')
    guards.check(self, 'measure_fraction', lambda v: 0 < v <= 1, 'in (0, 1]')
    guards.check(self, 'time_ema_decay', lambda v: 0 <= v < 1, 'in [0, 1)')


@dataclasses.dataclass(frozen=True)
class EveryK(_Schedule):
  """Measure every k-th step from `start` on."""
  k: int = 1

  def __post_init__(self):
    super().__post_init__()
    guards.check(self, 'k', lambda v: v >= 1, '>= 1')


@dataclasses.dataclass(frozen=True)
class Windowed(_Schedule):
  """Windows of `length` consecutive steps every `interval` steps from `start` on.

  target: None for fixed windows at start + j * interval; an overhead fraction in
    (0, 1) for budget-aware windows, `interval` apart at least (module docstring).
  """
  interval: int
  length: int
  target: Optional[float] = None

  def __post_init__(self):
    super().__post_init__()
    guards.check(self, 'interval', lambda v: v >= 1, '>= 1')
    guards.check(self, 'length', lambda v: 1 <= v <= self.interval,
                 f'in [1, interval ({self.interval})]')
    guards.check(self, 'target', lambda v: v is None or 0 < v < 1, 'None or in (0, 1)')


@dataclasses.dataclass(frozen=True)
class Geometric(_Schedule):
  """Gaps growing geometrically from `first_gap` to `max_gap` (steps)."""
  first_gap: int = 1
  max_gap: int = 100
  growth: float = 1.5

  def __post_init__(self):
    super().__post_init__()
    guards.check(self, 'first_gap', lambda v: v >= 1, '>= 1')
    guards.check(self, 'max_gap', lambda v: v >= self.first_gap,
                 f'>= first_gap ({self.first_gap})')
    guards.check(self, 'growth', lambda v: 1 < v < math.inf, 'finite and > 1')


@dataclasses.dataclass(frozen=True)
class Budget(_Schedule):
  """Keeps (measurement seconds - plain seconds) / total seconds at `target`.

  Attributes:
    target: overhead fraction, in (0, 1). Default 0.02: 2% of the time budget, well
      inside the run-to-run noise of AlgoPerf timings.
    min_gap: fewest steps between measurements, >= 2: the plain step after each
      measurement is timed, which keeps the plain-step estimate current. With gaps of
      1 a slow plain sample could make measurements look free and the controller would
      then measure every step, with no plain step left to correct the estimate.
    max_gap: most steps between measurements (None: no limit); wins over the budget.
  """
  target: float = 0.02
  min_gap: int = 2
  max_gap: Optional[int] = None

  def __post_init__(self):
    super().__post_init__()
    guards.check(self, 'target', lambda v: 0 < v < 1, 'in (0, 1)')
    guards.check(self, 'min_gap', lambda v: v >= 2, '>= 2')
    guards.check(self, 'max_gap', lambda v: v is None or v >= self.min_gap,
                 f'None or >= min_gap ({self.min_gap})')


Schedule = Union[EveryK, Windowed, Geometric, Budget]


class AmortState(NamedTuple):
  """Measurement bookkeeping and step timings; JSON-serialisable via `._asdict()`.

  Attributes:
    last_measured_step: step of the last measurement, -1 before the first.
    measure_count: measurements recorded.
    plain_steps: plain steps recorded, timed or not.
    last_measure_seconds: seconds of the last timed measurement step.
    plain_ema: zero-started EMA of plain-step seconds (not bias-corrected).
    plain_count: timed plain steps.
    plain_seconds: their total seconds.
    timed_measure_count: timed measurement steps.
    measure_seconds: their total seconds.
    rejected_count: times that were NaN, inf or negative (ignored).
    window_start: first step of the current or last window (Windowed), -1 before one.
  """
  last_measured_step: int = -1
  measure_count: int = 0
  plain_steps: int = 0
  last_measure_seconds: float = 0.0
  plain_ema: float = 0.0
  plain_count: int = 0
  plain_seconds: float = 0.0
  timed_measure_count: int = 0
  measure_seconds: float = 0.0
  rejected_count: int = 0
  window_start: int = -1


def init(config: Schedule) -> AmortState:
  del config  # Every schedule starts from the same bookkeeping.
  return AmortState()


def restore(data: dict) -> AmortState:
  """The state from `state._asdict()` after a JSON round trip."""
  return guards.restore_state(AmortState, data)


def window_position(config: Windowed, state: AmortState,
                    step: int) -> Optional[Tuple[int, int]]:
  """(first step of the window, index in the window) when `step` is in a window, else None.

  Fixed windows depend on `step` alone; budget-aware ones on the recorded windows and times.
  """
  if step < config.start:
    return None
  if config.target is None:
    offset = (step - config.start) % config.interval
    return (step - offset, offset) if offset < config.length else None
  current = state.window_start
  if current >= 0 and 0 <= step - current < config.length:
    return current, step - current
  if current < 0 or step - current >= window_gap(config, state):
    return step, 0
  return None


def window_gap(config: Windowed, state: AmortState) -> int:
  """Steps between window starts: max(interval, G_N) under a target, else interval.

  Falls back to `interval` while no plain and no measurement step has been timed.
  """
  plain = plain_step_seconds(config, state)
  if config.target is None or plain is None or plain <= 0.0 or state.timed_measure_count == 0:
    return config.interval
  extra = state.measure_seconds / state.timed_measure_count - plain
  if extra <= 0.0:
    return config.interval
  return max(config.interval, _ceil(
      config.length * extra * (1.0 - config.target) / (config.target * plain)))


def _geometric_hit(config: Geometric, step: int) -> bool:
  position, j = config.start, 0
  while position < step:
    gap = min(config.max_gap, max(1, round(config.first_gap * config.growth ** j)))
    if gap == config.max_gap:
      return (step - position) % gap == 0
    position, j = position + gap, j + 1
  return position == step


def plain_step_seconds(config: Schedule, state: AmortState) -> Optional[float]:
  """Bias-corrected EMA of plain-step seconds; None before the first timed plain step."""
  if state.plain_count == 0:
    return None
  return state.plain_ema / (1.0 - config.time_ema_decay ** state.plain_count)


def budget_gap(config: Budget, state: AmortState) -> Optional[int]:
  """Steps the budget asks for after the last measurement (before max_gap); None if unknown."""
  plain = plain_step_seconds(config, state)
  if plain is None or state.timed_measure_count == 0:
    return None
  extra = state.last_measure_seconds - plain
  if extra <= 0.0:
    return config.min_gap
  if plain <= 0.0:
    return None  # Free plain steps: any extra cost is an infinite overhead.
  return max(config.min_gap, _ceil(extra * (1.0 - config.target) / (config.target * plain)))


def fallback_gap(config: Budget) -> int:
  """The budget's gap for a measurement that costs one plain step: ceil((1 - t) / t)."""
  return _ceil((1.0 - config.target) / config.target)


def _ceil(steps: float) -> int:
  """ceil, tolerant of rounding: (1 - 0.1) / 0.1 = 9.000000000000002 is 9 steps."""
  return math.ceil(steps - 1e-9)


def _budget_due(config: Budget, state: AmortState, step: int) -> bool:
  if state.measure_count == 0:
    return True
  since = step - state.last_measured_step
  if since <= 0:
    return False
  if config.max_gap is not None and since >= config.max_gap:
    return True
  gap = budget_gap(config, state)
  if gap is not None:
    return since >= gap
  if state.measure_count <= config.untimed_warmup:
    return since >= config.min_gap  # Only warm-ups so far: measure again to time one.
  if state.timed_measure_count == 0:  # Its time was lost (an eval, a NaN): assume that a
    return since >= max(config.min_gap, fallback_gap(config))  # measurement costs 1 step.
  return False  # Waiting for a timed plain step.


def should_measure(config: Schedule, state: AmortState, step: int) -> bool:
  """Whether to measure curvature at `step`; the same on every rank for the same inputs."""
  if not isinstance(config, _Schedule):
    raise TypeError(f'Unknown measurement schedule {config!r}.')
  if step < config.start:
    return False
  if isinstance(config, EveryK):
    return (step - config.start) % config.k == 0
  if isinstance(config, Windowed):
    return window_position(config, state, step) is not None
  if isinstance(config, Geometric):
    return _geometric_hit(config, step)
  return _budget_due(config, state, step)


def is_timed(config: Schedule, state: AmortState, step: int, measuring: bool) -> bool:
  """Whether update `step` is timed (module docstring): a measurement step, the step right
  after one, a multiple of `timing_every`, or any step while no plain step has been timed
  yet (the untimed warm-up may have taken the step after the first measurement).
  Identical on every rank for equal inputs."""
  return (measuring or step == state.last_measured_step + 1 or state.plain_count == 0
          or step % config.timing_every == 0)


def record(config: Schedule, state: AmortState, step: int, measured: bool,
           seconds: Optional[float]) -> AmortState:
  """Records step `step`: whether it measured and its wall time in seconds (reduced over
  ranks), or None when it was not timed.

  A measurement is always registered; the time of a warm-up step (`untimed_warmup`) is
  ignored, and a NaN, inf or negative time is ignored and counted in `rejected_count`.
  """
  if measured:
    if isinstance(config, Windowed) and not (
        state.window_start >= 0 and 0 <= step - state.window_start < config.length):
      state = state._replace(window_start=step)
    state = state._replace(last_measured_step=step, measure_count=state.measure_count + 1)
    if state.measure_count <= config.untimed_warmup:
      return state
  else:
    state = state._replace(plain_steps=state.plain_steps + 1)
    if state.plain_steps <= config.untimed_warmup:
      return state
  if seconds is None:
    return state
  seconds = float(seconds)
  if not (math.isfinite(seconds) and seconds >= 0.0):
    return state._replace(rejected_count=state.rejected_count + 1)
  if measured:
    return state._replace(last_measure_seconds=seconds,
                          timed_measure_count=state.timed_measure_count + 1,
                          measure_seconds=state.measure_seconds + seconds)
  beta = config.time_ema_decay
  return state._replace(plain_ema=beta * state.plain_ema + (1.0 - beta) * seconds,
                        plain_count=state.plain_count + 1,
                        plain_seconds=state.plain_seconds + seconds)


def overhead_fraction(state: AmortState) -> Optional[float]:
  """Estimated share of all recorded steps' time spent on measuring beyond a plain step.

  With t the mean timed plain step and c the mean extra seconds of a timed measurement
  step (both from the timed samples), M measurements and P plain steps recorded:
  M c / ((P + M) t + M c). None before a plain and a measurement step have been timed.
  """
  if state.plain_count == 0 or state.timed_measure_count == 0:
    return None
  plain = state.plain_seconds / state.plain_count
  extra = state.measure_seconds / state.timed_measure_count - plain
  total = (state.plain_steps + state.measure_count) * plain + state.measure_count * extra
  return state.measure_count * extra / total if total > 0.0 else None
