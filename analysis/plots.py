"""PNG figures for analysis.report (matplotlib Figure + Agg canvas, no pyplot state).

Conventions every figure keeps: eval points are drawn as markers; a y range zoomed
for readability marks every point outside it at the edge (triangles) and says so;
figures are saved with a tight bounding box so titles and labels are never cut off.
"""
import math
import warnings
from typing import List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import ScalarFormatter


class Curve(NamedTuple):
  """One study's eval curve (the trial scoring chose, else its best trial)."""
  time: np.ndarray  # accumulated submission time (s), one entry per eval
  step: np.ndarray  # global_step, one entry per eval
  y: np.ndarray  # validation metric at each eval
  hit: Optional[int] = None  # index of the first eval reaching the target (None: never)


class Cut(NamedTuple):
  """A vertical budget line: x (s) and its label."""
  x: float
  label: str


def _colors(names: Sequence[str]) -> dict:
  cycle = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2',
           '#7f7f7f', '#bcbd22', '#17becf']
  return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _save(fig: Figure, path: str) -> str:
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=110, bbox_inches='tight')
  return path


def _clean(x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Finite (x, y) pairs sorted by x."""
  x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
  keep = np.isfinite(x) & np.isfinite(y)
  order = np.argsort(x[keep], kind='stable')
  return x[keep][order], y[keep][order]


def median_band(curves: Sequence[Tuple[np.ndarray, np.ndarray]], num_points: int = 200,
                x_max: Optional[float] = None
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(grid, median, min, max) over ALL curves at every x of a shared grid.

  Each curve is linearly interpolated inside its x range and holds its last value
  after it (a finished study keeps its final metric). The grid starts where every
  curve has its first eval (so every point is over all curves) and ends at the
  last eval (or at `x_max`). NaN y values are dropped.
  """
  clean = [c for c in (_clean(x, y) for x, y in curves) if c[0].size]
  if not clean:
    empty = np.zeros(0)
    return empty, empty, empty, empty
  end = max(x[-1] for x, _ in clean) if x_max is None else x_max
  grid = np.linspace(max(x[0] for x, _ in clean), end, num_points)
  stack = np.stack([np.interp(grid, x, y, left=np.nan, right=y[-1]) for x, y in clean])
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN columns stay NaN
    return grid, np.nanmedian(stack, 0), np.nanmin(stack, 0), np.nanmax(stack, 0)


def use_log_scale(values: np.ndarray) -> bool:
  """Log y when all finite values are positive and span more than a factor 20."""
  finite = values[np.isfinite(values)]
  return finite.size > 1 and finite.min() > 0 and finite.max() / finite.min() > 20


def symlog_threshold(values: np.ndarray) -> Optional[float]:
  """Linear range of a symlog y for values of both signs (or all <= 0) whose nonzero
  magnitudes span more than a factor 100: their 10th percentile; else None."""
  finite = values[np.isfinite(values)]
  magnitudes = np.abs(finite[finite != 0])
  if finite.size < 2 or finite.min() > 0 or magnitudes.size < 2:
    return None
  low = float(np.percentile(magnitudes, 10))
  return low if magnitudes.max() / max(magnitudes.min(), 1e-300) > 100 else None


def focus_limits(values: np.ndarray, target: float, minimize: bool) -> Tuple[float, float]:
  """y limits that keep the target and the approach to it readable.

  Minimised metrics: from the lowest value up to the 75th percentile (the early,
  large values are cut off, and marked by the plot); maximised metrics: mirrored.
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


def mark_clipped(ax, x: np.ndarray, y: np.ndarray, limits: Tuple[float, float],
                 color: str) -> int:
  """Triangles at the y edge for points outside `limits`; returns how many."""
  x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
  above, below = y > limits[1], y < limits[0]
  for mask, edge, marker in ((above, limits[1], '^'), (below, limits[0], 'v')):
    if mask.any():
      ax.plot(x[mask], np.full(mask.sum(), edge), linestyle='none', marker=marker,
              color=color, markersize=6, clip_on=False, zorder=5)
  return int(above.sum() + below.sum())


def _x_limit(data_end: float, cuts: Sequence[Cut]) -> Tuple[float, List[Cut]]:
  """(right x limit, cuts left of it): the last cut, unless all data end before half of it."""
  limit = max((c.x for c in cuts), default=None)
  if limit is None:
    return 1.02 * data_end, []
  right = 1.02 * limit if data_end > 0.5 * limit else 1.1 * data_end
  return right, [c for c in cuts if c.x <= right]


def outside_note(curves: Sequence[Curve], limits: Tuple[float, float]) -> str:
  """'; all evals below/above the y range' when none of a submission's evals is inside it."""
  y = np.concatenate([np.zeros(0)] + [np.asarray(c.y, dtype=float) for c in curves])
  y = y[np.isfinite(y)]
  if y.size == 0 or ((y >= limits[0]) & (y <= limits[1])).any():
    return ''
  side = 'below' if (y < limits[0]).all() else 'above' if (y > limits[1]).all() else 'outside'
  return f'; all {y.size} evals {side} the y range'


def _draw_curves(ax, curves: Mapping[str, Sequence[Curve]], x_name: str, target: float,
                 limits: Tuple[float, float], x_max: Optional[float],
                 colors: Mapping[str, str], legend: bool) -> int:
  """Studies, medians, ends and hits on one axis; returns the number of clipped evals."""
  clipped = 0
  first = next(iter(curves), None)
  for name, study_curves in curves.items():
    color, n = colors[name], len(study_curves)
    outside = outside_note(study_curves, limits)
    if n > 1:
      grid, median, low, high = median_band([(getattr(c, x_name), c.y) for c in study_curves],
                                            x_max=x_max)
      ax.plot(grid, median, color=color, linewidth=2,
              label=f'{name}: median of {n} studies (band: min-max){outside}' if legend
              else None)
      ax.fill_between(grid, low, high, color=color, alpha=0.15, linewidth=0)
    for i, curve in enumerate(study_curves):
      x_raw = np.asarray(getattr(curve, x_name), dtype=float)
      x, y = _clean(x_raw, curve.y)
      ax.plot(x, y, color=color, linewidth=1 if n > 1 else 1.8, alpha=0.5 if n > 1 else 1,
              marker='o', markersize=3,
              label=f'{name} (1 study{outside})' if legend and n == 1 else None)
      clipped += mark_clipped(ax, x, y, limits, color)
      if n > 1 and x.size:
        ax.plot(x[-1], y[-1], marker='x', color=color, markersize=7, linestyle='none',
                label='last eval of a study (the median holds it)'
                if legend and name == first and i == 0 else None)
      if curve.hit is not None:
        ax.plot(x_raw[curve.hit], target, marker='*', color=color, markersize=14,
                markeredgecolor='black', linestyle='none', zorder=6,
                label=f'{name}: first eval at the target' if legend and i == 0 else None)
  return clipped


def plot_validation_curves(curves: Mapping[str, Sequence[Curve]], metric: str,
                           target: float, minimize: bool, cuts: Sequence[Cut],
                           title: str, path: str) -> str:
  """Metric vs global step (left, load-independent) and vs accumulated submission time
  (right, with the budget cuts), per submission: every study's evals (markers), its
  first eval at the target (star), and with several studies the median over all of
  them (a finished study holds its last value, x) with the min-max band. The time
  axis ends at the last budget cut unless every run ended before half of it.
  """
  fig = Figure(figsize=(15, 5.8))
  by_step, by_time = fig.subplots(1, 2, sharey=True)
  colors = _colors(list(curves))
  values = [_clean(c.time, c.y)[1] for cs in curves.values() for c in cs]
  limits = focus_limits(np.concatenate([np.zeros(0)] + values), target, minimize)
  ends = [float(np.nanmax(c.time)) for cs in curves.values() for c in cs
          if np.isfinite(c.time).any()]
  right, shown_cuts = _x_limit(max(ends, default=1.0), cuts)
  x_max = max((c.x for c in cuts), default=None)
  clipped = _draw_curves(by_step, curves, 'step', target, limits, None, colors, legend=False)
  _draw_curves(by_time, curves, 'time', target, limits, x_max, colors, legend=True)
  for ax in (by_step, by_time):
    ax.axhline(target, color='black', linestyle='--', linewidth=1,
               label=f'target {target:g}' if ax is by_time else None)
    ax.set_ylim(*limits)
    ax.grid(alpha=0.3)
  for i, cut in enumerate(sorted(cuts)):
    if cut in shown_cuts:
      by_time.axvline(cut.x, color='grey', linestyle=':' if i == 0 else '-.', linewidth=1.4,
                      label=cut.label)
    else:
      by_time.plot([], [], linestyle='none', label=f'{cut.label} (right of the axis)')
  if clipped:
    by_time.plot([], [], linestyle='none', marker='^' if minimize else 'v', color='grey',
                 label=f'{clipped} eval(s) outside the zoomed y range [{limits[0]:.4g}, '
                 f'{limits[1]:.4g}], drawn at the edge')
  by_time.set_xlim(0, right)
  by_step.set_xlim(left=0)
  by_step.set_xlabel('global step')
  by_time.set_xlabel('accumulated submission time (s)')
  by_step.set_ylabel(metric)
  fig.suptitle(title, fontsize='medium', x=0.01, ha='left')
  by_time.legend(fontsize='x-small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  return _save(fig, path)


def held_until(steps: np.ndarray, values: np.ndarray, end: float
               ) -> Tuple[np.ndarray, np.ndarray]:
  """A held value's logged points plus (end, last value): it stays in force to the run's end."""
  steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
  if not steps.size or steps[-1] >= end:
    return steps, values
  return np.append(steps, end), np.append(values, values[-1])


def plot_measurements(series: Mapping[str, Sequence[pd.DataFrame]], columns: Sequence[str],
                      held: Sequence[str], title: str, path: str) -> str:
  """One panel per column, y vs global_step; one line per study, colour per submission;
  every panel over the same steps, from 0 to the last step any study logged.

  Columns in `held` (values that stay in force until the next logged point, e.g. the
  lr) are drawn as steps (`steps-post`) up to the study's last logged step of any
  column (its run's end); others as measured points joined by lines. Every logged
  point carries a marker.
  """
  ncols = 2 if len(columns) > 1 else 1
  nrows = math.ceil(len(columns) / ncols)
  fig = Figure(figsize=(6.5 * ncols, 3.4 * nrows + 0.6))
  axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
  colors = _colors(list(series))
  last_step = max((float(f['global_step'].max()) for fs in series.values() for f in fs
                   if 'global_step' in f and f['global_step'].notna().any()), default=1.0)
  for ax, column in zip(axes, columns):
    values = []
    for name, frames in series.items():
      for i, frame in enumerate(frames):
        if column not in frame or 'global_step' not in frame:
          continue
        rows = frame[['global_step', column]].dropna()
        if rows.empty:
          continue
        x, y = rows['global_step'].to_numpy(dtype=float), rows[column].to_numpy(dtype=float)
        line = (held_until(x, y, float(frame['global_step'].max())) if column in held
                else (x, y))
        ax.plot(*line, color=colors[name], linewidth=1.2, alpha=0.85, marker='.',
                markersize=4, markevery=range(x.size),
                drawstyle='steps-post' if column in held else 'default',
                label=name if i == 0 else None)
        values.append(y)
    if values:
      joined = np.concatenate(values)
      threshold = symlog_threshold(joined)
      if use_log_scale(joined):
        ax.set_yscale('log')
      elif threshold is not None:
        ax.set_yscale('symlog', linthresh=threshold)
    ax.set_xlim(0, 1.02 * last_step)
    ax.set_xlabel('global step')
    ax.set_ylabel(column)
    ax.set_title(f'{column}{" (held between logged points)" if column in held else ""}',
                 fontsize='medium')
    ax.grid(alpha=0.3)
    if values:
      ax.legend(fontsize='x-small')
    else:
      ax.text(0.5, 0.5, 'not logged', transform=ax.transAxes, ha='center', va='center')
  for ax in axes[len(columns):]:
    ax.set_visible(False)
  fig.suptitle(title, fontsize='medium')
  fig.tight_layout()
  return _save(fig, path)


def plot_profile(profile: pd.DataFrame, scores: pd.Series, denominator_note: str,
                 reference: str, title: str, path: str) -> str:
  """rho_s(tau) per submission; `reference` names the ratio's denominator."""
  fig = Figure(figsize=(11, 5.5))
  ax = fig.subplots()
  taus = np.asarray(profile.columns, dtype=float)
  colors = _colors(list(profile.index))
  for name in scores.sort_values(ascending=False, kind='stable').index:
    ax.step(taus, profile.loc[name].to_numpy(), where='post', color=colors[name],
            label=f'{name} (AlgoPerf score {scores[name]:.4f})')
  if not np.any(profile.to_numpy(dtype=float) > 0):
    ax.text(0.5, 0.5, 'rho = 0 for every submission: no run reached a target\n'
            '(the lines lie on top of each other at 0)', transform=ax.transAxes,
            ha='center', va='center')
  ax.set_xlim(taus.min(), taus.max())
  ax.set_ylim(-0.02, 1.02)
  ax.set_xlabel(f'tau: time-to-target / time-to-target of {reference} (ratio, unitless)')
  ax.set_ylabel('rho(tau): fraction of workloads')
  ax.set_title(f'{title}\nPerformance profile (time-based); denominator: {denominator_note}',
               fontsize='medium', loc='left')
  ax.grid(alpha=0.3)
  ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
  return _save(fig, path)


def plot_speedups(ratios: pd.DataFrame, labels: pd.DataFrame, gmeans: pd.Series, base: str,
                  title: str, path: str) -> str:
  """Bars from 1 to the time-to-target ratio (submission / base) per workload; log y.

  A cell whose target was missed by either side is not a measurement: it is drawn
  as an unfilled hatched bar up to the bound AlgoPerf's budget + 1 s gives, labelled
  with who did not reach it (both missed: across the whole axis). The geometric mean
  of each submission (AlgoPerf's, misses as budget + 1 s) is a dashed line.
  """
  workloads = list(ratios.index)
  fig = Figure(figsize=(max(7.0, 1.8 * len(workloads) + 4), 5.2))
  ax = fig.subplots()
  colors = _colors(list(ratios.columns))
  width = 0.8 / max(1, len(ratios.columns))
  x = np.arange(len(workloads))
  shown = ratios.to_numpy(dtype=float)
  shown = np.concatenate([shown[np.isfinite(shown) & (shown > 0)],
                          gmeans[np.isfinite(gmeans) & (gmeans > 0)].to_numpy(), [1.0]])
  low, high = shown.min() / 1.5, shown.max() * 1.5
  handles = []
  for j, name in enumerate(ratios.columns):
    color = colors[name]
    for i, workload in enumerate(workloads):
      value, label = float(ratios.loc[workload, name]), labels.loc[workload, name]
      xi = x[i] + j * width
      if label.startswith('missed'):
        missed = label.split(': ', 1)[1].split(', ')
        both = len(missed) == 2
        top = high if both else (value if np.isfinite(value) and value > 0 else high)
        bottom = low if both else 1.0
        ax.bar(xi, top - bottom, width, bottom=bottom, facecolor='none', edgecolor=color,
               hatch='//', linewidth=1.2)
        text = ('neither reached the target' if both else
                f'{missed[0]} did not reach the target')
        ax.text(xi, math.sqrt(low * high) if both else 1.0, text, rotation=90, ha='center',
                va='center' if both else ('bottom' if top >= 1 else 'top'),
                fontsize='x-small', bbox={'facecolor': 'white', 'alpha': 0.85,
                                          'linewidth': 0})
      elif np.isfinite(value) and value > 0:
        bar = ax.bar(xi, value - 1, width, bottom=1, color=color)
        ax.bar_label(bar, labels=[f'{value:.3g}'], fontsize='small')
      else:
        ax.text(xi, 1.0, label or 'n/a', rotation=90, ha='center', va='bottom',
                fontsize='x-small')
    measured = int(sum(not labels.loc[w, name] and np.isfinite(ratios.loc[w, name])
                       for w in workloads))
    handles.append(Patch(color=color, label=name))
    if not measured:
      handles.append(Patch(facecolor='none', edgecolor='none',
                           label=f'{name}: no geometric mean drawn (no measured ratio)'))
    elif np.isfinite(gmeans.get(name, np.nan)):
      handles.append(ax.axhline(
          gmeans[name], color=color, linestyle='--', linewidth=1.2,
          label=f'{name}: geometric mean {gmeans[name]:.3g} ({measured}/{len(workloads)} '
          'measured; misses as budget + 1 s, as AlgoPerf)'))
  handles.append(Patch(facecolor='none', edgecolor='black', hatch='//',
                       label='not reached: a bound from budget + 1 s, not a measurement'))
  ax.axhline(1.0, color='black', linewidth=1)
  ax.set_yscale('log')
  ax.set_ylim(low, high)
  ax.yaxis.set_major_formatter(ScalarFormatter())
  ax.yaxis.set_minor_formatter(ScalarFormatter())
  ax.set_xticks(x + width * (len(ratios.columns) - 1) / 2)
  ax.set_xticklabels(workloads, rotation=20, ha='right')
  ax.set_ylabel(f'time to target / {base}\'s (< 1: faster)')
  ax.set_xlabel('workload')
  ax.set_title(f'{title}\nTime-to-target ratio against {base}', fontsize='medium', loc='left')
  ax.grid(alpha=0.3, axis='y')
  ax.legend(handles=handles, fontsize='x-small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
  return _save(fig, path)

