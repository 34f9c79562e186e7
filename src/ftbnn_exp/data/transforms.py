"""The ``augment=`` options: each a small named object that makes a data set's training and
evaluation transforms together, so the two always agree in scale.

Evaluation resizes the shorter side to ``eval_resize`` and centre-crops ``image_size``; the
option says how much of the image evaluation keeps (``eval_crop``): 224/256 for the ImageNet
recipes, whose training crops cover part of an image, and the whole image for CIFAR's crop,
which trains at the image's own scale. Normalisation is the data set's (mean, std), given to
both transforms; an option may subtract the mean only (He et al. 2016's per-pixel mean).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2

from ftbnn_exp.validation import BOOLEAN, NUMBER, check_value

Step = Callable[[Any], Any]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CROP = 224 / 256
"""ImageNet's evaluation: shorter side 256, centre crop 224 (Appendix C)."""


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` (``divide_std=False``: ``x - mean``); a grayscale
    image takes the mean of the given statistics when three are given."""

    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def transform(self, channels: int, divide_std: bool = True) -> v2.Normalize:
        mean, std = list(self.mean), list(self.std)
        if channels != len(mean):
            if channels != 1:
                raise ValueError(f"{len(mean)} normalisation values for {channels} channels")
            mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
        return v2.Normalize(mean, std if divide_std else [1.0] * len(std))


def _to_tensor() -> list[Step]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


@dataclass(frozen=True)
class Augment:
    """No augmentation: the image resized to the training size (``augment=none``)."""

    eval_crop: float = 1.0
    divide_std: bool = True

    def __post_init__(self) -> None:
        check_value("augment.eval_crop", self.eval_crop, NUMBER, positive=True)
        check_value("augment.divide_std", self.divide_std, BOOLEAN)

    def eval_resize(self, image_size: int) -> int:
        """The shorter side evaluation resizes to: ``round(image_size / eval_crop)``."""
        return round(image_size / self.eval_crop)

    def crop(self, image_size: int) -> list[Step]:
        """The training-only steps on the PIL image (random crops, flips)."""
        return [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]

    def train(self, image_size: int, channels: int, norm: Normalization) -> v2.Compose:
        return v2.Compose([*self.crop(image_size), *_to_tensor(),
                           norm.transform(channels, self.divide_std)])

    def eval(self, image_size: int, channels: int, norm: Normalization,
             resize: int | None = None) -> v2.Compose:
        return v2.Compose([v2.Resize(resize or self.eval_resize(image_size), antialias=True),
                           v2.CenterCrop(image_size), *_to_tensor(),
                           norm.transform(channels, self.divide_std)])


@dataclass(frozen=True)
class ScaleJitter:
    """Shorter side resized to a length drawn uniformly from ``[low, high]`` (integers, both
    included; torch's generator, as every other random transform), as He et al. 2016 §3.4."""

    low: int
    high: int

    def __call__(self, image: Image.Image) -> Image.Image:
        side = int(torch.randint(self.low, self.high + 1, (1,)))
        return v2.functional.resize(image, side, antialias=True)


@dataclass(frozen=True)
class He2016(Augment):
    """Appendix C, after He et al. 2016: shorter side resized to a random length in [256, 480]
    (for a 224 crop; scaled with ``image_size``), a random ``image_size`` crop, horizontal flip
    with p = 0.5, mean subtraction. He et al. subtract the mean only, so ``divide_std`` is off
    by default; ``augment.divide_std=true`` divides by the std as well (torchvision's recipes).
    Evaluation: shorter side 256, centre crop 224 (scaled alike). He et al.'s colour
    augmentation is left out, as the BNN papers' code does."""

    eval_crop: float = IMAGENET_CROP
    divide_std: bool = False
    scale: tuple[int, int] = (256, 480)
    reference: int = 224
    flip: float = 0.5

    def crop(self, image_size: int) -> list[Step]:
        low, high = (round(s * image_size / self.reference) for s in self.scale)
        return [ScaleJitter(max(low, image_size), max(high, image_size)),
                v2.RandomCrop(image_size), v2.RandomHorizontalFlip(self.flip)]


@dataclass(frozen=True)
class Inception(Augment):
    """Random-resized crop (area scale 0.08–1, aspect 3/4–4/3) and horizontal flip: what
    Bi-Real Net's and ReActNet's training code use. Evaluation as ImageNet's."""

    eval_crop: float = IMAGENET_CROP
    scale: tuple[float, float] = (0.08, 1.0)
    flip: float = 0.5

    def crop(self, image_size: int) -> list[Step]:
        return [v2.RandomResizedCrop(image_size, scale=self.scale, antialias=True),
                v2.RandomHorizontalFlip(self.flip)]


@dataclass(frozen=True)
class CifarCrop(Augment):
    """CIFAR's usual: zero-pad 4 pixels, random ``image_size`` crop, horizontal flip (He et al.
    2016 §4.2). Trains at the image's own scale, so evaluation keeps the whole image."""

    padding: int = 4
    flip: float = 0.5

    def crop(self, image_size: int) -> list[Step]:
        return [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size),
                v2.RandomCrop(image_size, padding=self.padding),
                v2.RandomHorizontalFlip(self.flip)]
