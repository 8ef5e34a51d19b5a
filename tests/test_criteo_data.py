"""Criteo TSV reader and synthetic generator: AlgoPerf's format, splits, hashing, batching."""
import json

import farmhash
import numpy as np
import pytest

from conftest import TINY

from curvlr.workloads.criteo import data, synthetic

EMPTY = '\t'.join(['0'] + [''] * 39)
TOKENS = ['68fd1e64', '80e26c9b', 'fb936136', '7b4723c4', '25c83c98', '7e0ccccf', 'de7995b8',
          '1f89b562', 'a73ee510', 'a8cd5504', 'b2cb9c98', '37c9c164', '2824a5f6', '1adce6ef',
          '8ba8b39a', '891b62e7', 'e5ba7672', 'f54016b9', '21ddcdc9', 'b1252a9d', '07b5194c',
          '', '3a171ecb', 'c5c50484', 'e8b83407', '9727dd16']
REAL_LINE = '\t'.join(['1', '1', '1', '5', '0', '1382', '4', '15', '2', '181', '1', '2', '',
                       '2'] + TOKENS)


def _line(label='0', dense=('',) * 13, cats=('',) * 26):
  return '\t'.join([label, *dense, *cats])


def _write(path, lines, end='\n'):
  path.write_text(''.join(line + end for line in lines))
  return path


def _ids(values):
  """Reference: tf.strings.to_hash_bucket_fast(value + str(i), RAW_VOCAB_SIZES[i])."""
  return [farmhash.fingerprint64((v or data.MISSING_CATEGORY) + str(i)) % data.RAW_VOCAB_SIZES[i]
          for i, v in enumerate(values)]


# --- parsing ------------------------------------------------------------------
def test_hash_matches_tensorflow_example():
  # AlgoPerf, verified with TF: an empty column-0 value hashes to 16,124,033.
  inputs, targets = data.parse_lines([EMPTY])
  assert inputs.shape == (1, 39) and inputs.dtype == np.float32 and targets.tolist() == [0.0]
  assert inputs[0, 13] == 16_124_033
  assert np.all(inputs[0, :13] == 0)


def test_real_looking_line_by_hand():
  inputs, targets = data.parse_lines([REAL_LINE])
  assert targets.tolist() == [1.0]
  dense = [1, 1, 5, 0, 1382, 4, 15, 2, 181, 1, 2, 0, 2]
  np.testing.assert_array_equal(inputs[0, :13], np.log(np.float32(dense) + np.float32(1)))
  # Hand-computed: FarmHash of '68fd1e64' + '0' modulo 39,884,406, then float32.
  assert _ids(['68fd1e64'])[0] == farmhash.fingerprint64('68fd1e640') % 39_884_406
  np.testing.assert_array_equal(inputs[0, 13:], np.float32(_ids(TOKENS)))
  # float32 rounding of ids above 2**24, as AlgoPerf.
  assert inputs[0, 13] == np.float32(_ids(TOKENS)[0])


def test_minus_one_is_missing_in_every_column():
  line = _line('-1', ('-1', '0', '1', '-5', '7', '12345678', '123456789012', '1.5', '', '3',
                      '3', '3', '3'), ['-1'] + TOKENS[1:])
  inputs, targets = data.parse_lines([line])
  assert targets.tolist() == [0.0]
  raw = np.float32([0, 0, 1, 0, 7, 12345678, 123456789012, 1.5, 0, 3, 3, 3, 3])
  np.testing.assert_array_equal(inputs[0, :13], np.log(raw + np.float32(1)))
  assert inputs[0, 13] == 16_124_033  # '-1' hashes like the empty default '00000000'


