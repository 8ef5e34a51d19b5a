"""Step-size policies of the curvature submissions: a rule plus a measurement schedule.

The whole per-step decision logic shared by the PyTorch and JAX submissions:

    state = init(policy)
    state = start_step(policy, state, step, len(eval_results), time.time, sync, reduce)
    if should_measure(policy, state, step):             # same on every rank
      ...framework code computes reduced scalars...
      state = observe(policy, state, step, measurement)
    lr = learning_rate(policy, state, step)             # params += lr * u

Two rules:
- `CDATPolicy` (seed 000): a `Measurement(g_dot_u, u_m_u)` of the global-batch mean loss
  feeds `cdat.update`; the lr is held between measurements. u is the NAdamW direction.
  `debiased` feeds it half 1's scalars of a `TwoBatchMeasurement` instead.
- `MedianPolicy` (seed 003): a `TwoBatchMeasurement` gives `two_batch_alpha`; the
  debiased (default) or biased alpha feeds `interval_median.update`. The schedule is the
  rule's own windows; steps before W follow the NAdamW baseline schedule.
Framework code only computes the scalars; nothing here imports a framework.
State is plain data (`to_dict` / `restore` round-trip through JSON).
"""
import dataclasses
import json
import logging
import math
from typing import Callable, NamedTuple, Optional, Union

from curvlr.core import amortization, cdat, guards, interval_median, schedules, workload_support

CURVATURES = ('ggn', 'hessian')


class Measurement(NamedTuple):
  """Reduced scalars along the unit-lr direction u (per-example means, loss units).

  g_dot_u: g.u of the global-batch mean loss; u_m_u: u^T M u, M = GGN or Hessian.
  """
  g_dot_u: float
  u_m_u: float


class TwoBatchMeasurement(NamedTuple):
  """Reduced scalars of the two-batch scheme; d is the direction computed from half 2.

  gd_1, dGd_1: g_1.d and d^T G_1 d on half 1; gd_2, dGd_2: the same on half 2.
  """
  gd_1: float
  dGd_1: float
  gd_2: float
  dGd_2: float


