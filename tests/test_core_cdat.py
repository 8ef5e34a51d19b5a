"""curvlr.core.cdat: eq. 8 of Roulet et al., EMAs, and every guard."""
import json
import math
import random

import numpy as np
import pytest

from curvlr.core import cdat

# Bounds out of the way, to test the formula itself.
FREE = cdat.CDATConfig(lr_init=1.0, lr_max=1e9, max_growth=1e9)


def run(config, measurements, state=None):
  state = cdat.init(config) if state is None else state
  for g_dot_u, u_h_u in measurements:
    state = cdat.update(config, state, g_dot_u, u_h_u)
  return state


def test_single_measurement_is_sigma_n_over_d():
  state = run(FREE, [(-3.0, 2.0)])
  assert math.isclose(cdat.cdat_lr(FREE, state), 2.0 * 3.0 / (2.0 + FREE.eps), rel_tol=1e-15)
  greedy = cdat.CDATConfig(sigma=1.0, lr_init=1.0, lr_max=1e9, max_growth=1e9)
  assert math.isclose(run(greedy, [(-3.0, 2.0)]).lr, 1.5)


def test_ema_is_bias_corrected_ratio_of_emas():
  measurements = [(-1.0, 1.0), (-4.0, 2.0), (-0.5, 3.0), (-2.0, 0.5)]
  beta = FREE.ema_decay
  n = d = 0.0
  for t, (g_dot_u, u_h_u) in enumerate(measurements, start=1):
    n, d = beta * n + (1 - beta) * -g_dot_u, beta * d + (1 - beta) * u_h_u
    expected = 2.0 * (n / (1 - beta**t)) / (d / (1 - beta**t) + FREE.eps)
    state = run(FREE, measurements[:t])
    assert math.isclose(state.lr, expected, rel_tol=1e-12)
    assert math.isclose(cdat.raw_lr(FREE, state), expected, rel_tol=1e-12)
  # With eps = 0 it is the paper's ratio of zero-started EMAs.
  paper = cdat.CDATConfig(eps=0.0, lr_init=1.0, lr_max=1e9, max_growth=1e9)
  assert math.isclose(run(paper, measurements).lr, 2.0 * n / d, rel_tol=1e-12)


def test_no_smoothing_uses_last_measurement():
  config = cdat.CDATConfig(ema_decay=0.0, lr_init=1.0, lr_max=1e9, max_growth=1e9)
  assert math.isclose(run(config, [(-1.0, 1.0), (-4.0, 2.0)]).lr, 4.0, rel_tol=1e-12)


def test_ema_smooths_a_jump():
  config = cdat.CDATConfig(lr_init=1.0, lr_max=1e9, max_growth=1e9)
  state = run(config, [(-1.0, 1.0)] * 50)
  assert math.isclose(state.lr, 2.0, rel_tol=1e-9)
  state = cdat.update(config, state, -1.0, 0.1)  # curvature drops 10x: raw ratio 20
  assert 2.0 < state.lr < 3.0  # one measurement moves the ratio of EMAs only a little


def test_ema_unit_measurement_keeps_smoothing_across_long_gaps():
  """50 steps apart, per-step decay forgets (0.9 ** 50 = 0.5%); per-measurement does not."""
  lrs = {}
  for unit in cdat.EMA_UNITS:
    config = cdat.CDATConfig(lr_init=1.0, lr_max=1e9, max_growth=1e9, ema_unit=unit)
    state = cdat.update(config, cdat.init(config), -1.0, 1.0)
    lrs[unit] = cdat.update(config, state, -1.0, 0.1, steps=50).lr  # raw ratio 2 -> 20
  w = 0.9**50
  # n = w 0.1 + (1 - w) 1, d = w 0.1 + (1 - w) 0.1 (zero-started EMAs; the mass cancels)
  assert lrs['step'] == pytest.approx(2.0 * (w * 0.1 + (1 - w)) / 0.1, rel=1e-9)
  assert lrs['step'] > 19.0  # a jump straight to the new ratio
  m = 0.9 * 0.1 + 0.1  # EMA mass after two measurements
  expected = 2.0 * 1.0 / ((0.9 * 0.1 * 1.0 + 0.1 * 0.1) / m)
  assert lrs['measurement'] == pytest.approx(expected, rel=1e-9) and lrs['measurement'] < 4.0
  assert lrs['all'] == pytest.approx(2.0 * 2.0 / 1.1, rel=1e-9)  # sums: n 2, d 1.1


