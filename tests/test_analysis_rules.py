"""Rules read from the logs (analysis.rules), targets found beside the runs, and the notes
for logs that lack what scoring needs (analysis.score)."""
import json
import math

import numpy as np
import pytest

from analysis import fixtures as fx
from analysis import hardware
from analysis import logs
from analysis import rules
from analysis import score
from analysis import targets

FASTMRI = targets.ALGOPERF_TARGETS['fastmri']
CRITEO = targets.ALGOPERF_TARGETS['criteo1tb']


def write(root, submission='sub', studies=3, workload='fastmri', budget=4430, ruleset='self',
          meta=None, values=None):
  t = targets.ALGOPERF_TARGETS[workload]
  for s in range(studies):
    m = dict(fx.V100_META, **{'workload.max_allowed_runtime_sec': budget}) if meta is None \
        else meta
    fx.write_trial(root, submission, f'study_{s}', workload, 1, (100, 200),
                   fx.curve(2, 0, t.target, t.minimize) if values is None else values,
                   metric=t.metric, meta=m, ruleset=ruleset)


def detect(root):
  trials = logs.load_experiment([str(root)]).trials
  return rules.detect(trials, hardware.load_table())


def test_version_from_the_runners_budget_in_meta_data(tmp_path):
  write(tmp_path / 'v05', budget=8859)
  write(tmp_path / 'v06', budget=4430)
  assert detect(tmp_path / 'v05').version == 'v0.5'
  assert 'fastmri budget 8859 s' in detect(tmp_path / 'v05').version_evidence
  assert detect(tmp_path / 'v06').version == 'v0.6'


def test_version_from_study_count_when_budgets_do_not_decide(tmp_path):
  write(tmp_path / 'five', studies=5, workload='criteo1tb', budget=7703)  # same in both
  write(tmp_path / 'three', studies=3, workload='criteo1tb', budget=7703)
  write(tmp_path / 'one', studies=1, workload='criteo1tb', budget=7703)
  assert detect(tmp_path / 'five').version == 'v0.5'
  assert detect(tmp_path / 'three').version == 'v0.6'
  assert detect(tmp_path / 'one').version is None
  version, _, notes = rules.resolve(detect(tmp_path / 'one'))
  assert version == 'v0.6' and 'state it with --version' in notes[0]


def test_our_runner_follows_v06(tmp_path):
  write(tmp_path, studies=1, meta={'hardware.accelerator': 'cpu', 'hardware.device_count': 1})
  assert detect(tmp_path).version == 'v0.6'


def test_mixed_rules_in_one_directory_are_an_error(tmp_path):
  write(tmp_path / 'a', 'a', budget=8859)
  write(tmp_path / 'a', 'b', budget=4430)
  with pytest.raises(rules.RulesError, match=r'mix benchmark versions \(v0.5: 3 trials'):
    detect(tmp_path / 'a')
  write(tmp_path / 'b', 'a', ruleset='self')
  write(tmp_path / 'b', 'b', ruleset='external')
  with pytest.raises(rules.RulesError, match='mix tuning rulesets'):
    detect(tmp_path / 'b')


def test_ruleset_from_flags_and_hparams(tmp_path):
  write(tmp_path / 'self', ruleset='self')
  assert detect(tmp_path / 'self').ruleset == 'self'
  write(tmp_path / 'none', ruleset=None)
  assert detect(tmp_path / 'none').ruleset is None
  for trial in logs.load_experiment([str(tmp_path / 'none')]).trials:
    with open(f'{trial.path}/hparams.json', 'w') as f:
      json.dump({'learning_rate': 1e-3}, f)
  assert detect(tmp_path / 'none').ruleset == 'external'


def test_flags_confirm_contradict_or_override(tmp_path):
  write(tmp_path, budget=8859, ruleset='self')
  assert score.score_directory([str(tmp_path)], version='v0.5',
                               self_tuning=True).result.settings['version'] == 'v0.5'
  with pytest.raises(rules.RulesError, match='--version v0.6 contradicts the logs, which say '
                     'benchmark version v0.5'):
    score.score_directory([str(tmp_path)], version='v0.6')
  forced = score.score_directory([str(tmp_path)], version='v0.6', override_rules=True).result
  assert forced.trials['budget_s'].iloc[0] == 1.5 * 4430  # v0.6 table, self-tuning factor
  assert any('v0.6 (--override_rules) although the logs say v0.5' in n for n in forced.notes)
  line = score.rules_line(forced)
  assert 'version v0.6: FORCED by --override_rules, the logs say v0.5' in line
  assert 'ruleset self: from the logs' in line
  assert 'FORCED' not in score.rules_line(score.score_directory([str(tmp_path)]).result)


