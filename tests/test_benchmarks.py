"""The benchmark scripts run (their numbers are for `make bench*`, not for tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_dry_run_on_cpu(tmp_path):
    done = subprocess.run(["bash", "benchmarks/gpu.sh", "--dry-run", "--no-compile", "--out",
                           str(tmp_path)], cwd=ROOT, env={**os.environ, "PY": sys.executable},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = done.stdout.strip().splitlines()
    assert rows[0].startswith("FTBNN-18 training, 64 px, batch 2, 2 steps on ")
    assert [row.strip().split("  ")[0] for row in rows[1:4]] == [
        "fp32", "bf16-mixed + channels_last", "bf16-mixed + channels_last + lean"]
    assert all("img/s" in row and "peak memory" in row for row in rows[1:4])
    assert rows[4].startswith("input pipeline on cpu")
    backends = [row.split()[0] for row in rows[5:-1]]
    assert backends[:2] == ["data.backend=pil", "data.backend=torchvision"]
    assert all("bottleneck: " in row for row in rows[5:-1])
    assert "trainer=cpu data=folder" in rows[-1] and ": completed" in rows[-1]
    metrics = json.loads((tmp_path / "gpu-run" / "metrics.json").read_text())
    assert metrics["status"] == "completed"


@pytest.mark.slow
def test_memory_benchmark_counts_both_models():
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--image-size", "64"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = done.stdout.strip().splitlines()
    assert len(rows) == 6 and all("Appendix E" in row and "ratio" in row for row in rows[1:3])
    assert rows[3].startswith("under bf16 autocast")
    assert all("lean" in row and "plain graph" in row for row in rows[4:])


@pytest.mark.slow
def test_deploy_benchmark_prints_peers_or_says_why_not_verdicts_scaling_and_breakdown():
    done = subprocess.run([sys.executable, "-m", "benchmarks.deploy", "--no-layers",
                           "--image-size", "64", "--repeats", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert ("openvino int8, ResNet-18" in out) != ("peers: not installed" in out)
    assert out.count("(fused blocks (derived_ftbnn's runner))") == 2
    for row in ("ours, FTBNN-18 baseline (fused blocks (ftbnn_resnet's runner))",
                "ours, derived L18-G1",
                "ours, derived L34-G5", "our thread scaling", "where the time goes"):
        assert row in out, row
    assert out.count("target ≥ ") == 2 * len({1, os.cpu_count() or 1})
    assert out.count("binary convs ") == 3 * len({1, os.cpu_count() or 1})
    spread = [line for line in out.splitlines() if "all cores / 1 thread" in line]
    assert len(spread) >= 6 and all("(rounds " in line for line in spread)  # turns taken


@pytest.mark.slow
def test_training_benchmark_sources_load_and_step_rate_is_the_median(tmp_path):
    """make bench-train: every source it writes composes and loads as users' data would, the
    plain loop trains on it, and a rate is the batch over the median step."""
    from benchmarks.train import plain, step_rate, write_sources
    from ftbnn_exp.app.build import build_datamodule
    from ftbnn_exp.app.config import compose_config

    assert step_rate([0.0, 1.0, 1.5, 3.5, 4.0], batch=8, warmup=1) == 16.0  # steps .5 2 .5
    sources = write_sources(tmp_path, images=40)
    for overrides in sources.values():
        cfg = compose_config([*overrides, "data.num_workers=0"])
        dm = build_datamodule(cfg)
        dm.setup("fit")
        assert len(dm.train_set) > 0
    assert plain([*sources["digits · Fig. 2"], "data.batch_size=16"], steps=2, warmup=1) > 0
