"""docs/results.md's generator (issue 36): rows by seed, mean ± std, epochs and wall time read
from the sweeps' records; a target not run names the command that runs it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.results import command, page


def _record(folder: Path, **metrics) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_the_page_has_each_rows_spread_and_names_what_was_not_run(tmp_path):
    for seed, top1 in ((1, 97.0), (2, 98.0), (3, 99.0)):
        _record(tmp_path / "train" / f"seed{seed}", run_name="baseline-relu_partial_fprelu",
                seed=seed, status="completed", final={"test/top1": top1}, epochs_run=20,
                wall_seconds=60.0 + seed)
    _record(tmp_path / "table3" / "prelu-seed1", row="prelu", status="completed",
            final={"test/top1": 90.0}, epochs_run=8, wall_seconds=30.0)
    _record(tmp_path / "table3" / "relu-seed1", row="relu", status="diverged", final={},
            epochs_run=3, diverged_epoch=3)
    _record(tmp_path / "table1" / "ftbnn_kd-seed1" / "teacher", row="ftbnn_kd",
            run_name="table1-ftbnn_kd-teacher", status="completed", final={"test/top1": 99.0},
            epochs_run=2, config={"kd": None})
    text = page(tmp_path, 3)
    assert "| ftbnn_kd | unfinished (teacher only) | ? | ? |" in text  # not the teacher's
    assert "| baseline-relu_partial_fprelu | 98.0 ± 1.0 (3) | 20 | 62 |" in text
    assert "| prelu | 90.0 (1 seed) | 8 | 30 |" in text
    assert "| relu | diverged (epoch 3) | ? | ? |" in text
    assert "python -m benchmarks.results --run table4 --seeds 3" in text
    assert command("table3", 2, tmp_path / "table3")[-2:] == ["SEEDS=2", f"SWEEP_DIR={tmp_path}"]
