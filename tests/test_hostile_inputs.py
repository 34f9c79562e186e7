"""Hostile and odd inputs, round 2 (issue 33): no NaN or infinity past a check, bounded
reading of configs and records that a report or a rerun finds on disk, plug-ins that raise or
exit, and options that make no sense, each answered in one line naming the key or file."""

from __future__ import annotations

import pytest

from ftbnn_exp.app import config as app_config
from ftbnn_exp.app.config import check_overrides
from ftbnn_exp.errors import UserError


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
