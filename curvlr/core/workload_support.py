"""What each AlgoPerf workload needs from a curvature submission: one table, framework-free.

A self-tuning submission runs on every workload with one setting, so the drivers ask
here, not `workload.loss_type`, which loss the curvature oracle differentiates, which
curvature is meaningful for it, how to count and split a batch, and whether a rule can
run at all. `check` is called by `init_optimizer_state`: what cannot run fails there,
with the reason, never at the first measurement step.

| base | oracle loss | curvature | batch | two-batch split | measured in chunks |
|---|---|---|---|---|---|
| criteo1tb, imagenet_vit, wmt, mnist | the workload's | GGN | rows | rows | yes |
| imagenet_resnet, cifar | the workload's | GGN | rows | rows | no (BatchNorm) |
| ogbg | per-task sigmoid, (B, 128) mask | GGN | graphs | graphs (weights masked) | no |
| fastmri | MAE | Hessian (GGN = 0) | rows | rows | yes |
| librispeech_* | CTC | GGN, per-frame softmax Fisher (PSD bound) | sequences | sequences | no (BatchNorm) |
| generic (unknown) | its `loss_type` | GGN | rows | rows | no |

Two-batch splits (`halves_of`): half 1 holds the examples at even positions within each
device's block of the batch, half 2 those at odd positions.
- 'rows': the halves are those rows of every leaf (the batch is halved; an even count
  per device, so that the halves do not depend on the device count). Tuple leaves
  (librispeech's (audio, paddings) inputs and (labels, paddings) targets) split by row
  alike: a row is a sequence.
- 'graphs': the halves are the whole batch, unchanged in shape, with the per-example
  weights (ogbg's (B, 128) mask) zeroed outside the half; each half's mean loss is
  normalised by its own weight sum (AlgoPerf's `n_valid_examples`), and the two
  combined by weight sums give the whole batch's loss and gradient. Valid because the
  graphs of a batch do not interact in AlgoPerf's ogbg GNN (both frameworks): messages
  pass along edges within a graph, globals pool nodes and edges per graph, LayerNorm
  normalises each node's, edge's and graph's features, dropout masks elements, and
  there is no batch-statistics normalisation. Padding graphs have weight 0, so they
  count for neither half; odd counts give halves that differ by one graph. Every half
  runs the whole batch's forward pass (a measurement costs two full passes).

Why:
- ogbg's `loss_type` says SOFTMAX, but its loss is a sigmoid per task over 128 tasks
  with a (B, 128) mask; its batches are graph tuples (AlgoPerf pads one graph per
  device, so counts are odd) that cannot be split or sub-sampled by rows, only masked.
- fastMRI's MAE has a zero output-space second derivative almost everywhere, so
  u^T G u = 0 exactly and every GGN step size is undefined; the Hessian keeps the
  network's own curvature (J's second derivative weighted by the loss gradient).
- CTC is not convex in the logits: its exact output Hessian is indefinite (u^T M u = -2e9
  was measured on conformer), so the interval-median's alpha would change sign. The
  oracles' GGN form uses the per-frame softmax Fisher F instead (PSD, and above the
  exact F - C: a smaller, safe step; the math in `curvlr/pytorch/curvature.py`'s
  docstring), normalised by the label count as AlgoPerf's CTC loss, so its units match
  g.d. CDAT with curvature 'hessian' measures the exact (indefinite) Hessian and takes
  |u^T M u| (`cdat.py`). Batches are split and sub-sampled by sequence; train-mode
  BatchNorm (both models) then uses the part's statistics.

Measurement chunks (`measurement_chunks`, issue 10: memory): the curvature sums are
sums over examples (`quad = sum_n w_n u^T M_n u`, `gu`, `loss`, `n`), so a measurement
may run its JVP (or Hessian pass) over consecutive chunks of each device's rows, one
after the other, and add the chunks' sums; the whole batch's normaliser is the sum of
the chunks' `n`. Only one chunk's forward-mode activations are live at a time. Exact
(up to float reduction order) where a row's forward pass does not depend on the other
rows: not with train-mode BatchNorm (imagenet_resnet, cifar, both librispeech models:
the statistics would be the chunk's), not for graph batches (ogbg, not cut by rows),
and not for unknown models. With dropout a chunked measurement draws its own masks per
chunk, as a CDAT sub-batch does (the RNG rule's replay needs the gradient pass's
shapes). The rule: at most `MEASURE_CHUNKS` chunks, none under `MIN_CHUNK_ROWS` rows
(smaller batches run in one pass: little memory to gain, device throughput to lose).

Workloads are recognised by their module (`algoperf.workloads.<base>....`, variants
included), by an `algoperf_base` attribute (test doubles, third-party workloads), or,
failing both, treated as a generic row-batched workload with its own `loss_type`.
"""
import dataclasses
import re
from typing import Any, NamedTuple, Optional, Tuple

