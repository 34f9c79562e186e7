"""Hostile and odd inputs, round 2 (issue 33): no NaN or infinity past a check, bounded
reading of configs and records that a report or a rerun finds on disk, plug-ins that raise or
exit, and options that make no sense, each answered in one line naming the key or file."""

from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

from ftbnn_exp import plugins
from ftbnn_exp.app import machine
from ftbnn_exp.app.config import check_overrides, compose_config
from ftbnn_exp.app.run import RunPlace, fingerprint, train_run
from ftbnn_exp.app.storage import own_run_folder
from ftbnn_exp.artifacts import load_checkpoint, model_from_checkpoint
from ftbnn_exp.errors import UserError
from ftbnn_exp.report.__main__ import main as report_main
from test_report_compare import CONFIG, _run


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail, instead of hanging, when the block runs past ``seconds``."""
    def expire(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "cpu_cores", lambda: 2)


@pytest.mark.parametrize(("override", "key"), [
    ("budget_rate=inf", "budget_rate"), ("budget=nan", "budget"),
    ("optimizer.lr=nan", "optimizer.lr"), ("trainer.gradient_clip_val=nan",
                                           "trainer.gradient_clip_val"),
    ("optimizer.weight_decay=-inf", "optimizer.weight_decay"),
])
def test_hostile_non_finite_numbers_are_refused_by_the_one_check(override, key, two_cores):
    extra = ["model=derived"] if override.startswith("budget") else []
    with pytest.raises(UserError) as refused:
        check_overrides([*extra, override])
    assert str(refused.value).startswith(f"{key}=") and "must be a finite number" in str(
        refused.value), refused.value


def _laughs(levels: int = 9) -> str:
    """A 2 KB YAML whose aliases expand to 9⁹ strings ("billion laughs")."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


