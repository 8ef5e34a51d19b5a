"""Which AlgoPerf rules a directory of logs was run under: benchmark version and ruleset.

Evidence, per trial:
  ruleset  `tuning_ruleset` in flags_<p>.json ('self' or 'external'); without flags,
           hparams.json present means external tuning.
  version  `workload.max_allowed_runtime_sec` in meta_data_<p>.json of an AlgoPerf
           workload against each version's runner constant (the reference profile of
           analysis/hardware.json; variants have their base workload's budget). E.g.
           fastmri 8859 s in v0.5 and 4430 s in v0.6; criteo1tb's 7703 s is the same in
           both and decides nothing. Runs of this project's runner (meta_data
           `hardware.accelerator`) follow v0.6.
           When no budget decides: the study count per (submission, workload), if all
           are 5 (v0.5) or all 3 (v0.6).
Resolution (`resolve`): what the logs say is used; a flag that agrees is fine, one
that contradicts them raises RulesError naming what the logs say, unless `override`
(deliberate re-scoring, noted). Trials that say different things within one run set
raise RulesError. With no evidence the flag, else v0.6 / external, is used and noted.
"""
import collections
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from analysis import logs
from analysis import targets as targets_lib

VERSIONS = ('v0.5', 'v0.6')
RULESETS = ('self', 'external')
REFERENCE_PROFILE = '8xV100-16GB'  # the table profile holding the runner's constants
STUDIES = {5: 'v0.5', 3: 'v0.6'}
DEFAULT_VERSION = 'v0.6'
DEFAULT_RULESET = 'external'  # AlgoPerf's submission_runner default


class RulesError(ValueError):
  """The logs contradict a flag, or each other."""


class Detected(NamedTuple):
  """What the logs say; None where they say nothing."""
  version: Optional[str]
  version_evidence: str
  ruleset: Optional[str]
  ruleset_evidence: str


def runner_budgets(table: Mapping[str, dict]) -> Dict[str, Dict[str, float]]:
  """{version: {workload: max_allowed_runtime_sec}} of AlgoPerf's runner, from the table."""
  budgets = table.get(REFERENCE_PROFILE, {}).get('budgets', {})
  return {v: {w: s for w, s in budgets[v]['max_runtime_sec'].items() if s is not None}
          for v in VERSIONS if v in budgets}


def _trial_version(trial: logs.Trial, budgets: Mapping[str, Mapping[str, float]]
                   ) -> Tuple[Optional[str], str]:
  """(version or None, why) for one trial."""
  if 'hardware.accelerator' in trial.meta:
    return 'v0.6', 'written by this project\'s runner (v0.6 rules)'
  recorded = trial.meta.get('workload.max_allowed_runtime_sec')
  if not isinstance(recorded, (int, float)) or isinstance(recorded, bool):
    return None, 'no workload.max_allowed_runtime_sec in meta_data'
  base = targets_lib.get_base_workload_name(trial.workload)
  matches = [v for v in VERSIONS if budgets.get(v, {}).get(base) == recorded]
  if len(matches) == 1:
    return matches[0], f'{trial.workload} budget {recorded:g} s'
  return None, f'{trial.workload} budget {recorded:g} s is ' + (
      'the same in every version' if matches else 'no version\'s runner constant')


def _trial_ruleset(trial: logs.Trial) -> Optional[str]:
  ruleset = trial.flags.get('tuning_ruleset')
  if ruleset in RULESETS:
    return ruleset
  return 'external' if trial.hparams is not None else None


def _mixed(kind: str, by_value: Mapping[str, List[logs.Trial]]) -> RulesError:
  examples = '; '.join(f'{value}: {len(ts)} trials, e.g. {ts[0].path}'
                       for value, ts in sorted(by_value.items()))
  return RulesError(f'the logs mix {kind}s ({examples}); score each set separately '
                    '(or force one with --override_rules)')


