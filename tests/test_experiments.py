"""Table 3 / Table 4 overlays, W&B sweep files, divergence as a result."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftbnn_exp.app.config import CONF_DIR, compose_config, validate
from ftbnn_exp.paper import PAPER_TABLE3, PAPER_TABLE4

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
TABLE3 = sorted(p.stem for p in (CONF_DIR / "experiment" / "table3").glob("*.yaml"))
TABLE4 = sorted(p.stem for p in (CONF_DIR / "experiment" / "table4").glob("*.yaml"))


def test_overlays_cover_every_paper_row():
    assert TABLE3 == sorted(row.row for row in PAPER_TABLE3)
    assert TABLE4 == sorted(row.key for row in PAPER_TABLE4)


def test_overlays_carry_the_paper_training_settings():
    relu = compose_config(["experiment=table3/relu"])
    assert relu.optimizer.lr == 0.00015 and relu.nonlinearity.name == "relu"
    baseline = compose_config(["experiment=table3/baseline"])
    assert (baseline.trainer.max_epochs, baseline.optimizer.lr) == (60, 0.01)
    assert baseline.scheduler.name == "multistep" and baseline.optimizer.binary_weight_decay == 0
    derived = compose_config(["experiment=table4/b135_l34_g5"])
    assert (derived.model.name, derived.depth, derived.groups, derived.budget) == (
        "derived", 34, 5, 135)
    assert derived.scheduler.name == "cosine" and derived.trainer.max_epochs == 60
    assert compose_config(["experiment=table3/bireal"]).model.name == "bireal"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftbnn_exp", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def _one_batch_each(rows: list[str], tmp_path: Path) -> None:
    done = _run("-m", f"experiment={','.join(rows)}", "trainer.fast_dev_run=true",
                "data.batch_size=8", "logger=none", f"hydra.sweep.dir={tmp_path}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in tmp_path.glob("*/metrics.json")]
    assert sorted(r["experiment"] for r in results) == sorted(rows)
    assert all(r["status"] == "completed" for r in results), [
        (r["experiment"], r["status"], r.get("error")) for r in results]


@pytest.mark.slow
def test_every_table3_row_and_one_table4_row_per_depth_run_one_batch(tmp_path):
    sample = ["b90_l18_g1", "b135_l34_g5", "b135_l44_g8"]
    assert set(sample) <= set(TABLE4)
    _one_batch_each([f"table3/{r}" for r in TABLE3] + [f"table4/{r}" for r in sample], tmp_path)


@pytest.mark.slow
def test_every_table4_row_runs_one_batch(tmp_path):
    _one_batch_each([f"table4/{r}" for r in TABLE4], tmp_path)


def _sweep_combinations(file: Path) -> list[list[str]]:
    spec = yaml.safe_load(file.read_text())
    fixed = [arg for arg in spec["command"] if "=" in arg and not arg.startswith("$")]
    keys, choices = [], []
    for key, param in spec["parameters"].items():
        keys.append(key)
        choices.append(param["values"] if "values" in param else [param["value"]])
    return [fixed + [f"{k}={v}" for k, v in zip(keys, combo, strict=True)]
            for combo in itertools.product(*choices)]


@pytest.mark.parametrize("sweep", ["table3.yaml", "table4.yaml"])
def test_every_sweep_combination_composes(sweep):
    spec = yaml.safe_load((SWEEPS / sweep).read_text())
    assert spec["method"] == "grid" and "${args_no_hyphens}" in spec["command"]
    assert spec["command"][1:4] == ["python", "-m", "ftbnn_exp"]
    combinations = _sweep_combinations(SWEEPS / sweep)
    assert len(combinations) == {"table3.yaml": 9, "table4.yaml": 20}[sweep]
    for overrides in combinations:
        cfg = compose_config(overrides)
        validate(cfg)
        assert cfg.row and cfg.group in ("table3", "table4")
        assert "wandb" in cfg.logger and cfg.logger.wandb.group == cfg.group
        assert cfg.row in cfg.tags


def test_non_finite_loss_is_a_diverged_result_and_the_multirun_goes_on(tmp_path):
    done = _run("-m", "data=synthetic", "data.image_size=8", "data.noise=nan,0.5",
                "data.train_count=64", "data.val_count=32", "data.test_count=32",
                "trainer.max_epochs=2", "logger=none", f"hydra.sweep.dir={tmp_path}",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = (json.loads((tmp_path / d / "metrics.json").read_text())
                     for d in sorted(p.name for p in tmp_path.iterdir() if p.is_dir()))
    assert first["status"] == "diverged" and first["diverged_epoch"] == 0
    assert second["status"] == "completed" and second["epochs_run"] == 2
