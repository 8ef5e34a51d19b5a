"""curvlr.core.amortization: fixed schedules, the overhead-budget controller, determinism."""
import json
import math
import random

import pytest

from curvlr.core import amortization as am


def measured_steps(config, steps, seconds=lambda k, m: 1.0):
  state, hits = am.init(config), []
  for k in range(steps):
    m = am.should_measure(config, state, k)
    state = am.record(config, state, k, m, seconds(k, m))
    hits += [k] * m
  return hits, state


def test_every_k():
  assert measured_steps(am.EveryK(k=4, start=3), 20)[0] == [3, 7, 11, 15, 19]
  assert measured_steps(am.EveryK(), 3)[0] == [0, 1, 2]


def test_windowed_and_window_position():
  config = am.Windowed(interval=10, length=3, start=5)
  assert measured_steps(config, 40)[0] == [5, 6, 7, 15, 16, 17, 25, 26, 27, 35, 36, 37]
  state = am.init(config)
  assert am.window_position(config, state, 4) is None
  assert am.window_position(config, state, 5) == (5, 0)
  assert am.window_position(config, state, 27) == (25, 2)
  assert am.window_position(config, state, 28) is None
  assert measured_steps(am.Windowed(interval=3, length=3), 5)[0] == [0, 1, 2, 3, 4]


def test_geometric_back_off():
  config = am.Geometric(first_gap=1, max_gap=100, growth=1.5, start=2)
  hits = measured_steps(config, 2000)[0]
  gaps = [b - a for a, b in zip(hits, hits[1:])]
  expected = [min(100, max(1, round(1.5**j))) for j in range(len(gaps))]
  assert hits[0] == 2 and gaps == expected
  assert gaps[:6] == [1, 2, 2, 3, 5, 8] and gaps[-1] == 100 and gaps == sorted(gaps)
  assert measured_steps(am.Geometric(first_gap=5, max_gap=5, growth=2.0), 21)[0] == [
      0, 5, 10, 15, 20]


def test_nothing_before_start():
  for config in [am.EveryK(start=7), am.Windowed(interval=4, length=2, start=7),
                 am.Geometric(start=7), am.Budget(start=7)]:
    assert measured_steps(config, 8)[0] == [7], config


@pytest.mark.parametrize('config,field', [
    (dict(cls=am.EveryK, k=0), 'k'), (dict(cls=am.Windowed, interval=3, length=4), 'length'),
    (dict(cls=am.Geometric, growth=1.0), 'growth'), (dict(cls=am.Geometric, max_gap=0), 'max_gap'),
    (dict(cls=am.Budget, target=0.0), 'target'), (dict(cls=am.Budget, min_gap=1), 'min_gap'),
    (dict(cls=am.Budget, min_gap=5, max_gap=4), 'max_gap'),
    (dict(cls=am.EveryK, measure_fraction=0.0), 'measure_fraction'),
    (dict(cls=am.Budget, time_ema_decay=1.0), 'time_ema_decay'),
    (dict(cls=am.EveryK, start=-1), 'start')])
def test_config_validation_names_the_field(config, field):
  cls = config.pop('cls')
  with pytest.raises(ValueError, match=f'{cls.__name__}.{field} = '):
    cls(**config)


def test_measure_fraction_is_carried():
  assert am.Budget(measure_fraction=0.25).measure_fraction == 0.25
  assert am.Windowed(10, 2, measure_fraction=0.5).measure_fraction == 0.5


def simulate(config, extra_cost, steps, seed=0, noise=0.1, state=None, start=0):
  """Plain step 1 s +- noise; a measurement step costs extra_cost(step) s more."""
  rng = random.Random(seed)
  state = am.init(config) if state is None else state
  hits, extra, total = [], 0.0, 0.0
  for k in range(start, steps):
    m = am.should_measure(config, state, k)
    cost = extra_cost(k) if m else 0.0
    seconds = 1.0 + cost + rng.uniform(-noise, noise)
    state = am.record(config, state, k, m, seconds)
    hits += [k] * m
    extra, total = extra + cost, total + seconds
  return hits, extra / total, state


