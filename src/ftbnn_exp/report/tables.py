"""Tables 1, 3 and 4 rebuilt from a multirun's artefacts, our numbers beside the paper's: each
row's mean ± std over its seeds, and the rows its difference from is not resolved."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftbnn_exp.artifacts import Metric
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models import family
from ftbnn_exp.nn import part
from ftbnn_exp.paper import PAPER_TABLE1, PAPER_TABLE3, PAPER_TABLE4, STRATEGIES
from ftbnn_exp.report.runs import Run, by_row_and_seed
from ftbnn_exp.report.seeds import Spread, unresolved
from ftbnn_exp.report.setting import PAPER, row_flags, settings_text

PROTOCOL = ("Evaluation protocol: each run is scored once, by the test top-1 of its weights "
            "after the final epoch (`test_weights=last`), on the whole test split; nothing is "
            "chosen on the test set. The test score of the best-on-validation epoch is not "
            "recorded, so it is not shown. Each row gives mean ± std (sample std) and n over "
            "its seeds that completed; a seed that did not (failed, diverged, unfinished) is "
            "named beside n and left out of the mean. Runs scored otherwise are listed under "
            "their table. *our setting* is each row's data, input size and epochs (the paper: "
            f"{PAPER.text()}); *flags* marks a row at chance (top-1 at most 1.5 × 1/classes) "
            "or whose training loss blew up: its number says nothing about its method.")


@dataclass
class ReportTable:
    title: str
    header: list[str]
    rows: list[list[str]]
    results: dict[str, list[Run]] = field(default_factory=dict)
    """Each row's seeds' result runs (the per-seed CSV, the curves, the protocol notes)."""

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        notes = protocol_notes(self.results)
        if notes:
            lines += ["", "Not scored by the protocol above:", *(f"- {n}" for n in notes)]
        return "\n".join(lines)

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(self.header)
            writer.writerows(self.rows)

    def write_runs_csv(self, path: Path) -> None:
        """One line per row and seed: each seed's own numbers behind a row's mean ± std."""
        keys = (Metric.TEST_TOP1, Metric.TEST_TOP5, Metric.VAL_TOP1, Metric.TRAIN_TOP1)
        with path.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["row", "seed", "result", *keys, "epochs", "folder"])
            for row, seeds in self.results.items():
                for run in seeds:
                    writer.writerow([row, run.seed, outcome(run) or "completed",
                                     *(_raw(run.final(k)) for k in keys),
                                     run.metrics.get(Metric.EPOCHS_RUN, ""), run.path])


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _raw(value: float | None) -> str:
    return "" if value is None else repr(value)


def outcome(run: Run) -> str | None:
    """Why a row's seed has no numbers, or None when it has them. A multi-step seed counts
    only once its last stage completed."""
    if run.status == "diverged":
        return f"diverged (epoch {run.metrics.get('diverged_epoch')})"
    if run.status != "completed":
        return run.status
    if run.is_teacher:
        return "unfinished (teacher only)"
    if run.stage is not None and run.last_stage is not None and run.stage < run.last_stage:
        return f"unfinished (stage {run.stage} of {run.stages[0]}-{run.last_stage})"
    return None


def _deviations(run: Run) -> list[str]:
    """How a run's score departs from :data:`PROTOCOL`, as read off its resolved config."""
    config = run.metrics.get(Metric.CONFIG) or {}
    trainer = config.get("trainer") or {}
    limit = trainer.get("limit_test_batches")
    found = []
    if trainer.get("fast_dev_run"):
        found.append("one test batch scored (trainer.fast_dev_run)")
    elif not (limit is None or (isinstance(limit, float) and limit == 1.0)):
        found.append(f"part of the test set scored (trainer.limit_test_batches={limit})")
    if config.get("test_weights") == "best":
        found.append("tested with its best-on-validation checkpoint (test_weights=best), not "
                     "the final epoch's weights")
    return found


def protocol_notes(results: dict[str, list[Run]]) -> list[str]:
    """One line per way runs depart from :data:`PROTOCOL`, naming the rows and seeds (or
    ``every run``)."""
    every = [(row, run) for row, seeds in results.items() for run in seeds]
    by_reason: dict[str, dict[str, list[str]]] = {}
    for row, run in every:
        for reason in _deviations(run):
            by_reason.setdefault(reason, {}).setdefault(row, []).append(str(run.seed))
    notes = []
    for reason, rows in by_reason.items():
        count = sum(len(seeds) for seeds in rows.values())
        where = "every run" if count == len(every) else ", ".join(
            f"{row} (seed{'s' * (len(seeds) > 1)} {', '.join(seeds)})"
            for row, seeds in rows.items())
        notes.append(f"{reason}: {where}")
    return notes


