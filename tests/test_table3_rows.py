"""Table 3 from the yaml files a user runs: every ``experiment=table3/<row>`` is composed, its
model built, and the module after each of the 16 binary blocks checked against Table 2/3 as
the paper describes the row (written out here, never read from the configs), so a swapped
value in ``conf/nonlinearity/*.yaml`` or an overlay turns this red."""

from __future__ import annotations

import pytest

from ftbnn_exp.app import build
from ftbnn_exp.app.config import CONF_DIR, compose_config, validate
from ftbnn_exp.data import DataSpec
from ftbnn_exp.nn import part_of

ROWS = sorted(p.stem for p in (CONF_DIR / "experiment" / "table3").glob("*.yaml"))
# Per stage of 4 blocks (ResNet-18): the modules after blocks 1-3 and after the stage's last
# block (§3: "partially" places ReLU after the last block of each stage only).
PAPER_ROWS = {
    "bireal": ("identity", "identity"),  # Bi-Real Net: no explicit module
    "none": ("identity", "identity"),
    "prelu": ("prelu", "prelu"),
    "fprelu": ("fprelu", "fprelu"),
    "relu": ("relu", "relu"),
    "relu_partial": ("identity", "relu"),
    "relu_partial_prelu": ("prelu", "relu"),
    "baseline": ("fprelu", "relu"),
}
# The full-precision ResNet-18 row has no binary blocks.
SCALING = {"bireal": "channel_mean"}


def test_every_row_of_table3_is_checked():
    assert ROWS == sorted([*PAPER_ROWS, "resnet18_fp"])


@pytest.mark.parametrize("row", sorted(PAPER_ROWS))
def test_each_row_places_the_papers_modules_after_its_16_blocks(row):
    cfg = compose_config([f"experiment=table3/{row}", "logger=none"])
    specs = validate(cfg)
    spec = build.model_spec(cfg, specs, DataSpec(8, 1, 10), build.resolve_width(specs, None))
    model = build.build_model(spec)
    blocks = [block for stage in model.stages for block in stage]
    assert len(blocks) == 16
    other, stage_end = PAPER_ROWS[row]
    assert [part_of(b.nonlinear).name for b in blocks] == ([other] * 3 + [stage_end]) * 4
    assert {part_of(b.conv).name for b in blocks} == {SCALING.get(row, "none")}
    assert {part_of(b.binarize).name for b in blocks} == {"sign"}  # Table 3: no ApproxSign
    assert cfg.row == row and cfg.trainer.max_epochs == 60