@pytest.mark.parametrize('cost', [0.5, 3.0, 60.0])
def test_budget_keeps_overhead_at_target(cost):
  config = am.Budget(target=0.02)
  hits, overhead, state = simulate(config, lambda k: cost, 20_000)
  total = 20_000 + cost * len(hits)
  # At most the target, plus the last measurement's cost not yet paid off by its gap.
  assert 0.9 * config.target < overhead <= config.target + cost / total + 1e-3
  assert math.isclose(am.overhead_fraction(state), overhead, rel_tol=0.05)
  # Gap after a measurement: ceil(c * 0.98 / (0.02 * t)), c = cost +- 0.15 s of noise and
  # t = 1 s +- 5% (EMA of noisy plain steps).
  per_second = (1 - config.target) / config.target
  gaps = [b - a for a, b in zip(hits, hits[1:])]
  assert hits[0] == 0
  assert all((cost - 0.15) * per_second / 1.05 <= g <= (cost + 0.15) * per_second / 0.95 + 1
             for g in gaps)


def test_budget_reacts_when_the_cost_changes():
  config = am.Budget(target=0.02)
  cost = lambda k: 3.0 if k < 10_000 else 60.0 if k < 20_000 else 0.5
  hits, overhead, _ = simulate(config, cost, 30_000)
  assert overhead <= config.target + 60.0 / 30_000 + 1e-3
  first_expensive = next(k for k in hits if k >= 10_000)
  first_cheap = next(k for k in hits if k >= 20_000)
  after_expensive = [k for k in hits if first_expensive <= k < 20_000]
  assert first_expensive - max(k for k in hits if k < 10_000) < 160  # ~147 steps per 3 s
  assert all(b - a > 2_500 for a, b in zip(after_expensive, after_expensive[1:]))  # ~2940
  cheap = [k for k in hits if k >= first_cheap]
  assert all(b - a < 40 for a, b in zip(cheap, cheap[1:]))  # ~25 steps per 0.5 s
  assert len(cheap) > 250
  for lo, hi, c in [(0, 10_000, 3.0), (first_cheap, 30_000, 0.5)]:
    seg_hits, seg_time = [k for k in hits if lo <= k < hi], hi - lo
    assert c * len(seg_hits) / (seg_time + c * len(seg_hits)) <= config.target + c / seg_time + 1e-3


def test_budget_min_and_max_gap_win():
  hits, _, _ = simulate(am.Budget(max_gap=100), lambda k: 60.0, 1000)
  assert hits == list(range(0, 1000, 100))
  hits, _, _ = simulate(am.Budget(min_gap=50), lambda k: 1e-3, 400)
  assert hits == list(range(0, 400, 50))


def test_budget_waits_for_timings():
  config = am.Budget()
  state = am.record(config, am.init(config), 0, True, 5.0)
  assert am.budget_gap(config, state) is None  # no plain step timed yet
  assert not am.should_measure(config, state, 0)
  state = am.record(config, state, 1, False, 1.0)
  assert am.budget_gap(config, state) == math.ceil(4.0 * 0.98 / 0.02)
  assert am.plain_step_seconds(config, state) == pytest.approx(1.0, rel=1e-12)


def test_untimed_warmup_ignores_first_costs_and_times_a_second_measurement():
  # JAX compiles at the first measurement step (0) and the first plain step (1).
  config = am.Budget(target=0.02, untimed_warmup=1)
  state, hits = am.init(config), []
  for k in range(400):
    m = am.should_measure(config, state, k)
    seconds = 1.0 + (1.0 if m else 0.0) + (60.0 if k in (0, 1) else 0.0)
    state = am.record(config, state, k, m, seconds)
    hits += [k] * m
  assert hits[:2] == [0, 2]  # The warm-up measurement, then (min_gap 2) one that is timed.
  assert am.budget_gap(config, state) in (49, 50)  # ceil(1 s * 0.98 / (0.02 * 1 s))
  assert hits[2] - hits[1] in (49, 50)
  assert state.timed_measure_count == len(hits) - 1
  assert state.plain_count == 400 - len(hits) - 1
  # Extrapolated to every recorded step, warm-ups included (their compile time is not).
  true_overhead = len(hits) / (400 + len(hits))
  assert am.overhead_fraction(state) == pytest.approx(true_overhead, rel=1e-9)


