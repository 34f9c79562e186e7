"""Explicit scaling of a binary conv's output: the Γ of Eq. 1 that FTBNN drops (§2.1).

Each is a registered ``scaling`` part (:mod:`.parts`), a binary conv that reweights its own
output, so a block takes it as its ``conv_layer``:

- ``xnor``: XNOR-Net's analytic factors (Rastegari et al. 2016, §3.2): ``α = ‖W‖₁ / n`` per
  output channel and ``K = A ∗ k``, the mean of ``|x|`` over channels box-filtered by the
  kernel's window, from the block's real-valued input;
- ``xnorpp``: XNOR-Net++'s learned Γ = α ⊗ β ⊗ γ (Bulat & Tzimiropoulos 2019, Eq. 6, 8);
- ``gated``: Real-to-Bin's data-driven gating (Martinez et al. 2020, §4.2): ``σ(W₂ ReLU(W₁
  pool(x)))`` per sample and channel, from the block's real-valued input;
- ``libra``: IR-Net's Libra-PB weights and bit-shift scale (Qin et al. 2020, §3.1).

Bi-Real Net's ``α = mean|W|`` alone is :class:`~ftbnn_exp.nn.ScaledBinaryConv2d`
(``channel_mean``). The scale multiplies the conv output: before the block's BN in FTBNN's
order (conv → BN), where BN cancels any per-channel factor, or straight into the block's sum
in the blocks that normalise first (``model.block=real2bin``, Real-to-Bin's order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn.binarize import sign_ste
from ftbnn_exp.nn.binarizers import T_MAX, T_MIN, EDEFunction, ede_schedule
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
    ``K`` from the real input, without gradient by default (the paper is silent on K's
    gradient and its released code has no K; ``k_gradient=True`` back-propagates through it).
    No fused deploy form: K depends on each input."""

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


XNORPP_FACTORS = ("channel", "height", "width")
"""XNOR-Net++'s Γ = α ⊗ β ⊗ γ (Eq. 8): one learned factor per output channel, row and column."""


def _xnorpp_fused(conv: XNORPPConv2d) -> Tensor:
    """Γ as a per-channel scale of the deploy output step; a one-line refusal while a height
    or width factor is not all ones (a spatial scale has no per-channel form)."""
    for name in ("gamma_h", "gamma_w"):
        factor = getattr(conv, name)
        if factor is not None and not bool((factor == 1).all()):
            raise InvalidArgument(f"XNOR-Net++'s {name} scales rows or columns of the output, "
                                  "which the fused output step (one scale per channel) cannot")
    return conv.gamma.detach().flatten() if conv.gamma is not None else None


@register_part("scaling", "xnorpp", label="XNOR-Net++ learned Γ", table1=("Scaling",),
               spatial=True, fused=_xnorpp_fused)
