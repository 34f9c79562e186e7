"""Table 3 on CIFAR-10 (issue 27): every ``experiment=cifar10/<row>`` is its Table 3 row under
the CIFAR-10 recipe, and ``benchmarks/gpu_table3.sh`` runs end to end on the CPU (--dry-run):
its own CIFAR-shaped data, the backends measured, the probe and budget, the lanes, the report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ftbnn_exp.app import build
from ftbnn_exp.app.config import CONF_DIR, compose_config, validate
from ftbnn_exp.nn import part_of

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "benchmarks/gpu_table3.sh"
ROWS = sorted(p.stem for p in (CONF_DIR / "experiment" / "table3").glob("*.yaml"))
SEEDED = {"baseline", "fprelu", "prelu", "none"}


def composed(experiment: str) -> tuple:
    cfg = compose_config([f"experiment={experiment}", "data=cifar10", "logger=none"])
    specs = validate(cfg, on_this_machine=False)  # trainer=gpu is checked where a GPU is
    data = build.build_datamodule(cfg).spec  # declared by data=cifar10: no files read
    return cfg, build.build_model(build.model_spec(cfg, specs, data,
                                                   build.resolve_width(specs, None))), data


def blocks(model: nn.Module) -> list[nn.Module]:
    return [block for stage in getattr(model, "stages", []) for block in stage]


def stem_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the first stage sees: the binary models' stem, torchvision's conv1 + max-pool."""
    if hasattr(model, "stem"):
        return model.stem(x)
    return model.maxpool(model.bn1(model.conv1(x)))


def test_there_is_a_cifar10_overlay_for_every_table3_row():
    overlays = sorted(p.stem for p in (CONF_DIR / "experiment" / "cifar10").glob("*.yaml")
                      if not p.stem.startswith("_"))
    assert overlays == ROWS


@pytest.mark.parametrize("row", ROWS)
def test_cifar10_row_is_its_table3_row_under_the_recipe(row):
    cfg, model, data = composed(f"cifar10/{row}")
    paper, paper_model, _ = composed(f"table3/{row}")
    assert (data.image_size, data.in_channels, data.num_classes) == (32, 3, 10)
    for key in ("row", "model", "nonlinearity", "placement", "optimizer", "depth"):
        assert cfg[key] == paper[key], key  # the row itself is untouched
    assert [part_of(b.nonlinear).name for b in blocks(model)] == [
        part_of(b.nonlinear).name for b in blocks(paper_model)]
    assert len(blocks(model)) == (0 if row == "resnet18_fp" else 16)
    assert {n: p.shape for n, p in model.state_dict().items()} == {
        n: p.shape for n, p in paper_model.state_dict().items()}
    model.eval()
    with torch.no_grad():  # the small-input stem: 3×3/1, no max-pool
        assert stem_output(model, torch.zeros(1, 3, 32, 32)).shape[-2:] == (32, 32)
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert cfg.data.name == "cifar10" and cfg.data.batch_size == 512
    assert cfg.augment._target_.endswith("CifarCrop") and cfg.scheduler.name == "cosine"
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "bf16-mixed")
    assert cfg.run_name == f"cifar10-{row}" and cfg.group == "table3"


def run_script(*args: str, timeout: int = 900,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PY": sys.executable, **(env or {})})


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "0", "--dry-run"], "--epochs '0' is not a whole number from 1"),
    (["--seeds", "two", "--dry-run"], "--seeds 'two' is not a whole number from 1"),
    (["--bogus"], "unknown argument '--bogus'; usage: "),
    (["--rows", "baseline,foo", "--dry-run"], "--rows: 'foo' is not a row; allowed: baseline,"),
    (["--rows", "none,baseline,none", "--dry-run"], "--rows: none given twice"),
    ([], "--data is required"),
    (["--data"], "--data needs a value"),
    (["--data", "/no/such/cifar10"], "--data '/no/such/cifar10' does not exist"),
    (["--data", "README.md"], "--data 'README.md' is a file, not a .zip"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, args, message):
    done = run_script(*args, "--out", str(tmp_path / "out"), timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {message}") and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_tree_without_train_and_test_is_named(tmp_path):
    (tmp_path / "images" / "cats").mkdir(parents=True)
    done = run_script("--data", str(tmp_path / "images"), "--out", str(tmp_path / "out"),
                      timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --data '{tmp_path / 'images'}': no train/<class> and test/<class> folders in "
        f"it or in one folder below it (the CIFAR-10 zip holds cifar10/train/<class>/*.jpg, "
        f"cifar10/test/...)"]


def table_rows(report: str) -> dict[str, list[str]]:
    """The cells of each row of report.md's Table 3 (its first table)."""
    section = report.split("## Table 3", 1)[1]
    lines = section.split("\n\n", 2)[1].splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {c[1]: c for c in cells}


def check_job(folder: Path, row: str, seed: int, backend: str) -> None:
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["status"], metrics["experiment"], metrics["row"], metrics["seed"]) == (
        "completed", f"cifar10/{row}", row, seed)
    assert metrics["epochs_run"] == 1 and metrics["config"]["trainer"]["max_epochs"] == 1
    assert metrics["config"]["data"]["backend"] == backend
    assert metrics["config"]["data"]["root"].endswith("/cifar10")
    assert (folder / "csv").is_dir() and not list(folder.rglob("*.ckpt"))


