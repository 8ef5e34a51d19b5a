"""Curvature of the training loss along a direction u (PyTorch), as local sums.

For a batch with per-example losses l_n(z_n), logits z_n = f_n(theta) and example
weights w_n (AlgoPerf's mask; 1 when absent):

  quad = sum_n w_n u^T M_n u     M = GGN  J_n^T H_n J_n   (`ggn_quadratic_form`)
                                 M = Hessian of l_n(f_n)  (`hessian_quadratic_form`)
  gu   = sum_n w_n g_n . u       the exact directional derivative on the same batch
  loss = sum_n w_n l_n
  n    = AlgoPerf's `n_valid_examples` (see below)

All four are sums over this process's examples, so callers reduce across ranks with
`all_reduce_sums` and divide by n (`CurvatureSums.mean`) to get the curvature of the
mean loss that the training step minimises.

Per-example losses and counts follow AlgoPerf v0.6's `loss_fn`s; `H_n` is in closed form:
  SOFTMAX_CROSS_ENTROPY  logits (..., C), int labels (...) or dense targets (..., C);
      targets (1-ls)*y + ls/C (torch/optax label smoothing); one example per logit row;
      z^T H z = sum_c p_c z_c^2 - (sum_c p_c z_c)^2, independent of the targets and ls.
  SIGMOID_CROSS_ENTROPY  every logit is an independent binary loss, targets reshaped to
      the logits; ls as AlgoPerf's ogbg: (1-ls)*y + ls/K with K = logits.shape[-1]
      (pass 0 for criteo, whose loss ignores ls); z^T H z = sum sigma(1-sigma) z^2.
      ogbg's `loss_type` says SOFTMAX but its loss is this one: pass SIGMOID for ogbg.
  MEAN_SQUARED_ERROR     (no AlgoPerf workload uses it) by analogy with fastMRI's L1:
      l_n = mean_j (z_nj - y_nj)^2 over the D non-batch entries, so H_n = (2/D) I.
  MEAN_ABSOLUTE_ERROR    fastMRI: l_n = mean_j |z_nj - y_nj|. H_n = 0 almost everywhere,
      so the GGN form is identically 0 and is returned as 0: callers need a fallback
      (e.g. `hessian_quadratic_form`, which sees the curvature of the model only).
  CTC_LOSS               librispeech: forward_fn returns (logits (B,T,V), logit_paddings),
      targets = (labels (B,S), label_paddings (B,S)); l_b = ctc(log_softmax(z_b)), blank 0.
      n = sum_b w_b * label_length_b (AlgoPerf's unmasked count). Over a sequence's
      unpadded frames l = -log sum_pi exp(sum_t z_{t,pi_t}) + sum_t logsumexp(z_t)
      (pi: the alignments of its labels), so the exact output Hessian is F - C, and
      indefinite: F = blockdiag_t(diag p_t - p_t p_t^T), the per-frame softmax Fisher,
      and C the covariance of the alignment posterior's one-hot frames (PSD). The GGN form uses F alone (`ctc_fisher_quad`):
      z^T F z = sum_t Var_{p_t}(z_t) over unpadded frames, PSD and >= z^T (F - C) z, so
      it bounds the curvature from above (a smaller step). The Hessian oracle keeps the
      exact curvature (in PyTorch by finite differences: ctc_loss has no double backward).
  mask: weights w broadcast from the left onto the loss elements ((B,) or the logits'
  leading shape); n = mask.sum(); without a mask n = B (softmax: number of logit rows).
  Masked entries must hold finite targets (AlgoPerf's pipelines ensure this).

Methods:
  GGN 'jvp'  one forward pass with dual parameters (torch.autograd.forward_ad), no
             backward: parameters are swapped for dual tensors wherever the module tree
             holds them, including plain Python lists/tuples/dicts such as AlgoPerf
             criteo's `embedding_table_chucks` (torch.func.functional_call would give
             silently zero tangents there).
  GGN 'fd'   J u ~ (z(theta+hu) - z(theta-hu)) / 2h, closed-form H at (z+ + z-)/2; two
             forward passes; O(h^2) truncation, roundoff ~eps*|z|/h.
  Hessian 'double_backward'  grad(g . u) on the real parameters (never nested forward
             mode, which is silently wrong through LayerNorm/BatchNorm in PyTorch).
  Hessian 'fd'  (L(theta+hu) - 2L(theta) + L(theta-hu)) / h^2, three forward passes;
             O(h^2) truncation, roundoff ~eps*|L|/h^2.
  'auto'     tries the exact method and switches to 'fd' when an op lacks the derivative
             (EmbeddingBag, CPU mkldnn LSTM, cuDNN RNN double backward, ctc_loss double
             backward, fused attention kernels); the choice is cached per module, so
             only the first call pays for the failed attempt.
  'jvp' and both 'fd' methods substitute parameters by reference; a parameter that the
  forward pass reaches through anything other than the module tree and its (nested)
  list/tuple/dict attributes (a custom object, a closure) would be held constant.
  'double_backward' differentiates the real parameters and has no such blind spot.
  FD step: h = c * (1 + ||theta||) / ||u|| (norms over the parameters u moves), i.e. a
  parameter perturbation of relative size c. Defaults balance the O(c^2) truncation
  error against roundoff (~eps/c for first, ~eps/c^2 for second differences):
  c = eps^(1/3) for first differences (GGN; float32 4.9e-3, float64 6.1e-6) and
  c = eps^(1/4)/2 for second differences (Hessian; float32 9.3e-3, float64 6.1e-5). The
  second differences are formed per loss element before summing (here in float64), so
  roundoff is ~eps*|l_n| per element rather than eps*|sum_n l_n|.
  Measured relative errors (MLP with LayerNorm, B=2048, gaussian and sign-gradient
  directions): GGN float32 ~3e-5, float64 ~5e-11; Hessian float32 ~1e-4 (JAX 2.5e-4),
  float64 ~3e-7, relative to the curvature scale (a cancelling u^T H u fares worse).
  The parameter dtype sets eps: FD in bfloat16 is not meaningful.

Every pass runs `forward_fn()` as written by the caller: call the model through
`workload.model_fn(unwrap(model), batch, ...)` in the same mode (train/eval, dropout
rate) as the training step, on the *unwrapped* module (not the DDP wrapper, whose
hooks sync gradients; not the torch.compile wrapper). Within one call, every pass sees
the same torch RNG state (the same dropout mask), and on exit the RNG state, all
buffers (BatchNorm running statistics, num_batches_tracked; train-mode BN still uses
batch statistics) and all parameters are restored, also on exceptions.

Directions are sequences aligned with `module.parameters()` (AlgoPerf pairs parameters
by order); a None entry means a zero component. For a cheaper measurement on part of
the batch, build forward_fn/targets/mask from `sub_batch(batch, k)`.
"""
import contextlib
import hashlib
import logging
import weakref
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

