"""Every user mistake is answered in one line naming the key or file and what is allowed, with
exit code 2, before anything starts; nothing is taken without a word; a multirun whose jobs
failed goes on and exits 1."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftbnn_exp.app import cli, machine
from ftbnn_exp.app.config import check_overrides
from ftbnn_exp.errors import CorruptImageError, UserError, one_line_message

# Refused when the command line is checked: (overrides, what the line says). {text} is a text
# file; the machine has 2 CPU cores (patched below).
CONFIG_CASES = [
    (["~seed"], "~seed: seed is required and cannot be deleted (allowed: ~callbacks.<name>"),
    (["~model"], "~model: model is required and cannot be deleted"),
    (["~optimizer.lr"], "~optimizer.lr: optimizer.lr is required and cannot be deleted"),
    (["data.val_fraction=1.5"], "data.val_fraction=1.5 must be a number in [0, 1)"),
    (["optimizer.betas=[2,3]"], "optimizer.betas=2 must be a number in [0, 1)"),
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9] must be two numbers in [0, 1)"),
    (["+foo=1"], "foo is not a config key; allowed: augment, budget, budget_rate, callbacks"),
    (["+optimizer.bogus=1"], "optimizer.bogus is not a key of optimizer; allowed: betas, "),
    (["+scheduler.bogus=1"], "scheduler.bogus is not a key of scheduler; allowed: gamma, "),
    (["+trainer.bogus=1"], "trainer.bogus is not an argument of lightning.Trainer; allowed: "
                           "accelerator, "),
    (["+data.bogus=1"], "data.bogus is not an argument of ftbnn_exp.data.DigitsDataModule; "
                        "allowed: batch_size, "),
    (["+checkpoint.bogus=1"], "checkpoint.bogus is not a key of checkpoint; allowed: "),
    (["trainer.accelerator=tpu"], "trainer.accelerator=tpu: this machine has no TPU device; "
                                  "allowed here: auto, cpu"),
    (["trainer.accelerator=abacus"], "trainer.accelerator='abacus' is not allowed; allowed: "
                                     "auto, gpu, cpu, cuda"),
    (["trainer.gradient_clip_val=abc"], "trainer.gradient_clip_val='abc' must be a finite number"),
    (["trainer.devices=64"], "trainer.devices=64 does not fit this machine's 2 CPU cores "
                             "(trainer.accelerator=cpu); allowed: auto or 1 to 2"),
    (["trainer=ddp_cpu", "trainer.devices=3"], "trainer.devices=3 does not fit this "
                                               "machine's 2 CPU cores"),
    (["trainer.devices=-1"], "trainer.devices=-1 does not fit this machine's 2 CPU cores"),
    (["trainer.devices=[0,1]"], "trainer.devices=[0, 1] does not fit this machine's 2 CPU"),
    (["trainer.devices='64'"], "trainer.devices=64 does not fit this machine's 2 CPU cores"),
    (["trainer.num_nodes=2"], "trainer.num_nodes=2 needs this command started on every "
                              "node"),
    (["init_from={text}"], "init_from={text} is read only by experiment=kd_multistep"),
    (["stage=1"], "stage=1 is read only by experiment=kd_multistep"),
    (["experiment=kd_multistep", "init_from={text}"],
     "init_from={text}: checkpoint '{text}' cannot be read"),
    (["experiment=kd_multistep", "init_from={npz}"],
     "init_from={npz}: checkpoint '{npz}' "),
]

# Accepted: the forms of trainer.devices Lightning takes, and keys added where keys are free.
ACCEPTED = [
    ["trainer.devices=auto"], ["trainer.devices=2"], ["trainer.devices='2'"],
    ["trainer=ddp_cpu"], ["+data.pin_memory=true"], ["~logger.csv"],
    ["+callbacks.timer={_target_:lightning.pytorch.callbacks.Timer}"],
    ["hydra/launcher=slurm", "trainer.num_nodes=2"],  # checked where the job lands
]


BRIEF = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "logger=none")
"""A run of seconds, should a mistake get through."""


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "cpu_cores", lambda: 2)
    for name in ("SLURM_NTASKS", "SLURM_JOB_NAME", "NODE_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    text = tmp_path / "notes.txt"
    text.write_text("these are notes, not weights\n")
    npz = tmp_path / "arrays.npz"
    np.savez(npz, x=np.zeros(3))
    return {"text": str(text), "npz": str(npz)}


@pytest.mark.parametrize(("overrides", "message"), CONFIG_CASES,
                         ids=[" ".join(o) for o, _ in CONFIG_CASES])
def test_config_mistakes_are_one_line_naming_key_and_allowed(overrides, message, files,
                                                             two_cores):
    with pytest.raises(UserError) as caught:
        check_overrides([o.format(**files) for o in overrides])
    line = one_line_message(caught.value)
    assert message.format(**files) in line
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("overrides", ACCEPTED, ids=" ".join)
def test_what_lightning_and_the_free_sections_take_is_accepted(overrides, two_cores):
    check_overrides(overrides)


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str
             ) -> tuple[int, list[str]]:
    """``python -m ftbnn_exp *args`` in this process: (exit code, stderr lines). The root
    logger gets its handlers back afterwards (Hydra's point at this test's captured output)."""
    monkeypatch.setattr(sys, "argv", ["ftbnn_exp", *args])
    monkeypatch.setattr(cli, "SWEEP", cli.Sweep())
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))
    capsys.readouterr()
    code = 0
    try:
        cli.main()
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err.strip().splitlines()


def image_folder(root: Path, classes: dict[str, int]) -> Path:
    """root/train/<class>/ with ``count`` tiny grayscale PNGs each."""
    for name, count in classes.items():
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8), "L").save(folder / f"{i}.png")
    return root


def folder_args(root: Path) -> list[str]:
    return ["data=folder", f"data.root={root}", "data.image_size=8", "data.num_workers=0",
            "data.val_fraction=0.5"]


def unreadable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` cannot be listed, as for another user's folder (the tests run as root, for
    whom permissions do not hold)."""
    scandir = os.scandir

    def refusing(path: os.PathLike | str | int = ".") -> object:
        if not isinstance(path, int) and Path(path) == folder:  # an int: an open folder's fd
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)


