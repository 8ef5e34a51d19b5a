"""Plain-text (markdown) tables for stdout and reports; no tabulate dependency."""
import math
import numbers
from typing import Sequence

import numpy as np
import pandas as pd


def format_value(value: object, digits: int = 6) -> str:
  """Numbers to `digits` significant digits, inf as 'inf', NaN/None as '-'."""
  if value is None:
    return '-'
  if isinstance(value, (bool, np.bool_)):
    return 'yes' if value else 'no'
  if isinstance(value, numbers.Real):
    value = float(value)
    if math.isnan(value):
      return '-'
    if math.isinf(value):
      return 'inf' if value > 0 else '-inf'
    if value.is_integer() and abs(value) < 1e15:
      return str(int(value))
    return f'{value:.{digits}g}'
  return str(value)


def markdown(df: pd.DataFrame, index: bool = True, digits: int = 6) -> str:
  """A GitHub-markdown table of `df` (index as first column when `index`)."""
  frame = df.reset_index() if index else df
  header: Sequence[str] = [str(c) for c in frame.columns]
  rows = [[format_value(v, digits) for v in row] for row in frame.itertuples(index=False)]
  widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
  lines = ['| ' + ' | '.join(h.ljust(w) for h, w in zip(header, widths)) + ' |',
           '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
  lines += ['| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths)) + ' |' for r in rows]
  return '\n'.join(lines)