class XNORPPConv2d(BinaryConv2d):
    """``(sign(x) ⊛ sign(W)) ⊙ Γ`` with Γ learned by back-propagation (XNOR-Net++, Eq. 6),
    factorised as ``Γ = α ⊗ β ⊗ γ`` over output channels, rows and columns (Eq. 8, the form
    of its 57.1 % ResNet-18; larq-zoo's ``LearnedRescaleLayer``: ``scale_h * scale_w *
    scale_c``), each initialised to 1.

    On FTBNN's ``conv → BN`` block the BN cancels any per-channel scale before it (its output
    does not change, its gradient is ~0), so the channel factor alone would train the
    scale-free network; the row and column factors are what BN cannot absorb. ``factors``
    picks which are learned (``[channel]``: the per-channel case, for a block whose BN
    comes before the conv, or a family that cannot say the output size). ``output_size`` is
    the conv's output (H, W), given by the model (the part's ``spatial`` trait)."""

    def __init__(self, *args, factors: tuple[str, ...] | list[str] = XNORPP_FACTORS,
                 output_size: tuple[int, int] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.factors = tuple(factors)
        unknown = [f for f in self.factors if f not in XNORPP_FACTORS]
        if unknown or not self.factors:
            raise InvalidArgument(f"model.scaling_options.factors={list(self.factors)}; allowed: "
                                  f"a non-empty list of {', '.join(XNORPP_FACTORS)}")
        spatial = {"height", "width"} & set(self.factors)
        if spatial and output_size is None:
            raise InvalidArgument("model.scaling=xnorpp learns factors over the output's height "
                                  "and width, and this model does not give its convs' output "
                                  "size; use model.scaling_options={factors: [channel]}")
        height, width = output_size or (1, 1)
        self.gamma = self._factor("channel", (1, self.out_channels, 1, 1))
        self.gamma_h = self._factor("height", (1, 1, height, 1))
        self.gamma_w = self._factor("width", (1, 1, 1, width))
        self._register_load_state_dict_pre_hook(_ones_for_missing_factors, with_module=True)

    def _factor(self, name: str, shape: tuple[int, ...]) -> nn.Parameter | None:
        return nn.Parameter(torch.ones(shape)) if name in self.factors else None

    def scale(self) -> Tensor:
        """Γ, broadcast over (N, O, H, W)."""
        factors = [f for f in (self.gamma, self.gamma_h, self.gamma_w) if f is not None]
        out = factors[0]
        for factor in factors[1:]:
            out = out * factor
        return out

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * self.scale()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factors={list(self.factors)}"


def _ones_for_missing_factors(module: XNORPPConv2d, state_dict: dict, prefix: str,
                              *args: object) -> None:
    """A checkpoint from before Γ was factorised holds the channel factor only: its row and
    column factors were 1, so loading them as ones gives that model exactly."""
    if prefix + "gamma" in state_dict:
        for name in ("gamma_h", "gamma_w"):
            factor = getattr(module, name)
            if factor is not None and prefix + name not in state_dict:
                state_dict[prefix + name] = torch.ones_like(factor)


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


WEIGHT_ESTIMATORS = ("ede", "ste")


@register_part("scaling", "libra", label="IR-Net Libra-PB", table1=("Scaling",), progress=True,
               fused=lambda conv: conv.shift_scale().flatten())
class LibraBinaryConv2d(BinaryConv2d):
    """IR-Net's Libra Parameter Binarization (Qin et al. 2020, Eq. 6-8): the weights are
    balanced and standardised per output channel before the sign, so that the binary weights
    carry the most information, and the output is scaled by ``2^round(log2 mean|Ŵ|)`` (a bit
    shift, no gradient, as IR-Net's code).

    The weights' sign back-propagates IR-Net's EDE (§3.2; its code applies the same
    ``k·tanh(t·x)`` schedule to weights and activations), following training ``progress``
    like :class:`~ftbnn_exp.nn.binarizers.EDE`; ``weight_estimator="ste"`` gives FTBNN's
    clipped STE instead."""

    def __init__(self, *args, weight_estimator: str = "ede", t_min: float = T_MIN,
                 t_max: float = T_MAX, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if weight_estimator not in WEIGHT_ESTIMATORS:
            raise InvalidArgument(f"model.scaling_options.weight_estimator={weight_estimator!r}; "
                                  f"allowed: {', '.join(WEIGHT_ESTIMATORS)}")
        self.weight_estimator, self.t_min, self.t_max = weight_estimator, t_min, t_max
        self.progress = 0.0

    def shift_scale(self) -> Tensor:
        magnitude = _balanced(self.weight).abs().mean(dim=(1, 2, 3), keepdim=True)
        return torch.pow(2.0, torch.round(torch.log2(magnitude))).detach()

    def binary_weight(self) -> Tensor:
        if self.weight_mode == "real":
            return self.weight
        balanced = _balanced(self.weight)
        if self.weight_estimator == "ede":
            signs = EDEFunction.apply(balanced, *ede_schedule(self.progress, self.t_min,
                                                              self.t_max))
        else:
            signs = sign_ste(balanced, self.bound)
        return signs * self.shift_scale()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_estimator={self.weight_estimator}"
