#!/usr/bin/env bash
# The GPU training job (docs/training-gpu.md). From the repository root on a lent GPU machine:
#
#   scripts/gpu_train.sh [RECIPE [MINUTES]] [more options of python -m imgcomp.systems.mentzer2018.gpu_job]
#   scripts/gpu_train.sh --smoke [RECIPE [MINUTES]] ...     # the same path on a CPU, tiny, 20 steps
#
# Installs nothing from a network: the project runs from src/, and the wheels carried in
# .gpu/wheels that fit this Python are installed (pip --no-index --no-deps) into a temporary
# folder. Reads the packed training set in $DATA (default .gpu/data), trains RECIPE (default
# gpu-multirate) for MINUTES (default 8), and writes the sharded model, config.json,
# metrics.jsonl and job.json to $OUT (default gpu-out), saving every 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu-out}
DATA=${DATA:-.gpu/data}
WHEELS=${WHEELS:-.gpu/wheels}
SMOKE=()
if [ "${1:-}" = "--smoke" ]; then SMOKE=(--smoke); shift; fi
RECIPE=${1:-gpu-multirate}
MINUTES=${2:-8}
shift $(( $# < 2 ? $# : 2 ))
SITE=$(mktemp -d "${TMPDIR:-/tmp}/imgcomp-site.XXXXXX")
trap 'rm -rf "$SITE"' EXIT
TAG=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
shopt -s nullglob
WHLS=()
for wheel in "$WHEELS"/*.whl; do
    case "$(basename "$wheel")" in
        *-py3-none-any.whl|*-py2.py3-none-any.whl|*-"$TAG"-*manylinux*x86_64*.whl|*-abi3-*manylinux*x86_64*.whl) WHLS+=("$wheel") ;;
    esac
done
if [ ${#WHLS[@]} -gt 0 ]; then
    echo "gpu_train: installing ${#WHLS[@]} carried wheels for $TAG (no network): ${WHLS[*]##*/}"
    if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
            --target "$SITE" "${WHLS[@]}" 2>"$SITE.pip.log"; then
        echo "gpu_train: pip failed ($(tail -1 "$SITE.pip.log")); unpacking the wheels instead"
        "$PYTHON" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' "$SITE" "${WHLS[@]}"
    fi
    rm -f "$SITE.pip.log"
fi
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" - <<'PY'
import importlib.util, sys
missing = [m for m in ("torch", "numpy", "PIL", "safetensors", "constriction", "pytorch_msssim", "threadpoolctl")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_train: missing {', '.join(missing)}: run scripts/gpu_prepare.sh and carry .gpu")
PY
mkdir -p "$OUT"
exec "$PYTHON" -m imgcomp.systems.mentzer2018.gpu_job --recipe "$RECIPE" --minutes "$MINUTES" --data "$DATA" \
    --out "$OUT" "${SMOKE[@]}" "$@"
