"""Sign binarization with a clipped straight-through estimator (§3, Appendix E)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ftbnn_exp.nn.parts import FusedBinarizer, register_part

DEFAULT_BOUND = 1.2
"""STE clipping range (-1.2, 1.2) for weights and activations (§3)."""


class SignSTE(torch.autograd.Function):
    """``torch.sign`` forward; gradient 1 where ``|x| < bound`` and 0 elsewhere.

    The gradient equals, value for value, that of Appendix E's
    ``sign(x).detach() + clamp(x) - clamp(x).detach()`` on torch 2.14 (pyproject's range), whose
    ``torch.clamp`` passes no gradient at ``|x| = bound`` itself: §3's open range (-1.2, 1.2).
    (torch 2.13's clamp passed 1 at the bound, so there Appendix E's code differs from this at
    exactly ±1.2; ``tests/test_nn.py`` checks the torch in use.) Only a boolean mask is kept
    for backward instead of the input and the clamped copy. ``sign(0) = 0`` is kept on
    purpose: Appendix B's deployment argument relies on it.
    """

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x.abs() < bound)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad_output * inside, None


def sign_ste(x: Tensor, bound: float = DEFAULT_BOUND) -> Tensor:
    """Binarize ``x`` to {-1, 0, +1} with the clipped STE of :class:`SignSTE`."""
    return SignSTE.apply(x, bound)


ACTIVATION_MODES = ("sign", "tanh")
"""``sign``: binarize (every stage of the paper's naive training, and multi-step stages 1-2);
``tanh``: real-valued, multi-step stage 0 (Appendix C, following Real-to-Bin)."""


@register_part("binarizer", "sign", label="sign", lean_exact=True,
               fused=lambda module: FusedBinarizer())
class BinaryActivation(nn.Module):
    """The activation binarizer in front of every binary convolution (Fig. 1b): ``sign`` with
    the clipped STE (FTBNN, §3). Other binarizers subclass it and register themselves.
    ``channels`` sizes the per-channel parameters a binarizer may have (none here).

    The base class owns the ``mode`` switch, so no binarizer can forget it: :meth:`forward`
    is ``tanh(x)`` in multi-step training's real-valued stage 0 (Appendix C) and
    :meth:`binarize` otherwise. A subclass overrides :meth:`binarize` only; one written as any
    module (or as larq's quantizers), with its own ``forward`` holding just the binarizing
    function, has that ``forward`` taken as its ``binarize`` and still gets ``tanh`` in stage 0.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "forward" not in own:
            return
        if "binarize" in own:
            raise TypeError(f"{cls.__qualname__} defines both forward and binarize; a "
                            f"binarizer defines binarize(x) only (BinaryActivation.forward "
                            f"switches to tanh in multi-step stage 0)")
        cls.binarize = own["forward"]  # type: ignore[method-assign]
        cls.forward = BinaryActivation.forward  # type: ignore[method-assign]

    def __init__(self, channels: int = 0, bound: float = DEFAULT_BOUND,
                 mode: str = "sign") -> None:
        super().__init__()
        if mode not in ACTIVATION_MODES:
            raise ValueError(f"activation mode {mode!r} is unknown; allowed: "
                             f"{', '.join(ACTIVATION_MODES)}")
        self.bound = bound
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x) if self.mode == "tanh" else self.binarize(x)

    def binarize(self, x: Tensor) -> Tensor:
        """This binarizer's function (``sign`` with the clipped STE here)."""
        return sign_ste(x, self.bound)

    def extra_repr(self) -> str:
        return f"bound={self.bound}, mode={self.mode}"
