"""The classes a stored data config may name: every data module and ``augment=`` option.

A checkpoint keeps its run's resolved ``data`` config (``_target_`` and plain values) so that
reports and deployment can rebuild the run's data without Hydra. A file found on disk is data,
never code: its ``_target_`` is looked up here, among the classes the package (or a plug-in the
user named) defined, and is never imported or called otherwise. Subclasses of
:class:`~ftbnn_exp.data.ClassificationDataModule` and
:class:`~ftbnn_exp.data.transforms.Augment` register themselves when their module is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ftbnn_exp.errors import UserError
from ftbnn_exp.registries import check_free

DATA_CLASSES: dict[str, type] = {}
"""``_target_`` path -> class: ``module.Name`` and the package's ``package.Name``."""


def register_data_class(cls: type, replace: bool = False) -> type:
    """Make ``cls`` nameable by a stored config, under its module's path and its package's
    (``ftbnn_exp.data.digits.DigitsDataModule`` and ``ftbnn_exp.data.DigitsDataModule``). A
    path another class holds (two modules of a package defining one name) is refused in one
    line unless ``replace=True``: ``class MyData(ClassificationDataModule, replace=True)``."""
    module = cls.__module__
    paths = [f"{path}.{cls.__qualname__}" for path in (module, module.rpartition(".")[0])
             if path]
    for path in paths:
        check_free("data class registry", path, DATA_CLASSES.get(path), cls, replace,
                   f"class {cls.__name__}(<its base>, replace=True)")
    for path in paths:
        DATA_CLASSES[path] = cls
    return cls


def data_class(target: Any, source: str) -> type:
    """The registered class a stored ``_target_`` names; a one-line refusal otherwise."""
    cls = DATA_CLASSES.get(target) if isinstance(target, str) else None
    if cls is None:
        raise UserError(f"{source} names _target_ {target!r}, which is not a registered data "
                        f"source or augment option; nothing was run (a plug-in's own data "
                        f"module loads with --plugin <module>)")
    return cls


def build_stored(config: Mapping[str, Any], source: str) -> Any:
    """The object a stored, resolved config describes: its registered class called with its
    plain values, nested ``_target_`` sections (the ``augment`` option) built first."""
    cls = data_class(config.get("_target_"), source)
    kwargs = {key: build_stored(value, source)
              if isinstance(value, Mapping) and "_target_" in value else value
              for key, value in config.items() if not str(key).startswith("_")}
    return cls(**kwargs)
