"""The paper's building blocks: STE binarizer, binary convolutions, FPReLU, the non-linearity
schedule and its placements. Layers here know nothing of models."""

from ftbnn_exp.nn.activation import FPReLU
from ftbnn_exp.nn.binarize import DEFAULT_BOUND, BinaryActivation, SignSTE, sign_ste
from ftbnn_exp.nn.conv import (
    BinaryConv2d,
    ScaledBinaryConv2d,
    binary_weight_parameters,
    set_binarization,
)
from ftbnn_exp.nn.lean import binary_conv_bn
from ftbnn_exp.nn.nonlinearity import (
    IDENTITY,
    NONLINEAR_MODULES,
    NonLinearitySchedule,
    make_nonlinear_module,
)
from ftbnn_exp.nn.placement import PLACEMENTS, BlockPosition, register_placement

__all__ = [
    "DEFAULT_BOUND",
    "IDENTITY",
    "NONLINEAR_MODULES",
    "PLACEMENTS",
    "BinaryActivation",
    "BinaryConv2d",
    "BlockPosition",
    "FPReLU",
    "NonLinearitySchedule",
    "ScaledBinaryConv2d",
    "SignSTE",
    "binary_conv_bn",
    "binary_weight_parameters",
    "make_nonlinear_module",
    "register_placement",
    "set_binarization",
    "sign_ste",
]
