"""Criteo reader throughput against in-memory batches (the reader must not be the bottleneck).

Prints `name: value` lines; the headline (reader batches/s at the embedded batch size) last.
"""
import sys
import time

sys.path.insert(0, '.')
from curvlr.workloads.criteo import data, synthetic  # noqa: E402

BATCH, NUM = 1024, 30


def _rate(it, num):
  next(it)  # start-up (thread, file open) excluded
  start = time.perf_counter()
  for _ in range(num):
    next(it)
  return num / (time.perf_counter() - start)


def main():
  data_dir = synthetic.ensure_dataset('.cache/bench', synthetic.SyntheticConfig(
      seed=0, num_train_files=1, lines_per_train_file=20_000, num_validation_lines=1024,
      num_test_lines=1024))
  memory = [next(data.iterate_batches(data_dir, 'train', BATCH)) for _ in range(1)] * (NUM + 1)
  mem_rate = _rate(iter(memory), NUM)
  plain = _rate(data.iterate_batches(data_dir, 'train', BATCH, shuffle_seed=1), NUM)
  print(f'reader_lines_per_s: {plain * BATCH:.0f}')
  print(f'in_memory_batches_per_s: {mem_rate:.0f}')
  print(f'reader_batches_per_s_at_{BATCH}: {plain:.1f}')


if __name__ == '__main__':
  main()
