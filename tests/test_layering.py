"""The layers of the house, held by walking every module's imports (README "Map of the code"):
each rule names the modules it covers and the packages they never import, anywhere in the file
(inside functions too; ``from ftbnn_exp import models`` counts as importing
``ftbnn_exp.models``)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import ftbnn_exp

PACKAGE = Path(ftbnn_exp.__file__).resolve().parent
ENTRY_POINTS = ("ftbnn_exp.__main__", "ftbnn_exp.api", "ftbnn_exp.complexity.__main__")
"""The commands and the Python API over ``app/``; ``complexity.__main__`` only forwards to
``app/complexity.py`` (:func:`test_the_complexity_command_only_forwards_to_the_app`)."""


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every module ``path`` (a file of the package at ``root``) imports, relative imports made
    absolute, and each name imported from a package as its submodule as well."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[:len(package) - node.level + 1], node.module or ""]
                            if node.level else [node.module or ""]).strip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@dataclass(frozen=True)
class Rule:
    """Modules ``covers`` accepts never import ``forbidden`` (nor their submodules), except
    ``allowed``."""

    why: str
    covers: Callable[[str], bool]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()

    def broken_by(self, module: str, names: set[str]) -> list[str]:
        if not self.covers(module):
            return []
        return sorted(n for n in names if any(within(n, f) for f in self.forbidden)
                      and not any(within(n, a) for a in self.allowed))


RULES = (
    Rule("libraries never import the application layer, Hydra or OmegaConf",
         lambda m: not within(m, "ftbnn_exp.app") and m not in ENTRY_POINTS,
         ("ftbnn_exp.app", "hydra", "omegaconf")),
    Rule("deployment never imports a model: it asks the runner registry",
         lambda m: within(m, "ftbnn_exp.deploy"), ("ftbnn_exp.models",)),
    Rule("the runner registry imports nothing of the package (registering loads no kernels)",
         lambda m: m == "ftbnn_exp.deploy.runners", ("ftbnn_exp",)),
    Rule("models know deployment only through its runner registry",
         lambda m: within(m, "ftbnn_exp.models"), ("ftbnn_exp.deploy",),
         ("ftbnn_exp.deploy.runners",)),
    Rule("models know nothing of Lightning", lambda m: within(m, "ftbnn_exp.models"),
         ("lightning", "pytorch_lightning")),
    Rule("layers know nothing of models, training, data or deployment",
         lambda m: within(m, "ftbnn_exp.nn"),
         ("ftbnn_exp.models", "ftbnn_exp.training", "ftbnn_exp.data", "ftbnn_exp.deploy",
          "lightning")),
    Rule("complexity imports neither the application layer nor reports",
         lambda m: within(m, "ftbnn_exp.complexity") and m not in ENTRY_POINTS,
         ("ftbnn_exp.app", "ftbnn_exp.report")),
    Rule("reports read artefacts, never training code", lambda m: within(m, "ftbnn_exp.report"),
         ("ftbnn_exp.training",)),
)
MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_every_module_keeps_every_layering_rule(path):
    module, names = module_name(path), imported(path)
    broken = {rule.why: bad for rule in RULES if (bad := rule.broken_by(module, names))}
    assert not broken, f"{module}: {broken}"


def test_the_complexity_command_only_forwards_to_the_app():
    """``python -m ftbnn_exp.complexity`` stays a documented command; its file holds no code
    of its own, so the complexity package stays a library."""
    path = PACKAGE / "complexity" / "__main__.py"
    tree = ast.parse(path.read_text())
    assert imported(path) == {"sys", "ftbnn_exp.app.complexity", "ftbnn_exp.app.complexity.main"}
    assert not [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]


def test_a_violation_is_caught(tmp_path):
    """The walk sees an import inside a function, a relative one and ``from package import
    module``: each breaks the deploy rule."""
    root = tmp_path / "ftbnn_exp"
    probe = root / "deploy" / "probe.py"
    probe.parent.mkdir(parents=True)
    for source in ("def f():\n    from ftbnn_exp.models.derived import DerivedFTBNN\n",
                   "from ..models import registry\n", "from ftbnn_exp import models\n"):
        probe.write_text(source)
        assert module_name(probe, root) == "ftbnn_exp.deploy.probe"
        assert RULES[1].broken_by("ftbnn_exp.deploy.probe", imported(probe, root)), source
    probe.write_text("from .layers import to_inference\nfrom . import runners\n")
    assert imported(probe, root) >= {"ftbnn_exp.deploy.layers", "ftbnn_exp.deploy.runners"}
    assert not RULES[1].broken_by("ftbnn_exp.deploy.probe", imported(probe, root))
