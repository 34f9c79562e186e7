"""scikit-learn's bundled 8×8 handwritten digits: real, tiny and offline (the default data)."""

from __future__ import annotations

import torch
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

        def tensors(x, y) -> TensorDataset:
            pixels = torch.as_tensor(x, dtype=torch.float32).view(-1, 1, 8, 8)
            return TensorDataset((pixels - mean) / std, torch.as_tensor(y, dtype=torch.long))

        self.train_set = tensors(x_train, y_train)
        self.val_set = tensors(x_val, y_val)
        self.test_set = tensors(x_test, y_test)
