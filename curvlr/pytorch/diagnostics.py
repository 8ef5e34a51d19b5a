"""Online edge-of-stability diagnostics (PyTorch); decisions and names in `curvlr.core.diagnostics`.

At a diagnostic step, before params += lr u:
- Hessian-vector products of the global-batch mean training loss by double backward on
  the real parameters (one graph of the gradient, one backward per product), on the
  current batch, in the training step's mode (train, `update_batch_norm=False`) with the
  dropout masks of its gradient pass (the curvature oracles' RNG rule, `stepsize.py`).
  Under DDP each rank differentiates its local sum and Hv is all-reduced (summed) and
  divided by the global count, so the operator is the global-batch Hessian on every rank.
- sharpness: `power_iteration` on H; preconditioned: on S H S with S = P^-1/2, P =
  sqrt(v_hat) + eps from NAdamW's moments after this step's update (the P that divides
  this step's u); both warm-started from the previous top eigenvector.
- quadratic: g.u, u^T G u from `curvature.ggn_quadratic_form`; after the update, the loss
  on the same batch, same mode and masks gives the realized change. The params before the
  update are kept (`Diagnostics.held_out`, a flat copy) until the next update, which
  evaluates the held-out change on its batch with its masks (`core` docstring) before its
  own update, by loading the copy into the parameters and restoring them bit for bit.
Vectors are flat (`torch.cat` of the parameters, `module.parameters()` order).
"""
import time
from typing import List, Optional

import torch

from curvlr import spec
from curvlr.core import amortization
from curvlr.core import diagnostics as core
from curvlr.core import workload_support
from curvlr.pytorch import curvature, distributed


def _flat(tensors) -> torch.Tensor:
  return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(vector: torch.Tensor, like) -> List[torch.Tensor]:
  out, offset = [], 0
  for t in like:
    out.append(vector[offset:offset + t.numel()].view_as(t))
    offset += t.numel()
  return out


def top_eigens(forward_fn, module, targets, loss_type, starts, scales, iterations: int, *,
               mask=None, label_smoothing: float = 0.0, rng_state=None) -> List[core.Eigen]:
  """Power iteration on S H S for each (start, S) pair (S None: H), H the Hessian of the
  global-batch mean loss; `starts`, `scales` flat float tensors (or None for S)."""
  params = list(curvature.unwrap(module).parameters())
  with curvature._isolated(module, rng_state) as begin_pass, torch.enable_grad():  # pylint: disable=protected-access
    begin_pass()
    logits, aux = curvature._split_output(forward_fn())  # pylint: disable=protected-access
    summed, n = curvature.loss_sums(loss_type, logits, targets, mask, label_smoothing, aux)
    n = distributed.all_reduce_sum(torch.as_tensor(n, dtype=torch.float64).reshape(1))[0]
    grads = torch.autograd.grad(summed, params, create_graph=True)

    def hvp(v):
      hv = torch.autograd.grad(grads, params, grad_outputs=_unflat(v.to(params[0].dtype), params),
                               retain_graph=True)
      return distributed.all_reduce_sum(_flat(hv).double()) / n

    out = []
    for start, scale in zip(starts, scales):
      apply = hvp if scale is None else (lambda v, s=scale: s * hvp(s * v))
      out.append(core.power_iteration(apply, start.double(), iterations))
  return out


def preconditioner_scale(optimizer) -> Optional[torch.Tensor]:
  """S = (sqrt(v_hat) + eps)^-1/2, flat float64; None before NAdamW's first update."""
  parts = []
  for group in optimizer.param_groups:
    beta2 = group['betas'][1]
    for p in group['params']:
      state = optimizer.state[p]
      if not state:
        return None
      v_hat = state['exp_avg_sq'].double() / (1 - beta2 ** float(state['step']))
      parts.append((v_hat.sqrt() + group['eps']).rsqrt().reshape(-1))
  return torch.cat(parts)


def _loss_mean(forward_fn, module, targets, loss_type, mask, label_smoothing, rng_state):
  with curvature._isolated(module, rng_state) as begin_pass, torch.no_grad():  # pylint: disable=protected-access
    begin_pass()
    logits, aux = curvature._split_output(forward_fn())  # pylint: disable=protected-access
    summed, n = curvature.loss_sums(loss_type, logits, targets, mask, label_smoothing, aux)
  total = distributed.all_reduce_sum(torch.stack([summed.double(),
                                                  torch.as_tensor(n, dtype=torch.float64)]))
  return float(total[0] / total[1])


