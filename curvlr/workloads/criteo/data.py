"""Reader for Criteo 1TB day files with AlgoPerf's semantics, without TensorFlow.

Mirrors `algoperf/workloads/criteo1tb/input_pipeline.py` (ALGOPERF.md 4.4):

* Splits: train and eval_train read `day_{0..22}_*`, validation the existing files
  among `day_23_19..day_23_35`, test those among `day_23_00..day_23_18`.
* Lines (TextLineDataset): '\\n'-terminated, every '\\r' dropped, a last line
  without '\\n' still counts. Exactly 40 tab-separated fields: label, 13 integer
  features, 26 categorical strings. Empty fields and the literal '-1' (in any
  column) take the defaults 0 / '00000000'.
* Transforms: targets = label (float32); dense -> log(relu(x) + 1) in float32;
  categorical column i -> Fingerprint64(value + str(i)) % RAW_VOCAB_SIZES[i]
  (`tf.strings.to_hash_bucket_fast`), cast to float32 (ids above 2**24 lose
  precision, as in AlgoPerf). inputs = [13 dense, 26 ids]: (B, 39) float32.
* Order: train and eval_train files are shuffled, reshuffled on every pass (tf.data
  reshuffles each iteration); validation and test are read in name order. Files
  are read sequentially, batches span file boundaries.
* Batches: train drops each pass's remainder and repeats forever, with keys
  'inputs' and 'targets' only. Eval splits pad their last short batch with zeros
  and add 'weights' (float64, 1 real / 0 padding) to that batch only. With
  `num_batches` the stream is `take(num_batches)` of one pass, repeated when
  `repeat_final_dataset` (AlgoPerf's order of operations: an eval split shorter
  than num_batches batches is cycled pass by pass, each pass ending in its padded
  batch; successive draws of num_batches then start at different offsets).

Deviations from AlgoPerf:
* File order comes from numpy RandomState(shuffle_seed), not tf.data's shuffle
  (AlgoPerf's second, unseeded `shuffle(1024)` makes its order irreproducible).
* Train files with fewer lines than one batch raise ValueError (AlgoPerf:
  StopIteration on the first next()); a split with no lines raises ValueError
  (AlgoPerf: an empty or endless-looping iterator).
* A malformed line raises CriteoFormatError naming file and line when its block
  (a few MB) is parsed, i.e. up to a block before TF would fail on its batch.
* Non-integer numbers ('1.5', '1e3') are parsed by Python's float(), which
  accepts a few spellings TF's strtof might not (e.g. '1_0').

Speed: fields are located and parsed with vectorised numpy over whole blocks:
numbers by SWAR digit arithmetic on 8-byte words, categorical values by a numpy
port of FarmHash Fingerprint64 for strings up to 16 bytes (all real Criteo
values); longer strings fall back to `pyfarmhash`.
"""
import itertools
import pathlib
import queue
import threading
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import farmhash
import numpy as np

NUM_DENSE = 13
NUM_SPARSE = 26
NUM_FIELDS = 1 + NUM_DENSE + NUM_SPARSE
RAW_VOCAB_SIZES = (39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951,
                   2953546, 403346, 10, 2208, 11938, 155, 4, 976, 14, 39979771, 25641295,
                   39664984, 585935, 12972, 108, 36)
MISSING_CATEGORY = '00000000'
NA_VALUE = '-1'
SPLITS = ('train', 'eval_train', 'validation', 'test')
_SHUFFLED_SPLITS = ('train', 'eval_train')
NUM_DAY_23_FILES = 36
NUM_TEST_FILES = NUM_DAY_23_FILES // 2 + 1
_BLOCK_BYTES = 1 << 15  # small blocks keep numpy temporaries in cache: ~2x faster than 1 MB

Batch = Dict[str, np.ndarray]


class CriteoFormatError(ValueError):
  """A line that is not a valid Criteo TSV record; the message names file and line."""


