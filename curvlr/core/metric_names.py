"""Names of the scalars our submissions write to `measurements.csv`: the one contract
between the writers (`curvlr.core.policy.metrics`, the framework drivers, the baselines)
and the readers (`analysis.report`'s plots).

Every name a submission logs is listed in exactly one group; `tests/test_metric_names.py`
checks that the policies' metrics stay inside these groups.

Units: lrs are absolute (the step is params += lr * u, u NAdamW's unit-lr direction);
g.u, u^T M u, g.d and d^T G d are per-example means of the training loss.
"""

# Every submission, every logged step: training loss, gradient norm, applied lr.
TRAINING = ('loss', 'grad_norm', 'lr')

# CDAT (seed 000) at each measurement: g.u, u^T M u (M = GGN or Hessian), the rule's
# unclipped sigma * EMA(n) / EMA(d), and the count of dropped (non-finite) measurements.
CDAT = ('g_dot_u', 'u_m_u', 'cdat_raw_lr', 'cdat_rejected')

# Interval-median (seed 003) at each two-batch measurement: the four raw scalars (d from
# half 2; g, G from half 1 or 2), the alphas of `interval_median.AlphaDecomposition`, and
# the window bookkeeping.
TWO_BATCH = ('gd_1', 'dGd_1', 'gd_2', 'dGd_2')
ALPHAS = ('alpha_biased', 'alpha_debiased', 'alpha_hybrid', 'alpha_numerator_term',
          'alpha_denominator_term')
MEDIAN = ('median_applied', 'median_rejected_windows', 'last_median')

# Cost accounting of the measurement schedule (both curvature submissions).
COST = ('overhead_fraction', 'measure_count')

# Edge-of-stability diagnostics (`curvlr.core.diagnostics`), at each diagnostic step:
# sharpness lambda_max(H) and preconditioned sharpness lambda_max(P^-1 H) (1/lr units),
# their relative power-iteration residuals and converged flags (residual <= tolerance),
# lr x each (dimensionless, against 2 and (2 + 2 b1) / (1 - b1)), the thresholds 2/lr and
# (2 + 2 b1) / ((1 - b1) lr) (1/lr units), the quadratic model's predicted and the
# realized loss change along the step on the same batch and on the held-out next batch
# (loss units; the held-out one logged in its own row under the diagnostic step's
# global_step), and the cost bookkeeping.
DIAGNOSTICS = ('sharpness', 'sharpness_residual', 'sharpness_converged', 'lr_sharpness',
               'sharpness_threshold', 'precond_sharpness', 'precond_sharpness_residual',
               'precond_converged', 'lr_precond_sharpness', 'precond_threshold',
               'quad_predicted_change', 'quad_realized_change', 'quad_heldout_change',
               'diag_overhead_fraction',
               'diag_count', 'diag_rejected')

# Groups the report draws, in panel order: (file kind, title, columns).
CURVATURE_PLOTS = (
    ('lr', 'learning rate', ('lr', 'cdat_raw_lr', 'alpha_debiased', 'alpha_biased',
                             'last_median')),
    ('curvature', 'curvature along the update', CDAT[:2] + TWO_BATCH),
    ('measurement', 'measurement bookkeeping', ('cdat_rejected',) + MEDIAN + COST),
    ('sharpness', 'sharpness and 2/lr', ('sharpness', 'sharpness_threshold')),
    ('precond_sharpness', 'preconditioned sharpness and (2 + 2 b1) / ((1 - b1) lr)',
     ('precond_sharpness', 'precond_threshold')),
    ('quadratic_model', 'predicted vs realized loss change along the step',
     ('quad_predicted_change', 'quad_realized_change', 'quad_heldout_change')),
)

# Values that stay in force between logged points (drawn as steps, to the run's last
# step): the applied lr, CDAT's rule value and the interval median in use (both change at
# measurements only), and counters. Not overhead_fraction: it falls between measurements.
HELD = ('lr', 'cdat_raw_lr', 'last_median', 'median_applied', 'median_rejected_windows',
        'cdat_rejected', 'measure_count', 'diag_count', 'diag_rejected')

ALL = TRAINING + CDAT + TWO_BATCH + ALPHAS + MEDIAN + COST + DIAGNOSTICS
