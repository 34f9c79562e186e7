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
