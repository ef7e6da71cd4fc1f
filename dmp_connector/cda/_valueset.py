"""The ``ValueSet`` type behind the generated :mod:`dmp_connector.cda.valuesets`.

Hand-written (the generator only writes data): a set's identity, its concepts, and lookups.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError

__all__ = ["ValueSet", "value_set"]


class ValueSet(BaseModel):
    """One ANS value set (*jeu de valeurs*): its identity and the codes it allows.

    A code belongs to a set when both its code and its code system match; display names
    are informative (the ANS schematrons do not compare them either).
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    """File name of the set without extension, e.g. ``JDV_J07_XdsTypeCode_CISIS``."""
    oid: str = Field(min_length=1)
    """OID of the value set (``ValueSet/@id``), e.g. ``1.2.250.1.213.1.1.5.471``."""
    description: str | None = None
    """Why the SDK carries this set."""
    version: str | None = None
    """``ValueSet/@version`` when the file gives one."""
    revision_date: str | None = None
    """``ValueSet/@revisionDate`` as published (ISO 8601 with offset)."""
    concepts: tuple[Code, ...]
    """The allowed codes, sorted by code system then code."""

    _index: dict[tuple[str, str], Code] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: object, /) -> None:
        self._index.update(((c.code, c.code_system), c) for c in self.concepts)

    def __len__(self) -> int:
        return len(self.concepts)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Code):
            return (item.code, item.code_system) in self._index
        if isinstance(item, str):
            return self.get(item) is not None
        return False

    def contains(self, code: Code | str, code_system: str | None = None) -> bool:
        """True when ``code`` (a :class:`Code`, or a code string with an optional system) is in the set."""
        if isinstance(code, Code):
            return code in self
        return self.get(code, code_system) is not None

    def get(self, code: str, code_system: str | None = None) -> Code | None:
        """The concept for ``code`` (with its display name), or None; without a system, the first match."""
        if code_system is not None:
            return self._index.get((code, code_system))
        return next((c for c in self.concepts if c.code == code), None)

    def __getitem__(self, code: str) -> Code:
        found = self.get(code)
        if found is None:
            raise KeyError(f"{code!r} is not in {self.name}")
        return found

    def codes(self) -> Iterator[str]:
        """The codes of the set, in order."""
        return (c.code for c in self.concepts)

    def require(self, code: Code, *, field: str) -> Code:
        """Return ``code`` if it is in the set, else raise :class:`ValidationError` naming ``field``.

        The code keeps the caller's display name; when it has none, the set's is filled in,
        since several volets require one.
        """
        known = self._index.get((code.code, code.code_system))
        if known is None:
            raise ValidationError(
                f"{field}: code {code.code!r} of system {code.code_system} is not in the value set {self.name}"
                f" ({self.oid})",
                problems=(f"{field} not in {self.name}",),
                hint=f"use one of the {len(self)} codes of {self.name}, e.g. {self.concepts[0].code!r}",
            )
        if code.display_name is None:
            return known
        return code


def value_set(
    name: str,
    oid: str,
    description: str,
    version: str | None,
    revision_date: str | None,
    concepts: tuple[tuple[str, str, str | None], ...],
) -> ValueSet:
    return ValueSet(
        name=name,
        oid=oid,
        description=description,
        version=version,
        revision_date=revision_date,
        concepts=tuple(Code.of(code, system, display) for code, system, display in concepts),
    )
