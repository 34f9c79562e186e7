"""Nothing lost: exact resume, SIGTERM, atomic files, unreadable images, full or unwritable disks,
and the cluster settings (trainer presets, SLURM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ftbnn_exp.app.build import cluster_plugins, scaled_optimizer, use_channels_last, wandb_run_id
from ftbnn_exp.app.config import compose_config, validate
from ftbnn_exp.app.storage import (
    RESUME_KEYS,
    ResumePoint,
    check_free_space,
    resume_checkpoint,
)
from ftbnn_exp.artifacts import write_json_atomic
from ftbnn_exp.data import FolderDataModule
from ftbnn_exp.errors import CorruptImageError, UserError, one_line_message

SHORT = ["trainer.limit_train_batches=4", "trainer.deterministic=true"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftbnn_exp", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_resume_picks_the_newest_good_checkpoint(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    assert resume_checkpoint("auto", tmp_path) == (None, [])
    good = {**{key: 0 for key in RESUME_KEYS}, "state_dict": {},
            "ftbnn_exp": {"config": {"seed": 1}}}
    for i, path in enumerate([checkpoints / "last.ckpt", tmp_path / "hpc_ckpt_1.ckpt",
                              checkpoints / "step-12.ckpt", checkpoints / "interrupted.ckpt"]):
        torch.save(good, path)
        stamp = 1_000_000 + i
        os.utime(path, (stamp, stamp))
        assert resume_checkpoint("auto", tmp_path) == (ResumePoint(path, {"seed": 1}), [])
    with pytest.raises(UserError, match=r"resume=never but .* already holds"):
        resume_checkpoint("never", tmp_path)
    assert resume_checkpoint("never", tmp_path / "fresh") == (None, [])
    with pytest.raises(UserError, match="resume=nope is not a checkpoint file"):
        resume_checkpoint("nope", tmp_path)


def test_json_writes_are_atomic(tmp_path, monkeypatch):
    """(Checkpoints: tests/test_run_folders.py.)"""
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"epoch": 1})
    real_fsync = os.fsync

    def crash(descriptor: int) -> None:  # the new text is written, not yet on the disk
        if os.fstat(descriptor).st_size:
            raise OSError("disk full")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(target, {"epoch": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_unwritable_output_fails_at_start(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_cli(f"hydra.run.dir={blocker}/run", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: output directory {blocker}/run cannot be created: {blocker} is not a folder; "
        f"set hydra.run.dir (or hydra.sweep.dir) to a writable folder"]


def test_too_little_disk_space_fails_before_training(tmp_path, monkeypatch):
    model = torch.nn.Linear(1000, 1000)
    free = type("Usage", (), {"free": 10 * 2**20})()
    monkeypatch.setattr("shutil.disk_usage", lambda path: free)
    with pytest.raises(UserError, match=r"only 10 MB free under .*about 110 MB"):
        check_free_space(tmp_path, model)


def _image_folder(root: Path, corrupt: bool) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", format="JPEG")
    bad = root / "train" / "b" / "broken.JPEG"
    if corrupt:
        bad.write_bytes(b"not a jpeg")
    return bad


def test_an_unreadable_image_is_named_in_one_line(tmp_path):
    bad = _image_folder(tmp_path / "imagenet", corrupt=True)
    dm = FolderDataModule(seed=0, name="imagenet", root=str(tmp_path / "imagenet"), num_classes=2,
                          image_size=32, batch_size=16)
    dm.setup()
    with pytest.raises(CorruptImageError) as caught:
        next(iter(dm.train_dataloader()))
    assert str(bad) in one_line_message(caught.value)
    done = run_cli("data=imagenet", f"data.root={tmp_path / 'imagenet'}", "data.num_classes=2",
                   "data.image_size=32", "data.num_workers=1", "trainer.max_epochs=1",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot read image {bad} (UnidentifiedImageError")
    assert last.endswith("set data.skip_corrupt=true to skip unreadable images")
    assert metrics(tmp_path / "run")["status"] == "failed"


def test_unreadable_images_can_be_skipped_and_are_counted(tmp_path):
    bad = _image_folder(tmp_path / "imagenet", corrupt=True)
    run_dir = tmp_path / "run"
    done = run_cli("data=imagenet", f"data.root={tmp_path / 'imagenet'}", "data.num_classes=2",
                   "data.image_size=32", "data.num_workers=0", "data.skip_corrupt=true",
                   "trainer.max_epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert metrics(run_dir)["skipped_images"] == 2  # read once per epoch
    assert (run_dir / "skipped_images.txt").read_text().splitlines() == [str(bad)] * 2
    assert f"skipped 2 unreadable images, listed in {run_dir / 'skipped_images.txt'}" in (
        done.stdout)


@pytest.mark.slow
def test_ddp_cpu_trains_two_processes(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("trainer=ddp_cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = metrics(run_dir)
    assert record["world_size"] == 2 and record["status"] == "completed"
    assert done.stdout.count("test top-1") == 1  # rank zero speaks


def test_trainer_presets():
    gpu = compose_config(["trainer=gpu"])
    assert (gpu.trainer.accelerator, gpu.trainer.precision) == ("gpu", "bf16-mixed")
    assert use_channels_last(gpu) and not use_channels_last(compose_config([]))
    ddp = compose_config(["trainer=ddp", "trainer.sync_batchnorm=true"])
    assert (ddp.trainer.strategy, ddp.trainer.devices, ddp.trainer.sync_batchnorm) == (
        "ddp", "auto", True)
    cpu2 = compose_config(["trainer=ddp_cpu"])
    assert (cpu2.trainer.accelerator, cpu2.trainer.devices) == ("cpu", 2)


def test_linear_lr_scaling_is_opt_in():
    cfg = compose_config(["data.batch_size=64", "trainer.accumulate_grad_batches=2"])
    assert scaled_optimizer(cfg, validate(cfg).optimizer, world_size=8).lr == 0.01
    cfg = compose_config(["data.batch_size=64", "trainer.accumulate_grad_batches=2",
                          "optimizer.scale_lr=true"])
    scaled = scaled_optimizer(cfg, validate(cfg).optimizer, world_size=8)
    assert scaled.lr == pytest.approx(0.01 * 64 * 8 * 2 / 256)


def test_slurm_launcher_and_lightning_requeue(monkeypatch):
    from hydra import compose, initialize_config_dir

    from ftbnn_exp.app.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "trainer=ddp",
                                           "trainer.num_nodes=4"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.max_num_timeout) == (4, 8, 30)
    assert cluster_plugins() == []
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "8")
    monkeypatch.setenv("SLURM_JOB_NAME", "ftbnn")
    previous = signal.getsignal(signal.SIGUSR2)
    try:
        (plugin,) = cluster_plugins()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert plugin.auto_requeue and plugin.requeue_signal == signal.SIGUSR2


def test_wandb_run_id_survives_a_restart(tmp_path):
    first = wandb_run_id(tmp_path)
    assert wandb_run_id(tmp_path) == first and len(first) >= 8
