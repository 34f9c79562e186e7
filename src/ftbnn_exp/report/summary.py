"""One run's report: what it was, its results, its complexity, its curves and Table 2 of its
checkpoint, written into its folder as ``report.md``, ``curves.png`` and ``curves.svg``."""

from __future__ import annotations

from pathlib import Path

from ftbnn_exp.artifacts import (
    BEST,
    LAST,
    Metric,
    RunFolder,
    load_checkpoint,
    model_from_checkpoint,
)
from ftbnn_exp.errors import UserError
from ftbnn_exp.report.compare import COMPLEXITY, SIZES, complexity, markdown_table, result_rows
from ftbnn_exp.report.curves import plot_curves
from ftbnn_exp.report.fprelu import fprelu_table
from ftbnn_exp.report.runs import Run

FACTS = ("run_name", "experiment", "row", "model", "nonlinearity", "data", "seed")
"""The keys of ``metrics.json`` that say what the run was."""
CHECKPOINTS = (LAST, BEST)
"""Table 2 reads the weights the run was tested with by default (``test_weights=last``)."""


def table2(folder: Path) -> str:
    """Table 2 (the non-linear module after each binary conv) of the run's checkpoint, or why
    there is none: a run's summary is still worth reading when its model has no binary
    blocks or needs a plug-in that is not loaded."""
    run = RunFolder(folder)
    files = [run.checkpoint(name) for name in CHECKPOINTS]
    for file in files:
        if file.is_file():
            try:
                table = fprelu_table(model_from_checkpoint(load_checkpoint(file)))
            except UserError as error:
                return f"Not available: {error}"
            return f"Of `{file.relative_to(folder)}`:\n\n```\n{table}\n```"
    shown = " or ".join(str(file.relative_to(folder)) for file in files)
    return f"Not available: no {shown} in the folder."


def _complexity_table(run: Run) -> str:
    counted = run.metrics.get(Metric.COMPLEXITY) or {}
    convention = counted.get("convention", "?") if isinstance(counted, dict) else "?"
    rows = [[label, *(complexity(run, record, key) for record, _ in SIZES)]
            for key, label in COMPLEXITY]
    return (f"## Complexity (counted as `{convention}`; Section 3.2)\n\n"
            + markdown_table(["", *(f"on {size}" for _, size in SIZES)], rows))


def summarise_run(run: Run, label: str) -> str:
    """The run's report in markdown; its curves written beside it in the run's folder."""
    facts = [[key, str(run.metrics.get(key))] for key in FACTS if run.metrics.get(key)]
    results = [row for row in result_rows([run]) if not row[0].startswith(
        tuple(label for _, label in COMPLEXITY))]
    plot_curves({label: [run]}, f"{label}: {run.metrics.get('run_name', '')}",
                run.path / "curves.png")
    return "\n\n".join([
        f"# Run {label}", markdown_table(["folder", str(run.path)], facts),
        "## Results (test: the final epoch's weights; epochs counted from 1)",
        markdown_table(["", label], results), _complexity_table(run),
        "## Curves\n\n![validation top-1 and training loss per epoch](curves.png)\n\n"
        "Vector copy: `curves.svg`.",
        f"## Table 2: non-linear modules after each binary conv\n\n{table2(run.path)}"]) + "\n"


def write_run_report(run: Run, label: str) -> str:
    """:func:`summarise_run` written to ``report.md`` in the run's folder; returned too."""
    try:
        report = summarise_run(run, label)
        (run.path / "report.md").write_text(report)
    except OSError as error:
        raise UserError(f"cannot write the report into '{run.path}': "
                        f"{error.strerror or error}") from None
    return report