HOSTILE_CONFIGS = {
    "laughs": (_laughs, "YAML aliases"),
    "recursive": (lambda: "seed: &s [1, *s]\n", "levels"),
    "deep": (lambda: "seed: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    "huge": (lambda: "seed: 1\nnotes: " + "x" * (17 * 2**20) + "\n", "MB"),
}


@pytest.mark.parametrize("kind", list(HOSTILE_CONFIGS))
def test_hostile_stored_config_is_refused_in_one_line_by_report(kind, tmp_path, capsys):
    """Two runs compared (each config read, then diffed): a config file that would take
    gigabytes, minutes or a recursion error is refused in one line naming it."""
    make, said = HOSTILE_CONFIGS[kind]
    good = _run(tmp_path / "good", CONFIG, top1=91.0, top5=99.0, best=90.0)
    bad = _run(tmp_path / "bad", CONFIG, top1=1.0, top5=2.0, best=1.0)
    (bad / ".hydra" / "config.yaml").write_text(make())
    with deadline(30):  # the old reader ran past 180 s and 4 GB
        code = report_main([str(good), str(bad)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: '{bad / '.hydra' / 'config.yaml'}'") and said in lines[
        0], lines


@pytest.mark.parametrize("payload", [
    "[" * 100_000 + "]" * 100_000,  # json.loads: RecursionError
    '{"history": ' + "[" * 500 + "]" * 500 + ', "status": "completed"}',  # deeper than 64
])
def test_hostile_deep_metrics_json_is_an_unreadable_run_not_a_traceback(payload, tmp_path,
                                                                       capsys):
    good = _run(tmp_path / "good", CONFIG, top1=91.0, top5=99.0, best=90.0)
    bad = _run(tmp_path / "bad", CONFIG, top1=1.0, top5=2.0, best=1.0)
    (bad / "metrics.json").write_text(payload)
    assert report_main([str(good), str(bad)]) == 0
    assert "unreadable" in capsys.readouterr().out


TINY = ["model=fig2", "model.kind=prelu", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none",
        "trainer.deterministic=true", "trainer.max_epochs=1"]


def tiny_run(run_dir: Path, *overrides: str) -> dict:
    return train_run(compose_config([*TINY, *overrides]), RunPlace(run_dir))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run, copied by each test that changes it."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert tiny_run(run_dir)["status"] == "completed"
    return run_dir


def _copy(finished: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    return run_dir


@pytest.mark.parametrize(("override", "shown"), [
    ("trainer.limit_train_batches=3", "trainer.limit_train_batches (2 -> 3)"),
    ("data.val_fraction=0.2", "data.val_fraction (0.15 -> 0.2)"),
    ("trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val (None -> 1.0)"),
])
def test_rerun_with_a_key_that_shaped_the_run_is_not_taken_as_finished(override, shown,
                                                                       finished, tmp_path):
    """The old rerun printed `skipped, finished earlier` and kept the 2-batch numbers as the
    result of a run asked for with 3 batches (or another split, or clipping)."""
    run_dir = _copy(finished, tmp_path)
    before = (run_dir / "metrics.json").read_text()
    with pytest.raises(UserError) as refused:
        tiny_run(run_dir, override)
    assert f"{shown} differ from the checkpoint's run" in str(refused.value)
    kept = json.loads((run_dir / "metrics.json").read_text())
    assert kept["status"] == "completed" and kept["history"] == json.loads(before)["history"]
    assert shown.split(" ")[0] in kept["last_attempt"]["error"]  # nothing lost, noted


def test_rerun_changing_only_where_it_logs_is_still_skipped(finished, tmp_path, capsys):
    run_dir = _copy(finished, tmp_path)
    before = (run_dir / "metrics.json").read_text()
    tiny_run(run_dir, "data.num_workers=1", "checkpoint.keep_last=3")
    assert "skipped, finished earlier" in capsys.readouterr().out
    assert (run_dir / "metrics.json").read_text() == before


def test_rerun_of_a_completed_record_without_its_checkpoints_trains_again(finished, tmp_path,
                                                                         capsys):
    run_dir = _copy(finished, tmp_path)
    shutil.rmtree(run_dir / "checkpoints")
    again = tiny_run(run_dir)
    out = capsys.readouterr().out
    assert "skipped, finished earlier" not in out
    assert f"its checkpoints are gone from {run_dir / 'checkpoints'}" in out
    assert again["status"] == "completed" and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert again["final"] == json.loads((finished / "metrics.json").read_text())["final"]


def test_rerun_whose_checkpoints_hold_other_weights_is_retested(finished, tmp_path, capsys):
    run_dir = _copy(finished, tmp_path)
    for name in ("last.ckpt", "best.ckpt"):
        path = run_dir / "checkpoints" / name
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["state_dict"]["model.fc.bias"] += 1.0
        torch.save(checkpoint, path)
    again = tiny_run(run_dir)
    assert "last.ckpt does not hold the weights it recorded" in capsys.readouterr().out
    tampered = model_from_checkpoint(load_checkpoint(run_dir / "checkpoints" / "last.ckpt"))
    assert again["final_fingerprint"] == fingerprint(tampered)  # tested with these weights
    assert json.loads((run_dir / "metrics.json").read_text())["final_fingerprint"] == again[
        "final_fingerprint"]


def test_rerun_with_an_unresolvable_stored_config_is_not_a_traceback(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    record = json.loads((run_dir / "metrics.json").read_text())
    record["config"]["test_weights"] = "${no.such.key}"
    (run_dir / "metrics.json").write_text(json.dumps(record))
    assert tiny_run(run_dir)["status"] == "completed"  # not taken as finished: re-tested


def ftbnn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftbnn_exp", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_hostile_second_run_leaves_the_owners_hydra_folder_untouched(tmp_path):
    """Hydra wrote `.hydra/` before the lock refused the second run: the seed-1 run's folder
    then said seed 2. Now the files are written once the run owns the folder."""
    run_dir = tmp_path / "run"
    owner = {name: f"owner's {name}\n" for name in ("config.yaml", "hydra.yaml",
                                                    "overrides.yaml")}
    (run_dir / ".hydra").mkdir(parents=True)
    for name, text in owner.items():
        (run_dir / ".hydra" / name).write_text(text)
    with own_run_folder(run_dir):  # this test's process is the live owner
        refused = ftbnn(*TINY, "seed=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert refused.returncode == 2 and "is in use by pid" in refused.stderr, refused.stderr
    assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == owner
    done = ftbnn(*TINY, "seed=2", f"hydra.run.dir={run_dir}", "hydra.output_subdir=described",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    described = run_dir / "described"
    assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == owner
    assert yaml.safe_load((described / "config.yaml").read_text())["seed"] == 2
    assert "seed=2" in yaml.safe_load((described / "overrides.yaml").read_text())
    hydra = yaml.safe_load((described / "hydra.yaml").read_text())["hydra"]
    assert hydra["output_subdir"] == "described" and hydra["run"]["dir"] == str(run_dir)


@pytest.mark.parametrize(("body", "said"), [
    ("raise RuntimeError('plug-in bug')", "raised while imported (RuntimeError: plug-in bug)"),
    ("import sys\nsys.exit(0)", "called sys.exit(0) while imported"),
])
def test_hostile_plugin_that_raises_or_exits_is_one_line(body, said, tmp_path, monkeypatch,
                                                          two_cores):
    (tmp_path / "ftbnn_hostile_plugin.py").write_text(body + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ftbnn_hostile_plugin", raising=False)
    with pytest.raises(UserError) as refused:
        check_overrides(["plugins=[ftbnn_hostile_plugin]"])
    assert str(refused.value).startswith("plugins: module 'ftbnn_hostile_plugin' ") and said in \
        str(refused.value)
    monkeypatch.delitem(sys.modules, "ftbnn_hostile_plugin", raising=False)
    with pytest.raises(UserError) as refused:  # deploy's and report's --plugin
        plugins.load(["ftbnn_hostile_plugin"])
    assert "\n" not in str(refused.value)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_hostile_seed_count_is_refused_by_make_in_one_line():
    """``make ablation SEEDS=1000000`` failed with "Argument list too long" (or would start a
    million jobs per row)."""
    done = subprocess.run(["make", "-n", "-o", ".venv/.installed-stamp", "ablation",
                           "SEEDS=1000000"], cwd=Path(__file__).parents[1], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith(
        "SEEDS=1000000 is not a number of seeds; give a whole number from 1 to 1000, e.g. "
        "SEEDS=3.  Stop."), done.stderr[-500:]


def test_rerun_on_a_still_full_disk_is_the_one_line_it_was(finished, tmp_path, monkeypatch):
    """The free-space check refuses the rerun, and recording that refusal meets the full disk
    too: the old run then ended in the OSError's traceback, not the line saying what to do."""
    run_dir = _copy(finished, tmp_path)
    record = json.loads((run_dir / "metrics.json").read_text())
    record["status"] = "interrupted"  # as a full disk leaves a run
    (run_dir / "metrics.json").write_text(json.dumps(record))
    before = (run_dir / "metrics.json").read_text()

    def full(path: Path, payload: dict) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("ftbnn_exp.artifacts.write_json_atomic", full)  # RunFolder.write_metrics
    monkeypatch.setattr("ftbnn_exp.app.storage.shutil.disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(UserError) as refused:
        tiny_run(run_dir)
    assert str(refused.value).startswith(f"only 0 MB free under {run_dir}")
    assert (run_dir / "metrics.json").read_text() == before  # nothing lost