def detect(trials: Sequence[logs.Trial], table: Mapping[str, dict],
           override: bool = False) -> Detected:
  """What the trials' flags, meta_data and study counts say (module docstring).

  Raises:
    RulesError: trials disagree (unless `override`, which then reports no evidence).
  """
  budgets = runner_budgets(table)
  versions = collections.defaultdict(list)
  reasons = {}
  for trial in trials:
    version, why = _trial_version(trial, budgets)
    if version is not None:
      versions[version].append(trial)
      reasons.setdefault(version, f'{why} ({trial.label})')
  rulesets = collections.defaultdict(list)
  for trial in trials:
    ruleset = _trial_ruleset(trial)
    if ruleset is not None:
      rulesets[ruleset].append(trial)
  for kind, found in (('benchmark version', versions), ('tuning ruleset', rulesets)):
    if len(found) > 1 and not override:
      raise _mixed(kind, found)
  if len(versions) == 1:
    version = next(iter(versions))
    version_evidence = (f'meta_data of {len(versions[version])}/{len(trials)} trials, e.g. '
                        f'{reasons[version]}')
  else:
    studies = {len({t.study for t in trials if (t.submission, t.workload) == key})
               for key in {(t.submission, t.workload) for t in trials}}
    version = STUDIES.get(next(iter(studies))) if len(studies) == 1 else None
    version_evidence = (f'{next(iter(studies))} studies per workload' if version else
                        'nothing in the logs decides (no distinguishing budget in meta_data, '
                        f'study counts {sorted(studies)})')
  if len(rulesets) == 1:
    ruleset = next(iter(rulesets))
    ruleset_evidence = (f'flags_<p>.json tuning_ruleset / hparams.json of '
                        f'{len(rulesets[ruleset])}/{len(trials)} trials')
  else:
    ruleset, ruleset_evidence = None, 'no tuning_ruleset in flags and no hparams.json'
  return Detected(version, version_evidence, ruleset, ruleset_evidence)


def _pick(kind: str, flag_name: str, flag: Optional[str], logged: Optional[str],
          evidence: str, default: str, override: bool, notes: List[str]) -> str:
  if logged is None:
    chosen = flag or default
    notes.append(f'{kind}: {evidence}; scoring as {chosen} '
                 f'({"as given by " + flag_name if flag else "default; state it with " + flag_name})')
    return chosen
  if flag is None or flag == logged:
    return logged
  if not override:
    raise RulesError(f'{flag_name} {flag} contradicts the logs, which say {kind} {logged} '
                     f'({evidence}). Drop the flag to score by the logs\' rules, or add '
                     '--override_rules to re-score deliberately.')
  notes.append(f'{kind}: scoring as {flag} (--override_rules) although the logs say '
               f'{logged} ({evidence})')
  return flag


def resolve(detected: Detected, version: Optional[str] = None,
            ruleset: Optional[str] = None, override: bool = False
            ) -> Tuple[str, str, List[str]]:
  """(version, ruleset, notes) to score with; see the module docstring."""
  notes = []
  chosen_version = _pick('benchmark version', '--version', version, detected.version,
                         detected.version_evidence, DEFAULT_VERSION, override, notes)
  chosen_ruleset = _pick('tuning ruleset', '--tuning_ruleset', ruleset, detected.ruleset,
                         detected.ruleset_evidence, DEFAULT_RULESET, override, notes)
  return chosen_version, chosen_ruleset, notes


def _source(kind: str, chosen: str, logged: Optional[str], evidence: str) -> str:
  if logged is None:
    return f'{kind} {chosen}: not in the logs ({evidence})'
  if chosen == logged:
    return f'{kind} {chosen}: from the logs ({evidence})'
  return f'{kind} {chosen}: FORCED by --override_rules, the logs say {logged} ({evidence})'


def provenance(detected: Detected, version: str, ruleset: str) -> str:
  """Where the scored version and ruleset came from: the logs, a default or an override."""
  return '; '.join((_source('version', version, detected.version, detected.version_evidence),
                    _source('ruleset', ruleset, detected.ruleset, detected.ruleset_evidence)))
