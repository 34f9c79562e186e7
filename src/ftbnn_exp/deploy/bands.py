"""Real-valued layers split into bands of output rows, so that they can run on the kernels'
own thread pool beside the binary convs (issue 37: one thread system for the whole network).

A band of a layer sequence (a stem: conv → BN → max-pool; a shortcut: avg-pool → 1×1 conv →
BN) is the same sequence run on the input rows that band's outputs read. Each windowed layer
(conv, max- or average-pool) keeps its own padding: the band's input starts at the image's
first row, where that padding is the image's, or at a row whose outputs that would read the
band's false padding are dropped (the band reads enough rows above them). So every output row
is computed from the same values by the same operator as in the whole call; whether its bits
are the same (an operator may pick another algorithm for fewer rows) the runner checks on
each shape's first call (:class:`ftbnn_exp.deploy.fast.ExactPart`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
POINTWISE = (nn.BatchNorm2d, nn.Identity, nn.ReLU)
"""Layers that read one pixel of their input per output pixel (a registered non-linear
module with a fused form is one too: its steps are per channel)."""


@dataclass(frozen=True)
class Reach:
    """How a layer's output rows read its input rows: ``kernel`` rows from ``stride · r −
    padding`` (1, 1, 0 for a per-pixel layer)."""

    kernel: int = 1
    stride: int = 1
    padding: int = 0
    ceil_mode: bool = False

    def out_rows(self, rows: int) -> int:
        """The layer's output height for ``rows`` input rows (PyTorch's formula)."""
        span = rows + 2 * self.padding - self.kernel
        out = (span + (self.stride - 1 if self.ceil_mode else 0)) // self.stride + 1
        if self.ceil_mode and (out - 1) * self.stride >= rows + self.padding:
            out -= 1
        return out

    def needs(self, first: int, end: int, rows: int) -> tuple[int, int]:
        """The input rows ``[a, b)`` that output rows ``[first, end)`` read, within the image
        (``rows`` high); ``a`` a multiple of the stride, so that the band's outputs fall on
        the whole call's."""
        a = max(0, first * self.stride - self.padding)
        b = min(rows, (end - 1) * self.stride - self.padding + self.kernel)
        return a - a % self.stride, b


def _pair_first(value: int | Sequence[int]) -> int:
    return value if isinstance(value, int) else value[0]


def reach(layer: nn.Module) -> Reach | None:
    """``layer``'s :class:`Reach` along rows, or None: it cannot be banded (dilated, padding
    by name, a module of unknown reach)."""
    from ftbnn_exp.nn.parts import part_of

    if isinstance(layer, WINDOWED):
        padding = layer.padding
        if isinstance(padding, str) or _pair_first(getattr(layer, "dilation", 1)) != 1:
            return None
        stride = _pair_first(layer.stride or layer.kernel_size)
        return Reach(_pair_first(layer.kernel_size), stride, _pair_first(padding),
                     bool(getattr(layer, "ceil_mode", False)))
    entry = part_of(layer)
    if isinstance(layer, POINTWISE) or (entry is not None and entry.fused is not None):
        return Reach()
    return None


class RowBands:
    """A sequence of layers run on a band of its output rows (module docstring); built only
    for sequences whose every layer has a :class:`Reach` (:meth:`of`)."""

    def __init__(self, layers: Sequence[nn.Module], reaches: Sequence[Reach]) -> None:
        self.layers, self.reaches = list(layers), list(reaches)

    @classmethod
    def of(cls, layers: nn.Module) -> RowBands | None:
        """Bands of ``layers`` (an ``nn.Sequential``), or None where some layer has none."""
        if not isinstance(layers, nn.Sequential):
            return None
        reaches = [reach(layer) for layer in layers]
        if any(r is None for r in reaches):
            return None
        return cls(list(layers), reaches)

    def heights(self, rows: int) -> list[int]:
        """Each layer's input height, then the output's, for an input ``rows`` high."""
        heights = [rows]
        for r in self.reaches:
            heights.append(r.out_rows(heights[-1]))
        return heights

    def written(self, shape: Sequence[int]) -> int:
        """Values the layers write for an input of NCHW ``shape``, every layer's output
        counted (widths taken to follow the rows' reach: square windows): how much work a
        band of it is, against its fixed cost (a task, a few operator calls)."""
        batch, channels, rows, cols = shape
        total = 0
        for layer, r in zip(self.layers, self.reaches, strict=True):
            channels = getattr(layer, "out_channels", channels)
            rows, cols = r.out_rows(rows), r.out_rows(cols)
            total += batch * channels * rows * cols
        return total

    def split(self, rows: int, bands: int) -> list[tuple[int, int]]:
        """``bands`` consecutive ranges of output rows as even as rows allow (none empty)."""
        out = self.heights(rows)[-1]
        bands = max(1, min(bands, out))
        edges = [out * i // bands for i in range(bands + 1)]
        return list(itertools.pairwise(edges))

    def run(self, x: Tensor, first: int, end: int) -> Tensor:
        """Output rows ``[first, end)`` of the whole sequence on ``x`` (NCHW shape, any
        memory layout)."""
        heights = self.heights(x.shape[2])
        ranges = [(first, end)]
        for r, rows in zip(reversed(self.reaches), reversed(heights[:-1]), strict=True):
            ranges.append(r.needs(*ranges[-1], rows))
        ranges.reverse()  # ranges[i]: the rows of layer i's input this band needs
        a, b = ranges[0]
        y = x[:, :, a:b]
        for layer, r, (want, want_end) in zip(self.layers, self.reaches, ranges[1:],
                                               strict=True):
            y = layer(y)
            start = want - a // r.stride  # the band's output row j is the whole's j + a/s
            y = y[:, :, start:start + want_end - want]
            a = want
        return y

    def banded(self, x: Tensor, bands: int) -> Tensor:
        """The whole output assembled from ``bands`` bands run one after another (the
        reference for what the pool runs in parallel)."""
        return torch.cat([self.run(x, *band) for band in self.split(x.shape[2], bands)], dim=2)