@dataclass
class RowSeeds:
    """A row's result runs, one per seed, as the table's cells."""

    runs: list[Run]

    @property
    def done(self) -> list[Run]:
        return [run for run in self.runs if outcome(run) is None]

    @property
    def first(self) -> Run | None:
        """The run whose config and complexity speak for the row (the same for every seed)."""
        return next(iter(self.done or self.runs), None)

    def spread(self, key: str) -> Spread:
        return Spread(tuple(v for run in self.done if (v := run.final(key)) is not None))

    def cell(self, key: str) -> str:
        """``mean ± std`` of ``key`` over the completed seeds, else why there is none."""
        spread = self.spread(key)
        return spread.text() if spread.n else self.why()

    def why(self) -> str:
        if not self.runs:
            return "missing"
        return "; ".join(dict.fromkeys(o for run in self.runs if (o := outcome(run))))

    def count(self) -> str:
        """n, and each seed that did not complete with its reason."""
        left = [f"seed {run.seed} {o}" for run in self.runs if (o := outcome(run))]
        return "; ".join([str(len(self.done)), *left]) if self.done else "0"


def _rows(runs: list[Run], table: str, keys: list[str]) -> tuple[dict[str, RowSeeds],
                                                                   dict[str, str]]:
    """Each of the paper's rows (``keys``) with its seeds, and its *not resolved from* mark."""
    found = by_row_and_seed(runs, table)
    rows = {key: RowSeeds(found.get(key, [])) for key in keys}
    return rows, unresolved({key: row.spread(Metric.TEST_TOP1) for key, row in rows.items()})


SETTING_COLUMNS = [f"our setting (paper: {PAPER.text()})", "flags"]


def _setting_cells(seeds: RowSeeds) -> list[str]:
    """A row's data, input size and epochs, and its flags (report/setting.py)."""
    return [settings_text(seeds.runs), row_flags(seeds.runs)]


def _titled(title: str, rows: dict[str, RowSeeds]) -> str:
    """The table's title with what it measured, ours and the paper's."""
    ours = settings_text(run for seeds in rows.values() for run in seeds.done)
    return f"{title}; ours: {ours or 'no runs'}; the paper: {PAPER.text()}"


def _results(rows: dict[str, RowSeeds]) -> dict[str, list[Run]]:
    return {key: row.runs for key, row in rows.items() if row.runs}


def strategies(metrics: Mapping[str, Any]) -> set[str] | None:
    """Table 1's strategies a run used, read off its resolved config and its parts' traits
    (never typed per row): KD, distillation weights above 0; MS, more than one stage run; GA and
    Scaling, from the ``table1`` trait of the parts its family declares it takes
    (:attr:`~ftbnn_exp.models.Family.parts`). None when unknown: a family that declares no
    parts, or a plug-in's family or part that is not loaded here."""
    config, spec = metrics.get(Metric.CONFIG) or {}, metrics.get(Metric.MODEL_SPEC) or {}
    kd = config.get("kd") or {}
    used = set()
    if kd and (kd.get("kd_weight", 0) > 0 or kd.get("attention_weight", 0) > 0):
        used.add("KD")
    if kd and len(kd.get("stages") or kd.get("epochs") or ()) > 1:
        used.add("MS")
    try:
        names = family(spec.get("family", "")).part_names(spec.get("kwargs") or {})
        if names is None:
            return None
        for kind, name in names.values():
            used.update(part(kind, name).table1)
    except InvalidArgument:
        return None
    return used


def _marks(used: set[str] | frozenset[str] | None) -> list[str]:
    return ["?"] * len(STRATEGIES) if used is None else [
        "✓" if s in used else "✗" for s in STRATEGIES]


_DIGITS = {"flops": 1, "bops": 0, "params": 2, "budget": 1}
"""Decimals of each complexity column (in millions)."""


def _complexity(run: Run | None, keys: tuple[str, ...]) -> list[str]:
    """A run's complexity at ImageNet's size in millions, one cell per key ("" if unknown)."""
    c = (run.metrics.get(Metric.COMPLEXITY_IMAGENET) or {}) if run else {}
    return [_fmt(c[key] / 1e6, _DIGITS[key]) if c else "" for key in keys]


