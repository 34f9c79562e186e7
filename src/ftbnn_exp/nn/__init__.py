"""The paper's building blocks: STE binarizer, binary convolutions, FPReLU, the non-linearity
schedule. Layers here know nothing of models."""

from ftbnn_exp.nn.activation import FPReLU
from ftbnn_exp.nn.binarize import DEFAULT_BOUND, BinaryActivation, SignSTE, sign_ste
from ftbnn_exp.nn.conv import (
    BinaryConv2d,
    ScaledBinaryConv2d,
    binary_weight_parameters,
    is_binary_conv,
    set_binarization,
)
from ftbnn_exp.nn.lean import binary_conv_bn
from ftbnn_exp.nn.nonlinearity import MODULE_KINDS, NonLinearitySchedule, make_nonlinear_module

__all__ = [
    "DEFAULT_BOUND",
    "MODULE_KINDS",
    "BinaryActivation",
    "BinaryConv2d",
    "FPReLU",
    "NonLinearitySchedule",
    "ScaledBinaryConv2d",
    "SignSTE",
    "binary_conv_bn",
    "binary_weight_parameters",
    "is_binary_conv",
    "make_nonlinear_module",
    "set_binarization",
    "sign_ste",
]
