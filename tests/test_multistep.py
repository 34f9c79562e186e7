"""Multi-step training with distillation (Appendix C): per-stage binarization, the losses, and
the whole 3-stage pipeline on digits."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch

from ftbnn_exp.models import ftbnn_resnet, resnet_fp
from ftbnn_exp.nn import BinaryConv2d, NonLinearitySchedule, set_binarization
from ftbnn_exp.training.distillation import (
    STAGE_MODES,
    DistillationModule,
    DistillationSpec,
    attention_map,
    attention_transfer_loss,
    soft_cross_entropy,
)


def _ternary(t: torch.Tensor) -> bool:
    return bool(((t == -1) | (t == 0) | (t == 1)).all())


@pytest.mark.parametrize("stage", sorted(STAGE_MODES))
def test_each_stage_binarizes_what_appendix_c_says(stage, generator):
    model = ftbnn_resnet(NonLinearitySchedule("relu", "fprelu"), 18, in_channels=1,
                         num_classes=10, image_size=8)
    set_binarization(model, *STAGE_MODES[stage])
    seen = []

    def record(conv: BinaryConv2d, args: tuple, out: torch.Tensor) -> None:
        seen.append((_ternary(args[0]), _ternary(conv.binary_weight())))

    for conv in model.modules():
        if isinstance(conv, BinaryConv2d):
            conv.register_forward_hook(record)
    model.eval()  # training takes nn.lean's fused path, which bypasses module hooks
    model(torch.randn(4, 1, 8, 8, generator=generator))
    activations, weights = {0: (False, False), 1: (True, False), 2: (True, True)}[stage]
    assert len(seen) == 16
    assert all(a == activations and w == weights for a, w in seen)


def test_attention_transfer_is_zero_for_identical_maps_and_positive_otherwise(generator):
    features = [torch.randn(2, 8, 4, 4, generator=generator) for _ in range(4)]
    assert attention_transfer_loss(features, features).item() == 0.0
    other = [f + torch.randn(f.shape, generator=generator) for f in features]
    assert attention_transfer_loss(features, other).item() > 0
    # A teacher map of another size is pooled to the student's size first.
    bigger = [torch.nn.functional.interpolate(f, scale_factor=2.0) for f in features]
    assert attention_transfer_loss(features, bigger).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(attention_map(features[0]).norm(dim=1), torch.ones(2))


def test_soft_cross_entropy_is_cross_entropy_for_a_sure_teacher(generator):
    student = torch.randn(5, 10, generator=generator)
    labels = torch.randint(0, 10, (5,), generator=generator)
    sure = torch.nn.functional.one_hot(labels, 10).float() * 1e4
    assert soft_cross_entropy(student, sure, 1.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(student, labels).item(), rel=1e-5)


def _ftbnn(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftbnn_exp", *args, "logger=none"], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_three_stage_pipeline_on_digits_trains_its_own_teacher(tmp_path):
    kd = tmp_path / "kd"
    command = ["experiment=kd_multistep", "kd.teacher_epochs=1", "kd.epochs=[1,1,1]",
               "trainer.limit_train_batches=3", f"hydra.run.dir={kd}"]
    done = _ftbnn(*command, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    teacher_ckpt = kd / "teacher" / "checkpoints" / "last.ckpt"
    assert "teacher: full-precision ResNet-18 on data=digits, 1 epochs" in done.stdout
    assert json.loads((kd / "teacher" / "metrics.json").read_text())["model"] == "resnet18_fp"
    summary = json.loads((kd / "metrics.json").read_text())
    assert summary["status"] == "completed"
    assert [s["stage"] for s in summary["stages"]] == [0, 1, 2]
    assert all(s["status"] == "completed" and s["test/top1"] is not None
               for s in summary["stages"])
    # Every stage starts from exactly the weights its predecessor ended with.
    for before, after in zip(summary["stages"], summary["stages"][1:], strict=False):
        assert after["init"]["fingerprint"] == before["final_fingerprint"]
    for stage in range(3):
        record = json.loads((kd / f"stage{stage}" / "metrics.json").read_text())
        assert record["stage"] == stage and record["epochs_run"] == 1
        assert record["config"]["kd"]["teacher"] == str(teacher_ckpt)
        assert f"stage {stage}: activations {STAGE_MODES[stage][0]}" in done.stdout
    # The same command again: nothing left to train.
    again = _ftbnn(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("skipped, finished earlier: ") == 4  # teacher and 3 stages
    # Other epochs per stage: no stage is taken as done on its status alone (issue 23); each
    # is checked as any rerun, which refuses the changed run in one line naming the key.
    longer = _ftbnn(*[c if not c.startswith("kd.epochs=") else "kd.epochs=[1,1,2]"
                      for c in command], cwd=tmp_path)
    assert longer.stdout.count("skipped, finished earlier: ") == 1  # the teacher alone
    assert "kd" in longer.stderr.strip().splitlines()[-1], longer.stderr[-2000:]
    # One stage alone, from a given checkpoint and teacher.
    alone = _ftbnn("experiment=kd_multistep", f"kd.teacher={teacher_ckpt}", "stage=2",
                   f"init_from={kd / 'stage1' / 'checkpoints' / 'last.ckpt'}",
                   "kd.epochs=[1,1,1]", "trainer.limit_train_batches=3",
                   "kd.attention_from=previous_stage",
                   "kd.stage_overrides=[null,null,{optimizer:{lr:0.001}}]",
                   f"hydra.run.dir={tmp_path / 'alone'}", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr[-2000:]
    only = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    assert [s["stage"] for s in only["stages"]] == [2]
    stage2 = json.loads((tmp_path / "alone" / "stage2" / "metrics.json").read_text())
    assert stage2["config"]["optimizer"]["lr"] == 0.001
    assert stage2["history"][0]["lr/binary"] == pytest.approx(0.001)  # the lr it trained with
    assert only["stages"][0]["init"]["fingerprint"] == summary["stages"][1]["final_fingerprint"]


def test_torchvision_teacher_needs_imagenet_shapes(tmp_path):
    done = _ftbnn("experiment=kd_multistep", "kd.teacher=torchvision",
                  f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: kd.teacher=torchvision is an ImageNet model (3 channels, 1000 classes); for "
        "data=digits set kd.teacher=<last.ckpt of a model=resnet18_fp run on it>")


def test_attention_maps_come_from_the_attention_teacher(generator):
    """kd.attention_from=previous_stage: a student identical to its attention teacher has no
    attention loss, whatever the (other) soft-label teacher."""
    student = ftbnn_resnet(NonLinearitySchedule(), in_channels=1, num_classes=10, image_size=8)
    previous = copy.deepcopy(student)
    teacher = resnet_fp(18, 1, 10, 8)
    spec = DistillationSpec(kd_weight=0.0, attention_weight=1.0)
    images = torch.randn(4, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 10, (4,), generator=generator)
    losses = []
    for attention in (previous, None):
        module = DistillationModule(student, 10, teacher, spec, attention_teacher=attention)
        module.log = lambda *args, **kwargs: None
        student.eval()
        losses.append(float(module.training_loss(images, module(images), labels)))
    assert losses[0] == pytest.approx(0.0, abs=1e-6) and losses[1] > 1e-3