def _held_out_change(holder, forward_fn, module, targets, loss_type, mask, label_smoothing,
                     rng_state) -> float:
  """L(params) - L(holder.held_out) on this batch (`_loss_mean`); params restored exactly."""
  common = (forward_fn, module, targets, loss_type, mask, label_smoothing, rng_state)
  after = _loss_mean(*common)
  params = list(module.parameters())
  current = [p.detach().clone() for p in params]
  with torch.no_grad():
    for p, v in zip(params, _unflat(holder.held_out.to(params[0].device), params)):
      p.copy_(v)
    before = _loss_mean(*common)
    for p, c in zip(params, current):
      p.copy_(c)
  return after - before


class Diagnostics:
  """Config, core state, warm starts and the params kept for the held-out change
  (`held_out`, flat, None when none is pending), with the state_dict protocol."""

  def __init__(self, config: core.Config):
    self.config = config
    self.state = core.State()
    self.vectors = {}
    self.held_out = None
    self._start = None
    self._measuring = False

  def state_dict(self) -> dict:
    return {**core.to_dict(self.state), 'vectors': dict(self.vectors),
            'held_out': self.held_out}

  def load_state_dict(self, data: dict) -> None:
    self.state = core.restore(data)
    self.vectors = dict(data['vectors'])
    self.held_out = data['held_out']


def from_hparams(hparams=None) -> Optional[Diagnostics]:
  """A holder from hparams.diagnostics (external tuning) or CURVLR_DIAGNOSTICS; None if off."""
  text = getattr(hparams, 'diagnostics', None) if hparams is not None else None
  config = core.parse(text) if text is not None else core.from_env()
  return None if config is None else Diagnostics(config)


def with_holder(optimizer_state: dict, hparams=None) -> dict:
  """`optimizer_state` with a 'diagnostics' entry when they are on (`from_hparams`); no
  entry when off, so that checkpoints of runs without diagnostics are unchanged."""
  holder = from_hparams(hparams)
  return optimizer_state if holder is None else {**optimizer_state, 'diagnostics': holder}


def _sync():
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def begin(holder: Optional[Diagnostics], step: int):
  """Call first in update_params, before the step's first gradient pass. -> on a
  diagnostic step or a held-out one (`core.held_out_due`) the torch RNG state that pass
  starts from (`curvature.rng_state()`, so the diagnostic passes draw its dropout masks),
  else None: the generators are only read on those steps. Times the step when the
  schedule asks (`amortization.is_timed`)."""
  if holder is None:
    return None
  holder._measuring = core.should_measure(holder.config, holder.state, step)
  holder._start = None
  if amortization.is_timed(holder.config.schedule, holder.state.timing, step,
                           holder._measuring):
    _sync()
    holder._start = time.perf_counter()
  if holder._measuring or core.held_out_due(holder.state, step):
    return curvature.rng_state()
  return None


def end(holder: Optional[Diagnostics], step: int, measured: bool,
        held_out_seconds: Optional[float] = None) -> None:
  """Call last in update_params: records the step's (max over ranks) seconds."""
  if holder is None:
    return
  seconds = None
  if holder._start is not None:
    _sync()
    seconds = distributed.all_reduce_max(time.perf_counter() - holder._start)
  holder.state = core.record(holder.config, holder.state, step, measured, seconds,
                             held_out_seconds)
  if holder.state.held_out_step < 0:
    holder.held_out = None


def _forward_fn(workload, module, model_state, batch, rng, dropout_rate: float):
  def forward_fn():
    return workload.model_fn(module, batch, model_state, spec.ForwardPassMode.TRAIN, rng,
                             update_batch_norm=False, dropout_rate=dropout_rate)[0]
  return forward_fn


