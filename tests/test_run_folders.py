"""Run folders: one run at a time (run.lock), reruns of finished runs, checkpoints written
whole or not at all, and a disk that fills up mid-run."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import torch

from ftbnn_exp.app.config import compose_config
from ftbnn_exp.app.run import RunPlace, train_run
from ftbnn_exp.app.storage import LOCK, RESERVE, check_free_space, own_run_folder
from ftbnn_exp.errors import UserError
from ftbnn_exp.training import callbacks, checkpoint_io
from ftbnn_exp.training.checkpoint_io import AtomicCheckpointIO, DiskFull

TINY = ["model=fig2", "model.kind=prelu", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none",
        "trainer.deterministic=true"]


def ftbnn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftbnn_exp", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def tiny_run(run_dir: Path, epochs: int = 1) -> dict:
    return train_run(compose_config([*TINY, f"trainer.max_epochs={epochs}"]), RunPlace(run_dir))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_a_second_run_into_a_live_folder_is_refused_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with own_run_folder(run_dir):  # this test's process is the live owner
        owner = json.loads((run_dir / LOCK).read_text())
        refused = ftbnn(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines() == [
        f"error: run folder {run_dir} is in use by pid {os.getpid()} on {socket.gethostname()} "
        f"(since {owner['started']}); wait for that run to end or choose another hydra.run.dir"]
    assert not (run_dir / "metrics.json").exists()  # the live run's record is untouched
    assert not (run_dir / LOCK).exists()  # released


@pytest.mark.slow
def test_multirun_jobs_each_own_their_folder(tmp_path):
    sweep = tmp_path / "sweep"
    busy, free = sweep / "0-fig2-prelu", sweep / "1-fig2-prelu"
    busy.mkdir(parents=True)
    with own_run_folder(busy):
        done = ftbnn("-m", *TINY, "trainer.max_epochs=1", "seed=1,2",
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert f"run folder {busy} is in use by pid {os.getpid()}" in done.stderr
    assert not (busy / "metrics.json").exists()  # the live run's to write
    assert metrics(free)["status"] == "completed" and not (free / LOCK).exists()


@pytest.mark.parametrize(("owner", "env", "taken"), [
    ({"pid": "dead"}, {}, True),
    ({"pid": "mine", "process_start": "1"}, {}, True),  # a pid reused by a later process
    ({"pid": "mine"}, {}, False),  # alive (recorded where the file system has no locks)
    ({"pid": 1, "host": "elsewhere"}, {}, False),  # cannot be asked
    ({"pid": 1, "host": "elsewhere", "slurm_job": "7", "slurm_restart": 0},
     {"SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "1"}, True),  # this job before its requeue
], ids=["dead-pid", "reused-pid", "live-pid", "other-host", "slurm-requeue"])
def test_a_lock_is_taken_over_only_from_an_owner_that_has_ended(tmp_path, capsys, monkeypatch,
                                                                  owner, env, taken):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pid = {"dead": dead_pid(), "mine": os.getpid()}.get(owner["pid"], owner["pid"])
    lock = tmp_path / LOCK
    lock.write_text(json.dumps({"host": socket.gethostname(), "started": "2024-05-01T10:00:00",
                                **owner, "pid": pid}))
    if taken:
        with own_run_folder(tmp_path):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert capsys.readouterr().out == (
            f"run folder {tmp_path}: taking over {LOCK} of pid {pid} on "
            f"{owner.get('host', socket.gethostname())} (since 2024-05-01T10:00:00), which has "
            f"ended\n")
        assert not lock.exists()
    else:
        with pytest.raises(UserError, match=rf"^run folder {re.escape(str(tmp_path))} is in "
                           rf"use by pid {pid} .*; if no run is using it, delete "
                           rf"{re.escape(str(lock))}$"):
            with own_run_folder(tmp_path):
                pass
        assert json.loads(lock.read_text())["pid"] == pid  # left to its owner


def test_a_stage_owns_its_subfolder_inside_its_pipelines_folder(tmp_path):
    (tmp_path / "stage0").mkdir()
    with own_run_folder(tmp_path), own_run_folder(tmp_path / "stage0"):
        assert (tmp_path / LOCK).is_file() and (tmp_path / "stage0" / LOCK).is_file()
        with pytest.raises(UserError, match="is in use by pid"), \
                own_run_folder(tmp_path):
            pass
    assert not (tmp_path / LOCK).exists() and not (tmp_path / "stage0" / LOCK).exists()


def test_orphans_of_a_killed_write_are_removed_at_the_next_start(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    orphans = [checkpoints / ".last.ckpt.k2j4x9.tmp", tmp_path / ".metrics.json.a8b.tmp"]
    kept = [checkpoints / "last.ckpt", tmp_path / "metrics.json", tmp_path / "notes.tmp"]
    for path in orphans + kept:
        path.write_bytes(b"x")
    with own_run_folder(tmp_path):
        assert all(p.exists() for p in kept) and not any(p.exists() for p in orphans)


def test_a_rerun_of_a_finished_run_keeps_it_completed(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    first = tiny_run(run_dir)
    again = tiny_run(run_dir)
    assert "[completed, 1 epoch]" in capsys.readouterr().out.splitlines()[-1]
    record = metrics(run_dir)
    assert record["status"] == again["status"] == "completed"
    assert record["final"] == first["final"] and "test/top1" in record["final"]
    assert record["history"] == first["history"]
    # Killed during the final test: training had finished, the test had not.
    killed = tmp_path / "killed"
    with monkeypatch.context() as patch:
        patch.setattr("lightning.Trainer.test", lambda *args, **kwargs: [])  # never tested
        tiny_run(killed)
    assert metrics(killed)["status"] == "trained"
    assert tiny_run(killed)["status"] == metrics(killed)["status"] == "completed"
    assert metrics(killed)["final"] == first["final"]


REAL_SAVE = torch.save


class FullDisk:
    """A file that takes ``room`` more bytes, then fails as a full disk does."""

    def __init__(self, stream: BinaryIO, room: int) -> None:
        self.stream, self.room = stream, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.stream.write(data)

    def flush(self) -> None:
        self.stream.flush()


def save_into(room: int) -> Callable[[Any, BinaryIO], None]:
    """torch.save onto a disk with ``room`` bytes left (torch then raises a RuntimeError
    about the file position, the full disk as its context)."""
    return lambda obj, stream: REAL_SAVE(obj, FullDisk(stream, room))


def test_a_checkpoint_write_is_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1}, target)
    seen = []

    def watched(obj: Any, stream: BinaryIO) -> None:
        seen.extend(target.parent.glob(".last.ckpt.*.tmp"))
        REAL_SAVE(obj, stream)

    monkeypatch.setattr(checkpoint_io.torch, "save", watched)
    io.save_checkpoint({"epoch": 2}, target)
    assert len(seen) == 1  # written beside its target, never in $TMPDIR

    def broken(obj: Any, stream: BinaryIO) -> None:
        stream.write(b"half a checkpoint")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(checkpoint_io.torch, "save", broken)
    with pytest.raises(OSError, match="Input/output error"):
        io.save_checkpoint({"epoch": 3}, target)
    monkeypatch.setattr(checkpoint_io.torch, "save", save_into(room=100))
    with pytest.raises(DiskFull) as full:
        io.save_checkpoint({"epoch": 3, "w": torch.zeros(1000)}, target)
    assert str(full.value) == (f"no space left in {target.parent} while writing last.ckpt; "
                               f"free space there, then rerun the same command to resume from "
                               f"the last whole checkpoint")
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"epoch": 2}
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_a_full_disk_mid_run_stops_interrupted_and_keeps_the_last_checkpoint(tmp_path,
                                                                              monkeypatch):
    run_dir = tmp_path / "run"
    saves = []

    def filling(obj: Any, stream: BinaryIO) -> None:  # full after epoch 0's best and last
        saves.append(obj)
        return REAL_SAVE(obj, stream) if len(saves) <= 2 else save_into(4096)(obj, stream)

    monkeypatch.setattr(checkpoint_io.torch, "save", filling)
    with pytest.raises(DiskFull) as full:
        tiny_run(run_dir, epochs=2)
    monkeypatch.undo()
    message = str(full.value)
    assert "\n" not in message
    assert message.startswith(f"no space left in {run_dir / 'checkpoints'} while writing ")
    record = metrics(run_dir)
    assert record["status"] == "interrupted" and record["epochs_run"] == 1
    checkpoints = run_dir / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 0
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    # Space freed: the same command resumes from the last whole checkpoint and finishes.
    resumed = tiny_run(run_dir, epochs=2)
    assert resumed["status"] == "completed" and [r["epoch"] for r in resumed["history"]] == [0, 1]


def test_a_disk_filled_by_others_still_gets_the_runs_last_word(tmp_path, monkeypatch):
    """Another process fills the disk: metrics.json's own write is the first to fail, and
    the run's reserve makes room for its status."""
    run_dir = tmp_path / "run"
    real_write = callbacks.write_json_atomic

    def full_while_reserved(path: Path, payload: dict) -> None:
        if payload["epochs_run"] and (run_dir / RESERVE).exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, payload)

    monkeypatch.setattr(callbacks, "write_json_atomic", full_while_reserved)
    with pytest.raises(DiskFull, match=f"^no space left in {re.escape(str(run_dir))} while "
                       f"writing metrics.json; "):
        tiny_run(run_dir, epochs=2)
    assert metrics(run_dir)["status"] == "interrupted"


