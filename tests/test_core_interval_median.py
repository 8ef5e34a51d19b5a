"""curvlr.core.interval_median: warm-up, window boundaries, median guard, checkpoints."""
import json
import math
import random

import pytest

from curvlr.core import amortization as am
from curvlr.core import interval_median as im
from curvlr.core import schedules

# W = 100, I = 50, N = 5: windows 100..104, 150..154, 200..204, ...
SMALL = im.IntervalMedianConfig(step_hint=1000, warmup_steps=100, interval=50, window=5)


def position(config, step):
  """The window position of `step` under fixed windows (they do not read the state)."""
  return am.window_position(config.schedule, am.init(config.schedule), step)


def is_measurement_step(config, step):
  return position(config, step) is not None


def feed(config, state, step0, alphas):
  for i, alpha in enumerate(alphas):
    state = im.update(config, state, position(config, step0 + i), alpha)
  return state


def test_window_boundaries_exactly():
  steps = [k for k in range(0, 260) if is_measurement_step(SMALL, k)]
  assert steps == [*range(100, 105), *range(150, 155), *range(200, 205), *range(250, 255)]


@pytest.mark.parametrize('interval,window', [(1000, 10), (1000, 50), (2000, 25), (5000, 10)])
def test_matches_thesis_step_rule(interval, window):
  # The thesis' normal-step conditions (PRIOR_WORK.md 1.5), W = 2000.
  config = im.IntervalMedianConfig(step_hint=10_666, warmup_steps=2000, interval=interval,
                                   window=window)
  for k in range(0, 13_000):
    if interval == 5000:
      normal = k < 2000 or ((k - 2000) % 5000 >= window and k > 2000)
    else:
      normal = k % interval >= window or k < 2000
    assert is_measurement_step(config, k) == (not normal), k


def test_lr_follows_baseline_during_warmup_then_is_held():
  state = im.init(SMALL)
  for k in range(100):
    assert im.lr_for_step(SMALL, state, k) == schedules.nadamw_baseline_lr(k, 1000)
  held = schedules.nadamw_baseline_lr(100, 1000)  # the schedule frozen at W
  assert state.lr == held
  assert all(im.lr_for_step(SMALL, state, k) == held for k in (100, 104, 105, 149, 10_000))


def test_median_applied_after_last_window_step():
  state = feed(SMALL, im.init(SMALL), 100, [1e-3, -2e-3, 4e-3, 3e-3])  # incomplete
  assert state.lr == im.init(SMALL).lr and state.window == (1e-3, -2e-3, 4e-3, 3e-3)
  assert im.lr_for_step(SMALL, state, 104) == im.init(SMALL).lr  # last window step: old lr
  state = im.update(SMALL, state, position(SMALL, 104), -5e-3)
  # sorted: -5e-3, -2e-3, 1e-3, 3e-3, 4e-3 -> 1e-3 (negatives stay in the median).
  assert state.lr == 1e-3 and state.last_median == 1e-3
  assert im.lr_for_step(SMALL, state, 105) == 1e-3
  assert (state.window_start, state.window, state.applied_count) == (-1, (), 1)


def test_applied_median_is_bounded_like_cdat():
  """Growth <= max_growth x max(held lr, lr at W) per window, <= lr_max, >= min_lr; an lr
  that fell can grow back from the lr at W. (2.8e12 was applied once without it.)"""
  config = im.IntervalMedianConfig(step_hint=1000, warmup_steps=100, interval=50, window=5,
                                   lr_max=0.05, max_growth=4.0, min_lr=1e-6)
  at_w = im.warmup_end_lr(config)
  state = feed(config, im.init(config), 100, [2.8e12] * 5)
  assert state.lr == pytest.approx(4 * at_w) and state.last_median == 2.8e12
  state = feed(config, state, 150, [2.8e12] * 5)
  assert state.lr == pytest.approx(min(16 * at_w, 0.05))
  state = feed(config, state, 200, [1e-9] * 5)
  assert state.lr == 1e-6  # the floor
  state = feed(config, state, 250, [1.0] * 5)
  assert state.lr == pytest.approx(4 * at_w)  # growth from the lr at W, not from 1e-6
  for start in (300, 350):
    state = feed(config, state, start, [1.0] * 5)
  assert state.lr == 0.05  # 4 x 4 x 6.8e-3 capped


def test_even_window_uses_midpoint():
  config = im.IntervalMedianConfig(step_hint=1000, warmup_steps=100, interval=50, window=4)
  state = feed(config, im.init(config), 100, [4e-3, 1e-3, 3e-3, 2e-3])
  assert state.lr == pytest.approx(2.5e-3, rel=1e-15)


