"""MNIST, CIFAR-10 and CIFAR-100 through torchvision (or a Keras-style ``mnist.npz``)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision import datasets
from torchvision.transforms import v2

from ftbnn_exp.data.base import ClassificationDataModule, DataSpec, split_indices
from ftbnn_exp.data.folder import FolderDataModule
from ftbnn_exp.data.transforms import Augment, CifarCrop
from ftbnn_exp.errors import DataNotFoundError, one_line_message

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR_CLASSES = {"cifar10": 10, "cifar100": 100}
CIFAR_TRAIN_IMAGES = 50_000
CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}


def _missing(name: str, root: str, download: bool, error: Exception) -> DataNotFoundError:
    hint = "download failed (no network?)" if download else "set data.download=true to fetch it"
    return DataNotFoundError(
        f"data={name}: no {name} files under '{Path(root).resolve()}' ({hint}); "
        f"or set data.root to where they are ({type(error).__name__}: {error})"
    )


MNIST_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_mnist_npz(path: str) -> dict[str, np.ndarray]:
    """Arrays ``x_train, y_train, x_test, y_test`` of a Keras-style ``mnist.npz``. Read without
    pickle (a file is data, never code): a text file, a plain ``.npy``, object or non-numeric
    arrays are a one-line error naming the file."""
    file = Path(path)
    if not file.is_file():
        raise DataNotFoundError(f"data.npz_path='{file.resolve()}' is not a file")
    if not zipfile.is_zipfile(file):
        raise _not_mnist(file, "it is not an npz (zip) archive")
    with np.load(file, allow_pickle=False) as arrays:
        missing = set(MNIST_NPZ_KEYS) - set(arrays.files)
        if missing:
            raise _not_mnist(file, f"it lacks {', '.join(sorted(missing))}")
        return {key: _numeric_array(arrays, key, file) for key in MNIST_NPZ_KEYS}


def _not_mnist(file: Path, reason: str) -> DataNotFoundError:
    return DataNotFoundError(f"data.npz_path='{file}' is not a Keras-style mnist.npz (numeric "
                             f"arrays {', '.join(MNIST_NPZ_KEYS)}): {reason}")


def _numeric_array(arrays: Any, key: str, file: Path) -> np.ndarray:
    """One array of the archive; pickled objects are refused, never loaded."""
    try:
        array = arrays[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _not_mnist(file, f"{key}: {one_line_message(error)}") from None
    if array.dtype.kind not in "uif":
        raise _not_mnist(file, f"{key} holds {array.dtype}, not numbers")
    return array


def _mnist_tensors(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    pixels = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / 255.0
    return TensorDataset((pixels - MNIST_MEAN) / MNIST_STD, torch.as_tensor(labels).long())


class MNISTDataModule(ClassificationDataModule):
    """MNIST 28×28; ``val_size`` training images are held out for validation (seeded)."""

    spec = DataSpec(image_size=28, in_channels=1, num_classes=10)

    def __init__(self, root: str = "data", download: bool = False, npz_path: str | None = None,
                 val_size: int = 5000, train_limit: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.download, self.npz_path = root, download, npz_path
        self.val_size, self.train_limit = val_size, train_limit

    def pixel_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (MNIST_MEAN,), (MNIST_STD,)

    def image_transform(self, channels: int) -> Callable[[Any], torch.Tensor]:
        """Grayscale, 28×28, [0, 1], MNIST's normalisation (white digit on black, as MNIST)."""
        steps = v2.Compose([v2.Grayscale(), v2.Resize((28, 28), antialias=True), v2.ToImage(),
                            v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize((MNIST_MEAN,), (MNIST_STD,))])
        return steps

    def _splits(self) -> tuple[Dataset, Dataset]:
        if self.npz_path:
            arrays = load_mnist_npz(self.npz_path)
            return (_mnist_tensors(arrays["x_train"], arrays["y_train"]),
                    _mnist_tensors(arrays["x_test"], arrays["y_test"]))
        transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                                v2.Normalize((MNIST_MEAN,), (MNIST_STD,))])
        try:
            return tuple(  # type: ignore[return-value]
                datasets.MNIST(self.root, train=train, download=self.download,
                               transform=transform)
                for train in (True, False))
        except RuntimeError as error:
            raise _missing("mnist", self.root, self.download, error) from error

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full_train, test = self._splits()
        train_idx, val_idx = split_indices(len(full_train), self.val_size, self.seed)
        if self.train_limit:
            train_idx = train_idx[: self.train_limit]
        self.train_set, self.val_set = Subset(full_train, train_idx), Subset(full_train, val_idx)
        self.test_set = test


class CIFARDataModule(FolderDataModule):
    """CIFAR-10/100, 32×32, from torchvision's batches (``download`` fetches them) or from an
    ImageFolder tree (``root/train/<class>``, ``root/test/<class>``, as PNG/JPEG mirrors ship
    it). Without ``augment=``: pad-4 random crop and flip (:class:`CifarCrop`), CIFAR's own
    normalisation; ``val_size`` training images held out (seeded; stratified for a tree)."""

    def __init__(self, name: str = "cifar10", root: str = "data", download: bool = False,
                 val_size: int = 5000, **kwargs: Any) -> None:
        if name not in CIFAR_MEAN:
            raise DataNotFoundError(f"data.name={name!r} is unknown; allowed: cifar10, cifar100")
        kwargs.setdefault("mean", CIFAR_MEAN[name])
        kwargs.setdefault("std", CIFAR_STD[name])
        super().__init__(name=name, root=root, num_classes=CIFAR_CLASSES[name], in_channels=3,
                         image_size=32,
                         val_fraction=val_size / CIFAR_TRAIN_IMAGES, **kwargs)
        self.download, self.val_size = download, val_size

    def default_augment(self) -> Augment:
        return CifarCrop()

    def first_image_channels(self) -> int:
        """CIFAR is RGB: a tree's images are read as RGB whatever their files hold."""
        return 3

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.split_folder("train") is not None:
            super().setup(stage)
            return
        spec, norm = self.spec, self.normalization
        cls = datasets.CIFAR10 if self.name == "cifar10" else datasets.CIFAR100
        try:
            train_aug = cls(self.root, train=True, download=self.download,
                            transform=self.augment.train(32, 3, norm))
            evaluation = self.augment.eval(spec.image_size, 3, norm, self.eval_resize)
            train_plain = cls(self.root, train=True, transform=evaluation)
            test = cls(self.root, train=False, download=self.download, transform=evaluation)
        except RuntimeError as error:
            raise _missing(self.name, self.root, self.download, error) from error
        train_idx, val_idx = split_indices(len(train_aug), self.val_size, self.seed)
        self.train_set = Subset(train_aug, train_idx)
        self.val_set = Subset(train_plain, val_idx)
        self.test_set = test