def update(holder: Optional[Diagnostics], rng_state, step: int, workload, model,
           model_state, batch, rng, apply_update, lr: float, *, hparams,
           direction=None, optimizer=None) -> float:
  """`apply_update()` (params += lr u), measured around on a diagnostic step and logged to
  measurements.csv (a held-out change due first, under step - 1), then the step's timing
  (`end`). `rng_state`: what `begin` returned (None: nothing to measure). Without
  `optimizer` (not NAdamW) only the sharpness is measured; without `direction` no
  quadratic model. -> seconds of the diagnostics' own work in this update (synchronised,
  max over ranks; 0 when none ran), for a curvature policy's clock (`policy.exclude`)."""
  if rng_state is None:
    apply_update()
    end(holder, step, False)
    return 0.0
  log = workload.metrics_logger
  held_out_seconds = None
  _sync()
  start = time.perf_counter()
  if core.held_out_due(holder.state, step):
    module = curvature.unwrap(model)
    change = _held_out_change(
        holder, _forward_fn(workload, module, model_state, batch, rng, hparams.dropout_rate),
        module, batch['targets'], workload_support.support(workload).loss,
        batch.get('weights'), hparams.label_smoothing, rng_state)
    _sync()
    held_out_seconds = distributed.all_reduce_max(time.perf_counter() - start)
    out, holder.state = core.held_out_metrics(holder.state, change)
    if log is not None and out:
      log.append_scalar_metrics(out, step - 1)
  update_seconds = []  # the update itself is the step's, not the diagnostics' work

  def timed_update():
    _sync()
    begin_update = time.perf_counter()
    apply_update()
    _sync()
    update_seconds.append(time.perf_counter() - begin_update)

  if holder._measuring:
    out = measure(holder, step, workload, model, model_state, batch, rng, direction, lr,
                  optimizer, timed_update, dropout_rate=hparams.dropout_rate,
                  label_smoothing=hparams.label_smoothing,
                  beta1=None if optimizer is None else optimizer.param_groups[0]['betas'][0],
                  rng_state=rng_state)
    if log is not None:
      log.append_scalar_metrics(out, step)
  else:
    timed_update()
  _sync()
  seconds = distributed.all_reduce_max(time.perf_counter() - start - sum(update_seconds))
  end(holder, step, holder._measuring, held_out_seconds)
  return seconds


def measure(holder: Diagnostics, step: int, workload, model, model_state, batch, rng,
            direction, lr: float, optimizer, apply_update, *, dropout_rate: float,
            label_smoothing: float, beta1: Optional[float], rng_state) -> dict:
  """The diagnostic scalars of step `step`; runs `apply_update()` (params += lr u) itself,
  between the measurements before and after it, and keeps the params before it for the
  held-out change. -> `core.metrics` dict."""
  config = core.restrict(holder.config, optimizer is not None, direction is not None)
  quantities = config.quantities
  module = curvature.unwrap(model)
  row = workload_support.support(workload)
  forward_fn = _forward_fn(workload, module, model_state, batch, rng, dropout_rate)
  common = dict(mask=batch.get('weights'), label_smoothing=label_smoothing,
                rng_state=rng_state)
  params = list(module.parameters())
  values = {}
  names, starts, scales = [], [], []
  for name in core.EIGEN_QUANTITIES:
    if name not in quantities:
      continue
    scale = None
    if name == 'preconditioned':
      scale = preconditioner_scale(optimizer)
      if scale is None:
        continue
    start = holder.vectors.get(name)
    if start is None:
      start = torch.from_numpy(core.initial_vector(sum(p.numel() for p in params)))
    names.append(name)
    starts.append(start.to(params[0].device))
    scales.append(scale)
  if names:
    eigens = top_eigens(forward_fn, module, batch['targets'], row.loss, starts, scales,
                        config.iterations, **common)
    for name, e in zip(names, eigens):
      holder.vectors[name] = e.vector.detach()
    values.update(core.eigen_values(names, eigens))
  if 'quadratic' in quantities:
    sums = curvature.all_reduce_sums(curvature.ggn_quadratic_form(
        forward_fn, module, direction, batch['targets'], row.loss, **common)).mean()
    holder.held_out = _flat([p.detach() for p in params]).clone()
    apply_update()
    after = _loss_mean(forward_fn, module, batch['targets'], row.loss, **common)
    values.update(g_dot_u=float(sums.gu), u_ggn_u=float(sums.quad),
                  realized_change=after - float(sums.loss))
  else:
    apply_update()
  out, holder.state = core.metrics(config, holder.state, core.Measurement(**values), lr, beta1)
  if 'quadratic' in quantities:
    holder.state = core.pending(holder.state, step)
  return out
