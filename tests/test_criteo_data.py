"""Criteo TSV reader and synthetic generator: AlgoPerf's format, splits, hashing, errors."""
import numpy as np
import pytest

from conftest import TINY

from curvlr.workloads.criteo import data, synthetic

EMPTY = '\t'.join(['0'] + [''] * 13 + [''] * 26)


def test_hash_matches_tensorflow_example():
  # AlgoPerf (verified with TF): an empty column-0 value hashes to 16,124,033.
  inputs, targets = data.parse_lines([EMPTY])
  assert inputs.shape == (1, 39) and targets.tolist() == [0.0]
  assert inputs[0, 13] == np.float32(16_124_033)
  assert np.all(inputs[0, :13] == 0)


def test_dense_transform_and_minus_one_is_missing():
  line = '\t'.join(['1', '-1', '0', '1', '-5', '7'] + ['3'] * 8
                   + ['-1'] + ['68fd1e64'] * 25)
  inputs, targets = data.parse_lines([line])
  assert targets[0] == 1.0
  np.testing.assert_allclose(inputs[0, :5], np.log([1, 1, 2, 1, 8]), rtol=1e-6)
  # '-1' in a categorical column is the default '00000000'.
  np.testing.assert_array_equal(inputs[0, 13], data.parse_lines([EMPTY])[0][0, 13])


def test_malformed_lines_name_file_and_line(tmp_path):
  good = '\t'.join(['0'] + ['1'] * 13 + ['abcdef01'] * 26)
  path = tmp_path / 'day_0_00'
  path.write_text(good + '\n' + good + '\n' + good.rsplit('\t', 1)[0] + '\n')
  with pytest.raises(data.CriteoFormatError, match=r'day_0_00:3: expected 40'):
    list(data.iterate_batches(tmp_path, 'eval_train', 4))
  path.write_text(good.replace('\t1\t', '\tx\t', 1) + '\n')
  with pytest.raises(data.CriteoFormatError, match=r'day_0_00:1: field 1'):
    list(data.iterate_batches(tmp_path, 'eval_train', 4))


def test_split_rules_and_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    data.split_files(tmp_path / 'nope', 'train')
  with pytest.raises(FileNotFoundError, match='validation'):
    data.split_files(tmp_path, 'validation')
  for name in ('day_0_00', 'day_22_01', 'day_23_19', 'day_23_36', 'day_23_00', 'day_23_18'):
    (tmp_path / name).write_text('')
  names = lambda s: [p.name for p in data.split_files(tmp_path, s)]
  assert names('train') == ['day_0_00', 'day_22_01']
  assert names('validation') == ['day_23_19']
  assert names('test') == ['day_23_00', 'day_23_18']


def test_train_batches_full_and_deterministic(tiny_criteo_dir):
  a = data.iterate_batches(tiny_criteo_dir, 'train', 1000, shuffle_seed=3)
  b = data.iterate_batches(tiny_criteo_dir, 'train', 1000, shuffle_seed=3, prefetch=2)
  for _ in range(8):  # 6,000 lines: wraps around (repeat) with drop_remainder
    x, y = next(a), next(b)
    assert set(x) == {'inputs', 'targets'} and x['inputs'].shape == (1000, 39)
    np.testing.assert_array_equal(x['inputs'], y['inputs'])


def test_too_few_train_lines(tiny_criteo_dir):
  with pytest.raises(ValueError, match='fewer lines than one global batch'):
    next(data.iterate_batches(tiny_criteo_dir, 'train', 10_000))


def test_eval_padding_weights_and_cycling(tiny_criteo_dir):
  batches = list(data.iterate_batches(tiny_criteo_dir, 'validation', 1536))
  assert [('weights' in b) for b in batches] == [False, True]
  assert batches[1]['weights'].sum() == 2000 - 1536
  assert np.all(batches[1]['inputs'][2000 - 1536:] == 0)
  it = data.iterate_batches(tiny_criteo_dir, 'validation', 1536, num_batches=3,
                            repeat_final_dataset=True)
  first = [next(it) for _ in range(3)]
  again = [next(it) for _ in range(3)]
  np.testing.assert_array_equal(first[2]['inputs'], batches[0]['inputs'])  # cycled
  np.testing.assert_array_equal(again[1]['weights'], first[1]['weights'])


def test_generator_deterministic_and_realistic(tmp_path, tiny_criteo_dir):
  synthetic.generate(tmp_path, TINY)
  for name in ('day_0_00', 'day_23_19', 'day_23_00'):
    assert (tmp_path / name).read_bytes() == (tiny_criteo_dir / name).read_bytes()
  labels = next(data.iterate_batches(tiny_criteo_dir, 'validation', 2000))['targets']
  assert 0.02 < labels.mean() < 0.07
  assert data.count_lines(data.split_files(tiny_criteo_dir, 'train')) == 6000


def test_ensure_dataset_is_cached(tmp_path):
  cfg = synthetic.SyntheticConfig(seed=5, num_train_files=1, lines_per_train_file=200,
                                  num_validation_lines=50, num_test_lines=50)
  first = synthetic.ensure_dataset(tmp_path, cfg)
  mtime = (first / 'day_0_00').stat().st_mtime
  assert synthetic.ensure_dataset(tmp_path, cfg) == first
  assert (first / 'day_0_00').stat().st_mtime == mtime
  assert not list(tmp_path.glob('.partial-*'))
