"""Model families, one file each, and their entries in timm's model registry.

``timm.create_model("ftbnn_resnet18", num_classes=10, image_size=32)`` builds our models once this
package is imported; no pretrained weights are published, so ``pretrained=True`` is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.models import register_model
from torch import nn

from ftbnn_exp.models.derived import DerivedFTBNN, derived_ftbnn
from ftbnn_exp.models.ftbnn import FTBNN, bireal_resnet, ftbnn_resnet
from ftbnn_exp.models.resnet_fp import resnet_fp
from ftbnn_exp.nn import NonLinearitySchedule

_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _timm_entry(builder: Callable[..., nn.Module], pretrained: bool, **kwargs: Any) -> nn.Module:
    if pretrained:
        raise ValueError("ftbnn_exp models have no pretrained weights; use pretrained=False")
    for key in _TIMM_ONLY_KWARGS:
        kwargs.pop(key, None)
    kwargs.setdefault("schedule", NonLinearitySchedule())
    return builder(**kwargs)


@register_model
def ftbnn_resnet18(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    return _timm_entry(ftbnn_resnet, pretrained, depth=18, **kwargs)


@register_model
def ftbnn_resnet34(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    return _timm_entry(ftbnn_resnet, pretrained, depth=34, **kwargs)


@register_model
def bireal_resnet18(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    kwargs.setdefault("schedule", None)
    return _timm_entry(bireal_resnet, pretrained, depth=18, **kwargs)


@register_model
def ftbnn_derived18(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    kwargs.setdefault("width", 128)
    return _timm_entry(derived_ftbnn, pretrained, depth=18, **kwargs)


@register_model
def ftbnn_derived34(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    kwargs.setdefault("width", 88)
    return _timm_entry(derived_ftbnn, pretrained, depth=34, **kwargs)


@register_model
def ftbnn_derived44(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    kwargs.setdefault("width", 76)
    return _timm_entry(derived_ftbnn, pretrained, depth=44, **kwargs)


__all__ = [
    "FTBNN",
    "DerivedFTBNN",
    "bireal_resnet",
    "derived_ftbnn",
    "ftbnn_resnet",
    "resnet_fp",
]
