"""A procedurally generated, learnable image set of any shape (throughput and smoke tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ftbnn_exp.data.base import ClassificationDataModule, DataSpec

_PROTOTYPE_SIZE = 4


class SyntheticImages(Dataset):
    """Each class is a smooth random prototype; a sample is its prototype with random contrast,
    a random shift and pixel noise. Generated on the fly from ``(seed, index)``, so an
    ImageNet-shaped set costs no memory and every epoch sees the same images."""

    def __init__(self, count: int, spec: DataSpec, noise: float, seed: int) -> None:
        self.count, self.spec, self.noise, self.seed = count, spec, noise, seed
        generator = torch.Generator().manual_seed(seed)
        self.prototypes = torch.randn(
            spec.num_classes, spec.in_channels, _PROTOTYPE_SIZE, _PROTOTYPE_SIZE,
            generator=generator)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = int(torch.randint(self.spec.num_classes, (1,), generator=generator))
        size = self.spec.image_size
        image = F.interpolate(self.prototypes[label : label + 1], size=(size, size),
                              mode="bilinear", align_corners=False)[0]
        contrast = 0.75 + 0.5 * torch.rand(1, generator=generator)
        shift = torch.randint(-size // 8, size // 8 + 1, (2,), generator=generator).tolist()
        image = torch.roll(image * contrast, shifts=shift, dims=(1, 2))
        return image + self.noise * torch.randn(image.shape, generator=generator), label


class SyntheticDataModule(ClassificationDataModule):
    """Learnable synthetic data with the declared size, channels and classes."""

    def __init__(self, image_size: int = 32, in_channels: int = 3, num_classes: int = 10,
                 train_count: int = 2048, val_count: int = 512, test_count: int = 512,
                 noise: float = 0.5, **kwargs) -> None:
        super().__init__(spec=DataSpec(image_size, in_channels, num_classes), **kwargs)
        self.counts = (train_count, val_count, test_count)
        self.noise = noise

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        # Three disjoint seeds so the splits never share an image.
        self.train_set, self.val_set, self.test_set = (
            SyntheticImages(count, self.spec, self.noise, self.seed * 3 + offset)
            for offset, count in enumerate(self.counts)
        )
        # The splits must share their prototypes to be one learnable task.
        for split in (self.val_set, self.test_set):
            split.prototypes = self.train_set.prototypes
