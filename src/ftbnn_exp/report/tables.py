"""Tables 3 and 4 rebuilt from a multirun's artefacts, our numbers beside the paper's."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ftbnn_exp.paper import PAPER_TABLE3, PAPER_TABLE4
from ftbnn_exp.report.runs import Run


@dataclass
class ReportTable:
    title: str
    header: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(self.header)
            writer.writerows(self.rows)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def outcome(run: Run | None) -> str | None:
    """Why a row has no numbers, or None when it has them."""
    if run is None:
        return "missing"
    if run.status == "diverged":
        return f"diverged (epoch {run.metrics.get('diverged_epoch')})"
    if run.status != "completed":
        return run.status
    return None


def _by_row(runs: list[Run], table: str) -> dict[str, Run]:
    found: dict[str, Run] = {}
    for run in runs:  # later runs of the same row replace earlier ones
        if run.table == table and run.row:
            found[run.row] = run
    return found


def table3(runs: list[Run]) -> ReportTable:
    ours = _by_row(runs, "table3")
    rows = []
    for paper in PAPER_TABLE3:
        run = ours.get(paper.row)
        why = outcome(run)
        top1 = why or _fmt(run.final("test/top1"))
        top5 = why or _fmt(run.final("test/top5"))
        data = run.metrics.get("data", "") if run else ""
        epochs = str(run.metrics.get("epochs_run", "")) if run else ""
        rows.append([paper.description, top1, top5, data, epochs, f"{paper.top1}",
                     f"{paper.top5}"])
    header = ["model", "ours top-1", "ours top-5", "our data", "epochs",
              "paper top-1 (ImageNet)", "paper top-5 (ImageNet)"]
    return ReportTable("Table 3: ablation of the FTBNN baseline (ours vs the paper's)", header,
                       rows)


def table4(runs: list[Run]) -> ReportTable:
    ours = _by_row(runs, "table4")
    rows = []
    for paper in PAPER_TABLE4:
        run = ours.get(paper.key)
        why = outcome(run)
        c = (run.metrics.get("complexity_imagenet") or {}) if run else {}
        counts = [_fmt(c["flops"] / 1e6), _fmt(c["bops"] / 1e6, 0), _fmt(c["params"] / 1e6, 2),
                  _fmt(c["budget"] / 1e6)] if c else ["", "", "", ""]
        scores = ([why] * 3 if why else
                  [_fmt(run.final("train/top1")), _fmt(run.final("val/top1")),
                   _fmt(run.final("test/top1"))])
        rows.append([f"~{paper.budget}", str(paper.depth), str(paper.groups),
                     str(run.metrics.get("width", "")) if run else "", *counts, *scores,
                     f"{paper.flops_m}", f"{paper.bops_m:g}", f"{paper.params_m}",
                     f"{paper.top1_train}", f"{paper.top1_val}"])
    header = ["budget", "layers", "G", "width", "FLOPs (M)", "BOPs (M)", "Params (M)",
              "budget (M)", "train top-1", "val top-1", "test top-1", "paper FLOPs",
              "paper BOPs", "paper Params", "paper train top-1", "paper val top-1"]
    return ReportTable("Table 4 (left): derived models (ours vs the paper's; complexity at "
                       "224 px, 1000 classes)", header, rows)


BUILDERS = {"table3": table3, "table4": table4}
PAPER_TOP1 = {"table3": {row.row: row.top1 for row in PAPER_TABLE3},
              "table4": {row.key: row.top1_val for row in PAPER_TABLE4}}
"""Each row's top-1 on ImageNet in the paper (Table 3; Table 4's val top-1): reference only."""
