"""Binary convolutions: FTBNN's scale-free one (§2.1) and Bi-Real Net's scaled one (Fig. 1a)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn.binarize import ACTIVATION_MODES, DEFAULT_BOUND, BinaryActivation, sign_ste
from ftbnn_exp.nn.parts import register_part


@register_part("scaling", "none", label="none (absorbed into BN)", lean_exact=True,
               fused=lambda conv: None)
class BinaryConv2d(nn.Conv2d):
    """Convolution with real latent weights binarized by the clipped STE in forward.

    No scaling factor: FTBNN absorbs it into the following BN (§2.1). Initialised with
    ``xavier_normal_(gain=2.0)`` and no bias, as Appendix E's ``BConv``. The input is expected to
    be binarized already (see :class:`~ftbnn_exp.nn.binarize.BinaryActivation`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        groups: int = 1,
        bound: float = DEFAULT_BOUND,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            groups=groups, bias=False,
        )
        self.bound = bound
        # Training through nn.lean.BinaryConvBN (same gradients, less memory); off for ablations
        # of the memory saving itself.
        self.lean_backward = True
        # "sign": binary weights; "real": the latent weights as they are (multi-step stages 0
        # and 1, Appendix C).
        self.weight_mode = "sign"

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.weight, gain=2.0)

    def binary_weight(self) -> Tensor:
        if self.weight_mode == "real":
            return self.weight
        return sign_ste(self.weight, self.bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.binary_weight(), None, self.stride, self.padding, self.dilation,
                        self.groups)


@register_part("scaling", "channel_mean", label="α = mean|W| per channel", table1=("Scaling",),
               fused=lambda conv: conv.channel_scale().detach().flatten())
class ScaledBinaryConv2d(BinaryConv2d):
    """Bi-Real Net's binary convolution: weights ``α · sign(W)``, ``α`` the mean ``|W|`` of each
    output channel (Liu et al., 2018; Fig. 1a here): XNOR-Net's analytic weight factor
    (Rastegari et al. 2016, Eq. 4) without its activation factor K.

    As Bi-Real Net's reference code (``scaling_factor.detach()``, then the clipped STE on the
    latent weights), ``α`` passes no gradient and the latent weights get the STE gradient of
    ``α · sign(W)`` unscaled. ``scale_gradient=True`` back-propagates through ``α`` instead
    (ours before 0.2: the output of a sign conv times a differentiable ``α``).
    """

    def __init__(self, *args, scale_gradient: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scale_gradient = scale_gradient

    def channel_scale(self) -> Tensor:
        return self.weight.abs().mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)

    def binary_weight(self) -> Tensor:
        if self.scale_gradient:
            return super().binary_weight() * self.channel_scale()
        signs = super().binary_weight()
        # forward exactly α · sign(W); backward the STE's gradient, neither scaled nor into α
        return (self.channel_scale() * signs).detach() + (signs - signs.detach())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale_gradient={self.scale_gradient}"


WEIGHT_MODES = ("sign", "real")


def set_binarization(model: nn.Module, activations: str, weights: str) -> None:
    """Switch every binarizer to ``activations`` (sign | tanh) and every binary conv's weights to
    ``weights`` (sign | real): the per-stage setting of multi-step training (Appendix C)."""
    if activations not in ACTIVATION_MODES or weights not in WEIGHT_MODES:
        raise InvalidArgument(f"binarization ({activations}, {weights}) is unknown; allowed: "
                         f"activations {', '.join(ACTIVATION_MODES)}, weights "
                         f"{', '.join(WEIGHT_MODES)}")
    for module in model.modules():
        if isinstance(module, BinaryActivation):
            module.mode = activations
        elif isinstance(module, BinaryConv2d):
            module.weight_mode = weights


def binary_weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The latent weights of every binary convolution (they get no weight decay, §3)."""
    return [m.weight for m in model.modules() if isinstance(m, BinaryConv2d)]


__all__ = [
    "WEIGHT_MODES",
    "BinaryConv2d",
    "ScaledBinaryConv2d",
    "binary_weight_parameters",
    "set_binarization",
]
