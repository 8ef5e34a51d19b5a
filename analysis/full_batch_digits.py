"""Full-batch GD with CDAT on scikit-learn's digits: seed 000's Figs. 3, 5 and 6 in small.

Full-batch gradient descent (u = -g) on a ReLU MLP (Flax's default init, as the paper's JAX
models), softmax cross-entropy, float64, with
  (a) a constant lr tuned on a grid by the mean train loss of the last 5 iterates (seed 000, C.3),
  (b) CDAT (eq. 8) with sigma = 1 (greedy), 2 (on edge) and 2.0625 (slightly above).
Per step: train loss f(w_t) and lr_t; every `sharpness_every` steps: the sharpness
lambda_max of the full-batch Hessian at w_t (Lanczos on double-backward HVPs, warm-started
from the previous eigenvector) and lr_t * lambda_max (edge of stability at 2).

CDAT as in the paper's full batch runs: exact per-step n_t and d_t (ema_decay = 0), eps = 0,
u^T H u from `curvature.hessian_quadratic_form` (double backward). max_growth never binds;
lr_max = 1e6 only binds once the loss is ~1e-9 and the sharpness ~1e-6 (default run: from
step ~1100 for sigma = 2.0625, ~1400 for sigma = 2); `bound_hits` counts those steps.
Not reproduced: the paper's weight decay of 1e-5 (the loss here is plain cross-entropy).

Label noise (default 30%, symmetric: a label is redrawn uniformly with that probability).
The digits are nearly separable: without noise (`--label_noise 0`) CDAT drives the loss to
~1e-9 within ~200 steps while the sharpness collapses towards 0 and its lr grows to lr_max, so
there is no long run to compare. Fitting the noisy labels is a slow memorisation phase, like
the paper's full-batch CIFAR-10 subsets.

Usage:
  python -m analysis.full_batch_digits [--steps N] [--label_noise P] [--out DIR] [--quick]
Writes DIR/full_batch_digits.{png,csv,json} and prints `name: value` summary lines.
"""
import argparse
import copy
import dataclasses
import json
import math
import os
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.datasets import load_digits

from curvlr import spec
from curvlr.core import cdat
from curvlr.pytorch import curvature

SIGMAS = (1.0, 2.0, 2.0625)
LOSS_THRESHOLDS = (1e-1, 1e-2, 1e-3)


@dataclasses.dataclass(frozen=True)
class Setup:
  """Experiment size.

  Attributes:
    num_examples: fixed train subset of the 1797 digits (seeded permutation).
    label_noise: probability that a label is replaced by a uniformly drawn class.
    widths: hidden layer widths of the ReLU MLP (64 inputs, 10 outputs).
    steps: GD steps per run.
    sharpness_every: steps between sharpness measurements.
    lr_grid: constant lrs tried for the GD baseline.
    seed: data subset and initialization seed.
  """
  num_examples: int = 1024
  label_noise: float = 0.3
  widths: Tuple[int, ...] = (64, 64)
  steps: int = 2000
  sharpness_every: int = 25
  lr_grid: Tuple[float, ...] = tuple(0.125 * 2**i for i in range(7))
  seed: int = 0


QUICK = Setup(num_examples=256, widths=(32,), steps=30, sharpness_every=10, lr_grid=(0.5, 2.0))


def cdat_config(sigma: float) -> cdat.CDATConfig:
  """Paper's full-batch CDAT: no EMA, eps = 0, bounds that bind only once the loss is ~1e-9."""
  return cdat.CDATConfig(sigma=sigma, ema_decay=0.0, eps=0.0, lr_init=1e-3, lr_max=1e6,
                         max_growth=1e12)