@dataclasses.dataclass(frozen=True)
class CDATPolicy:
  """CDAT on the NAdamW direction, measured on `schedule`'s steps.

  Attributes:
    rule: CDAT hyperparameters.
    schedule: when to measure. Default: `Budget(0.02)`, the overhead-budget controller.
    curvature: 'ggn' (one JVP, PSD) or 'hessian' (exact u^T H u, ~2-3 steps' cost).
    debiased: feed the rule the two-batch scalars g_1.d and d^T G_1 d (d from half 2 of
      the batch, g and G from half 1, as the interval-median's debiased alpha) instead of
      g.u and u^T M u of the batch that produced u. The same-batch numerator -g.u is
      biased upwards: u is built from g, so g.u holds the squared gradient noise.
      GGN only, whole batch only.
    biased_diagnostics: with `debiased`, also measure half 2 (one more JVP) so that the
      biased alpha of the same step is logged beside the debiased one.
    cosine_step_hint: None (CDAT as in the paper: the lr is the bounded ratio). Set,
      the curvature-calibrated schedule: the ratio sets the scale and the NAdamW
      baseline's shape sets the course, lr(step) = ratio x warmup_cosine(step, 1, w, T)
      with w = int(warmup_factor x cosine_step_hint), T = cosine_step_hint - w (the
      baseline's warm-up and its cosine to 0), so the lr decays as the baseline's does
      while no constant tied to the baseline's tuned peak bounds it.
    calibration_steps: None (closed loop: the ratio is re-measured all run long along
      the trajectory it sets). Set (requires cosine_step_hint), the open-loop
      calibration: updates before `calibration_steps` follow the NAdamW baseline's
      schedule and only they measure, so the ratio is the greedy step along the
      baseline's trajectory, independent of sigma; from that step on the ratio is
      frozen and lr(step) = ratio x the baseline's shape. Closed loop the held-out
      greedy step grows with the lr applied, an unstable fixed point of
      lr ~ sigma x alpha(lr) (README, issue 11); open loop there is no feedback.
  """
  rule: cdat.CDATConfig = cdat.CDATConfig()
  schedule: amortization.Schedule = amortization.Budget(target=0.02)
  curvature: str = 'ggn'
  debiased: bool = False
  biased_diagnostics: bool = False
  cosine_step_hint: Optional[int] = None
  calibration_steps: Optional[int] = None

  def __post_init__(self):
    guards.check(self, 'curvature', lambda v: v in CURVATURES, f'one of {CURVATURES}')
    guards.check(self, 'curvature', lambda v: not self.debiased or v == 'ggn',
                 "'ggn' when debiased (the two-batch measurement is a GGN one)")
    guards.check(self, 'schedule', lambda v: not self.debiased or v.measure_fraction >= 1.0,
                 'measuring the whole batch when debiased (measure_fraction = 1)')
    guards.check(self, 'biased_diagnostics', lambda v: not v or self.debiased,
                 'False unless debiased')
    guards.check(self, 'cosine_step_hint', lambda v: v is None or v >= 1, 'None or >= 1')
    guards.check(self, 'calibration_steps',
                 lambda v: v is None or (v > self.schedule.start and self.cosine_step_hint),
                 'None, or > schedule.start with cosine_step_hint set')

  def shape(self, step: int) -> float:
    """The factor in [0, 1] on the ratio at update `step` (1 without cosine_step_hint)."""
    if self.cosine_step_hint is None:
      return 1.0
    warmup = schedules.warmup_steps(self.cosine_step_hint)
    return schedules.warmup_cosine(step, 1.0, warmup, max(self.cosine_step_hint - warmup, 1))

  @property
  def two_batch(self) -> bool:
    """Whether measurement steps split the batch into halves (`TwoBatchMeasurement`)."""
    return self.debiased

  @property
  def measure_until(self) -> Optional[int]:
    """No measurement at this update or later (None: no end)."""
    return self.calibration_steps

  @property
  def measures_both_halves(self) -> bool:
    return self.biased_diagnostics


@dataclasses.dataclass(frozen=True)
class MedianPolicy:
  """Interval-median of two-batch GGN alphas.

  Attributes:
    rule: windows, warm-up and baseline schedule; its `schedule` decides measurements.
    debiased: use the two-batch alpha (d from half 2; g, G from half 1); False uses
      the biased one-batch alpha (g, G, d all from half 2).
    biased_diagnostics: with `debiased`, also measure half 2 to log the biased alpha.
  """
  rule: interval_median.IntervalMedianConfig
  debiased: bool = True
  biased_diagnostics: bool = False

  @property
  def schedule(self) -> amortization.Windowed:
    return self.rule.schedule

  @property
  def two_batch(self) -> bool:
    return True

  @property
  def measures_both_halves(self) -> bool:
    """Whether half 2's g_2.d and d^T G_2 d are measured too (one more JVP).

    The debiased alpha needs half 1 only; the biased one, and the thesis' decomposition
    of their difference (`biased_diagnostics`), need half 2 as well. Unmeasured, they
    are NaN.
    """
    return not self.debiased or self.biased_diagnostics

  @property
  def curvature(self) -> str:
    return 'ggn'

  @property
  def measure_until(self) -> Optional[int]:
    return None


Policy = Union[CDATPolicy, MedianPolicy]


class Clock(NamedTuple):
  """The update in progress: its step, start time (seconds since the epoch), whether it
  measured, how many evals had been run when it started (-1: none in progress), whether
  it is timed (`amortization.is_timed`; its start was read after a device sync), and the
  seconds of other instruments' work in it that its time leaves out (`exclude`)."""
  step: int = -1
  start: float = 0.0
  measured: bool = False
  evals: int = -1
  timed: bool = False
  excluded: float = 0.0


class PolicyState(NamedTuple):
  """rule: CDATState or IntervalMedianState; timing: measurement bookkeeping and times."""
  rule: Union[cdat.CDATState, interval_median.IntervalMedianState]
  timing: amortization.AmortState
  clock: Clock = Clock()