Case = tuple[list[str], str]


def one_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    root = image_folder(tmp_path / "one", {"a": 2})
    return folder_args(root), (f"data.root='{root / 'train'}' has one class folder (a); a "
                               f"classifier needs at least two")


def empty_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    root = image_folder(tmp_path / "empty", {"a": 2, "b": 2, "c": 0})
    return folder_args(root), (f"data.root: class folder '{root / 'train' / 'c'}' holds no "
                               f"image (.jpg")


def unreadable_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    root = image_folder(tmp_path / "locked", {"a": 2, "b": 2})
    unreadable(monkeypatch, root / "train" / "b")
    return folder_args(root), (f"data.root: class folder '{root / 'train' / 'b'}' cannot be "
                               f"read (Permission denied)")


NOT_MNIST = "is not a Keras-style mnist.npz (numeric arrays x_train, y_train, x_test, y_test)"


def text_npz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    path = tmp_path / "mnist.npz"
    path.write_text("not an archive\n")
    return (["data=mnist", f"data.npz_path={path}"],
            f"data.npz_path='{path}' {NOT_MNIST}: it is not an npz (zip) archive")


def pickled_npz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    path = tmp_path / "objects.npz"
    images = {k: np.zeros((2, 28, 28)) for k in ("x_train", "x_test")}
    np.savez(path, y_train=np.array([{"a": 1}, 2], dtype=object), y_test=np.zeros(2),
             **images)
    return (["data=mnist", f"data.npz_path={path}"],
            f"data.npz_path='{path}' {NOT_MNIST}: y_train: Object arrays cannot be loaded when "
            f"allow_pickle=False")


RUN_CASES = {
    "derived budget=1": lambda *_: (
        ["model=derived", "budget=1"],
        "budget=1 is below the smallest derived_ftbnn model at depth=18 groups=1: width=1 "
        "measures 11.7M, and a width is taken within 10% of its budget; allowed: budget >= 10.7"),
    "derived groups=1000": lambda *_: (
        ["model=derived", "groups=1000"],
        "budget=135 cannot be met at depth=18 groups=1000: the nearest admissible widths "
        "measure 107.8M (width=1000) and 220.7M (width=2000); allowed: fewer groups"),
    "folder with one class": one_class,
    "empty class folder": empty_class,
    "unreadable class folder": unreadable_class,
    "npz that is text": text_npz,
    "npz with pickled objects": pickled_npz,
}