from curvlr import spec
from curvlr.pytorch import distributed

_LOG = logging.getLogger(__name__)


class CurvatureSums(NamedTuple):
  """Local sums over examples (0-d tensors); see the module docstring."""
  quad: torch.Tensor
  gu: torch.Tensor
  loss: torch.Tensor
  n: torch.Tensor

  def mean(self) -> 'CurvatureSums':
    """Per-example means (quad/n, gu/n, loss/n, n)."""
    return CurvatureSums(self.quad / self.n, self.gu / self.n, self.loss / self.n, self.n)


def all_reduce_sums(sums: CurvatureSums) -> CurvatureSums:
  """Sums every field over ranks in one float64 collective (identity without a group)."""
  stacked = torch.stack([torch.as_tensor(x, dtype=torch.float64) for x in sums])
  return CurvatureSums(*distributed.all_reduce_sum(stacked).unbind())


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
  """Strips DistributedDataParallel/DataParallel (`.module`) and torch.compile (`._orig_mod`)."""
  while True:
    if isinstance(module, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
      module = module.module
    elif isinstance(getattr(module, '_orig_mod', None), torch.nn.Module):
      module = module._orig_mod
    else:
      return module


def sub_batch(tree: Any, max_examples: int) -> Any:
  """The first `max_examples` entries along dim 0 of every tensor in a (nested) batch.

  Works for dict/tuple/list batches of tensors (criteo, imagenet, wmt, librispeech,
  fastMRI), not for graph batches (ogbg). BatchNorm then uses the sub-batch's statistics.
  """
  return slice_rows(tree, slice(0, max_examples))


def slice_rows(tree: Any, index: slice) -> Any:
  """`tensor[index]` (dim 0) of every tensor in a (nested) dict/tuple/list batch."""
  if isinstance(tree, torch.Tensor):
    return tree[index]
  if isinstance(tree, dict):
    return {k: slice_rows(v, index) for k, v in tree.items()}
  if isinstance(tree, (tuple, list)):
    return type(tree)(slice_rows(v, index) for v in tree)
  return tree


def derived_rng_state(state, k: int):
  """An `rng_state()` for stream k derived from `state` (generators seeded by a hash of
  `state` and k): deterministic, independent of other k, and the global generators are
  not touched."""
  def seeded(device, s):
    digest = hashlib.sha256(s.cpu().numpy().tobytes() + k.to_bytes(8, 'little')).digest()
    return torch.Generator(device=device).manual_seed(
        int.from_bytes(digest[:8], 'little') >> 1).get_state()

  cpu, cudas = state
  return seeded('cpu', cpu), [seeded(f'cuda:{d}', s) for d, s in zip(_rng_devices(), cudas)]


def chunked_sums(sums_fn: Callable, batch, start_state, chunks) -> CurvatureSums:
  """The sum over chunks of `sums_fn(chunk, state) -> CurvatureSums`, one chunk after
  the other (each oracle call frees its passes before the next starts).

  chunks: `workload_support.Chunks` of this rank's rows; chunk k is rows
  [start_k, stop_k) of every tensor of `batch` (`slice_rows`). With more than one
  chunk, chunk k's passes draw `derived_rng_state(start_state, k)` (start_state None:
  the generators' current state): dropout masks of its own, as a sub-batch's;
  unchunked: `sums_fn(batch, start_state)`.
  """
  if not chunks.chunked:
    return sums_fn(batch, start_state)
  base = rng_state() if start_state is None else start_state
  total = None
  for k, (start, stop) in enumerate(chunks.spans()):
    part = sums_fn(slice_rows(batch, slice(start, stop)), derived_rng_state(base, k))
    total = part if total is None else CurvatureSums(*(a + b for a, b in zip(total, part)))
  return total


# ----------------------------------------------------------------------------- output space


def _split_output(out):
  """forward_fn's output -> (logits, aux): aux is logit_paddings for CTC, else None."""
  if isinstance(out, (tuple, list)):
    return out[0], out[1]
  return out, None


def _targets_dot(targets, x, label_smoothing):
  """sum_c y_c x_c over the last axis with smoothed targets y = (1-ls)*onehot + ls/C."""
  num_classes = x.shape[-1]
  if targets.is_floating_point() and targets.shape == x.shape:
    y = (1.0 - label_smoothing) * targets.to(x.dtype) + label_smoothing / num_classes
    return (y * x).sum(-1)
  picked = x.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
  return (1.0 - label_smoothing) * picked + label_smoothing / num_classes * x.sum(-1)


def _smoothed_binary_targets(targets, logits, label_smoothing):
  y = targets.reshape(logits.shape).to(logits.dtype)
  return (1.0 - label_smoothing) * y + label_smoothing / logits.shape[-1]


def _ctc_losses(logits, logit_paddings, targets):
  """Per-sequence CTC losses (B,), as AlgoPerf's librispeech PyTorch workload."""
  labels, label_paddings = targets
  input_lengths = (1 - logit_paddings).sum(-1).long()
  target_lengths = (1 - label_paddings).sum(-1).long()
  log_probs = F.log_softmax(logits, dim=-1).transpose(0, 1)
  return F.ctc_loss(log_probs, labels.long(), input_lengths, target_lengths, blank=0,
                    reduction='none')


def _element_losses(loss_type, logits, aux, targets, label_smoothing):
  """Differentiable per-element losses; elements are what the mask weights."""
  if loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY:
    return -_targets_dot(targets, F.log_softmax(logits, dim=-1), label_smoothing)
  if loss_type == spec.LossType.SIGMOID_CROSS_ENTROPY:
    y = _smoothed_binary_targets(targets, logits, label_smoothing)
    return F.binary_cross_entropy_with_logits(logits, y, reduction='none')
  if loss_type in (spec.LossType.MEAN_SQUARED_ERROR, spec.LossType.MEAN_ABSOLUTE_ERROR):
    r = (logits - targets.reshape(logits.shape).to(logits.dtype)).flatten(1)
    return r.square().mean(1) if loss_type == spec.LossType.MEAN_SQUARED_ERROR else r.abs().mean(1)
  if loss_type == spec.LossType.CTC_LOSS:
    return _ctc_losses(logits, aux, targets)
  raise ValueError(f'curvature.py: unsupported loss_type {loss_type!r}')


def ctc_fisher_quad(logits, logit_paddings, dz):
  """Per-sequence dz^T F dz (B,): F the per-frame softmax Fisher of the CTC loss
  (module docstring), summed over unpadded frames; logits, dz (B,T,V), paddings (B,T)."""
  p = F.softmax(logits, dim=-1)
  mean_dz = (p * dz).sum(-1, keepdim=True)
  per_frame = (p * (dz - mean_dz).square()).sum(-1)  # Var_{p_t}(dz_t) >= 0
  return torch.where(logit_paddings == 0, per_frame, torch.zeros_like(per_frame)).sum(-1)


def _ctc_derivatives(logits, aux, targets, dz):
  """Per-sequence (g . dz, dz^T F dz): the gradient by one backward pass of ctc_loss."""
  z = logits.detach().requires_grad_()
  with torch.enable_grad():
    g = torch.autograd.grad(_ctc_losses(z, aux, targets).sum(), z)[0]
  return (g * dz).flatten(1).sum(1), ctc_fisher_quad(logits, aux, dz)


def _output_derivatives(loss_type, logits, aux, targets, dz, label_smoothing):
  """Per-element first and second directional derivatives (g . dz, dz^T H dz) in logit space."""
  if loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY:
    p = F.softmax(logits, dim=-1)
    mean_dz = (p * dz).sum(-1)
    quad = (p * (dz - mean_dz.unsqueeze(-1)).square()).sum(-1)  # Var_p(dz) >= 0
    return mean_dz - _targets_dot(targets, dz, label_smoothing), quad
  if loss_type == spec.LossType.SIGMOID_CROSS_ENTROPY:
    y = _smoothed_binary_targets(targets, logits, label_smoothing)
    return ((torch.sigmoid(logits) - y) * dz,
            torch.sigmoid(logits) * torch.sigmoid(-logits) * dz.square())
  if loss_type == spec.LossType.MEAN_SQUARED_ERROR:
    r = (logits - targets.reshape(logits.shape).to(logits.dtype)).flatten(1)
    v, d = dz.flatten(1), r.shape[1]
    return 2.0 * (r * v).sum(1) / d, 2.0 * v.square().sum(1) / d
  if loss_type == spec.LossType.MEAN_ABSOLUTE_ERROR:
    r = (logits - targets.reshape(logits.shape).to(logits.dtype)).flatten(1)
    v, d = dz.flatten(1), r.shape[1]
    return (torch.sign(r) * v).sum(1) / d, torch.zeros_like(v[:, 0])
  if loss_type == spec.LossType.CTC_LOSS:
    return _ctc_derivatives(logits, aux, targets, dz)
  raise ValueError(f'curvature.py: unsupported loss_type {loss_type!r}')


def _weights_and_count(loss_type, element_shape, targets, mask, dtype, device):
  """-> (weights broadcastable to the elements or None, n as a 0-d tensor)."""
  if loss_type == spec.LossType.CTC_LOSS:
    lengths = (1 - targets[1]).sum(-1).to(dtype)
    w = None if mask is None else mask.to(dtype).reshape(lengths.shape)
    return w, (lengths if w is None else w * lengths).sum()
  if mask is None:
    softmax = loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY
    n = element_shape.numel() if softmax else element_shape[0]
    return None, torch.tensor(float(n), dtype=dtype, device=device)
  w = mask.to(dtype)
  return w.reshape(w.shape + (1,) * (len(element_shape) - w.dim())), w.sum()


def _weighted_sum(x, w):
  if w is None:
    return x.sum()
  return torch.where(w != 0, x, torch.zeros((), dtype=x.dtype, device=x.device)).mul(w).sum()


def loss_sums(loss_type, logits, targets, mask=None, label_smoothing=0.0, logit_paddings=None):
  """(sum_n w_n l_n, n) with the conventions above; differentiable in `logits`."""
  losses = _element_losses(loss_type, logits, logit_paddings, targets, label_smoothing)
  w, n = _weights_and_count(loss_type, losses.shape, targets, mask, logits.dtype, logits.device)
  return _weighted_sum(losses, w), n


def _output_sums(loss_type, logits, aux, targets, dz, mask, label_smoothing):
  """CurvatureSums of the GGN form given logits and their directional derivative dz."""
  losses = _element_losses(loss_type, logits, aux, targets, label_smoothing)
  gdz, quad = _output_derivatives(loss_type, logits, aux, targets, dz, label_smoothing)
  w, n = _weights_and_count(loss_type, losses.shape, targets, mask, logits.dtype, logits.device)
  return CurvatureSums(_weighted_sum(quad, w), _weighted_sum(gdz, w), _weighted_sum(losses, w), n)


# ----------------------------------------------------------------------------- parameter swaps


def _substitute(obj, replacements, undo, seen):
  """Replaces parameter references inside (nested) lists/dicts in place, tuples by copy."""
  if isinstance(obj, torch.Tensor):
    return replacements.get(id(obj), obj)
  if not isinstance(obj, (list, tuple, dict)) or id(obj) in seen:
    return obj
  seen.add(id(obj))
  if isinstance(obj, tuple):
    items = [_substitute(x, replacements, undo, seen) for x in obj]
    if all(a is b for a, b in zip(items, obj)):
      return obj
    return type(obj)(*items) if hasattr(obj, '_fields') else type(obj)(items)
  for key, value in list(obj.items() if isinstance(obj, dict) else enumerate(obj)):
    new = _substitute(value, replacements, undo, seen)
    if new is not value:
      undo.append((obj, key, value))
      obj[key] = new
  return obj


@contextlib.contextmanager
def substituted_parameters(module: torch.nn.Module, replacements: dict):
  """Temporarily points every reference to parameter p (id(p) in `replacements`) at a new tensor.

  Covers each submodule's `_parameters` (tied weights included) and parameters held in
  plain list/tuple/dict attributes, at any nesting depth. Restored on exit.
  """
  undo = []
  try:
    for m in unwrap(module).modules():
      for name, p in list(m._parameters.items()):
        if p is not None and id(p) in replacements:
          undo.append((m._parameters, name, p))
          m._parameters[name] = replacements[id(p)]
      attrs = vars(m)
      for name, value in list(attrs.items()):
        if name in ('_parameters', '_buffers', '_modules'):
          continue
        new = _substitute(value, replacements, undo, set())
        if new is not value:
          undo.append((attrs, name, value))
          attrs[name] = new
    yield
  finally:
    for container, key, value in reversed(undo):
      container[key] = value


def _rng_devices():
  return [torch.cuda.current_device()] if torch.cuda.is_available() else []


def rng_state():
  """The torch generators' states (CPU, current CUDA device). Taken before a gradient
  pass and given to an oracle as `rng_state`, it makes the oracle's passes draw that
  pass's dropout masks."""
  return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in _rng_devices()]