def test_ema_unit_all_is_the_ratio_of_the_sums_in_any_order():
  """Every measurement weighs the same: scales 1000x apart are not averaged away by age,
  and a signed (held-out) numerator's ascents count against it."""
  scalars = [(-2748.6, 1.42e7), (-75.6, 1.98e5), (1.7, 4536.0), (-2.1, 944.0), (-0.47, 51.4)]
  config = cdat.CDATConfig(sigma=4.0, lr_init=1e-4, lr_max=1e9, max_growth=1e9,
                           ema_unit='all', numerator_clip='ema')
  expected = 4.0 * -sum(g for g, _ in scalars) / sum(d for _, d in scalars)
  for order in (scalars, scalars[::-1]):
    state = run(config, order)
    assert state.lr == pytest.approx(expected, rel=1e-12)
    assert state.ema_mass == pytest.approx(1.0, rel=1e-12) and state.count == 5


def test_numerator_clip_ema_averages_signed_numerator():
  """Noisy numerators -3, +1 (g.u = 3, -1): per measurement the ascent enters as 0 and the
  mean numerator is biased up; after the EMA the signed mean is clipped once."""
  lrs = {}
  for clip in cdat.NUMERATOR_CLIPS:
    config = cdat.CDATConfig(sigma=1.0, ema_decay=0.5, lr_init=1.0, lr_max=1e9,
                             max_growth=1e9, numerator_clip=clip, eps=0.0)
    lrs[clip] = run(config, [(-3.0, 1.0), (1.0, 1.0)])
  # zero-started EMAs at beta 0.5, mass 0.75: n = 0.25 * 3 + 0.5 * (0 or -1)
  assert lrs['measurement'].lr == pytest.approx(0.75 / 0.75, rel=1e-12)
  assert lrs['ema'].lr == pytest.approx(0.25 / 0.75, rel=1e-12)
  assert lrs['ema'].n_ema == pytest.approx(0.25)  # the state holds the signed EMA
  config = cdat.CDATConfig(sigma=1.0, ema_decay=0.5, lr_init=1.0, lr_max=1e9,
                           numerator_clip='ema')
  state = run(config, [(-1.0, 1.0), (3.0, 1.0)])  # signed mean is ascent: ratio 0
  assert cdat.raw_lr(config, state) == 0.0 and state.lr == config.min_lr


def test_ascent_before_any_descent_keeps_lr():
  config = cdat.CDATConfig()
  state = run(config, [(0.5, 1.0), (0.0, 2.0)])
  assert state.lr == config.lr_init and cdat.raw_lr(config, state) is None
  assert (state.count, state.descent_count, state.rejected_count) == (2, 0, 0)


def test_ascent_enters_numerator_as_zero():
  state = run(FREE, [(-2.0, 1.0), (1.0, 1.0)])
  beta = FREE.ema_decay
  n_hat = (1 - beta) * beta * 2.0 / (1 - beta**2)  # the ascent added n = 0
  assert math.isclose(state.lr, 2.0 * n_hat / (1.0 + FREE.eps), rel_tol=1e-12)
  assert state.lr < run(FREE, [(-2.0, 1.0)]).lr


def test_negative_curvature_uses_absolute_value():
  assert run(FREE, [(-3.0, -2.0)]) == run(FREE, [(-3.0, 2.0)])


def test_zero_curvature_eps_guard_and_bounds():
  config = cdat.CDATConfig()
  state = run(config, [(-1.0, 0.0)])  # d = eps: a huge ratio, bounded
  assert state.lr == 2.0 * config.lr_init
  no_eps = cdat.CDATConfig(eps=0.0)
  state = run(no_eps, [(-1.0, 0.0)])  # d = 0: undefined, lr kept
  assert state.lr == no_eps.lr_init and state.count == 1


