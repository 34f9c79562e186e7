"""Reports from a fabricated multirun folder: numbers, missing, failed and diverged rows, seeds
(mean ± std, n, the pairs of rows the seeds do not resolve) and multi-step rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from scipy import stats

from ftbnn_exp.paper import PAPER_TABLE3
from ftbnn_exp.report.__main__ import main as report_main
from ftbnn_exp.report.__main__ import write_reports
from ftbnn_exp.report.curves import curves_figure
from ftbnn_exp.report.ordering import ordering
from ftbnn_exp.report.runs import load_runs
from ftbnn_exp.report.seeds import Spread, resolved, unresolved
from ftbnn_exp.report.tables import PAPER_TOP1, table3


def _run_dir(root: Path, name: str, **metrics) -> None:
    folder = root / name
    (folder / "csv" / "version_0").mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "csv" / "version_0" / "metrics.csv").write_text(
        "epoch,step,train/loss,val/top1\n0,10,,50.0\n0,10,1.5,\n1,20,,60.0\n1,20,0.9,\n")


def test_table3_report_beside_the_paper(tmp_path):
    final = {"test/top1": 91.234, "test/top5": 99.5, "val/top1": 90.0}
    _run_dir(tmp_path, "0-a", experiment="table3/baseline", row="baseline", status="completed",
             final=final, data="digits", epochs_run=2)
    _run_dir(tmp_path, "1-b", experiment="table3/relu", row="relu", status="diverged",
             diverged_epoch=3, final={}, data="digits", epochs_run=3)
    _run_dir(tmp_path, "2-c", experiment="table3/prelu", row="prelu", status="failed",
             final={}, data="digits", epochs_run=0)
    report = write_reports(tmp_path)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in report.splitlines()}
    assert lines["Baseline (partially ReLU & FPReLU in others)"] == (
        "| Baseline (partially ReLU & FPReLU in others) | baseline | 91.2 | 99.5 | 1 | n < 2 "
        "| digits | 2 | 60.2 | 82.0 | digits, 2 epochs |  |")
    assert "| diverged (epoch 3) | diverged (epoch 3) |" in lines[
        "All configured with ReLU (lr=0.00015)"]
    assert "| failed | failed |" in lines["All configured with PReLU"]
    assert "| missing | missing |" in lines["Full-precision ResNet-18"]
    assert (tmp_path / "report.md").read_text() == report
    csv_rows = (tmp_path / "report-table3.csv").read_text().splitlines()
    assert len(csv_rows) == 10
    assert (tmp_path / "curves-table3.png").stat().st_size > 10_000
    assert (tmp_path / "curves-table3.svg").read_text().lstrip().startswith("<?xml")
    assert "\n![table3: curves and ordering](curves-table3.png)\n" in report


def test_table4_report_shows_complexity_and_scores(tmp_path):
    _run_dir(tmp_path, "0-x", experiment="table4/b135_l34_g5", row="b135_l34_g5",
             status="completed", width=180,
             complexity_imagenet={"flops": 31.96e6, "bops": 6563.8e6, "params": 2.64e6,
                                  "budget": 134.5e6},
             final={"train/top1": 97.0, "val/top1": 95.0, "test/top1": 94.0})
    report = write_reports(tmp_path)
    row = next(line for line in report.splitlines() if line.startswith("| ~135 | 34 | 5 |"))
    assert row == ("| ~135 | 34 | 5 | 180 | 32.0 | 6564 | 2.64 | 134.5 | 97.0 | 95.0 | 94.0 "
                   "| 1 | n < 2 | 31.5 | 6412 | 2.56 | 66.8 | 65.5 |  |  |")
    assert sum("| missing | missing | missing |" in line for line in report.splitlines()) == 19


def test_report_cli_errors_in_one_line(tmp_path, capsys):
    done = subprocess.run([sys.executable, "-m", "ftbnn_exp.report", str(tmp_path)],
                          capture_output=True, text=True)  # the real command, once
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: no Table 1, 3 or 4 runs")
    assert report_main(["fprelu", str(tmp_path / "x.ckpt")]) == 2
    assert "is not a file" in capsys.readouterr().err


def _seeds(root: Path, row: str, values: list[float | None], **extra) -> None:
    """One job folder per seed (1, 2, ...) of a Table 3 row; None: that seed diverged."""
    for seed, value in enumerate(values, start=1):
        done = value is not None
        _run_dir(root, f"{row}-seed{seed}", experiment=f"table3/{row}", row=row, seed=seed,
                 status="completed" if done else "diverged", diverged_epoch=None if done else 1,
                 final={"test/top1": value, "test/top5": 99.0} if done else {},
                 data="digits", epochs_run=2, **extra)


def test_seeds_give_mean_std_n_and_mark_the_pairs_they_do_not_resolve(tmp_path):
    # baseline 91 ± 1, relu_partial 91.5 ± 1 and prelu 93 ± 1 (3 seeds each): Welch's 95 %
    # interval (df 4, t 2.78, half-width 2.27) contains their gaps (0.5, 1.5, 2.0; a normal
    # interval, 1.60, would resolve the 2.0); none, 81 ± 1, is resolved from all three.
    _seeds(tmp_path, "baseline", [90.0, 91.0, 92.0])
    _seeds(tmp_path, "relu_partial", [90.5, 91.5, 92.5])
    _seeds(tmp_path, "prelu", [92.0, 93.0, 94.0])
    _seeds(tmp_path, "none", [80.0, 81.0, 82.0],
           config={"trainer": {"limit_test_batches": 1}, "seed": 0})
    _seeds(tmp_path, "relu", [60.0, None])
    report = write_reports(tmp_path)
    cells = {line.split(" | ")[1]: line.split(" | ")[2:6] for line in report.splitlines()
             if line.startswith("| ") and " | " in line}
    assert cells["baseline"] == ["91.0 ± 1.0", "99.0 ± 0.0", "3", "prelu, relu_partial"]
    assert cells["relu_partial"] == ["91.5 ± 1.0", "99.0 ± 0.0", "3", "prelu, baseline"]
    assert cells["prelu"] == ["93.0 ± 1.0", "99.0 ± 0.0", "3", "relu_partial, baseline"]
    assert cells["none"] == ["81.0 ± 1.0", "99.0 ± 0.0", "3", "—"]
    assert cells["relu"] == ["60.0", "99.0", "1; seed 2 diverged (epoch 1)", "n < 2"]
    assert cells["fprelu"] == ["missing", "missing", "0", ""]
    assert "Evaluation protocol" in report and "after the final epoch" in report
    assert "Welch's 95% t-interval" in report
    assert ("part of the test set scored (trainer.limit_test_batches=1): none (seeds 1, 2, 3)"
            in report)
    per_seed = (tmp_path / "report-table3-runs.csv").read_text().splitlines()
    assert len(per_seed) == 1 + 3 * 4 + 2
    assert "baseline,2,completed,91.0,99.0,,,2," + str(tmp_path / "baseline-seed2") in per_seed
    assert any(line.startswith("relu,2,diverged (epoch 1),,,") for line in per_seed)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ((90.0, 91.0, 92.0), (80.0, 81.0, 82.0), True),
    ((90.0, 91.0, 92.0), (92.0, 93.0, 94.0), False),  # ranges touch; t-interval holds 0
    # Unequal spreads: Welch's df (about 1) leaves the gap of 4 unresolved; a pooled-variance
    # interval (df 5) would resolve it.
    ((90.0, 90.1, 89.9, 90.0, 90.0), (93.0, 95.0), False),
    ((90.0, 90.0), (91.0, 91.0), True),  # no scatter at all: any gap is resolved
    ((90.0,), (50.0, 51.0), False),  # one seed has no spread to judge by
])
def test_welch_interval_decides_whether_the_seeds_resolve_a_difference(a, b, expected):
    assert resolved(Spread(a), Spread(b)) is expected


def test_a_row_not_resolved_from_any_other_is_marked_all_others():
    close = {name: Spread((90.0 + shift, 91.0 + shift, 92.0 + shift))
             for name, shift in (("a", 0.0), ("b", 0.1), ("c", 0.2), ("d", 0.3))}
    assert set(unresolved(close).values()) == {"all others"}


def _stage(root: Path, folder: str, seed: int, stage: int | None, top1: float,
           name: str = "table1-ftbnn_kd") -> None:
    """A record of an ``experiment=table1/ftbnn_kd`` job's stage (None: its teacher)."""
    config = {"seed": seed, "stage": None, "kd": {"epochs": [1, 1, 1], "kd_weight": 1.0}}
    metrics = {"experiment": "table1/ftbnn_kd", "row": "ftbnn_kd", "seed": seed,
               "status": "completed", "run_name": name, "final": {"test/top1": top1},
               "config": {**config, "kd": None} if stage is None else config,
               "model_spec": {"family": "ftbnn_resnet", "kwargs": {}}}  # its parts: Table 1
    if stage is not None:
        metrics["stage"] = stage
    _run_dir(root, folder, **metrics)


