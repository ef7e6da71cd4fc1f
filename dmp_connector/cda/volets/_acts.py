"""A past act (FR-Acte, ``1.2.250.1.213.1.1.3.62``), as the LDL-EES lists surgical history.

Read the way the CR-BIO entries are: the reader builds the model, writes it again, and keeps
the entry typed only when that rewrite is the element it read, child for child and attribute
for attribute (``same_element``); any other FR-Acte
(a performer, a target site, a reason …) stays a ``RawEntry``, as it came.
"""

from __future__ import annotations

from typing import Final, Literal

from lxml import etree

from dmp_connector.cda.model import Timestamp
from dmp_connector.codes import Code

from ._entries import (
    VoletEntry,
    _code,
    _decline,
    _ii,
    _interval,
    _one,
    _opt,
    _read_code,
    _read_interval,
    _read_reference,
    _required_id,
    _statement,
    _sub,
    _templates,
    _text,
    same_element,
)

__all__ = ["PROCEDURE_TEMPLATES", "Procedure"]

PROCEDURE_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.29",
    "1.3.6.1.4.1.19376.1.5.3.1.4.19",
    "1.2.250.1.213.1.1.3.62",
)
"""CCD procedure activity, IHE PCC procedure entry, CI-SIS FR-Acte: in the order the ANS examples write them."""

ProcedureStatus = Literal["completed", "active", "aborted", "cancelled"]


class Procedure(VoletEntry):
    """An act done (FR-Acte): a CCAM code, when, its status::

    <entry><procedure classCode="PROC" moodCode="EVN"><templateId root="2.16.840.1.113883.10.20.1.29"/>…
      <templateId root="1.2.250.1.213.1.1.3.62"/><id root="…"/>
      <code code="DDAF004" displayName="Dilatation intraluminale …" codeSystem="1.2.250.1.215.300.1"/>
      <text><reference value="#chir-001"/></text><statusCode code="completed"/>
      <effectiveTime><low value="20170801"/><high value="20170802"/></effectiveTime></procedure></entry>
    """

    code: Code
    """The act (CCAM ``1.2.250.1.215.300.1``, SNOMED CT …), with its display name."""
    status: ProcedureStatus = "completed"
    """``statusCode``: done, under way, stopped or cancelled."""
    start: Timestamp | None = None
    """When the act began; None writes ``nullFlavor="UNK"``."""
    end: Timestamp | None = None
    """When it ended; None writes no ``high``."""

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the procedure."""
        entry = self._entry()
        procedure = _sub(entry, "procedure", classCode="PROC", moodCode="EVN")
        _templates(procedure, PROCEDURE_TEMPLATES)
        _ii(procedure, self.id)
        _code(procedure, "code", self.code)
        _text(procedure, self.reference)
        _sub(procedure, "statusCode", code=self.status)
        _interval(procedure, self.start, self.end)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> Procedure:
        """Read an FR-Acte whose rewrite is the element itself (else declined: it stays a ``RawEntry``)."""
        procedure = _statement(element, "procedure")
        code = _read_code(_one(procedure, "code"))
        if code is None:
            raise _decline("an act without its code")
        status = _one(procedure, "statusCode").get("code")
        if status not in ("completed", "active", "aborted", "cancelled"):
            raise _decline(f"an act whose status is {status}")
        start, end = _read_interval(_opt(procedure, "effectiveTime"))
        entry = cls(
            id=_required_id(procedure),
            reference=_read_reference(_opt(procedure, "text")),
            entry_type_code=element.get("typeCode"),
            code=code,
            status=status,
            start=start,
            end=end,
        )
        if not same_element(element, entry.to_element()):
            raise _decline("an act that holds more than its code, status and times")
        return entry