def init(policy: Policy) -> PolicyState:
  rule = (cdat.init(policy.rule) if isinstance(policy, CDATPolicy)
          else interval_median.init(policy.rule))
  return PolicyState(rule, amortization.init(policy.schedule))


def _no_sync() -> None:
  return None


def start_step(policy: Policy, state: PolicyState, step: int, evals: int,
               clock: Callable[[], float], sync: Callable[[], None] = _no_sync,
               reduce: Callable[[float], float] = lambda seconds: seconds) -> PolicyState:
  """Starts update `step` and records the previous update, timed or not.

  The duration of update s is the time from its start to the start of update s + 1
  (`clock()`, seconds): what AlgoPerf charges to the submission (data selection, the
  update, loop overhead). Only the steps `amortization.is_timed` picks are timed, each
  between two calls of `sync` (which waits for the device's queued work: under
  asynchronous dispatch the clock alone would time the dispatch), so the other steps
  run without a sync. A timed step counts only when update s + 1 follows s with no
  eval in between (`evals`, the number of evals so far, is unchanged), since eval time
  is not submission time; a restart from a checkpoint also fails that test. `sync` and
  `reduce` (e.g. the max over ranks) are called on every rank or on none, so that
  collectives stay matched.
  """
  previous = state.clock
  ended = previous.timed and previous.step == step - 1 and previous.evals == evals
  if ended:
    sync()
  now = clock()
  if previous.step >= 0:  # Register it, with its time only if timed and uninterrupted.
    state = record_time(policy, state, previous.step, previous.measured,
                        reduce(now - previous.start - previous.excluded) if ended else None)
  timed = amortization.is_timed(policy.schedule, state.timing, step,
                                should_measure(policy, state, step))
  if timed and not ended:
    sync()
    now = clock()
  return state._replace(clock=Clock(step=step, start=now, measured=False, evals=evals,
                                    timed=timed))


def exclude(state: PolicyState, seconds: float) -> PolicyState:
  """Leaves `seconds` (synchronised wall time of another instrument's work inside the
  update in progress: the edge-of-stability diagnostics) out of that update's time, so
  that the budget controller's plain and measurement times are the policy's own: a
  diagnostic step that falls on a timed plain step (every 50th, with diagnostics every
  100th) would otherwise raise the plain-step estimate by the diagnostics' cost."""
  return state._replace(clock=state.clock._replace(excluded=state.clock.excluded + seconds))


def should_measure(policy: Policy, state: PolicyState, step: int) -> bool:
  """Whether update `step` measures curvature (identical on all ranks for equal inputs)."""
  end = policy.measure_until
  if end is not None and step >= end:
    return False
  return amortization.should_measure(policy.schedule, state.timing, step)


def check_workload(policy: Policy, workload) -> workload_support.Support:
  """What `policy` uses on `workload` (logged when special); raises
  workload_support.UnsupportedWorkload where it cannot run (call at init)."""
  row = workload_support.check(workload, sub_batch=policy.schedule.measure_fraction < 1.0)
  if row.note:
    logging.info('curvlr: %s.', row.note)
  return row


def needs_reduced_times(policy: Policy) -> bool:
  """Whether decisions read step times, so that ranks must agree on them (e.g. their max)."""
  schedule = policy.schedule
  return isinstance(schedule, amortization.Budget) or (
      isinstance(schedule, amortization.Windowed) and schedule.target is not None)


def observe(policy: Policy, state: PolicyState, step: int,
            measurement: Union[Measurement, TwoBatchMeasurement]) -> PolicyState:
  """Feeds one measurement taken at update `step` to the rule."""
  if isinstance(policy, CDATPolicy):
    last = state.timing.last_measured_step
    g_dot_u, u_m_u = ((measurement.gd_1, measurement.dGd_1)
                      if isinstance(measurement, TwoBatchMeasurement) else measurement)
    rule = cdat.update(policy.rule, state.rule, g_dot_u, u_m_u,
                       steps=step - last if 0 <= last < step else 1)
  else:
    position = amortization.window_position(policy.schedule, state.timing, step)
    if position is None:
      raise ValueError(f'policy.observe: step {step} is not a measurement step of '
                       f'{policy.schedule}.')
    alphas = interval_median.two_batch_alpha(*measurement)
    alpha = alphas.debiased if policy.debiased else alphas.biased
    rule = interval_median.update(policy.rule, state.rule, position, alpha)
  return state._replace(rule=rule, clock=state.clock._replace(measured=True))


