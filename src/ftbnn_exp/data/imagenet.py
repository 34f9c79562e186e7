"""ImageNet (ILSVRC 2012) from an ImageFolder tree, with Appendix C's augmentation."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets
from torchvision.transforms import v2

from ftbnn_exp.data.base import ClassificationDataModule, DataSpec
from ftbnn_exp.errors import DataNotFoundError

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
            raise DataNotFoundError(f"data.root='{base.resolve()}' has no '{split}' folder; {LAYOUT}")
        if not any(child.is_dir() for child in folder.iterdir()):
            raise DataNotFoundError(f"data.root='{base.resolve()}/{split}' has no class folders; "
                                    f"{LAYOUT}")
    return base / "train", base / "val"


class ImageNetDataModule(ClassificationDataModule):
    """Train on ``root/train``; validate and test on ``root/val`` (the paper reports val)."""

    def __init__(self, root: str | None = None, num_classes: int = 1000, image_size: int = 224,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.spec = DataSpec(image_size, 3, num_classes)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_dir, val_dir = check_layout(self.root)
        self.train_set = datasets.ImageFolder(train_dir, train_transform(self.spec.image_size))
        self.val_set = datasets.ImageFolder(val_dir, eval_transform(self.spec.image_size))
        self.test_set = self.val_set
        found = len(self.train_set.classes)
        if found != self.spec.num_classes:
            raise DataNotFoundError(
                f"data.root='{self.root}/train' has {found} class folders but "
                f"data.num_classes={self.spec.num_classes}; set data.num_classes={found}")
