"""Training progress for parts that follow it (IR-Net's EDE: the ``progress`` trait)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from torch import nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn.parts import has_trait


class TrainingProgress(L.Callback):
    """Before every training batch, sets ``progress`` = (epoch + batch fraction) / max_epochs
    on every module whose registered part has the ``progress`` trait (i/N in IR-Net's Eq. 12).

    ``per_batch=False`` drops the batch fraction, as IR-Net's code steps its schedule once per
    epoch; per batch (the default) the schedule has no jumps. Either way progress stays below
    1: the last batch starts before training is done. A model without such parts is left
    untouched.
    """

    def __init__(self, per_batch: bool = True) -> None:
        self.per_batch = per_batch
        self.following: list[nn.Module] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Finds the modules to set once per fit (not at every batch)."""
        self.following = [m for m in pl_module.modules() if has_trait(m, "progress")]
        if self.following and (trainer.max_epochs is None or trainer.max_epochs < 1):
            raise InvalidArgument("a part follows training progress (model.binarizer=ede), "
                                  "which needs trainer.max_epochs ≥ 1")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        progress = progress_at(trainer.current_epoch, batch_idx, trainer.num_training_batches,
                               trainer.max_epochs, self.per_batch)
        for module in self.following:
            module.progress = progress


def progress_at(epoch: int, batch: int, batches: float, max_epochs: int,
                per_batch: bool = True) -> float:
    """The fraction of training done when ``batch`` of ``epoch`` starts; an epoch of unknown
    length (an iterable dataset: ``batches`` infinite) counts whole epochs only."""
    fraction = batch / batches if per_batch and math.isfinite(batches) else 0.0
    return (epoch + fraction) / max_epochs
