"""NAdamW with a curvature step-size policy (PyTorch): the update_params of our submissions.

The decisions (when to measure, what lr) are `curvlr.core.policy`'s; this module only
computes the reduced scalars they read:
- CDAT: g.u and u^T M u of the global-batch mean loss along the NAdamW direction u
  (M = GGN by one forward-mode JVP, or Hessian by double backward; 'auto' falls back to
  finite differences where an op lacks the derivative), optionally on a sub-batch of
  `schedule.measure_fraction` of each rank's examples.
- Two-batch (interval-median, debiased CDAT): the batch is split into halves 1 and 2, the examples at
  even and at odd positions (splitting, not doubling, the batch: the update still uses
  the whole batch's gradient). With an even number of examples per rank, each rank
  holds its share of both halves and the halves do not depend on the number of ranks. d is the
  NAdamW direction that half 2's gradient alone would give (a look-ahead that leaves
  the moments untouched); g_1.d, d^T G_1 d, g_2.d and d^T G_2 d come from GGN-JVPs on
  the halves. A measurement step runs two half-batch forward/backward passes instead of
  one full one, so train-mode BatchNorm statistics are updated twice on such steps.
  Graph batches (ogbg) split by masking their weights instead: both halves are the
  whole batch with the weights zeroed outside the half (`workload_support.halves_of`).
  The debiased alpha needs half 1's JVP only; half 2's (for the biased alpha) runs
  when the policy `measures_both_halves`, else its scalars are NaN.
Every rank all-reduces the sums before dividing, so all ranks feed identical scalars
to the policy and take identical decisions.

RNG rule (both frameworks): a curvature pass draws the dropout masks of the gradient
pass whose examples it measures, so that g and G belong to one stochastic loss; the two
halves of a two-batch step draw independent masks (independence is what the debiasing
relies on). Here the generators' states at the start of a gradient pass
(`curvature.rng_state()`) are where its curvature pass starts, and the oracle restores
the generators on exit; the halves' passes run one after the other and so draw
different masks. JAX derives the same from its `rng` key.
Masks match only where the shapes do: a CDAT sub-batch draws its own, and so does each
chunk of a measurement that runs in chunks of rows (`workload_support.measurement_chunks`:
the JVP's activations are one chunk's, not the batch's; `curvature.chunked_sums`).
"""
import math
import time

import torch

from curvlr import spec
from curvlr.core import policy as policy_lib
from curvlr.core import scalar_log, workload_support
from curvlr.core.schedules import NAdamWHParams
from curvlr.pytorch import curvature, diagnostics, distributed, train_step
from curvlr.pytorch.nadamw import NAdamW


class PolicyHolder:
  """Mutable holder of a `policy.PolicyState` with the state_dict protocol, so that the
  runners' optimizer checkpoints (AlgoPerf's and ours) save and restore it."""

  def __init__(self, policy: policy_lib.Policy):
    self.policy = policy
    self.value = policy_lib.init(policy)

  def state_dict(self) -> dict:
    return policy_lib.to_dict(self.value)

  def load_state_dict(self, data: dict) -> None:
    self.value = policy_lib.restore(self.policy, data)


def init_optimizer_state(workload, model_params, policy: policy_lib.Policy,
                         hparams: NAdamWHParams, point=None) -> dict:
  """NAdamW, the policy state and the diagnostics (`point.diagnostics` of an external-tuning
  search-space point, else CURVLR_DIAGNOSTICS); raises workload_support.UnsupportedWorkload
  where the policy cannot run on `workload`."""
  policy_lib.check_workload(policy, workload)
  state = {'optimizer': NAdamW(model_params.parameters(),
                              betas=(1.0 - hparams.one_minus_beta1, hparams.beta2),
                              eps=hparams.eps, weight_decay=hparams.weight_decay),
           'policy': PolicyHolder(policy)}
  return diagnostics.with_holder(state, point)


