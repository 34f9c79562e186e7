"""Exact resume from any interrupt (SIGTERM mid-epoch, SLURM's USR2), checkpoints that survive
corruption, no torn files, and resumes that refuse to mix two different runs."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ftbnn_exp.app.config import compose_config
from ftbnn_exp.app.run import RunPlace, train_run
from ftbnn_exp.app.storage import RESUME_KEYS

PLUGINS = Path(__file__).parent / "plugins"
DETERMINISTIC = ["trainer.deterministic=true", "logger=none"]


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PLUGINS), **(env or {})}


def ftbnn(*args: str, cwd: Path, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftbnn_exp", *args], cwd=cwd,
                          env=environment(env), capture_output=True, text=True, timeout=600)


def start(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    """``ftbnn(*args)`` in the background, its output in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "ftbnn_exp", *args], cwd=cwd,
                                env=environment(), stdout=out, stderr=subprocess.STDOUT)


def outcome(run_dir: Path) -> tuple[dict, dict, dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return state, metrics["history"], metrics["final"]


def same_state(a: object, b: object) -> bool:
    """Equal nested states (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(
            same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def rng_states(run_dir: Path) -> dict:
    """The RNG states of torch, NumPy and Python in the run's last checkpoint."""
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"][
        "RngState"]


def assert_same_run(a: Path, b: Path) -> None:
    (wa, ha, fa), (wb, hb, fb) = outcome(a), outcome(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert ha == hb  # every epoch once, with the same numbers
    assert fa == fb and "test/top1" in fa
    # the resumed run's random generators stand where the uninterrupted run's do
    rng_a, rng_b = rng_states(a), rng_states(b)
    assert not [name for name in rng_a if not same_state(rng_a[name], rng_b.get(name))]


def interrupt_at(epoch: int, batch: int, marker: Path, signal_name: str = "SIGTERM") -> str:
    return (f"+callbacks.interrupt={{_target_:ftbnn_plugin_demo.SigtermAt,epoch:{epoch},"
            f"batch:{batch},marker:{marker},signal_name:{signal_name}}}")


@pytest.mark.parametrize("data", [
    ["trainer.limit_train_batches=6"],
    # image files with random crops and flips, read by two workers (epochs of 4 batches: the
    # rerun's batch comes from the second worker)
    pytest.param(["data=folder", "data.image_size=16", "data.num_workers=2", "augment=he2016",
                  "data.batch_size=10", "model=fig2", "model.kind=prelu"], marks=pytest.mark.slow),
], ids=["digits", "folder-he2016-2-workers"])
def test_sigterm_mid_epoch_then_rerun_equals_an_uninterrupted_run(tmp_path, data):
    if "data=folder" in data:
        from test_folder_data import digits_folder

        root = digits_folder(tmp_path / "images", {"train": 40, "val": 10}, size=20)
        data = [*data, f"data.root={root}"]
    common = [*DETERMINISTIC, *data, "trainer.max_epochs=2"]
    split = [*common, interrupt_at(1, 2, tmp_path / "sent"), f"hydra.run.dir={tmp_path / 'b'}"]
    # the uninterrupted run goes alongside the interrupted one: less wall time, a busy CPU
    with start(*common, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path,
               log=tmp_path / "whole.log") as whole:
        stop_then_resume(split, tmp_path / "b", cwd=tmp_path)
        assert whole.wait(timeout=600) == 0, (tmp_path / "whole.log").read_text()[-2000:]
    assert_same_run(tmp_path / "whole", tmp_path / "b")


def best_checkpoint(run_dir: Path) -> tuple[dict, int]:
    """best.ckpt's weights and the epoch it was taken at."""
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    return best["state_dict"], best["epoch"]


@pytest.mark.slow
def test_sigterm_after_the_last_batch_during_validation_then_rerun_resume_redoes_it(tmp_path):
    """SIGTERM in epoch 1's last training batch: Lightning defers it to the validation that
    follows, which stops after its first batch (interrupted.ckpt mid-validation). The same
    command must run that validation again: the history (val/top1 of epoch 1 included) and
    best.ckpt equal an uninterrupted run's (the old resume skipped it: epoch 1 had no
    val/top1 and best-checkpoint selection never saw it)."""
    common = [*DETERMINISTIC, "trainer.limit_train_batches=4", "trainer.limit_val_batches=3",
              "data.batch_size=32", "trainer.max_epochs=2"]
    split = [*common, interrupt_at(1, 3, tmp_path / "sent"), f"hydra.run.dir={tmp_path / 'b'}"]
    with start(*common, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path,
               log=tmp_path / "whole.log") as whole:
        stopped = ftbnn(*split, cwd=tmp_path)
        assert stopped.returncode == 143, stopped.stderr[-2000:]
        interrupted = torch.load(tmp_path / "b" / "checkpoints" / "interrupted.ckpt",
                                 weights_only=True)
        val = interrupted["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
        assert interrupted["epoch"] == 1 and 0 < val["current"]["completed"] < 3  # mid-way
        rerun = ftbnn(*split, cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert "could not find the monitored key" not in rerun.stdout + rerun.stderr
        assert whole.wait(timeout=600) == 0, (tmp_path / "whole.log").read_text()[-2000:]
    assert_same_run(tmp_path / "whole", tmp_path / "b")
    assert all("val/top1" in row for row in outcome(tmp_path / "b")[1])
    (wa, ea), (wb, eb) = best_checkpoint(tmp_path / "whole"), best_checkpoint(tmp_path / "b")
    assert ea == eb and wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_of_a_validation_cut_short_in_process_equals_an_uninterrupted_run(
        tmp_path, monkeypatch):
    """The fast variant of the test above: the same SIGTERM, runs in this process."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    common = ["model=fig2", "model.kind=prelu", "trainer.limit_train_batches=2",
              "trainer.limit_val_batches=3", "trainer.limit_test_batches=1",
              "data.batch_size=32", "trainer.max_epochs=2", *DETERMINISTIC]
    split = [*common, interrupt_at(1, 1, tmp_path / "sent")]
    train_run(compose_config(common), RunPlace(tmp_path / "whole"))
    with pytest.raises(SIGTERMException):
        train_run(compose_config(split), RunPlace(tmp_path / "b"))
    val = torch.load(tmp_path / "b" / "checkpoints" / "interrupted.ckpt", weights_only=True)[
        "loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
    assert 0 < val["current"]["completed"] < 3  # stopped during epoch 1's validation
    train_run(compose_config(split), RunPlace(tmp_path / "b"))
    assert_same_run(tmp_path / "whole", tmp_path / "b")
    assert all("val/top1" in row for row in outcome(tmp_path / "b")[1])
    (wa, ea), (wb, eb) = best_checkpoint(tmp_path / "whole"), best_checkpoint(tmp_path / "b")
    assert ea == eb and all(torch.equal(wa[k], wb[k]) for k in wa)


def stop_then_resume(split: list[str], run_dir: Path, cwd: Path) -> None:
    """``split`` is stopped by SIGTERM in epoch 1 (exit 143, recorded as interrupted), then the
    same command resumes from ``interrupted.ckpt`` and finishes."""
    stopped = ftbnn(*split, cwd=cwd)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert "stopped by SIGTERM" in stopped.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_run"] == 1
    rerun = ftbnn(*split, cwd=cwd)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming from {run_dir / 'checkpoints' / 'interrupted.ckpt'}" in rerun.stdout
    assert "not resumable" not in rerun.stdout + rerun.stderr


@pytest.mark.slow
def test_slurm_usr2_requeue_resumes_from_its_hpc_checkpoint(tmp_path):
    """USR2 (hydra/launcher=slurm's time-limit signal): Lightning saves hpc_ckpt_*.ckpt and
    asks SLURM to requeue; the fake scontrol here kills the job as SLURM would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text("#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/requeued\"\n"
                        "kill -KILL $PPID\n")
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "ftbnn", "SLURM_NTASKS": "1",
             "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
             "SLURM_NODEID": "0", "SLURM_NNODES": "1",
             "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    common = [*DETERMINISTIC, "trainer.limit_train_batches=6", "trainer.max_epochs=2"]
    whole = ftbnn(*common, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    split = [*common, interrupt_at(1, 3, tmp_path / "sent", "SIGUSR2"),
             f"hydra.run.dir={tmp_path / 'job'}"]
    killed = ftbnn(*split, cwd=tmp_path, env=slurm)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (bin_dir / "requeued").read_text().split() == ["requeue", "4242"]
    hpc = sorted((tmp_path / "job").glob("hpc_ckpt_*.ckpt"))
    assert len(hpc) == 1
    requeued = ftbnn(*split, cwd=tmp_path, env=slurm)
    assert requeued.returncode == 0, requeued.stderr[-2000:]
    assert f"resuming from {hpc[0]}" in requeued.stdout
    assert not hpc[0].exists()  # spent: a later rerun resumes from last.ckpt
    assert_same_run(tmp_path / "whole", tmp_path / "job")


@pytest.mark.slow
def test_a_truncated_checkpoint_is_skipped_or_refused_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    common = [*DETERMINISTIC, "trainer.limit_train_batches=4", "trainer.max_epochs=2",
              "checkpoint.every_n_steps=3", "checkpoint.keep_last=2", f"hydra.run.dir={run_dir}"]
    done = ftbnn(*common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = run_dir / "checkpoints"
    assert sorted(p.name for p in folder.glob("step-*.ckpt")) == ["step-3.ckpt", "step-6.ckpt"]
    last = folder / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a disk that filled up
    rerun = ftbnn(*common, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    skipped = [line for line in rerun.stdout.splitlines() if line.startswith("resume: skipped")]
    assert len(skipped) == 1 and str(last) in skipped[0] and "cannot be read" in skipped[0]
    assert f"resuming from {folder / 'step-6.ckpt'}" in rerun.stdout
    assert [row["epoch"] for row in json.loads((run_dir / "metrics.json").read_text())[
        "history"]] == [0, 1]
    last.write_bytes(b"truncated")
    refused = ftbnn(*common[:-1], f"resume={last}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: resume={last} cannot be resumed")
    assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_extending_a_finished_run_is_refused_or_rescaled(tmp_path):
    common = [*DETERMINISTIC, "trainer.limit_train_batches=4"]
    straight = ftbnn(*common, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'two'}",
                     cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]
    one = [*common, f"hydra.run.dir={tmp_path / 'one'}"]
    assert ftbnn(*one, "trainer.max_epochs=1", cwd=tmp_path).returncode == 0
    refused = ftbnn(*one, "trainer.max_epochs=2", cwd=tmp_path)
    assert refused.returncode == 2
    line = refused.stderr.strip().splitlines()
    assert len(line) == 1 and "trainer.max_epochs (1 -> 2) differ" in line[0]
    assert "resume_changes=rescale" in line[0] and "hydra.run.dir" in line[0]
    other = ftbnn(*one, "trainer.max_epochs=1", "optimizer.lr=0.02", cwd=tmp_path)
    assert other.returncode == 2 and "optimizer.lr (0.01 -> 0.02)" in other.stderr
    assert "rescale" not in other.stderr
    kept = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert kept["status"] == "completed" and len(kept["history"]) == 1  # nothing lost
    assert "optimizer.lr" in kept["last_attempt"]["error"]
    rescaled = ftbnn(*one, "trainer.max_epochs=2", "resume_changes=rescale", cwd=tmp_path)
    assert rescaled.returncode == 0, rescaled.stderr[-2000:]
    assert "(schedule rescaled to 2 epochs)" in rescaled.stdout
    # Epoch 2 on the 2-epoch schedule: the same weights as the straight 2-epoch run.
    (wa, ha, _), (wb, hb, _) = outcome(tmp_path / "two"), outcome(tmp_path / "one")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [row["lr/binary"] for row in ha] == [row["lr/binary"] for row in hb] == [0.01] * 2


_WRITER = """
import sys, torch
from lightning.fabric.utilities.cloud_io import _atomic_save
from ftbnn_exp.artifacts import write_json_atomic
folder = sys.argv[1]
state = {{key: 0 for key in {keys}}}
state["state_dict"] = {{"w": torch.randn(3_000_000)}}
print("ready", flush=True)
for i in range(10_000):
    state["epoch"] = i
    _atomic_save(state, folder + "/last.ckpt")
    write_json_atomic(folder + "/metrics.json", {{"epoch": i, "history": list(range(i))}})
"""


@pytest.mark.slow
def test_a_kill_during_a_write_never_leaves_a_torn_file(tmp_path):
    """SIGKILL at random moments while checkpoints and metrics.json are being rewritten:
    each file on disk is either the previous whole one or the new whole one."""
    rng = random.Random(0)
    script = _WRITER.format(keys=list(RESUME_KEYS))
    for attempt in range(3):
        writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.3 + rng.random())
        writer.kill()
        writer.wait()
        checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
        assert checkpoint["state_dict"]["w"].numel() == 3_000_000, attempt
        record = json.loads((tmp_path / "metrics.json").read_text())
        assert record["history"] == list(range(record["epoch"]))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("last.ckpt",
                                                                       "metrics.json")]
    assert all(name.startswith(".") or name.endswith(".tmp") for name in leftovers)
