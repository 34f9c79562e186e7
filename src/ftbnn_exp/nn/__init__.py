"""The paper's building blocks: STE binarizer, binary convolutions, FPReLU, the non-linearity
schedule and its placements, and the registry of parts (binarizers, scalings, non-linear
modules) with their traits, with other methods' parts (ApproxSign, RSign, EDE, RPReLU).
Layers here know nothing of models."""

from ftbnn_exp.nn.activation import FPReLU, RPReLU
from ftbnn_exp.nn.binarize import DEFAULT_BOUND, BinaryActivation, SignSTE, sign_ste
from ftbnn_exp.nn.binarizers import EDE, ApproxSign, RSign
from ftbnn_exp.nn.conv import (
    BinaryConv2d,
    ScaledBinaryConv2d,
    binary_weight_parameters,
    set_binarization,
)
from ftbnn_exp.nn.fused import FusedActivation
from ftbnn_exp.nn.lean import binary_conv_bn
from ftbnn_exp.nn.nonlinearity import IDENTITY, NonLinearitySchedule, make_nonlinear_module
from ftbnn_exp.nn.parts import (
    PARTS,
    FusedBinarizer,
    Part,
    fused_form,
    part,
    part_of,
    register_part,
)
from ftbnn_exp.nn.placement import PLACEMENTS, BlockPosition, register_placement
from ftbnn_exp.nn.scaling import GatedBinaryConv2d, LibraBinaryConv2d, XNORConv2d, XNORPPConv2d

__all__ = [
    "DEFAULT_BOUND",
    "EDE",
    "IDENTITY",
    "PARTS",
    "PLACEMENTS",
    "ApproxSign",
    "BinaryActivation",
    "BinaryConv2d",
    "BlockPosition",
    "FPReLU",
    "FusedActivation",
    "FusedBinarizer",
    "GatedBinaryConv2d",
    "LibraBinaryConv2d",
    "NonLinearitySchedule",
    "Part",
    "RPReLU",
    "RSign",
    "ScaledBinaryConv2d",
    "SignSTE",
    "XNORConv2d",
    "XNORPPConv2d",
    "binary_conv_bn",
    "binary_weight_parameters",
    "fused_form",
    "make_nonlinear_module",
    "part",
    "part_of",
    "register_part",
    "register_placement",
    "set_binarization",
    "sign_ste",
]
