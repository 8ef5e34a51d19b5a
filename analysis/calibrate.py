"""Budget for new hardware from baseline runs: `python -m analysis.calibrate`.

  python -m analysis.calibrate --reference_dir DIR --target_dir DIR --output FILE.json \
      [--submission NAME] [--reference_hardware KEY] [--target_hardware KEY] \
      [--version v0.6|v0.5] [--targets FILE] [--hardware_table FILE ...]

Both dirs hold runs of the same submission (any layout analysis.logs reads), one
on the reference hardware (whose budgets are known: hardware table or targets
file) and one on the new hardware. Hardware keys come from meta_data unless
given. Per workload: factor = median step time on new / on reference hardware,
budget = factor x reference budget (analysis.hardware). Writes a hardware table
for `python -m analysis.score --hardware_table FILE.json` and prints the factors.
"""
import argparse
import json
import sys
from typing import List, Optional, Sequence, Tuple

from analysis import hardware
from analysis import logs
from analysis import scoring
from analysis import tables
from analysis import targets as targets_lib


def _side(directory: str, submission: Optional[str], hardware_key: Optional[str],
          role: str) -> Tuple[List[logs.Trial], str]:
  """(trials of one submission, hardware key) from one dir; errors name the dir."""
  trials: List[logs.Trial] = logs.load_experiment([directory]).trials
  names = sorted({t.submission for t in trials})
  if submission is None and len(names) > 1:
    raise ValueError(f'{role} dir {directory} holds submissions {names}; pass --submission')
  chosen = submission or names[0]
  trials = [t for t in trials if t.submission == chosen]
  if not trials:
    raise ValueError(f'{role} dir {directory}: no runs of submission {chosen!r} (found {names})')
  if hardware_key:
    return trials, hardware_key
  keys = sorted({hardware.detect_hardware(t.meta).key for t in trials})
  if len(keys) != 1 or keys[0] == hardware.UNKNOWN:
    raise ValueError(f'{role} dir {directory}: hardware from meta_data is {keys}; pass '
                     f'--{role}_hardware to name it')
  return trials, keys[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m analysis.calibrate',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--reference_dir', required=True)
  parser.add_argument('--target_dir', required=True)
  parser.add_argument('--output', required=True, help='hardware table JSON to write')
  parser.add_argument('--submission', default=None)
  parser.add_argument('--reference_hardware', default=None)
  parser.add_argument('--target_hardware', default=None)
  parser.add_argument('--version', choices=sorted(scoring.RULES), default='v0.6')
  parser.add_argument('--targets', default=None)
  parser.add_argument('--hardware_table', nargs='*', default=[])
  args = parser.parse_args(argv)
  try:
    ref_trials, ref_key = _side(args.reference_dir, args.submission, args.reference_hardware,
                                'reference')
    new_trials, new_key = _side(args.target_dir, args.submission, args.target_hardware,
                                'target')
    cal = hardware.calibrate(ref_trials, new_trials, ref_key, new_key, args.version,
                             hardware.load_table(args.hardware_table),
                             targets_lib.get_targets(args.targets))
  except (ValueError, OSError) as e:  # LogError, bad input files
    print(f'error: {e}', file=sys.stderr)
    return 1
  note = f'runs: {args.reference_dir} vs {args.target_dir}'
  with open(args.output, 'w') as f:
    json.dump(hardware.calibration_table(cal, note), f, indent=2)
  print(f'Calibration {ref_key} -> {new_key} ({args.version}, external-tuning budgets; '
        'self-tuning multiplies at scoring time)')
  print(tables.markdown(cal.table, index=False))
  print(f'\nWrote {args.output}; use: python -m analysis.score ... --hardware_table '
        f'{args.output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
