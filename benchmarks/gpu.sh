#!/usr/bin/env bash
# One GPU, under 8 minutes (benchmarks/gpu.py): training modes, data backends, a real run.
# `--dry-run` checks it on the CPU first. Outputs go to $OUT (or --out), else here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec timeout 480 "$PY" -m benchmarks.gpu "$@"
