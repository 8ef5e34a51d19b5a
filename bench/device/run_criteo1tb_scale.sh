#!/usr/bin/env bash
# Runs bench/bench_criteo1tb_scale.py on the accelerator machine, one process per
# framework (JAX preallocates 75% of the device memory), output teed into $OUT.
# Device command (the `run` tool, from the repository root, carry [".whl"]):
#   bash bench/device/run_criteo1tb_scale.sh
# Prepare the wheels first, here: bash bench/device/prep_wheels.sh
# Environment: PYTHON (default python3, the image's 3.12), FRAMEWORKS (default
# "jax pytorch"), BENCH_ARGS (extra flags, e.g. for a CPU rehearsal at small scale),
# OUT (default ./out), WHEELS (default .whl; a folder without wheels skips the install),
# SITE (where the wheels go, default /tmp/site).
set -uo pipefail
PYTHON="${PYTHON:-python3}"
FRAMEWORKS="${FRAMEWORKS:-jax pytorch}"
OUT="${OUT:-out}"
SITE="${SITE:-/tmp/site}"
WHEELS="${WHEELS:-.whl}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)" || exit 1
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl || exit 1
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 || true
  "$PYTHON" -m pip list 2>/dev/null | grep -i -E '^(torch|jax|jaxlib|jax-cuda|optax|chex|numpy|schedulefree|pyfarmhash) ' || true
} 2>&1 | tee "$OUT/env.txt"
status=0
for fw in $FRAMEWORKS; do
  platforms=""
  [ "$fw" = jax ] && [ -z "${JAX_PLATFORMS+x}" ] && command -v nvidia-smi >/dev/null && platforms=cuda
  echo "== $fw (JAX_PLATFORMS=${platforms:-${JAX_PLATFORMS:-}})"
  JAX_PLATFORMS="${platforms:-${JAX_PLATFORMS:-}}" \
    timeout 290 "$PYTHON" bench/bench_criteo1tb_scale.py --framework "$fw" ${BENCH_ARGS:-} \
    2>&1 | tee "$OUT/criteo1tb_scale_$fw.txt" || status=1
done
exit $status