def load_data(num_examples: int, label_noise: float,
              seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
  """(x (n, 64) float64 standardized per pixel on the subset, noisy labels (n,) int64)."""
  features, labels = load_digits(return_X_y=True)
  rng = np.random.default_rng(seed)
  keep = rng.permutation(len(labels))[:num_examples]
  features, labels = features[keep], labels[keep]
  labels = np.where(rng.random(num_examples) < label_noise,
                    rng.integers(0, 10, num_examples), labels)
  std = features.std(0)
  features = (features - features.mean(0)) / np.where(std > 0, std, 1.0)
  return torch.tensor(features, dtype=torch.float64), torch.tensor(labels)


def make_mlp(widths: Sequence[int], seed: int) -> torch.nn.Sequential:
  """ReLU MLP 64 -> widths -> 10, float64, Flax Dense's init (lecun normal, zero biases)."""
  torch.manual_seed(seed)
  layers, fan_in = [], 64
  for width in list(widths) + [10]:
    layer = torch.nn.Linear(fan_in, width, dtype=torch.float64)
    std = fan_in**-0.5 / 0.87962566103423978  # Variance 1/fan_in after truncating at 2 std.
    torch.nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    torch.nn.init.zeros_(layer.bias)
    layers += [layer, torch.nn.ReLU()]
    fan_in = width
  return torch.nn.Sequential(*layers[:-1])


def sharpness(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              v0: Optional[np.ndarray] = None, tol: float = 1e-6) -> Tuple[float, np.ndarray]:
  """(lambda_max, unit eigenvector) of the Hessian of the mean loss; Lanczos (ARPACK).

  v0: starting vector (e.g. the previous eigenvector); tol: ARPACK's relative accuracy.
  """
  params = list(model.parameters())
  grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
  sizes = [p.numel() for p in params]

  def matvec(v):
    chunks = torch.from_numpy(np.ascontiguousarray(v).ravel()).split(sizes)
    hvps = torch.autograd.grad(grads, params, [c.view_as(p) for c, p in zip(chunks, params)],
                               retain_graph=True)
    return torch.cat([h.reshape(-1) for h in hvps]).numpy()

  operator = LinearOperator((sum(sizes), sum(sizes)), matvec=matvec, dtype=np.float64)
  values, vectors = eigsh(operator, k=1, which='LA', v0=v0, tol=tol)
  return float(values[0]), vectors[:, 0]


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
          lr_rule, sharpness_every: int = 0) -> Dict[str, np.ndarray]:
  """Full-batch GD from a copy of `model`.

  Args:
    lr_rule: a constant lr (float) or a CDATConfig.
    sharpness_every: 0 for no sharpness measurements.

  Returns:
    loss (steps + 1,): f(w_t), NaN after a divergence; lr (steps,): lr_t;
    sharpness (steps,): lambda_max(w_t), NaN where not measured; bound_hits: 0-d count.
  """
  model = copy.deepcopy(model)
  params = list(model.parameters())
  config = lr_rule if isinstance(lr_rule, cdat.CDATConfig) else None
  state = cdat.init(config) if config else None
  loss_curve = np.full(steps + 1, np.nan)
  lrs, sharp = np.full(steps, np.nan), np.full(steps, np.nan)
  bound_hits, vector = 0, None
  for t in range(steps + 1):
    loss = F.cross_entropy(model(x), y)
    loss_curve[t] = loss.item()
    if t == steps or not math.isfinite(loss_curve[t]):
      break
    direction = [-g for g in torch.autograd.grad(loss, params)]
    if sharpness_every and t % sharpness_every == 0:
      sharp[t], vector = sharpness(model, x, y, vector)
    if config is None:
      lrs[t] = lr_rule
    else:
      sums = curvature.hessian_quadratic_form(
          lambda: model(x), model, direction, y, spec.LossType.SOFTMAX_CROSS_ENTROPY,
          method='double_backward').mean()
      state = cdat.update(config, state, sums.gu, sums.quad)
      lrs[t] = cdat.cdat_lr(config, state)
      raw = cdat.raw_lr(config, state)
      bound_hits += raw is not None and raw != lrs[t]
    with torch.no_grad():
      for p, u in zip(params, direction):
        p.add_(u, alpha=lrs[t])
  return dict(loss=loss_curve, lr=lrs, sharpness=sharp, bound_hits=np.array(bound_hits))


def last5_loss(curve: Dict[str, np.ndarray]) -> float:
  """Mean train loss of the last 5 iterates (seed 000, C.3); inf after a divergence."""
  value = float(np.mean(curve['loss'][-5:]))
  return value if math.isfinite(value) else math.inf


