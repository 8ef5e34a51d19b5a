"""AlgoPerf's NAdamW in PyTorch, split into direction and step.

`direction()` updates the moments with the current `.grad`s and returns the update
direction at unit learning rate, weight decay included:
  u = -( m_hat / (sqrt(v_hat) + eps) + weight_decay * p ),
  m_hat = (b1 m + (1 - b1) g) / (1 - b1^t),  v_hat = v / (1 - b2^t).
`apply(u, lr)` does p += lr * u. `step(lr)` is both: exactly AlgoPerf's PyTorch
NAdamW step (decoupled decay multiplied by the scheduled lr, eps outside the sqrt).
The learning rate is always passed in; schedules live in `curvlr.core`.
"""
import math
from typing import List, Optional

import torch


class NAdamW(torch.optim.Optimizer):
  """State per parameter: `step` (float tensor), `exp_avg`, `exp_avg_sq`."""

  def __init__(self, params, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
      raise ValueError(f'Invalid betas: {betas}')
    super().__init__(params, dict(lr=0.0, betas=betas, eps=eps, weight_decay=weight_decay))

  def _params(self) -> List[torch.Tensor]:
    return [p for group in self.param_groups for p in group['params']]

  @torch.no_grad()
  def direction(self, grads: Optional[List[torch.Tensor]] = None) -> List[torch.Tensor]:
    """u for the current `.grad`s, updating m, v and the step count.

    With `grads` (one tensor per parameter, `param_groups` order) it returns the u that
    those gradients would give and leaves the state untouched (a look-ahead, used for
    the two-batch curvature measurement).
    """
    out, offset = [], 0
    for group in self.param_groups:
      beta1, beta2 = group['betas']
      params = group['params']
      if grads is None:
        group_grads = [p.grad for p in params]
        if any(g is None for g in group_grads):
          raise RuntimeError('NAdamW.direction() needs a gradient for every parameter.')
      else:
        group_grads, offset = grads[offset:offset + len(params)], offset + len(params)
      states = [self.state[p] for p in params]
      for p, s in zip(params, states):
        if not s:
          s['step'] = torch.zeros((), dtype=torch.float32)
          s['exp_avg'] = torch.zeros_like(p, memory_format=torch.preserve_format)
          s['exp_avg_sq'] = torch.zeros_like(p, memory_format=torch.preserve_format)
      exp_avgs = [s['exp_avg'] for s in states]
      exp_avg_sqs = [s['exp_avg_sq'] for s in states]
      t = float(states[0]['step']) + 1
      if grads is None:
        for s in states:
          s['step'] += 1
      else:  # Work on copies.
        exp_avgs, exp_avg_sqs = [m.clone() for m in exp_avgs], [v.clone() for v in exp_avg_sqs]
      torch._foreach_lerp_(exp_avgs, group_grads, 1 - beta1)
      torch._foreach_mul_(exp_avg_sqs, beta2)
      torch._foreach_addcmul_(exp_avg_sqs, group_grads, group_grads, value=1 - beta2)
      # Nesterov look-ahead: b1 m + (1 - b1) g, then bias corrections.
      m_hat = torch._foreach_mul(exp_avgs, beta1)
      torch._foreach_add_(m_hat, group_grads, alpha=1 - beta1)
      denom = torch._foreach_sqrt(exp_avg_sqs)
      torch._foreach_div_(denom, math.sqrt(1 - beta2**t))
      torch._foreach_add_(denom, group['eps'])
      torch._foreach_div_(m_hat, denom)
      torch._foreach_mul_(m_hat, -1.0 / (1 - beta1**t))
      if group['weight_decay']:
        torch._foreach_add_(m_hat, params, alpha=-group['weight_decay'])
      out.extend(m_hat)
    return out

  @torch.no_grad()
  def apply(self, direction: List[torch.Tensor], lr: float) -> None:
    """p += lr * u for every parameter, in `param_groups` order."""
    torch._foreach_add_(self._params(), direction, alpha=lr)

  @torch.no_grad()
  def step(self, lr: float, closure=None):  # pylint: disable=arguments-differ
    """One AlgoPerf NAdamW step at learning rate `lr`."""
    del closure
    for group in self.param_groups:
      group['lr'] = lr
    self.apply(self.direction(), lr)
