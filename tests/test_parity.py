"""PyTorch and JAX DLRM-small + NAdamW agree on the same weights and batches."""
import jax
import jax.numpy as jnp
import numpy as np
import torch

from curvlr.core import schedules
from curvlr.jax.nadamw import nadamw_direction
from curvlr.pytorch.nadamw import NAdamW
from curvlr.workloads.criteo import data, jax_model
from curvlr.workloads.criteo.jax_workload import sigmoid_cross_entropy
from curvlr.workloads.criteo.torch_model import DlrmSmall

VOCAB = 1024
HP = schedules.NADAMW_BASELINE


def torch_to_jax(model: DlrmSmall):
  """Maps AlgoPerf's PyTorch names onto the JAX (flax) tree: kernel = weight.T.

  Copies (jnp.array): jax 0.7's jnp.asarray aliases a contiguous numpy buffer on CPU, which
  the in-place torch step would then change under the JAX params."""
  linears = [m for m in list(model.bot_mlp) + list(model.top_mlp)
             if isinstance(m, torch.nn.Linear)]
  params = {f'Dense_{i}': {'kernel': jnp.array(m.weight.detach().numpy().T),
                           'bias': jnp.array(m.bias.detach().numpy())}
            for i, m in enumerate(linears)}
  params['embedding_table'] = jnp.array(
      torch.cat(model.embedding_table_chucks).detach().numpy())
  return params


def test_forward_loss_and_nadamw_steps_agree(tiny_criteo_dir):
  torch.manual_seed(0)
  model = DlrmSmall(VOCAB)
  params = torch_to_jax(model)
  batches = data.iterate_batches(tiny_criteo_dir, 'train', 256)
  opt = NAdamW(model.parameters(), betas=(1 - HP.one_minus_beta1, HP.beta2), eps=HP.eps,
               weight_decay=HP.weight_decay)
  tx = nadamw_direction(1 - HP.one_minus_beta1, HP.beta2, HP.eps, HP.weight_decay)
  state = tx.init(params)

  def jax_loss(p, batch):
    logits = jax_model.apply(p, batch['inputs'])
    summed, n, _ = sigmoid_cross_entropy(batch['targets'], logits)
    return summed / n

  for step in range(4):
    batch = next(batches)
    lr = 1e-3
    logits_t = model(torch.as_tensor(batch['inputs']))
    loss_t = torch.nn.functional.binary_cross_entropy_with_logits(
        logits_t.squeeze(1), torch.as_tensor(batch['targets']))
    loss_j, grads = jax.value_and_grad(jax_loss)(params, batch)
    np.testing.assert_allclose(float(loss_t.detach()), float(loss_j), rtol=1e-5)
    opt.zero_grad()
    loss_t.backward()
    opt.step(lr)
    u, state = tx.update(grads, state, params)
    params = jax.tree.map(lambda p, d: p + lr * d, params, u)
  after = torch_to_jax(model)
  for key in ('Dense_0', 'Dense_7'):
    for leaf in ('kernel', 'bias'):
      np.testing.assert_allclose(np.asarray(after[key][leaf]), np.asarray(params[key][leaf]),
                                 rtol=1e-4, atol=2e-6)
  # Rows hit by few examples have gradients near NAdamW's eps, where the normalised
  # update amplifies float32 rounding differences of g: atol one step's lr * 5e-3.
  np.testing.assert_allclose(np.asarray(after['embedding_table']),
                             np.asarray(params['embedding_table']), rtol=1e-4, atol=1e-5)
