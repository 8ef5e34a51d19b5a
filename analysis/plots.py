"""PNG figures for analysis.report (matplotlib Figure + Agg canvas, no pyplot state)."""
import math
import warnings
from typing import Mapping, Sequence, Tuple

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

Curve = Tuple[np.ndarray, np.ndarray]  # (x, y), same length


def _colors(names: Sequence[str]) -> dict:
  cycle = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2',
           '#7f7f7f', '#bcbd22', '#17becf']
  return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _save(fig: Figure, path: str) -> str:
  FigureCanvasAgg(fig)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def median_band(curves: Sequence[Curve], num_points: int = 200
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(grid, median, min, max) over curves, each linearly interpolated on a shared x grid.

  A curve contributes only inside its own x range; NaN y values are dropped.
  """
  clean = []
  for x, y in curves:
    keep = np.isfinite(x) & np.isfinite(y)
    order = np.argsort(x[keep], kind='stable')
    if keep.sum():
      clean.append((x[keep][order], y[keep][order]))
  if not clean:
    empty = np.zeros(0)
    return empty, empty, empty, empty
  grid = np.linspace(min(x[0] for x, _ in clean), max(x[-1] for x, _ in clean), num_points)
  stack = np.stack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in clean])
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN columns stay NaN
    return grid, np.nanmedian(stack, 0), np.nanmin(stack, 0), np.nanmax(stack, 0)


def use_log_scale(values: np.ndarray) -> bool:
  """Log y when all finite values are positive and span more than a factor 20."""
  finite = values[np.isfinite(values)]
  return finite.size > 1 and finite.min() > 0 and finite.max() / finite.min() > 20


def focus_limits(values: np.ndarray, target: float, minimize: bool) -> Tuple[float, float]:
  """y limits that keep the target and the approach to it readable.

  Minimised metrics: from the lowest value up to the 75th percentile (the early,
  large values are cut off); maximised metrics: mirrored.
  """
  finite = values[np.isfinite(values)]
  if not finite.size:
    return target - 1.0, target + 1.0
  if minimize:
    low, high = min(finite.min(), target), max(np.percentile(finite, 75), target)
  else:
    low, high = min(np.percentile(finite, 25), target), max(finite.max(), target)
  pad = 0.1 * (high - low) or 0.01 * abs(target) or 1.0
  return low - pad, high + pad


def plot_validation_curves(curves: Mapping[str, Sequence[Curve]], workload: str, metric: str,
                           target: float, minimize: bool, budgets: Sequence[float],
                           path: str) -> str:
  """Metric vs accumulated submission time: median and min-max band over studies."""
  fig = Figure(figsize=(9, 5.5))
  ax = fig.subplots()
  colors = _colors(list(curves))
  medians = [np.zeros(0)]
  for name, study_curves in curves.items():
    grid, median, low, high = median_band(study_curves)
    if grid.size:
      ax.plot(grid, median, color=colors[name], label=f'{name} (median of {len(study_curves)})')
      ax.fill_between(grid, low, high, color=colors[name], alpha=0.2, linewidth=0)
      medians.append(median)
  ax.set_ylim(*focus_limits(np.concatenate(medians), target, minimize))
  ax.axhline(target, color='black', linestyle='--', linewidth=1, label=f'target {target:g}')
  for i, budget in enumerate(sorted(set(b for b in budgets if b is not None and
                                        math.isfinite(b)))):
    ax.axvline(budget, color='grey', linestyle=':', linewidth=1.2,
               label='budget' if i == 0 else None)
  ax.set_xlabel('accumulated submission time (s)')
  ax.set_ylabel(metric)
  ax.set_title(f'{workload}: {metric} vs submission time (band: min-max over studies; y zoomed '
               'to the target)', fontsize='medium')
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small')
  return _save(fig, path)


def plot_measurements(series: Mapping[str, Sequence[pd.DataFrame]], columns: Sequence[str],
                      workload: str, title: str, path: str) -> str:
  """One panel per column, y vs global_step; one thin line per study, colour per submission."""
  ncols = 2 if len(columns) > 1 else 1
  nrows = math.ceil(len(columns) / ncols)
  fig = Figure(figsize=(6.5 * ncols, 3.6 * nrows))
  axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
  colors = _colors(list(series))
  for ax, column in zip(axes, columns):
    values = []
    for name, frames in series.items():
      for i, frame in enumerate(frames):
        if column not in frame or 'global_step' not in frame:
          continue
        rows = frame[['global_step', column]].dropna()
        ax.plot(rows['global_step'], rows[column], color=colors[name], linewidth=1,
                alpha=0.8, label=name if i == 0 else None)
        values.append(rows[column].to_numpy())
    if values and use_log_scale(np.concatenate(values)):
      ax.set_yscale('log')
    ax.set_xlabel('global step')
    ax.set_ylabel(column)
    ax.set_title(column)
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
  for ax in axes[len(columns):]:
    ax.set_visible(False)
  fig.suptitle(f'{workload}: {title} (measurements.csv, one line per study)')
  return _save(fig, path)


def plot_profile(profile: pd.DataFrame, scores: pd.Series, denominator_note: str,
                 reference: str, path: str) -> str:
  """rho_s(tau) per submission; `reference` names the ratio's denominator."""
  fig = Figure(figsize=(11, 5.5))
  ax = fig.subplots()
  taus = np.asarray(profile.columns, dtype=float)
  colors = _colors(list(profile.index))
  for name in scores.sort_values(ascending=False, kind='stable').index:
    ax.step(taus, profile.loc[name].to_numpy(), where='post', color=colors[name],
            label=f'{name} (score {scores[name]:.4f})')
  ax.set_xlim(taus.min(), taus.max())
  ax.set_ylim(-0.02, 1.02)
  ax.set_xlabel(f'tau: time-to-target / time-to-target of {reference} (ratio, unitless)')
  ax.set_ylabel('rho(tau): fraction of workloads')
  ax.set_title(f'Performance profile; denominator: {denominator_note}', fontsize='medium',
               wrap=True)
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
  return _save(fig, path)


def plot_speedups(ratios: pd.DataFrame, labels: pd.DataFrame, base: str, path: str) -> str:
  """Bars from 1 to the time-to-target ratio (submission / base) per workload; log y.

  `ratios`, `labels`: workloads x submissions; a non-empty label (e.g. a missed
  target, counted as budget + 1 s) hatches the bar; non-finite ratios show it as text.
  """
  fig = Figure(figsize=(max(6.0, 1.6 * len(ratios.index) + 3), 5))
  ax = fig.subplots()
  colors = _colors(list(ratios.columns))
  width = 0.8 / max(1, len(ratios.columns))
  x = np.arange(len(ratios.index))
  for j, name in enumerate(ratios.columns):
    values = ratios[name].to_numpy(dtype=float)
    finite = np.isfinite(values) & (values > 0)
    bars = ax.bar(x[finite] + j * width, values[finite] - 1, width, bottom=1,
                  color=colors[name], label=name)
    for bar, i in zip(bars, np.flatnonzero(finite)):
      if labels.iloc[i, j]:
        bar.set_hatch('//')
    ax.bar_label(bars, labels=[f'{v:.3g}' for v in values[finite]], fontsize='small')
    for i in np.flatnonzero(~finite):
      ax.text(x[i] + j * width, 1.0, labels.iloc[i, j] or 'n/a', rotation=90, ha='center',
              va='bottom', fontsize='x-small')
  ax.axhline(1.0, color='black', linewidth=1)
  ax.set_yscale('log')
  shown = ratios.to_numpy(dtype=float)
  shown = shown[np.isfinite(shown) & (shown > 0)]
  ax.set_ylim(min(shown.min(initial=1.0), 1.0) / 1.3, max(shown.max(initial=1.0), 1.0) * 1.3)
  ax.yaxis.set_major_formatter(ScalarFormatter())
  ax.yaxis.set_minor_formatter(ScalarFormatter())
  ax.set_xticks(x + width * (len(ratios.columns) - 1) / 2)
  ax.set_xticklabels(ratios.index, rotation=20, ha='right')
  ax.set_ylabel(f'time-to-target / {base} time-to-target (<1: faster)')
  ax.set_xlabel('workload')
  ax.set_title(f'Time-to-target ratio against {base} (hatched: a target missed, counted as '
               'budget + 1 s)', fontsize='medium')
  ax.grid(alpha=0.3, axis='y')
  ax.legend(fontsize='small')
  return _save(fig, path)
