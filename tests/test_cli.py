"""`python -m ftbnn_exp` end to end, as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ftbnn_exp.app.config import CONF_DIR


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftbnn_exp", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_baseline_trains_on_digits_and_writes_metrics(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("trainer.max_epochs=6", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 6
    assert metrics["model"] == "baseline" and metrics["nonlinearity"] == "relu_partial_fprelu"
    assert [row["epoch"] for row in metrics["history"]] == list(range(6))
    assert metrics["final"]["test/top1"] >= 90.0
    assert metrics["best"]["val/top1"] == max(r["val/top1"] for r in metrics["history"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "csv" / "version_0" / "metrics.csv").is_file()
    table2 = subprocess.run(
        [sys.executable, "-m", "ftbnn_exp.report", "fprelu",
         str(run_dir / "checkpoints" / "last.ckpt")], capture_output=True, text=True, timeout=300)
    assert table2.returncode == 0, table2.stderr
    rows = table2.stdout.strip().splitlines()[1:]
    assert [r.split()[0] for r in rows if "ReLU" in r] == [
        "BConv1-4", "BConv2-4", "BConv3-4", "BConv4-4"]
    assert len([r for r in rows if "[" in r]) == 12
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("baseline-relu_partial_fprelu: test top-1 ")
    # A quiet console: no warning, deprecation or tip line; our complexity line instead of
    # Lightning's model summary.
    console = (done.stdout + done.stderr).splitlines()
    assert not [line for line in console if re.search(r"warn|deprecat|tip|FLOPs\s+\|", line,
                                                      re.IGNORECASE)]
    c = metrics["complexity"]
    assert console[0].startswith(f"complexity [macs]: FLOPs {c['flops'] / 1e6:.2f}M  BOPs "
                                 f"{c['bops'] / 1e6:.2f}M  params {c['params'] / 1e6:.3f}M  "
                                 f"budget {c['budget'] / 1e6:.2f}M at 8 px")
    assert f"{metrics['final']['test/top1']:.2f}%" in summary


def test_wandb_logs_offline_without_network(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("logger=wandb", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = (run_dir / "wandb_id").read_text().strip()
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))) == 1


def test_config_mistake_is_one_line_and_nonzero(tmp_path):
    done = run_cli("nonlinearity=foo", cwd=tmp_path)
    assert done.returncode == 2
    options = sorted(p.stem for p in (CONF_DIR / "nonlinearity").glob("*.yaml"))
    assert done.stderr.strip().splitlines() == [
        f"error: nonlinearity=foo is not an option; allowed: {', '.join(options)}"]
    assert not (tmp_path / "outputs").exists()


def test_missing_dataset_is_one_line_and_nonzero(tmp_path):
    done = run_cli("data=mnist", "data.root=nowhere", "logger=none", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "data=mnist: no mnist files under" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_compile_option_trains_through_torch_compile(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("compile=true", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                   "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["config"]["compile"] is True
    # Compilation keeps the state_dict keys: the checkpoint loads into a plain model.
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)
