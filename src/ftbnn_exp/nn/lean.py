"""Memory-lean autograd for the binary block: same function, same gradients, less saved state.

Autograd through ``BinaryActivation → BinaryConv2d → BatchNorm2d`` keeps, per input element, the
STE mask and the float ±1 conv input, and per output element the float conv output for BN
(1 + 4 and 4 bytes); Appendix E's layers keep even more (the clamp's float input as well).
:class:`BinaryConvBN` keeps one int8 code per input element (the sign and the STE mask) and
recomputes the cheap binary conv in backward. :class:`FPReLUFunction` keeps only its input, not
also the comparison mask. Both are used in training only; evaluation, tracing and hooks see the
plain modules (see :func:`binary_conv_bn`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ftbnn_exp.nn.binarize import BinaryActivation
from ftbnn_exp.nn.conv import BinaryConv2d
from ftbnn_exp.nn.parts import has_trait, lean_exact

_INSIDE = 3
"""Code = sign(x) + 3·[|x| < bound]: values -1..1 outside the STE window, 2..4 inside."""


def encode(x: Tensor, bound: float) -> Tensor:
    return (torch.sign(x) + _INSIDE * (x.abs() < bound)).to(torch.int8)


def decode(code: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The binarized input (in ``dtype``) and the STE mask of a code."""
    inside = code >= 2
    return (code - _INSIDE * inside).to(dtype), inside


class BinaryConvBN(torch.autograd.Function):
    """``BN(conv(sign(x), w_b))`` in training mode, saving an int8 code of ``x``.

    Backward recomputes the conv output from the code, then calls the same ATen backward
    kernels autograd would (``native_batch_norm_backward``, ``convolution_backward``), so the
    gradients equal the unfused graph's. Under autocast the conv runs in autocast's dtype, as
    in the unfused graph (forward casts as autocast does; backward, where autocast is off,
    casts alike and returns the gradients in the inputs' dtypes, as autocast's casts do), and
    batch norm takes that dtype unchanged, as autocast leaves it on CPU and CUDA.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bn_weight: Tensor | None, bn_bias: Tensor | None,
                running_mean: Tensor | None, running_var: Tensor | None, bound: float,
                conv_args: tuple, momentum: float, eps: float) -> Tensor:  # type: ignore[override]
        code = encode(x, bound)
        binary, _ = decode(code, x.dtype)
        z = F.conv2d(binary, weight, None, *conv_args)
        out, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
            z, bn_weight, bn_bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(code, weight, bn_weight, save_mean, save_invstd)
        ctx.conv_args, ctx.eps, ctx.dtype, ctx.conv_dtype = conv_args, eps, x.dtype, z.dtype
        ctx.has_bn_bias = bn_bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        code, weight, bn_weight, save_mean, save_invstd = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv_args
        binary, inside = decode(code, ctx.conv_dtype)
        conv_weight = weight.to(ctx.conv_dtype)
        z = F.conv2d(binary, conv_weight, None, stride, padding, dilation, groups)
        want_bn = bn_weight is not None and ctx.needs_input_grad[2]
        grad_z, grad_bn_weight, grad_bn_bias = torch.ops.aten.native_batch_norm_backward(
            grad_out, z, bn_weight, None, None, save_mean, save_invstd, True, ctx.eps,
            [True, want_bn, ctx.has_bn_bias and ctx.needs_input_grad[3]])
        grad_binary, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad_z, binary, conv_weight, None, stride, padding, dilation, False, [0, 0], groups,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        grad_x = grad_binary.to(ctx.dtype) * inside if grad_binary is not None else None
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return (grad_x, grad_weight, grad_bn_weight, grad_bn_bias,
                None, None, None, None, None, None)


def _bn_momentum(bn: nn.BatchNorm2d) -> float:
    """``nn.BatchNorm2d.forward``'s bookkeeping: count the batch, return the averaging factor."""
    if not bn.track_running_stats or bn.num_batches_tracked is None:
        return 0.0 if bn.momentum is None else bn.momentum
    bn.num_batches_tracked.add_(1)
    if bn.momentum is None:
        return 1.0 / float(bn.num_batches_tracked)
    return bn.momentum


def lean_applies(binarize: nn.Module, conv: nn.Module, bn: nn.Module, x: Tensor) -> bool:
    """The lean path is exact where the binarizer and the binary conv are registered parts that
    declare it exact (``sign`` with its clipped STE, the scale-free conv: the int8 code holds
    all they need), binarizing, followed by a training-mode BN, in full precision and under
    autocast. Any other part, an unregistered subclass included, takes the plain graph."""
    return (getattr(conv, "lean_backward", False) and lean_exact(binarize, conv)
            and getattr(binarize, "mode", None) == "sign"
            and isinstance(bn, nn.BatchNorm2d) and bn.training and torch.is_grad_enabled())


def binary_conv_bn(x: Tensor, binarize: BinaryActivation, conv: BinaryConv2d,
                   bn: nn.BatchNorm2d) -> Tensor:
    """``bn(conv(binarize(x)))`` (``conv(binarize(x), x)`` for a scaling that reads the real
    input), through :class:`BinaryConvBN` where it applies."""
    if not lean_applies(binarize, conv, bn, x):
        if has_trait(conv, "real_input"):  # a scaling computed from the real input
            return bn(conv(binarize(x), x))
        return bn(conv(binarize(x)))
    momentum = _bn_momentum(bn)
    running = (bn.running_mean, bn.running_var) if bn.track_running_stats else (None, None)
    conv_args = (conv.stride, conv.padding, conv.dilation, conv.groups)
    return BinaryConvBN.apply(x, conv.binary_weight(), bn.weight, bn.bias, *running,
                              binarize.bound, conv_args, momentum, bn.eps)


class FPReLUFunction(torch.autograd.Function):
    """Appendix E's ``where(x > 0, x·positive, x·negative)``, saving ``x`` only: the mask is
    recomputed in backward, and the slope gradients are reduced as autograd reduces them."""

    @staticmethod
    def forward(ctx, x: Tensor, negative: Tensor, positive: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, negative, positive)
        return torch.where(x > 0, x * positive, x * negative)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, negative, positive = ctx.saved_tensors
        above = x > 0
        grad_above = torch.where(above, grad_out, 0)
        grad_below = torch.where(above, 0, grad_out)
        grad_x = grad_above * positive + grad_below * negative
        dims = [d for d in range(x.dim()) if positive.shape[d] == 1]
        grad_negative = (grad_below * x).sum(dims, keepdim=True)
        grad_positive = (grad_above * x).sum(dims, keepdim=True)
        return grad_x, grad_negative, grad_positive


def saved_bytes(run: Callable[[], object]) -> int:
    """Bytes autograd keeps for backward while ``run()`` builds its graph, counted with
    ``saved_tensors_hooks``, each storage once (the yardstick of this module's saving)."""
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(storages.values())
