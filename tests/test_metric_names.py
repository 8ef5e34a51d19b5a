"""The scalars the curvature policies log are the ones `curvlr.core.metric_names` lists."""
import dataclasses

from curvlr.core import defaults, metric_names, policy


def test_names_are_unique():
  assert len(set(metric_names.ALL)) == len(metric_names.ALL)


def test_plotted_names_are_known():
  for _, _, columns in metric_names.CURVATURE_PLOTS:
    assert set(columns) <= set(metric_names.ALL)


def test_cdat_metrics_are_listed():
  p = defaults.CDAT_POLICY
  state = policy.observe(p, policy.init(p), 0, policy.Measurement(-1.0, 2.0))
  logged = set(policy.metrics(p, state, policy.Measurement(-1.0, 2.0)))
  assert logged == set(metric_names.CDAT + metric_names.COST)


def test_debiased_cdat_metrics_are_listed():
  p = dataclasses.replace(defaults.CDAT_POLICY, debiased=True, biased_diagnostics=True)
  m = policy.TwoBatchMeasurement(-1.0, 2.0, -1.5, 2.5)
  state = policy.observe(p, policy.init(p), 0, m)
  logged = set(policy.metrics(p, state, m))
  assert logged == set(metric_names.TWO_BATCH + metric_names.ALPHAS + metric_names.COST
                       + ('cdat_raw_lr', 'cdat_rejected'))


def test_median_metrics_are_listed():
  p = defaults.median_policy(1500)
  m = policy.TwoBatchMeasurement(-1.0, 2.0, -1.5, 2.5)
  state = policy.observe(p, policy.init(p), p.rule.warmup_steps, m)
  logged = set(policy.metrics(p, state, m))
  assert logged == set(metric_names.TWO_BATCH + metric_names.ALPHAS + metric_names.MEDIAN
                       + metric_names.COST)


def test_held_names_are_known():
  assert set(metric_names.HELD) <= set(metric_names.ALL)