@pytest.mark.slow
def test_dry_run_of_three_rows_end_to_end(tmp_path):
    """The script's steps on the CPU but gpu.sh (its dry run is tests/test_benchmarks.py's):
    three rows keep it short, one lane running two experiments in one multirun, two seeds
    for the rows that get them; test_full_dry_run runs everything."""
    out = tmp_path / "out"
    done = run_script("--dry-run", "--skip-gpu-sh", "--rows", "baseline,none,bireal",
                      "--seeds", "2", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    backend = (out / "backends.txt").read_text().splitlines()[-1].split("=")[-1]
    assert backend in {"pil", "torchvision", "dali"}
    assert "s per epoch" in done.stderr and "(dry run: would train " in done.stderr
    assert "  lane 1: baseline,bireal" in done.stdout
    probe = json.loads((out / "probe" / "metrics.json").read_text())
    assert probe["status"] == "completed" and probe["epochs_run"] == 2
    jobs = [("baseline", 1), ("baseline", 2), ("bireal", 1), ("none", 1), ("none", 2)]
    for row, seed in jobs:
        check_job(out / "table3" / f"{row}-seed{seed}", row, seed, backend)
    cells = table_rows((out / "table3" / "report.md").read_text())
    assert sorted(cells) == ROWS
    assert {row: cells[row][4] for row in ROWS} == {
        r: {"baseline": "2", "none": "2", "bireal": "1"}.get(r, "0") for r in ROWS}
    assert "±" in cells["baseline"][2] and cells["prelu"][2] == "missing"
    with (out / "table3" / "report-table3-runs.csv").open() as stream:
        runs = list(csv.DictReader(stream))
    assert sorted((r["row"], int(r["seed"]), r["result"]) for r in runs) == [
        (row, seed, "completed") for row, seed in jobs]
    assert (out / "table3" / "curves-table3.png").stat().st_size > 0
    assert done.stdout.strip().splitlines()[-1].startswith("done in ")
    assert (out / "gpu_table3.log").is_file() and not list(out.rglob("*.ckpt"))


@pytest.mark.slow
def test_full_dry_run(tmp_path):
    """`--dry-run` as a user runs it: gpu.sh's dry run, then every row, seeds 1-3 for the four
    rows the issue names (several minutes on 2 cores)."""
    out = tmp_path / "out"
    done = run_script("--dry-run", "--out", str(out), timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FTBNN-18 training, 64 px" in (out / "gpu-sh.log").read_text()
    assert json.loads((out / "gpu-sh" / "gpu-run" / "metrics.json").read_text())[
        "status"] == "completed"
    backend = (out / "backends.txt").read_text().splitlines()[-1].split("=")[-1]
    for row in ROWS:
        for seed in range(1, 4 if row in SEEDED else 2):
            check_job(out / "table3" / f"{row}-seed{seed}", row, seed, backend)
    cells = table_rows((out / "table3" / "report.md").read_text())
    assert {row: cells[row][4] for row in ROWS} == {r: "3" if r in SEEDED else "1"
                                                    for r in ROWS}


@pytest.mark.slow
def test_lanes_stop_at_the_deadline_and_the_report_is_still_written(tmp_path):
    out = tmp_path / "out"
    done = run_script("--dry-run", "--skip-gpu-sh", "--rows", "baseline", "--seeds", "1",
                      "--epochs", "1000", "--out", str(out), env={"GPU_TABLE3_LIMIT_S": "75"})
    assert done.returncode == 1
    assert "failed: lane 1 (baseline) was stopped at the deadline" in done.stdout
    metrics = json.loads((out / "table3" / "baseline-seed1" / "metrics.json").read_text())
    assert metrics["status"] != "completed" and 0 < metrics["epochs_run"] < 1000
    assert table_rows((out / "table3" / "report.md").read_text())["baseline"][4] == "0"