def table1(runs: list[Run]) -> ReportTable:
    ours, marks = _rows(runs, "table1", [paper.row for paper in PAPER_TABLE1])
    rows = []
    for paper in PAPER_TABLE1:
        seeds = ours[paper.row]
        run = seeds.first
        counts = _complexity(run, ("flops", "bops", "params", "budget"))
        used = _marks(strategies(run.metrics)) if run else [""] * len(STRATEGIES)
        reference = ([*_marks(paper.strategies), f"{paper.top1}"] if paper.top1 is not None
                     else ["n/a"] * (len(STRATEGIES) + 1))
        budget = f"~{paper.budget_m:g}" if paper.budget_m else "n/a"
        top1 = seeds.cell(Metric.TEST_TOP1) if paper.configured else "not configured"
        rows.append([paper.description, *used, top1, seeds.count(), marks[paper.row], *counts,
                     budget, *reference, *_setting_cells(seeds)])
    header = ["method", *STRATEGIES, "ours top-1", "n", "not resolved from", "FLOPs (M)",
              "BOPs (M)", "Params (M)", "budget (M)", "paper budget (M, Table 4 right)",
              *(f"paper {s}" for s in STRATEGIES), "paper top-1 (ImageNet)", *SETTING_COLUMNS]
    return ReportTable(_titled("Table 1: methods on the ResNet-18 skeleton (ours vs the "
                               "paper's, in the paper's order, then Real-to-Bin's full method "
                               "and ReActNet's parts; strategy marks read off each run's config "
                               "and parts; complexity at 224 px, 1000 classes; budget = FLOPs + "
                               "BOPs/64)", ours), header, rows,
                       _results(ours))


def table3(runs: list[Run]) -> ReportTable:
    ours, marks = _rows(runs, "table3", [paper.row for paper in PAPER_TABLE3])
    rows = []
    for paper in PAPER_TABLE3:
        seeds = ours[paper.row]
        run = seeds.first
        data = run.metrics.get("data", "") if run else ""
        epochs = "/".join(dict.fromkeys(str(r.metrics.get(Metric.EPOCHS_RUN, "")) for r in
                                        seeds.done or seeds.runs))
        rows.append([paper.description, paper.row, seeds.cell(Metric.TEST_TOP1),
                     seeds.cell(Metric.TEST_TOP5), seeds.count(), marks[paper.row], data, epochs,
                     f"{paper.top1}", f"{paper.top5}", *_setting_cells(seeds)])
    header = ["model", "row", "ours top-1", "ours top-5", "n", "not resolved from", "our data",
              "epochs", "paper top-1 (ImageNet)", "paper top-5 (ImageNet)", *SETTING_COLUMNS]
    return ReportTable(_titled("Table 3: ablation of the FTBNN baseline (ours vs the paper's)",
                               ours), header, rows, _results(ours))


def table4(runs: list[Run]) -> ReportTable:
    ours, marks = _rows(runs, "table4", [paper.key for paper in PAPER_TABLE4])
    rows = []
    for paper in PAPER_TABLE4:
        seeds = ours[paper.key]
        run = seeds.first
        counts = _complexity(run, ("flops", "bops", "params", "budget"))
        scores = [seeds.cell(key) for key in (Metric.TRAIN_TOP1, Metric.VAL_TOP1, Metric.TEST_TOP1)]
        rows.append([f"~{paper.budget}", str(paper.depth), str(paper.groups),
                     str(run.metrics.get("width", "")) if run else "", *counts, *scores,
                     seeds.count(), marks[paper.key], f"{paper.flops_m}", f"{paper.bops_m:g}",
                     f"{paper.params_m}", f"{paper.top1_train}", f"{paper.top1_val}",
                     *_setting_cells(seeds)])
    header = ["budget", "layers", "G", "width", "FLOPs (M)", "BOPs (M)", "Params (M)",
              "budget (M)", "train top-1", "val top-1", "test top-1", "n", "not resolved from",
              "paper FLOPs", "paper BOPs", "paper Params", "paper train top-1",
              "paper val top-1", *SETTING_COLUMNS]
    return ReportTable(_titled("Table 4 (left): derived models (ours vs the paper's; "
                               "complexity at 224 px, 1000 classes; *not resolved from* names "
                               "rows by their b<budget>_l<layers>_g<G>)", ours), header, rows,
                       _results(ours))


BUILDERS = {"table1": table1, "table3": table3, "table4": table4}
PAPER_TOP1 = {"table1": {row.row: row.top1 for row in PAPER_TABLE1 if row.top1 is not None},
              "table3": {row.row: row.top1 for row in PAPER_TABLE3},
              "table4": {row.key: row.top1_val for row in PAPER_TABLE4}}
"""Each row's top-1 on ImageNet in the paper (Tables 1, 3; Table 4's val top-1): reference
only."""