def test_a_multistep_row_is_its_last_stage_per_seed(tmp_path):
    # Seed 1 finished: teacher, stages 0-2 and the pipeline's summary; seed 2 stopped after
    # stage 0. The row is seed 1's stage 2 alone; neither the teacher (whose folder sorts
    # last) nor an earlier stage stands for a seed.
    for seed, stages in ((1, (0, 1, 2)), (2, (0,))):
        job = f"ftbnn_kd-seed{seed}"
        _stage(tmp_path, f"{job}/teacher", seed, None, 99.0, name="table1-ftbnn_kd-teacher")
        for stage in stages:
            _stage(tmp_path, f"{job}/stage{stage}", seed, stage, 40.0 + 10 * stage + seed)
    (tmp_path / "ftbnn_kd-seed1" / "metrics.json").write_text(json.dumps(
        {"experiment": "table1/ftbnn_kd", "status": "completed", "final": {"test/top1": 61.0}}))
    _stage(tmp_path, "ftbnn_kd-seed3/teacher", 3, None, 98.0, name="table1-ftbnn_kd-teacher")
    report = write_reports(tmp_path)
    row = next(line for line in report.splitlines() if line.startswith("| FTBNN † (KD + MS)"))
    cells = row.split(" | ")
    assert cells[1:8] == ["✓", "✗", "✓", "✗", "61.0",
                          "1; seed 2 unfinished (stage 0 of 0-2); seed 3 unfinished "
                          "(teacher only)", "n < 2"]


