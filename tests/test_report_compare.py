"""``python -m ftbnn_exp.report`` on run folders laid out as training writes them
(``metrics.json``, ``.hydra/config.yaml``, ``csv/version_0/metrics.csv``): two runs side by
side (the config keys that differ, results in a column per run), one run's own report, and the
one-line errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from ftbnn_exp.report.__main__ import main
from ftbnn_exp.report.compare import config_diff, labels

CONFIG = {
    "seed": 42, "init_from": None, "run_name": "${model.label}", "tags": [],
    "data": {"name": "digits", "seed": "${seed}", "batch_size": 64},
    "model": {"name": "baseline", "label": "baseline-${nonlinearity.name}", "stem_relu": False},
    "nonlinearity": {"name": "relu_partial_fprelu", "placed": "relu", "elsewhere": "fprelu",
                     "extra": []},
    "optimizer": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999]},
    "trainer": {"max_epochs": 2, "limit_test_batches": 1.0},
    "logger": {},
}
COMPLEXITY = {"flops": 435200, "bops": 37748736, "params": 536394.0, "budget": 1025024.0,
              "convention": "macs"}
COMPLEXITY_IMAGENET = {"flops": 137793536, "bops": 1849688064, "params": 1053096.0,
                       "budget": 166694912.0, "convention": "macs"}


def _run(folder: Path, config: dict, top1: float, top5: float, best: float,
         wall: float | None = None, epochs: int = 2) -> Path:
    """A finished run's folder as the app writes it."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    history = [{"epoch": e, "val/top1": best - (epochs - 1 - e), "train/loss": 2.0 - e}
               for e in range(epochs)]
    metrics = {"run_name": f"baseline-{config['nonlinearity']['name']}", "experiment": None,
               "row": None, "model": "baseline", "data": "digits", "seed": config["seed"],
               "nonlinearity": config["nonlinearity"]["name"], "config": config,
               "complexity": COMPLEXITY, "complexity_imagenet": COMPLEXITY_IMAGENET,
               "status": "completed", "diverged_epoch": None, "epochs_run": epochs,
               "final": {"epoch": epochs - 1, "test/top1": top1, "test/top5": top5},
               "best": {"epoch": epochs - 1, "val/top1": best}, "history": history}
    if wall is not None:
        metrics["wall_seconds"] = wall
    (folder / "metrics.json").write_text(json.dumps(metrics))
    logged = folder / "csv" / "version_0"
    logged.mkdir(parents=True)
    (logged / "metrics.csv").write_text("epoch,step,train/loss,val/top1\n" + "".join(
        f"{h['epoch']},{10 * h['epoch']},,{h['val/top1']}\n{h['epoch']},{10 * h['epoch']},"
        f"{h['train/loss']},\n" for h in history))
    return folder


def _other() -> dict:
    config = copy.deepcopy(CONFIG)
    config["nonlinearity"].update(name="prelu", placed="prelu", elsewhere="prelu")
    config["optimizer"]["lr"] = 0.001
    config["init_from"] = "runs/a/checkpoints/last.ckpt"
    config["tags"] = ["ablation"]
    config["kd_weight"] = 1.0  # a key the first run's config does not have
    return config


def _table(text: str, heading: str) -> tuple[list[str], dict[str, list[str]]]:
    """The markdown table under ``heading``: its header and each row's cells by first cell."""
    lines = text.split(heading, 1)[1].split("\n", 1)[1].strip().splitlines()
    rows = [[cell.strip() for cell in line[1:-1].split(" | ")] for line in lines[:next(
        (i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))]]
    return rows[0], {row[0]: row[1:] for row in rows[2:]}


def test_two_runs_side_by_side_show_exactly_the_differing_keys_and_results(tmp_path, capsys):
    # Given z first and a second: the columns follow the order given, never sorted.
    z = _run(tmp_path / "run-z", CONFIG, top1=91.25, top5=99.5, best=90.0, wall=42.0)
    a = _run(tmp_path / "run-a", _other(), top1=88.5, top5=98.125, best=87.5, wall=185.0,
             epochs=3)
    assert main([str(z), str(a)]) == 0
    out = capsys.readouterr().out
    header, keys = _table(out, "## Config keys that differ")
    assert header == ["key", "run-z", "run-a"]
    assert list(keys) == ["init_from", "tags", "nonlinearity.name", "nonlinearity.placed",
                          "nonlinearity.elsewhere", "optimizer.lr", "kd_weight"]
    assert keys == {"init_from": ["null", "runs/a/checkpoints/last.ckpt"],
                    "tags": ["[]", '["ablation"]'],
                    "nonlinearity.name": ["relu_partial_fprelu", "prelu"],
                    "nonlinearity.placed": ["relu", "prelu"],
                    "nonlinearity.elsewhere": ["fprelu", "prelu"],
                    "optimizer.lr": ["0.01", "0.001"], "kd_weight": ["(absent)", "1.0"]}
    assert "(7; .hydra/config.yaml as saved, not resolved)" in out
    header, results = _table(out, "## Results")
    assert header == ["", "run-z", "run-a"]
    assert results["test top-1 (%)"] == ["91.25", "88.50"]
    assert results["test top-5 (%)"] == ["99.50", "98.12"]
    assert results["best val top-1 (%)"] == ["90.00 (epoch 2)", "87.50 (epoch 3)"]
    assert results["epochs run"] == ["2", "3"]
    assert results["wall time"] == ["42.0 s", "3 min 05 s"]
    assert results["Params (M) on its data"] == ["0.54", "0.54"]
    assert results["BOPs (M) on 224 px, 1000 classes"] == ["1849.69", "1849.69"]


