"""The Python API (issue 36): the CLI's machinery from Python, a light import, the example
script end to end with the report on what it made, and ``deploy predict``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import ftbnn_exp
from ftbnn_exp.app.session import merged_overrides
from ftbnn_exp.data import DigitsDataModule
from ftbnn_exp.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger=none"]
TINY = ["model=fig2", "model.kind=prelu", *QUICK, "trainer.limit_test_batches=1",
        "trainer.max_epochs=1"]


def run_python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


def test_import_is_light_and_lists_the_api():
    """``import ftbnn_exp`` loads neither torch nor Hydra (the CLI's start, tab completion);
    the API's names are there and load on use."""
    probe = ("import sys, ftbnn_exp; print(sorted(m for m in ('torch', 'hydra', 'lightning') "
             "if m in sys.modules)); print(dir(ftbnn_exp))")
    out = run_python("-c", probe, cwd=ROOT).stdout.splitlines()
    assert out[0] == "[]"
    for name in ("compose", "train", "resume", "test", "create_model", "count_complexity",
                 "runs_table", "export", "load_export", "predict"):
        assert f"'{name}'" in out[1]
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        ftbnn_exp.trian  # noqa: B018


def test_compose_checks_as_the_cli_does():
    cfg = ftbnn_exp.compose(["nonlinearity=prelu", "experiment=table3/relu"])
    assert cfg.row == "relu" and cfg.optimizer.lr == pytest.approx(0.00015)
    with pytest.raises(UserError, match=r"nonlinearity=foo is not an option; allowed: .*prelu"):
        ftbnn_exp.compose(["nonlinearity=foo"])


def test_later_overrides_replace_earlier_keys():
    assert merged_overrides(["trainer.max_epochs=2", "nonlinearity=prelu", "+x=1"],
                            ["trainer.max_epochs=3", "test_weights=best"]) == [
        "nonlinearity=prelu", "+x=1", "trainer.max_epochs=3", "test_weights=best"]


@pytest.mark.slow
def test_quickstart_runs_end_to_end_then_the_report_reads_its_folder(tmp_path):
    out = tmp_path / "quick"
    done = run_python(str(ROOT / "examples" / "quickstart.py"), str(out), *QUICK, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    none, prelu = (json.loads((out / n / "metrics.json").read_text()) for n in ("none", "prelu"))
    assert (none["status"], none["epochs_run"]) == ("completed", 2)
    assert (prelu["status"], prelu["epochs_run"]) == ("completed", 3)  # resumed for one more
    assert prelu["config"]["test_weights"] == "best"  # then tested with best.ckpt
    assert (out / "prelu" / ".hydra" / "overrides.yaml").is_file()
    assert (out / "prelu.ftbnn").is_file()
    predictions = [line for line in done.stdout.splitlines() if "/pngs/" in line]
    assert len(predictions) == 8 and all(": class " in line for line in predictions)
    report = run_python("-m", "ftbnn_exp.report", str(out), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "baseline-none" in report.stdout and "baseline-prelu" in report.stdout
    assert "nonlinearity.name" in report.stdout  # the config diff between the two runs


def test_a_config_error_found_after_composition_leaves_no_folder(tmp_path):
    """The width solver refuses the budget once the data are known: the run folder that
    Hydra's context made is gone again, from the API as from the CLI."""
    target = tmp_path / "outputs" / "derived"
    bad = ["model=derived", "depth=18", "groups=3", "budget=5", *TINY[2:]]
    with pytest.raises(UserError, match="budget=5") as refused:
        ftbnn_exp.train(bad, run_dir=target)
    message = str(refused.value)
    assert not target.exists() and not target.parent.exists()
    done = run_python("-m", "ftbnn_exp", *bad, f"hydra.run.dir={target}", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: {message}"], done.stderr
    assert not target.exists()


def digit_png(folder: Path, index: int) -> tuple[Path, np.ndarray]:
    images, _ = load_digits(return_X_y=True)
    counts = images[index].reshape(8, 8)
    path = folder / f"{index}.png"
    Image.fromarray(np.round(counts * 255 / 16).astype(np.uint8), mode="L").save(path)
    return path, counts


def test_a_digit_png_becomes_the_tensor_the_data_hold(tmp_path):
    data = DigitsDataModule(seed=0)
    transform = data.image_transform(1)
    mean, std = data.pixel_stats
    for index in (0, 7, 100):
        path, counts = digit_png(tmp_path, index)
        expected = (torch.as_tensor(counts, dtype=torch.float32) - mean) / std
        assert torch.equal(transform(Image.open(path)), expected.view(1, 8, 8))


def test_predict_on_files_equals_predict_on_their_tensors(tmp_path):
    run = ftbnn_exp.train(TINY, run_dir=tmp_path / "run")
    exported = tmp_path / "m.ftbnn"
    ftbnn_exp.export(run.checkpoint, exported)
    folder = tmp_path / "pngs"
    folder.mkdir()
    paths = [digit_png(folder, index)[0] for index in range(6)]
    transform = DigitsDataModule(seed=0).image_transform(1)
    batch = torch.stack([transform(Image.open(p)) for p in paths])
    from_files = ftbnn_exp.predict(exported, folder)
    from_tensors = ftbnn_exp.predict(exported, batch)
    assert [p.source for p in from_files] == [str(p) for p in sorted(paths)]
    assert [(p.label, p.probability) for p in from_files] == [
        (p.label, p.probability) for p in from_tensors]
    logits = ftbnn_exp.load_export(exported)(batch)
    assert [p.label for p in from_tensors] == logits.argmax(1).tolist()
    shell = run_python("-m", "ftbnn_exp.deploy", "predict", str(exported), str(paths[0]),
                       "--top", "2", cwd=tmp_path)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip() == from_files[0].line().split("; then")[0] + "; then " + \
        f"{from_files[0].top[1][0]} {100 * from_files[0].top[1][1]:.1f} %"
    wrong = run_python("-m", "ftbnn_exp.deploy", "predict", str(exported), str(tmp_path / "x"),
                       cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.strip().endswith(
        "is neither an image file nor a folder")


def test_create_model_and_count_complexity():
    model = ftbnn_exp.create_model("ftbnn_resnet", depth=18, num_classes=10, image_size=32)
    at_32 = ftbnn_exp.count_complexity(model, (3, 32, 32)).totals()
    at_64 = ftbnn_exp.count_complexity(model, (3, 64, 64)).totals()
    assert at_32["params"] == at_64["params"] and at_64["bops"] == 4 * at_32["bops"]


def test_the_smallest_budget_a_refusal_states_is_admitted():
    """The bound in ``budget=5``'s refusal is the one the solver then takes; a tenth below
    it is refused."""
    from ftbnn_exp.complexity.solver import solve_width
    from ftbnn_exp.models import family

    derived, shape = family("derived_ftbnn"), {"depth": 18, "groups": 3}
    with pytest.raises(UserError) as refused:
        solve_width(derived, shape, 5)
    message = str(refused.value)
    assert "width=3 measures 11.9M" in message and message.count("\n") == 0
    lowest = float(message.rpartition(">= ")[2])
    assert solve_width(derived, shape, lowest).width == 3
    with pytest.raises(UserError, match=f"allowed: budget >= {lowest:g}"):
        solve_width(derived, shape, round(lowest - 0.1, 1))
