"""Compatibility with the real AlgoPerf package (skipped where it is not installed)."""
import pytest

from curvlr import spec


def test_standin_enum_values_match_algoperf_v06():
  assert [m.value for m in spec.LossType] == [0, 1, 2, 3, 4]
  assert spec.LossType.SIGMOID_CROSS_ENTROPY.value == 1
  assert [m.value for m in spec.ForwardPassMode] == [0, 1]
  assert len(spec.ParameterType) == 15


def test_real_spec_is_used_when_installed():
  algoperf_spec = pytest.importorskip('algoperf.spec')
  assert spec.ALGOPERF_AVAILABLE
  assert spec.LossType is algoperf_spec.LossType
  assert spec.TrainingCompleteError is algoperf_spec.TrainingCompleteError


def _fake_criteo_batch(framework, batch_size=4):
  """AlgoPerf's reference_algorithm_tests.py criteo fake batch (ALGOPERF.md 7.1)."""
  import numpy as np
  targets = np.ones(batch_size)
  targets[0] = 0
  if framework == 'jax':
    return {'inputs': np.ones((batch_size, 39)), 'targets': targets,
            'weights': np.ones(batch_size)}
  import torch
  return {'inputs': torch.ones((batch_size, 39)),
          'targets': torch.as_tensor(targets, dtype=torch.long),
          'weights': torch.ones(batch_size, dtype=torch.bool)}


def _rng(framework):
  """The key `algoperf.random_utils.PRNGKey(0)` gives; that function reads the runner's
  absl flag `--framework`, which is undefined without `submission_runner`."""
  import numpy as np
  if framework == 'jax':
    import jax
    return jax.random.PRNGKey(0)
  return np.random.RandomState(0).randint(0, 2**31 - 1, dtype=np.int32, size=[2, 2])[0]


@pytest.mark.parametrize('framework', ['pytorch', 'jax'])
def test_nadamw_submission_on_algoperf_criteo1tb_test(framework):
  """Both baselines step AlgoPerf's own criteo1tb_test workload, as its reference test does."""
  import importlib
  module = pytest.importorskip(
      f'algoperf.workloads.criteo1tb.criteo1tb_{framework}.workload')
  workload = module.Criteo1TbDlrmSmallTestWorkload()
  submission = importlib.import_module(f'submissions.self_tuning.nadamw.{framework}_submission')
  rng = _rng(framework)
  params, model_state = workload.init_model_fn(rng)
  opt_state = submission.init_optimizer_state(workload, params, model_state, None, rng)
  for step in range(2):
    opt_state, params, model_state = submission.update_params(
        workload, params, workload.model_params_types, model_state, None,
        _fake_criteo_batch(framework), workload.loss_type, opt_state, [], step, rng)
  assert submission.get_batch_size('criteo1tb') == 262_144
