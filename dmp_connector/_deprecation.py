"""Old names that still import for one release, each use warning with the new import.

The top-level namespace and the sub-packages that renamed a name share this one ``__getattr__``
maker, so that every old name warns the same way (a :class:`DeprecationWarning` at the caller's
line, never cached, so that each use outside the project keeps warning).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def deprecated_getattr(
    module: str, moved: Mapping[str, str], message: str, *, stacklevel: int = 2
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for old names: each use warns, then gives the new name's value.

    ``moved`` maps an old name to ``"package.module:new_name"`` (``:new_name`` left out: the same
    name there); ``message`` is formatted with ``name`` (the old name), ``home`` and ``new``.
    ``stacklevel`` 2 points the warning at the caller when the result is the module's
    ``__getattr__`` itself; 3 when a module's own ``__getattr__`` calls it.
    """

    def old_name(name: str) -> Any:
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home, _, new = target.partition(":")
        new = new or name
        warnings.warn(message.format(name=name, home=home, new=new), DeprecationWarning, stacklevel=stacklevel)
        return getattr(importlib.import_module(home), new)

    return old_name