def test_configs_without_hydra_files_are_compared_resolved_from_metrics_json(tmp_path, capsys):
    z = _run(tmp_path / "z", CONFIG, top1=91.0, top5=99.0, best=90.0)
    a = _run(tmp_path / "a", _other(), top1=88.0, top5=98.0, best=87.0)
    (a / ".hydra" / "config.yaml").unlink()
    assert main([str(z), str(a)]) == 0
    out = capsys.readouterr().out
    assert "metrics.json's resolved config: a run folder has no .hydra/config.yaml" in out
    assert "wall time" not in out  # neither run recorded one


def test_a_multirun_of_other_runs_is_compared_and_labels_tell_runs_apart(tmp_path, capsys):
    sweep = tmp_path / "multirun"
    _run(sweep / "0-x" / "seed1", CONFIG, top1=91.0, top5=99.0, best=90.0)
    _run(sweep / "1-y" / "seed1", _other(), top1=88.0, top5=98.0, best=87.0)
    assert main([str(sweep)]) == 0
    header, keys = _table(capsys.readouterr().out, "## Config keys that differ")
    assert header == ["key", "0-x/seed1", "1-y/seed1"] and len(keys) == 7
    assert labels([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]


def test_config_diff_compares_values_not_their_text():
    assert config_diff([{"a": 1, "b": {"c": [1, 2]}}, {"a": 1.0, "b": {"c": [1, 2]}}]) == {
        "a": [1, 1.0]}
    assert config_diff([{"a": {"x": 1, "y": 2}}, {"a": {"y": 2, "x": 1}}]) == {}


def test_one_run_gets_its_own_report(tmp_path, capsys):
    run = _run(tmp_path / "run-a", CONFIG, top1=91.25, top5=99.5, best=90.0, wall=7322.0)
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    report = (run / "report.md").read_text()
    assert out.startswith(report) and out.endswith(
        f"written: {run / 'report.md'}, curves.png, curves.svg\n")
    assert report.startswith("# Run run-a\n")
    header, results = _table(report, "## Results")
    assert header == ["", "run-a"]
    assert results == {"status": ["completed"], "test top-1 (%)": ["91.25"],
                       "test top-5 (%)": ["99.50"], "best val top-1 (%)": ["90.00 (epoch 2)"],
                       "epochs run": ["2"], "wall time": ["2 h 02 min"]}
    header, counted = _table(report, "## Complexity")
    assert header == ["", "on its data", "on 224 px, 1000 classes"]
    assert counted["FLOPs (M)"] == ["0.44", "137.79"]
    assert counted["budget: FLOPs + BOPs/64 (M)"] == ["1.03", "166.69"]
    assert "![validation top-1 and training loss per epoch](curves.png)" in report
    assert "Not available: no checkpoints/last.ckpt or checkpoints/best.ckpt" in report
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "curves.svg").read_text().lstrip().startswith("<?xml")


def test_mistakes_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = _run(tmp_path / "run", CONFIG, top1=91.0, top5=99.0, best=90.0)
    bad = _run(tmp_path / "bad2", CONFIG, top1=1.0, top5=2.0, best=1.0)
    (bad / ".hydra" / "config.yaml").write_text("- a list\n- not a config\n")
    cases = {(): "error: nothing to report: give a run folder",
             (str(empty), str(run)): f"error: '{empty}' has no metrics.json and no run "
                                     "folders under it",
             (str(tmp_path / "nope"),): f"error: '{tmp_path / 'nope'}' is not a folder",
             (str(run), str(bad)): f"error: '{bad / '.hydra' / 'config.yaml'}' is not a YAML "
                                   "mapping",
             ("fprelu",): "error: fprelu takes one CHECKPOINT, got 0",
             ("--bogus", str(run)): "error: unrecognized arguments: --bogus"}
    for argv, start in cases.items():
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(start) and len(err.strip().splitlines()) == 1, err


def test_help_lists_every_form_with_examples(capsys):
    assert main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert not err
    usage = out.split("\n\n")[0].splitlines()
    assert usage == [
        "usage: python -m ftbnn_exp.report [--plugin MODULE]... FOLDER [FOLDER ...]",
        "       python -m ftbnn_exp.report [--plugin MODULE]... fprelu CHECKPOINT",
        "       python -m ftbnn_exp.report fig2 MULTIRUN_DIR"]
    for form in ("one run folder", "two or more run folders", "one multirun folder of",
                 "fprelu CHECKPOINT", "fig2 MULTIRUN_DIR", "examples:", "--plugin MODULE"):
        assert form in out, form
