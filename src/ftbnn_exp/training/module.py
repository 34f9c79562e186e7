"""The LightningModule shared by every model: cross-entropy, top-1/top-5, §3's optimizer."""

from __future__ import annotations

import warnings

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ftbnn_exp.artifacts import Metric
from ftbnn_exp.training.optim import (
    OptimizerSpec,
    SchedulerSpec,
    build_optimizer,
    build_scheduler,
)


def _accuracies(num_classes: int, prefix: str, top_ks: tuple[int, ...]) -> MetricCollection:
    return MetricCollection(
        {f"top{k}": MulticlassAccuracy(num_classes=num_classes, top_k=min(k, num_classes),
                                        average="micro") for k in top_ks},
        prefix=f"{prefix}/",
    )


class ClassificationModule(L.LightningModule):
    """Trains any classifier; accuracies are logged in percent, as the paper reports them.

    A non-finite training loss is a result, not a crash: the step is skipped (no update with
    NaN gradients), ``diverged_at_epoch`` is set and training stops.
    """

    def __init__(self, model: nn.Module, num_classes: int,
                 optimizer: OptimizerSpec | None = None,
                 scheduler: SchedulerSpec | None = None,
                 metadata: dict | None = None, channels_last: bool = False,
                 rescale_schedule: bool = False) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.metadata = metadata or {}
        self.optimizer_spec = optimizer or OptimizerSpec()
        self.scheduler_spec = scheduler or SchedulerSpec()
        self.diverged_at_epoch: int | None = None
        self.rescale_schedule = rescale_schedule
        # ModuleDict keys may not shadow nn.Module attributes such as ``train``.
        self.metrics = nn.ModuleDict({
            f"{split}_acc": _accuracies(num_classes, split, top_ks)
            for split, top_ks in (("val", (1, 5)), ("test", (1, 5)))
        })
        # The training epoch's running sums (loss × images, correct top-1, images) are a buffer,
        # so they travel in checkpoints: an epoch resumed mid-way reports what the
        # uninterrupted one would.
        self.register_buffer("train_sums", torch.zeros(3, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        images, labels = batch
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = self(images)
        loss = (self.training_loss(images, logits, labels) if split == "train"
                else F.cross_entropy(logits, labels))
        # Evaluation always reports (a diverged model still has an accuracy); a non-finite
        # training step is left out of the epoch's numbers.
        if split == "train":
            if torch.isfinite(loss):
                n = labels.shape[0]
                correct = (logits.argmax(dim=1) == labels).sum()
                self.train_sums += torch.stack([loss.detach() * n, correct, torch.tensor(n)]
                                               ).to(self.train_sums)
        else:
            self.metrics[f"{split}_acc"].update(logits, labels)
            self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, sync_dist=True,
                     batch_size=labels.shape[0])
        return loss

    def training_loss(self, images: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
        """The loss training minimises: cross-entropy (distillation overrides it)."""
        return F.cross_entropy(logits, labels)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            self.diverged_at_epoch = self.current_epoch
            self.trainer.should_stop = True
            return None
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_accuracies(self, split: str) -> None:
        collection = self.metrics[f"{split}_acc"]
        if any(metric.update_called for metric in collection.values()):
            percent = {name: 100.0 * value for name, value in collection.compute().items()}
            self.log_dict(percent, prog_bar=split == "val")
        collection.reset()

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, images = self.trainer.strategy.reduce(
            self.train_sums.clone(), reduce_op="sum").tolist()
        if images:
            self.log_dict({Metric.TRAIN_LOSS: loss_sum / images,
                           Metric.TRAIN_TOP1: 100.0 * correct / images}, prog_bar=True)
        self.train_sums.zero_()

    def on_validation_epoch_end(self) -> None:
        self._log_accuracies("val")

    def on_test_epoch_end(self) -> None:
        self._log_accuracies("test")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """With ``rescale_schedule`` (``resume_changes=rescale``), a run resumed with a new
        ``max_epochs`` continues on the schedule of its new length: milestones and cosine are
        fractions of it, taken at the epoch the checkpoint reached, and so is the lr."""
        if not self.rescale_schedule:
            return
        optimizer = build_optimizer(self.model, self.optimizer_spec)
        scheduler = build_scheduler(optimizer, self.scheduler_spec,
                                    max(self.trainer.max_epochs or 1, 1))
        with warnings.catch_warnings():  # stepping the schedule alone, on purpose
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(checkpoint["lr_schedulers"][0]["last_epoch"]):
                scheduler.step()
        checkpoint["lr_schedulers"] = [scheduler.state_dict()]
        for saved, group in zip(checkpoint["optimizer_states"][0]["param_groups"],
                                optimizer.param_groups, strict=True):
            saved["lr"] = group["lr"]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # What built the model, so tools can read a checkpoint without the run's config files.
        checkpoint["ftbnn_exp"] = self.metadata

    def configure_optimizers(self) -> dict:
        optimizer = build_optimizer(self.model, self.optimizer_spec)
        max_epochs = max(self.trainer.max_epochs or 1, 1)
        scheduler = build_scheduler(optimizer, self.scheduler_spec, max_epochs)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
