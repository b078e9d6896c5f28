#!/usr/bin/env bash
# Prepare what travels to a lent GPU machine (docs/training-gpu.md), all under the ignored .gpu/:
#   .gpu/wheels/  wheels of the dependencies the GPU machine lacks (CPython 3.12, manylinux x86_64),
#                 plus the same for this machine's Python (for the CPU smoke run, scripts/gpu_smoke.sh)
#   .gpu/data/    the packed training set (imgcomp data pack)
# and print the size of everything that would travel (must be under 64 MiB).
#
# Environment: PYTHON (default .venv/bin/python, else python3: needs pip and the project's
# dependencies), POOL (training pool, default data/train), DATA_MIB (default 40),
# SKIP_DATA=1 (wheels only).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
WHEELS=.gpu/wheels
# What the training path imports that the GPU machine (torch, numpy, Pillow, safetensors, rich,
# typer, tensorboard, scikit-image, matplotlib) lacks; the versions this project is tested with.
PACKAGES=(constriction==0.5.0 pytorch-msssim==1.0.0 threadpoolctl==3.8.0)
mkdir -p "$WHEELS"
echo "gpu_prepare: wheels for the GPU machine (cp312, manylinux2014_x86_64) -> $WHEELS"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
    --python-version 3.12 --platform manylinux2014_x86_64 -d "$WHEELS" "${PACKAGES[@]}"
echo "gpu_prepare: wheels for this machine's Python (the CPU smoke run) -> $WHEELS"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
    -d "$WHEELS" "${PACKAGES[@]}"
if [ "${SKIP_DATA:-0}" != 1 ]; then
    POOL=${POOL:-data/train}
    echo "gpu_prepare: packing ${DATA_MIB:-40} MiB of training crops from $POOL -> .gpu/data"
    PYTHONPATH="$PWD/src" "$PYTHON" -m imgcomp data pack --from "$POOL" --out .gpu/data \
        --max-mib "${DATA_MIB:-40}" --force
fi
PYTHONPATH="$PWD/src" "$PYTHON" -m imgcomp.training.travel .gpu