@contextlib.contextmanager
def _isolated(module, start_rng_state=None):
  """Yields `begin_pass()`, which resets the torch RNG to `start_rng_state` (default: its
  state on entry); on exit restores the RNG as it was on entry and every buffer (values
  and identity)."""
  saved = [(m._buffers, name, b, b.detach().clone()) for m in unwrap(module).modules()
           for name, b in m._buffers.items() if b is not None]
  devices = _rng_devices()
  with torch.random.fork_rng(devices=devices):
    cpu_state, cuda_states = start_rng_state if start_rng_state is not None else rng_state()

    def begin_pass():
      torch.set_rng_state(cpu_state)
      for d, state in zip(devices, cuda_states):
        torch.cuda.set_rng_state(state, d)

    try:
      yield begin_pass
    finally:
      with torch.no_grad():
        for buffers, name, original, copy in saved:
          original.copy_(copy)
          buffers[name] = original


def _pairs(module, direction):
  """[(parameter, direction tensor)] for non-None entries, checked against module.parameters()."""
  params = list(unwrap(module).parameters())
  direction = list(direction)
  if len(direction) != len(params):
    raise ValueError(f'curvature.py: direction has {len(direction)} entries but the module has '
                     f'{len(params)} parameters (align it with module.parameters()).')
  pairs = []
  for i, (p, u) in enumerate(zip(params, direction)):
    if u is None:
      continue
    if u.shape != p.shape:
      raise ValueError(f'curvature.py: direction[{i}] has shape {tuple(u.shape)}, parameter {i} '
                       f'has {tuple(p.shape)}.')
    pairs.append((p, u.detach().to(device=p.device, dtype=p.dtype)))
  return pairs


