"""``help(Model)`` that shows a model's fields first, not only pydantic's inherited machinery.

Each field's description comes from the docstring written under it (``use_attribute_docstrings``);
:func:`document_fields` appends them to the class docstring at import, so that ``help()``,
``pydoc`` and IDEs that show ``__doc__`` list them. The documentation site reads the source
docstrings (griffe), not ``__doc__``: it is unaffected.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

from pydantic import BaseModel

_DONE: set[type[BaseModel]] = set()


def document_fields(objects: Iterable[object]) -> None:
    """Append "Fields:" with each field's description to the docstring of every pydantic model given."""
    for obj in objects:
        if not (inspect.isclass(obj) and issubclass(obj, BaseModel)) or obj in _DONE or not obj.model_fields:
            continue
        _DONE.add(obj)
        lines = [
            f"    {name}: {' '.join((info.description or '').split())}".rstrip()
            for name, info in obj.model_fields.items()
        ]
        obj.__doc__ = (inspect.cleandoc(obj.__doc__ or "")).rstrip() + "\n\nFields:\n" + "\n".join(lines) + "\n"
