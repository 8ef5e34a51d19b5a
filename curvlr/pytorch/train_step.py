"""The loss/gradient part of a PyTorch AlgoPerf step, shared by all our submissions."""
import torch

from curvlr import spec
from curvlr.pytorch import distributed


def loss_and_grad(workload, model, model_state, batch, rng, *, dropout_rate: float,
                  label_smoothing: float = 0.0):
  """`loss_grad_and_count` without the count: -> (loss, new_model_state)."""
  loss, _, new_model_state = loss_grad_and_count(
      workload, model, model_state, batch, rng, dropout_rate=dropout_rate,
      label_smoothing=label_smoothing)
  return loss, new_model_state


def loss_grad_and_count(workload, model, model_state, batch, rng, *, dropout_rate: float,
                        label_smoothing: float = 0.0):
  """Forward + backward of the globally normalised loss; fills `.grad`.

  -> (loss: 0-d tensor, the global mean over valid examples; n_valid: the global
  count of valid examples, AlgoPerf's `n_valid_examples` summed over ranks;
  new_model_state).
  Under DDP the summed loss and count are all-reduced with autograd-aware
  collectives (whose backward all-reduces too), so together with DDP's gradient
  averaging every rank holds the exact global-mean gradient.
  """
  model.train()
  for p in model.parameters():
    p.grad = None
  logits, new_model_state = workload.model_fn(
      model, batch, model_state, spec.ForwardPassMode.TRAIN, rng,
      update_batch_norm=True, dropout_rate=dropout_rate)
  out = workload.loss_fn(batch['targets'], logits, batch.get('weights'),
                         label_smoothing=label_smoothing)
  summed, n_valid = out['summed'], out['n_valid_examples']
  if distributed.world_size() > 1:
    summed = distributed.differentiable_all_reduce_sum(summed)
    n_valid = distributed.differentiable_all_reduce_sum(
        torch.as_tensor(n_valid, dtype=summed.dtype))
  loss = summed / n_valid
  loss.backward()
  return loss.detach(), torch.as_tensor(n_valid).detach(), new_model_state


def grad_norm(model) -> torch.Tensor:
  """L2 norm over all gradients (0-d tensor), from per-tensor norms (no concatenated copy)."""
  grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
  return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