@pytest.mark.parametrize('g_dot_u,u_h_u', [
    (math.nan, 1.0), (-1.0, math.nan), (-math.inf, 1.0), (-1.0, math.inf), (math.inf, -math.inf)])
def test_non_finite_measurement_leaves_state_unchanged(g_dot_u, u_h_u):
  config = cdat.CDATConfig()
  before = run(config, [(-1e-3, 1.0), (-2e-3, 1.5)])
  after = cdat.update(config, before, g_dot_u, u_h_u)
  assert after == before._replace(rejected_count=before.rejected_count + 1)
  assert cdat.cdat_lr(config, after) == cdat.cdat_lr(config, before)


def test_huge_first_ratio_is_capped():
  # The thesis' step 1: a ratio ~1e14 (NAdamW's first direction ~ sign(g), tiny curvature).
  config = cdat.CDATConfig()
  state = run(config, [(-1e3, 1e-11)])
  assert cdat.raw_lr(config, state) > 1e13
  assert state.lr == config.max_growth * config.lr_init
  lrs = [state.lr]
  for _ in range(20):
    state = cdat.update(config, state, -1e3, 1e-11)
    lrs.append(state.lr)
  assert all(b <= config.max_growth * a * (1 + 1e-15) for a, b in zip(lrs, lrs[1:]))
  assert max(lrs) == config.lr_max and lrs[-1] == config.lr_max


def test_decrease_is_not_limited():
  config = cdat.CDATConfig(ema_decay=0.0)
  state = run(config, [(-1e-3, 1.0), (-1e-9, 1.0)])
  assert math.isclose(state.lr, 2e-9, rel_tol=1e-9)


def test_min_lr_floor_and_recovery_from_tiny_lr():
  floor = cdat.CDATConfig(ema_decay=0.0, min_lr=1e-5)
  assert run(floor, [(-1e-12, 1.0)]).lr == 1e-5
  config = cdat.CDATConfig(ema_decay=0.0)
  state = run(config, [(-1e-15, 1.0)])
  assert state.lr == pytest.approx(2e-15)
  # Growth is limited relative to max(previous lr, lr_init): a tiny lr can recover.
  state = cdat.update(config, state, -1.0, 1.0)
  assert state.lr == 2.0 * config.lr_init


def test_accepts_numpy_scalars_and_stores_python_floats():
  config = cdat.CDATConfig()
  state = cdat.update(config, cdat.init(config), np.float32(-1e-4), np.array(0.5))
  assert all(type(v) in (int, float) for v in state)
  json.dumps(state._asdict(), allow_nan=False)


def test_json_round_trip_mid_run_gives_identical_decisions():
  config = cdat.CDATConfig()
  rng = random.Random(0)
  measurements = [(rng.uniform(-1e-3, 3e-4), rng.uniform(-0.1, 1.0)) for _ in range(60)]
  measurements[7] = (math.nan, 1.0)
  straight = cdat.init(config)
  lrs_straight = []
  for m in measurements:
    straight = cdat.update(config, straight, *m)
    lrs_straight.append(straight.lr)
  state = run(config, measurements[:30])
  state = cdat.restore(json.loads(json.dumps(state._asdict(), allow_nan=False)))
  lrs = lrs_straight[:30]
  for m in measurements[30:]:
    state = cdat.update(config, state, *m)
    lrs.append(state.lr)
  assert lrs == lrs_straight and state == straight


@pytest.mark.parametrize('field,value', [
    ('sigma', 0.0), ('ema_decay', 1.0), ('eps', -1.0), ('lr_init', 0.0), ('lr_max', 1e-9),
    ('max_growth', 0.5), ('min_lr', 1.0), ('ema_unit', 'epoch'),
    ('numerator_clip', 'never')])
def test_config_validation_names_the_field(field, value):
  with pytest.raises(ValueError, match=f'CDATConfig.{field} = '):
    cdat.CDATConfig(**{field: value})


def test_restore_rejects_foreign_state():
  data = cdat.init(cdat.CDATConfig())._asdict()
  data['extra'] = 1
  with pytest.raises(ValueError, match='unknown fields'):
    cdat.restore(data)
