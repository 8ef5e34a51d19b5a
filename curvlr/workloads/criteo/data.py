"""Reader for the real Criteo 1TB TSV day files with AlgoPerf's semantics, without TensorFlow.

File naming and splits (ALGOPERF.md 4.4): train/eval_train read `day_{0..22}_*`,
validation `day_23_19..35`, test `day_23_00..18`. Lines: 40 tab-separated fields
(label, 13 integer features, 26 categorical strings); empty or '-1' fields take
the defaults (0 / '00000000'). Transforms: dense -> log(relu(x) + 1); categorical
column i -> FarmHash Fingerprint64(value + str(i)) % RAW_VOCAB_SIZES[i] (what
`tf.strings.to_hash_bucket_fast` computes), stored as float32 like AlgoPerf.
"""
import itertools
import pathlib
import queue
import threading
from typing import Dict, Iterator, List, Optional, Sequence

import farmhash
import numpy as np

NUM_DENSE = 13
NUM_SPARSE = 26
NUM_FIELDS = 1 + NUM_DENSE + NUM_SPARSE
RAW_VOCAB_SIZES = (39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951,
                   2953546, 403346, 10, 2208, 11938, 155, 4, 976, 14, 39979771, 25641295,
                   39664984, 585935, 12972, 108, 36)
MISSING_CATEGORY = '00000000'
SPLITS = ('train', 'eval_train', 'validation', 'test')


class CriteoFormatError(ValueError):
  """A line that is not a valid Criteo TSV record; the message names file and line."""


def split_files(data_dir, split: str) -> List[pathlib.Path]:
  """The day files of `split` that exist in `data_dir`, sorted by name."""
  data_dir = pathlib.Path(data_dir)
  if not data_dir.is_dir():
    raise FileNotFoundError(f'Criteo data directory {data_dir} does not exist.')
  if split in ('train', 'eval_train'):
    files = [f for d in range(23) for f in data_dir.glob(f'day_{d}_*') if f.is_file()]
    pattern = 'day_{0..22}_*'
  elif split == 'validation':
    files = [data_dir / f'day_23_{i:02d}' for i in range(19, 36)]
    pattern = 'day_23_19 .. day_23_35'
  elif split == 'test':
    files = [data_dir / f'day_23_{i:02d}' for i in range(19)]
    pattern = 'day_23_00 .. day_23_18'
  else:
    raise ValueError(f'Unknown split {split!r}; expected one of {SPLITS}.')
  files = sorted(f for f in files if f.is_file())
  if not files:
    raise FileNotFoundError(f'No {split} files matching {pattern} in {data_dir}.')
  return files


def count_lines(paths: Sequence[pathlib.Path]) -> int:
  total = 0
  for path in paths:
    with open(path, 'rb') as f:
      total += sum(chunk.count(b'\n') for chunk in iter(lambda: f.read(1 << 24), b''))
  return total


_HASH_CACHE: Dict[str, int] = {}


def _hash(value: str, column: int) -> int:
  key = value + str(column)
  h = _HASH_CACHE.get(key)
  if h is None:
    if len(_HASH_CACHE) > 2_000_000:
      _HASH_CACHE.clear()
    h = _HASH_CACHE[key] = farmhash.fingerprint64(key) % RAW_VOCAB_SIZES[column]
  return h


def _number(text: str, path, line_no: int, field: int) -> float:
  if text == '' or text == '-1':
    return 0.0
  try:
    return float(text)
  except ValueError:
    raise CriteoFormatError(
        f'{path}:{line_no}: field {field} is {text!r}, expected a number.') from None


def parse_lines(lines: Sequence[str], path='<memory>', first_line_no: int = 1):
  """-> (inputs (B, 39) float32, targets (B,) float32) with AlgoPerf's transforms."""
  n = len(lines)
  targets = np.empty(n, np.float32)
  dense = np.empty((n, NUM_DENSE), np.float32)
  sparse = np.empty((n, NUM_SPARSE), np.float32)
  for i, line in enumerate(lines):
    line_no = first_line_no + i
    fields = line.rstrip('\n').split('\t')
    if len(fields) != NUM_FIELDS:
      raise CriteoFormatError(
          f'{path}:{line_no}: expected {NUM_FIELDS} tab-separated fields, got {len(fields)}.')
    targets[i] = _number(fields[0], path, line_no, 0)
    for j in range(NUM_DENSE):
      dense[i, j] = _number(fields[1 + j], path, line_no, 1 + j)
    for j in range(NUM_SPARSE):
      value = fields[1 + NUM_DENSE + j]
      sparse[i, j] = _hash(MISSING_CATEGORY if value in ('', '-1') else value, j)
  dense = np.log(np.maximum(dense, 0.0) + 1.0)
  return np.concatenate([dense, sparse], axis=1), targets