OURS = {"bireal": [80.0, 82.0], "none": [84.5], "prelu": [90.25], "relu": [86.0],
        "relu_partial": [88.0], "baseline": [89.0, 90.0], "resnet18_fp": [95.0]}
"""A Table 3 multirun's top-1 per row and seed (fprelu, relu_partial_prelu missing). Our
ranks differ from the paper's (relu third of seven, not last; prelu above baseline), so the
rank correlation is below 1, and the rows' folders sort otherwise than the paper's order."""


def _ordered_sweep(root: Path) -> None:
    for row, values in OURS.items():
        _seeds(root, row, values)


def _ordering_table(report: str) -> dict[str, list[str]]:
    section = report.split("our ordering against the paper's", 1)[1]
    return {line.split(" | ")[0].lstrip("| "): line.strip(" |").split(" | ")[1:]
            for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| row")}


def test_table3_report_ranks_ours_against_the_paper_and_gives_gains(tmp_path):
    _ordered_sweep(tmp_path)
    report = write_reports(tmp_path)
    # The values as written above, paired row by row in the paper's order.
    rows = ["bireal", "none", "prelu", "relu", "relu_partial", "baseline", "resnet18_fp"]
    ours = [81.0, 84.5, 90.25, 86.0, 88.0, 89.5, 95.0]
    paper = [52.3, 52.5, 58.9, 45.9, 59.6, 60.2, 69.8]
    expected = stats.spearmanr(ours, paper)
    assert 0 < expected.statistic < 0.9
    assert (f"Spearman ρ = {expected.statistic:.3f} (p = {expected.pvalue:.3g}, 7 rows)"
            in report)
    found = ordering("table3", table3(load_runs(tmp_path)).results, PAPER_TOP1["table3"])
    assert found.paired == rows
    assert found.spearman() == (expected.statistic, expected.pvalue)
    table = _ordering_table(report)
    assert list(table) == [row.row for row in PAPER_TABLE3]
    for row, mine, theirs in zip(rows, ours, paper, strict=True):
        assert table[row] == [f"{mine:.2f}", f"{theirs:g}", f"{mine - 89.5:+.2f}",
                              f"{theirs - 60.2:+.1f}"], row
    assert table["bireal"][2:] == ["-8.50", "-7.9"] and table["prelu"][2] == "+0.75"
    assert table["fprelu"] == ["", "59.3", "", "-0.9"]


def test_figure_rows_in_paper_order_with_distinct_styles_and_epoch_axes(tmp_path):
    _ordered_sweep(tmp_path)
    results = table3(load_runs(tmp_path)).results
    order = ordering("table3", results, PAPER_TOP1["table3"])
    figure, axes = curves_figure(results, "Table 3", order)
    plt.close(figure)
    paper_order = ["bireal", "none", "prelu", "relu", "relu_partial", "baseline", "resnet18_fp"]
    legend = axes["accuracy"].get_legend()  # inside the panel, not beside the figure
    assert [text.get_text() for text in legend.get_texts()] == paper_order
    styles = [(tuple(h.get_color()), h.get_marker()) for h in legend.legend_handles]
    assert len(set(styles)) == len(styles) and "None" not in {m for _, m in styles}
    # tab10's colour of each row's place in the paper's table, so a row keeps its colour
    # whichever rows ran; no light/dark pairs (tab20's blue and light blue)
    assert [colour for colour, _ in styles] == [plt.get_cmap("tab10")(i)
                                                for i in (0, 1, 2, 4, 5, 7, 8)]
    for name in ("accuracy", "loss"):  # the CSV logs epochs 0 and 1: epochs 1 and 2
        low, high = axes[name].get_xlim()
        assert low == 0 and 2 < high <= 3
        assert all(tick == int(tick) for tick in axes[name].get_xticks())
    assert f"{order.summary()}" in axes["rank"].get_title()
    ticks = [t.get_text() for t in axes["ours"].get_yticklabels()]
    assert ticks == [*paper_order[:2], "prelu", "fprelu", "relu", "relu_partial",
                     "relu_partial_prelu", "baseline (baseline)", "resnet18_fp"]
    bars = {ticks[round(bar.get_y() + bar.get_height() / 2)]: bar.get_width()
            for bar in axes["ours"].patches}
    assert bars == pytest.approx({"bireal": -8.5, "none": -5.0, "prelu": 0.75, "relu": -3.5,
                                  "relu_partial": -1.5, "baseline (baseline)": 0.0,
                                  "resnet18_fp": 5.5})
    assert len(axes["paper"].patches) == 9


def test_a_one_epoch_run_is_a_bar_with_its_seeds_dots(tmp_path):
    folder = tmp_path / "baseline-seed1"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({
        "experiment": "table3/baseline", "row": "baseline", "status": "completed",
        "final": {"test/top1": 50.0}, "history": [
            {"epoch": 0, "val/top1": 40.0, "train/loss": 2.0}]}))
    results = table3(load_runs(tmp_path)).results
    figure, axes = curves_figure(results, "one epoch")
    plt.close(figure)
    (dots,) = axes["accuracy"].get_lines()
    assert list(dots.get_ydata()) == [40.0] and dots.get_marker() not in ("None", "", None)
    (bar,) = axes["accuracy"].patches
    assert bar.get_height() == 40.0
    assert [t.get_text() for t in axes["accuracy"].get_xticklabels()] == ["baseline"]
    assert axes["accuracy"].get_title() == "val top-1 after 1 epoch"  # one seed: no dots said


