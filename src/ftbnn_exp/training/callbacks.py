"""Callbacks that make a run's results durable and readable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ftbnn_exp.artifacts import Metric, read_json, write_json_atomic
from ftbnn_exp.errors import UserError
from ftbnn_exp.training.checkpoint_io import DiskFull, disk_full_named
from ftbnn_exp.training.module import ClassificationModule


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.items()}


class RunRecord(L.Callback):
    """Keeps ``metrics.json`` current: after every epoch, on a crash and at the end.

    ``status`` is ``running`` while training, then ``completed``, ``diverged`` (with the epoch),
    ``interrupted`` (Ctrl-C, SIGTERM, a full disk) or ``failed``. Epoch rows are taken when the
    next epoch starts, because Lightning finalises the train-epoch aggregates after every
    callback's epoch-end hook. The history travels in checkpoints, so a resumed run keeps its
    earlier epochs. A rerun of a run whose training had finished trains nothing: its record on
    disk stays as it was until the test writes the same numbers again.
    """

    def __init__(self, path: str | Path, info: dict[str, Any], resuming: bool = False) -> None:
        self.path = Path(path)
        self.info = dict(info)
        self.history: list[dict[str, float]] = []
        self._checkpoint_epoch = -1
        self._started = time.monotonic()
        self._earlier_seconds = 0.0  # wall time of the runs this one resumes
        if resuming and self.path.is_file():
            # The record on disk: kept if the resume fails early, and merged into the
            # checkpoint's history for the epoch the checkpoint was taken in (an unreadable
            # one is replaced: the checkpoint holds the history).
            try:
                earlier = read_json(self.path)
            except UserError:
                earlier = {}
            earlier = earlier if isinstance(earlier, dict) else {}
            history = earlier.get(Metric.HISTORY)
            self.history = [row for row in history if isinstance(row, dict) and isinstance(
                row.get("epoch"), int)] if isinstance(history, list) else []
            seconds = earlier.get(Metric.WALL_SECONDS)
            self._earlier_seconds = float(seconds) if isinstance(seconds, int | float) else 0.0
        self.status = "running"
        self.test: dict[str, float] = {}
        # The epoch whose batches ran last, and the lr each epoch trained with: both seen
        # batch by batch, so an epoch resumed mid-way (no epoch-start hook) counts too.
        self._epoch_in_progress: int | None = None
        self._lrs: dict[int, dict[str, float]] = {}

    def payload(self, module: ClassificationModule | None = None) -> dict[str, Any]:
        diverged = module.diverged_at_epoch if module is not None else None
        best = max(self.history, key=lambda row: row.get(Metric.VAL_TOP1, float("-inf")),
                   default=None)
        # this process's time since the run started, plus that of the runs it resumed
        seconds = self._earlier_seconds + time.monotonic() - self._started
        return {
            **self.info,
            Metric.STATUS: self.status,
            "diverged_epoch": diverged,
            Metric.EPOCHS_RUN: len(self.history),
            Metric.WALL_SECONDS: round(seconds, 1),
            Metric.FINAL: {**(self.history[-1] if self.history else {}), **self.test},
            Metric.BEST: ({"epoch": best["epoch"], Metric.VAL_TOP1: best.get(Metric.VAL_TOP1)}
                          if best and Metric.VAL_TOP1 in best else {}),
            Metric.HISTORY: self.history,
        }

    @rank_zero_only
    def write(self, module: ClassificationModule | None = None) -> None:
        with disk_full_named(self.path):
            write_json_atomic(self.path, self.payload(module))

    def _take_epoch(self, trainer: L.Trainer, epoch: int) -> None:
        metrics = _numbers(trainer.callback_metrics)
        if not metrics or any(row["epoch"] == epoch for row in self.history):
            return
        row = {"epoch": epoch, **{k: v for k, v in metrics.items() if not k.startswith("test/")},
               **self._lrs.get(epoch, {})}
        self.history.append(row)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not on_fit_start: Lightning skips training (and this hook) when the checkpoint it
        # resumed from has finished, and a finished record must not turn ``running``.
        self.status = "running"
        self.write(pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > 0 and trainer.callback_metrics:
            self._take_epoch(trainer, trainer.current_epoch - 1)
            self.write(pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             *args: Any) -> None:
        epoch = trainer.current_epoch
        self._epoch_in_progress = epoch
        if epoch not in self._lrs:
            self._lrs[epoch] = {f"lr/{group.get('name', i)}": group["lr"]
                                for opt in trainer.optimizers
                                for i, group in enumerate(opt.param_groups)}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = self._epoch_in_progress
        if epoch is None and trainer.current_epoch > 0:
            # resumed after the epoch's last batch (stopped during its validation): no batch
            # ran here, but the epoch ended in this fit and its row is still to be taken
            epoch = trainer.current_epoch - 1
        if epoch is not None:
            self._take_epoch(trainer, epoch)
        self.status = self._trained(pl_module)
        self.write(pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Training had finished before this fit (a rerun of a finished run, or one killed
        during its final test): Lightning skipped on_train_end, and the test comes next."""
        if self.status == "running":
            self.status = self._trained(pl_module)

    @staticmethod
    def _trained(pl_module: L.LightningModule) -> str:
        return "diverged" if pl_module.diverged_at_epoch is not None else "trained"

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.test = {k: v for k, v in _numbers(trainer.callback_metrics).items()
                     if k.startswith("test/")}
        if self.status == "trained":
            self.status = "completed"
        self.write(pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        interrupted = isinstance(exception, KeyboardInterrupt | SIGTERMException | DiskFull)
        self.status = "interrupted" if interrupted else "failed"
        self.info["error"] = f"{type(exception).__name__}: {exception}"
        self.write(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "lrs": {str(k): v for k, v in self._lrs.items()}}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._checkpoint_epoch = checkpoint.get("epoch", -1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The checkpoint's rows, plus the on-disk rows of epochs up to the checkpoint's (an
        end-of-epoch checkpoint is written before that epoch's row is complete)."""
        rows = list(state_dict.get("history", []))
        known = {row["epoch"] for row in rows}
        rows += [row for row in self.history
                 if row["epoch"] not in known and row["epoch"] <= self._checkpoint_epoch]
        self.history = sorted(rows, key=lambda row: row["epoch"])
        self._lrs = {int(k): v for k, v in state_dict.get("lrs", {}).items()}


VAL_PROGRESS = "epoch_loop.val_loop.batch_progress"
"""Where a Lightning checkpoint keeps the validation loop's batch counters (``loops.fit_loop``)."""


class RedoInterruptedValidation(L.Callback):
    """A checkpoint taken while a validation was under way (SIGTERM after an epoch's last
    training batch: Lightning defers it to the validation that follows, which stops at its
    next batch) resumes by running that validation again from its first batch. Lightning
    itself takes such a checkpoint for one saved after the last batch, whose validation is to
    be skipped: the epoch then had no ``val/top1`` and best-checkpoint selection missed it. The
    batches already validated are not reused: their metric states are not in the checkpoint.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get(VAL_PROGRESS)
        if not progress or progress.get("is_last_batch", True) or not progress["current"][
                "completed"]:
            return  # no validation was cut short
        # Lightning's mark of a validation stopped within a batch (started, not processed):
        # it goes back to it, and from a current count of 0 it starts at the first batch.
        progress["current"] = dict.fromkeys(progress["current"], 0)
        progress["total"] = {"ready": 1, "started": 1, "processed": 0, "completed": 0}
        progress["is_last_batch"] = False


class RngState(L.Callback):
    """Puts the RNG states of torch (CPU and CUDA), NumPy and Python in every checkpoint and
    restores them on resume, so a resumed run draws the same shuffles as an uninterrupted one.
    Lightning checkpoints the model, optimizer, schedulers and loops, but not these. They are
    restored before the resumed run makes its loaders, which therefore must not draw from
    them (:class:`~ftbnn_exp.data.loading.EpochLoader` seeds its workers from its own
    generator)."""

    def state_dict(self) -> dict[str, Any]:
        states = _collect_rng_states(include_cuda=True)
        # NumPy's key array as a tensor: checkpoints stay loadable with weights_only=True.
        name, keys, *rest = states["numpy"]
        states["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), *rest)
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        name, keys, *rest = state_dict["numpy"]
        _set_rng_states({**state_dict,
                         "numpy": (name, keys.numpy().astype(np.uint32), *rest)})


class EpochLine(L.Callback):
    """One plain line per epoch where there is no terminal for a progress bar (logs, SLURM)."""

    shown = (Metric.TRAIN_LOSS, Metric.TRAIN_TOP1, Metric.VAL_TOP1, "val/top5")

    def __init__(self) -> None:
        self._epoch_in_progress: int | None = None

    @rank_zero_only
    def _print(self, trainer: L.Trainer, epoch: int) -> None:
        metrics = trainer.callback_metrics
        values = "  ".join(f"{key} {float(metrics[key]):.4g}" for key in self.shown
                           if key in metrics)
        if values:  # counted from 1, as the reports count them
            print(f"epoch {epoch + 1}/{trainer.max_epochs}: {values}", flush=True)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._print(trainer, trainer.current_epoch - 1)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             *args: Any) -> None:
        self._epoch_in_progress = trainer.current_epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch_in_progress is not None:
            self._print(trainer, self._epoch_in_progress)
