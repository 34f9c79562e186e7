"""Table 1 from its configs: every ``experiment=table1/<method>`` composes, builds the parts its
paper describes (written out here), and the report's strategy marks follow from the config and
the parts' traits, so a swapped yaml value turns a test red."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from ftbnn_exp.app import build
from ftbnn_exp.app.config import CONF_DIR, compose_config, validate
from ftbnn_exp.data import DataSpec
from ftbnn_exp.nn import part_of
from ftbnn_exp.report.__main__ import write_reports
from ftbnn_exp.report.runs import load_runs
from ftbnn_exp.report.tables import strategies, table1

ROWS = sorted(p.stem for p in (CONF_DIR / "experiment" / "table1").glob("*.yaml"))
# method: (binarizer, scaling, module after every block (stage ends, others), KD/GA/MS/Scaling)
EXPECTED = {
    "bnn": ("sign", "none", ("identity", "identity"), set()),
    "xnor": ("sign", "xnor", ("identity", "identity"), {"Scaling"}),
    "xnorpp": ("sign", "xnorpp", ("identity", "identity"), {"Scaling"}),
    "bireal": ("approxsign", "channel_mean", ("identity", "identity"), {"GA", "Scaling"}),
    "irnet": ("ede", "libra", ("identity", "identity"), {"GA", "Scaling"}),
    "real2bin": ("sign", "gated", ("prelu", "prelu"), {"KD", "MS", "Scaling"}),
    "reactnet": ("rsign", "channel_mean", ("rprelu", "rprelu"), {"GA", "Scaling"}),
    "ftbnn": ("sign", "none", ("relu", "fprelu"), set()),
    "ftbnn_kd": ("sign", "none", ("relu", "fprelu"), {"KD", "MS"}),
}


def test_every_method_of_table1_has_a_config():
    assert ROWS == sorted(EXPECTED)


def _row(name: str):
    cfg = compose_config([f"experiment=table1/{name}", "trainer.max_epochs=1", "logger=none"])
    specs = validate(cfg)
    spec = build.model_spec(cfg, specs, DataSpec(8, 1, 10), build.resolve_width(specs, None))
    return cfg, spec, build.build_model(spec)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_method_builds_the_parts_of_its_paper(name):
    binarizer, scaling, (stage_end, other), _ = EXPECTED[name]
    cfg, _, model = _row(name)
    blocks = [block for stage in model.stages for block in stage]
    assert len(blocks) == 16
    assert {part_of(b.binarize).name for b in blocks} == {binarizer}
    assert {part_of(b.conv).name for b in blocks} == {scaling}
    modules = [part_of(b.nonlinear).name for b in blocks]
    assert modules == ([other] * 3 + [stage_end]) * 4  # the last block of each stage
    assert cfg.run_name == f"table1-{name}" and cfg.group == "table1"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_marks_are_read_off_the_config_and_the_parts(name):
    cfg, spec, _ = _row(name)
    metrics = {"config": OmegaConf.to_container(cfg, resolve=True),
               "model_spec": spec.to_dict()}
    assert strategies(metrics) == EXPECTED[name][3]


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
    assert rows["IR-Net"][1:6] == ["✗", "✓", "✗", "✓", "51.0"]
    assert rows["IR-Net"][-5:] == ["✗", "✓", "✗", "✓", "58.1"]  # the paper's, reference
    assert rows["XNOR-Net"][5] == "missing"
    report = write_reports(tmp_path)
    assert "Table 1" in report and (tmp_path / "report-table1.csv").is_file()