# --- files --------------------------------------------------------------------
def split_files(data_dir, split: str) -> List[pathlib.Path]:
  """The existing day files of `split` in `data_dir`, sorted by name."""
  data_dir = pathlib.Path(data_dir)
  if split not in SPLITS:
    raise ValueError(f'Unknown split {split!r}; expected one of {SPLITS}.')
  if not data_dir.is_dir():
    raise FileNotFoundError(f'Criteo data directory {data_dir} does not exist.')
  if split in _SHUFFLED_SPLITS:
    files = [f for d in range(23) for f in data_dir.glob(f'day_{d}_*')]
    pattern = 'day_{0..22}_*'
  elif split == 'validation':
    files = [data_dir / f'day_23_{s:02d}' for s in range(NUM_TEST_FILES, NUM_DAY_23_FILES)]
    pattern = f'day_23_{NUM_TEST_FILES:02d} .. day_23_{NUM_DAY_23_FILES - 1}'
  else:
    files = [data_dir / f'day_23_{s:02d}' for s in range(NUM_TEST_FILES)]
    pattern = f'day_23_00 .. day_23_{NUM_TEST_FILES - 1}'
  files = sorted(f for f in files if f.is_file())
  if not files:
    raise FileNotFoundError(f'No {split} files in {data_dir}: expected files named {pattern}.')
  return files


def count_lines(paths: Sequence[pathlib.Path]) -> int:
  """Number of lines the reader sees in `paths` (a last line without '\\n' counts)."""
  total = 0
  for path in paths:
    last = b'\n'
    with open(path, 'rb') as f:
      for chunk in iter(lambda: f.read(1 << 24), b''):
        chunk = chunk.replace(b'\r', b'')
        total += chunk.count(b'\n')
        last = chunk[-1:] or last
    total += last != b'\n'
  return total


def _file_blocks(path: pathlib.Path) -> Iterator[Tuple[int, bytes]]:
  """(first line number, whole '\\n'-terminated lines without '\\r') blocks of one file."""
  line_no, rest = 1, b''
  with open(path, 'rb') as f:
    for data in iter(lambda: f.read(_BLOCK_BYTES), b''):
      data = rest + data.replace(b'\r', b'')
      cut = data.rfind(b'\n') + 1
      block, rest = data[:cut], data[cut:]
      if block:
        yield line_no, block
        line_no += block.count(b'\n')
  if rest:
    yield line_no, rest + b'\n'


# --- parsing ------------------------------------------------------------------
_U64 = np.uint64
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], _U64)
_ZERO_DIGITS = np.array([int.from_bytes(b'0' * k, 'little') for k in range(9)], _U64)
_NA_WORD = int.from_bytes(NA_VALUE.encode(), 'little')
_MISSING_WORD = int.from_bytes(MISSING_CATEGORY.encode(), 'little')
_SUFFIX_WORDS = np.array([int.from_bytes(str(i).encode(), 'little') for i in range(NUM_SPARSE)],
                         _U64)
_SUFFIX_LENS = np.array([len(str(i)) for i in range(NUM_SPARSE)])
_VOCAB = np.array(RAW_VOCAB_SIZES, _U64)
_K0, _K2 = _U64(0xc3a5c85c97cb3127), _U64(0x9ae16a3b2f90404f)
_ASCII_ZEROS, _HIGH_NIBBLES, _SIXES = (_U64(int.from_bytes(bytes([b]) * 8, 'little'))
                                         for b in (0x30, 0xF0, 0x06))


def _words(block: bytes) -> np.ndarray:
  """words[p] = the 8 bytes of `block` from offset p as a little-endian uint64."""
  padded = block + bytes(16)
  return np.ndarray((len(padded) - 7,), '<u8', buffer=padded, strides=(1,))


def _cell_words(words, starts, lens):
  """(lo, hi): bytes 0-7 and 8-15 of each cell, zeroed beyond its length."""
  lo = words[starts] & _BYTE_MASKS[np.minimum(lens, 8)]
  hi = words[starts + 8] & _BYTE_MASKS[np.clip(lens - 8, 0, 8)]
  return lo, hi


def _parse_digits(x, num_digits):
  """Unsigned ints from 1..8 ASCII digits packed in x (first digit lowest byte) -> (value, ok)."""
  pad = (8 - num_digits).astype(_U64)
  x = (x << (pad * _U64(8))) | _ZERO_DIGITS[pad]
  ok = (((x & _HIGH_NIBBLES) == _ASCII_ZEROS)  # every byte is 0x30-0x3F ...
        & (((x + _SIXES) & _HIGH_NIBBLES) == _ASCII_ZEROS))  # ... and at most 0x39
  d = x - _ASCII_ZEROS
  d = (d * _U64(10) + (d >> _U64(8))) & _U64(0x00FF00FF00FF00FF)
  d = (d * _U64(100) + (d >> _U64(16))) & _U64(0x0000FFFF0000FFFF)
  d = (d * _U64(10000) + (d >> _U64(32))) & _U64(0xFFFFFFFF)
  return d, ok


