"""Discovery and robust loading of runs in AlgoPerf's directory layout.

Layouts, told apart by how deep the `trial_<k>` directories lie below the root:
  submission dir  <root>/<submission>/<study>/<workload>_<framework>/trial_<k>/
  one submission  <root>/<study>/<workload>_<framework>/trial_<k>/   (AlgoPerf's
                  `get_experiment_df` input; submission = root's name)
  one experiment  <root>/<workload>_<framework>/trial_<k>/   (one runner
                  experiment dir; submission = study = root's name)
Each trial dir holds eval_measurements.csv, measurements.csv, meta_data_<p>.json,
flags_<p>.json and (external tuning) hparams.json, p = preemption count.

As in AlgoPerf: any directory name counts as a study; trial dirs match
`trial_(\\d+)`; the `_jax`/`_pytorch` suffix is stripped from the workload name;
timestamped copies `<name>-YYYY-MM-DD-HH-MM-SS` of a submission (or of the root
in the two single-submission layouts, as siblings) are merged into `<name>`,
their trials counting as separate trials of the same studies.

Damaged logs (each either becomes a note, logged as a warning and naming the
file, or raises LogError; never a silent number):
  - eval_measurements.csv missing: the trial is dropped, as AlgoPerf's loader
    does (a study whose trials all lack it leaves the median), and noted.
  - eval_measurements.csv empty or header only: the trial is kept with no evals,
    i.e. it never reaches the target (AlgoPerf: an empty file crashes its loader,
    a header-only one gives a trial that never reaches the target).
  - last line without a trailing newline (AlgoPerf rewrites the whole CSV on
    every eval, non-atomically): dropped if it has the wrong number of fields or
    an unparsable number, else kept; noted either way.
  - any other malformed row, a non-numeric value, or rows without a `score`
    column: LogError naming file, line and column.
  - NaN metric values are kept (they never count as reaching a target); evals
    with a NaN/inf `score` are noted and cannot count as a hit (see scoring).
  - `score` decreasing between evals (non-monotonic time): noted, rows kept.
  - preemption (preemption_count > 0 in the CSV, or meta_data_<p>.json with
    p > 0): rows kept as written (AlgoPerf restores accumulated time from the
    checkpoint, so `score` keeps accumulating), trial flagged `preempted`.
  - unreadable meta_data/flags/hparams JSON: noted and ignored.
  - a workload dir without `_jax`/`_pytorch`: framework 'unknown', noted.
  - trial dirs at another depth than the layout's (e.g. stray `trial_<k>` dirs
    directly in a study dir, as in the official v0.5 logs): ignored, noted
    (AlgoPerf's loader never reaches them either); trial dirs inside
    `<workload>_<framework>` dirs at mixed depths: LogError.
  - one workload of one submission in several frameworks: LogError (AlgoPerf
    fails on it too), unless `split_frameworks`, which renames each submission
    to `<submission>_<framework>`.
"""
import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

TRIAL_DIR_RE = re.compile(r'trial_(\d+)')
WORKLOAD_DIR_RE = re.compile(r'(.*)_(jax|pytorch)')
TIMESTAMP_RE = r'-\d{4}(-\d{2}){5}'
EVAL_FILE = 'eval_measurements.csv'
MEASUREMENTS_FILE = 'measurements.csv'
MISSING_EVALS = 'missing; trial dropped, as AlgoPerf does'
TIME_COLUMN = 'score'  # == accumulated_submission_time (AlgoPerf's time_col)
_JSON_FILE_RE = re.compile(r'(meta_data|flags)_(\d+)\.json')
_LAYOUT_DEPTHS = {4: 'submission dir', 3: 'one submission', 2: 'one experiment'}
_LOG = logging.getLogger(__name__)


class LogError(ValueError):
  """A log or layout that cannot be scored without guessing."""


