"""Typed CDA entries shared by the structured volets (VSM, LDL-SES), and their readers.

Each entry is a frozen model that renders itself as one ``<entry>`` element, the way the
ANS examples write it, and a reader turns such an element back into the model. A reader
declines (raises :class:`~dmp_connector.errors.ValidationError`, so that
:func:`dmp_connector.cda.parse` keeps the entry as a ``RawEntry``) whenever the element
holds something the model has no field for: a typed entry never loses clinical content
silently. Cosmetic attributes (``codeSystemName``, comments) are not kept.

Entries point into their section's narrative through ``reference`` (the ``ID`` of a
``<content>`` element, without ``#``); the volet builders write that narrative and fill
the references in, so a caller only gives the clinical data.

Value-set rules (a problem kind from JDV_ProblemCodes, a route from the EDQM set …) are
checked by :meth:`value_set_problems`, which the volet builders call, rather than on
construction: a document received with yesterday's value sets must still be readable.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, Self

from lxml import etree
from pydantic import Field, field_validator, model_validator

from dmp_connector.cda._namespaces import HL7, XSI, hl7, local_name, new_root
from dmp_connector.cda.build import format_ts
from dmp_connector.cda.model import LOINC, InstanceId, Narrative, Period, Section, Timestamp, _Model
from dmp_connector.cda.parse import parse_ts
from dmp_connector.cda.valuesets import (
    JDV_ABSENT_OR_UNKNOWN_MEDICATION,
    JDV_HL7_ALLERGYINTOLERANCE_CLINICAL,
    JDV_HL7_CONDITION_CLINICAL,
    JDV_PROBLEM_CODES,
    JDV_ROUTEOF_ADMINISTRATION,
    MedicationAbsence,
    ProblemKind,
)
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError

__all__ = [
    "CIS",
    "EDQM",
    "SNOMED_CT",
    "Allergy",
    "AllergyReaction",
    "AllergySeverity",
    "InternalReference",
    "MaxDose",
    "Medication",
    "NoMedication",
    "Problem",
    "Quantity",
    "SimpleObservation",
    "VoletEntry",
    "read_treatment",
    "same_element",
]

SNOMED_CT: Final = "2.16.840.1.113883.6.96"
"""SNOMED CT, the code system of allergy kinds (``416098002`` allergie médicamenteuse …)."""
CIS: Final = "1.2.250.1.213.2.3.1"
"""Code Identifiant de Spécialité (CIS), the code system of a medicinal product in FR-Produit-de-sante."""
EDQM: Final = "0.4.0.127.0.16.1.1.2.1"
"""EDQM Standard Terms, the code system of routes of administration (JDV_RouteofAdministration)."""
HL7_ROUTE: Final = "2.16.840.1.113883.5.112"
"""HL7 RouteOfAdministration, the other code system a route may come from."""
ACT_CODE: Final = "2.16.840.1.113883.5.4"
"""HL7 ActCode: ``DRUG``, the code of an FR-Traitement statement."""
ABSENT_OR_UNKNOWN: Final = "2.16.840.1.113883.5.1150.1"
"""The IPS code system of absent or unknown data (``no-known-medications`` …)."""

_XSI_TYPE = f"{{{XSI}}}type"
_NSMAP: Final[dict[str | None, str]] = {None: HL7, "xsi": XSI}

# templateIds, in the order the ANS examples write them.
PROBLEM_CONCERN_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.27",
    "1.3.6.1.4.1.19376.1.5.3.1.4.5.1",
    "1.3.6.1.4.1.19376.1.5.3.1.4.5.2",
    "1.2.250.1.213.1.1.3.39",
)
PROBLEM_TEMPLATES: Final = ("2.16.840.1.113883.10.20.1.28", "1.3.6.1.4.1.19376.1.5.3.1.4.5", "1.2.250.1.213.1.1.3.37")
ALLERGY_CONCERN_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.27",
    "1.3.6.1.4.1.19376.1.5.3.1.4.5.1",
    "1.3.6.1.4.1.19376.1.5.3.1.4.5.3",
    "1.2.250.1.213.1.1.3.40",
)
ALLERGY_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.18",
    "2.16.840.1.113883.10.20.1.28",
    "1.3.6.1.4.1.19376.1.5.3.1.4.5",
    "1.3.6.1.4.1.19376.1.5.3.1.4.6",
    "1.2.250.1.213.1.1.3.41",
)
REACTION_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.28",
    "2.16.840.1.113883.10.20.1.54",
    "1.3.6.1.4.1.19376.1.5.3.1.4.5",
    "1.2.250.1.213.1.1.3.37",
)
SEVERITY_TEMPLATES: Final = ("2.16.840.1.113883.10.20.1.55", "1.3.6.1.4.1.19376.1.5.3.1.4.1", "1.2.250.1.213.1.1.3.29")
STATUS_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.50",
    "2.16.840.1.113883.10.20.1.57",
    "1.3.6.1.4.1.19376.1.5.3.1.4.1.1",
    "1.2.250.1.213.1.1.3.30",
)
MEDICATION_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.24",
    "1.3.6.1.4.1.19376.1.5.3.1.4.7",
    "1.2.250.1.213.1.1.3.42",
    "1.3.6.1.4.1.19376.1.5.3.1.4.7.1",
)
PRODUCT_TEMPLATES: Final = ("2.16.840.1.113883.10.20.1.53", "1.3.6.1.4.1.19376.1.5.3.1.4.7.2", "1.2.250.1.213.1.1.3.43")
INTERNAL_REFERENCE_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.5.3.1.4.4.1", "1.2.250.1.213.1.1.3.36")
SIMPLE_OBSERVATION_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48")

_STATUS_CODE: Final = Code.of("33999-4", LOINC, "Status")
_DRUG: Final = Code.of("DRUG", ACT_CODE, "Médicament")
_SEVERITY_CODE: Final = Code.of("SEV", ACT_CODE, "Sévérité")


def _new_id() -> InstanceId:
    return InstanceId(root=str(uuid.uuid4()).upper())


_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


# --------------------------------------------------------------------------- small data types


class Quantity(_Model):
    """A physical quantity (``PQ``): ``<low value="2" unit="{tablet}"/>``; ``unit`` is UCUM."""

    value: Decimal
    """The number, written as given (``Decimal("2.50")`` stays ``2.50``)."""
    unit: str = Field(default="1", min_length=1)
    """UCUM unit (``mg``, ``d``, ``{tablet}`` …); ``1`` for a pure number."""

    @classmethod
    def of(cls, value: Decimal | int | str, unit: str = "1") -> Quantity:
        """Positional shorthand: ``Quantity.of(1, "d")``."""
        return cls(value=Decimal(str(value)), unit=unit)


class MaxDose(_Model):
    """The maximum dose over a period (``maxDoseQuantity``, an ``RTO``): ``numerator`` per ``denominator``.

    ``<maxDoseQuantity><numerator value="300" unit="mg"/><denominator value="1" unit="d"/></maxDoseQuantity>``
    """

    numerator: Quantity
    """The dose, e.g. 300 mg."""
    denominator: Quantity
    """Per this much time, e.g. 1 d."""


class InternalReference(_Model):
    """Why a treatment is given: a reference to a problem of the same document (FR-Reference-interne).

    ``<entryRelationship typeCode="RSON"><act classCode="ACT" moodCode="EVN">…<id root="<problem id>"/>``
    ``<code code="I20.0" codeSystem="2.16.840.1.113883.6.3" …/></act></entryRelationship>``
    """

    code: Code
    """The reason, usually the problem's code (CIM-10 …)."""
    id: InstanceId | None = None
    """Id of the problem referred to (its concern's id); None writes ``<id nullFlavor="UNK"/>``."""
    reference: str | None = None
    """``ID`` of the narrative content that names the reason."""


# --------------------------------------------------------------------------- base


class VoletEntry(_Model):
    """Fields every volet entry has: its id, the narrative it points to, the entry's ``typeCode``."""

    id: InstanceId = Field(default_factory=_new_id)
    """Id of the entry's clinical statement; a fresh UUID unless given (kept on parse)."""
    reference: str | None = None
    """``ID`` of the ``<content>`` in the section narrative that this entry encodes (set by the volet builders)."""
    entry_type_code: str | None = None
    """``entry/@typeCode`` (``DRIV`` when the narrative is derived from the entry), if any."""

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not _NCNAME.match(value):
            raise ValidationError(
                "a narrative reference is an XML ID: a letter or _ then letters, digits, '.', '-', '_'",
                problems=("reference",),
            )
        return value

    def value_set_problems(self) -> list[str]:
        """Codes of this entry outside the value set the volet requires (empty when all are fine)."""
        return []

    def to_element(self) -> etree._Element:
        """The ``<entry>`` element; every concrete entry writes its own."""
        raise NotImplementedError

    def _entry(self) -> etree._Element:
        entry = new_root("entry", _NSMAP)
        if self.entry_type_code is not None:
            entry.set("typeCode", self.entry_type_code)
        return entry


# --------------------------------------------------------------------------- XML writing helpers


def _sub(parent: etree._Element, name: str, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, hl7(name))
    for key, value in attributes.items():
        element.set(key, value)
    return element


def _templates(parent: etree._Element, roots: tuple[str, ...]) -> None:
    for root in roots:
        _sub(parent, "templateId", root=root)


