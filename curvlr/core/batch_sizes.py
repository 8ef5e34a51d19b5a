"""Global training batch sizes of the baselines (AlgoPerf's self-tuning table + ours)."""

# AlgoPerf v0.6 self-tuning NAdamW `get_batch_size`, plus the offline workload.
BATCH_SIZES = {
    'criteo1tb': 262_144,
    'fastmri': 32,
    'imagenet_resnet': 1024,
    'imagenet_resnet_silu': 512,
    'imagenet_resnet_gelu': 512,
    'imagenet_vit': 1024,
    'librispeech_conformer': 256,
    'librispeech_deepspeech': 256,
    'ogbg': 512,
    'wmt': 128,
    'mnist': 16,
    # Sized for a 2-core CPU: ~0.12 s per step (see curvlr/workloads/criteo/TARGETS.md).
    'criteo_embedded': 1024,
}


def get_batch_size(workload_name: str) -> int:
  """Raises ValueError for unknown names: AlgoPerf's runner then retries the base name."""
  try:
    return BATCH_SIZES[workload_name]
  except KeyError:
    raise ValueError(f'Unsupported workload name: {workload_name}.') from None