from curvlr import spec

BASES = ('criteo1tb', 'fastmri', 'imagenet_resnet', 'imagenet_vit', 'librispeech_conformer',
         'librispeech_deepspeech', 'ogbg', 'wmt', 'mnist', 'cifar')
L = spec.LossType


class UnsupportedWorkload(ValueError):
  """A curvature rule cannot run on this workload (raised at init_optimizer_state)."""


@dataclasses.dataclass(frozen=True)
class Support:
  """What a curvature submission uses on one workload.

  Attributes:
    base: AlgoPerf base workload name, or 'generic'.
    loss: the loss the curvature oracle differentiates (`spec.LossType`).
    zero_ggn: the loss's output-space Hessian is 0, so the GGN is 0: use the Hessian.
    row_split: batches can be sub-sampled by rows (leading axis; CDAT's sub-batch).
    halves: how a two-batch step splits a batch: 'rows' or 'graphs' (module docstring).
    row_chunks: a measurement may sum over chunks of rows (module docstring).
    note: one line for the logs on what is used and why; '' when nothing is special.
  """
  base: str
  loss: Any
  zero_ggn: bool = False
  row_split: bool = True
  halves: str = 'rows'
  row_chunks: bool = False
  note: str = ''

  def curvature(self, requested: str) -> str:
    """The curvature to measure when a rule asks for `requested` ('ggn' or 'hessian')."""
    return 'hessian' if self.zero_ggn else requested


_SPECIAL = {
    'ogbg': dict(loss=L.SIGMOID_CROSS_ENTROPY, row_split=False, halves='graphs',
                 note='ogbg: per-task sigmoid loss over 128 tasks with its (B, 128) mask '
                      '(its loss_type says SOFTMAX)'),
    'fastmri': dict(loss=L.MEAN_ABSOLUTE_ERROR, zero_ggn=True, row_chunks=True,
                    note='fastmri: MAE has a zero GGN; the Hessian is measured instead'),
    'librispeech_conformer': dict(loss=L.CTC_LOSS,
                                  note='librispeech: the CTC GGN uses the per-frame softmax '
                                       'Fisher (PSD, an upper bound of the indefinite CTC '
                                       'curvature); halves by sequence'),
}
_SPECIAL['librispeech_deepspeech'] = _SPECIAL['librispeech_conformer']
_ROW_INDEPENDENT = ('criteo1tb', 'imagenet_vit', 'wmt', 'mnist')  # rows never interact
MEASURE_CHUNKS = 4
MIN_CHUNK_ROWS = 256
_MODULE = re.compile(r'(?:^|\.)workloads\.(' + '|'.join(BASES) + r')(?:\.|$)')


def base_name(workload) -> Optional[str]:
  """The AlgoPerf base workload of `workload` (an instance), None when unknown."""
  explicit = getattr(workload, 'algoperf_base', None)
  if explicit is not None:
    if explicit not in BASES:
      raise ValueError(f'algoperf_base = {explicit!r}: must be one of {BASES}.')
    return explicit
  for cls in type(workload).__mro__:
    match = _MODULE.search(cls.__module__)
    if match:
      return match.group(1)
  return None