def test_budget_measures_again_when_the_first_timed_measurement_is_lost():
  config = am.Budget(target=0.02, untimed_warmup=1)
  state, hits = am.init(config), []
  for k in range(200):
    m = am.should_measure(config, state, k)
    state = am.record(config, state, k, m, None if k == 2 else 1.0 + m)  # eval after step 2
    hits += [k] * m
  assert hits[:3] == [0, 2, 2 + am.fallback_gap(config)] and am.fallback_gap(config) == 49
  assert state.timed_measure_count >= 2


def test_non_finite_times_are_rejected_but_measurement_registered():
  config = am.Budget()
  state = am.record(config, am.init(config), 0, True, math.nan)
  assert (state.measure_count, state.last_measured_step, state.timed_measure_count,
          state.rejected_count) == (1, 0, 0, 1)
  assert not am.should_measure(config, state, 1)
  state2 = am.record(config, state, 1, False, -1.0)
  assert state2 == state._replace(rejected_count=2, plain_steps=1)
  json.dumps(state2._asdict(), allow_nan=False)


@pytest.mark.parametrize('config', [
    am.EveryK(k=3), am.Windowed(interval=50, length=5, start=10), am.Geometric(),
    am.Budget(target=0.05, max_gap=400),
    am.Windowed(interval=50, length=5, start=10, target=0.05)])
def test_json_round_trip_mid_run_gives_identical_decisions(config):
  cost = lambda k: 2.0 if k < 600 else 20.0
  hits, _, straight = simulate(config, cost, 1500, seed=5)
  # Replay the first 700 steps with the same random stream, checkpoint, continue.
  rng = random.Random(5)
  state, first = am.init(config), []
  for k in range(700):
    m = am.should_measure(config, state, k)
    state = am.record(config, state, k, m, 1.0 + (cost(k) if m else 0.0) + rng.uniform(-0.1, 0.1))
    first += [k] * m
  state = am.restore(json.loads(json.dumps(state._asdict(), allow_nan=False)))
  rest = []
  for k in range(700, 1500):
    m = am.should_measure(config, state, k)
    state = am.record(config, state, k, m, 1.0 + (cost(k) if m else 0.0) + rng.uniform(-0.1, 0.1))
    rest += [k] * m
  assert first + rest == hits and state == straight


def test_ranks_fed_the_same_reduced_times_decide_identically():
  config = am.Budget(target=0.02)
  rngs = [random.Random(r) for r in range(2)]
  states = [am.init(config)] * 2
  decisions = []
  for k in range(5000):
    ms = [am.should_measure(config, s, k) for s in states]
    assert ms[0] == ms[1]
    local = [1.0 + 3.0 * ms[0] + rng.uniform(-0.2, 0.2) for rng in rngs]  # per-rank clocks differ
    reduced = max(local)  # e.g. all_reduce(MAX)
    states = [am.record(config, s, k, ms[0], reduced) for s in states]
    decisions.append(ms[0])
  assert states[0] == states[1] and sum(decisions) > 10


def test_unknown_schedule_type():
  with pytest.raises(TypeError, match='Unknown measurement schedule'):
    am.should_measure(object(), am.init(None), 0)


# ----------------------------------------------------------------------------- budget windows


