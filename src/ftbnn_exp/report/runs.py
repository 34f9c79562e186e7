"""Read the artefacts of finished runs: ``metrics.json``, the CSV logger's ``metrics.csv`` and
Hydra's ``.hydra/config.yaml``.

Reports read only these files, as data (``yaml.safe_load``, never resolved or imported), never
training code, and within bounds of size, nesting and YAML aliases
(:func:`~ftbnn_exp.artifacts.read_json`, :func:`~ftbnn_exp.artifacts.read_yaml`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftbnn_exp.artifacts import Metric, RunFolder, read_yaml
from ftbnn_exp.errors import UserError

PAPER_TABLES = ("table1", "table3", "table4")
"""The tables a report writes from rows (report/tables.py's builders)."""


@dataclass
class Run:
    path: Path
    metrics: dict[str, Any]
    curve: list[dict[str, float]] = field(default_factory=list)

    @property
    def table(self) -> str | None:
        """The paper table the run belongs to: its config's ``group`` where that names one (an
        overlay of a row on other data, ``experiment=cifar10/<row>``, keeps ``group:
        table3``), else its experiment's folder (``table3/<row>``)."""
        group = (self.metrics.get(Metric.CONFIG) or {}).get("group")
        if group in PAPER_TABLES:
            return group
        experiment = self.metrics.get("experiment") or ""
        return experiment.split("/")[0] if "/" in experiment else None

    @property
    def row(self) -> str | None:
        return self.metrics.get("row")

    @property
    def status(self) -> str:
        return self.metrics.get(Metric.STATUS, "unknown")

    @property
    def seed(self) -> int | None:
        return self._recorded("seed")

    @property
    def stage(self) -> int | None:
        """The multi-step stage (Appendix C) this run trained; None for a plain run."""
        return self._recorded("stage")

    @property
    def stages(self) -> list[int]:
        """The stages its pipeline runs: the one asked for (``stage=N``), else ``kd.stages``
        (older runs: every stage of ``kd.epochs``); empty for a plain run."""
        config = self.metrics.get(Metric.CONFIG) or {}
        if isinstance(config.get("stage"), int):
            return [config["stage"]]
        kd = config.get("kd") or {}
        return list(kd.get("stages") or range(len(kd.get("epochs") or ())))

    @property
    def last_stage(self) -> int | None:
        """The stage its pipeline ends with; None for a plain run."""
        return self.stages[-1] if self.stages else None

    @property
    def is_teacher(self) -> bool:
        """The full-precision teacher a multi-step row trained first (its ``teacher/``
        folder): a means to the row's result, never the result."""
        return self.path.name == "teacher" and str(self.metrics.get("run_name")).endswith(
            "-teacher")

    def _recorded(self, key: str) -> int | None:
        """``key`` as the run recorded it, else from its resolved config."""
        value = self.metrics.get(key, (self.metrics.get(Metric.CONFIG) or {}).get(key))
        return value if isinstance(value, int) else None

    def final(self, key: str) -> float | None:
        value = self.metrics.get(Metric.FINAL, {}).get(key)
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
            for key in (Metric.VAL_TOP1, Metric.TRAIN_LOSS, Metric.TRAIN_TOP1):
                value = _number(record.get(key, ""))
                if value is not None:
                    row[key] = value
    return [by_epoch[e] for e in sorted(by_epoch)]


def load_run(folder: Path) -> Run:
    """The run recorded in ``folder/metrics.json``; an unreadable record (torn, not a JSON
    object, larger or deeper than :func:`~ftbnn_exp.artifacts.read_json` takes) is a run
    with status ``unreadable``, so a report still lists the folder."""
    try:
        metrics = RunFolder(folder).read_metrics()
    except UserError:
        metrics = None
    if not isinstance(metrics, dict):
        metrics = {Metric.STATUS: "unreadable"}
    history = metrics.get(Metric.HISTORY)
    return Run(folder, metrics, read_curve(folder, history if isinstance(history, list) else []))


def load_runs(root: Path) -> list[Run]:
    """Every run under ``root``, each stage and teacher of a multi-step job included."""
    return [load_run(file.parent) for file in sorted(root.rglob(RunFolder.METRICS))]


def run_folders(path: Path) -> list[Path]:
    """``path`` itself when it is a run folder (it holds ``metrics.json``), else the run folders
    of the multirun under it: the outermost ones, so a multi-step job counts once (its own
    summary, not its teacher and stages). A one-line :class:`UserError` when there are none."""
    if not path.is_dir():
        raise UserError(f"'{path}' is not a folder; give run folders (each with metrics.json) "
                        f"or multirun folders")
    if RunFolder(path).has_metrics():
        return [path]
    found = sorted(file.parent for file in path.rglob(RunFolder.METRICS))
    outer = [f for f in found if not any(o in f.parents for o in found)]
    if not outer:
        raise UserError(f"'{path}' has no metrics.json and no run folders under it; give a run "
                        f"folder (with metrics.json) or a multirun folder")
    return outer


def read_config(folder: Path) -> dict[str, Any] | None:
    """The run's config as Hydra saved it (``.hydra/config.yaml``), read as plain data: its
    ``${...}`` interpolations stay text, nothing is resolved, imported or called. None when the
    folder has none (a stage of a multi-step job); a one-line :class:`UserError` when it
    cannot be read as a YAML mapping."""
    file = folder / ".hydra" / "config.yaml"
    if not file.is_file():
        return None
    config = read_yaml(file)
    if not isinstance(config, dict):
        raise UserError(f"'{file}' is not a YAML mapping of config keys")
    return config


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
