"""The rule every registry keeps (parts, placements, model families, data classes): a name is
taken once. A plug-in that registers a name already registered (``"rsign"``, ``"stage_end"``)
is refused in one line naming the registry, the name and what holds it, unless the
registration says ``replace=True``. The same definition registered again (its module imported
a second time, a test reloading a plug-in: the same module and qualified name) simply takes
its place, so re-importing never trips the rule.
"""

from __future__ import annotations

from ftbnn_exp.errors import InvalidArgument


def qualified_name(entry: object) -> str:
    """``module.QualifiedName`` of a registered class or function (a string is one already;
    its ``repr`` otherwise)."""
    if isinstance(entry, str):
        return entry
    module, name = getattr(entry, "__module__", None), getattr(entry, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(entry)


def same_definition(old: object, new: object) -> bool:
    """Whether ``new`` is ``old`` or the same definition executed again (a module imported
    twice defines a new object under the same module and qualified name)."""
    named = isinstance(new, str) or getattr(new, "__qualname__", None) is not None
    return old is new or (named and qualified_name(old) == qualified_name(new))


def check_free(registry: str, name: str, taken: object | None, new: object, replace: bool,
               how: str) -> None:
    """Refuse registering ``new`` as ``name`` in ``registry`` where ``taken`` holds it, unless
    ``replace`` or ``new`` is ``taken``'s own definition again; ``how``: the registration
    that replaces it (``register_part(..., replace=True)``), for the message."""
    if taken is None or replace or same_definition(taken, new):
        return
    raise InvalidArgument(f"{registry}: {name!r} is already registered by "
                          f"{qualified_name(taken)}; {qualified_name(new)} may replace it "
                          f"with {how}, or take another name")
