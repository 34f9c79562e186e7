"""Table 1 from its configs: every ``experiment=table1/<method>`` composes, builds the parts its
paper describes (written out here), and the report's strategy marks follow from the config and
the parts' traits, so a swapped yaml value turns a test red."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from torch import nn

from ftbnn_exp.app import build
from ftbnn_exp.app.config import CONF_DIR, check_overrides, compose_config, validate
from ftbnn_exp.data import DataSpec
from ftbnn_exp.errors import UserError
from ftbnn_exp.models.ftbnn import BLOCKS
from ftbnn_exp.nn import BinaryConv2d, part_of
from ftbnn_exp.paper import PAPER_TABLE1
from ftbnn_exp.report.__main__ import write_reports
from ftbnn_exp.report.runs import load_runs
from ftbnn_exp.report.tables import strategies, table1
from ftbnn_exp.training.progress import TrainingProgress

ROWS = sorted(p.stem for p in (CONF_DIR / "experiment" / "table1").glob("*.yaml"))
# method: (binarizer, scaling, block, modules after blocks (stage ends, others), stem module,
# STE bound, KD/GA/MS/Scaling), as each method's paper and released code define it
EXPECTED = {
    "bnn": ("sign", "none", "resnet", ("identity", "identity"), "identity", 1.0, set()),
    "xnor": ("sign", "xnor", "resnet", ("identity", "identity"), "identity", 1.0, {"Scaling"}),
    "xnorpp": ("sign", "xnorpp", "resnet", ("identity", "identity"), "identity", 1.0,
               {"Scaling"}),
    "bireal": ("approxsign", "channel_mean", "ftbnn", ("identity", "identity"), "identity", 1.0,
               {"GA", "Scaling"}),
    "irnet": ("ede", "libra", "ftbnn", ("hardtanh", "hardtanh"), "hardtanh", 1.2,
              {"GA", "Scaling"}),
    "real2bin": ("sign", "xnorpp", "real2bin", ("prelu", "prelu"), "prelu", 1.0,
                 {"KD", "MS", "Scaling"}),
    "real2bin_full": ("sign", "gated", "real2bin", ("prelu", "prelu"), "relu", 1.0,
                      {"KD", "MS", "Scaling"}),
    "reactnet": ("rsign", "channel_mean", "ftbnn", ("rprelu", "rprelu"), "identity", 1.0,
                 {"GA", "Scaling"}),
    "ftbnn": ("sign", "none", "ftbnn", ("relu", "fprelu"), "identity", 1.2, set()),
    "ftbnn_kd": ("sign", "none", "ftbnn", ("relu", "fprelu"), "identity", 1.2, {"KD", "MS"}),
}


def test_every_method_of_table1_has_a_config():
    assert ROWS == sorted(EXPECTED)
    configured = {row.row for row in PAPER_TABLE1 if row.configured}
    assert configured == set(EXPECTED)


def _row(name: str, *overrides: str):
    cfg = compose_config([f"experiment=table1/{name}", "trainer.max_epochs=1", "logger=none",
                          *overrides])
    specs = validate(cfg)
    spec = build.model_spec(cfg, specs, DataSpec(8, 1, 10), build.resolve_width(specs, None))
    return cfg, spec, build.build_model(spec)


def _parts(model, kind: str) -> set[str]:
    return {entry.name for m in model.modules()
            if (entry := part_of(m)) is not None and entry.kind == kind}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_method_builds_the_parts_of_its_paper(name):
    binarizer, scaling, block, (stage_end, other), stem, bound, _ = EXPECTED[name]
    cfg, _, model = _row(name)
    layout = BLOCKS[block]
    blocks = [block for stage in model.stages for block in stage]
    assert {type(b) for b in blocks} == {layout.cls}
    assert len(blocks) == 16 // layout.convs
    assert _parts(model, "binarizer") == {binarizer}
    assert _parts(model, "scaling") == {scaling}
    per_stage = 4 // layout.convs
    modules = [part_of(b.nonlinear).name for b in blocks]
    assert modules == ([other] * (per_stage - 1) + [stage_end]) * 4  # last block of each stage
    stem_modules = [part_of(m).name for m in model.stem if part_of(m) is not None]
    assert stem_modules == ([] if stem == "identity" else [stem])
    assert {m.bound for m in model.modules() if isinstance(m, BinaryConv2d)} == {bound}
    assert cfg.run_name == f"table1-{name}" and cfg.group == "table1"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_marks_are_read_off_the_config_and_the_parts(name):
    cfg, spec, _ = _row(name)
    metrics = {"config": OmegaConf.to_container(cfg, resolve=True),
               "model_spec": spec.to_dict()}
    assert strategies(metrics) == EXPECTED[name][-1]


def test_table1_bnn_is_not_table3_none():
    """Table 1's BNN has no double skip (no † in the paper) and Hubara's STE window; Table 3's
    none row is the FTBNN skeleton without modules (52.5 % against BNN's 42.2 %)."""
    _, bnn, bnn_model = _row("bnn")
    cfg = compose_config(["experiment=table3/none", "trainer.max_epochs=1", "logger=none"])
    specs = validate(cfg)
    none = build.model_spec(cfg, specs, DataSpec(8, 1, 10), build.resolve_width(specs, None))
    assert bnn.to_dict()["kwargs"] != none.to_dict()["kwargs"]
    shortcuts = sum(1 for stage in bnn_model.stages for _ in stage)
    assert shortcuts == 8 and len(list(build.build_model(none).stages[0])) == 4


def test_real_to_bin_baseline_is_two_steps_without_attention_and_the_full_method_three():
    base, _, _ = _row("real2bin")
    full, _, _ = _row("real2bin_full")
    assert list(base.kd.stages) == [1, 2] and base.kd.attention_weight == 0
    assert base.kd.kd_weight > 0  # KD from the real-valued teacher's logits
    assert list(full.kd.stages) == [0, 1, 2] and full.kd.attention_weight == 1000
    assert full.kd.attention_from == "previous_stage"


def test_irnet_steps_ede_per_epoch_on_activations_and_weights():
    cfg, _, model = _row("irnet")
    assert cfg.progress_step == "epoch"
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert convs and {c.weight_estimator for c in convs} == {"ede"}
    callbacks = build.build_callbacks(cfg, Path("unused"), [], with_loggers=False)
    progress = next(c for c in callbacks if isinstance(c, TrainingProgress))
    assert progress.per_batch is False
    assert {type(m) for m in model.modules() if part_of(m) is not None
            and part_of(m).kind == "nonlinear"} == {nn.Hardtanh}


def test_a_stage_list_out_of_order_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"kd.stages=\[2, 1\] must list stages"):
        check_overrides(["experiment=table1/real2bin", "kd.stages=[2,1]"])


