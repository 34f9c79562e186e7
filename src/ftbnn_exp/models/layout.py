"""Network layouts shared by the model families: blocks per stage and input-size rules."""

from __future__ import annotations

BLOCKS_PER_STAGE: dict[int, tuple[int, int, int, int]] = {
    18: (4, 4, 4, 4),
    34: (6, 8, 12, 6),
    44: (8, 10, 14, 10),
}
"""One binary 3×3 conv per block, so depth = binary blocks + stem + FC. 18 and 34 are
Bi-Real Net's layouts; 44 → [8, 10, 14, 10] is our reading of Table 4's 44-layer rows (the only
regular split of 42 blocks that fits both their params and FLOPs; the paper does not say)."""

SMALL_INPUT_MAX = 64
"""Inputs of at most this many pixels get a 3×3/1 stem without max-pool (our choice for
digits, MNIST and CIFAR, as is usual for ResNets on small images); larger ones get the
ImageNet stem."""


def blocks_per_stage(depth: int) -> tuple[int, int, int, int]:
    if depth not in BLOCKS_PER_STAGE:
        allowed = ", ".join(str(d) for d in BLOCKS_PER_STAGE)
        raise ValueError(f"depth={depth} is not available; allowed: {allowed}")
    return BLOCKS_PER_STAGE[depth]


def is_small_input(image_size: int) -> bool:
    return image_size <= SMALL_INPUT_MAX
