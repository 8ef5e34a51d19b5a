"""curvlr.core.workload_support: the workload table, init-time refusals, batch counting."""
import types

import numpy as np
import pytest

from curvlr import spec
from curvlr.core import defaults, policy as P
from curvlr.core import workload_support as ws


def _workload(module, loss_type=spec.LossType.SOFTMAX_CROSS_ENTROPY, **attrs):
  cls = type('W', (), {'__module__': module, 'loss_type': loss_type, **attrs})
  return cls()


@pytest.mark.parametrize('module,base', [
    ('algoperf.workloads.ogbg.ogbg_jax.workload', 'ogbg'),
    ('algoperf.workloads.fastmri.fastmri_pytorch.workload', 'fastmri'),
    ('algoperf.workloads.librispeech_deepspeech.librispeech_jax.workload',
     'librispeech_deepspeech'),
    ('algoperf.workloads.criteo1tb.criteo1tb_jax.workload', 'criteo1tb'),
    ('algorithmic_efficiency.workloads.wmt.wmt_pytorch.workload', 'wmt'),
    ('my.own.workload', None)])
def test_base_name_from_the_module(module, base):
  assert ws.base_name(_workload(module)) == base


def test_subclass_keeps_its_own_base():
  """AlgoPerf's deepspeech classes subclass the conformer ones: the most derived wins."""
  conformer = type('C', (), {'__module__': 'algoperf.workloads.librispeech_conformer.x'})
  deepspeech = type('D', (conformer,), {'__module__': 'algoperf.workloads.librispeech_deepspeech.y'})
  assert ws.base_name(deepspeech()) == 'librispeech_deepspeech'
  variant = type('V', (deepspeech,), {'__module__': 'tests.somewhere'})
  assert ws.base_name(variant()) == 'librispeech_deepspeech'


def test_explicit_base_and_bad_base():
  assert ws.base_name(_workload('x', algoperf_base='fastmri')) == 'fastmri'
  with pytest.raises(ValueError, match='algoperf_base'):
    ws.base_name(_workload('x', algoperf_base='imagenet'))


def test_table_rows():
  ogbg = ws.support(_workload('algoperf.workloads.ogbg.ogbg_jax.workload'))
  assert ogbg.loss == spec.LossType.SIGMOID_CROSS_ENTROPY and not ogbg.row_split
  assert ogbg.halves == 'graphs'
  mri = ws.support(_workload('algoperf.workloads.fastmri.w', spec.LossType.MEAN_ABSOLUTE_ERROR))
  assert mri.curvature('ggn') == 'hessian' and mri.curvature('hessian') == 'hessian'
  criteo = ws.support(_workload('my.criteo', spec.LossType.SIGMOID_CROSS_ENTROPY,
                                algoperf_base='criteo1tb'))
  assert (criteo.base, criteo.loss, criteo.curvature('ggn'), criteo.note) == (
      'criteo1tb', spec.LossType.SIGMOID_CROSS_ENTROPY, 'ggn', '')
  generic = ws.support(_workload('my.own', spec.LossType.MEAN_SQUARED_ERROR))
  assert (generic.base, generic.loss) == ('generic', spec.LossType.MEAN_SQUARED_ERROR)


@pytest.mark.parametrize('base', ['librispeech_conformer', 'librispeech_deepspeech'])
def test_every_rule_runs_on_librispeech(base):
  """Before: the interval-median was refused ('the CTC output Hessian is indefinite')."""
  for policy in (defaults.median_policy(1000), P.CDATPolicy(debiased=True),
                 defaults.CDAT_POLICY):
    row = P.check_workload(policy, _workload(f'algoperf.workloads.{base}.w'))
    assert (row.base, row.loss, row.halves, row.row_split) == (
        base, spec.LossType.CTC_LOSS, 'rows', True)
    assert row.curvature('ggn') == 'ggn' and 'Fisher' in row.note


@pytest.mark.parametrize('policy', [defaults.median_policy(1000),
                                    P.CDATPolicy(debiased=True)])
def test_two_batch_rules_split_graph_batches(policy):
  """Before: refused at init ('cannot be split into halves by rows (graph batches)')."""
  row = P.check_workload(policy, _workload('algoperf.workloads.ogbg.ogbg_jax.workload'))
  assert (row.base, row.halves) == ('ogbg', 'graphs')


def test_halves_are_positions_within_each_device_block():
  assert ws.halves_of(5, 1) == (0, 1, 0, 1, 0)  # odd: half 1 has one more
  assert ws.halves_of(6, 2) == (0, 1, 0, 0, 1, 0)  # two blocks of 3 (odd, as ogbg's)
  assert ws.halves_of(8, 2) == tuple(i % 2 for i in range(8))  # even blocks: global parity
  with pytest.raises(ValueError, match='equal'):
    ws.halves_of(7, 2)


def test_check_halves():
  ws.check_halves('graphs', 9)
  ws.check_halves('rows', 8)
  for halves, size in (('rows', 9), ('rows', 0), ('graphs', 1)):
    with pytest.raises(ValueError, match='Two-batch measurement needs'):
      ws.check_halves(halves, size)


def test_sub_batch_refused_on_graphs():
  import dataclasses
  policy = dataclasses.replace(defaults.CDAT_POLICY, schedule=dataclasses.replace(
      defaults.CDAT_POLICY.schedule, measure_fraction=0.5))
  with pytest.raises(ws.UnsupportedWorkload, match='measure_fraction'):
    P.check_workload(policy, _workload('algoperf.workloads.ogbg.w'))


def test_num_examples_of_every_batch_structure():
  assert ws.num_examples({'targets': np.zeros(7)}) == 7
  assert ws.num_examples({'targets': (np.zeros((4, 30)), np.ones((4, 30)))}) == 4  # CTC
  graphs = types.SimpleNamespace(n_node=np.ones(9))  # a GraphsTuple-like input
  assert ws.num_examples({'inputs': graphs, 'targets': np.zeros((9, 128))}) == 9
