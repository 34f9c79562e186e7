"""Multi-step training with knowledge distillation (Appendix C, following Real-to-Bin).

Stage 0 trains real weights with ``tanh`` activations, stage 1 binarizes activations, stage 2
weights too; each starts from the previous one's weights. The loss is the cross-entropy against
a full-precision ResNet-18 teacher's soft labels, optionally plus the ground-truth
cross-entropy, plus Real-to-Bin's attention transfer at the end of every ResNet stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ftbnn_exp.training.module import ClassificationModule
from ftbnn_exp.validation import NUMBER, check_value

STAGE_MODES = {0: ("tanh", "real"), 1: ("sign", "real"), 2: ("sign", "sign")}
"""Activation and weight binarization per stage (Appendix C)."""


@dataclass(frozen=True)
class DistillationSpec:
    """Loss weights. ``temperature`` softens both logits (the soft-label CE is scaled by T²);
    ``attention_weight`` is Real-to-Bin's β for the attention-transfer term (their 1e3)."""

    temperature: float = 1.0
    kd_weight: float = 1.0
    ce_weight: float = 0.0
    attention_weight: float = 1000.0

    def __post_init__(self) -> None:
        check_value("kd.temperature", self.temperature, NUMBER, positive=True)
        for key in ("kd_weight", "ce_weight", "attention_weight"):
            check_value(f"kd.{key}", getattr(self, key), NUMBER)


def stage_modules(model: nn.Module) -> list[nn.Module]:
    """The four ResNet stages: ours (``stages``) or torchvision's (``layer1``-``layer4``)."""
    if isinstance(model, TeacherInput):
        return stage_modules(model.teacher)
    if hasattr(model, "stages"):
        return list(model.stages)
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        return [getattr(model, f"layer{i}") for i in range(1, 5)]
    raise ValueError(f"{type(model).__name__} has no ResNet stages to transfer attention at")


def attention_map(features: Tensor) -> Tensor:
    """Σ_c F_c², flattened and L2-normalised per image (Zagoruyko & Komodakis; Real-to-Bin)."""
    return F.normalize(features.pow(2).sum(dim=1).flatten(1), dim=1)


def attention_transfer_loss(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Σ over stages of ‖A_s − A_t‖₂, averaged over the batch; a teacher map of another size is
    average-pooled to the student's."""
    total = student[0].new_zeros(())
    for s, t in zip(student, teacher, strict=True):
        if t.shape[-2:] != s.shape[-2:]:
            t = F.adaptive_avg_pool2d(t, s.shape[-2:])
        total = total + (attention_map(s) - attention_map(t)).norm(dim=1).mean()
    return total


def soft_cross_entropy(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Cross-entropy against the teacher's softened distribution, × T² (Hinton et al.)."""
    target = F.softmax(teacher / temperature, dim=1)
    log_p = F.log_softmax(student / temperature, dim=1)
    return -(target * log_p).sum(dim=1).mean() * temperature ** 2


Normalization = tuple[tuple[float, ...], tuple[float, ...]]
"""``(mean, std)`` per channel: a tensor is ``(pixel − mean) / std`` of [0, 1] pixels."""


class TeacherInput(nn.Module):
    """The teacher behind the conversion of the student's tensor to the input its weights were
    trained on: ``pixel = x · std_s + mean_s``, then ``(pixel − mean_t) / std_t`` (e.g. the
    student's mean-subtracted he2016 input to torchvision's mean/std-normalised one). Its
    ``stages`` are the teacher's, so attention is read off the teacher itself."""

    def __init__(self, teacher: nn.Module, student: Normalization, expected: Normalization
                 ) -> None:
        super().__init__()
        (mean_s, std_s), (mean_t, std_t) = student, expected
        if len(mean_s) != len(mean_t):
            raise ValueError(f"the teacher takes {len(mean_t)} channels, the data "
                             f"{len(mean_s)}")
        scale = torch.tensor(std_s) / torch.tensor(std_t)
        shift = (torch.tensor(mean_s) - torch.tensor(mean_t)) / torch.tensor(std_t)
        self.register_buffer("scale", scale.view(1, -1, 1, 1))
        self.register_buffer("shift", shift.view(1, -1, 1, 1))
        self.teacher = teacher

    def forward(self, x: Tensor) -> Tensor:
        return self.teacher(x * self.scale + self.shift)


def teacher_input(teacher: nn.Module, student: Normalization | None,
                  expected: Normalization | None) -> nn.Module:
    """``teacher`` fed as its weights expect: as it is where the normalisations agree (or both
    are undeclared: a teacher trained here on the same tensors), else through
    :class:`TeacherInput`; a ValueError when only one side is known."""
    if student == expected:
        return teacher
    if student is None or expected is None:
        raise ValueError("the teacher's input normalisation or the data's is unknown, so the "
                         "teacher cannot be fed what its weights expect")
    return TeacherInput(teacher, student, expected)


class _StageOutputs:
    """Forward hooks collecting the outputs of a model's four stages, in order."""

    def __init__(self, model: nn.Module) -> None:
        self.outputs: list[Tensor] = []
        for stage in stage_modules(model):
            stage.register_forward_hook(lambda module, args, out: self.outputs.append(out))

    def take(self) -> list[Tensor]:
        outputs, self.outputs = self.outputs, []
        return outputs


class DistillationModule(ClassificationModule):
    """:class:`ClassificationModule` whose training loss is distillation from ``teacher``'s
    soft labels, with attention maps from ``attention_teacher`` (the teacher itself unless
    given: e.g. the previous stage's network, as Real-to-Bin).

    Teachers run in eval mode without gradients and are not part of the checkpoint (they are
    not registered as submodules); validation and test report the student alone.
    """

    def __init__(self, model: nn.Module, num_classes: int, teacher: nn.Module,
                 spec: DistillationSpec, attention_teacher: nn.Module | None = None,
                 **kwargs) -> None:
        super().__init__(model, num_classes, **kwargs)
        self.spec = spec
        teachers = [teacher] if attention_teacher is None else [teacher, attention_teacher]
        self._teachers = [t.eval().requires_grad_(False) for t in teachers]
        self._student_stages = _StageOutputs(model)
        self._teacher_stages = _StageOutputs(self._teachers[-1])

    def on_fit_start(self) -> None:
        for teacher in self._teachers:
            teacher.to(self.device)

    def training_loss(self, images: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
        student = self._student_stages.take()
        with torch.no_grad():
            teacher_logits = self._teachers[0](images)
            if len(self._teachers) > 1:
                self._teachers[1](images)
        teacher = self._teacher_stages.take()
        parts = {"kd": soft_cross_entropy(logits, teacher_logits, self.spec.temperature)}
        if self.spec.ce_weight:
            parts["ce"] = F.cross_entropy(logits, labels)
        if self.spec.attention_weight:
            parts["attention"] = attention_transfer_loss(student, teacher)
        weights = {"kd": self.spec.kd_weight, "ce": self.spec.ce_weight,
                   "attention": self.spec.attention_weight}
        for name, value in parts.items():
            self.log(f"train/{name}_loss", value, on_step=False, on_epoch=True,
                     batch_size=labels.shape[0])
        return sum(weights[name] * value for name, value in parts.items())

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        loss = super()._step(batch, split)
        self._student_stages.take()  # evaluation forwards leave their stage outputs behind
        return loss
