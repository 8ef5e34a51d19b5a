"""curvlr.core.schedules: AlgoPerf's JAX warmup+cosine, by hand and against optax."""
import collections
import dataclasses
import math
import subprocess
import sys

import numpy as np
import optax
import pytest

from curvlr.core import schedules

# step_hint = 100, warmup_factor = 0.1, peak 1: w = int(0.1 * 100) = 10, T = 100 - 10 = 90.
HAND_TABLE = {
    0: 0.0,                                            # first update: lr 0
    5: 0.5,                                            # 5 / 10
    10: 1.0,                                           # 0.5 * (1 + cos 0)
    55: 0.5,                                           # 0.5 * (1 + cos(pi * 45/90))
    99: 0.5 * (1.0 - math.cos(math.pi / 90)),          # 0.5 * (1 + cos(pi * 89/90)) = 3.0459e-4
    100: 0.0,                                          # k = step_hint
    150: 0.0,                                          # 0 beyond step_hint (not PyTorch's rise)
}
HP = schedules.NAdamWHParams(learning_rate=1.0, warmup_factor=0.1)


@pytest.mark.parametrize('step,expected', sorted(HAND_TABLE.items()))
def test_warmup_cosine_hand_table(step, expected):
  assert math.isclose(schedules.warmup_cosine(step, 1.0, 10, 90), expected, abs_tol=1e-15)
  assert schedules.nadamw_baseline_lr(step, 100, HP) == schedules.warmup_cosine(step, 1.0, 10, 90)


def test_hand_value_at_99():
  assert math.isclose(HAND_TABLE[99], 3.0458649045213e-4, rel_tol=1e-12)


@pytest.mark.parametrize('step_hint,warmup_factor,peak', [
    (100, 0.1, 1.0), (100, 0.02, 2.0), (10_666, 0.02, 0.0017486387539278373), (1_500, 0.02, 1e-3)])
def test_matches_optax_join_schedules(step_hint, warmup_factor, peak):
  warmup = int(warmup_factor * step_hint)
  decay = max(step_hint - warmup, 1)
  ref = optax.join_schedules(
      [optax.linear_schedule(0.0, peak, warmup), optax.cosine_decay_schedule(peak, decay)],
      [warmup])
  hp = schedules.NAdamWHParams(learning_rate=peak, warmup_factor=warmup_factor)
  steps = np.arange(2 * step_hint + 2)
  expected = np.asarray(ref(steps), np.float64)
  ours = np.array([schedules.nadamw_baseline_lr(int(k), step_hint, hp) for k in steps])
  # optax evaluates in float32: equal up to float32 rounding (2 ulps of the peak).
  np.testing.assert_allclose(ours, expected, rtol=0, atol=2 * np.finfo(np.float32).eps * peak)
  assert ours[0] == expected[0] == 0.0 and ours[warmup] == peak
  assert not ours[step_hint:].any() and not expected[step_hint:].any()


def test_baseline_constants_and_criteo_warmup():
  hp = schedules.NADAMW_BASELINE
  assert (hp.learning_rate, hp.one_minus_beta1, hp.beta2, hp.weight_decay, hp.warmup_factor,
          hp.eps, hp.dropout_rate, hp.label_smoothing, hp.grad_clip) == (
              0.0017486387539278373, 0.06733926164, 0.9955159689799007, 0.08121616522670176,
              0.02, 1e-8, 0.1, 0.0, None)
  # Criteo: w = int(0.02 * 10666) = 213, T = 10453 (ALGOPERF.md 5.2).
  assert schedules.nadamw_baseline_lr(212, 10_666) < hp.learning_rate
  assert schedules.nadamw_baseline_lr(213, 10_666) == hp.learning_rate
  assert schedules.nadamw_baseline_lr(212, 10_666) == hp.learning_rate * 212 / 213


def test_zero_warmup_and_bad_arguments():
  assert schedules.warmup_cosine(0, 3.0, 0, 10) == 3.0
  for args in [(-1, 1.0, 10, 90), (0, 1.0, -1, 90), (0, 1.0, 10, 0)]:
    with pytest.raises(ValueError, match='warmup_cosine'):
      schedules.warmup_cosine(*args)


def test_core_imports_no_framework():
  code = ('import sys; import curvlr.core.schedules, curvlr.core.cdat, '
          'curvlr.core.interval_median, curvlr.core.amortization; '
          'bad = [m for m in ("numpy", "torch", "jax") if m in sys.modules]; '
          'assert not bad, bad')
  subprocess.run([sys.executable, '-c', code], check=True)


def test_nadamw_from_point_scales_the_peak_and_picks_the_shape():
  Point = collections.namedtuple('Point', ['lr_scale', 'schedule', 'weight_decay'])
  h, shape, horizon = schedules.nadamw_from_point(Point(4.0, 'warmup_constant', None))
  assert shape == 'warmup_constant' and horizon == 1.0
  assert h == dataclasses.replace(schedules.NADAMW_BASELINE,
                                  learning_rate=4 * schedules.NADAMW_BASELINE.learning_rate)
  h, shape, _ = schedules.nadamw_from_point(Point(None, None, 0.5))
  assert shape == 'warmup_cosine' and h.weight_decay == 0.5
  assert h.learning_rate == schedules.NADAMW_BASELINE.learning_rate
  with pytest.raises(ValueError, match='unknown'):
    schedules.nadamw_from_point(collections.namedtuple('P', ['learning_rat'])(1e-3))
  with pytest.raises(ValueError, match='schedule'):
    schedules.nadamw_from_point(Point(1.0, 'cosine', None))
  _, _, horizon = schedules.nadamw_from_point(collections.namedtuple('H', ['horizon'])(0.7))
  assert horizon == 0.7
  with pytest.raises(ValueError, match='horizon'):
    schedules.nadamw_from_point(collections.namedtuple('H', ['horizon'])(1.5))


def test_warmup_constant_and_nadamw_lr_shapes():
  h = schedules.NADAMW_BASELINE
  for step in (0, 10, 29, 30, 100, 1499, 2000):
    assert schedules.nadamw_lr(step, 1500, h) == schedules.nadamw_baseline_lr(step, 1500, h)
  assert schedules.nadamw_lr(15, 1500, h, 'warmup_constant') == h.learning_rate / 2
  assert schedules.nadamw_lr(2000, 1500, h, 'warmup_constant') == h.learning_rate
  with pytest.raises(ValueError):
    schedules.nadamw_lr(1, 1500, h, 'linear')


def test_nadamw_lr_horizon_ends_the_cosine_earlier_with_the_same_warmup():
  h = schedules.NADAMW_BASELINE
  for step in (0, 15, 30):  # the warm-up is the baseline's (int(0.02 * 1500) = 30 steps)
    assert schedules.nadamw_lr(step, 1500, h, horizon=0.5) == schedules.nadamw_lr(step, 1500, h)
  assert schedules.nadamw_lr(30 + 360, 1500, h, horizon=0.5) == pytest.approx(h.learning_rate / 2)
  assert schedules.nadamw_lr(750, 1500, h, horizon=0.5) == 0.0
  assert schedules.nadamw_lr(749, 1500, h, horizon=0.5) > 0.0
  with pytest.raises(ValueError, match='horizon'):
    schedules.nadamw_lr(1, 1500, h, horizon=0.0)
