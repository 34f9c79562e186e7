#!/usr/bin/env bash
# One-GPU training benchmark (benchmarks/gpu.py); `--dry-run` checks it on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec timeout 290 "$PY" -m benchmarks.gpu "$@"