@pytest.mark.parametrize("case", RUN_CASES)
def test_run_time_mistakes_are_one_line_exit_2(case, tmp_path, monkeypatch, capsys):
    """Checked once the data are found or the width is solved: still one line and exit 2,
    and no run folder left behind (a multirun keeps its failed rows: the next test)."""
    args, message = RUN_CASES[case](tmp_path, monkeypatch)
    run_dir = tmp_path / "run"
    code, lines = run_main(monkeypatch, capsys, *args, *BRIEF, f"hydra.run.dir={run_dir}")
    assert (code, len(lines)) == (2, 1), "\n".join(lines)
    assert lines[0].startswith("error: ") and message in lines[0], lines
    assert not run_dir.exists()


def test_a_multirun_goes_on_past_failed_jobs_and_exits_1(tmp_path, monkeypatch, capsys):
    """A crash (not the user's error) and a user's error are failed rows, one line each; the
    job that works trains; the sweep exits 1 at the end."""
    code, lines = run_main(
        monkeypatch, capsys, "-m", "model=baseline,derived", "budget=1",
        "+callbacks.extra._target_=lightning.pytorch.callbacks.Timer,nowhere.Missing", *BRIEF,
        f"hydra.sweep.dir={tmp_path}")
    assert code == 1
    records = {p.parent.name: json.loads(p.read_text())["status"]
               for p in tmp_path.glob("*/metrics.json")}
    assert sorted(records.values()) == ["completed", "failed", "failed", "failed"], records
    assert not any("Traceback" in line for line in lines)
    assert len([line for line in lines if line.startswith(f"error: {tmp_path}/")]) == 3, lines
    assert any("InstantiationException: Error locating target 'nowhere.Missing'" in line
               for line in lines), lines
    assert lines[-1].startswith("error: 3 of 4 jobs failed (each error above; a job refused "
                                "before training keeps its earlier record and status): ")


def test_too_many_devices_is_one_line_before_anything_starts(tmp_path):
    cores = len(os.sched_getaffinity(0))
    done = subprocess.run([sys.executable, "-m", "ftbnn_exp", f"trainer.devices={cores + 1}",
                           *BRIEF], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: trainer.devices={cores + 1} does not fit this machine's {cores} CPU cores "
        f"(trainer.accelerator=cpu); allowed: auto or 1 to {cores}"]
    assert not (tmp_path / "outputs").exists()


def _folded(message: str) -> CorruptImageError:
    """An error as a DataLoader worker re-raises it: the worker's traceback in the message."""
    return CorruptImageError(
        "Caught CorruptImageError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\n"
        '  File "worker.py", line 309, in _worker_loop\n'
        "    data = fetcher.fetch(index)\n"
        "           ^^^^^^^^^^^^^^^^^^^^\n"
        f"ftbnn_exp.errors.CorruptImageError: {message}\n")


@pytest.mark.parametrize(("error", "line"), [
    (UserError("checkpoint 'a.ckpt' cannot be read: UnpicklingError: Weights only load "
               "failed.\n\tWeightsUnpickler error: Unsupported global\n\nCheck the "
               "documentation of torch.load to learn more"),
     "checkpoint 'a.ckpt' cannot be read: UnpicklingError: Weights only load failed."),
    (UserError("\n  data.root='x' has no 'train' folder\nsee the README"),
     "data.root='x' has no 'train' folder"),
    (_folded("image 'a.png' cannot be read (truncated)\nskip it with data.skip_corrupt=true"),
     "image 'a.png' cannot be read (truncated)"),
    (CorruptImageError(
        "Caught X.\nOriginal Traceback (most recent call last):\n  File \"a.py\"\nKeyError: "
        "'k'\n\nDuring handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n  File \"b.py\"\n"
        "ftbnn_exp.errors.CorruptImageError: image 'b.png' cannot be read"),
     "image 'b.png' cannot be read"),
    (KeyError("544502645"), "'544502645'"),
    (UserError(""), "UserError"),
], ids=["advice after the reason", "leading blank", "worker traceback", "chained traceback",
        "plain", "empty"])
def test_one_line_message_keeps_the_informative_line(error, line):
    assert one_line_message(error) == line
