"""Reports: ``python -m ftbnn_exp.report --help`` lists every form with examples.

Folders are recognised by what they hold, so one command reads whatever a training wrote:
a run folder (``metrics.json`` in it) gets its own report, two or more run folders are set
side by side, and a multirun folder of Table 1, 3 or 4 rows gets the paper's tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ftbnn_exp import plugins
from ftbnn_exp.artifacts import RunFolder, load_checkpoint, model_from_checkpoint
from ftbnn_exp.errors import UserError
from ftbnn_exp.report.compare import compare_runs, labels
from ftbnn_exp.report.curves import plot_curves
from ftbnn_exp.report.fig2 import fig2_report
from ftbnn_exp.report.fprelu import fprelu_table
from ftbnn_exp.report.ordering import ordering
from ftbnn_exp.report.runs import load_run, load_runs, run_folders
from ftbnn_exp.report.seeds import RULE
from ftbnn_exp.report.summary import write_run_report
from ftbnn_exp.report.tables import BUILDERS, PAPER_TOP1, PROTOCOL

PROG = "python -m ftbnn_exp.report"
USAGE = f"""{PROG} [--plugin MODULE]... FOLDER [FOLDER ...]
       {PROG} [--plugin MODULE]... fprelu CHECKPOINT
       {PROG} fig2 MULTIRUN_DIR"""
DESCRIPTION = """\
What is written depends on the folders given:
  one run folder (it holds metrics.json)
      its report: results, complexity, curves, Table 2 of checkpoints/last.ckpt; printed and
      written into the folder as report.md, curves.png and curves.svg
  two or more run folders (or multirun folders, each standing for the runs under it)
      side by side, printed: the keys of .hydra/config.yaml that differ, with each run's
      value, then test top-1/top-5, best val top-1, epochs, wall time and complexity in a
      column per run
  one multirun folder of experiment=table1/..., table3/... or table4/... rows
      the paper's Tables 1, 3, 4 (each row's mean ± std over its seeds) beside the paper's
      values, the rank correlation with the paper's ordering and each row's gain over the
      baseline row; written into the folder as report.md, report-<table>.csv,
      report-<table>-runs.csv and curves-<table>.png/.svg (a multirun of other runs is
      compared side by side)
  fprelu CHECKPOINT
      Table 2: the non-linear module after each binary conv of a trained model
  fig2 MULTIRUN_DIR
      Fig. 2's table and picture from the runs of `make fig2` (fig2.md, fig2.csv, fig2.png)
A folder named like a form (fprelu, fig2) is given as ./fprelu."""
EPILOG = f"""\
examples:
  {PROG} outputs/baseline-relu_partial_fprelu/2026-01-05_10-00-00
  {PROG} outputs/baseline-prelu/2026-01-05_10-00-00 outputs/baseline-fprelu/2026-01-05_11-00-00
  {PROG} multirun/abl/table3/baseline-seed1 multirun/abl/table3/prelu-seed1
  {PROG} multirun/2026-01-05_12-00-00         (a multirun of other runs: side by side)
  {PROG} multirun/abl/table3                  (the tables; what `make ablation` runs)
  {PROG} fprelu outputs/baseline-prelu/2026-01-05_10-00-00/checkpoints/last.ckpt
  {PROG} --plugin myexp.plugin fprelu run/checkpoints/last.ckpt
  {PROG} fig2 multirun/fig/fig2"""
FORMS = {"fprelu": "CHECKPOINT", "fig2": "MULTIRUN_DIR"}


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (``error: ...``), not a usage block and a line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


def parser() -> Parser:
    """One positional list (the form is read off what it names) and ``--plugin``."""
    made = Parser(prog=PROG, usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    made.add_argument("folders", nargs="*", metavar="FOLDER",
                      help="run folders or multirun folders (or a form: fprelu, fig2)")
    made.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                      help="import MODULE first (repeatable): the parts a checkpoint's model "
                           "needs; a file's contents are never imported")
    return made


def write_reports(root: Path) -> str:
    """The paper's tables from the multirun under ``root``, written there (the form
    ``make table1 / ablation / derived`` runs)."""
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
        order = ordering(name, table.results, PAPER_TOP1[name])
        plot_curves(table.results, table.title, root / f"curves-{name}.png", order)
        sections.append(
            f"{table.markdown()}\n\n{order.markdown(name.replace('table', 'Table '))}\n\n"
            f"![{name}: curves and ordering](curves-{name}.png)\n\nVector copy: "
            f"`curves-{name}.svg`; each seed's numbers: `report-{name}-runs.csv`. Paper values "
            "are the paper's ImageNet results (reference only).")
    report = "\n\n".join(sections) + "\n"
    (root / "report.md").write_text(report)
    return report


def report_folders(paths: list[Path]) -> str:
    """Whatever ``paths`` hold (:data:`DESCRIPTION`): the report, and where it was written."""
    single = len(paths) == 1 and paths[0].is_dir() and not RunFolder(paths[0]).has_metrics()
    if single and any(run.table in BUILDERS for run in load_runs(paths[0])):
        return write_reports(paths[0]) + f"\nwritten: {paths[0] / 'report.md'}"
    if single and not any(paths[0].rglob(RunFolder.METRICS)):
        raise UserError(f"no Table 1, 3 or 4 runs and no other runs (no metrics.json) under "
                        f"'{paths[0]}'; give a run folder or the multirun folder of a sweep")
    folders = list(dict.fromkeys(f for path in paths for f in run_folders(path)))
    runs = [load_run(folder) for folder in folders]
    if len(runs) > 1:
        return compare_runs(runs)
    report = write_run_report(runs[0], labels(folders)[0])
    return report + f"\nwritten: {folders[0] / 'report.md'}, curves.png, curves.svg"


def run_form(form: str, target: str) -> str:
    """``fprelu CHECKPOINT`` (Table 2) or ``fig2 MULTIRUN_DIR`` (Fig. 2)."""
    if form == "fprelu":
        return fprelu_table(model_from_checkpoint(load_checkpoint(target)))
    report = fig2_report(Path(target))
    return report + f"\nwritten: {Path(target) / 'fig2.md'}, {Path(target) / 'fig2.png'}"


def report(argv: list[str]) -> str:
    """The text to print for ``argv``; plug-ins load first, as a checkpoint's model may need
    their parts."""
    options = parser().parse_intermixed_args(argv)
    plugins.load(options.plugin)
    given = options.folders
    if not given:
        raise UserError("nothing to report: give a run folder, several, a multirun folder, "
                        "fprelu CHECKPOINT or fig2 MULTIRUN_DIR (see --help)")
    if given[0] in FORMS:
        if len(given) != 2:
            raise UserError(f"{given[0]} takes one {FORMS[given[0]]}, got {len(given) - 1} "
                            f"(see --help)")
        return run_form(given[0], given[1])
    return report_folders([Path(g) for g in given])


def main(argv: list[str]) -> int:
    """0, 2 for the user's mistake (one line on stderr, no traceback)."""
    try:
        print(report(argv))
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
