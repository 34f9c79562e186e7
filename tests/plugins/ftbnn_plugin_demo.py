"""A plug-in as a researcher writes one, outside the package: a placement and a model variant.

Used with ``hydra.searchpath=[file://<this folder>/conf] plugins=[ftbnn_plugin_demo]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ftbnn_exp.models import register_family
from ftbnn_exp.models.ftbnn import FTBNN
from ftbnn_exp.nn import BlockPosition, NonLinearitySchedule, register_placement


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