def test_the_free_space_check_counts_the_checkpoints_the_folder_holds(tmp_path, monkeypatch):
    model = torch.nn.Linear(1000, 1000)  # four checkpoints and the logs: about 110 MB
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("Usage", (), {"free": 10 * 2**20}))
    (tmp_path / "checkpoints").mkdir()
    with open(tmp_path / "checkpoints" / "last.ckpt", "wb") as stream:
        stream.truncate(50 * 2**20)  # a sparse file: its size is what counts
    with pytest.raises(UserError, match=rf"^only 10 MB free under {re.escape(str(tmp_path))} "
                       r"besides the 50 MB of its checkpoints; .* about 110 MB; free space there"):
        check_free_space(tmp_path, model)
    with open(tmp_path / "checkpoints" / "best.ckpt", "wb") as stream:
        stream.truncate(50 * 2**20)
    check_free_space(tmp_path, model)  # 10 MB free + 100 MB rewritten in place


def test_a_run_folder_is_a_type_that_reads_the_layout_older_runs_wrote(tmp_path):
    """RunFolder alone knows the names (issue 34); a folder as every earlier version laid it
    out (checkpoints/last, interrupted, step-N; SLURM's hpc_ckpt_N beside metrics.json) reads,
    and its record round-trips with the keys the recorder writes."""
    from ftbnn_exp.artifacts import BEST, INTERRUPTED, LAST, Metric, RunFolder

    (tmp_path / "checkpoints").mkdir()
    written = ["checkpoints/step-3.ckpt", "hpc_ckpt_1.ckpt", "checkpoints/interrupted.ckpt",
               "checkpoints/last.ckpt", "checkpoints/best.ckpt"]
    for age, name in enumerate(written):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, ns=(10**9 * age, 10**9 * age))
    folder = RunFolder(tmp_path)
    assert (folder.checkpoint(LAST), folder.checkpoint(BEST), folder.checkpoint(INTERRUPTED)) \
        == tuple(tmp_path / "checkpoints" / f"{n}.ckpt" for n in ("last", "best", "interrupted"))
    assert folder.tested_checkpoint("best").name == "best.ckpt"
    assert folder.tested_checkpoint(None).name == "last.ckpt"
    # newest first, best.ckpt never a resume point
    assert [p.relative_to(tmp_path).as_posix() for p in folder.resume_candidates()] == \
        written[3::-1]
    assert sorted(p.name for p in folder.checkpoint_files()) == sorted(
        Path(n).name for n in written)
    assert not folder.has_metrics()
    folder.write_metrics({Metric.STATUS: "completed", Metric.FINAL: {Metric.TEST_TOP1: 50.0}})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "status": "completed", "final": {"test/top1": 50.0}}
    assert folder.read_metrics()[Metric.STATUS] == "completed"
    record = callbacks.RunRecord(folder.metrics_file, {}).payload()
    assert {Metric.STATUS, Metric.EPOCHS_RUN, Metric.WALL_SECONDS, Metric.FINAL, Metric.BEST,
            Metric.HISTORY} <= record.keys()