def _graph_half(batch, half: int):
  """`batch` with its weights zeroed outside `half` (`workload_support.halves_of`; this
  rank's batch is one device block)."""
  weights = batch['weights']
  keep = torch.tensor(workload_support.halves_of(weights.shape[0], 1),
                      device=weights.device) == half
  keep = keep.reshape(keep.shape + (1,) * (weights.dim() - 1))
  return {**batch, 'weights': torch.where(keep, weights, torch.zeros_like(weights))}


def _halves(workload, batch):
  """(half 1, half 2) of `batch` by the workload's split (`Support.halves`)."""
  if workload_support.support(workload).halves == 'graphs':
    return _graph_half(batch, 0), _graph_half(batch, 1)
  return (curvature.slice_rows(batch, slice(0, None, 2)),
          curvature.slice_rows(batch, slice(1, None, 2)))


def _sync() -> None:
  """Waits for queued device work before the clock is read (no-op on CPU, synchronous)."""
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def _local_size(batch) -> int:
  return workload_support.num_examples(batch)


def _sums(workload, model, model_state, batch, rng, direction, curvature_kind: str,
          hparams: NAdamWHParams, rng_state) -> curvature.CurvatureSums:
  """Globally reduced per-example means of (u^T M u, g.u, loss) on `batch`, summed over
  the chunks of `workload_support.measurement_chunks` of this rank's rows; the passes
  draw dropout masks from `rng_state` (the RNG rule; a chunked measurement: per chunk
  `curvature.derived_rng_state`)."""
  module = curvature.unwrap(model)
  row = workload_support.support(workload)
  oracle = (curvature.ggn_quadratic_form if row.curvature(curvature_kind) == 'ggn'
            else curvature.hessian_quadratic_form)

  def sums(part, state):
    def forward_fn():
      return workload.model_fn(module, part, model_state, spec.ForwardPassMode.TRAIN, rng,
                               update_batch_norm=False, dropout_rate=hparams.dropout_rate)[0]
    return oracle(forward_fn, module, direction, part['targets'], row.loss,
                  mask=part.get('weights'), label_smoothing=hparams.label_smoothing,
                  rng_state=state)

  chunks = workload_support.measurement_chunks(row, _local_size(batch))
  local = curvature.chunked_sums(sums, batch, rng_state, chunks)
  return curvature.all_reduce_sums(local).mean()


def _measure_direction(workload, model, model_state, batch, rng, direction,
                       policy: policy_lib.CDATPolicy, hparams,
                       rng_state) -> policy_lib.Measurement:
  """g.u and u^T M u; `rng_state` from the start of the gradient pass (the RNG rule)."""
  fraction = policy.schedule.measure_fraction
  if fraction < 1.0:
    batch = curvature.sub_batch(batch, max(1, math.ceil(fraction * _local_size(batch))))
  sums = _sums(workload, model, model_state, batch, rng, direction, policy.curvature, hparams,
               rng_state)
  return policy_lib.Measurement(float(sums.gu), float(sums.quad))