def test_non_positive_median_keeps_lr():
  state = feed(SMALL, im.init(SMALL), 100, [1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
  state = feed(SMALL, state, 150, [-1e-3, -2e-3, 5e-3, -1e-4, 6e-3])  # median -1e-4
  assert state.lr == 1e-3 and state.last_median == -1e-4
  assert (state.applied_count, state.rejected_windows) == (1, 1)
  state = feed(SMALL, state, 200, [0.0, 0.0, 0.0, 1.0, -1.0])  # median exactly 0
  assert state.lr == 1e-3 and state.rejected_windows == 2


def test_non_finite_alphas_are_dropped():
  state = feed(SMALL, im.init(SMALL), 100, [math.nan, 2e-3, math.inf, 4e-3, 3e-3])
  assert state.lr == 3e-3 and state.rejected_values == 2  # median of the 3 finite values
  state = feed(SMALL, state, 150, [math.nan, math.nan, -math.inf, 1e-2, 2e-2])
  assert state.lr == 3e-3 and state.last_median is None  # 2 < ceil(0.5 * 5) finite values
  assert state.rejected_windows == 1 and state.rejected_values == 5


def test_update_outside_a_window_raises():
  assert position(SMALL, 105) is None and position(SMALL, 99) is None
  with pytest.raises(ValueError, match='index 5 outside a window of 5'):
    im.update(SMALL, im.init(SMALL), (100, 5), 1e-3)


def test_unfinished_window_is_discarded_by_the_next():
  state = feed(SMALL, im.init(SMALL), 100, [9.0, 9.0, 9.0, 9.0])  # step 104 never measured
  state = feed(SMALL, state, 150, [1e-3, 2e-3, 3e-3, 4e-3, 5e-3])
  assert state.lr == 3e-3 and state.applied_count == 1


def simulate(config, state, steps, alphas):
  lrs = []
  for k in steps:
    lrs.append(im.lr_for_step(config, state, k))
    if is_measurement_step(config, k):
      state = im.update(config, state, position(config, k), alphas[k])
  return state, lrs


def test_checkpoint_mid_window_gives_identical_decisions():
  rng = random.Random(3)
  alphas = {k: rng.choice([math.nan] + [rng.gauss(1e-3, 1e-3)] * 9) for k in range(400)}
  straight, lrs_straight = simulate(SMALL, im.init(SMALL), range(400), alphas)
  state, lrs = simulate(SMALL, im.init(SMALL), range(153), alphas)  # inside window 150..154
  assert state.window_start == 150 and len(state.window) >= 1
  state = im.restore(json.loads(json.dumps(state._asdict(), allow_nan=False)))
  assert isinstance(state.window, tuple)
  state, more = simulate(SMALL, state, range(153, 400), alphas)
  assert lrs + more == lrs_straight and state == straight
  assert straight.applied_count >= 4


def test_from_step_hint_defaults():
  criteo = im.IntervalMedianConfig.from_step_hint(10_666)
  assert (criteo.warmup_steps, criteo.interval, criteo.window) == (250, 625, 10)
  thesis = im.IntervalMedianConfig.from_step_hint(85_328)
  assert (thesis.warmup_steps, thesis.interval) == (2000, 5000)
  tiny = im.IntervalMedianConfig.from_step_hint(100)  # minimums: past the baseline warm-up, 2N
  assert (tiny.warmup_steps, tiny.interval) == (3, 20)
  peak = schedules.NADAMW_BASELINE.learning_rate
  assert schedules.nadamw_baseline_lr(tiny.warmup_steps - 1, 100) == peak  # reached before W
  custom = im.IntervalMedianConfig.from_step_hint(
      1500, window=25, interval_fraction=1000 / 85_328,
      hparams=schedules.NAdamWHParams(warmup_factor=0.1))
  assert (custom.warmup_steps, custom.interval, custom.window) == (151, 50, 25)


@pytest.mark.parametrize('kwargs,field', [
    (dict(step_hint=0), 'step_hint'), (dict(warmup_steps=-1), 'warmup_steps'),
    (dict(window=0), 'window'), (dict(interval=4), 'interval'),
    (dict(min_valid_fraction=0.0), 'min_valid_fraction'), (dict(lr_max=0.0), 'lr_max'),
    (dict(max_growth=0.5), 'max_growth'), (dict(min_lr=1.0), 'min_lr')])
def test_config_validation_names_the_field(kwargs, field):
  args = dict(step_hint=1000, warmup_steps=100, interval=50, window=5) | kwargs
  with pytest.raises(ValueError, match=f'IntervalMedianConfig.{field} = '):
    im.IntervalMedianConfig(**args)


def test_two_batch_alpha_and_hybrid_decomposition():
  # d from batch 2; g1.d = -1, d G1 d = 4; g2.d = -3, d G2 d = 2.
  a = im.two_batch_alpha(-1.0, 4.0, -3.0, 2.0)
  assert (a.biased, a.debiased, a.hybrid) == (1.5, 0.25, 0.5)
  assert (a.numerator_term, a.denominator_term) == (-1.0, -0.25)
  assert a.debiased - a.biased == a.numerator_term + a.denominator_term
  zero = im.two_batch_alpha(-1.0, 0.0, -3.0, 2.0)
  assert math.isnan(zero.debiased) and math.isnan(zero.denominator_term)
  assert zero.biased == 1.5