def _default_fd_scale(dtype, order):
  """eps^(1/3) for first differences, eps^(1/4)/2 for second differences."""
  eps = torch.finfo(dtype).eps
  return eps ** (1.0 / 3.0) if order == 1 else eps ** 0.25 / 2


def _fd_step(c, theta_norm, u_norm):
  """h = c (1 + ||theta||) / ||u|| as a 0-d tensor (1 when u = 0)."""
  return torch.where(u_norm > 0, c * (1 + theta_norm) / u_norm.clamp_min(1e-30),
                     torch.ones_like(u_norm))


def _fd_step_for(pairs, fd_scale):
  dtype = pairs[0][0].dtype
  c = _default_fd_scale(dtype, fd_scale[1]) if fd_scale[0] is None else fd_scale[0]
  device = pairs[0][0].device
  norm = lambda xs: torch.linalg.vector_norm(
      torch.stack([torch.linalg.vector_norm(x.detach()).double().to(device) for x in xs]))
  return _fd_step(c, norm([p for p, _ in pairs]), norm([u for _, u in pairs]))


def _shifted(pairs, h):
  return {id(p): p.detach() + (h.to(p.device) * u).to(p.dtype) for p, u in pairs}


# ----------------------------------------------------------------------------- oracles

_METHOD_CACHE = weakref.WeakKeyDictionary()  # unwrapped module -> {kind: method}
_MISSING_DERIVATIVE = ('forward ad', 'forward-mode', 'derivative for', 'not implemented',
                       'double backward', 'not supported')


