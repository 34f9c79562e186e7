"""Plug-ins: modules the user names, the only modules this package imports by name.

A plug-in registers model families, placements, parts or data sources when imported. A
checkpoint or export records the plug-ins its model needs (``ModelSpec.imports``), but a file
is data, never code: rebuilding from it imports nothing, and names what is missing instead
(:func:`require`). The user loads a plug-in with ``plugins=[module]`` (training) or
``--plugin module`` (``deploy``, ``report``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

from ftbnn_exp.errors import UserError, one_line_message


def load(modules: Iterable[str], option: str = "--plugin") -> None:
    """Import each module the user named under ``option`` (``plugins`` in a config, ``--plugin``
    on deploy's and report's command lines): the one plug-in loader. Whatever goes wrong is one
    line naming the option and the module: not importable, a registration our registries
    refuse (a taken name), the plug-in's own bug, or ``sys.exit`` while imported."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise UserError(f"{option}: module {module!r} cannot be imported ({error})"
                            ) from None
        except UserError as error:  # a registry's refusal: already the user's one line
            raise UserError(f"{option}: module {module!r}: {one_line_message(error)}"
                            ) from None
        except Exception as error:  # a plug-in's own bug is still the user's to fix
            raise UserError(f"{option}: module {module!r} raised while imported "
                            f"({type(error).__name__}: {one_line_message(error)})") from None
        except SystemExit as done:  # would end the command with its code, silently
            raise UserError(f"{option}: module {module!r} called sys.exit({done.code!r}) "
                            f"while imported; allowed: a module that only registers its "
                            f"parts") from None


def require(modules: Iterable[str], source: str) -> None:
    """Refuse, in one line, when ``source`` asks for plug-ins that the user has not loaded."""
    missing = [m for m in modules if m not in sys.modules]
    if missing:
        raise UserError(f"{source} asks for plug-in module {', '.join(map(repr, missing))}, "
                        f"which is not loaded and is never imported from a file; if you trust "
                        f"it, load it with --plugin {missing[0]} (training: "
                        f"plugins=[{missing[0]}])")
