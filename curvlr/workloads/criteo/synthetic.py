"""Deterministic synthetic Criteo data, written in the real day-file TSV format.

Statistics: per-column Zipf-distributed categorical values (8 lowercase hex chars,
cardinalities from 3 to 50k), ~4% missing categorical and ~10% missing dense
fields, heavy-tailed non-negative integer counts, and labels from a planted
logistic model with per-category effects plus pairwise interactions of small
latent vectors (a factorisation machine on 6 columns), calibrated to a ~4%
positive rate. The Bayes-optimal validation log-loss is recorded beside the data.
"""
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile

import numpy as np

NUM_DENSE, NUM_SPARSE = 13, 26
_CARDINALITIES = (50_000, 3_000, 2_000, 1_000, 4_000, 3, 1_500, 500, 60, 40_000, 20_000,
                  8_000, 10, 1_200, 5_000, 150, 4, 900, 14, 45_000, 30_000, 42_000, 9_000,
                  6_000, 100, 36)
_INTERACTING = (0, 2, 4, 9, 13, 22)  # columns whose latent vectors interact pairwise


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  seed: int = 0
  num_train_files: int = 8
  lines_per_train_file: int = 100_000
  num_validation_lines: int = 32_768
  num_test_lines: int = 32_768
  positive_rate: float = 0.04
  zipf_exponent: float = 1.1

  def digest(self) -> str:
    return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True)
                          .encode()).hexdigest()[:12]


class _Model:
  """The planted ground truth: category vocabularies and the logistic model."""

  def __init__(self, config: SyntheticConfig):
    rng = np.random.RandomState(config.seed)
    self.config = config
    self.tokens = [np.array([f'{x:08x}' for x in rng.randint(0, 2**32, size=c, dtype=np.uint64)])
                   for c in _CARDINALITIES]
    self.zipf = []
    for c in _CARDINALITIES:
      p = 1.0 / np.arange(1, c + 1) ** config.zipf_exponent
      self.zipf.append(p / p.sum())
    self.effects = [rng.normal(0, 0.6, size=c) for c in _CARDINALITIES]
    self.latent = {j: rng.normal(0, 0.7, size=(_CARDINALITIES[j], 4)) for j in _INTERACTING}
    self.dense_w = rng.normal(0, 0.25, size=NUM_DENSE)
    self.dense_scale = rng.uniform(0.5, 3.0, size=NUM_DENSE)
    self.bias = 0.0
    ids, dense = self._features(np.random.RandomState(config.seed + 1), 50_000)
    logits = self._logits(ids, dense)
    lo, hi = -20.0, 5.0  # calibrate the bias to the positive rate by bisection
    for _ in range(60):
      mid = (lo + hi) / 2
      lo, hi = (mid, hi) if _sigmoid(logits + mid).mean() < config.positive_rate else (lo, mid)
    self.bias = (lo + hi) / 2

  def _features(self, rng, n):
    ids = np.stack([rng.choice(len(p), size=n, p=p) for p in self.zipf], axis=1)
    dense = np.floor(rng.lognormal(0.0, 1.0, size=(n, NUM_DENSE)) * self.dense_scale ** 2)
    return ids, dense

  def _logits(self, ids, dense):
    z = self.bias + np.log1p(dense) @ self.dense_w * 0.5
    z = z + sum(self.effects[j][ids[:, j]] for j in range(NUM_SPARSE)) / 2.5
    for a in range(len(_INTERACTING)):
      for b in range(a + 1, len(_INTERACTING)):
        ja, jb = _INTERACTING[a], _INTERACTING[b]
        z = z + np.sum(self.latent[ja][ids[:, ja]] * self.latent[jb][ids[:, jb]], axis=1)
    return z

  def sample_lines(self, rng, n):
    """-> (list of TSV lines, true probabilities (n,))."""
    ids, dense = self._features(rng, n)
    prob = _sigmoid(self._logits(ids, dense))
    labels = (rng.uniform(size=n) < prob).astype(int)
    dense_txt = dense.astype(np.int64).astype(str)
    dense_txt[rng.uniform(size=dense.shape) < 0.10] = ''
    dense_txt[rng.uniform(size=dense.shape) < 0.005] = '-1'
    cat_txt = np.stack([self.tokens[j][ids[:, j]] for j in range(NUM_SPARSE)], axis=1)
    cat_txt[rng.uniform(size=cat_txt.shape) < 0.04] = ''
    rows = np.concatenate([labels.astype(str)[:, None], dense_txt, cat_txt], axis=1)
    return ['\t'.join(r) for r in rows], prob


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _write(path: pathlib.Path, lines, chunk_size=20_000):
  with open(path, 'w', newline='\n') as f:
    for i in range(0, len(lines), chunk_size):
      f.write('\n'.join(lines[i:i + chunk_size]) + '\n')


def generate(out_dir, config: SyntheticConfig = SyntheticConfig()) -> pathlib.Path:
  """Writes day_<d>_<nn> train files, day_23_19 (validation), day_23_00 (test)."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  model = _Model(config)
  rng = np.random.RandomState(config.seed + 2)
  for i in range(config.num_train_files):
    lines, _ = model.sample_lines(rng, config.lines_per_train_file)
    _write(out_dir / f'day_{i % 23}_{i // 23:02d}', lines)
  info = {'config': dataclasses.asdict(config)}
  for name, n in (('day_23_19', config.num_validation_lines),
                  ('day_23_00', config.num_test_lines)):
    lines, prob = model.sample_lines(rng, n)
    _write(out_dir / name, lines)
    labels = np.array([float(l[0]) for l in lines])
    p = np.clip(prob, 1e-12, 1 - 1e-12)
    info[f'bayes_logloss/{name}'] = float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    info[f'positive_rate/{name}'] = float(labels.mean())
  (out_dir / 'synthetic_config.json').write_text(json.dumps(info, indent=2, sort_keys=True))
  return out_dir


def ensure_dataset(cache_dir, config: SyntheticConfig = SyntheticConfig()) -> pathlib.Path:
  """`<cache_dir>/criteo_synthetic_<digest>`, generated atomically on first use."""
  target = pathlib.Path(cache_dir) / f'criteo_synthetic_{config.digest()}'
  if (target / 'synthetic_config.json').is_file():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  print(f'Generating synthetic Criteo data into {target} (once) ...', flush=True)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix='.partial-'))
  try:
    generate(tmp, config)
    try:
      os.rename(tmp, target)
    except OSError:  # another process finished first
      shutil.rmtree(tmp, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return target