@dataclasses.dataclass(frozen=True, eq=False)
class Trial:
  """One trial directory, loaded."""
  submission: str
  study: str
  workload: str  # framework suffix stripped
  framework: str  # 'jax', 'pytorch' or 'unknown'
  trial: int  # k of trial_<k>
  path: str  # the trial directory
  evals: pd.DataFrame  # eval_measurements.csv, one row per eval, float columns
  meta: Dict[str, object]  # meta_data_<p>.json of the smallest p, flattened keys
  flags: Dict[str, object]  # flags_<p>.json of the smallest p
  hparams: Optional[Dict[str, object]]  # hparams.json (external tuning only)
  preemption_count: int
  notes: Tuple[str, ...]  # everything odd found while loading
  # Positions in os.listdir of each directory from the experiment dir down: the
  # (filesystem-dependent) row order of AlgoPerf's loader, used for its tie-break.
  listing_rank: Tuple[int, ...] = ()

  @property
  def preempted(self) -> bool:
    return self.preemption_count > 0

  @property
  def label(self) -> str:
    return f'{self.submission}/{self.study}/{self.workload}_{self.framework}/trial_{self.trial}'


class Experiment(NamedTuple):
  """All trials found under the given roots, plus notes on what was odd."""
  trials: List[Trial]
  notes: List[str]


def _note(notes: List[str], message: str) -> None:
  _LOG.warning(message)
  notes.append(message)


def _parse_cell(path: str, line: int, column: str, value: str) -> float:
  """'' -> NaN, 'True'/'False' -> 1/0, else float; LogError names file, line, column."""
  value = value.strip()
  if value == '':
    return math.nan
  if value in ('True', 'False'):
    return float(value == 'True')
  try:
    return float(value)
  except ValueError:
    raise LogError(f'{path}:{line}: column {column!r}: cannot parse {value!r} as a '
                   'number') from None


def _rows(text: str) -> List[Tuple[int, List[str]]]:
  """(1-based line number, fields) of every non-blank line."""
  if '"' in text:  # quoted fields: let the csv module split
    reader = csv.reader(io.StringIO(text))
    return [(reader.line_num, row) for row in reader if row]
  return [(n, line.split(',')) for n, line in enumerate(text.splitlines(), start=1)
          if line.strip()]


def read_csv(path: str) -> Tuple[pd.DataFrame, List[str]]:
  """Reads an AlgoPerf measurements CSV into float columns.

  Returns:
    (frame, notes): frame has one row per complete CSV row (no rows for an empty
    or header-only file); notes describe what was dropped or suspicious.
  Raises:
    LogError: malformed header or a malformed row that is not the unterminated
      last line.
  """
  notes = []
  with open(path, newline='') as f:
    text = f.read()
  if not text.strip():
    _note(notes, f'{path}: empty file')
    return pd.DataFrame(), notes
  terminated = text.endswith('\n')
  (_, header), *body = _rows(text)
  if len(header) != len(set(header)) or '' in header:
    raise LogError(f'{path}:1: malformed header {header!r}')
  if not body:
    _note(notes, f'{path}: header only, no rows')
  if body and len(body[-1][1]) != len(header) and not terminated:
    _note(notes, f'{path}:{body[-1][0]}: expected {len(header)} fields, got '
          f'{len(body[-1][1])} (unterminated last line, a partial write): row dropped')
    body, terminated = body[:-1], True
  for line, row in body:
    if len(row) != len(header):
      raise LogError(f'{path}:{line}: expected {len(header)} fields, got {len(row)}')
  try:  # fast path; the structure is checked above, so pandas cannot pad short rows
    values = pd.read_csv(io.StringIO(text), nrows=len(body), dtype=float,
                         keep_default_na=False, na_values=['', 'nan', 'NaN']).to_numpy()
  except (ValueError, TypeError):
    values = _parse_rows(path, header, body, terminated, notes)
  if body and not terminated and len(values) == len(body):
    _note(notes, f'{path}:{body[-1][0]}: last line has no trailing newline; kept, but it may '
          'be truncated')
  return pd.DataFrame(values, columns=header, dtype=float), notes


