"""Does a smaller eval split of `criteo_embedded` track the full one?

Trains the self-tuning NAdamW baseline (PyTorch) with the real runner loop, evaluating
every `--eval_every_steps` on the FULL generated splits (32,768 lines each), and logs
beside each split's loss the mean over its first n lines for every n in `--sizes`
(what `num_validation_examples = n` in config.py evaluates: the first n lines, in file
order). Prints, per size: the largest and the mean |subset - full| validation loss from
step 100 on, and the first eval step below the validation / test targets on the full
split and on the subset. Headline last: the validation difference of the smallest size.

  .venv/bin/python bench/bench_eval_split.py [--rng_seed=0] [--max_global_steps=600]
"""
import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from curvlr import spec  # noqa: E402
from curvlr.runner import backends, loop, rng as rng_lib  # noqa: E402
from curvlr.runner import submission as submission_lib  # noqa: E402
from curvlr.workloads.criteo import config  # noqa: E402
from curvlr.workloads.criteo.pytorch_workload import CriteoPytorchWorkload  # noqa: E402

SUBMISSION = 'submissions/self_tuning/nadamw/pytorch_submission.py'


class PrefixEvalWorkload(CriteoPytorchWorkload):
  """The embedded workload on its full splits, also reporting prefix means of the losses."""

  def __init__(self, sizes, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.sizes = sizes
    self.eval_seconds = []

  def has_reached_validation_target(self, eval_result) -> bool:
    return False  # train on past the target: the bench compares whole curves

  def _per_example(self, split, params, global_batch_size):
    losses = []
    for batch in self._eval_batches(split, global_batch_size):
      local = self._to_local_torch(batch)
      logits, _ = self.model_fn(params, local, None, spec.ForwardPassMode.EVAL, None,
                                update_batch_norm=False)
      out = self.loss_fn(local['targets'], logits, local.get('weights'))
      n = int(local['weights'].sum()) if 'weights' in local else len(local['targets'])
      losses.append(out['per_example'][:n].double().numpy())
    return np.concatenate(losses)[:self._eval_split_size(split)]

  def eval_model(self, global_batch_size, params, model_state, rng, data_dir,
                 imagenet_v2_data_dir, global_step):
    start = time.time()
    metrics = {}
    for split, prefix in (('eval_train', 'train'), ('validation', 'validation'),
                          ('test', 'test')):
      per_example = self._per_example(split, params, global_batch_size)
      metrics[f'{prefix}/loss'] = float(per_example.mean())
      for n in self.sizes:
        metrics[f'{prefix}_{n}/loss'] = float(per_example[:n].mean())
    metrics['validation/num_examples'] = self.num_validation_examples
    metrics['test/num_examples'] = self.num_test_examples
    self.eval_seconds.append(time.time() - start)
    return metrics


def first_below(evals, key, target):
  return next((step for step, r in evals if r[key] < target), None)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--rng_seed', type=int, default=0)
  p.add_argument('--max_global_steps', type=int, default=600)
  p.add_argument('--eval_every_steps', type=int, default=20)
  p.add_argument('--sizes', default='4096,8192,16384')
  args = p.parse_args(argv)
  sizes = [int(s) for s in args.sizes.split(',')]
  cfg = config.CRITEO_EMBEDDED_FULL
  workload = PrefixEvalWorkload(sizes, cfg)
  sub = submission_lib.load(SUBMISSION)
  result = loop.train_once(
      workload, sub, backends.PytorchBackend(), rng_lib.for_framework('pytorch'),
      trial_dir=pathlib.Path(tempfile.mkdtemp()), data_dir=None,
      global_batch_size=submission_lib.batch_size(sub, cfg.name),
      global_eval_batch_size=cfg.eval_batch_size, hyperparameters=None,
      rng_seed=args.rng_seed, max_global_steps=args.max_global_steps, self_tuning=True,
      resume=False, save_checkpoints=False, eval_every_steps=args.eval_every_steps)
  evals = result.eval_results
  later = [(s, r) for s, r in evals if s >= 100]
  print(f'full_split_lines: {workload.num_validation_examples}')
  print(f'eval_seconds_full_median: {np.median(workload.eval_seconds):.2f}')
  print(f'submission_seconds_per_step: {result.submission_time / result.global_step:.4f}')
  for split, target in (('validation', cfg.validation_target_value),
                        ('test', cfg.test_target_value)):
    print(f'{split}_full_first_step_below_{target}: {first_below(evals, f"{split}/loss", target)}')
    for n in sizes:
      diffs = np.array([r[f'{split}_{n}/loss'] - r[f'{split}/loss'] for _, r in later])
      print(f'{split}_{n}_first_step_below_{target}: '
            f'{first_below(evals, f"{split}_{n}/loss", target)}')
      print(f'{split}_{n}_minus_full_mean: {diffs.mean():+.5f}')
      print(f'{split}_{n}_minus_full_max_abs: {np.abs(diffs).max():.5f}')
  for step, r in evals:
    cells = ' '.join(f'{r[f"validation_{n}/loss"]:.5f}' for n in sizes)
    print(f'step {step:5d}: validation full {r["validation/loss"]:.5f} | prefixes {cells}'
          f' | test full {r["test/loss"]:.5f}')
  n = sizes[0]
  diffs = [abs(r[f'validation_{n}/loss'] - r['validation/loss']) for _, r in later]
  print(f'validation_{n}_minus_full_max_abs: {max(diffs):.5f}')


if __name__ == '__main__':
  torch.set_num_threads(2)
  main()
