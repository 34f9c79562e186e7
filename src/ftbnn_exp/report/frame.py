"""Runs as table rows (``ftbnn_exp.runs_table``): one flat dict per run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftbnn_exp.artifacts import Metric
from ftbnn_exp.report.runs import Run, load_run, run_folders


def run_row(run: Run) -> dict[str, Any]:
    """What a user compares runs by, flat (a multi-step job: its last stage's top-1)."""
    metrics = run.metrics
    config = metrics.get(Metric.CONFIG) or {}
    best = metrics.get(Metric.BEST) or {}
    return {
        "run_name": metrics.get("run_name"),
        "experiment": metrics.get("experiment"),
        "row": run.row,
        "seed": run.seed,
        "status": run.status,
        "epochs": metrics.get(Metric.EPOCHS_RUN),
        "test_top1": run.final(Metric.TEST_TOP1),
        "test_top5": run.final(Metric.TEST_TOP5),
        "best_val_top1": best.get(Metric.VAL_TOP1) if isinstance(best, dict) else None,
        "wall_seconds": metrics.get(Metric.WALL_SECONDS),
        "data": (config.get("data") or {}).get("name") if isinstance(config, dict) else None,
        "model": metrics.get("model"),
        "folder": str(run.path),
    }


def run_rows(path: Path) -> list[dict[str, Any]]:
    """A row per run folder under ``path`` (:func:`~ftbnn_exp.report.runs.run_folders`)."""
    return [run_row(load_run(folder)) for folder in run_folders(path)]