def test_cli_refusal_names_the_flag(tmp_path, capsys):
  write(tmp_path / 'runs', budget=8859)
  assert score.main(['--submission_dir', str(tmp_path / 'runs'), '--output_dir',
                     str(tmp_path / 'out'), '--version', 'v0.6']) == 1
  err = capsys.readouterr().err
  assert 'say benchmark version v0.5' in err and '--override_rules' in err


def test_missing_meta_data_note_names_the_budget_used(tmp_path):
  write(tmp_path, meta={}, studies=3)
  result = score.score_directory([str(tmp_path)]).result
  (note,) = [n for n in result.notes if 'without meta_data' in n]
  assert note.startswith('sub/fastmri: 3 trial(s) without meta_data_<p>.json')
  assert 'no budget cut' in note  # unknown hardware, no runner budget
  (tmp_path / 'targets.json').write_text(json.dumps({'fastmri': {
      'metric': 'validation/ssim', 'target': FASTMRI.target, 'max_runtime_sec': 500}}))
  result = score.score_directory([str(tmp_path)]).result
  (note,) = [n for n in result.notes if 'without meta_data' in n]
  assert 'budget 750 s (1.5 x 500 s, targets file' in note


def test_all_nan_metric_is_a_note_and_a_miss(tmp_path):
  write(tmp_path, values=[math.nan, math.nan])
  result = score.score_directory([str(tmp_path)]).result
  assert result.raw_times.loc['sub', 'fastmri'] == math.inf
  assert any('validation/ssim is NaN at every eval in 3 trial(s)' in n for n in result.notes)


def test_targets_json_found_beside_the_runs_nearest_first(tmp_path):
  toy = {'metric': 'validation/loss', 'target': 0.5, 'minimize': True}
  runs = tmp_path / 'exp' / 'runs'
  fx.write_trial(runs, 'sub', 'study_0', 'toy', 1, (10, 20), fx.curve(2, 1, 0.5), meta={})
  (tmp_path / 'targets.json').write_text(json.dumps({'toy': dict(toy, target=0.1)}))
  (tmp_path / 'exp' / 'targets.json').write_text(json.dumps({'toy': toy}))
  path, searched = targets.find_targets_file([str(runs)])
  assert path == str(tmp_path / 'exp' / 'targets.json')
  assert searched[:2] == [str(runs), str(tmp_path / 'exp')]
  scored = score.score_directory([str(runs)])
  assert scored.targets['toy'].target == 0.5
  assert scored.result.settings['targets'] == str(tmp_path / 'exp' / 'targets.json')


def test_different_targets_files_for_two_dirs_are_an_error(tmp_path):
  for name in ('a', 'b'):
    (tmp_path / name).mkdir()
    (tmp_path / name / 'targets.json').write_text('{}')
  with pytest.raises(ValueError, match='different targets files'):
    targets.find_targets_file([str(tmp_path / 'a'), str(tmp_path / 'b')])


def test_every_algoperf_variant_has_its_class_target():
  assert set(targets.ALGOPERF_VARIANTS) <= set(targets.ALGOPERF_TARGETS)
  for name in targets.ALGOPERF_VARIANTS:
    variant = targets.ALGOPERF_TARGETS[name]
    base = targets.ALGOPERF_TARGETS[targets.get_base_workload_name(name)]
    assert (variant.metric, variant.minimize) == (base.metric, base.minimize)
  # Spot checks against algoperf@2c90454f's variant classes.
  assert targets.ALGOPERF_TARGETS['wmt_post_ln'].target == 30.0779
  assert targets.ALGOPERF_TARGETS['imagenet_vit_map'].target == 0.77113
  assert targets.ALGOPERF_TARGETS['criteo1tb_test'].target == CRITEO.target
  assert np.isclose(targets.ALGOPERF_TARGETS['librispeech_deepspeech_tanh'].target, 0.150883)
