"""analysis.alpha_bias on hand-made two-batch rows with known medians."""
import numpy as np
import pandas as pd
import pytest

from analysis import alpha_bias


def _write(path, rows):
  path.mkdir(parents=True)
  pd.DataFrame(rows).to_csv(path / 'measurements.csv', index=False)


def test_summary_of_known_rows(tmp_path):
  rows = [dict(global_step=0, gd_1=-100.0, dGd_1=1.0, gd_2=-100.0, dGd_2=1.0, lr=0.1)]
  # from step 40: same-batch numerator -10, held-out -1, -2, +1 (one ascent); dGd 10 vs 8
  rows += [dict(global_step=40 + k, gd_1=g1, dGd_1=8.0, gd_2=-10.0, dGd_2=10.0, lr=0.1)
           for k, g1 in enumerate((-1.0, -2.0, 1.0))]
  rows.append(dict(global_step=44, loss=0.5, lr=0.1))  # a plain step's row: skipped
  _write(tmp_path / 'runs' / 'a__bs1024__seed0' / 'w_jax' / 'trial_1', rows)
  _write(tmp_path / 'runs' / 'plain' / 'w_jax' / 'trial_1', [dict(global_step=0, loss=1.0)])
  table = alpha_bias.summarize(str(tmp_path), from_step=40)
  assert list(table['run']) == ['a__bs1024__seed0', 'median']
  row = table.iloc[0]
  assert row.measurements == 3
  assert row.alpha_biased == pytest.approx(1.0)
  assert row.alpha_debiased == pytest.approx(1.0 / 8.0)  # median of 1/8, 2/8, -1/8
  assert row.bias_factor == pytest.approx(8.0)
  assert row.numerator_ratio == pytest.approx(0.1)  # median of 0.1, 0.2, -0.1
  assert row.denominator_ratio == pytest.approx(0.8)
  assert row.negative_debiased == pytest.approx(1 / 3)
  assert row.alpha_pooled == pytest.approx(2.0 / 24.0)  # -(-1 - 2 + 1) / (3 x 8)
  assert row.batch_size == 1024


def test_one_median_row_per_batch_size(tmp_path):
  for batch, held_out in ((1024, -1.0), (1024, -3.0), (4096, -5.0)):
    rows = [dict(global_step=40, gd_1=held_out, dGd_1=1.0, gd_2=-10.0, dGd_2=1.0)]
    _write(tmp_path / 'runs' / f'c__bs{batch}__seed{-int(held_out)}' / 'w_jax' / 'trial_1', rows)
  table = alpha_bias.summarize(str(tmp_path), from_step=0)
  medians = table[table['run'] == 'median']
  assert list(medians['batch_size']) == [1024, 4096]
  assert list(medians['alpha_pooled']) == [2.0, 5.0]
  ascent = [dict(global_step=40, gd_1=1.0, dGd_1=1.0, gd_2=-1.0, dGd_2=1.0)]
  _write(tmp_path / 'runs' / 'c__bs512__seed0' / 'w_jax' / 'trial_1', ascent)
  table = alpha_bias.summarize(str(tmp_path)).set_index('run')
  assert table.loc['c__bs512__seed0', 'alpha_pooled'] == 0.0  # a pooled ascent is clipped


def test_no_two_batch_rows_is_an_error(tmp_path):
  _write(tmp_path / 'x' / 'trial_1', [dict(global_step=0, loss=1.0, lr=0.1)])
  with pytest.raises(ValueError, match='two-batch'):
    alpha_bias.summarize(str(tmp_path))
  rows = [dict(global_step=0, gd_1=-1.0, dGd_1=1.0, gd_2=np.nan, dGd_2=np.nan)]
  _write(tmp_path / 'y' / 'trial_1', rows)
  with pytest.raises(ValueError, match='step >= 40'):
    alpha_bias.summarize(str(tmp_path), from_step=40)
  table = alpha_bias.summarize(str(tmp_path), from_step=0)  # half 2 unmeasured: NaN
  assert np.isnan(table.iloc[0].alpha_biased) and table.iloc[0].alpha_debiased == 1.0
