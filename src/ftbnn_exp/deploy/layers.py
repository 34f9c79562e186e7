"""Inference layers of an exported model: packed 1-bit weights and BN folded into an affine.

:func:`to_inference` swaps every binary conv + BN pair of a trained model (as its blocks
declare them) for :class:`PackedBinaryConv2d` + :class:`FoldedBatchNorm2d`; everything else
(binarizers, stem, 1×1 shortcuts, pooling, non-linear modules, FC) stays as it was, in float.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from ftbnn_exp.deploy.bitops import binary_conv2d, pack
from ftbnn_exp.errors import InvalidArgument
from ftbnn_exp.nn import BinaryConv2d, fused_form


def _fit_buffers(module: nn.Module, state_dict: dict, prefix: str, names: tuple[str, ...]) -> None:
    """Resize the variable-size buffers ``names`` to the saved ones before loading them (an
    optional buffer is empty unless a model needs it)."""
    for name in names:
        if prefix + name in state_dict:
            setattr(module, name, torch.empty_like(state_dict[prefix + name]))


def _bits_to_bytes(bits: Tensor) -> Tensor:
    return torch.from_numpy(np.packbits(bits.flatten().numpy().astype(np.uint8)))


def _bytes_to_bits(data: Tensor, count: int) -> Tensor:
    return torch.from_numpy(np.unpackbits(data.numpy())[:count].astype(bool))


class PackedBinaryConv2d(nn.Module):
    """A binary conv whose weights are stored as 1 bit each and computed by popcounts.

    Stored (``state_dict``): ``signs``, the bits [W > 0] of the ``O × C/g × k × k`` weights,
    8 per byte; ``nonzero``, the bits [W ≠ 0], left empty when no weight is exactly 0 (the usual
    case: ``torch.sign(0) = 0`` would otherwise be lost). Input: the sign-binarized activations
    ({-1, 0, +1}); output: the exact integer result of ``F.conv2d``, as float.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, groups: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.groups = (kernel_size, stride,
                                                                     padding, groups)
        count = out_channels * (in_channels // groups) * kernel_size * kernel_size
        self.register_buffer("signs", torch.zeros(-(-count // 8), dtype=torch.uint8))
        self.register_buffer("nonzero", torch.zeros(0, dtype=torch.uint8))
        self._words: tuple[Tensor, Tensor] | None = None

    @property
    def weight_count(self) -> int:
        return self.out_channels * (self.in_channels // self.groups) * self.kernel_size ** 2

    @classmethod
    def from_conv(cls, conv: nn.Module) -> PackedBinaryConv2d:
        packed = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0],
                     conv.padding[0], conv.groups)
        # the signs the conv computes with (Libra-PB binarizes balanced weights, not W)
        weight = conv.binary_weight().detach().cpu()
        packed.signs = _bits_to_bytes(weight > 0)
        if bool((weight == 0).any()):
            packed.nonzero = _bits_to_bytes(weight != 0)
        return packed

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        _fit_buffers(self, state_dict, prefix, ("signs", "nonzero"))
        self._words = None  # rebuilt from the loaded bits
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def binary_weight(self) -> Tensor:
        """The stored weights as {-1, 0, +1} floats, [O, C/g, k, k]."""
        shape = (self.out_channels, self.in_channels // self.groups, self.kernel_size,
                 self.kernel_size)
        signs = _bytes_to_bits(self.signs, self.weight_count).view(shape)
        weight = torch.where(signs, 1.0, -1.0)
        if self.nonzero.numel():
            weight = weight * _bytes_to_bits(self.nonzero, self.weight_count).view(shape)
        return weight

    def words(self) -> tuple[Tensor, Tensor]:
        """Sign and non-zero bits as int64 words along ``C/g·k·k``, per output channel."""
        if self._words is None:
            shape = (self.out_channels, self.weight_count // self.out_channels)
            signs = _bytes_to_bits(self.signs, self.weight_count).view(shape)
            nonzero = (_bytes_to_bits(self.nonzero, self.weight_count).view(shape)
                       if self.nonzero.numel() else torch.ones(shape, dtype=torch.bool))
            self._words = (pack(signs), pack(nonzero))
        return self._words

    def forward(self, x: Tensor) -> Tensor:
        signs, nonzero = self.words()
        out = binary_conv2d(x.cpu(), signs, nonzero, self.kernel_size, self.stride,
                            self.padding, self.groups)
        return out.to(device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, 1 bit")


class FoldedBatchNorm2d(nn.Module):
    """Eval-mode BN as ``x · scale + bias`` per channel, ``scale = γ / sqrt(var + eps)`` and
    ``bias = β − mean · scale`` (after Bi-Real's per-channel weight scale, kept apart as in the
    training graph). Equal to the BN up to float rounding (ATen's BN kernel rounds its own
    way), so a value within rounding of 0 may binarize differently downstream: ``verify``
    reports how far the logits move."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("conv_scale", torch.zeros(0))

    @classmethod
    def fold(cls, bn: nn.BatchNorm2d, conv_scale: Tensor | None = None) -> FoldedBatchNorm2d:
        folded = cls(bn.num_features)
        with torch.no_grad():
            inv_std = 1.0 / torch.sqrt(bn.running_var + bn.eps)
            gamma = bn.weight if bn.affine else torch.ones_like(inv_std)
            beta = bn.bias if bn.affine else torch.zeros_like(inv_std)
            folded.scale = (inv_std * gamma).clone()
            folded.bias = (beta - bn.running_mean * folded.scale).clone()
            if conv_scale is not None:
                folded.conv_scale = conv_scale.detach().clone()
        return folded

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        _fit_buffers(self, state_dict, prefix, ("conv_scale",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if self.conv_scale.numel():
            x = x * self.conv_scale.view(1, -1, 1, 1)
        return x * self.scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _conv_scale(conv: nn.Module, where: str) -> Tensor | None:
    """The binary conv's per-channel output scale, from its registered scaling's deploy form
    (None: scale-free, absorbed into the BN)."""
    return fused_form(conv, where, "export")


def _binary_pairs(parent: nn.Module, where: str) -> list[tuple[str, str]]:
    """The (binary conv, BN) child names ``parent`` declares in ``binary_pairs``; a one-line
    refusal for a binary conv it does not pair or a partner that is not a BN."""
    declared = getattr(parent, "binary_pairs", ())
    if declared is None:
        raise InvalidArgument(f"export: {type(parent).__name__} at '{where or 'the model'}' "
                              "normalises before its binary conv (BN → sign → conv), so no BN "
                              "folds into the conv's output step; it has no export form")
    pairs = list(declared)
    children = dict(parent.named_children())
    paired = {conv for conv, _ in pairs}
    for conv, bn in pairs:
        if not (isinstance(children.get(conv), BinaryConv2d)
                and isinstance(children.get(bn), nn.BatchNorm2d)):
            raise InvalidArgument(
                f"export: {type(parent).__name__}.binary_pairs pairs '{where}{conv}' with "
                f"'{where}{bn}', which are not a binary conv and a BatchNorm2d")
    for name, child in children.items():
        if isinstance(child, BinaryConv2d) and name not in paired:
            raise InvalidArgument(
                f"export: binary conv '{where}{name}' of {type(parent).__name__} has no declared "
                f"BN partner; declare binary_pairs = (('{name}', '<its BN>'),) on the block")
    return pairs


def to_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with each binary conv and the BN its block pairs it with
    (``binary_pairs``, declared by every block, never guessed from the order of declaration)
    replaced by packed bits and a folded BN; a one-line error where a block pairs nothing."""
    inference = copy.deepcopy(model).eval()
    for prefix, parent in list(inference.named_modules()):
        where = f"{prefix}." if prefix else ""
        for conv_name, bn_name in _binary_pairs(parent, where):
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            scale = _conv_scale(conv, where + conv_name)
            setattr(parent, bn_name, FoldedBatchNorm2d.fold(bn, scale))
            setattr(parent, conv_name, PackedBinaryConv2d.from_conv(conv))
    return inference


def packed_layers(model: nn.Module) -> list[tuple[str, PackedBinaryConv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PackedBinaryConv2d)]