def summarize(curves: Dict[str, Dict[str, np.ndarray]], steps: int) -> Dict[str, float]:
  """Summary numbers per method (keys `quantity/method`)."""
  out = {}
  early = max(1, steps // 10)
  for name, c in curves.items():
    loss, lr, sharp = c['loss'], c['lr'], c['sharpness']
    measured = np.isfinite(sharp)
    product = (lr * sharp)[measured]
    late = np.flatnonzero(measured) >= steps // 2
    out[f'final_train_loss/{name}'] = float(loss[-1])
    out[f'last5_train_loss/{name}'] = last5_loss(c)
    for threshold in LOSS_THRESHOLDS:
      below = np.flatnonzero(loss < threshold)
      out[f'steps_to_loss_{threshold:g}/{name}'] = int(below[0]) if below.size else -1
    out[f'lr_first/{name}'] = float(lr[0])
    out[f'lr_median_first_10pct/{name}'] = float(np.median(lr[:early]))
    out[f'lr_median_last_half/{name}'] = float(np.median(lr[steps // 2:]))
    out[f'lr_growth_last_half_over_first_10pct/{name}'] = (
        out[f'lr_median_last_half/{name}'] / out[f'lr_median_first_10pct/{name}'])
    out[f'sharpness_first/{name}'] = float(sharp[measured][0])
    out[f'sharpness_max/{name}'] = float(np.max(sharp[measured]))
    out[f'sharpness_median_last_half/{name}'] = float(np.median(sharp[measured][late]))
    out[f'lr_x_sharpness_median_last_half/{name}'] = float(np.median(product[late]))
    out[f'lr_x_sharpness_frac_above_2_last_half/{name}'] = float(np.mean(product[late] > 2))
    out[f'bound_hits/{name}'] = int(c['bound_hits'])
  return out


def plot(curves: Dict[str, Dict[str, np.ndarray]], path: str) -> None:
  """2x2 panels: train loss, lr, sharpness, lr x sharpness (edge of stability at 2)."""
  fig = Figure(figsize=(12, 8))
  axes = fig.subplots(2, 2).ravel()
  for name, c in curves.items():
    steps = np.arange(len(c['lr']))
    measured = np.isfinite(c['sharpness'])
    axes[0].plot(np.arange(len(c['loss'])), c['loss'], label=name, lw=1)
    axes[1].plot(steps, c['lr'], label=name, lw=0.8)
    axes[2].plot(steps[measured], c['sharpness'][measured], label=name, lw=1)
    axes[3].plot(steps[measured], (c['lr'] * c['sharpness'])[measured], label=name, lw=1)
  axes[3].axhline(2.0, color='k', ls='--', lw=1, label='2 (edge of stability)')
  titles = ('train loss', 'learning rate', 'sharpness $\\lambda_{max}$',
            'lr x sharpness')
  for ax, title in zip(axes, titles):
    ax.set_title(title)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  for ax in axes[:3]:
    ax.set_yscale('log')
  axes[0].legend(fontsize=8)
  axes[3].legend(fontsize=8)
  FigureCanvasAgg(fig)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def write_csv(curves: Dict[str, Dict[str, np.ndarray]], path: str) -> None:
  """Long format: method, step, train_loss, lr, sharpness, lr_x_sharpness (NaN = none)."""
  frames = []
  for name, c in curves.items():
    lr = np.append(c['lr'], np.nan)
    sharp = np.append(c['sharpness'], np.nan)
    frames.append(pd.DataFrame(dict(method=name, step=np.arange(len(lr)), train_loss=c['loss'],
                                    lr=lr, sharpness=sharp, lr_x_sharpness=lr * sharp)))
  pd.concat(frames).to_csv(path, index=False)


def run(setup: Setup, out_dir: str) -> Dict[str, float]:
  """Grid-searches the constant lr, runs every method, writes png/csv/json; the summary."""
  torch.set_num_threads(1)
  start = time.time()
  x, y = load_data(setup.num_examples, setup.label_noise, setup.seed)
  model = make_mlp(setup.widths, setup.seed)
  grid = {lr: last5_loss(train(model, x, y, setup.steps, lr)) for lr in setup.lr_grid}
  best_lr = min(grid, key=grid.get)
  rules = {f'gd_const_lr={best_lr:g}': best_lr}
  rules.update({f'cdat_sigma={s:g}': cdat_config(s) for s in SIGMAS})
  curves = {name: train(model, x, y, setup.steps, rule, setup.sharpness_every)
            for name, rule in rules.items()}
  summary = {f'grid_last5_train_loss/lr={lr:g}': v for lr, v in grid.items()}
  summary['best_const_lr'] = best_lr
  summary.update(summarize(curves, setup.steps))
  os.makedirs(out_dir, exist_ok=True)
  base = os.path.join(out_dir, 'full_batch_digits')
  plot(curves, base + '.png')
  write_csv(curves, base + '.csv')
  summary['runtime_s'] = time.time() - start
  with open(base + '.json', 'w') as f:
    json.dump(dict(setup=dataclasses.asdict(setup), summary=summary), f, indent=1)
  return summary


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=None, help='GD steps per run.')
  parser.add_argument('--label_noise', type=float, default=None, help='Label noise probability.')
  parser.add_argument('--out', default=os.path.join('analysis', 'figures'), help='Output dir.')
  parser.add_argument('--quick', action='store_true', help='Tiny setup (a few seconds).')
  args = parser.parse_args(argv)
  setup = QUICK if args.quick else Setup()
  for field in ('steps', 'label_noise'):
    if getattr(args, field) is not None:
      setup = dataclasses.replace(setup, **{field: getattr(args, field)})
  summary = run(setup, args.out)
  for name, value in summary.items():
    print(f'{name}: {value:.6g}' if isinstance(value, float) else f'{name}: {value}')
  return summary


if __name__ == '__main__':
  main()
