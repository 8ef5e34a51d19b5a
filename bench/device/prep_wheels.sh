#!/usr/bin/env bash
# Downloads, here, the wheels that bench/device/run_criteo1tb_scale.sh installs on the
# accelerator machine (Python 3.12, x86-64, no network there) into the ignored `.whl/`.
# The machine's image already has torch 2.11, jax 0.11 (CUDA), optax, chex, numpy,
# psutil, pandas (/work/.library/device/KINDS.md); it lacks:
#   pyfarmhash 0.5.1   `curvlr/workloads/criteo/data.py` imports `farmhash` (C extension)
#   schedulefree 1.4.1 the PyTorch Schedule-Free submission (pure Python; it requires
#                      torch and typing-extensions, both in the image)
# Run from the repository root. ~0.1 MB in all.
set -euo pipefail
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl pyfarmhash==0.5.1 schedulefree==1.4.1
ls -l .whl
