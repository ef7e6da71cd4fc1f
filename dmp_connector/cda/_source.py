"""Where a parsed model came from, so that building it again loses nothing.

The typed model names what a vendor reads and changes; a received document holds more
(null flavors, translations, ``originalText``, a second id, comments, the precision of a
time …). :func:`dmp_connector.cda.parse` therefore keeps, on every model it reads from an
element, a :class:`Source`: that element as read and the values the model had then.
:func:`dmp_connector.cda.build` writes an unchanged model as its element, and a changed
one as its element with only the changed parts written anew (see ``_patch.py``).

A source never takes part in equality, hashing or copying: two models with the same
values are equal whether they were read or built, and ``model_copy(update=…)`` keeps the
source, whose recorded values then tell what the update changed.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

__all__ = ["Source"]


class Source:
    """The element a model was read from and the part values it was read as (read-only)."""

    __slots__ = ("element", "extra", "values")

    def __init__(self, element: etree._Element, values: dict[str, Any], extra: Any = None) -> None:
        self.element = element
        """The element as read; never modified (build works on copies)."""
        self.values = values
        """The model's part values when read, keyed as the patch table names them."""
        self.extra = extra
        """What else the element needs to be written back (the layout of a PDF body's base64)."""

    def __eq__(self, other: object) -> bool:
        # Sources are provenance, not value: a read model equals a built one with the same fields.
        return other is None or isinstance(other, Source)

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> Source:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Source:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # lxml elements do not pickle: the element travels as text and is parsed back (our own bytes).
        return (_revive, (etree.tostring(self.element, encoding="UTF-8", with_tail=False), self.values, self.extra))

    def __repr__(self) -> str:
        return f"Source(<{etree.QName(self.element).localname}>)"


def _revive(data: bytes, values: dict[str, Any], extra: Any) -> Source:
    from dmp_connector.xml import parse_xml

    return Source(parse_xml(data, what="a kept CDA element"), values, extra)
