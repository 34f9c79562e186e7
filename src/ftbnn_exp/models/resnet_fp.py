"""The full-precision ResNet reference (Table 3, last row; the distillation teacher):
torchvision's model."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models.layout import is_small_input
from ftbnn_exp.models.registry import register_family, register_variant

_LAYERS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
"""torchvision's ``resnet18`` / ``resnet34`` layouts."""


class ResNetFP(ResNet):
    """torchvision's ResNet with the ``forward_features`` / ``forward_head`` split of our
    families (same modules and state-dict keys as torchvision's)."""

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.avgpool(x).flatten(1))

    def _forward_impl(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_family("resnet_fp")
def resnet_fp(
    depth: int = 18, in_channels: int = 3, num_classes: int = 1000, image_size: int = 224
) -> ResNet:
    """torchvision's ResNet-18/34, untouched at ImageNet size. On small inputs its stem becomes a
    3×3/1 conv without max-pool (the usual CIFAR adaptation, as for our binary models)."""
    if depth not in _LAYERS:
        raise InvalidArgument(f"depth={depth} is not available for resnet_fp; allowed: 18, 34")
    model = ResNetFP(BasicBlock, _LAYERS[depth], num_classes=num_classes)
    if is_small_input(image_size) or in_channels != 3:
        stride, kernel = (1, 3) if is_small_input(image_size) else (2, 7)
        model.conv1 = nn.Conv2d(in_channels, 64, kernel, stride=stride, padding=kernel // 2,
                                bias=False)
    if is_small_input(image_size):
        model.maxpool = nn.Identity()
    return model


for _depth in _LAYERS:
    register_variant(f"resnet{_depth}_fp", "resnet_fp", depth=_depth)
