"""Common ground of every data set: its shape declaration and loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import Dataset, Subset

from ftbnn_exp.data.loading import EpochLoader, EpochSampler, SeededSamples
from ftbnn_exp.data.registry import register_data_class
from ftbnn_exp.errors import UserError


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know of its data: it adapts its stem and head to these."""

    image_size: int
    in_channels: int
    num_classes: int


def split_indices(n: int, holdout: int, seed: int) -> tuple[list[int], list[int]]:
    """A fixed random split of ``range(n)`` into ``n - holdout`` and ``holdout`` indices."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[holdout:], order[:holdout]


class ClassificationDataModule(L.LightningDataModule):
    """Train / val / test loaders for an image classification data set.

    The constructor contract: a subclass passes ``spec`` (its :class:`DataSpec`) and the
    run's ``seed`` on to this ``__init__`` (or declares ``spec`` as a class attribute, or a
    property that reads no more than it must), and fills ``train_set``, ``val_set`` and
    ``test_set`` in ``setup``. Tools read ``spec`` before any ``setup`` (a model is sized from
    it): a module without one is refused in one line naming it, never an AttributeError. A
    module without a seed is refused too: every seed would draw the same order and split.
    ``batch_size`` is per device (DDP multiplies it by the number of processes).
    """

    def __init_subclass__(cls, replace: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a stored data config may name it (data/registry.py); a taken path is refused
        register_data_class(cls, replace)

    def __init__(self, name: str = "", batch_size: int = 64, num_workers: int = 0,
                 pin_memory: bool = False, seed: int | None = None,
                 prefetch_factor: int | None = None, spec: DataSpec | None = None) -> None:
        super().__init__()
        if seed is None:
            raise UserError(f"data module {type(self).__name__} was given no seed; a data "
                            f"module takes the run's seed (`seed: ${{seed}}` in its data yaml, "
                            f"passed on to ClassificationDataModule.__init__), else every "
                            f"seed would draw the same order and split")
        if spec is not None:
            self.spec = spec
        self.name = name
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.prefetch_factor = prefetch_factor
        self.collate_fn: Callable | None = None
        # how loader workers start (None: the platform's default, fork on Linux)
        self.multiprocessing_context: str | None = None
        # Where a data set may list the samples it skipped (see ``use_run_dir``).
        self.skipped_log: Path | None = None
        self.train_set: Dataset | Subset | None = None
        self.val_set: Dataset | Subset | None = None
        self.test_set: Dataset | Subset | None = None

    @property
    def spec(self) -> DataSpec:
        """What a model of this data is sized from, known at construction (see the class)."""
        spec = self.__dict__.get("_spec")
        if spec is None:
            raise UserError(f"data module {type(self).__name__} has no spec before setup(); "
                            f"pass spec=DataSpec(image_size, in_channels, num_classes) to "
                            f"ClassificationDataModule.__init__ (tools size a model from it "
                            f"without loading data)")
        return spec

    @spec.setter
    def spec(self, value: DataSpec) -> None:
        self.__dict__["_spec"] = value

    def pixel_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """How this module's tensors relate to [0, 1] pixels: ``x = (pixel − mean) / std`` per
        channel, as ``(mean, std)``; None where they are not pixels on [0, 1] (the digits'
        standardised 0–16 counts). A distillation teacher trained on other inputs is fed
        through it (:class:`~ftbnn_exp.training.distillation.TeacherInput`)."""
        return None

    def image_transform(self, channels: int) -> Callable[[Any], torch.Tensor]:
        """What turns one image (PIL) into the tensor a model of this data takes, as the test
        split is prepared: for ``deploy predict`` on image files. Data without image files of
        their own (synthetic tensors) have none."""
        raise UserError(f"data={self.name or type(self).__name__} has no image files; "
                        f"predict on tensors instead")

    def _loader(self, dataset: Dataset | Subset | None, shuffle: bool) -> EpochLoader:
        """A resumable loader (see :mod:`ftbnn_exp.data.loading`) whose order starts at the
        epoch the trainer runs next (a resumed run's), later epochs via ``set_epoch``."""
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before loaders are made")
        trainer = self.trainer
        # the epoch Lightning runs next (what it passes to set_epoch), a resumed run's too
        epoch = trainer.fit_loop.epoch_progress.current.processed if trainer else 0
        return EpochLoader(
            SeededSamples(dataset, self.seed),
            batch_size=self.batch_size,
            sampler=EpochSampler(len(dataset), shuffle, self.seed, epoch),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            drop_last=False,
            collate_fn=self.collate_fn,
            multiprocessing_context=(self.multiprocessing_context if self.num_workers > 0
                                     else None),
        )

    def use_run_dir(self, run_dir: Path) -> None:
        """Called with the run directory before ``setup``; data sets that record something
        there (skipped files) override it."""

    def skipped_samples(self) -> list[str]:
        if self.skipped_log is None or not self.skipped_log.is_file():
            return []
        return self.skipped_log.read_text().splitlines()

    def train_dataloader(self) -> EpochLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> EpochLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> EpochLoader:
        return self._loader(self.test_set, shuffle=False)
