"""A plug-in as a researcher writes one, outside the package: a placement, a model variant, an
activation binarizer with a learned threshold, a non-linear module without a fused deploy form,
and a callback (here one that interrupts a run as a cluster would).

Used with ``hydra.searchpath=[file://<this folder>/conf] plugins=[ftbnn_plugin_demo]``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from ftbnn_exp.models import register_family
from ftbnn_exp.models.ftbnn import FTBNN
from ftbnn_exp.nn import (
    DEFAULT_BOUND,
    BinaryActivation,
    BlockPosition,
    FusedBinarizer,
    NonLinearitySchedule,
    register_part,
    register_placement,
    sign_ste,
)


@register_placement("first_of_stage")
def first_of_stage(position: BlockPosition) -> bool:
    """The emphasised module after the first block of each stage instead of the last."""
    return position.index_in_stage == 0


@register_family("ftbnn_narrow", takes_schedule=True)
def ftbnn_narrow(schedule: NonLinearitySchedule, blocks: int = 1, width: int = 16,
                 in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
                 stage_blocks: Sequence[int] | None = None) -> FTBNN:
    """The FTBNN skeleton with ``blocks`` blocks per stage and widths w, 2w, 4w, 8w."""
    return FTBNN(stage_blocks or [blocks] * 4, schedule, [width * 2**i for i in range(4)],
                 in_channels, num_classes, image_size)


@register_part("binarizer", "shifted_sign", label="sign(x − t)", table1=("GA",),
               fused=lambda m: FusedBinarizer(m.threshold.detach().flatten()))
class ShiftedSign(BinaryActivation):
    """``sign(x − t)``, a threshold ``t`` per channel from ``init``, the clipped STE."""

    def __init__(self, channels: int = 0, bound: float = DEFAULT_BOUND, init: float = 0.0
                 ) -> None:
        super().__init__(channels, bound)
        self.threshold = nn.Parameter(torch.full((1, channels, 1, 1), init))

    def binarize(self, x: Tensor) -> Tensor:  # tanh in multi-step stage 0: the base class's
        return sign_ste(x - self.threshold, self.bound)


@register_part("nonlinear", "half_leaky", label="½-leaky", make=lambda channels: HalfLeaky())
class HalfLeaky(nn.Module):
    """``max(x, x/2)``: registered without a fused form, so the export refuses it."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.maximum(x, x / 2)


class SigtermAt(L.Callback):
    """Sends this process SIGTERM after batch ``batch`` of epoch ``epoch`` (what SLURM's
    preemption does), once: ``marker`` remembers it across the rerun."""

    def __init__(self, epoch: int, batch: int, marker: str, signal_name: str = "SIGTERM"
                 ) -> None:
        self.epoch, self.batch, self.marker = epoch, batch, Path(marker)
        self.signal = getattr(signal, signal_name)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if (trainer.current_epoch, args[-1]) == (self.epoch, self.batch) and \
                not self.marker.exists():
            self.marker.write_text("sent\n")
            os.kill(os.getpid(), self.signal)
