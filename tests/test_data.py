"""Data modules: fixed splits, declared shapes, clear errors for missing files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ftbnn_exp.data import (
    DigitsDataModule,
    FolderDataModule,
    MNISTDataModule,
    SyntheticDataModule,
)
from ftbnn_exp.errors import DataNotFoundError


def labels(dataset) -> torch.Tensor:
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])


def test_digits_split_is_fixed_stratified_and_disjoint():
    first, second = DigitsDataModule(seed=0, split_seed=0), DigitsDataModule(seed=0, split_seed=0)
    first.setup(), second.setup()
    sizes = [len(s) for s in (first.train_set, first.val_set, first.test_set)]
    assert sum(sizes) == 1797 and sizes[1] == pytest.approx(270, abs=1)
    assert torch.equal(first.test_set.tensors[0], second.test_set.tensors[0])
    counts = torch.bincount(labels(first.test_set), minlength=10)
    assert counts.min() >= 25 and counts.max() <= 29  # stratified: ~27 of each digit
    train_rows = {tuple(x.flatten().tolist()) for x in first.train_set.tensors[0]}
    test_rows = {tuple(x.flatten().tolist()) for x in first.test_set.tensors[0]}
    assert not train_rows & test_rows
    assert first.spec == DigitsDataModule.spec and first.spec.image_size == 8


def test_synthetic_is_deterministic_shaped_and_class_dependent():
    dm = SyntheticDataModule(seed=0, image_size=24, in_channels=3, num_classes=4, train_count=64)
    dm.setup()
    image, label = dm.train_set[5]
    again, label_again = dm.train_set[5]
    assert image.shape == (3, 24, 24) and torch.equal(image, again) and label == label_again
    by_class = [torch.stack([x for x, y in (dm.train_set[i] for i in range(64)) if y == c]).mean(0)
                for c in range(4)]
    gap = min((by_class[a] - by_class[b]).abs().mean() for a in range(4) for b in range(a + 1, 4))
    assert gap > 0.1  # class means differ: the labels are learnable, not random


def test_mnist_reads_a_keras_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=rng.integers(0, 256, (120, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 120, dtype=np.uint8),
             x_test=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 30, dtype=np.uint8))
    dm = MNISTDataModule(seed=0, npz_path=str(path), val_size=20)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (100, 20, 30)
    assert dm.train_set[0][0].shape == (1, 28, 28)


def test_missing_files_name_where_they_were_looked_for(tmp_path):
    with pytest.raises(DataNotFoundError, match="no mnist files under"):
        MNISTDataModule(seed=0, root=str(tmp_path)).setup()
    with pytest.raises(DataNotFoundError, match="npz_path"):
        MNISTDataModule(seed=0, npz_path=str(tmp_path / "absent.npz")).setup()
    with pytest.raises(DataNotFoundError,
                       match="has no 'train' folder; data=imagenet expects root/train"):
        FolderDataModule(seed=0, name="imagenet", root=str(tmp_path)).setup()


def test_imagenet_folder_transforms(tmp_path):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (300, 260), (10, 200, 30)).save(tmp_path / split / cls / "0.JPEG")
    dm = FolderDataModule(seed=0, name="imagenet", root=str(tmp_path), num_classes=2)
    dm.setup()
    assert dm.train_set[0][0].shape == (3, 224, 224) and dm.val_set[1][0].shape == (3, 224, 224)
    with pytest.raises(DataNotFoundError, match=r"data\.num_classes=2"):
        FolderDataModule(seed=0, name="imagenet", root=str(tmp_path), num_classes=1000).setup()


def test_a_samples_seed_reaches_only_the_cpu_generator(monkeypatch):
    """SeededSamples seeds torch's CPU generator alone: ``torch.manual_seed`` also seeds every
    device backend (~1.6 ms a call, 96 % of a small model's training, issue 32), and the
    transforms draw from the CPU generator only. Same draws as before, caller's state kept."""
    import torch

    from ftbnn_exp.data.loading import SeededSamples, sample_seed

    class Draw(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> torch.Tensor:
            return torch.rand(3)

    def refuse(*args, **kwargs):
        raise AssertionError("seeded every device backend")

    monkeypatch.setattr(torch, "manual_seed", refuse)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", refuse)
    before = torch.get_rng_state()
    got = SeededSamples(Draw(), seed=7)[(2, 3)]
    assert torch.equal(torch.get_rng_state(), before)
    want = torch.rand(3, generator=torch.Generator().manual_seed(sample_seed(7, 2, 3)))
    assert torch.equal(got, want)


def test_a_batch_fetch_draws_each_sample_under_its_own_seed_and_keeps_the_callers_state():
    """The loader fetches a batch at once (``__getitems__``: one save and restore of the
    caller's state a batch): every sample is what it is fetched alone, whatever batch it is
    in, and the caller's generator stands where it stood."""
    import torch
    from torch.utils.data import DataLoader

    from ftbnn_exp.data.loading import SeededSamples, sample_seed

    class Draw(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, index: int) -> torch.Tensor:
            return torch.rand(2)

    samples = SeededSamples(Draw(), seed=3)
    keys = [(1, 5), (1, 0), (1, 3)]
    before = torch.get_rng_state()
    batch = samples.__getitems__(keys)
    assert torch.equal(torch.get_rng_state(), before)
    for (epoch, index), got in zip(keys, batch, strict=True):
        want = torch.rand(2, generator=torch.Generator().manual_seed(sample_seed(3, epoch, index)))
        assert torch.equal(got, want)
    loaded = next(iter(DataLoader(samples, batch_size=3, sampler=keys)))
    assert torch.equal(loaded, torch.stack(batch))