def learning_rate(policy: Policy, state: PolicyState, step: int) -> float:
  """Absolute lr of update `step` (after any measurement at that step)."""
  if isinstance(policy, CDATPolicy):
    if policy.calibration_steps is not None and step < policy.calibration_steps:
      return schedules.nadamw_baseline_lr(step, policy.cosine_step_hint)
    return cdat.cdat_lr(policy.rule, state.rule) * policy.shape(step)
  return interval_median.lr_for_step(policy.rule, state.rule, step)


def record_time(policy: Policy, state: PolicyState, step: int, measured: bool,
                seconds: Optional[float]) -> PolicyState:
  """Records the wall time of update `step` (reduced over ranks when `needs_reduced_times`)."""
  return state._replace(
      timing=amortization.record(policy.schedule, state.timing, step, measured, seconds))


def metrics(policy: Policy, state: PolicyState,
            measurement: Union[Measurement, TwoBatchMeasurement, None] = None) -> dict:
  """Scalars to log after an update: the rule's state and, if given, the measurement."""
  out = {'overhead_fraction': amortization.overhead_fraction(state.timing),
         'measure_count': state.timing.measure_count}
  if isinstance(measurement, Measurement):
    out.update(g_dot_u=measurement.g_dot_u, u_m_u=measurement.u_m_u)
    raw = cdat.raw_lr(policy.rule, state.rule)
    out.update(cdat_raw_lr=raw, cdat_rejected=state.rule.rejected_count)
  elif isinstance(measurement, TwoBatchMeasurement):
    alphas = interval_median.two_batch_alpha(*measurement)
    out.update(measurement._asdict())
    out.update({f'alpha_{k}': v for k, v in alphas._asdict().items()})
    if isinstance(policy, CDATPolicy):
      out.update(cdat_raw_lr=cdat.raw_lr(policy.rule, state.rule),
                 cdat_rejected=state.rule.rejected_count)
    else:
      out.update(median_applied=state.rule.applied_count,
                 median_rejected_windows=state.rule.rejected_windows,
                 last_median=state.rule.last_median)
  return {k: (math.nan if v is None else float(v)) for k, v in out.items()}


def to_dict(state: PolicyState) -> dict:
  """JSON-serialisable form of the state (for optimizer checkpoints)."""
  return {'rule': state.rule._asdict(), 'timing': state.timing._asdict(),
          'clock': state.clock._asdict()}


def restore(policy: Policy, data: dict) -> PolicyState:
  """Inverse of `to_dict`."""
  rule = (cdat.restore(data['rule']) if isinstance(policy, CDATPolicy)
          else interval_median.restore(data['rule']))
  return PolicyState(rule, amortization.restore(data['timing']),
                     guards.restore_state(Clock, data['clock']))


ENCODED_BYTES = 4096  # fixed size of `encode`'s output


def encode(state: PolicyState) -> bytes:
  """The state as UTF-8 JSON padded with spaces to ENCODED_BYTES: exact, and storable as a
  uint8 array of one fixed shape in array checkpoints, so that a checkpoint restores into
  a template made from any other state (flax's and orbax's restores are shape-checked)."""
  data = json.dumps(to_dict(state), allow_nan=False).encode()
  if len(data) > ENCODED_BYTES:
    raise ValueError(f'policy state needs {len(data)} bytes > ENCODED_BYTES = {ENCODED_BYTES} '
                     '(an interval-median window of ~150 or more measurements).')
  return data.ljust(ENCODED_BYTES)


def decode(policy: Policy, data: bytes) -> PolicyState:
  """Inverse of `encode` (trailing spaces are JSON whitespace)."""
  return restore(policy, json.loads(bytes(data).decode()))
