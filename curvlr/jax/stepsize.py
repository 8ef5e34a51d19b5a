"""NAdamW with a curvature step-size policy (JAX): the update_params of our submissions.

Mirror of `curvlr/pytorch/stepsize.py` (read its docstring): the decisions are
`curvlr.core.policy`'s, this module computes the scalars under `jax.jit`. With the
batch sharded over the mesh and the parameters replicated, the curvature sums are
global, so the host sees one set of scalars and takes one decision. Half-batches are the
examples at even and odd positions, as in PyTorch: with an even number per device they
are local to every device and independent of the device count. A CDAT sub-batch takes
the first rows of every device's shard (no data moves; it depends on the device count).
A measurement's JVP runs over chunks of each device's rows (`curvature.chunked_sums`,
`workload_support.measurement_chunks`), so that one chunk's activations, not the
batch's, sit on top of the step's memory; the chunks depend on the device count too.

Graph batches (ogbg) split by masking their weights instead
(`workload_support.halves_of`: the same positions within every device's block).

Dropout follows the RNG rule of `curvlr/pytorch/stepsize.py`: CDAT's curvature pass
uses the step's `rng`, as its gradient pass does; half k of a two-batch step uses
`fold_in(rng, k)` for its gradient pass and its JVP; chunk k of a chunked measurement
draws its own masks from `fold_in(key, k)`.

Plain steps are one jitted call with the held lr. Only the steps the schedule times
(`amortization.is_timed`: measurement steps, the step after each, every 50th) wait for
the device before the clock is read, so that their times are the device's, not
asynchronous dispatch's; the other steps run without a host sync. A measurement step
is two: the first
computes the gradient, the new NAdamW state, u and the scalars; the host updates the
policy and picks lr; the second applies params + lr * u.

The optimizer state is `({'nadam': NAdamState, 'policy': uint8 array}, update_fn)`: the
policy state travels as its exact JSON bytes in an array of one fixed shape
(`policy.ENCODED_BYTES`), so array checkpoints keep it bit for bit and restore it into a
template made from any state. With the edge-of-stability diagnostics on, a 'diagnostics'
entry too (`curvlr.jax.diagnostics`); a diagnostic step that does not measure for the
policy runs the direction and the update as two jitted calls with the diagnostics between.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from curvlr import spec
from curvlr.core import policy as policy_lib
from curvlr.core import scalar_log, workload_support
from curvlr.core.schedules import NAdamWHParams
from curvlr.jax import curvature, diagnostics, sharding, train_step
from curvlr.jax.nadamw import nadamw_direction


def _encode(state: policy_lib.PolicyState) -> np.ndarray:
  return np.frombuffer(policy_lib.encode(state), dtype=np.uint8)


def _decode(policy: policy_lib.Policy, data) -> policy_lib.PolicyState:
  return policy_lib.decode(policy, np.asarray(data, dtype=np.uint8).tobytes())


def init_optimizer_state(workload, policy: policy_lib.Policy, hparams: NAdamWHParams,
                         point=None):
  """({'nadam', 'policy'} and 'diagnostics' when on: `point.diagnostics` of an
  external-tuning search-space point, else CURVLR_DIAGNOSTICS; update_fn); raises
  workload_support.UnsupportedWorkload where the policy cannot run on `workload`."""
  policy_lib.check_workload(policy, workload)
  tx = nadamw_direction(1.0 - hparams.one_minus_beta1, hparams.beta2, hparams.eps,
                        hparams.weight_decay)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape_tuple), workload.param_shapes)
  state = {'nadam': sharding.replicate(tx.init(zeros)),
           'policy': _encode(policy_lib.init(policy))}
  entry = diagnostics.init(workload, point)
  return diagnostics.attach(state, entry), tx.update


def _num_shards() -> int:
  return sharding.mesh().size


def _per_device(batch) -> int:
  return workload_support.num_examples(batch) // _num_shards()


def _sums(workload, hparams, curvature_kind, model_state, params, direction, batch, rng):
  """Per-example means of (u^T M u, g.u, loss) on `batch` (global under sharding), summed
  over the chunks of `workload_support.measurement_chunks` of each device's rows."""
  row = workload_support.support(workload)
  oracle = (curvature.ggn_quadratic_form if row.curvature(curvature_kind) == 'ggn'
            else curvature.hessian_quadratic_form)

  def sums(part, key):
    def apply_fn(p):
      return workload.model_fn(p, part, model_state, spec.ForwardPassMode.TRAIN, key,
                               update_batch_norm=False, dropout_rate=hparams.dropout_rate)[0]
    return oracle(apply_fn, params, direction, part['targets'], row.loss,
                  mask=part.get('weights'), label_smoothing=hparams.label_smoothing)

  chunks = workload_support.measurement_chunks(row, _per_device(batch))
  return curvature.chunked_sums(sums, batch, rng, chunks, _num_shards()).mean()


