"""Interval-median GGN step sizes (the thesis, seed 003 4.5; PRIOR_WORK.md 1.5), framework-free.

Steps 0 .. W-1 follow the NAdamW baseline schedule (warm-up, `schedules.py`). From step
W on, windows of N consecutive measurement steps start at W, W + I, W + 2I, ...
(`amortization.Windowed(interval=I, length=N, start=W)`; the thesis: W = 2000, first
window 2000..2000+N-1). With `overhead_target` set, I is a minimum and the windows are
spaced so that measuring costs at most that fraction of the wall-clock
(`amortization.Windowed(target=...)`); their positions then depend on measured times. Each measurement step gives one lr candidate

    alpha = -g^T d / (d^T G d),

with G a GGN, g and G from one half-batch and d from the other (two-batch debiasing,
`two_batch_alpha`). Units: d is the NAdamW update at UNIT lr (params += lr * d), so
alpha is directly an absolute lr. (The thesis used the realised update lr * d, got a
relative alpha and appended alpha * lr: the same absolute value; its "absolute alpha"
means these units, not |alpha|.)

At the window's last step the median of the window's candidates (midpoint of the two
middle values for even counts, as torch.quantile(..., interpolation='midpoint') in the
thesis) becomes the lr from the next step on, but only when it is positive and finite;
otherwise the lr is kept. An applied median passes CDAT's guard (`guards.bounded_lr`):
at most `max_growth` times the larger of the held lr and the lr at W, at most `lr_max`,
at least `min_lr`. Without it one window moved the lr from 1.7e-3 to 4e-2, and on a
saturated model (d^T G d ~ 2e-8) to 2.8e12. As in the thesis' code, negative candidates (ascent on the
other half-batch; ~26% of them in the thesis' Criteo run) stay in the median, so a
window dominated by them leaves the lr unchanged rather than producing a large lr from
|alpha|. Non-finite candidates are dropped; a window needs at least
ceil(min_valid_fraction * N) finite ones. The lr is held between windows (also during
a window), starting from the warm-up schedule's lr at step W (the thesis froze its
scheduler there). The partially filled window is part of the state, so it survives a
checkpoint (the thesis' module-level list did not).
"""
import dataclasses
import math
import statistics
from typing import NamedTuple, Optional, Tuple

from curvlr.core import amortization, guards, schedules

# The thesis ran 8 * step_hint = 85,328 steps on Criteo (PRIOR_WORK.md 1.1), warm-up until
# step 2000; I = 5000, N = 10 was its best configuration in the full 85,328-step budget and
# in both time budgets (seed 003 4.5; only the half-step budget preferred I = 2000, N = 50).
_THESIS_STEPS = 85_328
WARMUP_FRACTION = 2000 / _THESIS_STEPS
INTERVAL_FRACTION = 5000 / _THESIS_STEPS


@dataclasses.dataclass(frozen=True)
class IntervalMedianConfig:
  """Interval-median hyperparameters; steps are 0-based global steps.

  Attributes:
    step_hint: the workload's step_hint (sets the warm-up schedule).
    warmup_steps: W, steps that follow the baseline schedule; the first window starts at W.
    interval: I, steps between the starts of consecutive windows.
    window: N, measurements per window.
    hparams: baseline whose warmup+cosine schedule (peak lr, warmup_factor) drives steps < W.
    min_valid_fraction: finite candidates a window needs, as a fraction of N, in (0, 1].
    overhead_target: None for fixed windows every I steps (the thesis); a fraction in
      (0, 1) for budget-aware windows at least I steps apart.
    lr_max: absolute cap of an applied median; default 0.05 as CDAT's.
    max_growth: growth cap per window, >= 1: an applied median is at most max_growth
      times max(held lr, lr at W). Default 4: the thesis' Criteo alphas were ~3x the
      baseline's peak (seed 003 4.4).
    min_lr: floor of an applied median, >= 0.
  """
  step_hint: int
  warmup_steps: int
  interval: int
  window: int = 10
  hparams: schedules.NAdamWHParams = schedules.NADAMW_BASELINE
  min_valid_fraction: float = 0.5
  overhead_target: Optional[float] = None
  lr_max: float = 0.05
  max_growth: float = 4.0
  min_lr: float = 0.0

  def __post_init__(self):
    guards.check(self, 'step_hint', lambda v: v >= 1, '>= 1')
    guards.check(self, 'warmup_steps', lambda v: v >= 0, '>= 0')
    guards.check(self, 'window', lambda v: v >= 1, '>= 1')
    guards.check(self, 'interval', lambda v: v >= self.window, f'>= window ({self.window})')
    guards.check(self, 'min_valid_fraction', lambda v: 0 < v <= 1, 'in (0, 1]')
    guards.check(self, 'lr_max', lambda v: 0 < v < math.inf, 'finite and > 0')
    guards.check(self, 'max_growth', lambda v: 1 <= v < math.inf, 'finite and >= 1')
    guards.check(self, 'min_lr', lambda v: 0 <= v <= self.lr_max,
                 f'in [0, lr_max ({self.lr_max})]')

  @classmethod
  def from_step_hint(cls, step_hint: int, window: int = 10,
                     warmup_fraction: float = WARMUP_FRACTION,
                     interval_fraction: float = INTERVAL_FRACTION,
                     **kwargs) -> 'IntervalMedianConfig':
    """The thesis' best setting scaled to `step_hint`.

    W = round(warmup_fraction * step_hint) (2000/85,328 = 2.34%), but at least one step
    past the baseline's warm-up, so that the lr reaches its peak first. I =
    round(interval_fraction * step_hint) (5000/85,328 = 5.86%), but at least 2N, so
    that at most half the steps measure. N = 10 is a sample size for the median and does
    not scale with the run length. Criteo (10,666): W = 250, I = 625.
    """
    hparams = kwargs.get('hparams', schedules.NADAMW_BASELINE)
    baseline_warmup = schedules.warmup_steps(step_hint, hparams)
    return cls(step_hint=step_hint,
               warmup_steps=max(round(warmup_fraction * step_hint), baseline_warmup + 1),
               interval=max(round(interval_fraction * step_hint), 2 * window),
               window=window, **kwargs)

  @property
  def schedule(self) -> amortization.Windowed:
    """The measurement steps as an amortization schedule."""
    return amortization.Windowed(interval=self.interval, length=self.window,
                                 start=self.warmup_steps, untimed_warmup=1,
                                 target=self.overhead_target)

  @property
  def min_valid(self) -> int:
    return math.ceil(self.min_valid_fraction * self.window)


