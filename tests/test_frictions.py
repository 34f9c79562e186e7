"""The first hour's frictions (issue 36): nested options and did-you-mean in one line, tab
completion of experiment rows and part names, a run name per part choice."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ftbnn_exp.app.cli import completions
from ftbnn_exp.app.config import CONF_DIR, check_overrides, compose_config
from ftbnn_exp.errors import UserError
from ftbnn_exp.nn.parts import PARTS

TABLE3 = sorted(f"table3/{p.stem}" for p in (CONF_DIR / "experiment" / "table3").glob("*.yaml"))


def refusal(*overrides: str) -> str:
    with pytest.raises(UserError) as refused:
        check_overrides(list(overrides))
    message = str(refused.value)
    assert "\n" not in message
    return message


def test_a_nested_option_lists_its_own_folder():
    assert refusal("experiment=table3/prelu_") == (
        f"experiment=table3/prelu_ is not an option; allowed: {', '.join(TABLE3)}")
    listed = refusal("experiment=table9/x").rpartition("allowed: ")[2].split(", ")
    assert "table3/..." in listed and "fig2" in listed and "table3/prelu" not in listed


@pytest.mark.parametrize(("override", "meant"), [
    ("trainer.max_epoch=1", "trainer.max_epochs"),
    ("lr=0.001", "optimizer.lr"),
    ("model.binarzer=sign", "model.binarizer"),
])
def test_a_misspelt_key_gets_did_you_mean(override, meant):
    key = override.partition("=")[0]
    assert refusal(override) == f"{key} is not a config key; did you mean {meant}?"


def test_a_key_near_nothing_says_where_the_keys_are():
    assert refusal("zzz.qqq=1") == ("zzz.qqq is not a config key; `python -m ftbnn_exp --cfg "
                                    "job` prints them all")


def test_completion_offers_experiment_rows_and_part_names():
    assert completions("experiment=table3/") == [f"experiment={row}" for row in TABLE3]
    assert "experiment=table1/ftbnn_kd" in completions("experiment=")
    assert completions("model.binarizer=") == [
        f"model.binarizer={name}" for name in sorted(PARTS["binarizer"])]
    assert completions("model.scaling=xnor") == ["model.scaling=xnor", "model.scaling=xnorpp"]
    assert completions("data=") is None  # Hydra's own answer


def test_completion_offers_part_names_for_every_part_argument_a_family_declares(monkeypatch):
    """The keys come from the families' declared ``parts``: a plug-in family whose builder
    takes its binarizer as ``input_quantizer`` (larq's name) gets its part names offered too,
    and a key no family declares is Hydra's to answer."""
    from ftbnn_exp.models import FAMILIES, Family, resnet_fp

    def builder(num_classes: int = 10, input_quantizer: str = "sign") -> None:
        del num_classes, input_quantizer

    plug_in = Family("plug_in_net", builder, parts={"input_quantizer": "binarizer"})
    monkeypatch.setitem(FAMILIES, "plug_in_net", plug_in)
    assert completions("model.input_quantizer=") == [
        f"model.input_quantizer={name}" for name in sorted(PARTS["binarizer"])]
    assert completions("model.scaling=") == [
        f"model.scaling={name}" for name in sorted(PARTS["scaling"])]
    assert completions("input_quantizer=") is None
    monkeypatch.setitem(FAMILIES, "plug_in_net", Family("plug_in_net", resnet_fp, parts={}))
    assert completions("model.input_quantizer=") is None


def test_the_shell_query_gets_the_rows():
    env = {**os.environ, "COMP_LINE": "ftbnn-exp experiment=table3/relu_p"}
    done = subprocess.run([sys.executable, "-m", "ftbnn_exp", "-sc", "query=bash"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["experiment=table3/relu_partial",
                                   "experiment=table3/relu_partial_prelu"]


def test_another_part_gets_its_own_run_name():
    assert compose_config([]).run_name == "baseline-relu_partial_fprelu"
    assert compose_config(["model.binarizer=approxsign", "model.scaling=xnor"]).run_name == (
        "baseline-relu_partial_fprelu-approxsign-xnor")
    assert compose_config(["model=bireal"]).run_name == "bireal"  # its own default scaling
    assert compose_config(["model=bireal", "model.scaling=none"]).run_name == "bireal-none"


TINY = ["model=fig2", "model.kind=prelu", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none",
        "trainer.max_epochs=1"]


def test_a_finished_run_keeps_only_its_weights_and_refuses_to_train_on(tmp_path):
    import torch

    from ftbnn_exp.app.run import RunPlace, train_run
    from ftbnn_exp.artifacts import load_checkpoint, model_from_checkpoint

    run_dir = tmp_path / "run"
    first = train_run(compose_config([*TINY, "checkpoint.on_completion=weights"]),
                      RunPlace(run_dir))
    assert first["status"] == "completed" and first["checkpoints_at_completion"] == "weights"
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert not {"optimizer_states", "loops"} & set(saved)
    model_from_checkpoint(load_checkpoint(last))  # still a model for deploy, report, teacher
    again = train_run(compose_config([*TINY, "checkpoint.on_completion=weights"]),
                      RunPlace(run_dir))
    assert again == first  # finished earlier: skipped, nothing to resume
    longer = [*TINY[:-1], "trainer.max_epochs=2", "resume_changes=rescale"]
    with pytest.raises(UserError, match=re.escape("finished with checkpoint.on_completion="
                                                  "weights: its optimizer state is gone")):
        train_run(compose_config(longer), RunPlace(run_dir))
    gone = tmp_path / "gone"
    train_run(compose_config([*TINY, "checkpoint.on_completion=none"]), RunPlace(gone))
    assert not (gone / "checkpoints").exists()
