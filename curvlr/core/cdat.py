"""CDAT, Curvature Dynamics Aware Tuning (Roulet et al., seed 000, eq. 8), framework-free.

    lr_t = sigma * n_t / d_t,   n_t = EMA of max(-g.u, 0),   d_t = EMA of |u^T H u| + eps.

Units. `u` is the base optimizer's update direction at unit learning rate (for NAdamW
the step is `params += lr * u`), so sigma * n / d is directly an absolute lr. The inputs
of `update` are REDUCED scalars: g.u and u^T H u of the global-batch mean loss (all-reduced
by the caller), so that every rank computes the same state.

Choices (documented, tested):
- EMAs: the paper's n~_{t+1} = (1 - beta) n_t + beta n~_t with n~ started at 0, then
  bias-corrected by the EMA's total weight, 1 - prod(betas) (Adam's 1 - beta^count when
  every step measures). Measured every k steps, a measurement decays the EMAs by
  beta^k: the time constant stays ~1/(1 - beta) steps, as in the paper's every-step
  CDAT, instead of stretching to k/(1 - beta) steps of stale curvature. Because n and d share the
  correction, with eps = 0 the ratio equals the paper's ratio of zero-started EMAs;
  with eps > 0 the correction keeps eps's meaning fixed from the first measurement on.
  `ema_decay = 0.9` is the paper's best beta_cdat at batch 256 (seed 000, C.5).
- eps is added after the EMA (d = EMA(|uHu|) + eps): a guard against d = 0, not a
  smoothing term. The paper uses eps = 0; the default 1e-12 is negligible next to any
  curvature we measure and keeps the ratio finite; `lr_max` bounds what it lets through.
- Ascent (g.u >= 0): max(-g.u, 0) = 0 enters the numerator EMA (paper). Until the first
  descent measurement the ratio is 0, which says nothing about the scale, so lr is kept.
  `numerator_clip='ema'` averages the signed -g.u instead and clips the mean: the choice
  for an unbiased (two-batch) numerator, whose noise would otherwise be clipped into a
  bias (E max(X, 0) > max(E X, 0): +37% for a Gaussian X with the 30% of negative g_1.d
  measured on criteo_embedded at batch 1024).
- Negative curvature: |u^T H u| (paper, Appendix C).
- Non-finite g.u or u^T H u (NaN, inf): the measurement is dropped, the state is
  unchanged apart from `rejected_count`, and lr is kept.
- Bounded steps (`guards.bounded_lr`, shared with the interval-median):
  lr_t = clip(ratio, min_lr, min(lr_max, max_growth * max(lr_{t-1}, lr_init))).
  The thesis saw a 1e14 ratio on its first measurement (seed 003 4.4.5), where NAdamW's
  first direction is ~sign(g); the growth cap turns such a value into 2 * lr_init. The
  growth reference is never below lr_init, so an lr that fell towards 0 can recover.
"""
import dataclasses
import math
from typing import NamedTuple, Optional

from curvlr.core import guards
from curvlr.core.schedules import NADAMW_BASELINE

EMA_UNITS = ('step', 'measurement', 'all')
NUMERATOR_CLIPS = ('measurement', 'ema')


@dataclasses.dataclass(frozen=True)
class CDATConfig:
  """CDAT hyperparameters. Learning rates are absolute (unit-lr direction u).

  Attributes:
    sigma: scale; 1 is the quadratically greedy step, 2 is "on edge" (paper's choice).
    ema_decay: beta of the EMAs of n and d, in [0, 1); 0 means no smoothing.
    eps: added to the bias-corrected EMA of |u^T H u| (loss units), >= 0.
    lr_init: lr used before the first descent measurement. Default: the NAdamW
      baseline's peak / 10, i.e. a start well inside the baseline's warmup range,
      from which CDAT can ramp up (the paper sees CDAT act as a warm-up).
    lr_max: absolute cap. Default 0.05: about 29x the baseline's peak, 10x the mean
      greedy step the thesis measured on Criteo (biased alpha 5.2e-3, seed 003 4.4).
    max_growth: per-measurement growth cap, lr_t <= max_growth * max(lr_{t-1}, lr_init).
      Default 2: from lr_init to the baseline peak in >= 4 measurements.
    min_lr: floor, >= 0.
    ema_unit: 'step' (default): a measurement `steps` after the last decays the EMAs by
      ema_decay ** steps, a time constant of ~1/(1 - ema_decay) training steps. Under
      amortized measurement that is no smoothing at all: at the Budget controller's
      measured gaps on criteo_embedded (44-114 steps) the previous EMA keeps
      0.9 ** 44 = 1% of its weight or less. 'measurement': decay by ema_decay per
      measurement, a time constant of ~1/(1 - ema_decay) measurements. 'all': every
      measurement weighs the same (the k-th decays the EMAs by (k - 1) / k, ema_decay
      unused), so the ratio is sum(-g.u) / sum |u^T H u|: the open-loop calibration's
      estimator. On criteo_embedded its seed spread is 1.4x where the last-heavy
      'measurement' EMA at 0.9 spread 7x (README, issue 11).
    numerator_clip: 'measurement' (default, the paper): each measurement enters the
      numerator EMA as max(-g.u, 0). 'ema': the EMA holds the signed -g.u and the ratio
      uses max(EMA, 0), an unbiased mean of a noisy (debiased) numerator.
  """
  sigma: float = 2.0
  ema_decay: float = 0.9
  eps: float = 1e-12
  lr_init: float = NADAMW_BASELINE.learning_rate / 10
  lr_max: float = 0.05
  max_growth: float = 2.0
  min_lr: float = 0.0
  ema_unit: str = 'step'
  numerator_clip: str = 'measurement'

  def __post_init__(self):
    guards.check(self, 'sigma', lambda v: 0 < v < math.inf, 'finite and > 0')
    guards.check(self, 'ema_decay', lambda v: 0 <= v < 1, 'in [0, 1)')
    guards.check(self, 'eps', lambda v: 0 <= v < math.inf, 'finite and >= 0')
    guards.check(self, 'lr_init', lambda v: 0 < v < math.inf, 'finite and > 0')
    guards.check(self, 'lr_max', lambda v: self.lr_init <= v < math.inf,
                 f'finite and >= lr_init ({self.lr_init})')
    guards.check(self, 'max_growth', lambda v: 1 <= v < math.inf, 'finite and >= 1')
    guards.check(self, 'min_lr', lambda v: 0 <= v <= self.lr_init,
                 f'in [0, lr_init ({self.lr_init})]')
    guards.check(self, 'ema_unit', lambda v: v in EMA_UNITS, f'one of {EMA_UNITS}')
    guards.check(self, 'numerator_clip', lambda v: v in NUMERATOR_CLIPS,
                 f'one of {NUMERATOR_CLIPS}')