def test_the_report_writes_table1_with_marks_and_reference_values(tmp_path):
    for index, name in enumerate(("bnn", "irnet")):
        cfg, spec, _ = _row(name)
        folder = tmp_path / str(index)
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({
            "experiment": f"table1/{name}", "row": name, "status": "completed",
            "config": OmegaConf.to_container(cfg, resolve=True), "model_spec": spec.to_dict(),
            "final": {"test/top1": 50.0 + index}, "history": []}))
    table = table1(load_runs(tmp_path))
    rows = {row[0]: row for row in table.rows}
    assert rows["BNN"][1:6] == ["✗", "✗", "✗", "✗", "50.0"]
    assert rows["IR-Net †"][1:6] == ["✗", "✓", "✗", "✓", "51.0"]
    at = table.header.index("paper budget (M, Table 4 right)")
    assert rows["IR-Net †"][at:at + 6] == ["~163", "✗", "✓", "✗", "✓", "58.1"]  # the paper's
    assert rows["XNOR-Net"][5] == "missing"
    paper_order = ["BNN", "XNOR-Net", "XNOR-Net++", "Bi-Real Net (B) †", "Bi-Real Net (A) †",
                   "IR-Net †", "BinaryDuo †", "Real-to-Bin baseline †", "FTBNN †",
                   "FTBNN † (KD + MS)"]  # the paper's Table 1, in its order
    names = [row[0] for row in table.rows]
    assert len(names) == 12
    assert all(n.startswith(p) for n, p in zip(names[:10], paper_order, strict=True))
    duo = next(row for row in table.rows if row[0].startswith("BinaryDuo"))
    assert duo[5] == "not configured" and duo[at + 5] == "60.9"
    report = write_reports(tmp_path)
    assert "Table 1" in report and (tmp_path / "report-table1.csv").is_file()
