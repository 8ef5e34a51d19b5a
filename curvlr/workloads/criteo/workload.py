"""Framework-free part of the criteo-shaped workloads: constants, data, targets, eval loop.

Subclasses (`pytorch_workload.py`, `jax_workload.py`) add the model, loss and
device placement, and implement AlgoPerf's Workload interface on top of this.
"""
import math
import os
import pathlib
from typing import Dict, Iterator, Optional

import numpy as np

from curvlr import spec
from curvlr.workloads.criteo import config as config_lib
from curvlr.workloads.criteo import data as data_lib
from curvlr.workloads.criteo import synthetic

DEFAULT_CACHE_DIR = pathlib.Path(
    os.environ.get('CURVLR_CACHE_DIR', pathlib.Path.home() / '.cache' / 'curvlr'))

# Synthetic data of the embedded workload: 1.2M train lines, 32k validation, 32k test.
EMBEDDED_DATA = synthetic.SyntheticConfig(
    seed=0, num_train_files=12, lines_per_train_file=100_000,
    num_validation_lines=32_768, num_test_lines=32_768)


def seed_from_rng(rng) -> int:
  """A non-negative int32 seed from an AlgoPerf rng (raw JAX key or numpy int32 pair)."""
  return int(np.asarray(rng).reshape(-1)[-1]) % (2**31)


def resolve_data_dir(cfg: config_lib.CriteoConfig, data_dir: Optional[str]) -> pathlib.Path:
  """The directory holding day files; generates the synthetic set on first use."""
  if cfg.synthetic and not data_dir:
    return synthetic.ensure_dataset(DEFAULT_CACHE_DIR, EMBEDDED_DATA)
  if not data_dir:
    raise ValueError(f'Workload {cfg.name} needs --data_dir with Criteo day files '
                     '(day_<d>_<nn>, tab-separated; see README).')
  path = pathlib.Path(os.path.expanduser(data_dir))
  if not path.is_dir():
    raise FileNotFoundError(f'--data_dir {path} does not exist or is not a directory.')
  return path


class CriteoWorkloadBase(spec.Workload):
  """Shared properties and eval loop of the DLRM-small workloads (both frameworks)."""
  algoperf_base = 'criteo1tb'  # for curvlr.core.workload_support

  def __init__(self, cfg: config_lib.CriteoConfig, data_dir: Optional[str] = None):
    self.cfg = cfg
    self._data_dir = resolve_data_dir(cfg, data_dir)
    self._param_shapes = None
    self._param_types = None
    self._eval_iters = {}
    self.metrics_logger = None
    counts = {}
    for split, nominal in (('validation', cfg.num_validation_examples),
                           ('test', cfg.num_test_examples)):
      if nominal is None:
        nominal = min(data_lib.count_lines(data_lib.split_files(self._data_dir, split)),
                      cfg.max_eval_examples or math.inf)
      counts[split] = nominal
    self._num_validation_examples = counts['validation']
    self._num_test_examples = counts['test']

  # --- AlgoPerf Workload properties -------------------------------------------
  @property
  def data_dir(self) -> pathlib.Path:
    return self._data_dir

  @property
  def vocab_size(self) -> int:
    return self.cfg.vocab_size

  @property
  def num_dense_features(self) -> int:
    return self.cfg.num_dense_features

  @property
  def embed_dim(self) -> int:
    return self.cfg.embed_dim

  @property
  def target_metric_name(self) -> str:
    return 'loss'

  @property
  def loss_type(self):
    return spec.LossType.SIGMOID_CROSS_ENTROPY

  def has_reached_validation_target(self, eval_result) -> bool:
    return eval_result['validation/loss'] < self.validation_target_value

  def has_reached_test_target(self, eval_result) -> bool:
    return eval_result['test/loss'] < self.test_target_value

  @property
  def validation_target_value(self) -> float:
    return self.cfg.validation_target_value

  @property
  def test_target_value(self) -> float:
    return self.cfg.test_target_value

  @property
  def num_train_examples(self) -> int:
    if self.cfg.num_train_examples is not None:
      return self.cfg.num_train_examples
    return data_lib.count_lines(data_lib.split_files(self._data_dir, 'train'))

  @property
  def num_eval_train_examples(self) -> int:
    return config_lib.num_eval_train_examples(self.num_validation_examples,
                                              self.eval_batch_size)

  @property
  def num_validation_examples(self) -> int:
    return self._num_validation_examples

  @property
  def num_test_examples(self) -> int:
    return self._num_test_examples

  @property
  def train_mean(self):
    raise NotImplementedError

  @property
  def train_stddev(self):
    raise NotImplementedError

  @property
  def eval_batch_size(self) -> int:
    return self.cfg.eval_batch_size

  @property
  def max_allowed_runtime_sec(self) -> float:
    return self.cfg.max_allowed_runtime_sec

  @property
  def eval_period_time_sec(self) -> float:
    return self.cfg.eval_period_time_sec

  @property
  def step_hint(self) -> int:
    return self.cfg.step_hint

  @property
  def param_shapes(self):
    if self._param_shapes is None:
      raise ValueError('This should not happen, workload.init_model_fn() should be '
                       'called before workload.param_shapes!')
    return self._param_shapes

  @property
  def model_params_types(self):
    if self._param_types is None:
      raise ValueError('This should not happen, workload.init_model_fn() should be '
                       'called before workload.model_params_types!')
    return self._param_types

  # --- data -------------------------------------------------------------------
  def _numpy_batches(self, data_rng_seed: int, split: str, global_batch_size: int,
                     num_batches: Optional[int] = None,
                     repeat_final_dataset: bool = False) -> Iterator[Dict[str, np.ndarray]]:
    return data_lib.iterate_batches(
        self._data_dir, split, global_batch_size, shuffle_seed=data_rng_seed,
        num_batches=num_batches, repeat_final_dataset=repeat_final_dataset,
        prefetch=4 if split == 'train' else 2)

  def _eval_split_size(self, split: str) -> int:
    return {'eval_train': self.num_eval_train_examples,
            'validation': self.num_validation_examples,
            'test': self.num_test_examples}[split]

  def _eval_model_on_split(self, split, num_examples, global_batch_size, params,
                           model_state, rng, data_dir):
    raise NotImplementedError

  def eval_model(self, global_batch_size, params, model_state, rng, data_dir,
                 imagenet_v2_data_dir, global_step) -> Dict[str, float]:
    """AlgoPerf's eval: mean summed loss over ceil(N/eval_bs) batches of each split."""
    del imagenet_v2_data_dir, global_step
    metrics = {}
    for split, prefix in (('eval_train', 'train'), ('validation', 'validation'),
                          ('test', 'test')):
      num_examples = self._eval_split_size(split)
      metrics[f'{prefix}/loss'] = self._eval_model_on_split(
          split, num_examples, global_batch_size, params, model_state, rng, data_dir)
    metrics['validation/num_examples'] = self.num_validation_examples
    metrics['test/num_examples'] = self.num_test_examples
    return metrics

  def _eval_batches(self, split: str, global_batch_size: int):
    """Cached AlgoPerf-style eval iterator: exactly ceil(N/bs) batches per call."""
    num_batches = math.ceil(self._eval_split_size(split) / global_batch_size)
    key = (split, global_batch_size)
    if key not in self._eval_iters:
      self._eval_iters[key] = self._numpy_batches(
          0, split, global_batch_size, num_batches=num_batches, repeat_final_dataset=True)
    it = self._eval_iters[key]
    for _ in range(num_batches):
      yield next(it)

  def output_activation_fn(self, logits_batch, framework: str):
    raise NotImplementedError
