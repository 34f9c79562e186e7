"""The benchmark scripts run (their numbers are for `make bench*`, not for tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_dry_run_on_cpu():
    done = subprocess.run(["bash", "benchmarks/gpu.sh", "--dry-run", "--no-compile"], cwd=ROOT,
                          env={**os.environ, "PY": sys.executable}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = done.stdout.strip().splitlines()
    assert rows[0].startswith("FTBNN-18 training, 64 px, batch 2, 2 steps on ")
    assert [row.strip().split("  ")[0] for row in rows[1:]] == [
        "fp32", "bf16-mixed + channels_last"]
    assert all("img/s" in row and "peak memory" in row for row in rows[1:])


def test_memory_benchmark_counts_both_models():
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--image-size", "64"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = done.stdout.strip().splitlines()[1:]
    assert len(rows) == 2 and all("Appendix E" in row and "ratio" in row for row in rows)
