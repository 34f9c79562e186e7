"""Binary convolution with bit operations (Appendix B), in plain PyTorch integer ops.

A correctness reference, not a fast path. Signs are packed into int64 words along the
``C_in/groups × k × k`` axis. One formula covers every input kind exactly:

    out = popcount(v) − 2 · popcount(v ∧ (x ⊕ w))

with ``x`` = [input > 0], ``w`` = [weight > 0] and ``v`` = [input ≠ 0 ∧ weight ≠ 0]. For
bipolar inputs and no padding ``v`` is all ones and this is Eq. 3 back-transformed,
``K − 2·popcount(x xnor̸ w)``. For inputs in {0, 1} (after a ReLU) ``x = v`` and it is Eq. 6:
``popcount(x ∧ w) − popcount(x ∧ ¬w)``, since ``v ∧ (x ⊕ w) = x ∧ ¬w`` and
``popcount(v) = popcount(x ∧ w) + popcount(x ∧ ¬w)``. Zero padding and ``torch.sign(0) = 0``
are zeros of ``v``, so they contribute nothing, as in ``F.conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WORD = 64
_BIT = torch.ones(WORD, dtype=torch.int64) << torch.arange(WORD, dtype=torch.int64)


def pack(bits: Tensor) -> Tensor:
    """Booleans ``[..., K]`` → int64 words ``[..., ceil(K / 64)]``, bit ``i`` of word ``j``
    holding element ``64·j + i`` (the tail is zero)."""
    k = bits.shape[-1]
    words = -(-k // WORD)
    padded = F.pad(bits.to(torch.int64), (0, words * WORD - k))
    # Distinct powers of two: the wrapping int64 sum is their bitwise OR.
    return (padded.view(*bits.shape[:-1], words, WORD) * _BIT).sum(dim=-1)


def unpack(words: Tensor, k: int) -> Tensor:
    """Inverse of :func:`pack`: int64 words → booleans ``[..., k]``."""
    bits = (words.unsqueeze(-1) & _BIT) != 0
    return bits.flatten(-2)[..., :k]


def popcount(words: Tensor) -> Tensor:
    """Set bits per int64 word (SWAR bit counting). Right shifts of int64 are arithmetic; every
    mask below clears the copied sign bits, and wrapping arithmetic is that of uint64."""
    x = words - ((words >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    return (x * 0x0101010101010101) >> 56


def pack_weights(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(sign words, non-zero words)`` of a conv weight ``[O, C/g, k, k]``, packed along
    ``C/g·k·k`` (the order of ``F.unfold``)."""
    flat = weight.flatten(1)
    return pack(flat > 0), pack(flat != 0)


def binary_conv2d(x: Tensor, weight_signs: Tensor, weight_nonzero: Tensor, kernel_size: int,
                  stride: int = 1, padding: int = 0, groups: int = 1,
                  chunk: int = 1024) -> Tensor:
    """``F.conv2d(x, sign(W))`` for ``x`` with values in {-1, 0, +1}, as int32, by popcounts.

    ``weight_signs`` / ``weight_nonzero``: :func:`pack_weights` of ``W`` ([O, words]).
    """
    n, channels, height, width = x.shape
    out_channels = weight_signs.shape[0]
    k = channels // groups * kernel_size * kernel_size
    columns = F.unfold(x, kernel_size, padding=padding, stride=stride)  # [N, C·k·k, L]
    out_h = (height + 2 * padding - kernel_size) // stride + 1
    out_w = (width + 2 * padding - kernel_size) // stride + 1
    per_group = out_channels // groups
    result = torch.empty(n, out_channels, columns.shape[-1], dtype=torch.int32)
    for g in range(groups):
        block = columns[:, g * k:(g + 1) * k].transpose(1, 2)  # [N, L, K]
        signs, nonzero = pack(block > 0), pack(block != 0)  # [N, L, words]
        w_signs = weight_signs[g * per_group:(g + 1) * per_group]
        w_nonzero = weight_nonzero[g * per_group:(g + 1) * per_group]
        for start in range(0, block.shape[1], chunk):
            s = signs[:, start:start + chunk, None]  # [N, l, 1, words]
            v = nonzero[:, start:start + chunk, None] & w_nonzero  # [N, l, O_g, words]
            disagree = v & (s ^ w_signs)
            value = popcount(v).sum(-1) - 2 * popcount(disagree).sum(-1)  # [N, l, O_g]
            result[:, g * per_group:(g + 1) * per_group, start:start + chunk] = (
                value.transpose(1, 2).to(torch.int32))
    return result.view(n, out_channels, out_h, out_w)


def xnor_popcount(x_bits: Tensor, w_bits: Tensor) -> Tensor:
    """Appendix B's Eq. 3 as the paper writes it: ``popcount(x xnor w)`` over the last axis of
    booleans, with F (0) standing for -1; no back-transformation."""
    return (x_bits == w_bits).sum(dim=-1)
