"""Deterministic synthetic Criteo data in the real day-file format (see data.py).

Statistics, per column and drawn from the seed:
* categorical: Zipf-distributed values (exponents around `zipf_exponent`) over
  cardinalities min(raw Criteo vocab size, `max_cardinality`), each value a
  distinct 8-lowercase-hex-char token; most columns rarely missing, about a
  third missing 20-45% of the time (empty field);
* dense: heavy-tailed non-negative counts floor(exp(t) - 1) with t Gaussian and
  correlated across columns through a per-row activity level; 0-50% missing
  (empty) and a few literal '-1' values (mostly in I2, as in the real data);
* labels: Bernoulli(sigmoid(logit)) with a planted model of what the pipeline
  shows a model (missing values included as their defaults):
    logit = bias + sum_j w_j tanh(log(relu(x_j) + 1) - c_j)     (dense)
          + sum_c effect_c[value_c]                               (categorical)
          + sum_(a,b) <u_a[value_a], u_b[value_b]>                (pairs of columns)
          + <P log(relu(x) + 1), u_c[value_c]>                    (dense x category),
  scaled by `signal_scale`, with the bias calibrated to `positive_rate`.
The generator knows the true probabilities, so `synthetic_config.json` records
the Bayes-optimal log-loss of every split beside the constant predictor's.
"""
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Dict, List, NamedTuple, Tuple

import numpy as np

from curvlr.workloads.criteo import data as data_lib