def _missing_derivative(error: Exception) -> bool:
  return isinstance(error, NotImplementedError) or any(
      s in str(error).lower() for s in _MISSING_DERIVATIVE)


def _run(kind, exact, method, module, run_exact, run_fd):
  """Dispatches 'auto' | exact | 'fd', caching the 'auto' decision per module."""
  if method == 'fd':
    return run_fd()
  if method == exact:
    return run_exact()
  if method != 'auto':
    raise ValueError(f"curvature.py: method must be 'auto', '{exact}' or 'fd', got {method!r}.")
  cache = _METHOD_CACHE.setdefault(unwrap(module), {})
  if cache.get(kind) == 'fd':
    return run_fd()
  try:
    out = run_exact()
  except (NotImplementedError, RuntimeError) as e:
    if not _missing_derivative(e):
      raise
    _LOG.info('curvature %s: %s unavailable (%s); using finite differences.', kind, exact,
              str(e).splitlines()[0])
    cache[kind] = 'fd'
    return run_fd()
  cache[kind] = exact
  return out


def _zero_sums(forward_fn, loss_type, targets, mask, label_smoothing):
  """Sums for u = 0: one plain forward pass."""
  with torch.no_grad():
    logits, aux = _split_output(forward_fn())
    summed, n = loss_sums(loss_type, logits, targets, mask, label_smoothing, aux)
  zero = torch.zeros_like(summed)
  return CurvatureSums(zero, zero, summed, n)


