"""Criteo reader throughput against batches already in memory (is the reader a bottleneck?).

Reads a 100k-line synthetic data set (generated once into .cache/bench). Prints
`name: value` lines; the headline (reader batches/s at batch 4096) comes last.
Wall-clock numbers depend on the machine's load; `reader_cpu_us_per_line` less so.
"""
import sys
import time

sys.path.insert(0, '.')
from curvlr.workloads.criteo import data, synthetic  # noqa: E402

CONFIG = synthetic.SyntheticConfig(seed=0, num_train_files=2, lines_per_train_file=50_000,
                                   num_validation_lines=1_000, num_test_lines=1_000)
SECONDS = 4.0  # per measurement


def _seconds_per_item(it, seconds=SECONDS) -> float:
  """Mean seconds per next(it) over about `seconds`, after one untimed item."""
  next(it)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    next(it)
    count += 1
  return (time.perf_counter() - start) / count


def _with_work(batches, seconds):
  """A training loop stand-in: each batch is followed by `seconds` of GIL-free work."""
  for batch in batches:
    time.sleep(seconds)
    yield batch


def main():
  start = time.perf_counter()
  data_dir = synthetic.ensure_dataset('.cache/bench', CONFIG)
  print(f'data_dir: {data_dir}')
  print(f'data_ready_s: {time.perf_counter() - start:.1f}')
  files = data.split_files(data_dir, 'train')
  num_lines = data.count_lines(files)
  print(f'data_lines: {num_lines}')

  wall, cpu = time.perf_counter(), time.process_time()
  for _ in data.iterate_batches(data_dir, 'eval_train', 8192):
    pass
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  print(f'reader_lines_per_s: {num_lines / wall:.0f}')
  print(f'reader_cpu_us_per_line: {1e6 * cpu / num_lines:.2f}')

  per_batch = {}
  for batch_size in (4096, 8192):
    per_batch[batch_size] = _seconds_per_item(
        data.iterate_batches(data_dir, 'train', batch_size, shuffle_seed=1))
    print(f'reader_ms_per_batch_{batch_size}: {1e3 * per_batch[batch_size]:.1f}')
  prefetched = _seconds_per_item(
      data.iterate_batches(data_dir, 'train', 4096, shuffle_seed=1, prefetch=4))
  print(f'reader_prefetch4_ms_per_batch_4096: {1e3 * prefetched:.1f}')

  for prefetch in (0, 4):
    steps = _with_work(data.iterate_batches(data_dir, 'train', 4096, shuffle_seed=1,
                                            prefetch=prefetch), 0.02)
    print(f'step_ms_with_20ms_work_prefetch{prefetch}_4096: '
          f'{1e3 * _seconds_per_item(steps, 2.0):.1f}')

  train = data.iterate_batches(data_dir, 'train', 4096)
  memory = [next(train) for _ in range(8)]
  cycle = (memory[i % len(memory)] for i in range(10**9))
  print(f'in_memory_ms_per_batch_4096: {1e3 * _seconds_per_item(cycle, 0.5):.4f}')
  print(f'reader_batches_per_s_at_4096: {1 / per_batch[4096]:.1f}')


if __name__ == '__main__':
  main()
