"""The ``augment=`` options: each a small named object that makes a data set's training and
evaluation transforms together, so the two always agree in scale.

Evaluation resizes the shorter side to ``eval_resize`` and centre-crops ``image_size``; the
option says how much of the image evaluation keeps (``eval_crop``): 224/256 for the ImageNet
recipes, whose training crops cover part of an image, and the whole image for CIFAR's crop,
which trains at the image's own scale. Normalisation is the data set's (mean, std), given to
both transforms; an option may subtract the mean only (He et al. 2016's per-pixel mean).

The device backends (:mod:`ftbnn_exp.data.backends`) decode on the GPU, so their workers never
see pixels: there an option draws a :class:`Window` from the image's size alone, the part of
the source image its crop covers and whether it is flipped, and the backend cuts and resizes
it. A window is the same geometry as the option's PIL steps (resize, then crop), drawn from
the same distributions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from ftbnn_exp.data.registry import register_data_class
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.validation import BOOLEAN, INTEGER, NUMBER, check_value

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

    def values(self, channels: int, divide_std: bool = True) -> tuple[list[float], list[float]]:
        """(mean, std) per channel of a [0, 1] image; std all ones for mean subtraction."""
        mean, std = list(self.mean), list(self.std)
        if channels != len(mean):
            if channels != 1:
                raise ValueError(f"{len(mean)} normalisation values for {channels} channels")
            mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
        return mean, std if divide_std else [1.0] * len(std)

    def transform(self, channels: int, divide_std: bool = True) -> v2.Normalize:
        return v2.Normalize(*self.values(channels, divide_std))


@dataclass(frozen=True)
class Window:
    """Where a crop comes from in source pixels, to be resized to the output size, then
    mirrored if ``flip``. It is placed in ``content`` (top, left, height, width; None: the
    whole image), and what it covers outside the content is zero padding."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False
    content: tuple[int, int, int, int] | None = None

    def as_list(self, height: int, width: int) -> list[int]:
        """``[content top, left, height, width, top, left, height, width, flip]`` of a
        ``height`` × ``width`` image (the backends' encoding)."""
        return [*(self.content or (0, 0, height, width)), self.top, self.left, self.height,
                self.width, int(self.flip)]


def _centred(height: int, width: int, side: float, flip: bool = False) -> Window:
    """A ``side`` × ``side`` window in the middle of the image (CenterCrop's rounding)."""
    size = max(round(side), 1)
    return Window(round((height - size) / 2), round((width - size) / 2), size, size, flip)


def _flip(p: float) -> bool:
    """RandomHorizontalFlip's draw."""
    return bool(torch.rand(1) < p)


def _to_tensor() -> list[Step]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


@dataclass(frozen=True)
class Augment:
    """No augmentation: the image resized to the training size (``augment=none``)."""

    eval_crop: float = 1.0
    divide_std: bool = True

    def __init_subclass__(cls, replace: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a stored data config may name it (data/registry.py); a taken path is refused
        register_data_class(cls, replace)

    def __post_init__(self) -> None:
        check_value("augment.eval_crop", self.eval_crop, NUMBER, positive=True)
        check_value("augment.divide_std", self.divide_std, BOOLEAN)
        # the options' own fields, checked here once for all of them
        if hasattr(self, "flip"):
            check_value("augment.flip", self.flip, NUMBER)
            if not 0 <= self.flip <= 1:
                raise InvalidArgument(f"augment.flip={self.flip} must be a probability in [0, 1]")
        scale = getattr(self, "scale", None)
        if scale is not None and (len(scale) != 2 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in scale)
                or not 0 < scale[0] <= scale[1]):
            raise InvalidArgument(f"augment.scale={list(scale)} must be [low, high] with "
                                  f"0 < low <= high")
        if hasattr(self, "padding"):
            check_value("augment.padding", self.padding, INTEGER)
        if hasattr(self, "reference"):
            check_value("augment.reference", self.reference, INTEGER, positive=True)

    def eval_resize(self, image_size: int) -> int:
        """The shorter side evaluation resizes to: ``round(image_size / eval_crop)``."""
        return round(image_size / self.eval_crop)

    def crop(self, image_size: int) -> list[Step]:
        """The training-only steps on the PIL image (random crops, flips)."""
        return [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]

    def train_window(self, height: int, width: int, image_size: int) -> Window:
        """:meth:`crop` as a window of a ``height`` × ``width`` image (random draws included)."""
        return _centred(height, width, min(height, width))

    def eval_window(self, height: int, width: int, image_size: int,
                    resize: int | None = None) -> Window:
        """:meth:`eval`'s resize of the shorter side and centre crop, as a window."""
        shorter = min(height, width)
        return _centred(height, width, image_size * shorter / (resize or
                                                               self.eval_resize(image_size)))

    def train(self, image_size: int, channels: int, norm: Normalization) -> v2.Compose:
        return v2.Compose([*self.crop(image_size), *_to_tensor(),
                           norm.transform(channels, self.divide_std)])

    def eval(self, image_size: int, channels: int, norm: Normalization,
             resize: int | None = None) -> v2.Compose:
        return v2.Compose([v2.Resize(resize or self.eval_resize(image_size), antialias=True),
                           v2.CenterCrop(image_size), *_to_tensor(),
                           norm.transform(channels, self.divide_std)])


register_data_class(Augment)


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

    def train_window(self, height: int, width: int, image_size: int) -> Window:
        low, high = (max(round(s * image_size / self.reference), image_size) for s in self.scale)
        side = int(torch.randint(low, high + 1, (1,)))
        scale = min(height, width) / side  # source pixels per resized pixel
        # v2.Resize(side)'s output size: the longer side truncated
        resized_h, resized_w = ((side, int(side * width / height)) if height <= width
                                else (int(side * height / width), side))
        top = int(torch.randint(0, resized_h - image_size + 1, (1,)))
        left = int(torch.randint(0, resized_w - image_size + 1, (1,)))
        size = max(round(image_size * scale), 1)
        return Window(round(top * scale), round(left * scale), size, size, _flip(self.flip))


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

    def train_window(self, height: int, width: int, image_size: int) -> Window:
        # torchvision's own parameter draw, on the image's size only
        crop = v2.RandomResizedCrop(image_size, scale=self.scale)
        box = crop.make_params([tv_tensors.BoundingBoxes(
            torch.zeros(1, 4), format="XYXY", canvas_size=(height, width))])
        return Window(box["top"], box["left"], box["height"], box["width"], _flip(self.flip))


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

    def train_window(self, height: int, width: int, image_size: int) -> Window:
        # the padding is zeros around the centre crop, not the image around it
        centre = _centred(height, width, min(height, width))
        scale = centre.height / image_size
        top, left = (int(torch.randint(0, 2 * self.padding + 1, (1,))) - self.padding
                     for _ in range(2))
        return Window(round(top * scale), round(left * scale), centre.height, centre.width,
                      _flip(self.flip), (centre.top, centre.left, centre.height, centre.width))
