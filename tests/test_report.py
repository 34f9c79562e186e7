"""Reports from a fabricated multirun folder: numbers, missing, failed and diverged rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ftbnn_exp.report.__main__ import write_reports


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
        "| Baseline (partially ReLU & FPReLU in others) | 91.2 | 99.5 | digits | 2 | 60.2 | 82.0 |")
    assert "| diverged (epoch 3) | diverged (epoch 3) |" in lines[
        "All configured with ReLU (lr=0.00015)"]
    assert "| failed | failed |" in lines["All configured with PReLU"]
    assert "| missing | missing |" in lines["Full-precision ResNet-18"]
    assert (tmp_path / "report.md").read_text() == report
    csv_rows = (tmp_path / "report-table3.csv").read_text().splitlines()
    assert len(csv_rows) == 10
    assert (tmp_path / "curves-table3.png").stat().st_size > 10_000


def test_table4_report_shows_complexity_and_scores(tmp_path):
    _run_dir(tmp_path, "0-x", experiment="table4/b135_l34_g5", row="b135_l34_g5",
             status="completed", width=180,
             complexity_imagenet={"flops": 31.96e6, "bops": 6563.8e6, "params": 2.64e6,
                                  "budget": 134.5e6},
             final={"train/top1": 97.0, "val/top1": 95.0, "test/top1": 94.0})
    report = write_reports(tmp_path)
    row = next(line for line in report.splitlines() if line.startswith("| ~135 | 34 | 5 |"))
    assert row == ("| ~135 | 34 | 5 | 180 | 32.0 | 6564 | 2.64 | 134.5 | 97.0 | 95.0 | 94.0 "
                   "| 31.5 | 6412 | 2.56 | 66.8 | 65.5 |")
    assert sum("| missing | missing | missing |" in line for line in report.splitlines()) == 19


def test_report_cli_errors_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ftbnn_exp.report", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: no Table 3 or Table 4 runs")
    bad = subprocess.run([sys.executable, "-m", "ftbnn_exp.report", "fprelu",
                          str(tmp_path / "x.ckpt")], capture_output=True, text=True)
    assert bad.returncode == 2 and "is not a file" in bad.stderr