@pytest.mark.parametrize('cost', [0.3, 2.0, 20.0])
def test_budget_windows_keep_overhead_at_target_and_interval_as_minimum(cost):
  config = am.Windowed(interval=40, length=5, start=10, target=0.02, untimed_warmup=1)
  hits, overhead, state = simulate(config, lambda k: cost, 30_000)
  starts = [k for k in hits if k - 1 not in hits]
  assert starts[0] == 10 and all(k + i in hits for k in starts[:-1] for i in range(5))
  assert len(hits) == 5 * len(starts) or hits[-1] >= 30_000 - 5
  gaps = [b - a for a, b in zip(starts, starts[1:])]
  expected = max(40, math.ceil(5 * cost * 0.98 / 0.02))  # plain step 1 s
  assert all(g >= 40 for g in gaps)
  # The plain-step EMA carries +-3% noise, which the small extra cost c amplifies.
  assert all(abs(g - expected) <= 0.2 * expected + 1 for g in gaps[1:])
  if expected > 40:  # The budget binds: at the target, plus the last window not yet paid off.
    assert 0.9 * config.target <= overhead <= config.target + 5 * cost / 30_000 + 1e-3
  else:  # The interval binds: one window per 40 steps.
    assert overhead <= 5 * cost / (40 + 5 * cost) * 1.1
  assert am.overhead_fraction(state) == pytest.approx(overhead, rel=0.1)


def test_budget_windows_fall_back_to_the_interval_without_times():
  config = am.Windowed(interval=30, length=3, target=0.01)
  hits, _ = measured_steps(config, 100, seconds=lambda k, m: None)
  assert hits == [0, 1, 2, 30, 31, 32, 60, 61, 62, 90, 91, 92]


def test_budget_window_position_follows_the_recorded_window():
  config = am.Windowed(interval=20, length=3, target=0.05)
  state = am.init(config)
  assert am.window_position(config, state, 0) == (0, 0)
  state = am.record(config, state, 0, True, 3.0)
  assert am.window_position(config, state, 2) == (0, 2)
  for k in (1, 2):
    state = am.record(config, state, k, True, 3.0)
  for k in range(3, 25):
    assert am.window_position(config, state, k) is None or k >= 20
    state = am.record(config, state, k, False, 1.0)
  # extra 2 s per measurement, plain 1 s: G = ceil(3 * 2 * 0.95 / 0.05) = 114 > 20.
  assert am.window_gap(config, state) == 114
  assert am.window_position(config, state, 113) is None
  assert am.window_position(config, state, 114) == (114, 0)


def test_timed_steps_are_measurements_their_successors_and_multiples():
  config = am.EveryK(k=7, timing_every=10)
  state, timed = am.init(config), []
  for k in range(30):
    m = am.should_measure(config, state, k)
    timed += [k] * am.is_timed(config, state, k, m)
    state = am.record(config, state, k, m, 1.0)
  assert timed == [0, 1, 7, 8, 10, 14, 15, 20, 21, 22, 28, 29]


def test_plain_steps_are_timed_until_one_sample_survives_the_warmup():
  """A window of N = 3 consecutive measurements, then the warm-up plain step (untimed, as
  JAX compiles it): the next plain steps are timed until one plain time is recorded,
  instead of waiting for step timing_every to learn the plain cost."""
  config = am.Windowed(interval=20, length=3, target=0.1, untimed_warmup=1, timing_every=50)
  state, timed, measured = am.init(config), [], []
  for k in range(30):
    m = am.should_measure(config, state, k)
    timed += [k] * am.is_timed(config, state, k, m)
    measured += [k] * m
    state = am.record(config, state, k, m, (2.0 if m else 1.0) if timed[-1:] == [k] else None)
  assert timed[:6] == [0, 1, 2, 3, 4, 27]  # step 3: warm-up plain; 4: the first timed one
  assert state.plain_count >= 1
  # extra 1 s per measurement (2 timed of 3), plain 1 s: G = ceil(3 * 1 * .9 / .1) = 27 > 20.
  assert measured == [0, 1, 2, 27, 28, 29]
