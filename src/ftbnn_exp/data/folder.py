"""Any image-classification folder at any resolution (``data=folder``); ImageNet is one
(``data=imagenet``, Appendix C).

Layout: ``root/train/<class>/*`` and ``root/val/<class>/*``, optionally ``root/test/<class>/*``
(else the test split is the val split, as ImageNet's); without ``val/`` a seeded, stratified
``val_fraction`` of ``train/`` is held out. Classes, channels (RGB or grayscale, from the first
image) and the class count come from the folders; a value given explicitly must agree.
``data.backend`` picks where images are decoded and augmented (:mod:`backends`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Subset, default_collate
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS

from ftbnn_exp.data.backends import (
    BACKENDS,
    Cut,
    DeviceBackend,
    EncodedBatch,
    EncodedImages,
    collate_encoded,
    device_backend,
    unreadable,
)
from ftbnn_exp.data.base import ClassificationDataModule, DataSpec
from ftbnn_exp.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    He2016,
    Normalization,
    Window,
)
from ftbnn_exp.errors import DataNotFoundError
from ftbnn_exp.validation import TEXT, check_value

GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")


def layout(name: str) -> str:
    return (f"data={name} expects root/train/<class>/* and root/val/<class>/* (root/test/<class>/* "
            f"optional; without val/, data.val_fraction of train/ is held out)")


def class_folders(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())


class CheckedImageFolder(datasets.ImageFolder):
    """An ImageFolder that names an unreadable file, or skips it when ``skip_log`` is set: the
    path is appended to that file (one line per image, from any worker) and the sample is
    dropped by :func:`collate_present`. Images are read as RGB or grayscale (``channels``)."""

    def __init__(self, root: Path, transform: Any, channels: int,
                 skip_log: Path | None = None, classes: Sequence[str] | None = None) -> None:
        self.mode = "L" if channels == 1 else "RGB"
        self.fixed_classes = list(classes) if classes is not None else None
        # a split may lack a class the training split has (a small val/ or test/)
        super().__init__(root, transform, loader=self.read, allow_empty=classes is not None)
        self.skip_log = skip_log

    def read(self, path: str) -> Image.Image:
        with open(path, "rb") as stream:
            return Image.open(stream).convert(self.mode)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        """The training split's classes, so that every split numbers them alike."""
        if self.fixed_classes is None:
            return super().find_classes(directory)
        return self.fixed_classes, {name: i for i, name in enumerate(self.fixed_classes)}

    def __getitem__(self, index: int) -> Any:
        path = self.samples[index][0]
        try:
            return super().__getitem__(index)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            return unreadable(path, error, self.skip_log)


def check_class_images(split: Path, classes: Sequence[str],
                       samples: Sequence[tuple[str, int]]) -> None:
    """Every class folder of ``split`` yields images: an empty one would count as a class
    that is never seen, and an unreadable one is skipped without a word by ImageFolder (its
    class then never seen either, and top-1 reads as if it did not exist)."""
    counts = Counter(label for _, label in samples)
    for index, name in enumerate(classes):
        if counts[index]:
            continue
        folder = split / name
        try:
            with os.scandir(folder) as entries:
                next(entries, None)
        except OSError as error:
            raise DataNotFoundError(f"data.root: class folder '{folder}' cannot be read "
                                    f"({error.strerror}); fix its permissions or remove it"
                                    ) from None
        raise DataNotFoundError(f"data.root: class folder '{folder}' holds no image "
                                f"({', '.join(IMG_EXTENSIONS)}); add images or remove it")


def collate_present(batch: list[Any]) -> Any:
    """``default_collate`` of the samples that could be read."""
    return default_collate([sample for sample in batch if sample is not None])


