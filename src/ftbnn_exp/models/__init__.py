"""Model families, one file each, registered beside their builders (:mod:`.registry`).

``models.create(spec)`` rebuilds any model from a :class:`ModelSpec` (what checkpoints and
exports store); ``timm.create_model("ftbnn_resnet", num_classes=10, image_size=32)`` builds
ours once this package is imported. No pretrained weights are published, so
``pretrained=True`` is refused.
"""

from ftbnn_exp.models.derived import DerivedFTBNN, derived_ftbnn
from ftbnn_exp.models.ftbnn import FTBNN, bireal_resnet, ftbnn_resnet
from ftbnn_exp.models.registry import (
    BINARY_PARTS,
    FAMILIES,
    Family,
    ModelSpec,
    SolvedWidth,
    create,
    family,
    part_arguments,
    register_family,
    register_variant,
)
from ftbnn_exp.models.resnet_fp import resnet_fp
from ftbnn_exp.models.toy import Fig2Net, fig2_net

__all__ = [
    "BINARY_PARTS",
    "FAMILIES",
    "FTBNN",
    "DerivedFTBNN",
    "Family",
    "Fig2Net",
    "ModelSpec",
    "SolvedWidth",
    "bireal_resnet",
    "create",
    "derived_ftbnn",
    "family",
    "fig2_net",
    "ftbnn_resnet",
    "part_arguments",
    "register_family",
    "register_variant",
    "resnet_fp",
]