def test_vectorised_fingerprint_matches_pyfarmhash():
  rng = np.random.RandomState(0)
  strings = [bytes(rng.randint(1, 256, size=n).astype(np.uint8)) for n in range(17)
             for _ in range(40)]
  lo = [int.from_bytes(s[:8], 'little') for s in strings]
  hi = [int.from_bytes(s[8:], 'little') for s in strings]
  got = data.fingerprint64(np.array(lo, np.uint64), np.array(hi, np.uint64),
                           [len(s) for s in strings])
  assert got.tolist() == [farmhash.fingerprint64(s) for s in strings]


def test_parser_matches_reference_on_odd_values():
  rng = np.random.RandomState(1)
  pick = lambda options: options[rng.randint(len(options))]
  lines = []
  for _ in range(200):
    dense = [pick(['', '-1', '-3', '0', '7', '99999999', '100000000', '2.5', '1e3'])
             for _ in range(13)]
    cats = [pick(['', '-1', 'a', 'ab', 'abcd', 'abcdefg', '0123456789abcdef', 'x' * 30,
                  'é€']) for _ in range(26)]
    lines.append(_line(pick(['0', '1', '', '-1']), dense, cats))
  inputs, targets = data.parse_lines(lines)
  for line, x, y in zip(lines, inputs, targets):
    fields = line.split('\t')
    number = lambda t: 0.0 if t in ('', '-1') else float(t)
    assert y == number(fields[0])
    dense = np.float32([max(number(t), 0.0) for t in fields[1:14]])
    np.testing.assert_array_equal(x[:13], np.log(dense + np.float32(1)))
    cats = ['' if t == '-1' else t for t in fields[14:]]
    np.testing.assert_array_equal(x[13:], np.float32(_ids(cats)))


def test_line_endings_like_text_line_dataset(tmp_path):
  lines = [_line(str(i % 2), [str(i)] * 13) for i in range(5)]
  (tmp_path / 'a').mkdir()
  (tmp_path / 'b').mkdir()
  lf = _write(tmp_path / 'a' / 'day_23_00', lines)
  crlf = tmp_path / 'b' / 'day_23_00'
  crlf.write_bytes(('\r\n'.join(lines)).encode())  # CRLF and no final newline
  assert data.count_lines([lf]) == data.count_lines([crlf]) == 5
  a = next(data.iterate_batches(tmp_path / 'a', 'test', 8))
  b = next(data.iterate_batches(tmp_path / 'b', 'test', 8))
  np.testing.assert_array_equal(a['inputs'], b['inputs'])
  assert a['weights'].tolist() == [1.0] * 5 + [0.0] * 3


