"""Schedule-Free AdamW baseline constants, shared by the PyTorch and JAX submissions.

The AlgoPerf v0.5 self-tuning schedule-free submission's hyperparameters (Team 10,
PRIOR_WORK.md 2.1); where and why our update differs from it:
submissions/self_tuning/schedule_free_adamw/README.md.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class ScheduleFreeHParams:
  """Schedule-free AdamW: z takes AdamW steps, x averages z, gradients are taken at y."""
  learning_rate: float = 0.0025
  one_minus_beta1: float = 0.1  # y = (1 - beta1) z + beta1 x
  beta2: float = 0.9955159689799007
  weight_decay: float = 0.08121616522670176  # decoupled, applied at y
  warmup_factor: float = 0.02
  warmup_step_hint_fraction: float = 0.75  # warmup over 0.02 * 0.75 * step_hint steps
  weight_lr_power: float = 2.0  # x averages z with weights lr_max**2 (r = 0)
  eps: float = 1e-8
  dropout_rate: float = 0.0  # v0.5 listed 0.1 but self-tuning never applied it
  label_smoothing: float = 0.2  # passed to every loss_fn; criteo's ignores it

  @property
  def beta1(self) -> float:
    return 1.0 - self.one_minus_beta1

  def warmup_steps(self, step_hint: int) -> int:
    """Linear warmup length in updates, v0.5's int(0.02 * step_hint * 0.75) (159 for criteo1tb)."""
    return int(self.warmup_factor * step_hint * self.warmup_step_hint_fraction)

  def learning_rate_at(self, step: int, step_hint: int) -> float:
    """lr of update `step` (0-based): peak * (step + 1) / warmup, then peak (both libraries)."""
    warmup = self.warmup_steps(step_hint)
    return self.learning_rate * min((step + 1) / warmup, 1.0) if warmup else self.learning_rate


SCHEDULE_FREE_BASELINE = ScheduleFreeHParams()