def _parse_rows(path: str, header: List[str], body: List[Tuple[int, List[str]]],
                terminated: bool, notes: List[str]) -> np.ndarray:
  """Cell-by-cell parse; an unparsable unterminated last row is dropped, others raise."""
  rows = []
  for i, (line, row) in enumerate(body):
    try:
      rows.append([_parse_cell(path, line, name, value) for name, value in zip(header, row)])
    except LogError as e:
      if i < len(body) - 1 or terminated:
        raise
      _note(notes, f'{e} (unterminated last line, a partial write): row dropped')
  return np.array(rows, dtype=float).reshape(len(rows), len(header))


def flatten(d: dict, prefix: str = '') -> Dict[str, object]:
  """{'hardware': {'accelerator': x}} -> {'hardware.accelerator': x}."""
  flat = {}
  for key, value in d.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(flatten(value, f'{name}.'))
    else:
      flat[name] = value
  return flat


def _read_json(path: str, notes: List[str]) -> Optional[dict]:
  try:
    with open(path) as f:
      value = json.load(f)
  except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
    _note(notes, f'{path}: unreadable JSON ({e}); ignored')
    return None
  if not isinstance(value, dict):
    _note(notes, f'{path}: expected a JSON object; ignored')
    return None
  return value


def split_workload_dir(name: str) -> Tuple[str, str]:
  """'criteo1tb_jax' -> ('criteo1tb', 'jax'); no suffix -> (name, 'unknown')."""
  match = WORKLOAD_DIR_RE.fullmatch(name)
  return (match.group(1), match.group(2)) if match else (name, 'unknown')


def _check_evals(path: str, evals: pd.DataFrame, notes: List[str]) -> None:
  if evals.empty:
    return
  if TIME_COLUMN not in evals:
    raise LogError(f'{path}: no {TIME_COLUMN!r} column (columns: {list(evals.columns)})')
  time = evals[TIME_COLUMN].to_numpy()
  bad = np.flatnonzero(~np.isfinite(time))
  if bad.size:
    _note(notes, f'{path}: {TIME_COLUMN!r} is NaN/inf at eval index(es) {bad.tolist()}; '
          'those evals cannot count as reaching a target')
  finite = np.flatnonzero(np.isfinite(time))
  drops = finite[1:][np.diff(time[finite]) < 0]
  if drops.size:
    _note(notes, f'{path}: {TIME_COLUMN!r} decreases at eval index(es) {drops.tolist()} '
          '(non-monotonic time); rows kept as written')


def _json_by_preemption(path: str, notes: List[str]) -> Dict[str, Dict[int, dict]]:
  """{'meta_data': {p: flat dict}, 'flags': {p: flat dict}} from <path>/*_<p>.json."""
  found = {'meta_data': {}, 'flags': {}}
  for name in sorted(os.listdir(path)):
    match = _JSON_FILE_RE.fullmatch(name)
    if match:
      value = _read_json(os.path.join(path, name), notes)
      if value is not None:
        found[match.group(1)][int(match.group(2))] = flatten(value)
  return found


def load_trial(path: str, submission: str, study: str,
               listing_rank: Tuple[int, ...] = ()) -> Trial:
  """Loads one `<...>/<workload>_<framework>/trial_<k>` directory."""
  notes = []
  workload, framework = split_workload_dir(os.path.basename(os.path.dirname(path)))
  if framework == 'unknown':
    _note(notes, f'{os.path.dirname(path)}: workload dir without _jax/_pytorch suffix; '
          'framework unknown')
  evals_path = os.path.join(path, EVAL_FILE)
  if os.path.exists(evals_path):
    evals, csv_notes = read_csv(evals_path)
    notes += csv_notes
  else:
    evals = pd.DataFrame()
    _note(notes, f'{evals_path}: {MISSING_EVALS}')
  _check_evals(evals_path, evals, notes)
  jsons = _json_by_preemption(path, notes)
  meta = jsons['meta_data'][min(jsons['meta_data'])] if jsons['meta_data'] else {}
  flags = jsons['flags'][min(jsons['flags'])] if jsons['flags'] else {}
  hparams_path = os.path.join(path, 'hparams.json')
  hparams = _read_json(hparams_path, notes) if os.path.exists(hparams_path) else None
  counts = [0] + list(jsons['meta_data']) + list(jsons['flags'])
  if 'preemption_count' in evals and evals['preemption_count'].notna().any():
    counts.append(int(evals['preemption_count'].max()))
  preemption_count = max(counts)
  if preemption_count:
    _note(notes, f'{path}: preempted (preemption_count={preemption_count}); rows kept, '
          'accumulated time continues across the preemption as in AlgoPerf')
  for source, record in (('meta_data', meta), ('flags', flags)):
    recorded = record.get('framework')
    if framework != 'unknown' and recorded not in (None, framework):
      _note(notes, f'{path}: {source} says framework={recorded!r} but the directory says '
            f'{framework!r}; using the directory')
  trial = int(TRIAL_DIR_RE.fullmatch(os.path.basename(path)).group(1))
  return Trial(submission, study, workload, framework, trial, path, evals, meta, flags,
               hparams, preemption_count, tuple(notes), listing_rank)