def support(workload) -> Support:
  """The table row for `workload` (module docstring)."""
  base = base_name(workload)
  if base in _SPECIAL:
    return Support(base=base, **_SPECIAL[base])
  return Support(base=base or 'generic', loss=workload.loss_type,
                 row_chunks=base in _ROW_INDEPENDENT)


def check(workload, sub_batch: bool) -> Support:
  """`support(workload)`, or UnsupportedWorkload when the rule cannot run there (every
  base splits two-batch halves, 'rows' or 'graphs').

  sub_batch: the rule measures on a sub-batch of rows (measure_fraction < 1).
  """
  row = support(workload)
  if sub_batch and not row.row_split:
    raise UnsupportedWorkload(
        f'{row.base} batches cannot be sub-sampled by rows: measure on the whole batch '
        '(measure_fraction = 1).')
  return row


def check_halves(halves: str, per_device: int) -> None:
  """ValueError unless `per_device` examples per device give each half at least one
  position by `halves` ('rows' also needs an even count)."""
  if per_device < 2 or (halves == 'rows' and per_device % 2):
    need = 'an even number (>= 2)' if halves == 'rows' else 'at least 2'
    raise ValueError(f'Two-batch measurement needs {need} of examples per device, got '
                     f'{per_device}.')


def halves_of(num_examples: int, num_shards: int) -> Tuple[int, ...]:
  """The half (0 or 1) of each of `num_examples` examples laid out as `num_shards`
  equal per-device blocks: the parity of its position within its block."""
  if num_examples % num_shards:
    raise ValueError(f'{num_examples} examples do not split into {num_shards} equal '
                     'per-device blocks.')
  block = num_examples // num_shards
  return tuple((i % block) % 2 for i in range(num_examples))


class Chunks(NamedTuple):
  """Consecutive chunks of a device's rows: `count` of `rows` rows, then one of
  `remainder` rows (0: none)."""
  rows: int
  count: int
  remainder: int

  @property
  def chunked(self) -> bool:
    return self.count > 1 or self.remainder > 0

  def spans(self) -> Tuple[Tuple[int, int], ...]:
    """(start, stop) of every chunk, in order."""
    ends = [(k + 1) * self.rows for k in range(self.count)]
    ends += [ends[-1] + self.remainder] if self.remainder else []
    return tuple(zip([0] + ends[:-1], ends))


def chunks_of(num_rows: int, max_chunks: int = MEASURE_CHUNKS,
              min_rows: int = MIN_CHUNK_ROWS) -> Chunks:
  """At most `max_chunks` chunks of at least `min_rows` rows (one chunk when `num_rows`
  < 2 `min_rows`), all of ceil(num_rows / chunks) rows but a shorter last one."""
  if num_rows < 1 or max_chunks < 1 or min_rows < 1:
    raise ValueError(f'chunks_of({num_rows}, {max_chunks}, {min_rows}): need all >= 1.')
  k = max(1, min(max_chunks, num_rows // min_rows))
  rows = -(-num_rows // k)
  return Chunks(rows, num_rows // rows, num_rows % rows)


def measurement_chunks(row: Support, per_device: int) -> Chunks:
  """The chunks of a measurement over `per_device` rows per device (module docstring):
  `chunks_of(per_device)` where `row.row_chunks`, else one chunk."""
  return chunks_of(per_device) if row.row_chunks else Chunks(per_device, 1, 0)


def num_examples(batch) -> int:
  """Examples in a batch dict of any structure: the leading size of its targets (the
  first array of tuple targets, e.g. CTC's (labels, paddings)); for a graph batch the
  number of graphs, padding graphs included."""
  targets = batch['targets']
  while isinstance(targets, (tuple, list)):
    targets = targets[0]
  return int(targets.shape[0])