def _parse_numbers(block, words, starts, lens, path, first_line_no):
  """Label and integer fields (n, 14) -> float32; empty and '-1' are 0."""
  lo, _ = _cell_words(words, starts, lens)
  missing = (lens == 0) | ((lens == 2) & (lo == _U64(_NA_WORD)))
  negative = (lo & _U64(0xFF)) == _U64(ord('-'))
  num_digits = lens - negative
  digits, ok = _parse_digits(lo >> (negative.astype(_U64) * _U64(8)),
                             np.clip(num_digits, 1, 8))
  ok &= (num_digits >= 1) & (num_digits <= 8)
  values = np.where(negative, -digits.astype(np.float64), digits.astype(np.float64))
  values[missing] = 0.0
  special = ~(ok | missing)
  for row, col in np.argwhere(special) if special.any() else ():
    text = block[starts[row, col]:starts[row, col] + lens[row, col]].decode('utf-8', 'replace')
    try:
      values[row, col] = float(text)
    except ValueError:
      what = 'the label' if col == 0 else f'integer feature I{col}'
      raise CriteoFormatError(f'{path}:{first_line_no + row}: field {col} ({what}) is '
                              f'{text!r}, expected a number.') from None
  return values.astype(np.float32)


def _rotate(x, shift: int):
  return (x >> _U64(shift)) | (x << _U64(64 - shift))


def _hash_len16(u, v, mul):
  a = (u ^ v) * mul
  a ^= a >> _U64(47)
  b = (v ^ a) * mul
  b ^= b >> _U64(47)
  return b * mul


def _hash_8_to_16(lo, hi, lens):
  mul = _K2 + lens * _U64(2)
  a = lo + _K2
  b = (lo >> (_U64(8) * (lens - _U64(8)))) | (hi << (_U64(8) * (_U64(16) - lens)))
  c = _rotate(b, 37) * mul + a
  d = (_rotate(a, 25) + b) * mul
  return _hash_len16(c, d, mul)


def _hash_4_to_7(lo, hi, lens):
  del hi
  first = lo & _U64(0xFFFFFFFF)
  last = (lo >> (_U64(8) * (lens - _U64(4)))) & _U64(0xFFFFFFFF)
  return _hash_len16(lens + (first << _U64(3)), last, _K2 + lens * _U64(2))


def _hash_1_to_3(lo, hi, lens):
  del hi
  byte = lambda k: (lo >> (_U64(8) * k)) & _U64(0xFF)
  y = byte(_U64(0)) + (byte(lens >> _U64(1)) << _U64(8))
  z = lens + (byte(lens - _U64(1)) << _U64(2))
  v = (y * _K2) ^ (z * _K0)
  return (v ^ (v >> _U64(47))) * _K2


def fingerprint64(lo, hi, lens) -> np.ndarray:
  """FarmHash Fingerprint64 of byte strings of 0..16 bytes, vectorised.

  lo, hi: (n,) uint64, bytes 0-7 and 8-15 of each string (little-endian, zero
  beyond its length); lens: (n,) lengths. Equals `farmhash.fingerprint64`.
  """
  lo, hi = np.asarray(lo, _U64), np.asarray(hi, _U64)
  lens = np.asarray(lens).astype(_U64)
  out = np.full(lens.shape, _K2, _U64)  # the hash of the empty string
  for lowest, highest, fn in ((8, 16, _hash_8_to_16), (4, 7, _hash_4_to_7),
                              (1, 3, _hash_1_to_3)):
    sel = (lens >= lowest) & (lens <= highest)
    if sel.all():
      return fn(lo, hi, lens)
    if sel.any():
      out[sel] = fn(lo[sel], hi[sel], lens[sel])
  return out


