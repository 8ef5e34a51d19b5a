"""How much of the same-batch step size is bias: two-batch measurements, summarised per run.

    python -m analysis.alpha_bias DIR [--from_step 40] [--peak_lr 0.00175]

DIR is a sweep's output (`analysis.sweep`) or any directory above trial dirs; every
`measurements.csv` whose rows hold the two-batch scalars (`metric_names.TWO_BATCH`: d from
half 2, g_1.d and d^T G_1 d on half 1, g_2.d and d^T G_2 d on half 2) is summarised from
`--from_step` on (NAdamW's first directions are sign-like):

- `alpha_biased` = -g_2.d / d^T G_2 d, the same-batch greedy step (CDAT at sigma 1 without
  debiasing), and `alpha_debiased` = -g_1.d / d^T G_1 d, its held-out counterpart: medians
  and the ratio of the medians;
- `numerator_ratio` = median of g_1.d / g_2.d: the share of the same-batch g.d that
  survives on a held-out half (1: no bias; small: the numerator is mostly the squared
  gradient noise that u was built from);
- `denominator_ratio` = median of d^T G_1 d / d^T G_2 d (1: the curvature is unbiased);
- `negative_debiased`: the share of measurements whose held-out g_1.d is an ascent;
- `alpha_pooled` = max(-sum g_1.d, 0) / sum d^T G_1 d, the held-out greedy step from the
  pooled sums: what the open-loop calibration's EMA ratio tends to as ema_decay -> 1, and
  less noisy than the median of per-measurement ratios when half of them are ascents;
- with `--peak_lr`, both medians divided by that lr (e.g. the NAdamW baseline's peak).

A sweep's run names (`<config>__bs<B>__seed<k>`) give a `batch_size` column and one
median row per batch size.

Rows missing half 2 (runs without `biased_diagnostics`) give NaN for the biased columns.
"""
import argparse
import glob
import os
import re
import sys
from typing import List, Optional

import numpy as np
import pandas as pd

from analysis import logs
from curvlr.core import metric_names

COLUMNS = ('run', 'batch_size', 'measurements', 'alpha_biased', 'alpha_debiased',
           'alpha_pooled', 'bias_factor', 'numerator_ratio', 'denominator_ratio',
           'negative_debiased')


def summarize_run(rows: pd.DataFrame, from_step: int = 0) -> dict:
  """One run's summary (module docstring) from its measurements.csv rows."""
  rows = rows[rows['global_step'] >= from_step].dropna(subset=['gd_1', 'dGd_1'])
  if rows.empty:
    raise ValueError(f'no two-batch measurement at step >= {from_step}.')
  biased = -rows['gd_2'] / rows['dGd_2']
  debiased = -rows['gd_1'] / rows['dGd_1']
  median_biased, median_debiased = float(np.median(biased)), float(np.median(debiased))
  pooled = max(-float(rows['gd_1'].sum()), 0.0) / float(rows['dGd_1'].sum())
  return {'measurements': len(rows), 'alpha_biased': median_biased,
          'alpha_debiased': median_debiased, 'alpha_pooled': pooled,
          'bias_factor': median_biased / median_debiased if median_debiased > 0 else np.nan,
          'numerator_ratio': float(np.median(rows['gd_1'] / rows['gd_2'])),
          'denominator_ratio': float(np.median(rows['dGd_1'] / rows['dGd_2'])),
          'negative_debiased': float(np.mean(rows['gd_1'] > 0))}


def summarize(root: str, from_step: int = 0) -> pd.DataFrame:
  """One row per run under `root` that logged two-batch scalars, then 'median' rows (one
  per batch size when the run names carry one)."""
  paths = sorted(glob.glob(os.path.join(root, '**', 'measurements.csv'), recursive=True))
  out = []
  for path in paths:
    rows, _ = logs.read_csv(path)
    if not set(metric_names.TWO_BATCH) <= set(rows.columns):
      continue
    parts = os.path.relpath(os.path.dirname(path), root).split(os.sep)
    run = parts[1] if parts[0] == 'runs' and len(parts) > 1 else os.sep.join(parts)  # sweep
    batch = re.search(r'__bs(\d+)__', run)
    out.append({'run': run, 'batch_size': int(batch.group(1)) if batch else np.nan,
                **summarize_run(rows, from_step)})
  if not out:
    raise ValueError(f'{root}: no measurements.csv with the two-batch columns '
                     f'{metric_names.TWO_BATCH}.')
  table = pd.DataFrame(out, columns=COLUMNS)
  groups = ([table] if table['batch_size'].isna().all()
            else [group for _, group in table.groupby('batch_size')])
  medians = [{'run': 'median', **group.drop(columns=['run']).median()} for group in groups]
  return pd.concat([table, pd.DataFrame(medians)], ignore_index=True)


def main(argv: Optional[List[str]] = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('root', help='a sweep output or any directory above trial dirs')
  p.add_argument('--from_step', type=int, default=40,
                 help='ignore measurements before this step (default 40)')
  p.add_argument('--peak_lr', type=float, default=None,
                 help='also report the median alphas as multiples of this lr')
  args = p.parse_args(argv)
  table = summarize(args.root, args.from_step)
  if args.peak_lr:
    for name in ('alpha_biased', 'alpha_debiased', 'alpha_pooled'):
      table[f'{name}/peak_lr'] = table[name] / args.peak_lr
  print(table.to_string(index=False, float_format=lambda v: f'{v:.3g}'))
  last = table.iloc[-1]
  print(f'bias_factor: {last.bias_factor:.3g}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