def stratified_holdout(targets: Sequence[int], fraction: float, seed: int
                       ) -> tuple[list[int], list[int]]:
    """(train, val) indices: ``round(fraction · n)`` of each class's ``n`` images (at least
    one where a class has two or more) to val, drawn with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(target, []).append(index)
    train, val = [], []
    for indices in by_class.values():
        order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
        held = min(max(round(fraction * len(order)), 1 if len(order) > 1 else 0),
                   len(order) - 1)
        val += order[:held]
        train += order[held:]
    return sorted(train), sorted(val)


def draw_window(augment: Augment, image_size: int, train: bool, eval_resize: int | None,
                height: int, width: int) -> Window:
    """The window of one ``height`` × ``width`` image for a split (random when ``train``)."""
    if train:
        return augment.train_window(height, width, image_size)
    return augment.eval_window(height, width, image_size, eval_resize)


class FolderDataModule(ClassificationDataModule):
    """Train on ``root/train``, validate on ``root/val`` (or a hold-out), test on ``root/test``
    (or val). ``image_size`` is the training crop; ``augment`` (an ``augment=`` option) makes the
    train and eval transforms, ``eval_resize`` overrides its evaluation resize; ``mean`` and
    ``std`` normalise (ImageNet's by default; ``python -m ftbnn_exp.data.stats <root>`` computes
    a folder's own). ``backend``: ``pil``, ``torchvision`` or ``dali`` (:mod:`backends`)."""

    def __init__(self, name: str = "folder", root: str | None = None,
                 num_classes: int | None = None, in_channels: int | None = None,
                 image_size: int = 224, eval_resize: int | None = None,
                 augment: Augment | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, val_fraction: float = 0.1,
                 split_seed: int = 0, skip_corrupt: bool = False, backend: str = "pil",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        check_value("data.backend", backend, TEXT, allowed=BACKENDS)
        self.backend = backend
        self.root = root
        self.declared = {"num_classes": num_classes, "in_channels": in_channels}
        self.image_size, self.eval_resize = image_size, eval_resize
        self.augment = augment or self.default_augment()
        self.normalization = Normalization(tuple(mean), tuple(std))
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.skip_corrupt = skip_corrupt
        if backend != "pil":
            self.collate_fn = collate_encoded  # drops the unreadable samples too
        elif skip_corrupt:
            self.collate_fn = collate_present
        if backend == "dali":
            # workers forked from a process that runs DALI's threads may crash (seen: SIGSEGV
            # in a worker forked after a pipeline was built); a fork server starts them clean
            self.multiprocessing_context = "forkserver"

    def default_augment(self) -> Augment:
        """Without ``augment=``: the paper's recipe (Appendix C)."""
        return He2016()

    def split_folder(self, split: str) -> Path | None:
        folder = Path(self.root) / split
        return folder if folder.is_dir() else None

    @cached_property
    def classes(self) -> list[str]:
        if not self.root:
            raise DataNotFoundError(f"data={self.name} needs data.root=/path/to/images; "
                                    f"{layout(self.name)}")
        train = self.split_folder("train")
        if train is None:
            raise DataNotFoundError(f"data.root='{Path(self.root).resolve()}' has no 'train' "
                                    f"folder; {layout(self.name)}")
        classes = class_folders(train)
        if len(classes) < 2:
            found = f"one class folder ({classes[0]})" if classes else "no class folders"
            raise DataNotFoundError(f"data.root='{train.resolve()}' has {found}; a classifier "
                                    f"needs at least two; {layout(self.name)}")
        for split in ("val", "test"):
            folder = self.split_folder(split)
            extra = sorted(set(class_folders(folder)) - set(classes)) if folder else []
            if extra:
                raise DataNotFoundError(f"data.root='{folder}' has classes that train/ lacks: "
                                        f"{', '.join(extra[:5])}")
        return classes

    def first_image_channels(self) -> int:
        folder = Path(self.root) / "train" / self.classes[0]
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                try:
                    with Image.open(path) as image:
                        return 1 if image.mode in GRAYSCALE_MODES else 3
                except (OSError, UnidentifiedImageError):
                    continue
        raise DataNotFoundError(f"data.root='{folder}' holds no readable image")

    @cached_property
    def found(self) -> dict[str, int]:
        """What the folders hold; a declared value that disagrees is a one-line error."""
        found = {"num_classes": len(self.classes), "in_channels": self.first_image_channels()}
        for key, value in found.items():
            declared = self.declared[key]
            if declared is not None and declared != value:
                raise DataNotFoundError(f"data.{key}={declared} but data.root='{self.root}' "
                                        f"has {value}; set data.{key}={value} or null")
        return found

    @property
    def spec(self) -> DataSpec:  # type: ignore[override]
        """Declared values where both are given (no folder needed, e.g. to count a model's
        complexity; ``setup`` checks them against the folders), else the folders'."""
        shape = self.declared if None not in self.declared.values() else self.found
        return DataSpec(self.image_size, shape["in_channels"], shape["num_classes"])

    def use_run_dir(self, run_dir: Path) -> None:
        """Unreadable images skipped during the run are listed in ``skipped_images.txt``."""
        self.skipped_log = run_dir / "skipped_images.txt" if self.skip_corrupt else None

    def folder_set(self, split: str, train: bool) -> CheckedImageFolder | EncodedImages:
        spec = self.spec
        if self.backend != "pil":
            return self.encoded_set(split, train)
        make = self.augment.train if train else self.augment.eval
        transform = (make(spec.image_size, spec.in_channels, self.normalization) if train else
                     make(spec.image_size, spec.in_channels, self.normalization,
                          self.eval_resize))
        return CheckedImageFolder(Path(self.root) / split, transform, spec.in_channels,
                                  self.skipped_log, self.classes)

    def image_transform(self, channels: int) -> Callable[[Image.Image], torch.Tensor]:
        """The evaluation transform (resize, centre crop, normalise) of a ``channels`` image."""
        mode = "L" if channels == 1 else "RGB"
        evaluate = self.augment.eval(self.image_size, channels, self.normalization,
                                     self.eval_resize)
        return lambda image: evaluate(image.convert(mode))

    def pixel_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        mean, std = self.normalization.values(self.spec.in_channels, self.augment.divide_std)
        return tuple(mean), tuple(std)

    @property
    def cut(self) -> Cut:
        spec = self.spec
        mean, std = self.normalization.values(spec.in_channels, self.augment.divide_std)
        return Cut(spec.image_size, spec.in_channels, tuple(mean), tuple(std))

    def encoded_set(self, split: str, train: bool) -> EncodedImages:
        """The split's files for a device backend, each with its window drawn in the worker."""
        window = partial(draw_window, self.augment, self.spec.image_size, train,
                         self.eval_resize)  # picklable, for workers that are not forked
        folder = CheckedImageFolder(Path(self.root) / split, None, self.spec.in_channels,
                                    None, self.classes)
        return EncodedImages(folder.samples, window, self.skipped_log)

    @cached_property
    def decoder(self) -> DeviceBackend | None:
        """The device backend (None for ``pil``)."""
        return device_backend(self.backend, self.cut, self.skipped_log, self.batch_size)

    def transfer_batch_to_device(self, batch: Any, device: torch.device,
                                 dataloader_idx: int) -> Any:
        """Encoded batches are decoded and cut on ``device`` (Lightning's hook)."""
        if isinstance(batch, EncodedBatch):
            return self.decoder(batch, device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        _ = self.found
        train = self.folder_set("train", train=True)
        check_class_images(Path(self.root) / "train", self.classes, train.samples)
        if self.split_folder("val") is not None:
            self.train_set, self.val_set = train, self.folder_set("val", train=False)
        else:
            kept, held = stratified_holdout([label for _, label in train.samples],
                                            self.val_fraction, self.split_seed)
            self.train_set = Subset(train, kept)
            self.val_set = Subset(self.folder_set("train", train=False), held)
        self.test_set = (self.folder_set("test", train=False)
                         if self.split_folder("test") is not None else self.val_set)
