"""A checkpoint or export is data, never code: crafted files through every reader.

Each payload is a file a researcher might download: a pickle that runs a command, a stored
config whose ``_target_`` is ``subprocess.run``, a spec that asks to import a module planted
in the working folder, forged weights and a forged width. Every reader (``deploy export``,
``verify``, ``bench``, ``report fprelu``, ``report fig2``, ``kd.teacher=``, ``init_from=``,
``resume=``, an export's loader) must answer in one line with exit code 2, and nothing in
the file may run: no marker file appears, the planted module is never imported.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ftbnn_exp.app import build, run, storage
from ftbnn_exp.artifacts import load_checkpoint, model_spec
from ftbnn_exp.data import DataSpec
from ftbnn_exp.deploy.__main__ import main as deploy_main
from ftbnn_exp.deploy.export import FORMAT, load_export
from ftbnn_exp.errors import UserError
from ftbnn_exp.report.__main__ import main as report_main

LEGACY = Path(__file__).parent / "data"
PLANTED = "ftbnn_evilmod"


class Payload:
    """Unpickling this runs ``touch <marker>``: what ``weights_only=True`` must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


def _base() -> dict:
    """A real checkpoint (0.1.0's Fig. 2 model on digits) with today's stored spec."""
    checkpoint = load_checkpoint(LEGACY / "legacy-0.1.0-fig2.ckpt")
    metadata = {k: v for k, v in checkpoint["ftbnn_exp"].items() if k != "source"}
    metadata["model_spec"] = model_spec(metadata).to_dict()
    return {**checkpoint, "ftbnn_exp": metadata}


def _command(marker: Path) -> dict:
    return {"_target_": "subprocess.run", "args": f"touch {marker}", "shell": True}


def _craft(kind: str, marker: Path) -> object:
    """The object saved as the crafted file of ``kind``."""
    checkpoint = copy.deepcopy(_base())
    metadata = checkpoint["ftbnn_exp"]
    if kind == "pickle":
        return {"ftbnn_exp": Payload(marker), "state_dict": {}}
    if kind == "target":
        metadata["config"]["data"] = _command(marker)
    elif kind == "target_old_format":
        metadata["config"]["data"] = _command(marker)
        del metadata["model_spec"]
    elif kind == "target_nested":
        metadata["config"]["data"]["augment"] = _command(marker)
    elif kind == "imports":
        metadata["model_spec"]["imports"] = [PLANTED]
    elif kind == "forged_shapes":
        name = next(k for k in checkpoint["state_dict"] if k.endswith("weight"))
        checkpoint["state_dict"][name] = torch.zeros(3, 3)
    elif kind == "forged_width":  # 10⁶ channels: terabytes if it were ever allocated
        metadata["model_spec"]["kwargs"]["width"] = 10**6
    elif kind == "forged_spec":
        metadata["model_spec"] = {"family": ["ftbnn_resnet"], "kwargs": "depth=18"}
    elif kind == "expanded":  # a million classes from a one-element storage (issue 33)
        classes = 10**6
        metadata["model_spec"]["kwargs"]["num_classes"] = classes
        checkpoint["state_dict"]["model.fc.weight"] = torch.zeros(1, 1).expand(classes, 2)
        checkpoint["state_dict"]["model.fc.bias"] = torch.zeros(1).expand(classes)
    elif kind == "global":  # a function, which torch refuses by its module
        metadata["hook"] = os.system
    elif kind == "unknown_family":
        metadata["model_spec"]["family"] = "nonesuch"
    elif kind == "not_a_checkpoint":
        return [1, 2, 3]
    return checkpoint


KINDS = ("pickle", "target", "target_old_format", "target_nested", "imports", "forged_shapes",
         "forged_width", "forged_spec", "expanded", "global", "not_a_checkpoint")


def _as_export(obj: object) -> object:
    """The same payload in an export's envelope."""
    if not isinstance(obj, dict) or "state_dict" not in obj:
        return obj
    return {"format": FORMAT, "ftbnn_exp": obj["ftbnn_exp"], "state_dict": obj["state_dict"]}


def _fig2_folder(file: Path, tmp: Path) -> Path:
    """A multirun folder whose one Fig. 2 run has the crafted file as its last.ckpt."""
    runs = tmp / "sweep"
    (runs / "0" / "checkpoints").mkdir(parents=True)
    shutil.copy(file, runs / "0" / "checkpoints" / "last.ckpt")
    (runs / "0" / "metrics.json").write_text(json.dumps({
        "experiment": "fig2", "row": "binary", "status": "completed", "seed": 1,
        "data": "digits", "final": {"test/top1": 50.0}}))
    return runs


def _teacher(file: Path, _: Path) -> int:
    cfg = OmegaConf.create({"kd": {"teacher": str(file)}, "data": {"name": "digits"}})
    build.build_teacher(cfg, DataSpec(8, 1, 10))
    return 0


def _init_from(file: Path, _: Path) -> int:
    run.previous_stage(file, 1)
    return 0


def _resume(file: Path, _: Path) -> int:
    point, why = storage.resume_point(file)
    if point is None:
        raise UserError(f"resume: {why}")
    return 0


def _export_loader(file: Path, tmp: Path) -> int:
    exported = tmp / "crafted.ftbnn"
    exported.write_bytes(file.read_bytes())
    load_export(exported)
    return 0


READERS: dict[str, Callable[[Path, Path], int]] = {
    "deploy export": lambda f, t: deploy_main(["export", str(f), str(t / "out.ftbnn")]),
    "deploy verify": lambda f, t: deploy_main(["verify", str(f), "--batches", "1"]),
    "deploy bench": lambda f, t: deploy_main(["bench", str(f), "--repeats", "1",
                                              "--threads", "1"]),
    "report fprelu": lambda f, t: report_main(["fprelu", str(f)]),
    "report fig2": lambda f, t: report_main(["fig2", str(_fig2_folder(f, t))]),
    "kd.teacher": _teacher,
    "init_from": _init_from,
    "resume": _resume,
    "load_export": _export_loader,
}

