"""Explicit scaling of a binary conv's output: the Γ of Eq. 1 that FTBNN drops (§2.1).

Each is a registered ``scaling`` part (:mod:`.parts`), a binary conv that reweights its own
output, so a block takes it as its ``conv_layer``:

- ``xnor``: XNOR-Net's analytic factors (Rastegari et al. 2016, §3.2): ``α = ‖W‖₁ / n`` per
  output channel and ``K = A ∗ k``, the mean of ``|x|`` over channels box-filtered by the
  kernel's window, from the block's real-valued input;
- ``xnorpp``: XNOR-Net++'s learned Γ (Bulat & Tzimiropoulos 2019, Eq. 6);
- ``gated``: Real-to-Bin's data-driven gating (Martinez et al. 2020, §4.2): ``σ(W₂ ReLU(W₁
  pool(x)))`` per sample and channel, from the block's real-valued input;
- ``libra``: IR-Net's Libra-PB weights and bit-shift scale (Qin et al. 2020, §3.1).

Bi-Real Net's ``α = mean|W|`` alone is :class:`~ftbnn_exp.nn.ScaledBinaryConv2d`
(``channel_mean``). The scale multiplies the conv output before the block's BN (FTBNN's order
conv → BN; the papers scale the conv output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ftbnn_exp.nn.binarize import sign_ste
from ftbnn_exp.nn.conv import BinaryConv2d
from ftbnn_exp.nn.parts import register_part


def _k_map_flops(module: XNORConv2d, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    """K's cost per image: |x| summed over channels (C·H·W), the k×k box filter on the
    one-channel map (H'·W'·k²), and the product of the output with K and α (2·O·H'·W')."""
    real = inputs[1]
    height, width = output.shape[2:]
    kernel = module.kernel_size[0] * module.kernel_size[1]
    return real[0].numel() + height * width * kernel + 2 * output[0].numel()


@register_part("scaling", "xnor", label="XNOR-Net α and K", table1=("Scaling",),
               real_input=True, flops=_k_map_flops)
class XNORConv2d(BinaryConv2d):
    """``(sign(x) ⊛ sign(W)) ⊙ K α`` (XNOR-Net, Eq. 11). ``α = mean|W|`` per output channel with
    its gradient (the paper's derivative of ``α·sign(W)`` includes the ``1/n`` term, §3.2);
    ``K`` from the real input, without gradient (``k_gradient=True``: with it; the paper does
    not back-propagate through K). No fused deploy form: K depends on each input."""

    def __init__(self, *args, k_gradient: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.k_gradient = k_gradient

    def k_map(self, real: Tensor) -> Tensor:
        """``K = A ∗ k``: mean |x| over channels, averaged over each output's window."""
        magnitude = real.abs().mean(dim=1, keepdim=True)
        k = F.avg_pool2d(magnitude, self.kernel_size, self.stride, self.padding,
                         count_include_pad=True)
        return k if self.k_gradient else k.detach()

    def forward(self, x: Tensor, real: Tensor) -> Tensor:
        alpha = self.weight.abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
        return super().forward(x) * alpha * self.k_map(real)


@register_part("scaling", "xnorpp", label="XNOR-Net++ learned Γ", table1=("Scaling",),
               fused=lambda conv: conv.gamma.detach().flatten())
class XNORPPConv2d(BinaryConv2d):
    """``(sign(x) ⊛ sign(W)) ⊙ Γ`` with Γ learned by back-propagation (XNOR-Net++, Eq. 6).
    Ours is the paper's per-output-channel case ``Γ = α ∈ R^O`` (its Eq. 8 factorises Γ further
    into α ⊗ β ⊗ γ over the output's height and width, which a conv does not know when it is
    built), initialised to 1 as larq-zoo's rescale layer; a per-channel Γ folds into the
    deploy output step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gamma = nn.Parameter(torch.ones(1, self.out_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * self.gamma


def _gate_flops(module: GatedBinaryConv2d, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    """Beyond its two FCs (counted as layers): the pooling of the real input (C·H·W) and the
    product of the output with the gate (O·H'·W')."""
    return inputs[1][0].numel() + output[0].numel()


@register_part("scaling", "gated", label="Real-to-Bin gating", table1=("Scaling",),
               real_input=True, flops=_gate_flops)
class GatedBinaryConv2d(BinaryConv2d):
    """``(sign(x) ⊛ sign(W)) ⊙ σ(W₂ ReLU(W₁ pool(x)))``: Real-to-Bin's data-driven channel
    re-scaling (§4.2, Fig. 2) from the block's real-valued input. As its published code
    (larq-zoo): reduction ``r = 8``, no biases, He-normal initialisation. The two FCs are
    children, so the complexity counter counts them as the real layers they are. No fused
    deploy form: the scale depends on each input."""

    def __init__(self, *args, reduction: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        hidden = max(1, self.in_channels // reduction)
        self.squeeze = nn.Linear(self.in_channels, hidden, bias=False)
        self.expand = nn.Linear(hidden, self.out_channels, bias=False)
        for layer in (self.squeeze, self.expand):
            nn.init.kaiming_normal_(layer.weight)

    def gate(self, real: Tensor) -> Tensor:
        pooled = real.mean(dim=(2, 3))
        return torch.sigmoid(self.expand(F.relu(self.squeeze(pooled))))[:, :, None, None]

    def forward(self, x: Tensor, real: Tensor) -> Tensor:
        return super().forward(x) * self.gate(real)


def _balanced(weight: Tensor) -> Tensor:
    """Libra-PB's balanced, standardised weights: zero mean, unit std per output channel."""
    centred = weight - weight.mean(dim=(1, 2, 3), keepdim=True)
    return centred / centred.std(dim=(1, 2, 3), keepdim=True)


@register_part("scaling", "libra", label="IR-Net Libra-PB", table1=("Scaling",),
               fused=lambda conv: conv.shift_scale().flatten())
class LibraBinaryConv2d(BinaryConv2d):
    """IR-Net's Libra Parameter Binarization (Qin et al. 2020, Eq. 6-8): the weights are
    balanced and standardised per output channel before the sign, so that the binary weights
    carry the most information, and the output is scaled by ``2^round(log2 mean|Ŵ|)`` (a bit
    shift, no gradient, as IR-Net's code). The sign's gradient is our clipped STE (IR-Net's
    code uses its EDE for the weights as well; ``binarizer=ede`` gives it to the activations)."""

    def shift_scale(self) -> Tensor:
        magnitude = _balanced(self.weight).abs().mean(dim=(1, 2, 3), keepdim=True)
        return torch.pow(2.0, torch.round(torch.log2(magnitude))).detach()

    def binary_weight(self) -> Tensor:
        if self.weight_mode == "real":
            return self.weight
        return sign_ste(_balanced(self.weight), self.bound) * self.shift_scale()
