"""Reports.

``python -m ftbnn_exp.report <multirun dir>``: Tables 1, 3 and/or 4 from the runs found under
the folder (each row's mean ± std over its seeds), written to ``report.md``,
``report-<table>.csv`` (the table), ``report-<table>-runs.csv`` (one line per row and seed) and
``curves-<table>.png`` there.
``python -m ftbnn_exp.report fprelu <checkpoint>``: Table 2 for a trained model.
``python -m ftbnn_exp.report fig2 <multirun dir>``: Fig. 2's table and picture.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ftbnn_exp import plugins
from ftbnn_exp.artifacts import load_checkpoint, model_from_checkpoint
from ftbnn_exp.errors import UserError
from ftbnn_exp.report.curves import plot_curves
from ftbnn_exp.report.fig2 import fig2_report
from ftbnn_exp.report.fprelu import fprelu_table
from ftbnn_exp.report.runs import load_runs
from ftbnn_exp.report.seeds import RULE
from ftbnn_exp.report.tables import BUILDERS, PAPER_TOP1, PROTOCOL

USAGE = ("usage: python -m ftbnn_exp.report [--plugin MODULE]... <multirun dir> | "
         "fprelu <checkpoint> | fig2 <multirun dir>")


def write_reports(root: Path) -> str:
    if not root.is_dir():
        raise UserError(f"'{root}' is not a folder; give the multirun folder of a sweep")
    runs = load_runs(root)
    tables = sorted({run.table for run in runs if run.table in BUILDERS})
    if not tables:
        raise UserError(f"no Table 1, 3 or 4 runs (metrics.json of experiment=table1/..., "
                        f"table3/... or table4/...) under '{root}'")
    sections = [PROTOCOL, f"Seeds: {RULE}"]
    for name in tables:
        table = BUILDERS[name](runs)
        table.write_csv(root / f"report-{name}.csv")
        table.write_runs_csv(root / f"report-{name}-runs.csv")
        plot_curves(table.results, table.title, root / f"curves-{name}.png", PAPER_TOP1[name])
        sections.append(table.markdown() + f"\n\nCurves: `curves-{name}.png`; each seed's "
                        f"numbers: `report-{name}-runs.csv`. Paper values are the paper's "
                        "ImageNet results (reference only).")
    report = "\n\n".join(sections) + "\n"
    (root / "report.md").write_text(report)
    return report


def plugin_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--plugin MODULE`` (repeatable: plug-ins a checkpoint's model needs) and the rest."""
    modules, rest = [], list(argv)
    while rest and rest[0] == "--plugin":
        if len(rest) < 2:
            raise UserError("--plugin needs a module name")
        modules.append(rest[1])
        rest = rest[2:]
    return modules, rest


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(USAGE)
        return 0
    try:
        modules, argv = plugin_options(argv)
        plugins.load(modules)
        if len(argv) == 2 and argv[0] == "fprelu":
            print(fprelu_table(model_from_checkpoint(load_checkpoint(argv[1]))))
        elif len(argv) == 2 and argv[0] == "fig2":
            print(fig2_report(Path(argv[1])))
            print(f"written: {Path(argv[1]) / 'fig2.md'}, {Path(argv[1]) / 'fig2.png'}")
        elif len(argv) == 1:
            print(write_reports(Path(argv[0])))
            print(f"written: {Path(argv[0]) / 'report.md'}")
        else:
            raise UserError(USAGE)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