class CDATState(NamedTuple):
  """CDAT state; plain Python numbers, JSON-serialisable via `._asdict()`.

  Attributes:
    lr: lr for the next update (absolute).
    n_ema: zero-started EMA of max(-g.u, 0) (of -g.u with numerator_clip='ema'), not
      bias-corrected.
    d_ema: zero-started EMA of |u^T H u|, not bias-corrected.
    ema_mass: total weight of the EMAs, 1 - prod(betas) (their bias correction).
    count: measurements in the EMAs.
    descent_count: of those, measurements with g.u < 0.
    rejected_count: non-finite measurements, dropped.
  """
  lr: float
  n_ema: float = 0.0
  d_ema: float = 0.0
  ema_mass: float = 0.0
  count: int = 0
  descent_count: int = 0
  rejected_count: int = 0


def init(config: CDATConfig) -> CDATState:
  return CDATState(lr=config.lr_init)


def restore(data: dict) -> CDATState:
  """The state from `state._asdict()` after a JSON round trip."""
  return guards.restore_state(CDATState, data)


def raw_lr(config: CDATConfig, state: CDATState) -> Optional[float]:
  """sigma * n / d from the bias-corrected EMAs, before bounds; None when undefined.

  Undefined: no descent measurement yet, d = 0 (only with eps = 0), or an overflow.
  """
  if state.descent_count == 0:
    return None
  correction = state.ema_mass
  denominator = state.d_ema / correction + config.eps
  if denominator <= 0.0:
    return None
  ratio = config.sigma * max(state.n_ema / correction, 0.0) / denominator
  return ratio if math.isfinite(ratio) else None


def update(config: CDATConfig, state: CDATState, g_dot_u, u_h_u, steps: int = 1) -> CDATState:
  """Adds one measurement and sets the next lr.

  Args:
    config: CDAT hyperparameters.
    state: current state.
    g_dot_u: g^T u, gradient of the global mean loss along the unit-lr direction u
      (negative for a descent direction). Python float, numpy scalar or 0-d tensor.
    u_h_u: u^T H u (Hessian, or a GGN) of the same loss, loss units.
    steps: training steps since the previous measurement (>= 1); the EMAs decay by
      ema_decay ** steps.

  Returns:
    The new state; `state.lr` is the lr for the next update.
  """
  g_dot_u, u_h_u = float(g_dot_u), float(u_h_u)
  if not guards.is_finite(g_dot_u, u_h_u):
    return state._replace(rejected_count=state.rejected_count + 1)
  if steps < 1:
    raise ValueError(f'cdat.update: steps = {steps}, must be >= 1.')
  if config.ema_unit == 'all':
    beta = state.count / (state.count + 1.0)
  else:
    beta = config.ema_decay ** (steps if config.ema_unit == 'step' else 1)
  state = state._replace(
      n_ema=beta * state.n_ema + (1.0 - beta) * (
          max(-g_dot_u, 0.0) if config.numerator_clip == 'measurement' else -g_dot_u),
      d_ema=beta * state.d_ema + (1.0 - beta) * abs(u_h_u),
      ema_mass=beta * state.ema_mass + (1.0 - beta),
      count=state.count + 1,
      descent_count=state.descent_count + (g_dot_u < 0.0))
  ratio = raw_lr(config, state)
  if ratio is None:
    return state
  return state._replace(lr=guards.bounded_lr(ratio, state.lr, config.lr_init, config.lr_max,
                                             config.max_growth, config.min_lr))


def cdat_lr(config: CDATConfig, state: CDATState) -> float:
  """The lr for the next update (absolute)."""
  del config  # The state holds the bounded lr; kept for the optax-like (config, state) order.
  return state.lr
