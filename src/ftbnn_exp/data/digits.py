"""scikit-learn's bundled 8×8 handwritten digits: real, tiny and offline (the default data)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from ftbnn_exp.data.base import ClassificationDataModule, DataSpec


class DigitsDataModule(ClassificationDataModule):
    """1,797 digits, split once, stratified, from ``split_seed`` into train / val / test.

    Pixels (0–16) are standardised with the train split's mean and std. No augmentation.
    """

    spec = DataSpec(image_size=8, in_channels=1, num_classes=10)

    def __init__(self, val_fraction: float = 0.15, test_fraction: float = 0.15,
                 split_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    def image_transform(self, channels: int) -> Callable[[Image.Image], torch.Tensor]:
        """A picture of a digit as the data hold one: grayscale, ink bright (as scikit-learn's
        0–16 counts; a dark-ink scan is inverted first: ``ImageOps.invert``), 8×8, 0–255 read
        as 0–16, then standardised with the train split's statistics."""
        self.setup()
        mean, std = self.pixel_stats

        def transform(image: Image.Image) -> torch.Tensor:
            small = image.convert("L").resize((8, 8), Image.Resampling.BILINEAR)
            counts = torch.as_tensor(np.array(small), dtype=torch.float32) * 16 / 255
            return ((counts.round() - mean) / std).view(1, 8, 8)

        return transform

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = load_digits(return_X_y=True)
        holdout = self.val_fraction + self.test_fraction
        x_train, x_rest, y_train, y_rest = train_test_split(
            images, labels, test_size=holdout, stratify=labels, random_state=self.split_seed)
        x_val, x_test, y_val, y_test = train_test_split(
            x_rest, y_rest, test_size=self.test_fraction / holdout, stratify=y_rest,
            random_state=self.split_seed)
        mean, std = float(x_train.mean()), float(x_train.std())
        self.pixel_stats = (mean, std)

        def tensors(x, y) -> TensorDataset:
            pixels = torch.as_tensor(x, dtype=torch.float32).view(-1, 1, 8, 8)
            return TensorDataset((pixels - mean) / std, torch.as_tensor(y, dtype=torch.long))

        self.train_set = tensors(x_train, y_train)
        self.val_set = tensors(x_val, y_val)
        self.test_set = tensors(x_test, y_test)
