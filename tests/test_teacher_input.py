"""FTBNN† (Appendix C) distils from a ResNet-18 trained on mean/std-normalised ImageNet: the
teacher must see that input whatever ``augment=`` the student uses (he2016 only subtracts the
mean), never the student's tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from ftbnn_exp.app import build
from ftbnn_exp.data import DigitsDataModule, FolderDataModule
from ftbnn_exp.data.transforms import IMAGENET_MEAN, IMAGENET_STD, He2016
from ftbnn_exp.errors import UserError
from ftbnn_exp.training.distillation import stage_modules


class Revealing(nn.Module):
    """A teacher whose first layer records the input it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return x.mean(dim=(2, 3))


def _rgb_folder(root):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")
    return root


def _with_teacher(monkeypatch, teacher, normalization):
    monkeypatch.setattr(build, "build_teacher", lambda cfg, spec: (teacher, normalization))
    return OmegaConf.create({"kd": {"teacher": "torchvision"}, "data": {"name": "folder"}})


def test_a_he2016_student_feeds_its_teacher_mean_and_std_normalised_pixels(tmp_path,
                                                                           monkeypatch):
    data = FolderDataModule(seed=0, root=str(_rgb_folder(tmp_path)), image_size=16,
                            augment=He2016(), batch_size=4)
    data.setup("fit")
    images, _ = next(iter(data.val_dataloader()))
    revealing = Revealing()
    cfg = _with_teacher(monkeypatch, revealing, build.IMAGENET_NORMALIZATION)
    teacher = build.distillation_teacher(cfg, data)
    teacher(images)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = images + mean  # he2016 subtracts the mean only
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert torch.allclose(revealing.seen[0], (pixels - mean) / std, atol=1e-5)
    assert revealing.seen[0].std() > 3 * images.std()  # not the student's tensor (std 4.4× less)


def test_the_same_normalisation_feeds_the_teacher_the_students_tensor(tmp_path, monkeypatch):
    data = FolderDataModule(seed=0, root=str(_rgb_folder(tmp_path)), image_size=16, batch_size=4)
    revealing = Revealing()
    cfg = _with_teacher(monkeypatch, revealing, data.pixel_normalization())
    assert build.distillation_teacher(cfg, data) is revealing


def test_an_unknown_normalisation_is_refused_in_one_line(monkeypatch):
    cfg = _with_teacher(monkeypatch, Revealing(), build.IMAGENET_NORMALIZATION)
    with pytest.raises(UserError) as refusal:
        build.distillation_teacher(cfg, DigitsDataModule(seed=0))
    assert "\n" not in str(refusal.value)
    assert "data=folder gives None" in str(refusal.value)


def test_attention_is_read_off_the_wrapped_teachers_stages(tmp_path, monkeypatch):
    data = FolderDataModule(seed=0, root=str(_rgb_folder(tmp_path)), image_size=16,
                            augment=He2016())
    resnet = build.resnet_fp(18, 3, 2, 16)
    cfg = _with_teacher(monkeypatch, resnet, build.IMAGENET_NORMALIZATION)
    wrapped = build.distillation_teacher(cfg, data)
    assert wrapped is not resnet
    assert stage_modules(wrapped) == stage_modules(resnet)
