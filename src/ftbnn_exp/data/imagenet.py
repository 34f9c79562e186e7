"""ImageNet (ILSVRC 2012) from an ImageFolder tree, with Appendix C's augmentation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from PIL import UnidentifiedImageError
from torch.utils.data import default_collate
from torchvision import datasets
from torchvision.transforms import v2

from ftbnn_exp.data.base import ClassificationDataModule, DataSpec
from ftbnn_exp.errors import CorruptImageError, DataNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = "expected root/train/<class>/*.JPEG and root/val/<class>/*.JPEG"


def train_transform(size: int = 224) -> v2.Compose:
    """Random-resized crop, horizontal flip, normalisation (Appendix C, He et al. 2016)."""
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(size, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(size: int = 224, resize: int = 256) -> v2.Compose:
    """Shorter side to 256, 224 center crop, normalisation (Appendix C)."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(resize, antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def check_layout(root: str | None) -> tuple[Path, Path]:
    if not root:
        raise DataNotFoundError(f"data=imagenet needs data.root=/path/to/imagenet; {LAYOUT}")
    base = Path(root)
    for split in ("train", "val"):
        folder = base / split
        if not folder.is_dir():
            raise DataNotFoundError(
                f"data.root='{base.resolve()}' has no '{split}' folder; {LAYOUT}")
        if not any(child.is_dir() for child in folder.iterdir()):
            raise DataNotFoundError(f"data.root='{base.resolve()}/{split}' has no class folders; "
                                    f"{LAYOUT}")
    return base / "train", base / "val"


class CheckedImageFolder(datasets.ImageFolder):
    """An ImageFolder that names an unreadable file, or skips it when ``skip_log`` is set: the
    path is appended to that file (one line per image, from any worker) and the sample is
    dropped by :func:`collate_present`."""

    def __init__(self, root: Path, transform: v2.Compose, skip_log: Path | None = None) -> None:
        super().__init__(root, transform)
        self.skip_log = skip_log

    def __getitem__(self, index: int) -> Any:
        path = self.samples[index][0]
        try:
            return super().__getitem__(index)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            if self.skip_log is None:
                raise CorruptImageError(
                    f"cannot read image {path} ({type(error).__name__}: {error}); remove it or "
                    f"set data.skip_corrupt=true to skip unreadable images") from None
            with open(self.skip_log, "a") as log:
                log.write(f"{path}\n")
            print(f"skipped unreadable image {path}", file=sys.stderr)
            return None


def collate_present(batch: list[Any]) -> Any:
    """``default_collate`` of the samples that could be read."""
    return default_collate([sample for sample in batch if sample is not None])


class ImageNetDataModule(ClassificationDataModule):
    """Train on ``root/train``; validate and test on ``root/val`` (the paper reports val)."""

    def __init__(self, root: str | None = None, num_classes: int = 1000, image_size: int = 224,
                 skip_corrupt: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.spec = DataSpec(image_size, 3, num_classes)
        self.skip_corrupt = skip_corrupt
        if skip_corrupt:
            self.collate_fn = collate_present

    def use_run_dir(self, run_dir: Path) -> None:
        """Unreadable images skipped during the run are listed in ``skipped_images.txt``."""
        self.skipped_log = run_dir / "skipped_images.txt" if self.skip_corrupt else None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_dir, val_dir = check_layout(self.root)
        log = self.skipped_log
        self.train_set = CheckedImageFolder(train_dir, train_transform(self.spec.image_size), log)
        self.val_set = CheckedImageFolder(val_dir, eval_transform(self.spec.image_size), log)
        self.test_set = self.val_set
        found = len(self.train_set.classes)
        if found != self.spec.num_classes:
            raise DataNotFoundError(
                f"data.root='{self.root}/train' has {found} class folders but "
                f"data.num_classes={self.spec.num_classes}; set data.num_classes={found}")
