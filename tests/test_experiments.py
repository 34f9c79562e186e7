"""Table 1 / 3 / 4 overlays, W&B sweep files and the Makefile's multiruns (seeds, resumable
sweep folders), divergence as a result, finished runs skipped on a rerun."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from ftbnn_exp.app.config import CONF_DIR, compose_config, validate
from ftbnn_exp.app.run import RunPlace, finished_earlier, train_run
from ftbnn_exp.paper import PAPER_TABLE3, PAPER_TABLE4

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"
JOB_DIR = "hydra.sweep.subdir=${row}-seed${seed}"
"""The Makefile's job folder: its row and seed, whatever the sweep's job numbers."""
TINY = ["model=fig2", "model.kind=prelu", "trainer.max_epochs=1",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "logger=none"]
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


@pytest.mark.parametrize(("sweep", "rows"), [("table1.yaml", 10), ("table3.yaml", 9),
                                             ("table4.yaml", 20)])
def test_every_sweep_combination_composes_and_every_row_runs_each_seed(sweep, rows):
    spec = yaml.safe_load((SWEEPS / sweep).read_text())
    assert spec["method"] == "grid" and "${args_no_hyphens}" in spec["command"]
    assert spec["command"][1:4] == ["python", "-m", "ftbnn_exp"]
    assert spec["parameters"]["seed"]["values"] == [1, 2, 3]
    combinations = _sweep_combinations(SWEEPS / sweep)
    assert len(combinations) == rows * 3
    seeds: dict[str, list[int]] = {}
    for overrides in combinations[::3] if sweep == "table4.yaml" else combinations:
        cfg = compose_config(overrides)
        validate(cfg)
        assert cfg.row and cfg.group == sweep.removesuffix(".yaml")
        assert "wandb" in cfg.logger and cfg.logger.wandb.group == cfg.group
        assert cfg.row in cfg.tags
        seeds.setdefault(cfg.row, []).append(cfg.seed)
    if sweep != "table4.yaml":  # composing all 60 of Table 4 adds nothing but time
        assert len(seeds) == rows and all(s == [1, 2, 3] for s in seeds.values())


def _make(*args: str) -> subprocess.CompletedProcess:
    """``make -n``: the commands a target would run (the install stamp left alone)."""
    return subprocess.run(["make", "-n", "-o", ".venv/.installed-stamp", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", ["table1", "ablation", "derived", "fig2"])
def test_make_runs_each_row_with_seeds_in_folders_named_by_row_and_seed(target, tmp_path):
    def multirun(*args: str) -> str:
        done = _make(target, f"SWEEP_DIR={tmp_path}", *args)
        assert done.returncode == 0, done.stderr
        lines = re.sub(r"\\\n\s*", " ", done.stdout).splitlines()  # continued lines joined
        return next(line for line in lines if "-m ftbnn_exp -m" in line)

    seeded, plain = multirun("SEEDS=3"), multirun()
    assert " seed=1,2,3 " in seeded and f"'{JOB_DIR}'" in seeded and f"'{JOB_DIR}'" in plain
    assert ("seed=1,2,3,4,5" in plain) if target == "fig2" else ("seed=" not in plain)
    bad = _make(target, "SEEDS=three")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith(
        "SEEDS=three is not a number of seeds; give a whole number from 1 to 1000, e.g. "
        "SEEDS=3.  Stop.")


def _mtimes(folder: Path) -> dict[str, int]:
    files = [folder / "metrics.json", *(folder / "checkpoints").glob("*.ckpt")]
    return {f.name: f.stat().st_mtime_ns for f in files}


def _top1(run_dir: Path) -> str:
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    return f"{final['test/top1']:.2f}%  top-5 {final['test/top5']:.2f}%"


def test_a_rerun_into_the_same_sweep_folder_skips_finished_jobs(tmp_path):
    """As ``make ablation SWEEP_DIR=<dir>`` run again: the finished job is found in its folder
    (named by row and seed, not by job number) and neither trained nor tested again."""
    done = tmp_path / "tiny-seed1"
    train_run(compose_config([*TINY, "row=tiny", "seed=1"]), RunPlace(done))
    before = _mtimes(done)
    assert "last.ckpt" in before and json.loads((done / "metrics.json").read_text())[
        "status"] == "completed"
    again = _run("-m", *TINY, "row=tiny", "seed=1", f"hydra.sweep.dir={tmp_path}", JOB_DIR,
                 cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [line for line in again.stdout.splitlines() if "tiny-seed1" in line] == [
        f"[1/1] {done}",
        f"skipped, finished earlier: fig2-prelu: test top-1 {_top1(done)}  "
        f"[completed, 1 epoch] -> {done / 'metrics.json'}"]
    assert _mtimes(done) == before  # not trained, not tested, nothing rewritten
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["tiny-seed1"]


def _recorded(run_dir: Path, status: str) -> None:
    """A run's record as a finished (or not) tiny run writes it, with the last.ckpt holding
    the weights it was tested with (a rerun trusts a record only with them)."""
    import torch

    from ftbnn_exp.app.run import weights_fingerprint

    config = OmegaConf.to_container(compose_config(TINY), resolve=True)
    weights = {"weight": torch.arange(4.0)}
    (run_dir / "checkpoints").mkdir()
    torch.save({"ftbnn_exp": {}, "state_dict": {f"model.{k}": v for k, v in weights.items()}},
               run_dir / "checkpoints" / "last.ckpt")
    (run_dir / "metrics.json").write_text(json.dumps({
        "status": status, "config": config, "final_fingerprint": weights_fingerprint(weights)}))


@pytest.mark.parametrize(("status", "now", "skipped"), [
    ("completed", [], True),
    ("diverged", [], True),  # a result, as a completed run's
    ("completed", ["trainer.limit_train_batches=5"], False),  # shapes the run (issue 33)
    ("completed", ["trainer.log_every_n_steps=7"], True),  # neither shapes nor scores it
    ("failed", [], False),
    ("interrupted", [], False),
    ("trained", [], False),  # killed during its final test: the test is still to run
    ("completed", ["trainer.max_epochs=2"], False),  # the resume check decides
    ("completed", ["seed=7"], False),
    ("completed", ["resume=never"], False),
    ("completed", ["trainer.max_steps=3"], False),  # train on: the resume continues
    ("completed", ["trainer.limit_test_batches=null"], False),  # score the whole test set
    ("completed", ["test_weights=best"], False),
])
def test_only_a_finished_run_of_the_same_config_is_skipped(tmp_path, status, now, skipped):
    _recorded(tmp_path, status)
    earlier = finished_earlier(compose_config([*TINY, *now]), tmp_path)
    assert (earlier is not None) is skipped


def test_non_finite_loss_is_a_diverged_result_and_the_multirun_goes_on(tmp_path):
    done = _run("-m", "data=synthetic", "data.image_size=8", "optimizer.lr=1e30,0.01",
                "data.train_count=64", "data.val_count=32", "data.test_count=32",
                "trainer.max_epochs=2", "logger=none", f"hydra.sweep.dir={tmp_path}",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = (json.loads((tmp_path / d / "metrics.json").read_text())
                     for d in sorted(p.name for p in tmp_path.iterdir() if p.is_dir()))
    # lr 1e30: the weights blow up within the first two epochs (NaN data is refused up front)
    assert first["status"] == "diverged" and first["diverged_epoch"] in (0, 1)
    assert second["status"] == "completed" and second["epochs_run"] == 2