def _bucket_ids(block, words, starts, lens):
  """Categorical fields (n, 26) -> hash bucket ids, as AlgoPerf's float32."""
  lo, hi = _cell_words(words, starts, lens)
  lens = lens.copy()
  missing = (lens == 0) | ((lens == 2) & (lo == _U64(_NA_WORD)))
  lo[missing], hi[missing], lens[missing] = _MISSING_WORD, 0, len(MISSING_CATEGORY)
  # Append str(column) at byte `lens` of the 16-byte string (lo, hi); numpy
  # shifts by 64 or more give 0, so exactly one of the two `hi` terms is live.
  shift = _U64(8) * lens.astype(_U64)
  lo |= _SUFFIX_WORDS << shift
  hi |= (_SUFFIX_WORDS >> (_U64(64) - shift)) | (_SUFFIX_WORDS << (shift - _U64(64)))
  lens += _SUFFIX_LENS
  fits = lens <= 16
  hashes = fingerprint64(lo, hi, np.where(fits, lens, 0))
  for row, col in np.argwhere(~fits) if not fits.all() else ():
    value = block[starts[row, col]:starts[row, col] + lens[row, col] - _SUFFIX_LENS[col]]
    hashes[row, col] = farmhash.fingerprint64(value + str(col).encode())
  return (hashes % _VOCAB).astype(np.float32)


def parse_block(block: bytes, path='<memory>', first_line_no: int = 1
                ) -> Tuple[np.ndarray, np.ndarray]:
  """'\\n'-terminated lines -> (inputs (n, 39) float32, targets (n,) float32)."""
  if not block:
    return np.zeros((0, NUM_DENSE + NUM_SPARSE), np.float32), np.zeros(0, np.float32)
  arr = np.frombuffer(block, np.uint8)
  seps = np.flatnonzero((arr == ord('\t')) | (arr == ord('\n')))
  newlines = np.flatnonzero(arr[seps] == ord('\n'))
  num_fields = np.diff(newlines, prepend=-1)
  bad = np.flatnonzero(num_fields != NUM_FIELDS)
  if bad.size:
    i = bad[0]
    line = block.split(b'\n', i + 1)[i].decode('utf-8', 'replace')
    raise CriteoFormatError(
        f'{path}:{first_line_no + i}: expected {NUM_FIELDS} tab-separated fields, got '
        f'{num_fields[i]}: {line[:200]!r}')
  starts = np.empty_like(seps)
  starts[0] = 0
  starts[1:] = seps[:-1] + 1
  starts, lens = starts.reshape(-1, NUM_FIELDS), (seps - starts).reshape(-1, NUM_FIELDS)
  words = _words(block)
  numeric, categorical = slice(0, 1 + NUM_DENSE), slice(1 + NUM_DENSE, NUM_FIELDS)
  numbers = _parse_numbers(block, words, np.ascontiguousarray(starts[:, numeric]),
                           np.ascontiguousarray(lens[:, numeric]), path, first_line_no)
  inputs = np.empty((len(starts), NUM_DENSE + NUM_SPARSE), np.float32)
  inputs[:, :NUM_DENSE] = np.log(np.maximum(numbers[:, 1:], 0.0) + np.float32(1.0))
  inputs[:, NUM_DENSE:] = _bucket_ids(block, words, np.ascontiguousarray(starts[:, categorical]),
                                      np.ascontiguousarray(lens[:, categorical]))
  return inputs, numbers[:, 0].copy()


def parse_lines(lines: Sequence, path='<memory>', first_line_no: int = 1
                ) -> Tuple[np.ndarray, np.ndarray]:
  """Lines (str or bytes, with or without '\\n') -> (inputs (n, 39), targets (n,)) float32."""
  encoded = [l.encode() if isinstance(l, str) else l for l in lines]
  return parse_block(b''.join(l.rstrip(b'\n') + b'\n' for l in encoded), path, first_line_no)


def _file_chunks(paths: Sequence[pathlib.Path]) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
  for path in paths:
    for line_no, block in _file_blocks(path):
      yield parse_block(block, path, line_no)


