"""What a run leaves for its users (issue 25): best.ckpt of the chosen kind, the wall time in
metrics.json, files readable like the rest, and a multirun's [k/n] progress."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ftbnn_exp.app.config import compose_config, sweep_size, validate
from ftbnn_exp.app.run import RunPlace, train_run
from ftbnn_exp.artifacts import load_checkpoint, model_from_checkpoint
from ftbnn_exp.errors import UserError

TINY = ["model=fig2", "model.kind=prelu", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none",
        "trainer.max_epochs=1"]


@pytest.mark.parametrize("kind", ["weights", "full", "none"])
def test_best_checkpoint_holds_what_checkpoint_best_asks(tmp_path, kind):
    run_dir = tmp_path / kind
    result = train_run(compose_config([*TINY, f"checkpoint.best={kind}"]), RunPlace(run_dir))
    assert result["status"] == "completed"
    best, last = run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt"
    assert "optimizer_states" in torch.load(last, weights_only=True)
    if kind == "none":
        assert not best.exists()
        return
    saved = torch.load(best, weights_only=True)
    assert ("optimizer_states" in saved) == (kind == "full")
    if kind == "weights":
        assert best.stat().st_size < last.stat().st_size
    # a weights-only best.ckpt is still a model of this framework (deploy, report, teacher)
    model = model_from_checkpoint(load_checkpoint(best))
    assert {f"model.{key}" for key in model.state_dict()} == {
        key for key in saved["state_dict"] if key.startswith("model.")}


def test_test_weights_best_without_a_best_checkpoint_is_refused():
    with pytest.raises(UserError, match=re.escape("test_weights=best needs best.ckpt; "
                                                  "checkpoint.best=none writes none")):
        validate(compose_config(["test_weights=best", "checkpoint.best=none"]))


def test_metrics_json_has_the_wall_time_and_is_readable_like_the_rest(tmp_path):
    run_dir = tmp_path / "run"
    train_run(compose_config(TINY), RunPlace(run_dir))
    record = json.loads((run_dir / "metrics.json").read_text())
    assert isinstance(record["wall_seconds"], float) and record["wall_seconds"] > 0
    umask = os.umask(0)
    os.umask(umask)
    for path in (run_dir / "metrics.json", run_dir / "checkpoints" / "last.ckpt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


@pytest.mark.parametrize(("overrides", "jobs"), [
    (["seed=1,2,3", "nonlinearity=none,prelu"], 6),
    (["seed=1"], 1),
    (["seed=range(1,5)", "model=baseline,derived"], 8),
])
def test_the_multirun_progress_counts_the_jobs_hydra_makes(overrides, jobs):
    assert sweep_size(overrides) == jobs


@pytest.mark.slow
def test_a_multirun_prints_its_progress(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ftbnn_exp", "-m", *TINY[:-1],
                           "trainer.max_epochs=1", "seed=1,2", f"hydra.sweep.dir={tmp_path}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    progress = [line for line in done.stdout.splitlines() if line.startswith("[")
                and "/2] " in line]
    assert [line.split()[0] for line in progress] == ["[1/2]", "[2/2]"]
    assert Path(progress[0].split()[1]).is_dir()


def test_an_epoch_resumed_after_its_last_batch_is_still_recorded(tmp_path):
    """A run stopped after the epoch's last training batch (SIGTERM during its validation)
    resumes with no batch left: it recorded 0 epochs though the epoch ended (seen in a killed
    ``make derived``). The row is taken at the end of training all the same."""
    from types import SimpleNamespace

    from ftbnn_exp.training.callbacks import RunRecord

    record = RunRecord(tmp_path / "metrics.json", {"run_name": "x"})
    trainer = SimpleNamespace(current_epoch=1,
                              callback_metrics={"train/loss": torch.tensor(0.5),
                                                "train/top1": torch.tensor(80.0)})
    module = SimpleNamespace(diverged_at_epoch=None)
    record.on_train_end(trainer, module)
    assert record.history == [{"epoch": 0, "train/loss": 0.5, "train/top1": 80.0}]
    assert record.status == "trained"
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs_run"] == 1