def _find_trial_dirs(root: str, depth: int = 0) -> List[Tuple[str, ...]]:
  """Relative paths (as parts) of trial dirs up to 6 levels below root (4 are valid)."""
  found = []
  with os.scandir(root) as entries:
    for entry in sorted(entries, key=lambda e: e.name):
      if not entry.is_dir():
        continue
      if TRIAL_DIR_RE.fullmatch(entry.name):
        found.append((entry.name,))
      elif depth < 5:
        found += [(entry.name,) + rest for rest in _find_trial_dirs(entry.path, depth + 1)]
  return found


def strip_timestamp(name: str) -> str:
  return re.sub(TIMESTAMP_RE + '$', '', name)


def _timestamp_siblings(root: str) -> List[str]:
  parent, name = os.path.split(os.path.abspath(root))
  pattern = re.compile(re.escape(name) + TIMESTAMP_RE)
  return [os.path.join(parent, d) for d in sorted(os.listdir(parent))
          if pattern.fullmatch(d) and os.path.isdir(os.path.join(parent, d))]


def _layout(root: str, notes: List[str]) -> Tuple[int, List[Tuple[str, ...]]]:
  """(depth, trial dirs at that depth) of a root; see the module docstring.

  The depth is that of the trial dirs inside `<workload>_<framework>` dirs (of
  all trial dirs if there are none); trial dirs elsewhere are skipped with a note
  (AlgoPerf's loader never reaches them either).
  """
  trial_dirs = _find_trial_dirs(root)
  typed = [p for p in trial_dirs if len(p) > 1 and WORKLOAD_DIR_RE.fullmatch(p[-2])]
  depths = {}
  for parts in typed or trial_dirs:
    depths.setdefault(len(parts), os.path.join(root, *parts))
  if not depths:
    raise LogError(f'{root}: no trial_<k> directories found (expected '
                   '<submission>/<study>/<workload>_<framework>/trial_<k>)')
  if len(depths) > 1 or set(depths) - set(_LAYOUT_DEPTHS):
    examples = '; '.join(f'depth {d}: {p}' for d, p in sorted(depths.items()))
    raise LogError(f'{root}: trial dirs at unsupported or mixed depths ({examples}); '
                   'expected one of ' + ', '.join(
                       f'{n} (depth {d})' for d, n in _LAYOUT_DEPTHS.items()))
  depth = next(iter(depths))
  for parts in trial_dirs:
    if len(parts) != depth:
      _note(notes, f'{os.path.join(root, *parts)}: trial dir outside the '
            f'{_LAYOUT_DEPTHS[depth]} layout (depth {len(parts)}, not {depth}); ignored')
  return depth, [p for p in trial_dirs if len(p) == depth]


def _listing_rank(top: str, parts: Tuple[str, ...],
                  listings: Dict[str, List[str]]) -> Tuple[int, ...]:
  """Position of each of `parts` in os.listdir of its parent, from `top` down."""
  rank, parent = [], top
  for name in parts:
    if parent not in listings:
      listings[parent] = os.listdir(parent)
    rank.append(listings[parent].index(name))
    parent = os.path.join(parent, name)
  return tuple(rank)