def _lines(paths: Sequence[pathlib.Path]):
  """(path, line_no, line) over the files in order."""
  for path in paths:
    with open(path, encoding='utf-8', errors='strict') as f:
      for line_no, line in enumerate(f, start=1):
        yield path, line_no, line


def _batches_from_lines(records, batch_size: int, drop_remainder: bool):
  while True:
    chunk = list(itertools.islice(records, batch_size))
    if not chunk or (drop_remainder and len(chunk) < batch_size):
      return
    # Parse per file so errors name the right file and line.
    parts, start = [], 0
    while start < len(chunk):
      path, first_no, _ = chunk[start]
      end = start
      while end < len(chunk) and chunk[end][0] == path:
        end += 1
      parts.append(parse_lines([c[2] for c in chunk[start:end]], path, first_no))
      start = end
    inputs = np.concatenate([p[0] for p in parts])
    targets = np.concatenate([p[1] for p in parts])
    yield {'inputs': inputs, 'targets': targets}


def _pad(batch, batch_size: int):
  n = batch['targets'].shape[0]
  if n == batch_size:
    return batch
  pad = batch_size - n
  return {'inputs': np.pad(batch['inputs'], ((0, pad), (0, 0))),
          'targets': np.pad(batch['targets'], (0, pad)),
          'weights': np.concatenate([np.ones(n), np.zeros(pad)])}


def _train_batches(data_dir, batch_size: int, shuffle_seed: int):
  files = split_files(data_dir, 'train')
  if count_lines(files) < batch_size:
    raise ValueError(f'The train files in {data_dir} hold fewer lines than one global '
                     f'batch ({batch_size}).')
  rng = np.random.RandomState(shuffle_seed)
  while True:  # repeat(), with a new file order on every pass.
    order = [files[i] for i in rng.permutation(len(files))]
    yield from _batches_from_lines(_lines(order), batch_size, drop_remainder=True)


def _eval_batches(data_dir, split: str, batch_size: int, num_batches: Optional[int],
                  repeat_final_dataset: bool):
  files = split_files(data_dir, split)
  while True:
    emitted = 0
    while num_batches is None or emitted < num_batches:
      for batch in _batches_from_lines(_lines(files), batch_size, drop_remainder=False):
        yield _pad(batch, batch_size)
        emitted += 1
        if num_batches is not None and emitted == num_batches:
          break
      if num_batches is None:
        break
    if not repeat_final_dataset:
      return


def iterate_batches(data_dir, split: str, global_batch_size: int, *, shuffle_seed: int = 0,
                    num_batches: Optional[int] = None, repeat_final_dataset: bool = False,
                    prefetch: int = 0) -> Iterator[Dict[str, np.ndarray]]:
  """Global numpy batches of `split`.

  train: files shuffled by `shuffle_seed`, read sequentially, full batches only,
  repeated forever; no 'weights'. Eval splits: in file order, the last short batch
  zero-padded with a 'weights' key (1 real / 0 padding) on that batch only; with
  `num_batches`, the split is cycled until exactly that many batches came out
  (AlgoPerf's `take(num_batches)` on the repeated eval set), and with
  `repeat_final_dataset` that sequence repeats.
  """
  if split == 'train':
    it = _train_batches(data_dir, global_batch_size, shuffle_seed)
  elif split in SPLITS:
    it = _eval_batches(data_dir, split, global_batch_size, num_batches, repeat_final_dataset)
  else:
    raise ValueError(f'Unknown split {split!r}; expected one of {SPLITS}.')
  return _prefetched(it, prefetch) if prefetch else it


def _prefetched(it: Iterator, size: int) -> Iterator:
  """Runs `it` in a daemon thread, `size` items ahead; re-raises its errors here."""
  q: queue.Queue = queue.Queue(maxsize=size)
  done = object()

  def worker():
    try:
      for item in it:
        q.put(item)
      q.put(done)
    except BaseException as e:  # pylint: disable=broad-except
      q.put(e)

  threading.Thread(target=worker, daemon=True).start()
  while True:
    item = q.get()
    if item is done:
      return
    if isinstance(item, BaseException):
      raise item
    yield item
