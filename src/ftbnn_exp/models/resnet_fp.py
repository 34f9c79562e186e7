"""The full-precision ResNet reference (Table 3, last row; the distillation teacher):
torchvision's model."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models.ftbnn import stage_widths
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


def narrow(model: ResNet, layers: list[int], width: int, num_classes: int) -> None:
    """Rebuilds ``model``'s stem, stages and FC at first-stage ``width`` (doubling per stage),
    initialised as torchvision's constructor does (Kaiming normal convs, BN 1/0)."""
    model.inplanes = width
    model.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    for stage, blocks in enumerate(layers):
        setattr(model, f"layer{stage + 1}", model._make_layer(
            BasicBlock, width * 2**stage, blocks, stride=1 if stage == 0 else 2))
    model.fc = nn.Linear(width * 2 ** (len(layers) - 1), num_classes)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@register_family("resnet_fp", parts={})
def resnet_fp(
    depth: int = 18, in_channels: int = 3, num_classes: int = 1000, image_size: int = 224,
    width: int = 64,
) -> ResNet:
    """torchvision's ResNet-18/34, untouched at ImageNet size. On small inputs its stem becomes a
    3×3/1 conv without max-pool (the usual CIFAR adaptation, as for our binary models).
    ``width`` other than 64 (the paper's) narrows every stage alike (a CPU study)."""
    if depth not in _LAYERS:
        raise InvalidArgument(f"depth={depth} is not available for resnet_fp; allowed: 18, 34")
    model = ResNetFP(BasicBlock, _LAYERS[depth], num_classes=num_classes)
    if width != 64:
        narrow(model, _LAYERS[depth], stage_widths(width)[0], num_classes)
    if is_small_input(image_size) or in_channels != 3:
        stride, kernel = (1, 3) if is_small_input(image_size) else (2, 7)
        model.conv1 = nn.Conv2d(in_channels, width, kernel, stride=stride, padding=kernel // 2,
                                bias=False)
    if is_small_input(image_size):
        model.maxpool = nn.Identity()
    return model


for _depth in _LAYERS:
    register_variant(f"resnet{_depth}_fp", "resnet_fp", depth=_depth)