# --- batching -----------------------------------------------------------------
def _rebatch(chunks, batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
  """Regroups row chunks into batches of `batch_size` rows; the last may be short."""
  pending, num_pending = [], 0
  for inputs, targets in chunks:
    start = 0
    if num_pending:
      take = min(batch_size - num_pending, len(targets))
      pending.append((inputs[:take], targets[:take]))
      num_pending += take
      start = take
      if num_pending < batch_size:
        continue
      yield tuple(np.concatenate(parts) for parts in zip(*pending))
      pending, num_pending = [], 0
    while len(targets) - start >= batch_size:
      yield inputs[start:start + batch_size], targets[start:start + batch_size]
      start += batch_size
    if start < len(targets):
      pending, num_pending = [(inputs[start:], targets[start:])], len(targets) - start
  if num_pending:
    yield tuple(np.concatenate(parts) for parts in zip(*pending))


def _padded(inputs, targets, batch_size: int) -> Batch:
  pad = batch_size - len(targets)
  return {'inputs': np.pad(inputs, ((0, pad), (0, 0))),
          'targets': np.pad(targets, (0, pad)),
          'weights': np.concatenate([np.ones(len(targets)), np.zeros(pad)])}


def _dataset(files, split: str, batch_size: int, rng: np.random.RandomState
             ) -> Iterator[Batch]:
  """One iteration of AlgoPerf's dataset before `take`: one pass, endless for train."""
  while True:
    shuffled = split in _SHUFFLED_SPLITS
    order = [files[i] for i in rng.permutation(len(files))] if shuffled else files
    num_lines = 0
    for inputs, targets in _rebatch(_file_chunks(order), batch_size):
      num_lines += len(targets)
      if len(targets) == batch_size:
        yield {'inputs': inputs, 'targets': targets}
      elif split != 'train':
        yield _padded(inputs, targets, batch_size)
    if split == 'train' and num_lines < batch_size:
      raise ValueError(f'The train files in {files[0].parent} hold {num_lines} lines, fewer '
                       f'than one global batch ({batch_size}).')
    if num_lines == 0:
      raise ValueError(f'The {split} files in {files[0].parent} hold no lines.')
    if split != 'train':
      return


def iterate_batches(data_dir, split: str, global_batch_size: int, *, shuffle_seed: int = 0,
                    num_batches: Optional[int] = None, repeat_final_dataset: bool = False,
                    prefetch: int = 0) -> Iterator[Batch]:
  """Global numpy batches of `split` (see the module docstring for the exact semantics).

  Args:
    data_dir: directory of day files.
    split: 'train', 'eval_train', 'validation' or 'test'.
    global_batch_size: rows per batch; short eval batches are padded to it.
    shuffle_seed: seeds the file order of train and eval_train.
    num_batches: AlgoPerf's `take(num_batches)`; None takes all.
    repeat_final_dataset: repeat the taken batches forever (AlgoPerf's eval mode).
    prefetch: batches parsed ahead in a background thread; 0 parses on demand.
  Yields:
    {'inputs': (B, 39) float32, 'targets': (B,) float32} and, on padded eval
    batches only, 'weights': (B,) float64.
  """
  if global_batch_size < 1:
    raise ValueError(f'global_batch_size must be positive, got {global_batch_size}.')
  files = split_files(data_dir, split)
  rng = np.random.RandomState(shuffle_seed)

  def stream():
    while True:
      yield from itertools.islice(_dataset(files, split, global_batch_size, rng), num_batches)
      if not repeat_final_dataset:
        return

  return Prefetcher(stream(), prefetch) if prefetch else stream()


# --- prefetching --------------------------------------------------------------
class Prefetcher:
  """Iterates `it` in a daemon thread up to `size` items ahead; re-raises its errors.

  `close()` (also on garbage collection) stops the thread and joins it. Closing before
  the interpreter exits matters: a daemon thread still running at finalization is
  killed by a forced stack unwind, which aborts the process ("terminate called without
  an active exception") if it is inside C++ code at that moment.
  """

  def __init__(self, it: Iterator, size: int):
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._done = False
    self._thread = threading.Thread(target=_produce, args=(it, self._queue, self._stop),
                                    daemon=True)
    self._thread.start()

  def __iter__(self):
    return self

  def __next__(self):
    if self._done:
      raise StopIteration
    item = self._queue.get()
    if isinstance(item, BaseException):
      self._done = True
      self.close()
      raise item
    return item

  def close(self, timeout: float = 30.0):
    """Stops the producer and waits for it (it checks every 0.1 s and after each item)."""
    self._stop.set()
    if self._thread is not threading.current_thread():
      self._thread.join(timeout)

  __del__ = close


def _produce(it: Iterator, out: queue.Queue, stop: threading.Event):
  def put(item) -> bool:
    while not stop.is_set():
      try:
        out.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  try:
    for item in it:
      if not put(item):
        return
    put(StopIteration())
  except BaseException as e:  # pylint: disable=broad-except
    put(e)