def test_runs_without_a_logged_epoch_still_get_a_figure(tmp_path):
    _run_dir(tmp_path, "0-a", experiment="table3/prelu", row="prelu", status="failed",
             final={})
    (tmp_path / "0-a" / "csv" / "version_0" / "metrics.csv").unlink()
    results = table3(load_runs(tmp_path)).results
    figure, axes = curves_figure(results, "failed", ordering("table3", results,
                                                             PAPER_TOP1["table3"]))
    plt.close(figure)
    assert not figure.legends and not axes["accuracy"].get_lines()
    assert axes["accuracy"].get_xlim()[0] == 0
    assert "n/a" in axes["rank"].get_title()


def _one_epoch_row(root: Path, row: str, top1: float, loss: float, kd: bool = False) -> None:
    """A Table 1 row's job after one epoch on the digits: its record and its CSV curve."""
    folder = root / f"{row}-seed1"
    (folder / "csv" / "version_0").mkdir(parents=True)
    config = {"seed": 1, "data": {"name": "digits"}, "kd": {"kd_weight": 1.0} if kd else None}
    (folder / "metrics.json").write_text(json.dumps(
        {"experiment": f"table1/{row}", "row": row, "seed": 1, "status": "completed",
         "final": {"test/top1": top1}, "data": "digits", "epochs_run": 1, "config": config,
         "model_spec": {"family": "ftbnn_resnet",
                        "kwargs": {"num_classes": 10, "image_size": 8}}}))
    (folder / "csv" / "version_0" / "metrics.csv").write_text(
        f"epoch,step,train/loss,val/top1\n0,10,,{top1}\n0,10,{loss},\n")


