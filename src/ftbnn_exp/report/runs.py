"""Read the artefacts of finished runs: ``metrics.json`` and the CSV logger's ``metrics.csv``.

Reports read only these files, never training code.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    path: Path
    metrics: dict[str, Any]
    curve: list[dict[str, float]] = field(default_factory=list)

    @property
    def table(self) -> str | None:
        experiment = self.metrics.get("experiment") or ""
        return experiment.split("/")[0] if "/" in experiment else None

    @property
    def row(self) -> str | None:
        return self.metrics.get("row")

    @property
    def status(self) -> str:
        return self.metrics.get("status", "unknown")

    @property
    def seed(self) -> int | None:
        return self._recorded("seed")

    @property
    def stage(self) -> int | None:
        """The multi-step stage (Appendix C) this run trained; None for a plain run."""
        return self._recorded("stage")

    @property
    def last_stage(self) -> int | None:
        """The stage its pipeline ends with: the one asked for (``stage=N``), else the last
        of ``kd.epochs``; None for a plain run."""
        config = self.metrics.get("config") or {}
        if isinstance(config.get("stage"), int):
            return config["stage"]
        epochs = (config.get("kd") or {}).get("epochs")
        return len(epochs) - 1 if epochs else None

    @property
    def is_teacher(self) -> bool:
        """The full-precision teacher a multi-step row trained first (its ``teacher/``
        folder): a means to the row's result, never the result."""
        return self.path.name == "teacher" and str(self.metrics.get("run_name")).endswith(
            "-teacher")

    def _recorded(self, key: str) -> int | None:
        """``key`` as the run recorded it, else from its resolved config."""
        value = self.metrics.get(key, (self.metrics.get("config") or {}).get(key))
        return value if isinstance(value, int) else None

    def final(self, key: str) -> float | None:
        value = self.metrics.get("final", {}).get(key)
        return float(value) if isinstance(value, int | float) else None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_curve(run_dir: Path, history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per-epoch ``val/top1`` and ``train/loss``: from the CSV logger when it ran, else from
    ``metrics.json``'s history."""
    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    if not files:
        return [{k: v for k, v in row.items() if isinstance(v, int | float)} for row in history]
    by_epoch: dict[int, dict[str, float]] = {}
    with files[-1].open() as stream:
        for record in csv.DictReader(stream):
            epoch = _number(record.get("epoch", ""))
            if epoch is None:
                continue
            row = by_epoch.setdefault(int(epoch), {"epoch": int(epoch)})
            for key in ("val/top1", "train/loss", "train/top1"):
                value = _number(record.get(key, ""))
                if value is not None:
                    row[key] = value
    return [by_epoch[e] for e in sorted(by_epoch)]


def load_runs(root: Path) -> list[Run]:
    runs = []
    for file in sorted(root.rglob("metrics.json")):
        try:
            metrics = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError):
            metrics = {"status": "unreadable"}
        runs.append(Run(file.parent, metrics, read_curve(file.parent,
                                                         metrics.get("history", []))))
    return runs


def seed_result(runs: list[Run]) -> Run:
    """One seed's result among the folders of its job: of a multi-step row (teacher, stage 0,
    1, 2), its last stage; otherwise its run (of several, the last found). A job that
    stopped during its teacher has only the teacher to show, which reports then mark."""
    staged = sorted((r for r in runs if r.stage is not None), key=lambda r: r.stage or 0)
    plain = [r for r in runs if not r.is_teacher]
    return (staged or plain or runs)[-1]


def by_row_and_seed(runs: list[Run], table: str) -> dict[str, list[Run]]:
    """Each row of ``table``: its seeds' results (:func:`seed_result`), in seed order."""
    jobs: dict[str, dict[int | None, list[Run]]] = {}
    for run in runs:
        if run.table == table and run.row:
            jobs.setdefault(run.row, {}).setdefault(run.seed, []).append(run)
    return {row: [seed_result(seeds[s]) for s in sorted(seeds, key=lambda s: (s is None, s or 0))]
            for row, seeds in jobs.items()}
