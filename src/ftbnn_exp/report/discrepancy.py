"""Feature discrepancy of binary convolutions (Fig. 2 caption).

For each block with a ``binarize`` → ``conv`` pair: the conv's output ``y_b`` against
``y_r = conv2d(x, W)``, the same convolution on the block's real-valued input ``x`` with the
latent (proxy) weights ``W``. For a real-valued conv with no binarizer the two coincide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader


@dataclass(frozen=True)
class Discrepancy:
    layer: str
    mean_abs: float
    """Mean |y_b − y_r| over every output element of the data set."""
    relative: float
    """‖y_b − y_r‖ / ‖y_r‖ per image, averaged over the data set."""


def _pairs(model: nn.Module) -> list[tuple[str, nn.Module, nn.Conv2d]]:
    return [(name, module.binarize, module.conv) for name, module in model.named_modules()
            if hasattr(module, "binarize") and isinstance(getattr(module, "conv", None),
                                                          nn.Conv2d)]


@torch.no_grad()
def feature_discrepancy(model: nn.Module, loader: DataLoader) -> list[Discrepancy]:
    """One :class:`Discrepancy` per binarize → conv pair of ``model``, in eval mode."""
    pairs = _pairs(model)
    sums = {name: [0.0, 0.0, 0, 0] for name, _, _ in pairs}  # |Δ| sum, rel sum, elems, images
    inputs: dict[str, Tensor] = {}
    handles = []
    for name, binarize, conv in pairs:
        def keep(module: nn.Module, args: tuple, name: str = name) -> None:
            inputs[name] = args[0]

        def compare(module: nn.Conv2d, args: tuple, y_b: Tensor, name: str = name) -> None:
            y_r = F.conv2d(inputs[name], module.weight, None, module.stride, module.padding,
                           module.dilation, module.groups)
            delta = (y_b - y_r).flatten(1)
            total = sums[name]
            total[0] += delta.abs().sum().item()
            total[1] += (delta.norm(dim=1) / y_r.flatten(1).norm(dim=1)).sum().item()
            total[2] += delta.numel()
            total[3] += delta.shape[0]

        handles += [binarize.register_forward_pre_hook(keep),
                    conv.register_forward_hook(compare)]
    was_training = model.training
    model.eval()
    try:
        for images, _ in loader:
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [Discrepancy(name, s[0] / s[2], s[1] / s[3]) for name, s in sums.items()]
