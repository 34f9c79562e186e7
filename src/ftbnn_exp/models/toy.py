"""The 2-layer MNIST models of Section 1 and Fig. 2: linear, binary, binary + PReLU, binary + ReLU.

An initial real-valued conv, two basic blocks as in Fig. 1(b) (sign → binary conv → BN → add
shortcut), optionally followed by a non-linear module, then the FC layer. The paper gives no
widths or strides; ours (documented defaults, all configurable in ``conf/model/fig2.yaml``):
16 channels, a stride-2 initial conv (14×14 blocks on MNIST: 20 trainings fit in minutes on a
laptop CPU), average pooling to 4×4, and a 2-D linear bottleneck before the FC so that the
plotted features are exactly what the classifier sees (no projection can distort them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.models.layout import FTBNN_PARTS, BinaryParts, binary_parts
from ftbnn_exp.models.registry import BINARY_PARTS, register_family
from ftbnn_exp.nn import DEFAULT_BOUND, binary_conv_bn, make_nonlinear_module

KINDS = ("linear", "binary", "prelu", "relu")
"""Fig. 2's four models."""
_MODULE = {"linear": "identity", "binary": "identity", "prelu": "prelu", "relu": "relu"}
"""The non-linear module after each block of each kind."""


class Fig2Block(nn.Module):
    """sign → 3×3 conv → BN → + x → non-linear module (Fig. 1b). The ``linear`` model keeps the
    real input and the real weights (no sign, plain conv)."""

    binary_pairs = (("conv", "bn"),)

    def __init__(self, channels: int, kind: str, parts: BinaryParts = FTBNN_PARTS) -> None:
        super().__init__()
        binary = kind != "linear"
        self.binarize = parts.input_quantizer(channels) if binary else nn.Identity()
        self.conv = (parts.conv_layer(channels, channels, 3, padding=1) if binary
                     else nn.Conv2d(channels, channels, 3, padding=1, bias=False))
        self.bn = nn.BatchNorm2d(channels)
        self.nonlinear = make_nonlinear_module(_MODULE[kind], channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlinear(binary_conv_bn(x, self.binarize, self.conv, self.bn) + x)


class Fig2Net(nn.Module):
    """Initial real conv → BN → two :class:`Fig2Block` → average pool to ``pooled_size``² →
    flatten → [bottleneck] → FC. Pooling to 4×4 rather than 1×1 keeps where strokes are, which
    digits need."""

    def __init__(self, kind: str, width: int = 16, bottleneck: int | None = 2,
                 in_channels: int = 1, num_classes: int = 10, stem_stride: int = 2,
                 pooled_size: int = 4, parts: BinaryParts = FTBNN_PARTS) -> None:
        super().__init__()
        if kind not in KINDS:
            raise InvalidArgument(f"model.kind={kind!r} is not allowed; allowed: "
                                  f"{', '.join(KINDS)}")
        self.kind = kind
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )
        self.blocks = nn.Sequential(Fig2Block(width, kind, parts), Fig2Block(width, kind, parts))
        self.pool = nn.AdaptiveAvgPool2d(pooled_size)
        features = width * pooled_size * pooled_size
        self.bottleneck = nn.Linear(features, bottleneck) if bottleneck else nn.Identity()
        self.fc = nn.Linear(bottleneck or features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.blocks(self.stem(x))

    def embed(self, features: Tensor) -> Tensor:
        return self.bottleneck(self.pool(features).flatten(1))

    def features(self, x: Tensor) -> Tensor:
        """What the FC layer sees (Fig. 2's plotted features)."""
        return self.embed(self.forward_features(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.embed(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _kind_label(kwargs: Mapping[str, Any], schedule_name: str) -> str:
    return str(kwargs.get("kind", "binary"))


@register_family("fig2_net", nonlinearity_label=_kind_label, parts=BINARY_PARTS)
def fig2_net(kind: str = "binary", width: int = 16, bottleneck: int | None = 2,
             in_channels: int = 1, num_classes: int = 10, stem_stride: int = 2,
             pooled_size: int = 4, bound: float = DEFAULT_BOUND, binarizer: str = "sign",
             scaling: str = "none", binarizer_options: dict[str, Any] | None = None,
             scaling_options: dict[str, Any] | None = None) -> Fig2Net:
    """Section 1's 2-layer model of ``kind`` (any input size: the pooling is adaptive), its
    binary blocks made of the registered parts ``binarizer`` and ``scaling``."""
    return Fig2Net(kind, width, bottleneck, in_channels, num_classes, stem_stride, pooled_size,
                   binary_parts(binarizer, scaling, bound, binarizer_options,
                                scaling_options))