def ggn_quadratic_form(forward_fn: Callable[[], Any], module: torch.nn.Module,
                       direction: Sequence[Optional[torch.Tensor]], targets, loss_type,
                       *, mask: Optional[torch.Tensor] = None, label_smoothing: float = 0.0,
                       method: str = 'auto', fd_scale: Optional[float] = None,
                       rng_state=None) -> CurvatureSums:
  """u^T G u, g . u, loss (local sums over this rank's examples) and n.

  forward_fn: () -> logits (or (logits, logit_paddings) for CTC), calling `module`.
  direction: aligned with module.parameters(); None = zero.
  method: 'jvp' (one forward-mode pass), 'fd' (two forward passes), 'auto'.
  fd_scale: c in h = c (1+||theta||)/||u||; default eps^(1/3) of the parameter dtype.
  rng_state: `rng_state()` every pass starts from (default: the state on entry); the
    state on entry is restored on exit either way.
  """
  pairs = _pairs(module, direction)
  if not pairs:
    return _zero_sums(forward_fn, loss_type, targets, mask, label_smoothing)

  def run_jvp():
    with _isolated(module, rng_state) as begin_pass, torch.no_grad(), fwAD.dual_level():
      begin_pass()
      duals = {id(p): fwAD.make_dual(p.detach(), u) for p, u in pairs}
      with substituted_parameters(module, duals):
        logits, aux = _split_output(forward_fn())
      z, dz = fwAD.unpack_dual(logits)
      aux = None if aux is None else fwAD.unpack_dual(aux).primal
      dz = torch.zeros_like(z) if dz is None else dz
      return _output_sums(loss_type, z, aux, targets, dz, mask, label_smoothing)

  def run_fd():
    h = _fd_step_for(pairs, (fd_scale, 1))
    with _isolated(module, rng_state) as begin_pass, torch.no_grad():
      outs = []
      for sign in (1.0, -1.0):
        begin_pass()
        with substituted_parameters(module, _shifted(pairs, sign * h)):
          outs.append(_split_output(forward_fn()))
      (z_plus, aux), (z_minus, _) = outs
      h = h.to(z_plus.device, z_plus.dtype)
      return _output_sums(loss_type, (z_plus + z_minus) / 2, aux, targets,
                          (z_plus - z_minus) / (2 * h), mask, label_smoothing)

  return _run('ggn', 'jvp', method, module, run_jvp, run_fd)