class IntervalMedianState(NamedTuple):
  """JSON-serialisable via `._asdict()`; restore with `restore`.

  Attributes:
    lr: lr held from step W on (absolute).
    window_start: first step of the window being filled, -1 when none.
    window: finite candidates of that window so far (absolute lrs).
    last_median: median of the last completed window, None if it had too few values.
    applied_count: windows whose median became the lr.
    rejected_windows: completed windows whose median was not applied.
    rejected_values: non-finite candidates dropped.
  """
  lr: float
  window_start: int = -1
  window: Tuple[float, ...] = ()
  last_median: Optional[float] = None
  applied_count: int = 0
  rejected_windows: int = 0
  rejected_values: int = 0


def warmup_end_lr(config: IntervalMedianConfig) -> float:
  """The baseline schedule's lr at step W: held until the first applied window."""
  return schedules.nadamw_baseline_lr(config.warmup_steps, config.step_hint, config.hparams)


def init(config: IntervalMedianConfig) -> IntervalMedianState:
  return IntervalMedianState(lr=warmup_end_lr(config))


def restore(data: dict) -> IntervalMedianState:
  """The state from `state._asdict()` after a JSON round trip."""
  return guards.restore_state(IntervalMedianState, data)


def lr_for_step(config: IntervalMedianConfig, state: IntervalMedianState, step: int) -> float:
  """lr of update `step`: the baseline schedule before W, the held lr from W on."""
  if step < config.warmup_steps:
    return schedules.nadamw_baseline_lr(step, config.step_hint, config.hparams)
  return state.lr


def update(config: IntervalMedianConfig, state: IntervalMedianState,
           position: Tuple[int, int], alpha) -> IntervalMedianState:
  """Adds the candidate `alpha` (absolute lr) measured at `position` = (first step of its
  window, index in the window), as `amortization.window_position` gives it.

  Call once per measurement step, after the measurement. At the window's last step the
  window is closed: its median, bounded (module docstring), becomes the lr when positive
  and finite. A call for a new
  window discards an unfinished earlier one (its last step was never measured).
  """
  window_start, index = position
  if not 0 <= index < config.window:
    raise ValueError(f'interval_median.update: index {index} outside a window of '
                     f'{config.window} measurements.')
  if state.window_start != window_start:
    state = state._replace(window_start=window_start, window=())
  alpha = float(alpha)
  if math.isfinite(alpha):
    state = state._replace(window=state.window + (alpha,))
  else:
    state = state._replace(rejected_values=state.rejected_values + 1)
  if index < config.window - 1:
    return state
  median = statistics.median(state.window) if len(state.window) >= config.min_valid else None
  state = state._replace(window_start=-1, window=(), last_median=median)
  if median is not None and median > 0.0:
    lr = guards.bounded_lr(median, state.lr, warmup_end_lr(config), config.lr_max,
                           config.max_growth, config.min_lr)
    return state._replace(lr=lr, applied_count=state.applied_count + 1)
  return state._replace(rejected_windows=state.rejected_windows + 1)


class AlphaDecomposition(NamedTuple):
  """Step sizes of the two-batch scheme (seed 003 eq. 3.4-3.5); NaN where d^T G d is 0.

  biased = debiased - (numerator_term + denominator_term) up to rounding.
  """
  biased: float            # -g2.d / d G2 d: g, G and d from the same batch
  debiased: float          # -g1.d / d G1 d: d from batch 2, g and G from batch 1
  hybrid: float            # -g1.d / d G2 d: debiased numerator, biased denominator
  numerator_term: float    # hybrid - biased: the numerator's part of debiased - biased
  denominator_term: float  # debiased - hybrid: the denominator's part


def _step(g_dot_d: float, d_g_d: float) -> float:
  return -g_dot_d / d_g_d if d_g_d != 0.0 else math.nan


def two_batch_alpha(gd_1, dGd_1, gd_2, dGd_2) -> AlphaDecomposition:
  """Biased and debiased alpha and the thesis' hybrid decomposition of their difference.

  Args:
    gd_1: g_1^T d, gradient of half-batch 1 along d, where d is the update direction
      computed from half-batch 2 (unit lr).
    dGd_1: d^T G_1 d, GGN of half-batch 1.
    gd_2: g_2^T d.
    dGd_2: d^T G_2 d.

  The thesis defines hybrid = numerator_unbiased / denominator_biased with numerator
  -d^T g (eq. 3.2); its eq. 3.5 drops the minus sign, which we keep so that
  debiased - biased = numerator_term + denominator_term.
  """
  gd_1, dGd_1, gd_2, dGd_2 = float(gd_1), float(dGd_1), float(gd_2), float(dGd_2)
  biased, debiased, hybrid = _step(gd_2, dGd_2), _step(gd_1, dGd_1), _step(gd_1, dGd_2)
  return AlphaDecomposition(biased=biased, debiased=debiased, hybrid=hybrid,
                            numerator_term=hybrid - biased, denominator_term=debiased - hybrid)
