"""``docs/results.md``: what a fresh install should get on the embedded digits data.

    python -m benchmarks.results --run train table3 --seeds 3     # train, then write the page
    python -m benchmarks.results                                 # rewrite it from the sweeps

Each target runs as its Makefile target does (``make train``: the baseline, 20 epochs;
``make ablation`` / ``table1`` / ``derived`` at their default epochs), with seeds ``1..N``,
into ``--sweeps/<target>`` (default ``multirun/results``; a rerun skips finished runs); the
page lists each row's mean ± std test top-1 over its completed seeds, its epochs and its
training wall time per run (``wall_seconds`` of ``metrics.json``), beside the machine it ran
on. A target whose folder is missing is listed with the command that makes it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from ftbnn_exp.report.runs import Run, load_run, run_folders
from ftbnn_exp.report.tables import outcome

TARGETS = {
    "train": "baseline, 20 epochs (`make train`)",
    "table3": "Table 3 rows, 8 epochs (`make ablation`)",
    "table1": "Table 1 rows, 2 epochs (`make table1`)",
    "table4": "Table 4 rows, 3 epochs (`make derived`)",
}
"""Each target's folder under ``--sweeps`` (the Makefile's table folders) and its title."""
MAKE = {"train": None, "table3": "ablation", "table1": "table1", "table4": "derived"}


def command(target: str, seeds: int, folder: Path) -> list[str]:
    """The run of ``target`` with seeds 1..``seeds`` into ``folder``: the Makefile's own."""
    if MAKE[target] is None:
        return [sys.executable, "-m", "ftbnn_exp", "-m",
                f"seed={','.join(str(s) for s in range(1, seeds + 1))}",
                f"hydra.sweep.dir={folder}", "hydra.sweep.subdir=seed${seed}"]
    return ["make", MAKE[target], f"SEEDS={seeds}", f"SWEEP_DIR={folder.parent}"]


def row_name(run: Run) -> str:
    experiment = run.metrics.get("experiment") or ""  # a pipeline's record has no row
    return run.row or experiment.rpartition("/")[2] or str(run.metrics.get("run_name")
                                                           or run.path.name)


def rows(folder: Path) -> dict[str, list[Run]]:
    """The result runs under ``folder`` by row (a multi-step row: its pipeline's record)."""
    found: dict[str, list[Run]] = {}
    for path in run_folders(folder):
        run = load_run(path)
        found.setdefault(row_name(run), []).append(run)
    return found


def _epochs(run: Run) -> int | None:
    stages = run.metrics.get("stages")
    if stages:  # a multi-step row: its stages' epochs
        return sum(load_run(Path(s["run_dir"])).metrics.get("epochs_run") or 0 for s in stages)
    return run.metrics.get("epochs_run")


def _wall(run: Run) -> float | None:
    stages = run.metrics.get("stages")
    if stages:
        walls = [load_run(Path(s["run_dir"])).metrics.get("wall_seconds") for s in stages]
        return sum(w for w in walls if w) or None
    return run.metrics.get("wall_seconds")


def row_line(row: str, runs: list[Run]) -> str:
    """``| row | mean ± std (n) | epochs | wall s per run |``."""
    done = [r for r in runs if outcome(r) is None and r.final("test/top1") is not None]
    scores = [r.final("test/top1") for r in done]
    if not scores:  # failed, diverged, or a pipeline still at its teacher or an early stage
        top1 = ", ".join(sorted({outcome(r) or r.status for r in runs}))
    elif len(scores) == 1:
        top1 = f"{scores[0]:.1f} (1 seed)"
    else:
        top1 = f"{statistics.mean(scores):.1f} ± {statistics.stdev(scores):.1f} ({len(scores)})"
    epochs = "/".join(str(e) for e in sorted({_epochs(r) for r in done} - {None})) or "?"
    walls = [w for r in done if (w := _wall(r))]
    wall = f"{statistics.mean(walls):.0f}" if walls else "?"
    return f"| {row} | {top1} | {epochs} | {wall} |"


def page(sweeps: Path, seeds: int, note: str = "") -> str:
    lines = ["# Expected results on the embedded digits data", "",
             "What a fresh install should reproduce (`scikit-learn`'s 8×8 digits, 10 classes; "
             "chance 10 %). Test top-1 (%) of the last epoch's weights, mean ± sample std over "
             "seeds 1..N (n in brackets); wall time of training per run in seconds (from "
             "`metrics.json`). Regenerate with `python -m benchmarks.results --run <targets> "
             f"--seeds N` (this page: `--sweeps {sweeps}`).", "",
             f"Machine: {platform.processor() or platform.machine()}, "
             f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} "
             "cores usable; wall times on a machine shared with other jobs run long.", "",
             *([note, ""] if note else [])]
    for target, title in TARGETS.items():
        folder = sweeps / target
        lines += [f"## {title}", ""]
        if not folder.is_dir() or not any(folder.rglob("metrics.json")):
            lines += ["Not run for this page; make it with", "",
                      f"    python -m benchmarks.results --run {target} --seeds {seeds}", ""]
            continue
        lines += ["| row | test top-1 (%) | epochs | wall s / run |", "|---|---|---|---|"]
        lines += [row_line(row, runs) for row, runs in sorted(rows(folder).items())]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.results", description=__doc__)
    parser.add_argument("--run", nargs="*", default=[], choices=list(TARGETS),
                        help="targets to train first (default: none; the page is rewritten "
                             "from the sweeps there are)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N (default 3)")
    parser.add_argument("--sweeps", type=Path, default=Path("multirun/results"),
                        help="where the targets' sweeps go (default multirun/results)")
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--note", default="", help="a paragraph on how this page was made "
                        "(what was run, what was not)")
    args = parser.parse_args(argv)
    for target in args.run:
        subprocess.run(command(target, args.seeds, args.sweeps / target), check=False)
    args.out.write_text(page(args.sweeps, args.seeds, args.note))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