def _load_root(root: str, notes: List[str]) -> List[Trial]:
  root = os.path.normpath(root)
  if not os.path.isdir(root):
    raise LogError(f'{root}: not a directory')
  depth, trial_dirs = _layout(root, notes)
  listings = {}
  if depth == 4:
    placed = [(os.path.join(root, *parts), strip_timestamp(parts[0]), parts[1],
               _listing_rank(root, parts, listings)) for parts in trial_dirs]
  else:
    name = os.path.basename(os.path.abspath(root))
    placed = []
    for directory in [root] + _timestamp_siblings(root):
      if directory != root:
        _note(notes, f'{directory}: merged into {name} (timestamped copy, as AlgoPerf does)')
        sub_depth, sub_dirs = _layout(directory, notes)
        if sub_depth != depth:
          raise LogError(f'{directory}: layout differs from {root}')
      else:
        sub_dirs = trial_dirs
      placed += [(os.path.join(directory, *parts), strip_timestamp(name),
                  parts[0] if depth == 3 else name,
                  _listing_rank(os.path.dirname(os.path.abspath(directory)),
                                (os.path.basename(os.path.abspath(directory)),) + parts,
                                listings))
                 for parts in sub_dirs]
  trials = [load_trial(*args) for args in placed]
  kept = [t for t in trials if os.path.exists(os.path.join(t.path, EVAL_FILE))]
  for t in trials:
    notes += [n for n in t.notes if not n.endswith(MISSING_EVALS)]
  notes += _dropped_notes([t for t in trials if t not in kept])
  return kept


def _dropped_notes(dropped: Sequence[Trial]) -> List[str]:
  """One note per (submission, workload) naming its trials without an eval file."""
  groups = {}
  for t in dropped:
    groups.setdefault((t.submission, t.workload), []).append(t)
  return [f'{submission}/{workload}: {len(ts)} trial(s) without {EVAL_FILE} dropped, as '
          f'AlgoPerf does ({", ".join(f"{t.study}/trial_{t.trial}" for t in ts)}; e.g. '
          f'{ts[0].path})' for (submission, workload), ts in sorted(groups.items())]


def _check_frameworks(trials: List[Trial], split: bool) -> List[Trial]:
  frameworks = {}
  for t in trials:
    frameworks.setdefault((t.submission, t.workload), {}).setdefault(t.framework, t.path)
  if split:
    return [dataclasses.replace(t, submission=f'{t.submission}_{t.framework}') for t in trials]
  for (submission, workload), paths in frameworks.items():
    if len(paths) > 1:
      listing = ', '.join(f'{fw}: {os.path.dirname(p)}' for fw, p in sorted(paths.items()))
      raise LogError(f'submission {submission!r}, workload {workload!r} has runs in several '
                     f'frameworks ({listing}); AlgoPerf cannot score that either. Score them '
                     'as separate submissions (split_frameworks / --split_frameworks).')
  return trials


def load_experiment(roots: Sequence[str], split_frameworks: bool = False,
                    exclude_submissions: Sequence[str] = ()) -> Experiment:
  """Loads every trial under `roots` (each in any of the three layouts)."""
  notes = []
  trials = []
  owner = {}
  for root in roots:
    for t in _load_root(root, notes):
      if t.submission in exclude_submissions:
        continue
      first = owner.setdefault(t.submission, root)
      if first != root:
        raise LogError(f'submission {t.submission!r} found under both {first} and {root}')
      trials.append(t)
  trials = _check_frameworks(trials, split_frameworks)
  trials.sort(key=lambda t: (t.submission, t.workload, t.study, t.trial, t.path))
  return Experiment(trials, notes)


def load_measurements(trial: Trial) -> Tuple[pd.DataFrame, List[str]]:
  """measurements.csv of a trial; an unreadable file gives an empty frame + note."""
  path = os.path.join(trial.path, MEASUREMENTS_FILE)
  if not os.path.exists(path):
    return pd.DataFrame(), []
  try:
    return read_csv(path)
  except LogError as e:
    notes = []
    _note(notes, f'{e}; measurements not plotted')
    return pd.DataFrame(), notes
