#!/usr/bin/env bash
# One short GPU check of lossmap (issue 26): the seed's CNN plane against the
# in-place loop, a 124M and a ~1B GPT-2 line and plane in bfloat16 (points/s,
# peak GPU memory), and the tests marked `gpu`; writes one JSON with the card's
# name (benchmarks/results/gpu-<card>.json). A few minutes on one GPU.
#
#   bash benchmarks/gpu.sh                      # on a GPU machine
#   bash benchmarks/gpu.sh --cpu --tiny         # the same path on the CPU, tiny sizes (seconds)
#   bash benchmarks/gpu.sh --out my.json --tests tests/test_cuda_paths.py
#
# Interpreter: $PY if set, else the first of .venv/bin/python and python3 whose
# torch sees CUDA (any of them with --cpu). lossmap is imported from src/, so a
# machine with torch, transformers and numpy needs no install of it.
set -euo pipefail
cd "$(dirname "$0")/.."
want_cuda=1
for a in "$@"; do [ "$a" = "--cpu" ] && want_cuda=0; done
if [ -z "${PY:-}" ]; then
    for c in .venv/bin/python python3 python; do
        command -v "$c" >/dev/null 2>&1 || continue
        if [ "$want_cuda" = 0 ] || "$c" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
            PY=$c; break
        fi
    done
fi
if [ -z "${PY:-}" ]; then
    echo "error: no python here has a torch that sees CUDA; set PY=/path/to/python (CUDA build of torch), or pass --cpu --tiny" >&2
    exit 2
fi
[ "$want_cuda" = 1 ] && command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu.py "$@"
