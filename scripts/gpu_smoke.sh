#!/usr/bin/env bash
# The GPU job's smoke run on a CPU (docs/training-gpu.md): scripts/gpu_train.sh --smoke in a fresh
# venv holding only what the GPU machine has (torch, numpy, Pillow, safetensors, rich, typer,
# tensorboard, scikit-image, matplotlib) plus the wheels carried in .gpu/wheels
# (scripts/gpu_prepare.sh). Tiny preset, 20 steps, sharded export to $OUT (default .gpu-smoke/out).
#
# Environment: SMOKE_VENV (default .gpu-smoke/venv; created on first use, torch==2.13.0, the CPU
# build), BASE_PYTHON (default python3), OUT, DATA (default .gpu/data if packed, else scikit-image's
# bundled photos).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SMOKE_VENV:-.gpu-smoke/venv}
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
    echo "gpu_smoke: creating $VENV"
    rm -rf "$VENV"
    "${BASE_PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        numpy pillow safetensors rich typer tensorboard scikit-image matplotlib
    touch "$VENV/.complete"
fi
export OUT=${OUT:-.gpu-smoke/out}
rm -rf "$OUT"
if [ -z "${DATA:-}" ] && [ ! -d .gpu/data ]; then export DATA=.gpu-smoke/no-data; fi
PYTHON="$VENV/bin/python" exec scripts/gpu_train.sh --smoke "$@"
