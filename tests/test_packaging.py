"""Installing into an AlgoPerf environment must not pin or move the benchmark's frameworks."""
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FRAMEWORKS = {'torch', 'jax', 'jaxlib', 'flax', 'optax', 'chex'}
PINS = {'jax': '0.7.0', 'jaxlib': '0.7.0', 'flax': '0.10.7', 'optax': '0.2.2', 'chex': '0.1.86'}


def _project():
  with open(ROOT / 'pyproject.toml', 'rb') as f:
    return tomllib.load(f)['project']


def _name(requirement: str) -> str:
  """PEP 508 requirement -> normalised distribution name ('jax[cpu]>=0.7' -> 'jax')."""
  return re.split(r'[\s\[<>=!~;@(]', requirement.strip(), maxsplit=1)[0].lower().replace('_', '-')


def test_name_parser():
  requirements = ('jax[cpu]>=0.7', 'torch==2.13.0', 'Opt_Einsum', 'chex ; python_version>"3"')
  assert [_name(r) for r in requirements] == ['jax', 'torch', 'opt-einsum', 'chex']


def test_base_and_algoperf_extra_name_no_framework():
  project = _project()
  for group, requirements in (('dependencies', project['dependencies']),
                              ('[algoperf]', project['optional-dependencies']['algoperf'])):
    named = {_name(r) for r in requirements} & FRAMEWORKS
    assert not named, f'{group} names {sorted(named)}: an AlgoPerf install would move them'


def test_algoperf_extra_brings_what_the_submissions_import():
  assert 'schedulefree' in {_name(r) for r in _project()['optional-dependencies']['algoperf']}


def test_pins_file_is_algoperfs_jax_stack():
  lines = [line.split('#')[0].strip() for line in
           (ROOT / 'requirements-algoperf-pins.txt').read_text().splitlines()]
  pins = dict(line.split('==') for line in lines if line)
  assert {name: pins.get(name) for name in PINS} == PINS
  assert 'torch' not in pins