def _two_batch_step(workload, model, model_state, batch, rng, optimizer: NAdamW, hparams,
                    both_halves: bool):
  """Gradient of the whole batch in `.grad`, from two half-batch passes, and the
  two-batch measurement (half 2's scalars NaN unless `both_halves`). A half without
  valid examples (n = 0) adds nothing to the gradient and loss; its scalars are NaN.
  -> (loss, new_model_state, TwoBatchMeasurement)."""
  workload_support.check_halves(workload_support.support(workload).halves,
                                _local_size(batch))
  halves = _halves(workload, batch)
  losses, counts, grads, rng_states = [], [], [], []
  for part in halves:
    rng_states.append(curvature.rng_state())
    loss, count, model_state = train_step.loss_grad_and_count(
        workload, model, model_state, part, rng, dropout_rate=hparams.dropout_rate,
        label_smoothing=hparams.label_smoothing)
    losses.append(loss)
    counts.append(float(count))
    grads.append([p.grad.clone() for p in model.parameters()])
  d = optimizer.direction(grads=grads[1])
  s1 = _sums(workload, model, model_state, halves[0], rng, d, 'ggn', hparams, rng_states[0])
  s2 = (_sums(workload, model, model_state, halves[1], rng, d, 'ggn', hparams, rng_states[1])
        if both_halves else None)
  weights = [c / sum(counts) for c in counts]
  mix = lambda a, b: sum(w * x for w, x, c in zip(weights, (a, b), counts) if c > 0)
  with torch.no_grad():
    for p, g1, g2 in zip(model.parameters(), *grads):
      p.grad = mix(g1, g2)
  loss = mix(*losses)
  gd_2, dGd_2 = (float(s2.gu), float(s2.quad)) if both_halves else (math.nan, math.nan)
  return loss, model_state, policy_lib.TwoBatchMeasurement(
      float(s1.gu), float(s1.quad), gd_2, dGd_2)


def update_params(hparams: NAdamWHParams, workload, model, model_state, batch, rng,
                  optimizer_state: dict, global_step: int, eval_results) -> spec.UpdateReturn:
  """One AlgoPerf update: gradient, NAdamW direction u, maybe a measurement, p += lr u."""
  holder, optimizer = optimizer_state['policy'], optimizer_state['optimizer']
  policy = holder.policy
  reduce = distributed.all_reduce_max if policy_lib.needs_reduced_times(policy) else float
  state = policy_lib.start_step(policy, holder.value, global_step, len(eval_results),
                                time.time, _sync, reduce)
  previous_lr = policy_lib.learning_rate(policy, state, max(global_step - 1, 0))
  diag = optimizer_state.get('diagnostics')
  step_rng_state = diagnostics.begin(diag, global_step)  # None except on diagnostic steps
  measurement = None
  if not policy_lib.should_measure(policy, state, global_step):
    loss, model_state = train_step.loss_and_grad(
        workload, model, model_state, batch, rng, dropout_rate=hparams.dropout_rate,
        label_smoothing=hparams.label_smoothing)
    u = optimizer.direction()
  elif policy.two_batch:
    loss, model_state, measurement = _two_batch_step(
        workload, model, model_state, batch, rng, optimizer, hparams,
        policy.measures_both_halves)
    u = optimizer.direction()
  else:
    rng_state = curvature.rng_state()
    loss, model_state = train_step.loss_and_grad(
        workload, model, model_state, batch, rng, dropout_rate=hparams.dropout_rate,
        label_smoothing=hparams.label_smoothing)
    u = optimizer.direction()
    measurement = _measure_direction(workload, model, model_state, batch, rng, u, policy,
                                     hparams, rng_state)
  if measurement is not None:
    state = policy_lib.observe(policy, state, global_step, measurement)
  lr = policy_lib.learning_rate(policy, state, global_step)
  # Diagnostics draw the masks of the step's first gradient pass (on two-batch steps: the
  # generators' state at the start of the step, not the halves').
  # The diagnostics' seconds are not the policy's: out of its clock (`policy.exclude`).
  state = policy_lib.exclude(state, diagnostics.update(
      diag, step_rng_state, global_step, workload, model, model_state, batch, rng,
      lambda: optimizer.apply(u, lr), lr, hparams=hparams, direction=u, optimizer=optimizer))
  holder.value = state
  if measurement is not None and workload.metrics_logger is not None:
    workload.metrics_logger.append_scalar_metrics(
        {'lr': lr, **policy_lib.metrics(policy, state, measurement)}, global_step)
  if scalar_log.should_log(workload.metrics_logger, global_step, lr, previous_lr, eval_results):
    scalar_log.write(workload.metrics_logger, global_step, loss, train_step.grad_norm(model), lr)
  return optimizer_state, model, model_state
