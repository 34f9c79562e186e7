"""Hostile and odd inputs, round 2 (issue 33): no NaN or infinity past a check, bounded
reading of configs and records that a report or a rerun finds on disk, plug-ins that raise or
exit, and options that make no sense, each answered in one line naming the key or file."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ftbnn_exp.app import config as app_config
from ftbnn_exp.app.config import check_overrides
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
    monkeypatch.setattr(app_config, "cpu_cores", lambda: 2)


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
