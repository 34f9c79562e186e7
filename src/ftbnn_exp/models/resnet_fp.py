"""The full-precision ResNet reference (Table 3, last row): torchvision's model."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18, resnet34
from torchvision.models.resnet import ResNet

from ftbnn_exp.models.layout import is_small_input

_TORCHVISION = {18: resnet18, 34: resnet34}


def resnet_fp(
    depth: int = 18, in_channels: int = 3, num_classes: int = 1000, image_size: int = 224
) -> ResNet:
    """torchvision's ResNet-18/34, untouched at ImageNet size. On small inputs its stem becomes a
    3×3/1 conv without max-pool (the usual CIFAR adaptation, as for our binary models)."""
    if depth not in _TORCHVISION:
        raise ValueError(f"depth={depth} is not available for resnet_fp; allowed: 18, 34")
    model = _TORCHVISION[depth](weights=None, num_classes=num_classes)
    if is_small_input(image_size) or in_channels != 3:
        stride, kernel = (1, 3) if is_small_input(image_size) else (2, 7)
        model.conv1 = nn.Conv2d(in_channels, 64, kernel, stride=stride, padding=kernel // 2,
                                bias=False)
    if is_small_input(image_size):
        model.maxpool = nn.Identity()
    return model
