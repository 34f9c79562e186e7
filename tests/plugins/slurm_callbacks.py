"""Callbacks that put a SLURM job into a known state for tests/test_slurm.py, given on the
command line as ``+callbacks.<name>={_target_: slurm_callbacks.<Class>, ...}``."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L


class PauseAt(L.Callback):
    """Holds the run after batch ``batch`` of epoch ``epoch`` (once: ``marker`` says it
    happened, and where the test waits for it) until SIGTERM arrives or ``seconds`` pass, so
    that the test can preempt the job there, or its time limit ends it there. Training itself is
    not touched: the run's numbers are those of a run without this callback."""

    def __init__(self, epoch: int, batch: int, marker: str, seconds: float = 300) -> None:
        self.epoch, self.batch, self.marker, self.seconds = epoch, batch, Path(marker), seconds

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if (trainer.current_epoch, args[-1]) != (self.epoch, self.batch) or self.marker.exists():
            return
        self.marker.write_text("paused\n")
        end = time.monotonic() + self.seconds
        while time.monotonic() < end and not trainer.received_sigterm:
            time.sleep(0.1)


class FailAt(L.Callback):
    """Raises after batch ``batch`` of epoch ``epoch``: a job that crashes mid-training."""

    def __init__(self, epoch: int = 0, batch: int = 0) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if (trainer.current_epoch, args[-1]) == (self.epoch, self.batch):
            raise RuntimeError(f"failing on purpose after batch {self.batch} of epoch {self.epoch}")