def _ii(parent: etree._Element, value: InstanceId | None, name: str = "id") -> None:
    element = _sub(parent, name)
    if value is None:
        element.set("nullFlavor", "UNK")
        return
    element.set("root", value.root)
    if value.extension is not None:
        element.set("extension", value.extension)


def _code(
    parent: etree._Element,
    name: str,
    code: Code | None,
    *,
    xsi_type: str | None = None,
    reference: str | None = None,
    null_flavor: str = "UNK",
    pointer: str | None = None,
) -> etree._Element:
    """``<name code=… codeSystem=… displayName=…>`` (or a null flavor), with an optional originalText reference.

    ``pointer`` is a reference value written as it is (``#`` included), instead of ``#`` and ``reference``.
    """
    element = _sub(parent, name)
    if xsi_type is not None:
        element.set(_XSI_TYPE, xsi_type)
    if code is None:
        if reference is None and pointer is None:
            element.set("nullFlavor", null_flavor)
    else:
        element.set("code", code.code)
        if code.display_name is not None:
            element.set("displayName", code.display_name)
        element.set("codeSystem", code.code_system)
    if pointer is not None:
        _sub(_sub(element, "originalText"), "reference", value=pointer)
    elif reference is not None:
        _reference(_sub(element, "originalText"), reference)
    return element


def _reference(parent: etree._Element, reference: str) -> None:
    _sub(parent, "reference", value=f"#{reference}")


def _text(parent: etree._Element, reference: str | None) -> None:
    if reference is not None:
        _reference(_sub(parent, "text"), reference)


def _time(parent: etree._Element, name: str, value: date | datetime | None, *, null_flavor: str = "UNK") -> None:
    element = _sub(parent, name)
    if value is None:
        element.set("nullFlavor", null_flavor)
    else:
        element.set("value", format_ts(value))


def _interval(
    parent: etree._Element,
    low: date | datetime | None,
    high: date | datetime | None,
    *,
    xsi_type: bool = False,
    always_high: bool = False,
) -> None:
    element = _sub(parent, "effectiveTime")
    if xsi_type:
        element.set(_XSI_TYPE, "IVL_TS")
    _time(element, "low", low)
    if high is not None or always_high:
        _time(element, "high", high)


def _pq(parent: etree._Element, name: str, quantity: Quantity) -> None:
    _sub(parent, name, value=format(quantity.value, "f"), unit=quantity.unit)


def _range(parent: etree._Element, name: str, quantity: Quantity, references: tuple[str, str] | None = None) -> None:
    element = _sub(parent, name)
    for bound, reference in zip(("low", "high"), references or (None, None), strict=True):
        _pq(element, bound, quantity)
        if reference is not None:
            _reference(_sub(_sub(element[-1], "translation"), "originalText"), reference)


def _status(
    parent: etree._Element,
    status: Code,
    reference: str | None,
    *,
    templates: tuple[str, ...] = STATUS_TEMPLATES,
    negation_written: bool = True,
) -> None:
    relationship = _sub(parent, "entryRelationship", typeCode="REFR", inversionInd="false")
    observation = _sub(relationship, "observation", classCode="OBS", moodCode="EVN")
    if negation_written:
        observation.set("negationInd", "false")
    _templates(observation, templates)
    _code(observation, "code", _STATUS_CODE)
    _text(observation, reference)
    _sub(observation, "statusCode", code="completed")
    _code(observation, "value", status, xsi_type="CE")


# --------------------------------------------------------------------------- XML reading helpers


def _same_signature(element: etree._Element) -> tuple[object, ...]:
    attributes = {}
    for key, raw in element.attrib.items():
        value = str(raw)
        if key == "codeSystemName":
            continue
        if key == _XSI_TYPE:
            value = value.rpartition(":")[2]
        attributes[key] = value.strip()
    if element.tag == hl7("observationRange"):  # the CDA schema's default and fixed values: the same said
        attributes.setdefault("classCode", "OBS")
        attributes.setdefault("moodCode", "EVN.CRT")
    # The element's own text with the text after each child (mixed content): text a reader drops after a
    # <reference/> must make the comparison fail, not vanish from the typed model.
    text = ((element.text or "") + "".join(child.tail or "" for child in element)).strip()
    if attributes.get("representation") == "B64":
        text = "".join(text.split())  # base64 wrapped over lines says the same bytes
    return element.tag, attributes, text


def same_element(a: etree._Element, b: etree._Element) -> bool:
    """Whether ``a`` and ``b`` say the same: names, attributes, text (also between children), children in order.

    Comments, processing instructions, white space around text (and inside base64) and
    ``codeSystemName`` are left out; ``xsi:type`` compares by the type it names, and an
    ``observationRange`` without ``classCode``/``moodCode`` has the schema's ``OBS``/``EVN.CRT``.
    """
    if _same_signature(a) != _same_signature(b):
        return False
    children_a = [c for c in a if isinstance(c.tag, str)]
    children_b = [c for c in b if isinstance(c.tag, str)]
    return len(children_a) == len(children_b) and all(
        same_element(x, y) for x, y in zip(children_a, children_b, strict=True)
    )


def _decline(what: str) -> ValidationError:
    return ValidationError(f"not read as a typed entry: {what}", problems=(what,))


