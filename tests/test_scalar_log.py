"""curvlr.core.scalar_log: when the training scalars (loss, grad_norm, lr) are logged."""
import math

from curvlr.core import scalar_log, schedules


def logged_steps(lr_of, steps, evals_at=()):
  """Steps at which `due` logs, for an lr schedule `lr_of(step)` and evals before steps."""
  out, evals = [], []
  for k in range(steps):
    if k in evals_at:
      evals.append((k, {}))
    if scalar_log.due(k, lr_of(k), lr_of(max(k - 1, 0)), evals):
      out.append(k)
  return out


def test_algoperf_cadence_and_evals():
  out = logged_steps(lambda k: 1e-3, 1600, evals_at=(1, 250, 777))
  assert out == list(range(101)) + [250, 500, 777, 1000, 1500]


def test_lr_changes_are_logged_within_the_bin_ratio():
  step_hint = 10_000
  lr_of = lambda k: schedules.nadamw_baseline_lr(k, step_hint)
  out = logged_steps(lr_of, step_hint + 50)
  # Drawn as steps, the logged points follow the lr within a factor 1 + LR_BIN.
  held = None
  for k in range(step_hint):
    if k in out:
      held = lr_of(k)
    lr = lr_of(k)
    if lr > scalar_log.LR_FLOOR:
      assert max(lr / held, held / lr) < (1 + scalar_log.LR_BIN) ** 1.0001, k
  assert len(out) < 1000  # far fewer than step_hint rows
  assert step_hint + 1 not in out  # lr = 0 after step_hint: held, not logged again


def test_held_lr_is_not_logged_and_non_finite_always_is():
  assert not scalar_log.due(200, 1e-3, 1e-3, [])
  assert scalar_log.due(200, 2e-3, 1e-3, [])
  assert scalar_log.due(200, math.nan, math.nan, [])
  assert not scalar_log.due(200, 0.0, 1e-12, [])  # both at or below the floor


def test_should_log_needs_a_logger():
  assert not scalar_log.should_log(None, 0, 1e-3, 1e-3, [])

  class Logger:
    rows = []

    def append_scalar_metrics(self, metrics, step):
      self.rows.append((step, metrics))

  logger = Logger()
  assert scalar_log.should_log(logger, 0, 1e-3, 1e-3, [])
  scalar_log.write(logger, 3, 0.5, 2.0, 1e-3)
  assert logger.rows == [(3, {'loss': 0.5, 'grad_norm': 2.0, 'lr': 1e-3})]