@pytest.mark.parametrize('bad_line, message', [
    ('\t'.join(['0'] + ['1'] * 13 + ['abcdef01'] * 25), r'day_0_00:3: expected 40 tab.* got 39'),
    ('\t'.join(['0'] + ['1'] * 13 + ['abcdef01'] * 27), r'day_0_00:3: expected 40 .* got 41'),
    ('', r'day_0_00:3: expected 40 .* got 1'),
    (_line('0', ['1', 'x7'] + ['1'] * 11), r"day_0_00:3: field 2 \(integer feature I2\) is 'x7'"),
    (_line('yes'), r"day_0_00:3: field 0 \(the label\) is 'yes'"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad_line, message):
  good = _line('0', ['1'] * 13, ['abcdef01'] * 26)
  _write(tmp_path / 'day_0_00', [good, good, bad_line, good])
  for prefetch in (0, 2):
    with pytest.raises(data.CriteoFormatError, match=message):
      list(data.iterate_batches(tmp_path, 'eval_train', 2, prefetch=prefetch))


def test_line_numbers_across_blocks(tmp_path):
  good = _line('0', ['1'] * 13, ['abcdef01'] * 26)
  num_good = 3 * data._BLOCK_BYTES // len(good)  # the bad line sits in the fourth block
  _write(tmp_path / 'day_23_19', [good] * num_good + ['bad'])
  with pytest.raises(data.CriteoFormatError, match=f'day_23_19:{num_good + 1}: expected 40'):
    list(data.iterate_batches(tmp_path, 'validation', 100))


# --- files and splits ---------------------------------------------------------
def test_split_rules(tmp_path):
  names = ['day_0_00', 'day_1_00', 'day_10_00', 'day_22_01', 'day_23_00', 'day_23_18',
           'day_23_19', 'day_23_35', 'day_23_36', 'day_23_5', 'day_24_00', 'day_0', 'notes']
  for name in names:
    (tmp_path / name).write_text('')
  files = lambda split: [p.name for p in data.split_files(tmp_path, split)]
  assert files('train') == files('eval_train') == ['day_0_00', 'day_10_00', 'day_1_00',
                                                   'day_22_01']
  assert files('validation') == ['day_23_19', 'day_23_35']
  assert files('test') == ['day_23_00', 'day_23_18']


def test_split_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match=f'{tmp_path / "nope"} does not exist'):
    data.split_files(tmp_path / 'nope', 'train')
  with pytest.raises(FileNotFoundError, match=r'No validation files in .*day_23_19 .. day_23_35'):
    data.split_files(tmp_path, 'validation')
  with pytest.raises(FileNotFoundError, match=r'No train files in .*day_\{0..22\}_\*'):
    data.iterate_batches(tmp_path, 'train', 4)
  with pytest.raises(ValueError, match='Unknown split'):
    data.split_files(tmp_path, 'dev')
  (tmp_path / 'day_23_00').write_text('')
  with pytest.raises(ValueError, match='test files .* hold no lines'):
    next(data.iterate_batches(tmp_path, 'test', 4, num_batches=2, repeat_final_dataset=True))


# --- batching -----------------------------------------------------------------
def _id_files(tmp_path, sizes):
  """Train files whose lines carry a global id in I1 (inputs[:, 0] = log(id + 1))."""
  start = 0
  for i, size in enumerate(sizes):
    _write(tmp_path / f'day_{i}_00', [_line('1', [str(start + k)] + ['0'] * 12)
                                      for k in range(size)])
    start += size


def _row_ids(batch):
  return np.rint(np.expm1(batch['inputs'][:, 0].astype(np.float64))).astype(int).tolist()


def test_train_batches_span_files_drop_remainder_and_reshuffle(tmp_path):
  _id_files(tmp_path, [5, 5, 5])  # ids 0-4, 5-9, 10-14
  it = data.iterate_batches(tmp_path, 'train', 4, shuffle_seed=3)
  passes = [[_row_ids(next(it)) for _ in range(3)] for _ in range(4)]  # 15 lines: 3 per pass
  for batches in passes:
    rows = sum(batches, [])
    starts = rows[0::5]
    assert sorted(starts) == [0, 5, 10]  # whole files in sequence, 3 dropped per pass
    assert rows == [r for s in starts for r in range(s, s + 5)][:12]
  assert len({tuple(p[0]) for p in passes}) > 1  # file order reshuffled between passes
  batch = next(data.iterate_batches(tmp_path, 'train', 4))
  assert set(batch) == {'inputs', 'targets'}
  assert batch['inputs'].shape == (4, 39) and batch['targets'].dtype == np.float32


def test_train_order_is_deterministic(tiny_criteo_dir):
  a = data.iterate_batches(tiny_criteo_dir, 'train', 1000, shuffle_seed=3)
  b = data.iterate_batches(tiny_criteo_dir, 'train', 1000, shuffle_seed=3, prefetch=2)
  for _ in range(8):  # 6,000 lines: wraps around
    x, y = next(a), next(b)
    np.testing.assert_array_equal(x['inputs'], y['inputs'])
    np.testing.assert_array_equal(x['targets'], y['targets'])


def test_too_few_train_lines(tmp_path):
  _id_files(tmp_path, [3, 4])
  with pytest.raises(ValueError, match='hold 7 lines, fewer than one global batch \\(8\\)'):
    next(data.iterate_batches(tmp_path, 'train', 8))


def test_eval_padding_and_weights(tiny_criteo_dir):
  batches = list(data.iterate_batches(tiny_criteo_dir, 'validation', 1536))
  assert [sorted(b) for b in batches] == [['inputs', 'targets'],
                                          ['inputs', 'targets', 'weights']]
  last = batches[1]
  assert last['inputs'].shape == (1536, 39) and last['weights'].dtype == np.float64
  assert last['weights'].tolist() == [1.0] * 464 + [0.0] * 1072
  assert np.all(last['inputs'][464:] == 0) and np.all(last['targets'][464:] == 0)


def test_num_batches_take_then_repeat(tiny_criteo_dir):
  ids = lambda b: (b['inputs'][0, 13], 'weights' in b)
  one_pass = [ids(b) for b in data.iterate_batches(tiny_criteo_dir, 'validation', 1536)]
  stream = lambda n, r: data.iterate_batches(tiny_criteo_dir, 'validation', 1536, num_batches=n,
                                             repeat_final_dataset=r)
  # take(3) of a 2-batch pass is the pass; repeat() cycles it, padded batch included.
  cycled = stream(3, True)
  assert [ids(next(cycled)) for _ in range(6)] == one_pass * 3
  assert [ids(b) for b in stream(3, False)] == one_pass
  first = stream(1, True)
  assert [ids(next(first)) for _ in range(3)] == one_pass[:1] * 3


def test_eval_train_is_shuffled_by_seed(tiny_criteo_dir):
  first = lambda seed: next(data.iterate_batches(tiny_criteo_dir, 'eval_train', 10,
                                                 shuffle_seed=seed))['inputs']
  heads = {f[0, 13] for f in (first(s) for s in range(6))}
  assert len(heads) == 2  # both train files come first for some seed
  np.testing.assert_array_equal(first(4), first(4))


def test_prefetcher_stops_and_propagates(tiny_criteo_dir):
  it = data.iterate_batches(tiny_criteo_dir, 'validation', 500, prefetch=3)
  assert len(list(it)) == 4
  with pytest.raises(StopIteration):
    next(it)
  train = data.iterate_batches(tiny_criteo_dir, 'train', 100, prefetch=2)
  next(train)
  train.close()  # the thread exits instead of blocking on a full queue, and is joined
  assert not train._thread.is_alive()  # pylint: disable=protected-access


def test_closing_a_workload_input_queue_joins_its_prefetch_thread(tiny_criteo_dir):
  """The runner closes its input queue after training: no daemon thread is left running at
  interpreter exit (where a forced unwind inside C++ code aborts the process)."""
  import threading
  from curvlr.workloads.criteo import config, pytorch_workload
  workload = pytorch_workload.CriteoPytorchWorkload(config.CRITEO_EMBEDDED, str(tiny_criteo_dir))
  before = set(threading.enumerate())
  queue = workload._build_input_queue(np.array([0, 1], np.uint32), 'train', None, 100)  # pylint: disable=protected-access
  next(queue)
  started = set(threading.enumerate()) - before
  assert len(started) == 1
  queue.close()
  assert not any(t.is_alive() for t in started)


# --- generator ----------------------------------------------------------------
def test_generator_is_deterministic(tmp_path, tiny_criteo_dir):
  synthetic.generate(tmp_path, TINY)
  names = sorted(p.name for p in tiny_criteo_dir.iterdir())
  assert names == sorted(p.name for p in tmp_path.iterdir())
  for name in names:
    assert (tmp_path / name).read_bytes() == (tiny_criteo_dir / name).read_bytes()
  other = synthetic.SyntheticConfig(seed=2, num_train_files=1, lines_per_train_file=100,
                                    num_validation_lines=10, num_test_lines=10)
  synthetic.generate(tmp_path / 'other', other)
  assert (tmp_path / 'other' / 'day_0_00').read_bytes() != (tmp_path / 'day_0_00').read_bytes()


def test_generated_files_look_like_criteo(tiny_criteo_dir):
  info = synthetic.read_info(tiny_criteo_dir)
  assert info['files'] == {'day_0_00': 3000, 'day_0_01': 3000, 'day_23_19': 2000,
                           'day_23_00': 2000}
  lines = (tiny_criteo_dir / 'day_0_00').read_text().splitlines()
  fields = np.array([line.split('\t') for line in lines])
  assert fields.shape == (3000, 40)
  assert set(fields[:, 0]) == {'0', '1'}
  dense = fields[:, 1:14]
  assert 0.01 < np.mean(dense == '') < 0.5 and 0 < np.mean(dense == '-1') < 0.02
  counts = np.array([int(v) for v in dense.ravel() if v not in ('', '-1')])
  assert counts.min() == 0 and counts.max() > 1000 and np.median(counts) < 50  # heavy tail
  cats = fields[:, 14:]
  present = cats[cats != '']
  assert all(len(v) == 8 and set(v) <= set('0123456789abcdef') for v in present[:5000])
  assert 0.02 < np.mean(cats == '') < 0.3
  top_share = [np.mean(col == max(set(col), key=list(col).count)) for col in cats.T[:5]]
  assert min(top_share) > 0.02  # Zipf heads
  assert len(set(cats[:, 0])) > 500  # and long tails
  for split, num_lines in (('train', 6000), ('validation', 2000), ('test', 2000)):
    files = data.split_files(tiny_criteo_dir, split)
    assert data.count_lines(files) == num_lines == info['splits'][split]['num_lines']


def test_generated_labels_rate_and_bayes_loss(tiny_criteo_dir):
  info = synthetic.read_info(tiny_criteo_dir)['splits']
  train = np.concatenate([b['targets'] for b in data.iterate_batches(
      tiny_criteo_dir, 'eval_train', 6000, num_batches=1)])
  assert 0.03 < train.mean() < 0.05 and train.mean() == pytest.approx(
      info['train']['positive_rate'])
  for split in ('validation', 'test'):
    assert 0.025 < info[split]['positive_rate'] < 0.06
    assert 0.5 < info[split]['bayes_logloss'] / info[split]['constant_logloss'] < 0.85


def test_ensure_dataset_is_cached_and_atomic(tmp_path):
  cfg = synthetic.SyntheticConfig(seed=5, num_train_files=1, lines_per_train_file=200,
                                  num_validation_lines=50, num_test_lines=50)
  (tmp_path / f'.partial-criteo_synthetic_{cfg.digest()}-x').mkdir()  # a killed run's leftover
  first = synthetic.ensure_dataset(tmp_path, cfg)
  assert first.name == f'criteo_synthetic_{cfg.digest()}'
  assert json.loads((first / 'synthetic_config.json').read_text())['config']['seed'] == 5
  mtime = (first / 'day_0_00').stat().st_mtime_ns
  assert synthetic.ensure_dataset(tmp_path, cfg) == first
  assert (first / 'day_0_00').stat().st_mtime_ns == mtime
  assert len(list(tmp_path.glob('.partial-*'))) == 1  # only the leftover
  other = synthetic.SyntheticConfig(seed=6)
  (tmp_path / f'criteo_synthetic_{other.digest()}').mkdir()
  with pytest.raises(FileExistsError, match='has no synthetic_config.json'):
    synthetic.ensure_dataset(tmp_path, other)


def test_config_validation():
  with pytest.raises(ValueError, match='num_validation_files=18 is outside'):
    synthetic.SyntheticConfig(num_validation_files=18)
  with pytest.raises(ValueError, match='positive_rate'):
    synthetic.SyntheticConfig(positive_rate=0.0)
  assert synthetic.SyntheticConfig().digest() != synthetic.SyntheticConfig(seed=1).digest()