INFO_FILE = 'synthetic_config.json'
_FORMAT_VERSION = 2  # bump when the generator's output changes for a given config
_LATENT_DIM = 4
_NUM_PAIRS = 10
_NUM_INTERACTING = 8
_NUM_DENSE_INTERACTING = 2
_MAX_COUNT = 10**9


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """What `generate` writes; the defaults take ~10 s on 2 cores and ~210 MB of disk."""
  seed: int = 0
  num_train_files: int = 8  # day_0_00, day_0_01, day_1_00, ... (train_files_per_day per day)
  lines_per_train_file: int = 100_000
  train_files_per_day: int = 2
  num_validation_lines: int = 50_000  # spread over day_23_19, day_23_20, ...
  num_validation_files: int = 1
  num_test_lines: int = 50_000  # spread over day_23_00, day_23_01, ...
  num_test_files: int = 1
  positive_rate: float = 0.04  # mean of the true probabilities (bias calibration)
  zipf_exponent: float = 1.1  # mean categorical Zipf exponent (per column x U(0.85, 1.15))
  max_cardinality: int = 100_000  # cap on the per-column raw Criteo vocab sizes
  signal_scale: float = 1.0  # logit scale; 1.0: Bayes log-loss ~0.7x the constant's

  def __post_init__(self):
    limits = {'num_train_files': (1, 23 * self.train_files_per_day),
              'train_files_per_day': (1, 100),
              'num_validation_files': (1, data_lib.NUM_DAY_23_FILES - data_lib.NUM_TEST_FILES),
              'num_test_files': (1, data_lib.NUM_TEST_FILES)}
    for name, (lo, hi) in limits.items():
      if not lo <= getattr(self, name) <= hi:
        raise ValueError(f'SyntheticConfig.{name}={getattr(self, name)} is outside [{lo}, {hi}].')
    if not 0.0 < self.positive_rate < 1.0:
      raise ValueError(f'SyntheticConfig.positive_rate={self.positive_rate} is not in (0, 1).')

  def digest(self) -> str:
    """12 hex chars identifying the data this config generates."""
    text = json.dumps([_FORMAT_VERSION, dataclasses.asdict(self)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class _Rows(NamedTuple):
  """Sampled rows: category ranks (n, 26) with -1 = missing, and the dense fields."""
  ids: np.ndarray  # (n, 26) int
  counts: np.ndarray  # (n, 13) int64, non-negative
  dense_missing: np.ndarray  # (n, 13) bool: written as an empty field
  minus_one: np.ndarray  # (n, 13) bool: written as '-1'

  def dense_inputs(self) -> np.ndarray:
    """The pipeline's dense inputs log(relu(x) + 1); empty and '-1' give 0."""
    return np.where(self.dense_missing | self.minus_one, 0.0, np.log1p(self.counts))


class _Model:
  """The planted ground truth: per-column distributions, tokens and the logit model."""

  def __init__(self, config: SyntheticConfig):
    rng = np.random.RandomState([config.seed, 0])
    self.cards = np.minimum(data_lib.RAW_VOCAB_SIZES, config.max_cardinality)
    self.cdfs = []
    for card in self.cards:
      p = np.arange(1, card + 1) ** -(config.zipf_exponent * rng.uniform(0.85, 1.15))
      self.cdfs.append(np.cumsum(p / p.sum()))
    self.cat_missing = np.where(rng.uniform(size=data_lib.NUM_SPARSE) < 0.3,
                                rng.uniform(0.2, 0.45, data_lib.NUM_SPARSE),
                                rng.uniform(0.0, 0.04, data_lib.NUM_SPARSE))
    self.tokens = [_hex_tokens(rng, card) for card in self.cards]
    self.dense_mu = rng.uniform(0.0, 4.0, data_lib.NUM_DENSE)
    self.dense_sigma = rng.uniform(1.0, 2.5, data_lib.NUM_DENSE)
    self.dense_missing = rng.uniform(0.0, 0.5, data_lib.NUM_DENSE) ** 1.5
    self.dense_minus_one = np.full(data_lib.NUM_DENSE, 0.002)
    self.dense_minus_one[1] = 0.03
    # Logit model; index `card` of every per-category table is the missing value.
    s = config.signal_scale
    self.dense_w = s * rng.normal(0.0, 0.32, data_lib.NUM_DENSE)
    self.dense_c = rng.uniform(0.0, 4.0, data_lib.NUM_DENSE)
    self.effects = [s * rng.normal(0.0, rng.uniform(0.09, 0.49), card + 1) for card in self.cards]
    interacting = rng.choice(data_lib.NUM_SPARSE, _NUM_INTERACTING, replace=False)
    all_pairs = [(a, b) for i, a in enumerate(interacting) for b in interacting[i + 1:]]
    self.pairs = [all_pairs[i] for i in rng.choice(len(all_pairs), _NUM_PAIRS, replace=False)]
    self.latent = {c: np.sqrt(s) * rng.normal(0.0, 0.375, (self.cards[c] + 1, _LATENT_DIM))
                   for c in interacting}
    self.dense_cols = interacting[:_NUM_DENSE_INTERACTING]
    self.dense_proj = np.sqrt(s) * rng.normal(0.0, 0.05, (data_lib.NUM_DENSE, _LATENT_DIM))
    self.bias = 0.0
    calibration = self.sample(np.random.RandomState([config.seed, 1]), 50_000)
    self.bias = _calibrate_bias(self.logits(calibration), config.positive_rate)

  def sample(self, rng: np.random.RandomState, n: int) -> _Rows:
    uniform = rng.random_sample((n, data_lib.NUM_SPARSE))
    ids = np.stack([np.minimum(np.searchsorted(cdf, uniform[:, c], side='right'), len(cdf) - 1)
                    for c, cdf in enumerate(self.cdfs)], axis=1)
    ids[rng.random_sample(ids.shape) < self.cat_missing] = -1
    activity = rng.normal(size=(n, 1))
    noise = rng.normal(size=(n, data_lib.NUM_DENSE))
    t = self.dense_mu + self.dense_sigma * (0.6 * activity + 0.8 * noise)
    counts = np.floor(np.expm1(np.clip(t, 0.0, np.log(_MAX_COUNT))))
    missing = rng.random_sample(counts.shape) < self.dense_missing
    minus_one = ~missing & (rng.random_sample(counts.shape) < self.dense_minus_one)
    return _Rows(ids, counts.astype(np.int64), missing, minus_one)

  def logits(self, rows: _Rows) -> np.ndarray:
    dense = rows.dense_inputs()
    z = self.bias + np.tanh(dense - self.dense_c) @ self.dense_w
    ids = np.where(rows.ids < 0, self.cards, rows.ids)  # missing -> index card
    for c, effect in enumerate(self.effects):
      z += effect[ids[:, c]]
    for a, b in self.pairs:
      z += np.einsum('nk,nk->n', self.latent[a][ids[:, a]], self.latent[b][ids[:, b]])
    projected = dense @ self.dense_proj
    for c in self.dense_cols:
      z += np.einsum('nk,nk->n', projected, self.latent[c][ids[:, c]])
    return z

  def tsv(self, rows: _Rows, labels: np.ndarray) -> bytes:
    """The rows as Criteo TSV lines."""
    dense = _decimal(rows.counts)
    dense[rows.dense_missing] = b''
    dense[rows.minus_one] = b'-1'
    columns = [np.array([b'0', b'1'])[labels]]
    columns += [dense[:, j] for j in range(data_lib.NUM_DENSE)]
    for c, tokens in enumerate(self.tokens):
      columns.append(np.where(rows.ids[:, c] < 0, b'', tokens[rows.ids[:, c]]))
    return _tsv_bytes(columns)


def _hex_tokens(rng: np.random.RandomState, n: int) -> np.ndarray:
  """n distinct random-looking 8-lowercase-hex-char tokens, (n,) 'S8'.

  Token k is fmix32(key + k), MurmurHash3's finaliser, a bijection on uint32.
  """
  x = (np.arange(n, dtype=np.uint64) + np.uint64(rng.randint(0, 2**32, dtype=np.uint64)))
  mask = np.uint64(0xFFFFFFFF)
  x &= mask
  x ^= x >> np.uint64(16)
  x = (x * np.uint64(0x85EBCA6B)) & mask
  x ^= x >> np.uint64(13)
  x = (x * np.uint64(0xC2B2AE35)) & mask
  x ^= x >> np.uint64(16)
  nibbles = (x[:, None] >> np.arange(28, -1, -4, dtype=np.uint64)) & np.uint64(15)
  return np.frombuffer(b'0123456789abcdef', np.uint8)[nibbles].view('S8').ravel()


_SMALL_DECIMALS = np.arange(10_000).astype('S10')


def _decimal(values: np.ndarray) -> np.ndarray:
  """Non-negative ints below 10**10 -> their decimal byte strings ('S10', same shape)."""
  out = _SMALL_DECIMALS[np.minimum(values, 9_999)]
  large = values >= 10_000
  out[large] = values[large].astype('S10')
  return out


def _tsv_bytes(columns: List[np.ndarray]) -> bytes:
  """Byte-string columns (each (n,) 'S<w>', no NUL bytes) -> TSV rows, '\n'-terminated."""
  widths = [column.dtype.itemsize for column in columns]
  offsets = np.cumsum([0] + [w + 1 for w in widths])
  rows = np.zeros((len(columns[0]), offsets[-1]), np.uint8)  # fixed-width fields, NUL-padded
  for column, offset, width in zip(columns, offsets, widths):
    raw = np.ascontiguousarray(column).view(np.uint8).reshape(-1, width)
    rows[:, offset:offset + width] = raw
    rows[:, offset + width] = ord('\t')
  rows[:, -1] = ord('\n')
  return rows[rows != 0].tobytes()


def _calibrate_bias(logits: np.ndarray, positive_rate: float) -> float:
  """The bias b with mean(sigmoid(logits + b)) = positive_rate, by bisection."""
  lo, hi = -30.0, 30.0
  for _ in range(60):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if _sigmoid(logits + mid).mean() < positive_rate else (lo, mid)
  return (lo + hi) / 2


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _logloss(labels: np.ndarray, probs: np.ndarray) -> float:
  p = np.clip(probs, 1e-15, 1 - 1e-15)
  return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def _file_plan(config: SyntheticConfig) -> List[Tuple[str, str, int]]:
  """(split, file name, lines) for every file, in generation order."""
  per_day = config.train_files_per_day
  plan = [('train', f'day_{i // per_day}_{i % per_day:02d}', config.lines_per_train_file)
          for i in range(config.num_train_files)]
  for split, total, num_files, first in (
      ('validation', config.num_validation_lines, config.num_validation_files,
       data_lib.NUM_TEST_FILES),
      ('test', config.num_test_lines, config.num_test_files, 0)):
    sizes = [len(part) for part in np.array_split(np.arange(total), num_files)]
    plan += [(split, f'day_23_{first + i:02d}', size) for i, size in enumerate(sizes)]
  return plan


def generate(out_dir, config: SyntheticConfig = SyntheticConfig()) -> pathlib.Path:
  """Writes the day files of `config` and `synthetic_config.json` into `out_dir`.

  Same config -> byte-identical files. The JSON holds the config, line counts per
  file and split, positive rates, and the Bayes-optimal and constant-prediction
  log-loss of every split (nats per example).
  """
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  model = _Model(config)
  stats: Dict[str, Dict[str, list]] = {}
  files = {}
  for index, (split, name, num_lines) in enumerate(_file_plan(config)):
    rng = np.random.RandomState([config.seed, 2, index])
    rows = model.sample(rng, num_lines)
    probs = _sigmoid(model.logits(rows))
    labels = (rng.random_sample(num_lines) < probs).astype(np.int64)
    (out_dir / name).write_bytes(model.tsv(rows, labels))
    files[name] = num_lines
    split_stats = stats.setdefault(split, {'labels': [], 'probs': []})
    split_stats['labels'].append(labels)
    split_stats['probs'].append(probs)
  info = {'format_version': _FORMAT_VERSION, 'config': dataclasses.asdict(config),
          'digest': config.digest(), 'files': files, 'splits': {}}
  for split, s in stats.items():
    labels, probs = np.concatenate(s['labels']), np.concatenate(s['probs'])
    rate = float(labels.mean())
    info['splits'][split] = {
        'num_lines': len(labels), 'positive_rate': rate,
        'bayes_logloss': _logloss(labels, probs),
        'constant_logloss': _logloss(labels, np.full(len(labels), rate))}
  (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + '\n')
  return out_dir


def read_info(data_dir) -> dict:
  """The `synthetic_config.json` that `generate` wrote into `data_dir`."""
  return json.loads((pathlib.Path(data_dir) / INFO_FILE).read_text())


def ensure_dataset(cache_dir, config: SyntheticConfig = SyntheticConfig()) -> pathlib.Path:
  """`<cache_dir>/criteo_synthetic_<digest>`, generated on first use.

  Generation writes into a temporary sibling directory that is renamed into
  place when complete, so a partially written directory is never returned (a
  killed run leaves a `.partial-*` directory behind, which is never read).
  """
  target = pathlib.Path(cache_dir) / f'criteo_synthetic_{config.digest()}'
  if (target / INFO_FILE).is_file():
    return target
  if target.exists():
    raise FileExistsError(f'{target} exists but has no {INFO_FILE}; it was not written by '
                          'ensure_dataset. Remove it to regenerate the data.')
  target.parent.mkdir(parents=True, exist_ok=True)
  print(f'Generating synthetic Criteo data into {target} (once) ...', file=sys.stderr,
        flush=True)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=f'.partial-{target.name}-'))
  try:
    generate(tmp, config)
    os.chmod(tmp, 0o755)  # mkdtemp's 0o700 would hide a shared cache from other users
    try:
      os.rename(tmp, target)
    except OSError:  # another process renamed its copy into place first
      if not (target / INFO_FILE).is_file():
        raise
      shutil.rmtree(tmp, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return target