def _elements(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _only(element: etree._Element, allowed: set[str]) -> None:
    """Decline when ``element`` has a child the model does not hold."""
    for child in _elements(element):
        if child.tag != hl7(local_name(child)) or local_name(child) not in allowed:
            raise _decline(f"<{local_name(element)}> holds <{local_name(child)}>")


def _all(element: etree._Element, name: str) -> list[etree._Element]:
    return element.findall(hl7(name))


def _one(element: etree._Element, name: str) -> etree._Element:
    found = _all(element, name)
    if len(found) != 1:
        raise _decline(f"<{local_name(element)}> has {len(found)} <{name}>")
    return found[0]


def _opt(element: etree._Element, name: str) -> etree._Element | None:
    found = _all(element, name)
    if len(found) > 1:
        raise _decline(f"<{local_name(element)}> has {len(found)} <{name}>")
    return found[0] if found else None


def _template_roots(element: etree._Element) -> tuple[str, ...]:
    return tuple(t.get("root") or "" for t in _all(element, "templateId"))


def _expect_templates(element: etree._Element, expected: tuple[str, ...]) -> None:
    if set(_template_roots(element)) != set(expected):
        raise _decline(f"<{local_name(element)}> has other templateIds than {expected[-1]} expects")


def _statement(entry: etree._Element, name: str) -> etree._Element:
    if entry.tag != hl7("entry"):
        raise _decline("not an <entry>")
    if set(entry.attrib) - {"typeCode"}:
        raise _decline("an <entry> with attributes other than typeCode")
    statements = _elements(entry)
    if len(statements) != 1 or statements[0].tag != hl7(name):
        raise _decline(f"the entry is not one <{name}>")
    return statements[0]


def _required_id(element: etree._Element) -> InstanceId:
    """The statement's one id; declined when missing, since a rebuild would invent one."""
    found = _read_ii(_opt(element, "id"))
    if found is None:
        raise _decline(f"<{local_name(element)}> without id")
    return found


def _read_ii(element: etree._Element | None) -> InstanceId | None:
    if element is None or element.get("nullFlavor") is not None:
        return None
    root = element.get("root")
    if not root:
        raise _decline("an id without root")
    return InstanceId(root=root, extension=element.get("extension"))


def _read_code(element: etree._Element | None, *, allow_children: set[str] | None = None) -> Code | None:
    if element is None:
        return None
    _only(element, {"originalText"} | (allow_children or set()))
    code, system = element.get("code"), element.get("codeSystem")
    if code is None and system is None:
        return None
    if not code or not system:
        raise _decline(f"<{local_name(element)}> lacks its code or code system")
    return Code.of(code, system, element.get("displayName"))


def _read_reference(element: etree._Element | None) -> str | None:
    """The target of ``<text>`` / ``<originalText>``'s reference, without ``#``."""
    if element is None:
        return None
    _only(element, {"reference"})
    if (element.text or "").strip():
        raise _decline(f"<{local_name(element)}> carries text of its own")
    reference = _opt(element, "reference")
    if reference is None:
        return None
    value = (reference.get("value") or "").removeprefix("#")
    return value or None


def _original_reference(element: etree._Element | None) -> str | None:
    return _read_reference(_opt(element, "originalText")) if element is not None else None


def _read_time(element: etree._Element | None) -> date | datetime | None:
    if element is None or element.get("nullFlavor") is not None:
        return None
    _only(element, set())
    value = element.get("value")
    if value is None:
        raise _decline(f"<{local_name(element)}> has no value")
    if len(value) in (4, 6):
        raise _decline("a time given as a year or a month only")
    return parse_ts(value)  # its ValidationError declines the entry


def _read_interval(element: etree._Element | None) -> tuple[date | datetime | None, date | datetime | None]:
    if element is None or element.get("nullFlavor") is not None:
        return None, None
    _only(element, {"low", "high"})
    if element.get("value") is not None:
        raise _decline("an interval given as a single value")
    return _read_time(_opt(element, "low")), _read_time(_opt(element, "high"))


def _read_pq(element: etree._Element | None, *, translated: bool = False) -> Quantity | None:
    if element is None or element.get("nullFlavor") is not None:
        return None
    _only(element, {"translation"} if translated else set())
    value = element.get("value")
    if value is None:
        return None
    try:
        return Quantity(value=Decimal(value), unit=element.get("unit") or "1")
    except InvalidOperation:
        raise _decline(f"quantity {value!r}") from None


def _read_range(element: etree._Element | None, *, translated: bool = False) -> Quantity | None:
    """A ``low``/``high`` range whose bounds are equal (how a single dose is written), else declined.

    ``translated``: each bound carries a ``translation`` (read by ``_read_dose_references``).
    """
    if element is None or element.get("nullFlavor") is not None:
        return None
    _only(element, {"low", "high"})
    low = _read_pq(_opt(element, "low"), translated=translated)
    high = _read_pq(_opt(element, "high"), translated=translated)
    if low is None and high is None:
        return None
    if low != high:
        raise _decline("a dose range whose bounds differ")
    return low


def _check_concern(
    act: etree._Element, low: date | datetime | None, high: date | datetime | None, *, ended: bool = False
) -> None:
    """Decline a concern act whose status or times differ from what the model writes."""
    status = _opt(act, "statusCode")
    expected = "completed" if high is not None or ended else "active"
    if status is None or status.get("code") != expected:
        raise _decline(f"a concern whose status is not {expected}")
    if _read_interval(_opt(act, "effectiveTime")) != (low, high):
        raise _decline("a concern whose times differ from its observation's")
    code = _opt(act, "code")
    if code is None or code.get("nullFlavor") != "NA" or len(code):
        raise _decline("a concern with a code")


def _check_observation_flags(element: etree._Element) -> None:
    if element.get("negationInd") == "true":
        raise _decline("a negated observation")


def _read_status(relationship: etree._Element) -> tuple[Code, str | None]:
    status, reference, _, _ = _read_status_as_written(relationship)
    return status, reference


def _read_status_as_written(relationship: etree._Element) -> tuple[Code, str | None, tuple[str, ...], bool]:
    """The status, its narrative reference, its templateIds in the order read, whether ``negationInd`` is written."""
    if relationship.get("typeCode") != "REFR" or relationship.get("inversionInd") == "true":
        raise _decline("a status relationship that is not REFR")
    _only(relationship, {"observation"})
    observation = _one(relationship, "observation")
    _check_observation_flags(observation)
    _only(observation, {"templateId", "code", "text", "statusCode", "value"})
    _expect_templates(observation, STATUS_TEMPLATES)
    code = _read_code(_one(observation, "code"))
    status = _read_code(_one(observation, "value"))
    if code is None or code.code != _STATUS_CODE.code or status is None:
        raise _decline("a status observation without its status")
    written = observation.get("negationInd") is not None
    return status, _read_reference(_opt(observation, "text")), _template_roots(observation), written


# --------------------------------------------------------------------------- problems


def _check_order(start: date | datetime | None, end: date | datetime | None, where: str) -> None:
    if start is not None and end is not None:
        try:
            Period(low=start, high=end)
        except ValidationError:
            raise ValidationError(f"{where}: the end is before the start", problems=(f"{where}.end",)) from None


class Problem(VoletEntry):
    """A problem, current or past (FR-Liste-des-problemes holding one FR-Probleme).

    ``value`` is the problem itself (a CIM-10 code …); ``kind`` says what sort of
    statement it is (JDV_ProblemCodes, a diagnosis by default). Without ``end`` the
    concern is ``active``; with one it is ``completed``::

        <entry><act classCode="ACT" moodCode="EVN"><templateId root="1.2.250.1.213.1.1.3.39"/>…
          <code nullFlavor="NA"/><statusCode code="active"/><effectiveTime><low value="20190811"/></effectiveTime>
          <entryRelationship typeCode="SUBJ" inversionInd="false">
            <observation classCode="OBS" moodCode="EVN" negationInd="false">…
              <code code="282291009" displayName="interprétation diagnostique" codeSystem="2.16.840.1.113883.6.96"/>
              <text><reference value="#pb-1"/></text><statusCode code="completed"/>…
              <value xsi:type="CD" code="I20.0" codeSystem="2.16.840.1.113883.6.3" …>
                <originalText><reference value="#pb-1"/></originalText></value>
    """

    value: Code
    """The problem (CIM-10 ``2.16.840.1.113883.6.3``, SNOMED CT …), with its display name."""
    kind: Code = ProblemKind.DIAGNOSIS
    """What the statement is (JDV_ProblemCodes: diagnosis, symptom, complaint …)."""
    start: Timestamp | None = None
    """Onset; None writes ``nullFlavor="UNK"``."""
    end: Timestamp | None = None
    """Resolution; makes the concern ``completed``."""
    clinical_status: Code | None = None
    """FR-Statut-du-probleme (JDV_HL7_ConditionClinical: active, resolved …), if stated."""
    status_reference: str | None = None
    """``ID`` of the narrative content showing the status (set by the volet builders)."""
    concern_id: InstanceId = Field(default_factory=_new_id)
    """Id of the concern act that wraps the problem (what a treatment's reason refers to)."""
    end_unknown: bool = False
    """The problem is over but nobody knows since when: the concern is ``completed`` and both
    ``high`` are written ``nullFlavor="UNK"`` (the LDL-EES example's history). Needs ``end`` None."""
    value_pointer: str | None = None
    """The value's ``originalText/reference/@value`` exactly as written, when it is not ``#`` and
    ``reference`` (the LDL-EES example points at ``ant-med-001-pb``, without ``#``); None writes
    ``#`` and ``reference``."""

    @model_validator(mode="after")
    def _order(self) -> Self:
        _check_order(self.start, self.end, "problem")
        if self.end_unknown and self.end is not None:
            raise ValidationError(
                "a problem's end is either known (end) or unknown (end_unknown), not both", problems=("end_unknown",)
            )
        return self

    def value_set_problems(self) -> list[str]:
        """The kind must be in JDV_ProblemCodes and the status in JDV_HL7_ConditionClinical."""
        problems = []
        if self.kind not in JDV_PROBLEM_CODES:
            problems.append(f"problem.kind: {self.kind.code} is not in {JDV_PROBLEM_CODES.name}")
        if self.clinical_status is not None and self.clinical_status not in JDV_HL7_CONDITION_CLINICAL:
            problems.append(
                f"problem.clinical_status: {self.clinical_status.code} is not in {JDV_HL7_CONDITION_CLINICAL.name}"
            )
        return problems

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the concern act and its problem observation."""
        entry = self._entry()
        act = _sub(entry, "act", classCode="ACT", moodCode="EVN")
        _templates(act, PROBLEM_CONCERN_TEMPLATES)
        _ii(act, self.concern_id)
        _sub(act, "code", nullFlavor="NA")
        ended = self.end is not None or self.end_unknown
        _sub(act, "statusCode", code="completed" if ended else "active")
        _interval(act, self.start, self.end, always_high=self.end_unknown)
        relationship = _sub(act, "entryRelationship", typeCode="SUBJ", inversionInd="false")
        observation = _sub(relationship, "observation", classCode="OBS", moodCode="EVN", negationInd="false")
        _templates(observation, PROBLEM_TEMPLATES)
        _ii(observation, self.id)
        _code(observation, "code", self.kind)
        _text(observation, self.reference)
        _sub(observation, "statusCode", code="completed")
        _interval(observation, self.start, self.end, always_high=self.end_unknown)
        if self.value_pointer is None:
            _code(observation, "value", self.value, xsi_type="CD", reference=self.reference)
        else:
            value = _code(observation, "value", self.value, xsi_type="CD")
            _sub(_sub(value, "originalText"), "reference", value=self.value_pointer)
        if self.clinical_status is not None:
            _status(observation, self.clinical_status, self.status_reference)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> Problem:
        """Read an FR-Liste-des-problemes entry holding exactly one FR-Probleme."""
        act = _statement(element, "act")
        _only(act, {"templateId", "id", "code", "statusCode", "effectiveTime", "entryRelationship"})
        _expect_templates(act, PROBLEM_CONCERN_TEMPLATES)
        relationship = _one(act, "entryRelationship")
        if relationship.get("typeCode") != "SUBJ" or relationship.get("inversionInd") == "true":
            raise _decline("a problem relationship that is not SUBJ")
        _only(relationship, {"observation"})
        observation = _one(relationship, "observation")
        _check_observation_flags(observation)
        allowed = {"templateId", "id", "code", "text", "statusCode", "effectiveTime", "value", "entryRelationship"}
        _only(observation, allowed)
        _expect_templates(observation, PROBLEM_TEMPLATES)
        times = _opt(observation, "effectiveTime")
        start, end = _read_interval(times)
        status_element = _opt(act, "statusCode")
        high = _opt(times, "high") if times is not None else None
        end_unknown = (
            end is None
            and status_element is not None
            and status_element.get("code") == "completed"
            and high is not None
            and high.get("nullFlavor") == "UNK"
        )
        _check_concern(act, start, end, ended=end_unknown)
        value_element = _one(observation, "value")
        value = _read_code(value_element)
        kind = _read_code(_one(observation, "code"))
        if value is None or kind is None:
            raise _decline("a problem without its code or value")
        status = status_reference = None
        statuses = _all(observation, "entryRelationship")
        if len(statuses) > 1:
            raise _decline("a problem with several relationships")
        if statuses:
            status, status_reference = _read_status(statuses[0])
        reference = _read_reference(_opt(observation, "text"))
        pointer = _raw_pointer(value_element)
        value_pointer = None
        if _original_reference(value_element) != reference or (pointer is not None and pointer != f"#{reference}"):
            if pointer is None:
                raise _decline("a problem whose value points elsewhere than its text")
            value_pointer = pointer
        problem = cls(
            id=_required_id(observation),
            concern_id=_required_id(act),
            reference=reference,
            entry_type_code=element.get("typeCode"),
            value=value,
            kind=kind,
            start=start,
            end=end,
            clinical_status=status,
            status_reference=status_reference,
            end_unknown=end_unknown,
            value_pointer=value_pointer,
        )
        if (end_unknown or value_pointer is not None) and not same_element(element, problem.to_element()):
            # What the widened fields read is proved by a rewrite equal to the element, child for child.
            raise _decline("a problem with an unknown end or a free value pointer that does not rewrite as read")
        return problem


def _raw_pointer(element: etree._Element) -> str | None:
    """``originalText/reference/@value`` exactly as written (``#`` and all), if any."""
    text = _opt(element, "originalText")
    reference = _opt(text, "reference") if text is not None else None
    return reference.get("value") if reference is not None else None


# --------------------------------------------------------------------------- allergies


class AllergyReaction(_Model):
    """A reaction tied to an allergy (an FR-Probleme under ``entryRelationship typeCode="MFST"``).

    The allergy says what the patient reacts to; a reaction says what happened on exposure,
    or, ``negated``, what was looked for and did not happen. The LDL-EES example writes::

        <entryRelationship typeCode="MFST" inversionInd="false">
          <observation classCode="OBS" moodCode="EVN" negationInd="true"><templateId root="1.2.250.1.213.1.1.3.37"/>…
            <id …/><code code="418799008" codeSystem="2.16.840.1.113883.6.96" …/>
            <text><reference value="#allergie-reaction-001"/></text><statusCode code="completed"/>
            <effectiveTime><low value="20180221"/></effectiveTime>
            <value xsi:type="CD" code="126485001" displayName="urticaire" codeSystem="2.16.840.1.113883.6.96">
              <originalText><reference value="#allergie-reaction-001"/></originalText></value>
    """

    value: Code
    """The manifestation (``126485001`` urticaire …)."""
    kind: Code = ProblemKind.SYMPTOM
    """What the statement is (JDV_ProblemCodes; the kit writes the symptom code ``418799008``)."""
    negated: bool | None = False
    """``negationInd``: True states the reaction did *not* occur; None writes no ``negationInd`` at all."""
    start: Timestamp | None = None
    """Onset of the reaction; None writes ``nullFlavor="UNK"``."""
    end: Timestamp | None = None
    """End of the reaction, if written."""
    id: InstanceId = Field(default_factory=_new_id)
    """Id of the reaction observation; a fresh UUID unless given (kept on parse)."""
    reference: str | None = None
    """``ID`` of the narrative content naming the reaction (the observation's text and value point to it)."""
    template_ids: tuple[str, ...] = REACTION_TEMPLATES
    """The observation's templateIds in the order written: the four of the reaction, any order (kept on parse)."""

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems = []
        if sorted(self.template_ids) != sorted(REACTION_TEMPLATES):
            problems.append("allergy_reaction.template_ids: the reaction's templateIds, each once")
        if self.reference is not None and not _NCNAME.match(self.reference):
            problems.append("allergy_reaction.reference: a narrative reference is an XML ID")
        if problems:
            raise ValidationError("invalid AllergyReaction: " + "; ".join(problems), problems=problems)
        _check_order(self.start, self.end, "allergy_reaction")
        return self

    def write(self, parent: etree._Element) -> None:
        """Append the ``MFST`` relationship holding this reaction to the allergy ``parent``."""
        relationship = _sub(parent, "entryRelationship", typeCode="MFST", inversionInd="false")
        observation = _sub(relationship, "observation", classCode="OBS", moodCode="EVN")
        if self.negated is not None:
            observation.set("negationInd", "true" if self.negated else "false")
        _templates(observation, self.template_ids)
        _ii(observation, self.id)
        _code(observation, "code", self.kind)
        _text(observation, self.reference)
        _sub(observation, "statusCode", code="completed")
        _interval(observation, self.start, self.end)
        _code(observation, "value", self.value, xsi_type="CD", reference=self.reference)

    @classmethod
    def read(cls, relationship: etree._Element) -> AllergyReaction:
        """Read an ``MFST`` relationship holding one reaction observation (declined otherwise)."""
        if relationship.get("inversionInd") == "true":
            raise _decline("an inverted reaction relationship")
        _only(relationship, {"observation"})
        observation = _one(relationship, "observation")
        if observation.get("moodCode") != "EVN":
            raise _decline("a reaction that is not an event (moodCode)")
        negation = observation.get("negationInd")
        if negation not in (None, "true", "false"):
            raise _decline(f"a reaction with negationInd {negation!r}")
        _only(observation, {"templateId", "id", "code", "text", "statusCode", "effectiveTime", "value"})
        _expect_templates(observation, REACTION_TEMPLATES)
        status = _opt(observation, "statusCode")
        if status is None or status.get("code") != "completed":
            raise _decline("a reaction that is not completed")
        kind = _read_code(_one(observation, "code"))
        value_element = _one(observation, "value")
        value = _read_code(value_element)
        if kind is None or value is None:
            raise _decline("a reaction without its code or value")
        reference = _read_reference(_opt(observation, "text"))
        if _original_reference(value_element) != reference:
            raise _decline("a reaction whose value points elsewhere than its text")
        start, end = _read_interval(_opt(observation, "effectiveTime"))
        return cls(
            id=_required_id(observation),
            reference=reference,
            value=value,
            kind=kind,
            negated=None if negation is None else negation == "true",
            start=start,
            end=end,
            template_ids=_template_roots(observation),
        )


class AllergySeverity(_Model):
    """How severe an allergy is (FR-Severite, ``entryRelationship typeCode="SUBJ" inversionInd="true"``).

    ``<observation classCode="OBS" moodCode="EVN"><templateId root="1.2.250.1.213.1.1.3.29"/>…``
    ``<code code="SEV" codeSystem="2.16.840.1.113883.5.4" …/><text><reference value="#allergie-severite-001"/></text>``
    ``<statusCode code="completed"/><value xsi:type="CD" code="6736007" displayName="modéré" …/></observation>``
    """

    code: Code
    """The severity (jdv-severite-observation-cisis: ``6736007`` modéré …)."""
    reference: str | None = None
    """``ID`` of the narrative content showing the severity."""
    template_ids: tuple[str, ...] = SEVERITY_TEMPLATES
    """The observation's templateIds in the order written: the three of FR-Severite, any order (kept on parse)."""

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems = []
        if sorted(self.template_ids) != sorted(SEVERITY_TEMPLATES):
            problems.append("allergy_severity.template_ids: the FR-Severite templateIds, each once")
        if self.reference is not None and not _NCNAME.match(self.reference):
            problems.append("allergy_severity.reference: a narrative reference is an XML ID")
        if problems:
            raise ValidationError("invalid AllergySeverity: " + "; ".join(problems), problems=problems)
        return self

    def write(self, parent: etree._Element) -> None:
        """Append the inverted ``SUBJ`` relationship holding this severity to the allergy ``parent``."""
        relationship = _sub(parent, "entryRelationship", typeCode="SUBJ", inversionInd="true")
        observation = _sub(relationship, "observation", classCode="OBS", moodCode="EVN")
        _templates(observation, self.template_ids)
        _code(observation, "code", _SEVERITY_CODE)
        _text(observation, self.reference)
        _sub(observation, "statusCode", code="completed")
        _code(observation, "value", self.code, xsi_type="CD")

    @classmethod
    def read(cls, relationship: etree._Element) -> AllergySeverity:
        """Read an inverted ``SUBJ`` relationship holding one FR-Severite (declined otherwise)."""
        _only(relationship, {"observation"})
        observation = _one(relationship, "observation")
        _check_observation_flags(observation)
        _only(observation, {"templateId", "code", "text", "statusCode", "value"})
        _expect_templates(observation, SEVERITY_TEMPLATES)
        code = _read_code(_one(observation, "code"))
        value_element = _one(observation, "value")
        value = _read_code(value_element)
        if code is None or code.code != _SEVERITY_CODE.code or value is None:
            raise _decline("a severity observation without its severity")
        if _original_reference(value_element) is not None:
            raise _decline("a severity whose value points to the narrative")
        return cls(
            code=value, reference=_read_reference(_opt(observation, "text")), template_ids=_template_roots(observation)
        )


class Allergy(VoletEntry):
    """An allergy or intolerance (FR-Liste-des-allergies-et-hypersensibilites holding one
    FR-Allergie-ou-hypersensibilite).

    ``kind`` is the SNOMED CT kind (``416098002`` allergie médicamenteuse …), ``agent`` the
    substance (CIS, ATC, SNOMED CT …), ``reaction`` the clinical manifestation if known;
    ``reactions``, ``severity`` and ``clinical_status`` are the sub-entries the CI-SIS allows::

        <observation classCode="OBS" moodCode="EVN" negationInd="false"><templateId root="1.2.250.1.213.1.1.3.41"/>…
          <code code="416098002" codeSystem="2.16.840.1.113883.6.96" …/><text><reference value="#allergie-1"/></text>
          <statusCode code="completed"/><effectiveTime><low value="20180603"/></effectiveTime>
          <value xsi:type="CD"><originalText><reference value="#allergie-1"/></originalText></value>
          <participant typeCode="CSM"><participantRole classCode="MANU"><playingEntity classCode="MMAT">
            <code code="60234100" codeSystem="1.2.250.1.213.2.3.1" …><originalText>…</originalText></code>…
          <entryRelationship typeCode="MFST" …>(reaction)…<entryRelationship typeCode="SUBJ" inversionInd="true">
          (severity)…<entryRelationship typeCode="REFR" …>(status)…

    The fields after ``concern_id`` keep how a received allergy is written (templateId order, an
    absent ``negationInd``, the concern's own start, a value pointer) so that it is rewritten as read.
    """

    kind: Code
    """The kind of allergy or intolerance, from SNOMED CT (the CI-SIS rule)."""
    agent: Code | None = None
    """The responsible substance, if known."""
    agent_name: str | None = None
    """The substance as named in ``playingEntity/name`` (``Paracétamol``), if written; ``""`` writes
    the empty ``<name/>`` the VSM example has."""
    reaction: Code | None = None
    """The clinical manifestation (``value``), if coded."""
    reactions: tuple[AllergyReaction, ...] = ()
    """Reactions observed (or stated absent) on exposure, each an ``MFST`` FR-Probleme."""
    severity: AllergySeverity | None = None
    """FR-Severite, if stated."""
    start: Timestamp | None = None
    """Since when; None writes ``nullFlavor="UNK"``."""
    end: Timestamp | None = None
    """Until when, for an allergy no longer current; makes the concern ``completed``."""
    clinical_status: Code | None = None
    """FR-Statut-du-probleme (JDV_HL7_allergyintolerance_clinical: active, inactive, resolved), if stated."""
    status_reference: str | None = None
    """``ID`` of the narrative content showing the status (set by the volet builders)."""
    agent_reference: str | None = None
    """``ID`` of the narrative content naming the agent (set by the volet builders)."""
    concern_id: InstanceId = Field(default_factory=_new_id)
    """Id of the concern act that wraps the allergy."""
    kind_reference: str | None = None
    """``ID`` the kind's own ``originalText`` points to, when written (the CARD-F-PRC-TAP example)."""
    concern_start: Timestamp | None = None
    """Start of the concern act (when the allergy was first listed); None writes ``nullFlavor="UNK"``."""
    value_pointer: str | None = None
    """The value's ``originalText/reference/@value`` exactly as written, when it is not ``#`` and
    ``reference`` (the LDL-EES example's bare ``#``); then no ``nullFlavor`` is written for an uncoded value."""
    template_ids: tuple[str, ...] = ALLERGY_TEMPLATES
    """The observation's templateIds in the order written: the five of the allergy, any order (kept on parse)."""
    negation_written: bool = True
    """Whether ``negationInd="false"`` is written on the observation (the LDL-EES example leaves it out)."""
    status_template_ids: tuple[str, ...] = STATUS_TEMPLATES
    """The status observation's templateIds in the order written: the four of FR-Statut-du-probleme."""
    status_negation_written: bool = True
    """Whether ``negationInd="false"`` is written on the status observation."""

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.kind.code_system != SNOMED_CT:
            raise ValidationError(
                f"an allergy's kind is a SNOMED CT code ({SNOMED_CT}), not one of {self.kind.code_system}",
                problems=("allergy.kind.code_system",),
                hint="e.g. Code.of('416098002', '2.16.840.1.113883.6.96', 'allergie médicamenteuse')",
            )
        problems = []
        for name in ("agent_reference", "kind_reference"):
            value = getattr(self, name)
            if value is not None and not _NCNAME.match(value):
                problems.append(f"allergy.{name}: a narrative reference is an XML ID")
        if self.agent_name is not None and self.agent is None:
            problems.append("allergy.agent_name: only with an agent code")
        if sorted(self.template_ids) != sorted(ALLERGY_TEMPLATES):
            problems.append("allergy.template_ids: the allergy's templateIds, each once")
        if sorted(self.status_template_ids) != sorted(STATUS_TEMPLATES):
            problems.append("allergy.status_template_ids: the FR-Statut-du-probleme templateIds, each once")
        if problems:
            raise ValidationError("invalid Allergy: " + "; ".join(problems), problems=problems)
        _check_order(self.start, self.end, "allergy")
        _check_order(self.concern_start, self.end, "allergy concern")
        return self

    def value_set_problems(self) -> list[str]:
        """The status must be in JDV_HL7_allergyintolerance_clinical, a reaction's kind in JDV_ProblemCodes."""
        problems = []
        if self.clinical_status is not None and self.clinical_status not in JDV_HL7_ALLERGYINTOLERANCE_CLINICAL:
            problems.append(
                f"allergy.clinical_status: {self.clinical_status.code} is not in "
                f"{JDV_HL7_ALLERGYINTOLERANCE_CLINICAL.name}"
            )
        for i, reaction in enumerate(self.reactions):
            if reaction.kind not in JDV_PROBLEM_CODES:
                problems.append(f"allergy.reactions[{i}].kind: {reaction.kind.code} is not in {JDV_PROBLEM_CODES.name}")
        return problems

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the concern act and its allergy observation."""
        entry = self._entry()
        act = _sub(entry, "act", classCode="ACT", moodCode="EVN")
        _templates(act, ALLERGY_CONCERN_TEMPLATES)
        _ii(act, self.concern_id)
        _sub(act, "code", nullFlavor="NA")
        _sub(act, "statusCode", code="completed" if self.end is not None else "active")
        _interval(act, self.concern_start, self.end)
        relationship = _sub(act, "entryRelationship", typeCode="SUBJ", inversionInd="false")
        observation = _sub(relationship, "observation", classCode="OBS", moodCode="EVN")
        if self.negation_written:
            observation.set("negationInd", "false")
        _templates(observation, self.template_ids)
        _ii(observation, self.id)
        _code(observation, "code", self.kind, reference=self.kind_reference)
        _text(observation, self.reference)
        _sub(observation, "statusCode", code="completed")
        _interval(observation, self.start, self.end, xsi_type=True)
        _code(observation, "value", self.reaction, xsi_type="CD", reference=self.reference, pointer=self.value_pointer)
        if self.agent is not None:
            participant = _sub(observation, "participant", typeCode="CSM")
            role = _sub(participant, "participantRole", classCode="MANU")
            entity = _sub(role, "playingEntity", classCode="MMAT")
            _code(entity, "code", self.agent, reference=self.agent_reference)
            if self.agent_name is not None:
                _sub(entity, "name").text = self.agent_name
        for reaction in self.reactions:
            reaction.write(observation)
        if self.severity is not None:
            self.severity.write(observation)
        if self.clinical_status is not None:
            _status(
                observation,
                self.clinical_status,
                self.status_reference,
                templates=self.status_template_ids,
                negation_written=self.status_negation_written,
            )
        return entry

    def _as_the_builder_writes(self) -> bool:
        return (
            self.concern_start is None
            and self.kind_reference is None
            and self.value_pointer is None
            and self.agent_name is None
            and not self.reactions
            and self.severity is None
            and self.template_ids == ALLERGY_TEMPLATES
            and self.negation_written
            and self.status_template_ids == STATUS_TEMPLATES
            and self.status_negation_written
        )

    @classmethod
    def from_element(cls, element: etree._Element) -> Allergy:
        """Read an allergy list entry holding exactly one allergy."""
        act = _statement(element, "act")
        _only(act, {"templateId", "id", "code", "statusCode", "effectiveTime", "entryRelationship"})
        _expect_templates(act, ALLERGY_CONCERN_TEMPLATES)
        relationship = _one(act, "entryRelationship")
        if relationship.get("typeCode") != "SUBJ" or relationship.get("inversionInd") == "true":
            raise _decline("an allergy relationship that is not SUBJ")
        _only(relationship, {"observation"})
        observation = _one(relationship, "observation")
        _check_observation_flags(observation)
        allowed = {"templateId", "id", "code", "text", "statusCode", "effectiveTime", "value"}
        _only(observation, allowed | {"participant", "entryRelationship"})
        _expect_templates(observation, ALLERGY_TEMPLATES)
        kind_element = _one(observation, "code")
        kind = _read_code(kind_element)
        if kind is None:
            raise _decline("an allergy without its kind")
        value_element = _one(observation, "value")
        reference = _read_reference(_opt(observation, "text"))
        pointer = _raw_pointer(value_element)
        value_pointer = None
        if pointer is not None and pointer != f"#{reference}":
            value_pointer = pointer
        agent, agent_reference, agent_name = _read_agent(_opt(observation, "participant"))
        reactions: list[AllergyReaction] = []
        severity = None
        status = status_reference = None
        status_roots: tuple[str, ...] = STATUS_TEMPLATES
        status_negation = True
        for sub in _all(observation, "entryRelationship"):
            kind_of = (sub.get("typeCode"), sub.get("inversionInd") == "true")
            if kind_of == ("MFST", False) and severity is None and status is None:
                reactions.append(AllergyReaction.read(sub))
            elif kind_of == ("SUBJ", True) and severity is None and status is None:
                severity = AllergySeverity.read(sub)
            elif kind_of[0] == "REFR" and status is None:
                status, status_reference, status_roots, status_negation = _read_status_as_written(sub)
            else:
                raise _decline("an allergy relationship the model does not hold, or out of order")
        start, end = _read_interval(_opt(observation, "effectiveTime"))
        concern_start, _ = _read_interval(_opt(act, "effectiveTime"))
        _check_concern(act, concern_start, end)
        allergy = cls(
            id=_required_id(observation),
            concern_id=_required_id(act),
            reference=reference,
            entry_type_code=element.get("typeCode"),
            kind=kind,
            agent=agent,
            agent_name=agent_name,
            agent_reference=agent_reference,
            reaction=_read_code(value_element),
            reactions=tuple(reactions),
            severity=severity,
            start=start,
            end=end,
            clinical_status=status,
            status_reference=status_reference,
            kind_reference=_original_reference(kind_element),
            concern_start=concern_start,
            value_pointer=value_pointer,
            template_ids=_roots_or(_template_roots(observation), ALLERGY_TEMPLATES),
            negation_written=observation.get("negationInd") is not None,
            status_template_ids=_roots_or(status_roots, STATUS_TEMPLATES),
            status_negation_written=status_negation,
        )
        if not allergy._as_the_builder_writes() and not same_element(element, allergy.to_element()):
            # What the widened fields read is proved by a rewrite equal to the element, child for child.
            raise _decline("an allergy with sub-entries or a layout of its own that does not rewrite as read")
        return allergy


def _read_agent(participant: etree._Element | None) -> tuple[Code | None, str | None, str | None]:
    """The agent's code, its narrative reference and its name, if any."""
    if participant is None:
        return None, None, None
    if participant.get("typeCode") != "CSM":
        raise _decline("an allergy participant that is not the consumable")
    _only(participant, {"participantRole"})
    role = _one(participant, "participantRole")
    _only(role, {"playingEntity"})
    entity = _one(role, "playingEntity")
    _only(entity, {"code", "name"})
    name_element = _opt(entity, "name")
    name = None
    if name_element is not None:
        if len(name_element):
            raise _decline("an allergy agent with a structured name")
        if name_element.attrib:
            raise _decline("an allergy agent name with attributes")
        name = (name_element.text or "").strip()
    code_element = _one(entity, "code")
    return _read_code(code_element), _original_reference(code_element), name


# --------------------------------------------------------------------------- medications


class Medication(VoletEntry):
    """A treatment (FR-Traitement with its FR-Produit-de-sante), as the VSM and LDL-SES list them.

    ``<entry><substanceAdministration classCode="SBADM" moodCode="EVN"><templateId root="1.2.250.1.213.1.1.3.42"/>…``
    ``<effectiveTime xsi:type="IVL_TS"><low value="20190811"/><high nullFlavor="UNK"/></effectiveTime>``
    ``<effectiveTime xsi:type="PIVL_TS" operator="A"><period value="1" unit="d"/></effectiveTime>``
    ``<routeCode code="20053000" codeSystem="0.4.0.127.0.16.1.1.2.1" …/><doseQuantity><low …/><high …/></doseQuantity>``
    ``<consumable><manufacturedProduct>…<manufacturedMaterial>``
    ``<code code="63564053" codeSystem="1.2.250.1.213.2.3.1" …>``
    ``<originalText><reference value="#trt-1"/></originalText></code><name>PLAVIX 75 mg</name>…``
    """

    name: str = Field(min_length=1)
    """The product's (brand) name, ``manufacturedMaterial/name``."""
    product: Code | None = None
    """The product's CIS code (``1.2.250.1.213.2.3.1``), if known."""
    product_translations: tuple[Code, ...] = ()
    """Other codes of the product (CIP ``1.2.250.1.213.2.3.2``, ATC ``2.16.840.1.113883.6.73`` …)."""
    start: Timestamp | None = None
    """Start of the treatment; None writes ``nullFlavor="UNK"``."""
    end: Timestamp | None = None
    """End of the treatment; None writes ``nullFlavor="UNK"``."""
    period: Quantity | None = None
    """Interval between two administrations (``PIVL_TS``): ``Quantity.of(1, "d")`` is once a day."""
    route: Code | None = None
    """Route of administration (EDQM, JDV_RouteofAdministration)."""
    dose: Quantity | None = None
    """Dose per administration (written as a range whose bounds are equal)."""
    rate: Quantity | None = None
    """Rate of administration (``rateQuantity``), e.g. ``Quantity.of(100, "mg/d")``."""
    max_dose: MaxDose | None = None
    """Maximum dose over a period."""
    reason: InternalReference | None = None
    """Why the treatment is given (FR-Reference-interne to a problem)."""
    dose_references: tuple[str, str] | None = None
    """``ID`` of the narrative contents showing the dose's ``low`` and ``high``, written as
    ``translation/originalText`` in each bound (the LDL-EES example's *1 comprimé*); needs ``dose``."""
    template_ids: tuple[str, ...] = MEDICATION_TEMPLATES
    """The statement's templateIds in the order written: the four of FR-Traitement, any order (kept on parse)."""
    product_template_ids: tuple[str, ...] = PRODUCT_TEMPLATES
    """The product's templateIds in the order written: the three of FR-Produit-de-sante, any order."""

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems = []
        if sorted(self.template_ids) != sorted(MEDICATION_TEMPLATES):
            problems.append("medication.template_ids: the FR-Traitement templateIds, each once")
        if sorted(self.product_template_ids) != sorted(PRODUCT_TEMPLATES):
            problems.append("medication.product_template_ids: the FR-Produit-de-sante templateIds, each once")
        if self.dose_references is not None:
            if self.dose is None:
                problems.append("medication.dose_references: only with a dose")
            if not all(_NCNAME.match(r) for r in self.dose_references):
                problems.append("medication.dose_references: narrative references are XML IDs")
        if self.product is not None and self.product.code_system != CIS:
            problems.append(f"medication.product: a CIS code ({CIS}), other codes go in product_translations")
        if self.route is not None and self.route.code_system not in (EDQM, HL7_ROUTE):
            problems.append(f"medication.route: an EDQM ({EDQM}) or HL7 RouteOfAdministration code")
        if problems:
            raise ValidationError("invalid Medication: " + "; ".join(problems), problems=problems)
        _check_order(self.start, self.end, "medication")
        return self

    def value_set_problems(self) -> list[str]:
        """An EDQM route must be in JDV_RouteofAdministration."""
        if self.route is not None and self.route.code_system == EDQM and self.route not in JDV_ROUTEOF_ADMINISTRATION:
            return [f"medication.route: {self.route.code} is not in {JDV_ROUTEOF_ADMINISTRATION.name}"]
        return []

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the substance administration."""
        entry = self._entry()
        administration = _sub(entry, "substanceAdministration", classCode="SBADM", moodCode="EVN")
        _templates(administration, self.template_ids)
        _ii(administration, self.id)
        _code(administration, "code", _DRUG)
        _text(administration, self.reference)
        _sub(administration, "statusCode", code="completed")
        _interval(administration, self.start, self.end, xsi_type=True, always_high=True)
        if self.period is not None:
            frequency = _sub(administration, "effectiveTime", operator="A")
            frequency.set(_XSI_TYPE, "PIVL_TS")
            _pq(frequency, "period", self.period)
        if self.route is not None:
            _code(administration, "routeCode", self.route)
        if self.dose is not None:
            _range(administration, "doseQuantity", self.dose, self.dose_references)
        if self.rate is not None:
            _range(administration, "rateQuantity", self.rate)
        if self.max_dose is not None:
            maximum = _sub(administration, "maxDoseQuantity")
            _pq(maximum, "numerator", self.max_dose.numerator)
            _pq(maximum, "denominator", self.max_dose.denominator)
        product = _sub(_sub(administration, "consumable"), "manufacturedProduct")
        _templates(product, self.product_template_ids)
        material = _sub(product, "manufacturedMaterial")
        code = _code(material, "code", self.product, reference=self.reference, null_flavor="NA")
        if self.product is None:
            code.set("nullFlavor", "NA")
        for translation in self.product_translations:
            _code(code, "translation", translation)
        _sub(material, "name").text = self.name
        if self.reason is not None:
            relationship = _sub(administration, "entryRelationship", typeCode="RSON")
            act = _sub(relationship, "act", classCode="ACT", moodCode="EVN")
            _templates(act, INTERNAL_REFERENCE_TEMPLATES)
            _ii(act, self.reason.id)
            _code(act, "code", self.reason.code, reference=self.reason.reference)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> Medication:
        """Read an FR-Traitement entry whose every part the model holds."""
        administration = _statement(element, "substanceAdministration")
        if administration.get("moodCode") != "EVN":
            raise _decline("a treatment that is not an event (moodCode)")
        allowed = {"templateId", "id", "code", "text", "statusCode", "effectiveTime", "routeCode", "doseQuantity"}
        _only(administration, allowed | {"rateQuantity", "maxDoseQuantity", "consumable", "entryRelationship"})
        _expect_templates(administration, MEDICATION_TEMPLATES)
        code = _read_code(_opt(administration, "code"))
        if code is not None and (code.code, code.code_system) != (_DRUG.code, _DRUG.code_system):
            raise _decline("a treatment whose code is not DRUG")
        start = end = None
        period = None
        for time in _all(administration, "effectiveTime"):
            kind = time.get(_XSI_TYPE)
            if kind == "PIVL_TS" and period is None and time.get("operator") == "A":
                _only(time, {"period"})
                period = _read_pq(_one(time, "period"))
            elif kind in (None, "IVL_TS") and start is None and end is None:
                start, end = _read_interval(time)
            else:
                raise _decline("a treatment time the model does not hold")
        consumable = _one(administration, "consumable")
        _only(consumable, {"manufacturedProduct"})
        product = _one(consumable, "manufacturedProduct")
        _only(product, {"templateId", "manufacturedMaterial"})
        _expect_templates(product, PRODUCT_TEMPLATES)
        material = _one(product, "manufacturedMaterial")
        _only(material, {"code", "name", "lotNumberText"})
        lot = _opt(material, "lotNumberText")
        if lot is not None and (lot.text or "").strip():
            raise _decline("a treatment with a lot number")
        name = (_one(material, "name").text or "").strip()
        if not name:
            # A null name (nullFlavor="NA") is not a name: the entry stays as it came (RawEntry), nothing invented.
            raise _decline("a product without a name")
        code_element = _one(material, "code")
        product_code = _read_code(code_element, allow_children={"translation"})
        translations = tuple(c for c in (_read_code(t) for t in _all(code_element, "translation")) if c is not None)
        reference = _read_reference(_opt(administration, "text"))
        if _original_reference(code_element) not in (None, reference):
            raise _decline("a product that points elsewhere than its treatment's text")
        roots, product_roots = _template_roots(administration), _template_roots(product)
        dose_element = _opt(administration, "doseQuantity")
        dose_references = _read_dose_references(dose_element)
        medication = cls(
            id=_required_id(administration),
            reference=reference,
            entry_type_code=element.get("typeCode"),
            name=name,
            product=product_code,
            product_translations=translations,
            start=start,
            end=end,
            period=period,
            route=_read_code(_opt(administration, "routeCode")),
            dose=_read_range(dose_element, translated=dose_references is not None),
            rate=_read_range(_opt(administration, "rateQuantity")),
            max_dose=_read_max_dose(_opt(administration, "maxDoseQuantity")),
            reason=_read_reason(_all(administration, "entryRelationship")),
            dose_references=dose_references,
            template_ids=_roots_or(roots, MEDICATION_TEMPLATES),
            product_template_ids=_roots_or(product_roots, PRODUCT_TEMPLATES),
        )
        if dose_references is not None and not same_element(element, medication.to_element()):
            # The widened dose is proved by a rewrite equal to the element, child for child.
            raise _decline("a treatment whose dose references do not rewrite as read")
        return medication


def _roots_or(roots: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    """``roots`` when they are ``default`` in another order (each once), else ``default``."""
    return roots if sorted(roots) == sorted(default) else default


def _read_dose_references(element: etree._Element | None) -> tuple[str, str] | None:
    """The narrative IDs of a dose range whose two bounds each carry ``translation/originalText``, else None."""
    if element is None or element.get("nullFlavor") is not None:
        return None
    found: list[str] = []
    for name in ("low", "high"):
        bound = _opt(element, name)
        translation = _opt(bound, "translation") if bound is not None else None
        if translation is None:
            return None
        if translation.attrib:
            raise _decline("a dose translation with a code")
        _only(translation, {"originalText"})
        reference = _original_reference(translation)
        if reference is None:
            raise _decline("a dose translation without its narrative reference")
        found.append(reference)
    return found[0], found[1]


def _read_max_dose(element: etree._Element | None) -> MaxDose | None:
    if element is None or element.get("nullFlavor") is not None:
        return None
    _only(element, {"numerator", "denominator"})
    numerator, denominator = _read_pq(_opt(element, "numerator")), _read_pq(_opt(element, "denominator"))
    if numerator is None and denominator is None:
        return None
    if numerator is None or denominator is None:
        raise _decline("a maximum dose with one side only")
    return MaxDose(numerator=numerator, denominator=denominator)


def _read_reason(relationships: list[etree._Element]) -> InternalReference | None:
    if not relationships:
        return None
    if len(relationships) > 1 or relationships[0].get("typeCode") != "RSON":
        raise _decline("a treatment relationship other than one reason")
    _only(relationships[0], {"act"})
    act = _one(relationships[0], "act")
    _only(act, {"templateId", "id", "code"})
    _expect_templates(act, INTERNAL_REFERENCE_TEMPLATES)
    code_element = _one(act, "code")
    code = _read_code(code_element)
    if code is None:
        raise _decline("a reason without its code")
    return InternalReference(code=code, id=_read_ii(_opt(act, "id")), reference=_original_reference(code_element))


class NoMedication(VoletEntry):
    """A treatment list that holds no treatment, and says why: none is known, or nothing is known.

    The FR-Traitement the ANS writes for it (``Modèles de contenus CDA`` example): the
    statement's code comes from JDV_AbsentOrUnknownMedication and the product is null::

        <substanceAdministration classCode="SBADM" moodCode="EVN"><templateId root="1.2.250.1.213.1.1.3.42"/>…
          <code code="no-known-medications" codeSystem="2.16.840.1.113883.5.1150.1" …>
            <originalText><reference value="#trt-aucun"/></originalText></code>
          <text><reference value="#trt-aucun"/></text><statusCode code="completed"/>
          <effectiveTime xsi:type="IVL_TS"><low nullFlavor="NA"/><high nullFlavor="NA"/></effectiveTime>
          <consumable><manufacturedProduct>…<manufacturedMaterial><code nullFlavor="NA"/><name nullFlavor="NA"/>…
    """

    code: Code = MedicationAbsence.NO_INFORMATION
    """``no-known-medications`` or ``no-medication-info`` (JDV_AbsentOrUnknownMedication)."""

    def value_set_problems(self) -> list[str]:
        """The code must be in JDV_AbsentOrUnknownMedication."""
        if self.code not in JDV_ABSENT_OR_UNKNOWN_MEDICATION:
            return [f"no_medication.code: {self.code.code} is not in {JDV_ABSENT_OR_UNKNOWN_MEDICATION.name}"]
        return []

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the substance administration that states the absence."""
        entry = self._entry()
        administration = _sub(entry, "substanceAdministration", classCode="SBADM", moodCode="EVN")
        _templates(administration, MEDICATION_TEMPLATES)
        _ii(administration, self.id)
        _code(administration, "code", self.code, reference=self.reference)
        _text(administration, self.reference)
        _sub(administration, "statusCode", code="completed")
        times = _sub(administration, "effectiveTime")
        times.set(_XSI_TYPE, "IVL_TS")
        _sub(times, "low", nullFlavor="NA")
        _sub(times, "high", nullFlavor="NA")
        product = _sub(_sub(administration, "consumable"), "manufacturedProduct")
        _templates(product, PRODUCT_TEMPLATES)
        material = _sub(product, "manufacturedMaterial")
        _sub(material, "code", nullFlavor="NA")
        _sub(material, "name", nullFlavor="NA")
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> NoMedication:
        """Read an FR-Traitement that states no treatment."""
        administration = _statement(element, "substanceAdministration")
        _only(administration, {"templateId", "id", "code", "text", "statusCode", "effectiveTime", "consumable"})
        _expect_templates(administration, MEDICATION_TEMPLATES)
        code_element = _one(administration, "code")
        code = _read_code(code_element)
        if code is None or code.code_system != ABSENT_OR_UNKNOWN:
            raise _decline("a treatment that is not an absence")
        if _read_interval(_opt(administration, "effectiveTime")) != (None, None):
            raise _decline("an absence of treatment with times")
        consumable = _one(administration, "consumable")
        _only(consumable, {"manufacturedProduct"})
        product = _one(consumable, "manufacturedProduct")
        _only(product, {"templateId", "manufacturedMaterial"})
        material = _one(product, "manufacturedMaterial")
        _only(material, {"code", "name"})
        if _read_code(_opt(material, "code")) is not None or (_one(material, "name").text or "").strip():
            raise _decline("an absence of treatment that names a product")
        reference = _read_reference(_opt(administration, "text")) or _original_reference(code_element)
        return cls(
            id=_required_id(administration), reference=reference, entry_type_code=element.get("typeCode"), code=code
        )


def read_treatment(element: etree._Element) -> Medication | NoMedication:
    """The reader of FR-Traitement entries: a treatment, or the statement that there is none."""
    administration = _statement(element, "substanceAdministration")
    code = _opt(administration, "code")
    if code is not None and code.get("codeSystem") == ABSENT_OR_UNKNOWN:
        return NoMedication.from_element(element)
    return Medication.from_element(element)


# --------------------------------------------------------------------------- simple observations


ObservationValue = Code | bool | str
"""What a simple observation states: a code, a yes/no, or free text."""


class SimpleObservation(VoletEntry):
    """An FR-Simple-Observation (``1.2.250.1.213.1.1.3.48``) or one of its specialisations.

    The LDL-SES is made of them (admission and discharge modes, stay summary, transfusion …);
    ``template_ids`` are the specialisation's own templateIds, written after the IHE and
    CI-SIS simple-observation ones::

        <observation classCode="OBS" moodCode="EVN"><templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.13"/>
          <templateId root="1.2.250.1.213.1.1.3.48"/><templateId root="1.2.250.1.213.1.1.3.48.6"/><id …/>
          <code code="ORG-070" codeSystem="1.2.250.1.213.1.1.4.322" displayName="Modalité d'entrée"/>
          <text><reference value="#modalite-entree"/></text><statusCode code="completed"/>
          <effectiveTime value="20191029"/><value xsi:type="CE" code="107724000" …/></observation>
    """

    code: Code
    """What is observed."""
    value: ObservationValue | None = None
    """A code (``CD``/``CE``), a boolean (``BL``) or text (``ST``); None writes no value."""
    value_type: Literal["CD", "CE"] = "CD"
    """The data type written for a coded value."""
    effective_time: Timestamp | None = None
    """When; None writes ``nullFlavor="NA"``."""
    template_ids: tuple[str, ...] = ()
    """The specialisation's templateIds (``1.2.250.1.213.1.1.3.48.6`` …)."""

    @field_validator("template_ids")
    @classmethod
    def _oids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for root in value:
            if root in SIMPLE_OBSERVATION_TEMPLATES or not re.match(r"^[0-2](\.(0|[1-9][0-9]*))+$", root):
                raise ValidationError(
                    "template_ids are the specialisation's OIDs (the simple-observation ones are written anyway)",
                    problems=("template_ids",),
                )
        return value

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the observation."""
        entry = self._entry()
        observation = _sub(entry, "observation", classCode="OBS", moodCode="EVN")
        _templates(observation, SIMPLE_OBSERVATION_TEMPLATES + self.template_ids)
        _ii(observation, self.id)
        _code(observation, "code", self.code)
        _text(observation, self.reference)
        _sub(observation, "statusCode", code="completed")
        _time(observation, "effectiveTime", self.effective_time, null_flavor="NA")
        value = self.value
        if isinstance(value, bool):
            element = _sub(observation, "value", value="true" if value else "false")
            element.set(_XSI_TYPE, "BL")
        elif isinstance(value, str):
            element = _sub(observation, "value")
            element.set(_XSI_TYPE, "ST")
            element.text = value
        elif isinstance(value, Code):
            _code(observation, "value", value, xsi_type=self.value_type)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> SimpleObservation:
        """Read a simple observation whose value is a code, a boolean or text."""
        observation = _statement(element, "observation")
        if observation.get("moodCode") != "EVN":
            raise _decline("an observation that is not an event (moodCode)")
        _check_observation_flags(observation)
        _only(observation, {"templateId", "id", "code", "text", "statusCode", "effectiveTime", "value"})
        roots = _template_roots(observation)
        if roots[: len(SIMPLE_OBSERVATION_TEMPLATES)] != SIMPLE_OBSERVATION_TEMPLATES:
            raise _decline("a simple observation whose templateIds are not in the usual order")
        status = _opt(observation, "statusCode")
        if status is not None and status.get("code") != "completed":
            raise _decline("an observation that is not completed")
        code = _read_code(_one(observation, "code"))
        if code is None:
            raise _decline("an observation without code")
        time_element = _opt(observation, "effectiveTime")
        if time_element is not None and time_element.get("nullFlavor") not in (None, "NA"):
            raise _decline("an observation time with another null flavor")
        value: ObservationValue | None = None
        value_type: Literal["CD", "CE"] = "CD"
        value_element = _opt(observation, "value")
        if value_element is not None:
            kind = value_element.get(_XSI_TYPE)
            if kind == "BL" and value_element.get("value") in ("true", "false"):
                _only(value_element, set())
                value = value_element.get("value") == "true"
            elif kind == "ST":
                _only(value_element, set())
                value = value_element.text or ""
            elif kind in ("CD", "CE"):
                value = _read_code(value_element)
                value_type = "CE" if kind == "CE" else "CD"
                if value is None or _original_reference(value_element) is not None:
                    raise _decline("a coded observation value the model does not hold")
            else:
                raise _decline(f"an observation value of type {kind}")
        return cls(
            id=_required_id(observation),
            reference=_read_reference(_opt(observation, "text")),
            entry_type_code=element.get("typeCode"),
            code=code,
            value=value,
            value_type=value_type,
            effective_time=_read_time(time_element),
            template_ids=roots[len(SIMPLE_OBSERVATION_TEMPLATES) :],
        )


# --------------------------------------------------------------------------- narrative helpers

Cell = str | tuple[str, str] | list[tuple[str, str]]
"""A narrative table cell: text, ``(text, ID)`` for text an entry points to, or a list of such pairs."""


def narrative_table(
    headers: tuple[str, ...], rows: Sequence[tuple[Cell, ...]], *, notes: tuple[str, ...] = ()
) -> Narrative:
    """A section narrative holding one table (and paragraphs after it), in the layout of the ANS examples.

    ``<text><table border="1"><thead><tr><th>Pathologie</th>…</tr></thead>``
    ``<tbody><tr><td><content ID="pb-1">Angine de poitrine instable</content></td>…</tr></tbody></table></text>``
    """
    text = new_root("text")
    table = _sub(text, "table", border="1")
    head = _sub(_sub(table, "thead"), "tr")
    for header in headers:
        _sub(head, "th").text = header
    body = _sub(table, "tbody")
    for row in rows:
        tr = _sub(body, "tr")
        for cell in row:
            td = _sub(tr, "td")
            if isinstance(cell, list):
                for k, (shown, anchor) in enumerate(cell):
                    content = _sub(td, "content", ID=anchor)
                    content.text = shown
                    if k < len(cell) - 1:
                        content.tail = "; "
            elif isinstance(cell, tuple):
                _sub(td, "content", ID=cell[1]).text = cell[0]
            elif cell:
                td.text = cell
    for note in notes:
        _sub(text, "paragraph").text = note
    return Narrative.from_element(text)


def narrative_statement(statement: str, reference: str, *notes: str) -> Narrative:
    """A narrative whose first paragraph is the content an entry points to, then free paragraphs.

    ``<text><paragraph><content ID="trt-aucun">Pas de traitement médicamenteux connu</content></paragraph></text>``
    """
    text = new_root("text")
    _sub(_sub(text, "paragraph"), "content", ID=reference).text = statement
    for note in notes:
        _sub(text, "paragraph").text = note
    return Narrative.from_element(text)


def check_anchors(sections: tuple[Section, ...], where: str) -> None:
    """Refuse a body whose narrative anchors (``ID``) repeat, or whose entries point to none.

    The builders number their anchors; a reference the caller chose may clash with one.
    """
    anchors: list[str] = []
    references: list[str] = []

    def walk(items: tuple[Section, ...]) -> None:
        for section in items:
            if section.text is not None:
                anchors.extend(e.get("ID") or "" for e in section.text.to_element().iter() if e.get("ID"))
            for entry in section.entries:
                element = entry.to_element()
                values = (r.get("value") or "" for r in element.iter(hl7("reference")))
                # a URL (a DICOM object's WADO link) is no narrative pointer
                references.extend(v.removeprefix("#") for v in values if v.startswith("#"))
            walk(section.subsections)

    walk(sections)
    problems = [
        f"{where}: the narrative anchor {a!r} is used twice" for a in sorted(set(anchors)) if anchors.count(a) > 1
    ]
    problems += [
        f"{where}: a reference to {r!r}, which no narrative holds" for r in sorted(set(references) - set(anchors))
    ]
    if problems:
        raise ValidationError("the narrative references do not match: " + "; ".join(problems), problems=problems)


def narrative_paragraphs(*paragraphs: str) -> Narrative:
    """A section narrative of paragraphs."""
    return Narrative.from_paragraphs(*paragraphs)


def show_time(value: date | datetime | None) -> str:
    """A date as French readers expect it: ``11/08/2019``, ``11/08/2019 14:30``; empty when unknown."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y %H:%M")
    return value.strftime("%d/%m/%Y")


def show_code(code: Code | None) -> str:
    """A code's display name, or the code itself when it has none."""
    if code is None:
        return ""
    return code.display_name or code.code


def show_quantity(quantity: Quantity | None) -> str:
    """``1 {tablet}``, ``100 mg/d``; the unit ``1`` is not shown."""
    if quantity is None:
        return ""
    number = format(quantity.value, "f")
    return number if quantity.unit == "1" else f"{number} {quantity.unit}"


def place_medications(
    medications: tuple[Medication, ...], prefix: str
) -> tuple[tuple[Medication, ...], tuple[str, ...], list[tuple[Any, ...]]]:
    """The medications with their narrative references filled in, and the table that shows them."""
    placed: list[Medication] = []
    rows: list[tuple[Any, ...]] = []
    for n, medication in enumerate(medications, 1):
        reference = medication.reference or f"{prefix}-{n}"
        reason = medication.reason
        reason_cell: Any = ""
        if reason is not None:
            reason_reference = reason.reference or f"{reference}-motif"
            reason = reason.model_copy(update={"reference": reason_reference})
            reason_cell = (show_code(reason.code), reason_reference)
        placed.append(medication.model_copy(update={"reference": reference, "reason": reason}))
        dose = show_quantity(medication.dose)
        if medication.period is not None:
            dose = f"{dose}, période {show_quantity(medication.period)}".lstrip(", ")
        rows.append(
            (
                (medication.name, reference),
                dose,
                show_code(medication.route),
                show_time(medication.start),
                show_time(medication.end),
                reason_cell,
            )
        )
    headers = ("Médicament", "Posologie", "Voie", "Début", "Fin", "Motif")
    return tuple(placed), headers, rows