def hessian_quadratic_form(forward_fn: Callable[[], Any], module: torch.nn.Module,
                           direction: Sequence[Optional[torch.Tensor]], targets, loss_type,
                           *, mask: Optional[torch.Tensor] = None, label_smoothing: float = 0.0,
                           method: str = 'auto', fd_scale: Optional[float] = None,
                           rng_state=None) -> CurvatureSums:
  """u^T H u, g . u, loss (local sums over this rank's examples) and n.

  Same arguments as `ggn_quadratic_form`; method: 'double_backward' (exact, on the real
  parameters; about 2-3 training steps), 'fd' (three forward passes), 'auto'.
  fd_scale default: eps^(1/4)/2 of the parameter dtype.
  """
  pairs = _pairs(module, direction)
  if not pairs:
    return _zero_sums(forward_fn, loss_type, targets, mask, label_smoothing)
  params = [p for p, _ in pairs]

  def run_double_backward():
    with _isolated(module, rng_state) as begin_pass, torch.enable_grad():
      begin_pass()
      logits, aux = _split_output(forward_fn())
      summed, n = loss_sums(loss_type, logits, targets, mask, label_smoothing, aux)
      grads = torch.autograd.grad(summed, params, create_graph=True, allow_unused=True)
      gu = sum((g * u).sum() for g, (_, u) in zip(grads, pairs) if g is not None)
      if not isinstance(gu, torch.Tensor) or not gu.requires_grad:  # loss linear along u
        zero = torch.zeros_like(summed.detach())
        return CurvatureSums(zero, torch.as_tensor(gu, dtype=zero.dtype), summed.detach(), n)
      hvps = torch.autograd.grad(gu, params, allow_unused=True)
      quad = sum((hv * u).sum() for hv, (_, u) in zip(hvps, pairs) if hv is not None)
      quad = torch.as_tensor(quad, dtype=summed.dtype, device=summed.device)
      return CurvatureSums(quad.detach(), gu.detach(), summed.detach(), n)

  def run_fd():
    h = _fd_step_for(pairs, (fd_scale, 2))
    with _isolated(module, rng_state) as begin_pass, torch.no_grad():
      losses = []
      for sign in (1.0, 0.0, -1.0):
        begin_pass()
        with substituted_parameters(module, _shifted(pairs, sign * h) if sign else {}):
          logits, aux = _split_output(forward_fn())
        losses.append(_element_losses(loss_type, logits.double(), aux, targets,
                                      label_smoothing))
      plus, center, minus = losses
      w, n = _weights_and_count(loss_type, center.shape, targets, mask, center.dtype,
                                center.device)
      h = h.to(center.device)
      # Differences per element before summing: roundoff ~eps*l_n per element, not eps*sum.
      sums = (_weighted_sum(plus - 2 * center + minus, w) / h**2,
              _weighted_sum(plus - minus, w) / (2 * h), _weighted_sum(center, w), n)
      return CurvatureSums(*(x.to(logits.dtype) for x in sums))

  return _run('hessian', 'double_backward', method, module, run_double_backward, run_fd)
