"""Reports.

``python -m ftbnn_exp.report <multirun dir>``: Table 3 and/or Table 4 from the runs found under
the folder, written to ``report.md``, ``report-<table>.csv`` and ``curves-<table>.png`` there.
``python -m ftbnn_exp.report fprelu <checkpoint>``: Table 2 for a trained model.
``python -m ftbnn_exp.report fig2 <multirun dir>``: Fig. 2's table and picture.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ftbnn_exp.artifacts import load_checkpoint, model_from_checkpoint
from ftbnn_exp.errors import UserError
from ftbnn_exp.report.curves import plot_curves
from ftbnn_exp.report.fig2 import fig2_report
from ftbnn_exp.report.fprelu import fprelu_table
from ftbnn_exp.report.runs import load_runs
from ftbnn_exp.report.tables import BUILDERS, PAPER_TOP1

USAGE = ("usage: python -m ftbnn_exp.report <multirun dir> | "
         "python -m ftbnn_exp.report fprelu <checkpoint> | "
         "python -m ftbnn_exp.report fig2 <multirun dir>")


def write_reports(root: Path) -> str:
    if not root.is_dir():
        raise UserError(f"'{root}' is not a folder; give the multirun folder of a sweep")
    runs = load_runs(root)
    tables = sorted({run.table for run in runs if run.table in BUILDERS})
    if not tables:
        raise UserError(f"no Table 3 or Table 4 runs (metrics.json of experiment=table3/... or "
                        f"table4/...) under '{root}'")
    sections = []
    for name in tables:
        table = BUILDERS[name](runs)
        table.write_csv(root / f"report-{name}.csv")
        plot_curves([r for r in runs if r.table == name], table.title, root / f"curves-{name}.png",
                    PAPER_TOP1[name])
        sections.append(table.markdown() + f"\n\nCurves: `curves-{name}.png`. Paper values are "
                        "the paper's ImageNet results (reference only).")
    report = "\n\n".join(sections) + "\n"
    (root / "report.md").write_text(report)
    return report


def main(argv: list[str]) -> int:
    try:
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