def test_a_one_epoch_table_says_what_it_measured_and_flags_what_says_nothing(tmp_path):
    """Issue 36: the Table 1 report of a 1-epoch run names digits, 8 px and 1 epoch per row
    and against the paper's, flags the rows at chance and a plain loss that blew up (not a
    distillation row's large loss), and cautions under the rank agreement."""
    for row, top1, loss, kd in (("bnn", 86.7, 1.2, False), ("bireal", 72.2, 1.1, False),
                                ("ftbnn", 50.0, 58.0, False), ("real2bin", 14.1, 310.0, True),
                                ("ftbnn_kd", 10.0, 290.0, True)):
        _one_epoch_row(tmp_path, row, top1, loss, kd)
    report = write_reports(tmp_path)
    assert "ours: digits, 8 px, 1 epoch; the paper: ImageNet, 224 px, 60 epochs" in report
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")
            for line in report.splitlines() if line.startswith("| ")}
    assert rows["BNN"][-2:] == ["digits, 8 px, 1 epoch", " |"]
    assert rows["FTBNN † (KD + MS)"][-1] == "at chance (top-1 10.0 %, 1/10 = 10.0 %) |"
    assert rows["Real-to-Bin baseline †"][-1] == "at chance (top-1 14.1 %, 1/10 = 10.0 %) |"
    assert rows["FTBNN †"][-1] == ("train loss 58 at its last epoch (a uniform guess: 2.30) |")
    assert "**Caution:** these runs trained digits, 8 px, 1 epoch" in report
    figure, axes = curves_figure(*_figure_inputs(tmp_path))
    try:
        assert axes["loss"].get_yscale() == "log"  # KD rows near 300 beside plain ones near 1
        assert len(axes["accuracy"].patches) == 5  # a bar per row after one epoch
        assert axes["accuracy"].get_legend() is not None and not figure.legends
        assert "a line per seed" not in axes["accuracy"].get_title()
    finally:
        plt.close(figure)


def _figure_inputs(root: Path) -> tuple:
    from ftbnn_exp.report.tables import table1

    table = table1(load_runs(root))
    return table.results, table.title, ordering("table1", table.results, PAPER_TOP1["table1"])