def _cdat_step(workload, hparams, update_fn, curvature_kind, measure_rows, model_state,
               opt_state, params, batch, rng):
  """-> (new_opt_state, u, new_model_state, loss, grad_norm, (g.u, u^T M u))."""
  (loss, new_model_state), grads = train_step.loss_and_grad(
      workload, params, model_state, batch, rng, hparams.dropout_rate,
      hparams.label_smoothing)
  u, new_opt_state = update_fn(grads, opt_state, params)
  shards = _num_shards()
  sub = (batch if measure_rows is None
         else curvature.sub_batch(batch, measure_rows * shards, num_shards=shards))
  sums = _sums(workload, hparams, curvature_kind, model_state, params, u, sub, rng)
  return (new_opt_state, u, new_model_state, loss, train_step.global_norm(grads),
          jnp.stack([sums.gu, sums.quad]))


def _half(tree, parity: int):
  """The examples at even (parity 0) or odd (1) positions of every leaf."""
  return jax.tree.map(lambda x: x.reshape((x.shape[0] // 2, 2) + x.shape[1:])[:, parity], tree)


def _graph_half(batch, half: int):
  """`batch` with its weights zeroed outside `half` (`workload_support.halves_of`)."""
  weights = batch['weights']
  keep = np.asarray(workload_support.halves_of(weights.shape[0], _num_shards())) == half
  keep = keep.reshape(keep.shape + (1,) * (weights.ndim - 1))
  return {**batch, 'weights': jnp.where(keep, weights, jnp.zeros_like(weights))}


def _halves(workload, batch):
  """(half 1, half 2) of `batch` by the workload's split (`Support.halves`)."""
  if workload_support.support(workload).halves == 'graphs':
    return _graph_half(batch, 0), _graph_half(batch, 1)
  return _half(batch, 0), _half(batch, 1)


def _two_batch_step(workload, hparams, update_fn, both_halves, model_state, opt_state, params,
                    batch, rng):
  """-> (new_opt_state, u, new_model_state, loss, grad_norm, (gd_1, dGd_1, gd_2, dGd_2));
  gd_2 and dGd_2 are NaN unless `both_halves`. A half without valid examples (n = 0)
  adds nothing to the step's gradient and loss; its scalars are NaN."""
  halves = _halves(workload, batch)
  rngs = (jax.random.fold_in(rng, 0), jax.random.fold_in(rng, 1))  # the RNG rule
  (loss_1, n_1, _), grads_1 = train_step.loss_grad_and_count(
      workload, params, model_state, halves[0], rngs[0], hparams.dropout_rate,
      hparams.label_smoothing)
  (loss_2, n_2, new_model_state), grads_2 = train_step.loss_grad_and_count(
      workload, params, model_state, halves[1], rngs[1], hparams.dropout_rate,
      hparams.label_smoothing)
  d, _ = update_fn(grads_2, opt_state, params)  # Look-ahead: the state is discarded.
  s1 = _sums(workload, hparams, 'ggn', model_state, params, d, halves[0], rngs[0])
  if both_halves:
    s2 = _sums(workload, hparams, 'ggn', model_state, params, d, halves[1], rngs[1])
    second = [s2.gu, s2.quad]
  else:
    second = [jnp.full_like(s1.gu, jnp.nan)] * 2
  w1 = n_1 / (n_1 + n_2)
  mix = lambda a, b: jnp.where(n_1 > 0, w1 * a, 0) + jnp.where(n_2 > 0, (1 - w1) * b, 0)
  grads = jax.tree.map(mix, grads_1, grads_2)
  u, new_opt_state = update_fn(grads, opt_state, params)
  return (new_opt_state, u, new_model_state, mix(loss_1, loss_2),
          train_step.global_norm(grads), jnp.stack([s1.gu, s1.quad] + second))


# Jitted as the baseline's steps (`train_step.jit_step`): on accelerators the buffers that
# are replaced are donated (model and optimizer state; params where the step returns new
# ones), so a curvature step holds no extra copy of them.
_jit_plain = train_step.jit_step(train_step.nadamw_step, num_static=3, donate=(3, 4, 5))
_jit_cdat = train_step.jit_step(_cdat_step, num_static=5, donate=(5, 6))
_jit_two_batch = train_step.jit_step(_two_batch_step, num_static=4, donate=(4, 5))
_jit_apply = train_step.jit_step(train_step.apply, num_static=0, donate=(0,))


def _measure_rows(policy: policy_lib.CDATPolicy, batch):
  """Rows per device of the CDAT sub-batch; None for the full batch."""
  fraction = policy.schedule.measure_fraction
  if fraction >= 1.0:
    return None
  return max(1, int(np.ceil(fraction * _per_device(batch))))


def update_params(policy: policy_lib.Policy, hparams: NAdamWHParams, workload, params,
                  model_state, batch, rng, optimizer_state, global_step: int,
                  eval_results) -> spec.UpdateReturn:
  """One AlgoPerf update: gradient, NAdamW direction u, maybe a measurement, p += lr u."""
  opt_state, update_fn = optimizer_state
  state = policy_lib.start_step(policy, _decode(policy, opt_state['policy']), global_step,
                                len(eval_results), time.time,
                                lambda: jax.block_until_ready(params))
  previous_lr = policy_lib.learning_rate(policy, state, max(global_step - 1, 0))
  diag = diagnostics.begin(opt_state.get('diagnostics'), global_step, params)  # None when off
  batch = train_step.place_batch(batch)
  measurement = None
  if not policy_lib.should_measure(policy, state, global_step):
    lr = policy_lib.learning_rate(policy, state, global_step)
    step = _jit_plain if diag is None or not diag.active else diag.nadamw_step
    nadam, params, model_state, loss, grad_norm = step(
        workload, hparams, update_fn, model_state, opt_state['nadam'], params, batch, rng,
        jnp.float32(lr))
  else:
    if policy.two_batch:
      workload_support.check_halves(workload_support.support(workload).halves,
                                    _per_device(batch))
      nadam, u, model_state, loss, grad_norm, scalars = _jit_two_batch(
          workload, hparams, update_fn, policy.measures_both_halves, model_state,
          opt_state['nadam'], params, batch, rng)
      measurement = policy_lib.TwoBatchMeasurement(*np.asarray(scalars, np.float64).tolist())
    else:
      nadam, u, model_state, loss, grad_norm, scalars = _jit_cdat(
          workload, hparams, update_fn, policy.curvature, _measure_rows(policy, batch),
          model_state, opt_state['nadam'], params, batch, rng)
      measurement = policy_lib.Measurement(*np.asarray(scalars, np.float64).tolist())
    state = policy_lib.observe(policy, state, global_step, measurement)
    lr = policy_lib.learning_rate(policy, state, global_step)
    if diag is not None and diag.active:  # the step's rng: the whole batch's masks
      diag.before_update(workload, hparams, model_state, params, batch, rng, lr, u=u,
                         nadam_state=nadam)
    params = _jit_apply(params, u, jnp.float32(lr))
  logger = workload.metrics_logger
  if logger is not None and measurement is not None:
    logger.append_scalar_metrics(
        {'lr': lr, **policy_lib.metrics(policy, state, measurement)}, global_step)
  if scalar_log.should_log(logger, global_step, lr, previous_lr, eval_results):
    scalar_log.write(logger, global_step, loss, grad_norm, lr)
  if diag is not None:  # the diagnostics' seconds are not the policy's (`policy.exclude`)
    state = policy_lib.exclude(state, diag.seconds)
  new_state = diagnostics.attach({'nadam': nadam, 'policy': _encode(state)},
                                 None if diag is None else diag.finish(params))
  return (new_state, update_fn), params, model_state