READS_DATA = ("deploy verify", "deploy bench", "report fig2")
"""Readers that rebuild the run's data (a stored ``_target_`` reaches them); the others read
the model spec and weights only, and a 0.1.0 checkpoint's data config for its model's shape."""


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A module in the working folder (first on the path) that leaves a marker if imported."""
    marker = tmp_path / "ran"
    (tmp_path / f"{PLANTED}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, PLANTED, raising=False)
    return marker


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", list(READERS))
def test_a_crafted_file_runs_nothing_and_is_one_line(reader, kind, planted, tmp_path, capsys):
    crafted = _craft(kind, planted)
    file = tmp_path / "crafted.ckpt"
    torch.save(_as_export(crafted) if reader == "load_export" else crafted, file)
    capsys.readouterr()
    start = time.perf_counter()
    try:
        code = READERS[reader](file, tmp_path)
        message = capsys.readouterr().err.strip()
    except UserError as error:
        code, message = 2, f"error: {error}"
    assert not planted.exists(), f"{reader} ran the payload of a {kind} file"
    assert PLANTED not in sys.modules, f"{reader} imported the module a {kind} file names"
    if kind in ("target", "target_nested") and reader not in READS_DATA:
        assert code in (0, 2), message  # the data config is never read here: nothing to run
        return
    assert code == 2, message
    assert len(message.splitlines()) == 1 and message.startswith("error: "), message
    assert time.perf_counter() - start < 30  # a forged width is refused, never allocated


@pytest.mark.parametrize(("kind", "expected"), [
    ("target", "names _target_ 'subprocess.run', which is not a registered data source"),
    ("imports", f"asks for plug-in module '{PLANTED}', which is not loaded"),
    ("forged_shapes", "its weights do not fit the model its spec describes"),
    ("forged_width", "its weights do not fit the model its spec describes"),
    ("pickle", "cannot be read: UnpicklingError"),
    ("global", "cannot be read: UnpicklingError: it holds pickled code, not loaded"),
    ("expanded", "tensor 'state_dict.model.fc.weight' of shape [1000000, 2] is not stored whole"),
    ("unknown_family", "model family 'nonesuch' is not registered; allowed: "),
])
def test_the_refusal_says_what_the_file_asks_for(kind, expected, planted, tmp_path, capsys):
    file = tmp_path / "crafted.ckpt"
    torch.save(_craft(kind, planted), file)
    assert deploy_main(["verify", str(file)]) == 2
    message = capsys.readouterr().err.strip()
    assert expected in message and str(file) in message, message


@pytest.mark.slow
def test_the_planted_module_is_refused_from_the_command_line_too(planted, tmp_path):
    """As a user runs it: ``python -m`` puts the working folder, and the planted module, first
    on the path."""
    file = tmp_path / "crafted.ckpt"
    torch.save(_craft("imports", planted), file)
    for argv in (["ftbnn_exp.deploy", "export", str(file), "out.ftbnn"],
                 ["ftbnn_exp.report", "fprelu", str(file)]):
        done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 2 and not planted.exists(), done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: checkpoint '{file}' asks for plug-in module '{PLANTED}', which is not "
            f"loaded and is never imported from a file; if you trust it, load it with "
            f"--plugin {PLANTED} (training: plugins=[{PLANTED}])"]
    # Named by the user, the plug-in is imported (and here leaves its marker).
    done = subprocess.run([sys.executable, "-m", "ftbnn_exp.deploy", "--plugin", PLANTED,
                           "export", str(file), "out.ftbnn"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert planted.exists() and done.returncode == 0, done.stderr


def test_an_honest_checkpoint_still_loads_through_the_registry(tmp_path, capsys):
    """The registered classes rebuild a real checkpoint's data and model (the control)."""
    file = tmp_path / "honest.ckpt"
    torch.save(_base(), file)
    assert deploy_main(["verify", str(file), "--batches", "1"]) == 0
    assert deploy_main(["export", str(file), str(tmp_path / "m.ftbnn")]) == 0
    assert load_export(tmp_path / "m.ftbnn") is not None
    assert deploy_main(["export", str(file), str(tmp_path / "no" / "m.ftbnn")]) == 2
    assert f"folder '{tmp_path / 'no'}'" in capsys.readouterr().err


def test_a_crafted_teachers_foreign_data_target_is_refused_not_dropped(planted, tmp_path):
    """kd.teacher from a checkpoint whose data names no registered source: the normalisation
    its weights expect is unknown, which the old reader answered by feeding it the student's
    inputs silently."""
    file = tmp_path / "crafted.ckpt"
    torch.save(_craft("target", planted), file)
    with pytest.raises(UserError) as refused:
        _teacher(file, tmp_path)
    message = str(refused.value)
    assert message.startswith("kd.teacher: the normalisation its weights expect is unknown")
    assert "subprocess.run" in message and str(file) in message and "\n" not in message
    assert not planted.exists()


def test_a_crafted_verify_option_is_refused_not_run(tmp_path, capsys):
    """``deploy verify --batches -1`` printed FAIL (exit 1) after verifying nothing."""
    file = tmp_path / "honest.ckpt"
    torch.save(_base(), file)
    with pytest.raises(SystemExit) as refused:
        deploy_main(["verify", str(file), "--batches", "-1"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "argument --batches: '-1' is not a positive integer" in err and "FAIL" not in err
