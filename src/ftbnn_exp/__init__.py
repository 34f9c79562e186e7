"""ftbnn-exp: an experiment framework for the FTBNN paper (Su et al., 2021) and its variants.

The Python API (:mod:`ftbnn_exp.api`, also here): ``compose``, ``train``, ``resume``,
``test``, ``create_model``, ``count_complexity``, ``runs_table``, ``export``, ``load_export``,
``predict``. Each is imported when first used, so ``import ftbnn_exp`` (and with it the CLI's
start and its tab completion) loads neither torch nor Hydra.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("Run", "compose", "count_complexity", "create_model", "export", "load_export",
        "predict", "resume", "runs_table", "test", "train")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from ftbnn_exp import api

        return getattr(api, name)
    raise AttributeError(f"module 'ftbnn_exp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
