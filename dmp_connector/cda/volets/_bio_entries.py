"""The entries of a lab results report (CR-BIO 2024.01): results, batteries, specimens, validation.

One section entry, *FR-Resultats-examens-de-biologie-medicale* (IHE PALM Laboratory Report
Data Processing Entry), holds the results of a chapter: :class:`LabReportEntry`, an ``act``
whose ``entryRelationship`` are, in the order given, specimen collections
(:class:`SpecimenCollection`), batteries and microbiology isolates (:class:`LabBattery`),
single results (:class:`LabResult`), images (:class:`LabImage`, in a battery) and comments
(:class:`LabComment`); its ``performer`` is
the laboratory that did the work (:class:`LabPerformer`) and its ``participant`` the
biologist who validated the results (:class:`LabValidator`).

Reading is strict the same way as for the other volets, by a different means: the reader
builds the model, writes it again, and declines the entry (it stays a ``RawEntry``) unless
that rewrite equals the element it read, child for child and attribute for attribute
(:func:`same_element`). Comments, white space and the cosmetic ``codeSystemName`` are what
the comparison leaves out (the document still keeps them: an unchanged entry is written back
as it came). So a typed entry holds everything its element says — never a silent loss. A
time keeps its written precision (minutes or seconds, :class:`MinuteTime`).

Value rules (the LOINC check digit of a result code, a UCUM unit on every numeric result,
interpretation codes from JDV_HL7_ObservationInterpretation-CISIS, specimen types from
JDV_SpecimenType) are checked by :meth:`LabReportEntry.value_set_problems`, which the
CR-BIO builder calls: a report received with yesterday's value sets must still be readable.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Final, Literal, Self

from lxml import etree
from pydantic import AfterValidator, Field, model_validator

from dmp_connector.cda._namespaces import HL7, XSI, hl7, local_name, new_root

# The header's own writers and readers of people and places: one way to write an assignedEntity.
from dmp_connector.cda.build import _addresses, _assigned_element, _person_name, _telecoms, format_ts
from dmp_connector.cda.model import LOINC, Address, AssignedEntity, InstanceId, PersonName, Telecom, Timestamp, _Model
from dmp_connector.cda.parse import _addresses as _read_addresses
from dmp_connector.cda.parse import _assigned as _read_assigned
from dmp_connector.cda.parse import _person_name as _read_person_name
from dmp_connector.cda.parse import _telecoms as _read_telecoms
from dmp_connector.cda.parse import parse_ts
from dmp_connector.cda.valuesets import JDV_HL7_OBSERVATION_INTERPRETATION, JDV_SPECIMEN_TYPE
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError

from ._entries import Quantity, same_element

__all__ = [
    "LAB_REPORT_ENTRY_TEMPLATES",
    "LabBattery",
    "LabComment",
    "LabDevice",
    "LabImage",
    "LabItem",
    "LabPerformer",
    "LabReportEntry",
    "LabResult",
    "LabValidator",
    "MinuteTime",
    "PreviousResult",
    "QuantityRange",
    "ReferenceRange",
    "ResultValue",
    "Specimen",
    "SpecimenCollection",
    "loinc_problem",
    "same_element",
]

LAB_REPORT_ENTRY_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.3.1", "1.2.250.1.213.1.1.3.21")
"""templateIds of the entry (on ``<entry>`` itself): IHE PALM Data Processing Entry, FR-Resultats-examens-…"""
_RESULT_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.3.1.6", "1.2.250.1.213.1.1.3.80")
_BATTERY_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.3.1.4", "1.2.250.1.213.1.1.3.78")
_ISOLATE_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.3.1.5", "1.2.250.1.213.1.1.3.79")
_COLLECTION_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.3.1.2", "1.2.250.1.213.1.1.3.77")
_RECEIPT_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.3.1.3", "1.2.250.1.213.1.1.3.107")
_COMMENT_TEMPLATES: Final = ("2.16.840.1.113883.10.20.1.40", "1.3.6.1.4.1.19376.1.5.3.1.4.2", "1.2.250.1.213.1.1.3.32")
_VALIDATOR_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.3.3.1.5", "1.2.250.1.213.1.1.3.109")
_IMAGE_TEMPLATES: Final = ("2.16.840.1.113883.10.12.304", "1.2.250.1.213.1.1.3.103")
_PERFORMER_TEMPLATES: Final = ("1.3.6.1.4.1.19376.1.3.3.1.7", "1.2.250.1.213.1.1.3.23")

_COMMENT_CODE: Final = Code.of("48767-8", LOINC, "Commentaire")
_RECEIVED: Final = Code.of("SPRECEIVE", "1.3.5.1.4.1.19376.1.5.3.2", "Échantillon reçu")
_XSI_TYPE = f"{{{XSI}}}type"
_NSMAP: Final[dict[str | None, str]] = {None: HL7, "xsi": XSI}
_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_LOINC_FORMAT = re.compile(r"^(\d{1,7})-(\d)$")
# A UCUM expression: printable ASCII without spaces (the grammar itself is UCUM's; this rules out "mg / L", "µg").
_UCUM = re.compile(r"^[!-~]+$")

Status = Literal["completed", "aborted", "active"]


def loinc_problem(code: Code) -> str | None:
    """Why ``code`` is not a well-formed LOINC code (``NNNNN-C`` with its mod-10 check digit), else None."""
    if code.code_system != LOINC:
        return None
    match = _LOINC_FORMAT.match(code.code)
    if match is None:
        return f"{code.code} is not a LOINC code (digits, a hyphen, a check digit)"
    if _check_digit(match.group(1)) != int(match.group(2)):
        return f"{code.code}: wrong LOINC check digit (expected {_check_digit(match.group(1))})"
    return None


def _check_digit(digits: str) -> int:
    """LOINC's mod-10 check digit (Luhn over the digits, the rightmost doubled)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10


def _reference_id(value: str) -> str:
    if not _NCNAME.match(value):
        raise ValidationError(
            "a narrative reference is an XML ID: a letter or _ then letters, digits, '.', '-', '_'",
            problems=("reference",),
        )
    return value


Ref = Annotated[str, AfterValidator(_reference_id)]
"""The ``ID`` of a narrative ``<content>`` (without ``#``)."""


# --------------------------------------------------------------------------- values


class QuantityRange(_Model):
    """An interval of quantities (``IVL_PQ``): ``< 5 mg/L`` is ``high=5 mg/L, high_inclusive=False``."""

    low: Quantity | None = None
    """Lower bound."""
    high: Quantity | None = None
    """Upper bound."""
    low_inclusive: bool | None = None
    """``low/@inclusive``, when stated."""
    high_inclusive: bool | None = None
    """``high/@inclusive``, when stated."""

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.low is None and self.high is None:
            raise ValidationError("an interval needs a low or a high bound", problems=("range",))
        return self


ResultValue = Quantity | QuantityRange | Code | Decimal | str
"""What a result says: a quantity (``PQ``), an interval (``IVL_PQ``), a code (``CD``), a bare number
(``REAL``) or text (``ST``)."""


class ReferenceRange(_Model):
    """The reference interval of a result (``referenceRange/observationRange``), normal by default."""

    low: Quantity | None = None
    """Lower limit."""
    high: Quantity | None = None
    """Upper limit."""
    interpretation: Code | None = Code.of("N", "2.16.840.1.113883.5.83", "Normal")
    """What a value in the range means (JDV_HL7_ObservationInterpretation-CISIS), ``N`` by default."""

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.low is None and self.high is None:
            raise ValidationError("a reference range needs a low or a high limit", problems=("reference_range",))
        return self


class PreviousResult(_Model):
    """An earlier result of the same test, for comparison (``entryRelationship typeCode="REFR"``)."""

    code: Code
    """The test (LOINC)."""
    effective_time: Timestamp
    """When the earlier sample was taken."""
    value: ResultValue
    """The earlier value."""
    code_reference: Ref | None = None
    """``ID`` of the narrative naming the test."""
    value_reference: Ref | None = None
    """``ID`` of the narrative showing a coded value."""
    status: Status = "completed"
    """``statusCode``."""


class LabComment(_Model):
    """A comment of the biologist (FR-Commentaire-ER, LOINC ``48767-8``) pointing to the narrative.

    Give ``text`` to the CR-BIO builder, which writes it in the narrative and keeps the
    reference; a read comment has the reference only (its text is in the section).
    """

    reference: Ref | None = None
    """``ID`` of the narrative content holding the comment."""
    text: str | None = Field(default=None, min_length=1)
    """The comment, for the builder to write; never part of the entry element itself."""
    status: Status = "completed"
    """``statusCode``."""
    type_code: Literal["COMP", "SUBJ"] = "COMP"
    """``entryRelationship/@typeCode`` holding the comment (``COMP``; some reports write ``SUBJ``)."""


class LabDevice(_Model):
    """A device the test used (``participant/participantRole/playingDevice``): the reagent kit
    (``DEV``, role ``MANU``) or the collection medium (``CSM``, role ``ADTV``)."""

    code: Code | None = None
    """The kit or medium (ANSM reagent table, TerminologieCISIS …)."""
    reference: Ref | None = None
    """``ID`` of the narrative naming it."""
    type_code: Literal["DEV", "CSM"] = "DEV"
    """``participant/@typeCode``: ``DEV`` device, ``CSM`` consumable (medium)."""
    role_class: Literal["MANU", "ADTV"] = "MANU"
    """``participantRole/@classCode``: ``MANU`` manufactured product, ``ADTV`` additive."""


class LabResult(_Model):
    """One result (FR-Resultat-examens-de-biologie-element-clinique-pertinent, IHE Laboratory Observation).

    ``code`` is LOINC (``2345-7`` glucose …); a test without a LOINC code has ``code=None`` and
    its local code in ``code_translations``. A numeric ``value`` is a :class:`Quantity` with an
    explicit UCUM unit (``"1"`` for a number without unit).
    """

    code: Code | None
    """The test: LOINC with its display name; None for a local code only (in ``code_translations``)."""
    value: ResultValue | None = None
    """The result; None for a test without result (aborted …)."""
    effective_time: Timestamp | None = None
    """When the sample was taken (clinically relevant time)."""
    status: Status = "completed"
    """``statusCode``: ``completed``, or ``aborted`` for a test not done."""
    code_translations: tuple[Code, ...] = ()
    """Other codes of the test (the laboratory's own, the JDV_LOINC translation …)."""
    reference: Ref | None = None
    """``ID`` of the narrative naming the test (``code/originalText``), set by the builder."""
    value_reference: Ref | None = None
    """``ID`` of the narrative showing a coded value; alone (``value=None``), a coded value given as text only."""
    value_translations: tuple[Code, ...] = ()
    """Other codes of a coded value."""
    interpretations: tuple[Code, ...] = ()
    """``interpretationCode``: ``N``, ``H``, ``L``, ``A`` … (JDV_HL7_ObservationInterpretation-CISIS)."""
    method: Code | None = None
    """``methodCode``: the technique (reagent table …)."""
    method_reference: Ref | None = None
    """``ID`` of the narrative naming the method."""
    devices: tuple[LabDevice, ...] = ()
    """The reagent kit and medium used."""
    previous: tuple[PreviousResult, ...] = ()
    """Earlier results given for comparison."""
    comments: tuple[LabComment, ...] = ()
    """Comments on this result."""
    reference_range: ReferenceRange | None = None
    """The reference interval."""

    @model_validator(mode="after")
    def _code(self) -> Self:
        if self.code is None and not self.code_translations and self.reference is None:
            raise ValidationError(
                "a result names its test: a LOINC code, a local code in code_translations, or a narrative reference",
                problems=("result.code",),
            )
        return self


class LabImage(_Model):
    """An image illustrating results (FR-Image-illustrative, ``observationMedia``): an electrophoresis curve …

    The section narrative shows it with ``<renderMultiMedia referencedObject="…"/>`` (the builder writes it).
    """

    xml_id: Ref
    """``@ID``, what the narrative's ``renderMultiMedia`` points to."""
    data: bytes = Field(repr=False, min_length=1)
    """The image itself (not its base64)."""
    media_type: Literal["image/png", "image/jpeg", "image/gif"] = "image/png"
    """``value/@mediaType``."""


class Specimen(_Model):
    """What a battery or an isolate was done on (``specimen/specimenRole``): a sample, or a germ for an isolate."""

    code: Code | None = None
    """The specimen's type (JDV_SpecimenType: ``BLD`` sang …) or the organism of an isolate (SNOMED CT)."""
    id: InstanceId | None = None
    """The sample's or isolate's id."""
    translations: tuple[Code, ...] = ()
    """Other codes (NCBI taxonomy …)."""
    reference: Ref | None = None
    """``ID`` of the narrative naming it."""


class LabBattery(_Model):
    """A battery of results (FR-Batterie-examens-de-biologie-medicale, organizer ``BATTERY``) or, with
    ``isolate=True``, a microbiology isolate (FR-Isolat-microbiologique, organizer ``CLUSTER``).

    ``components`` are the results, comments and nested batteries/isolates, in order.
    """

    components: tuple[LabResult | LabBattery | LabComment | LabImage, ...] = Field(min_length=1)
    """What the battery holds."""
    code: Code | None = None
    """The battery (LOINC panel …); None writes none (a battery may be known by its translations only)."""
    code_translations: tuple[Code, ...] = ()
    """Other codes of the battery."""
    reference: Ref | None = None
    """``ID`` of the narrative naming the battery."""
    status: Status = "completed"
    """``statusCode``."""
    effective_time: Timestamp | None = None
    """When the sample was taken."""
    specimen: Specimen | None = None
    """The specimen (required for an isolate: the germ identified)."""
    isolate: bool = False
    """A microbiology isolate (``CLUSTER``, specimen ``MIC``) rather than a battery."""

    @model_validator(mode="after")
    def _isolate(self) -> Self:
        if self.isolate and (self.specimen is None or self.specimen.code is None):
            raise ValidationError("an isolate names its organism in specimen.code", problems=("battery.specimen",))
        return self


class SpecimenCollection(_Model):
    """The taking of a sample (FR-Prelevement, ``procedure``): what, when, by whom, and its receipt."""

    specimen_type: Code
    """The sample's type (JDV_SpecimenType: ``BLD`` …)."""
    specimen_id: InstanceId
    """The sample's id (the tube's label: PaLM requires it)."""
    collected: Timestamp | None = None
    """When it was taken (``effectiveTime/high``)."""
    code: Code | None = None
    """The act (NABM ``9050`` ponction veineuse …)."""
    code_reference: Ref | None = None
    """``ID`` of the narrative naming the act."""

    specimen_reference: Ref | None = None
    """``ID`` of the narrative naming the sample type."""
    target_site: Code | None = None
    """Where on the body it was taken."""
    performer: AssignedEntity | None = None
    """Who took it."""
    received: Timestamp | None = None
    """When the laboratory received it (FR-Reception-echantillon)."""


class LabValidator(_Model):
    """The biologist who validated the results (``participant typeCode="AUTHEN"``, FR-Biologiste-validant)."""

    id: InstanceId
    """IdNat_PS (root ``1.2.250.1.71.4.2.1``, ``8`` + RPPS)."""
    name: PersonName
    """The biologist's name."""
    time: Timestamp
    """When the results were validated."""
    addresses: tuple[Address, ...] = ()
    """Work addresses."""
    telecoms: tuple[Telecom, ...] = ()
    """Work telecoms."""


class LabPerformer(_Model):
    """The laboratory that did the tests (``performer typeCode="PRF"``, FR-Laboratoire-executant)."""

    entity: AssignedEntity
    """The responsible biologist and the laboratory (``representedOrganization`` with its id, name, telecom,
    address and practice setting in ``industry_class``)."""
    time: Timestamp
    """When the tests were done."""

    @model_validator(mode="after")
    def _laboratory(self) -> Self:
        org = self.entity.organization
        fields = (
            ("id", org.id if org else None),
            ("name", org.name if org else None),
            ("telecoms", org.telecoms if org else None),
            ("addresses", org.addresses if org else None),
            ("industry_class", org.industry_class if org else None),
        )
        missing = tuple(f"performer.entity.organization.{name}" for name, value in fields if not value)
        if missing:
            raise ValidationError(
                "the performing laboratory has an id, a name, a telecom, an address and its practice setting "
                "(standardIndustryClassCode), as FR-Laboratoire-executant requires",
                problems=missing,
            )
        return self


LabItem = SpecimenCollection | LabBattery | LabResult | LabComment
"""What a results entry holds, in order."""


class LabReportEntry(_Model):
    """The results of one chapter (FR-Resultats-examens-de-biologie-medicale): an ``<entry>`` with its act."""

    code: Code
    """The specialty (LOINC ``18719-5`` Biochimie, ``18723-7`` Hématologie …)."""
    items: tuple[LabItem, ...] = Field(min_length=1)
    """Specimen collections, batteries, results and comments, in order."""
    code_translations: tuple[Code, ...] = ()
    """Other codes of the specialty or exam."""
    status: Status = "completed"
    """``statusCode`` (``completed`` once validated, ``active`` for a partial report)."""
    performer: LabPerformer | None = None
    """The laboratory that did the tests."""
    validator: LabValidator | None = None
    """The biologist who validated them."""
    entry_type_code: str = "DRIV"
    """``entry/@typeCode`` (the schematron requires one; ``DRIV``: the narrative derives from the entry)."""

    def results(self) -> list[LabResult]:
        """Every result of the entry, batteries and isolates opened, in document order."""
        found: list[LabResult] = []

        def walk(items: tuple[LabItem, ...] | tuple[LabResult | LabBattery | LabComment | LabImage, ...]) -> None:
            for item in items:
                if isinstance(item, LabResult):
                    found.append(item)
                elif isinstance(item, LabBattery):
                    walk(item.components)

        walk(self.items)
        return found

    def value_set_problems(self) -> list[str]:
        """LOINC codes, UCUM units, interpretations and specimen types that break the volet's rules."""
        found: list[str] = []
        if (problem := loinc_problem(self.code)) is not None:
            found.append(f"code: {problem}")
        for i, item in enumerate(self.items):
            found += _item_problems(item, f"items[{i}]")
        return found

    def to_element(self) -> etree._Element:
        """The ``<entry>`` element."""
        entry = new_root("entry", _NSMAP)
        entry.set("typeCode", self.entry_type_code)
        _templates(entry, LAB_REPORT_ENTRY_TEMPLATES)
        act = _sub(entry, "act", classCode="ACT", moodCode="EVN")
        _coded(act, "code", self.code, translations=self.code_translations)
        _sub(act, "statusCode", code=self.status)
        if self.performer is not None:
            _write_performer(act, self.performer)
        if self.validator is not None:
            _write_validator(act, self.validator)
        for item in self.items:
            type_code = item.type_code if isinstance(item, LabComment) else "COMP"
            relationship = _sub(act, "entryRelationship", typeCode=type_code)
            _write_item(relationship, item)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> LabReportEntry:
        """Read an ``<entry>``; :class:`ValidationError` (the entry stays raw) unless the model holds all of it."""
        if element.tag != hl7("entry") or set(element.attrib) != {"typeCode"}:
            raise _decline("not an <entry> with its typeCode")
        acts = _all(element, "act")
        if len(acts) != 1:
            raise _decline("the entry is not one act")
        act = acts[0]
        code, _, translations = _read_coded(_one(act, "code"))
        if code is None:
            raise _decline("a results entry without its specialty code")
        performer = _opt(act, "performer")
        participant = _opt(act, "participant")
        try:
            entry = cls(
                code=code,
                code_translations=translations,
                status=_status(act),
                performer=_read_performer(performer) if performer is not None else None,
                validator=_read_validator(participant) if participant is not None else None,
                items=tuple(_read_item(_only_child(r), r.get("typeCode")) for r in _all(act, "entryRelationship")),
                entry_type_code=element.get("typeCode") or "",
            )
        except ValidationError:
            raise  # a decline, or a value a model refuses: the entry stays raw, with that reason
        except (ValueError, TypeError) as exc:  # anything else met while reading a field
            raise _decline(f"unreadable: {type(exc).__name__}") from None
        if not same_element(element, entry.to_element()):
            raise _decline("the element holds more than the model")
        return entry


def _item_problems(item: LabItem | LabImage, where: str) -> list[str]:
    found: list[str] = []
    if isinstance(item, LabResult):
        if item.code is not None and (problem := loinc_problem(item.code)) is not None:
            found.append(f"{where}.code: {problem}")
        found += _value_problems(item.value, f"{where}.value", item.code)
        for code in item.interpretations:
            if code not in JDV_HL7_OBSERVATION_INTERPRETATION:
                found.append(
                    f"{where}.interpretations: {code.code} is not in {JDV_HL7_OBSERVATION_INTERPRETATION.name}"
                )
        range_ = item.reference_range
        if range_ is not None:
            for bound, name in ((range_.low, "low"), (range_.high, "high")):
                if bound is not None and "unit" in bound.model_fields_set and not _UCUM.match(bound.unit):
                    found.append(f"{where}.reference_range.{name}: {bound.unit!r} is not a UCUM unit")
            interpretation = range_.interpretation
            if interpretation is not None and interpretation not in JDV_HL7_OBSERVATION_INTERPRETATION:
                found.append(
                    f"{where}.reference_range.interpretation: {interpretation.code} is not in "
                    f"{JDV_HL7_OBSERVATION_INTERPRETATION.name}"
                )
        for j, previous in enumerate(item.previous):
            found += _value_problems(previous.value, f"{where}.previous[{j}].value", previous.code)
    elif isinstance(item, LabBattery):
        if item.code is not None and (problem := loinc_problem(item.code)) is not None:
            found.append(f"{where}.code: {problem}")
        for j, component in enumerate(item.components):
            found += _item_problems(component, f"{where}.components[{j}]")
    elif isinstance(item, SpecimenCollection) and item.specimen_type not in JDV_SPECIMEN_TYPE:
        found.append(f"{where}.specimen_type: {item.specimen_type.code} is not in {JDV_SPECIMEN_TYPE.name}")
    return found


def _value_problems(value: ResultValue | None, where: str, code: Code | None) -> list[str]:
    quantities: list[Quantity] = []
    if isinstance(value, Quantity):
        quantities.append(value)
    elif isinstance(value, QuantityRange):
        quantities += [q for q in (value.low, value.high) if q is not None]
    found = []
    for quantity in quantities:
        if "unit" not in quantity.model_fields_set:
            test = code.code if code is not None else "the test"
            found.append(f"{where}: a numeric result of {test} has no unit (give its UCUM unit, '1' for none)")
        elif not _UCUM.match(quantity.unit):
            found.append(f"{where}: {quantity.unit!r} is not a UCUM unit")
    return found


# --------------------------------------------------------------------------- writing


def _sub(parent: etree._Element, name: str, **attributes: str | None) -> etree._Element:
    element = etree.SubElement(parent, hl7(name))
    for key, value in attributes.items():
        if value is not None:
            element.set(key, value)
    return element


def _templates(parent: etree._Element, roots: tuple[str, ...]) -> None:
    for root in roots:
        _sub(parent, "templateId", root=root)


def _ii(parent: etree._Element, value: InstanceId, name: str = "id") -> None:
    _sub(parent, name, root=value.root, extension=value.extension)


def _code_attributes(element: etree._Element, code: Code) -> None:
    element.set("code", code.code)
    if code.display_name is not None:
        element.set("displayName", code.display_name)
    element.set("codeSystem", code.code_system)


def _coded(
    parent: etree._Element,
    name: str,
    code: Code | None,
    *,
    reference: str | None = None,
    translations: tuple[Code, ...] = (),
    xsi_type: str | None = None,
) -> etree._Element:
    element = _sub(parent, name)
    if xsi_type is not None:
        element.set(_XSI_TYPE, xsi_type)
    if code is not None:
        _code_attributes(element, code)
    if reference is not None:
        _sub(_sub(element, "originalText"), "reference", value=f"#{reference}")
    for translation in translations:
        _code_attributes(_sub(element, "translation"), translation)
    return element


class MinuteTime(datetime):
    """A date-time read at minute precision (``202401041120+0100``), written back the same way.

    It equals the plain ``datetime`` of the same instant: only the written form differs.
    """


def _ts_text(value: date | datetime) -> str:
    text = format_ts(value)
    if isinstance(value, MinuteTime):
        return text[:12] + text[14:]
    return text


def _time(parent: etree._Element, name: str, value: date | datetime) -> None:
    _sub(parent, name, value=_ts_text(value))


def _pq(parent: etree._Element, name: str, quantity: Quantity, inclusive: bool | None = None) -> None:
    element = _sub(parent, name, value=format(quantity.value, "f"), unit=quantity.unit)
    if inclusive is not None:
        element.set("inclusive", "true" if inclusive else "false")


def _value(
    parent: etree._Element, value: ResultValue | None, reference: str | None, translations: tuple[Code, ...] = ()
) -> None:
    if value is None:
        if reference is not None:
            _coded(parent, "value", None, reference=reference, translations=translations, xsi_type="CD")
    elif isinstance(value, Quantity):
        element = _sub(parent, "value")
        element.set(_XSI_TYPE, "PQ")
        element.set("value", format(value.value, "f"))
        element.set("unit", value.unit)
    elif isinstance(value, QuantityRange):
        element = _sub(parent, "value")
        element.set(_XSI_TYPE, "IVL_PQ")
        if value.low is not None:
            _pq(element, "low", value.low, value.low_inclusive)
        if value.high is not None:
            _pq(element, "high", value.high, value.high_inclusive)
    elif isinstance(value, Code):
        _coded(parent, "value", value, reference=reference, translations=translations, xsi_type="CD")
    elif isinstance(value, Decimal):
        element = _sub(parent, "value")
        element.set(_XSI_TYPE, "REAL")
        element.set("value", format(value, "f"))
    else:
        element = _sub(parent, "value")
        element.set(_XSI_TYPE, "ST")
        element.text = value


def _write_comment(parent: etree._Element, comment: LabComment) -> None:
    if comment.reference is None:
        raise ValidationError(
            "a comment is written in the section's narrative: build the report with CrBioContent, "
            "or give the reference of the narrative content holding it",
            problems=("comment.reference",),
        )
    act = _sub(parent, "act", classCode="ACT", moodCode="EVN")
    _templates(act, _COMMENT_TEMPLATES)
    _coded(act, "code", _COMMENT_CODE)
    _sub(_sub(act, "text"), "reference", value=f"#{comment.reference}")
    _sub(act, "statusCode", code=comment.status)


def _write_result(parent: etree._Element, result: LabResult) -> None:
    observation = _sub(parent, "observation", classCode="OBS", moodCode="EVN")
    _templates(observation, _RESULT_TEMPLATES)
    _coded(observation, "code", result.code, reference=result.reference, translations=result.code_translations)
    _sub(observation, "statusCode", code=result.status)
    if result.effective_time is not None:
        _time(observation, "effectiveTime", result.effective_time)
    _value(observation, result.value, result.value_reference, result.value_translations)
    for interpretation in result.interpretations:
        _coded(observation, "interpretationCode", interpretation)
    if result.method is not None or result.method_reference is not None:
        _coded(observation, "methodCode", result.method, reference=result.method_reference)
    for device in result.devices:
        role = _sub(_sub(observation, "participant", typeCode=device.type_code), "participantRole")
        role.set("classCode", device.role_class)
        _coded(_sub(role, "playingDevice"), "code", device.code, reference=device.reference)
    for previous in result.previous:
        earlier = _sub(_sub(observation, "entryRelationship", typeCode="REFR"), "observation")
        earlier.set("classCode", "OBS")
        earlier.set("moodCode", "EVN")
        _coded(earlier, "code", previous.code, reference=previous.code_reference)
        _sub(earlier, "statusCode", code=previous.status)
        _time(earlier, "effectiveTime", previous.effective_time)
        _value(earlier, previous.value, previous.value_reference)
    for comment in result.comments:
        _write_comment(_sub(observation, "entryRelationship", typeCode=comment.type_code), comment)
    if result.reference_range is not None:
        range_ = result.reference_range
        observed = _sub(_sub(observation, "referenceRange", typeCode="REFV"), "observationRange")
        observed.set("classCode", "OBS")
        observed.set("moodCode", "EVN.CRT")
        _value(observed, QuantityRange(low=range_.low, high=range_.high), None)
        if range_.interpretation is not None:
            _coded(observed, "interpretationCode", range_.interpretation)


def _write_specimen(parent: etree._Element, specimen: Specimen, *, isolate: bool) -> None:
    role = _sub(_sub(parent, "specimen", typeCode="SPC"), "specimenRole", classCode="SPEC")
    if specimen.id is not None:
        _ii(role, specimen.id)
    entity = _sub(role, "specimenPlayingEntity")
    if isolate:
        entity.set("classCode", "MIC")
    if specimen.code is not None or specimen.reference is not None or specimen.translations:
        _coded(entity, "code", specimen.code, reference=specimen.reference, translations=specimen.translations)


def _write_battery(parent: etree._Element, battery: LabBattery) -> None:
    organizer = _sub(parent, "organizer", classCode="CLUSTER" if battery.isolate else "BATTERY", moodCode="EVN")
    _templates(organizer, _ISOLATE_TEMPLATES if battery.isolate else _BATTERY_TEMPLATES)
    if battery.code is not None or battery.reference is not None or battery.code_translations:
        _coded(organizer, "code", battery.code, reference=battery.reference, translations=battery.code_translations)
    _sub(organizer, "statusCode", code=battery.status)
    if battery.effective_time is not None:
        _time(organizer, "effectiveTime", battery.effective_time)
    if battery.specimen is not None:
        _write_specimen(organizer, battery.specimen, isolate=battery.isolate)
    for component in battery.components:
        _write_item(_sub(organizer, "component"), component)


def _write_collection(parent: etree._Element, collection: SpecimenCollection) -> None:
    procedure = _sub(parent, "procedure", classCode="PROC", moodCode="EVN")
    _templates(procedure, _COLLECTION_TEMPLATES)
    if collection.code is not None or collection.code_reference is not None:
        _coded(procedure, "code", collection.code, reference=collection.code_reference)
    if collection.collected is not None:
        _time(_sub(procedure, "effectiveTime"), "high", collection.collected)
    if collection.target_site is not None:
        _coded(procedure, "targetSiteCode", collection.target_site)
    if collection.performer is not None:
        _sub(procedure, "performer").append(_assigned_element(collection.performer, "assignedEntity"))
    role = _sub(_sub(procedure, "participant", typeCode="PRD"), "participantRole", classCode="SPEC")
    _ii(role, collection.specimen_id)
    _coded(_sub(role, "playingEntity"), "code", collection.specimen_type, reference=collection.specimen_reference)
    if collection.received is not None:
        act = _sub(_sub(procedure, "entryRelationship", typeCode="COMP"), "act", classCode="ACT", moodCode="EVN")
        _templates(act, _RECEIPT_TEMPLATES)
        _coded(act, "code", _RECEIVED)
        _time(act, "effectiveTime", collection.received)


def _write_image(parent: etree._Element, image: LabImage) -> None:
    media = _sub(parent, "observationMedia", classCode="OBS", moodCode="EVN", ID=image.xml_id)
    _templates(media, _IMAGE_TEMPLATES)
    value = _sub(media, "value", mediaType=image.media_type, representation="B64")
    value.text = base64.b64encode(image.data).decode("ascii")


def _write_item(parent: etree._Element, item: LabItem | LabImage) -> None:
    if isinstance(item, LabImage):
        _write_image(parent, item)
    elif isinstance(item, LabResult):
        _write_result(parent, item)
    elif isinstance(item, LabBattery):
        _write_battery(parent, item)
    elif isinstance(item, LabComment):
        _write_comment(parent, item)
    else:
        _write_collection(parent, item)


def _write_performer(parent: etree._Element, performer: LabPerformer) -> None:
    element = _sub(parent, "performer", typeCode="PRF")
    _templates(element, _PERFORMER_TEMPLATES)
    _time(element, "time", performer.time)
    element.append(_assigned_element(performer.entity, "assignedEntity"))


def _write_validator(parent: etree._Element, validator: LabValidator) -> None:
    element = _sub(parent, "participant", typeCode="AUTHEN")
    _templates(element, _VALIDATOR_TEMPLATES)
    _time(_sub(element, "time"), "high", validator.time)
    role = _sub(element, "participantRole")
    _ii(role, validator.id)
    _addresses(role, validator.addresses)
    _telecoms(role, validator.telecoms)
    _person_name(_sub(_sub(role, "playingEntity"), "name"), validator.name)


# --------------------------------------------------------------------------- reading


def _decline(what: str) -> ValidationError:
    return ValidationError(f"not read as a typed entry: {what}", problems=(what,))


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


def _only_child(element: etree._Element) -> etree._Element:
    children = [c for c in element if isinstance(c.tag, str)]
    if len(children) != 1:
        raise _decline(f"<{local_name(element)}> does not hold one statement")
    return children[0]


def _status(element: etree._Element) -> Status:
    status = _opt(element, "statusCode")
    code = status.get("code") if status is not None else None
    if code not in ("completed", "aborted", "active"):
        raise _decline(f"<{local_name(element)}> with status {code}")
    return code  # type: ignore[return-value]  # checked just above


def _read_ii(element: etree._Element | None) -> InstanceId | None:
    if element is None:
        return None
    root = element.get("root")
    if not root:
        raise _decline("an id without root")
    return InstanceId(root=root, extension=element.get("extension"))


def _code_of(element: etree._Element) -> Code | None:
    code, system = element.get("code"), element.get("codeSystem")
    if code is None and system is None:
        return None
    if not code or not system:
        raise _decline(f"<{local_name(element)}> lacks its code or code system")
    return Code.of(code, system, element.get("displayName"))


def _read_coded(element: etree._Element | None) -> tuple[Code | None, str | None, tuple[Code, ...]]:
    """The code, the originalText reference and the translations of a coded element."""
    if element is None:
        return None, None, ()
    original = _opt(element, "originalText")
    reference = None
    if original is not None:
        target = _opt(original, "reference")
        reference = (target.get("value") or "").removeprefix("#") or None if target is not None else None
    translations = []
    for translation in _all(element, "translation"):
        code = _code_of(translation)
        if code is None:
            raise _decline("an empty translation")
        translations.append(code)
    return _code_of(element), reference, tuple(translations)


def _read_time(element: etree._Element | None) -> date | datetime | None:
    if element is None:
        return None
    value = element.get("value")
    if value is None:
        raise _decline(f"<{local_name(element)}> without value")
    if len(value) in (4, 6):
        raise _decline("a time given as a year or a month only")
    read = parse_ts(value)
    if isinstance(read, datetime) and len(value.split("+")[0].split("-")[0]) == 12:
        return MinuteTime.combine(read.date(), read.timetz())
    return read


def _read_pq(element: etree._Element | None) -> Quantity | None:
    if element is None:
        return None
    value, unit = element.get("value"), element.get("unit")
    if value is None or unit is None:
        raise _decline("a quantity without its value or unit")
    try:
        return Quantity(value=Decimal(value), unit=unit)
    except InvalidOperation:
        raise _decline(f"quantity {value!r}") from None


def _inclusive(element: etree._Element | None) -> bool | None:
    flag = element.get("inclusive") if element is not None else None
    return None if flag is None else flag == "true"


def _read_value(element: etree._Element | None) -> tuple[ResultValue | None, str | None, tuple[Code, ...]]:
    if element is None:
        return None, None, ()
    kind = (element.get(_XSI_TYPE) or "").rpartition(":")[2]
    if kind == "PQ":
        return _read_pq(element), None, ()
    if kind == "IVL_PQ":
        low, high = _opt(element, "low"), _opt(element, "high")
        bounds = QuantityRange(
            low=_read_pq(low), high=_read_pq(high), low_inclusive=_inclusive(low), high_inclusive=_inclusive(high)
        )
        return bounds, None, ()
    if kind == "CD":
        code, reference, translations = _read_coded(element)
        if code is None and reference is None:
            raise _decline("a coded value without code or text")
        return code, reference, translations
    if kind == "REAL":
        try:
            return Decimal(element.get("value") or ""), None, ()
        except InvalidOperation:
            raise _decline("a REAL value that is not a number") from None
    if kind == "ST":
        return element.text or "", None, ()
    raise _decline(f"a value of type {kind or 'unknown'}")


def _read_comment(act: etree._Element, type_code: str | None = "COMP") -> LabComment:
    text = _opt(act, "text")
    target = _opt(text, "reference") if text is not None else None
    reference = (target.get("value") or "").removeprefix("#") if target is not None else ""
    if not reference:
        raise _decline("a comment without its narrative reference")
    if type_code not in ("COMP", "SUBJ"):
        raise _decline(f"a comment related by {type_code}")
    return LabComment(reference=reference, status=_status(act), type_code=type_code)


def _read_result(observation: etree._Element) -> LabResult:
    code, reference, translations = _read_coded(_one(observation, "code"))
    value, value_reference, value_translations = _read_value(_opt(observation, "value"))
    method, method_reference, _ = _read_coded(_opt(observation, "methodCode"))
    previous: list[PreviousResult] = []
    comments: list[LabComment] = []
    for relationship in _all(observation, "entryRelationship"):
        statement = _only_child(relationship)
        if relationship.get("typeCode") == "REFR" and local_name(statement) == "observation":
            earlier_code, earlier_reference, _ = _read_coded(_one(statement, "code"))
            earlier_value, earlier_value_reference, earlier_translations = _read_value(_one(statement, "value"))
            if earlier_translations:
                raise _decline("a previous coded value with translations")
            earlier_time = _read_time(_one(statement, "effectiveTime"))
            if earlier_code is None or earlier_value is None or earlier_time is None:
                raise _decline("a previous result without code, value or time")
            previous.append(
                PreviousResult(
                    code=earlier_code,
                    code_reference=earlier_reference,
                    effective_time=earlier_time,
                    value=earlier_value,
                    value_reference=earlier_value_reference,
                    status=_status(statement),
                )
            )
        elif local_name(statement) == "act":
            comments.append(_read_comment(statement, relationship.get("typeCode")))
        else:
            raise _decline("an observation relationship the model does not hold")
    devices = []
    for participant in _all(observation, "participant"):
        role = _one(participant, "participantRole")
        device_code, device_reference, _ = _read_coded(_one(_one(role, "playingDevice"), "code"))
        devices.append(
            LabDevice(
                code=device_code,
                reference=device_reference,
                type_code=participant.get("typeCode"),  # the model checks DEV / CSM
                role_class=role.get("classCode"),
            )
        )
    range_element = _opt(observation, "referenceRange")
    reference_range = None
    if range_element is not None:
        observed = _one(range_element, "observationRange")
        bounds, _, _ = _read_value(_opt(observed, "value"))
        if not isinstance(bounds, QuantityRange):
            raise _decline("a reference range that is not an interval of quantities")
        interpretation = (
            _code_of(_one(observed, "interpretationCode")) if _all(observed, "interpretationCode") else None
        )
        reference_range = ReferenceRange(low=bounds.low, high=bounds.high, interpretation=interpretation)
    interpretations = []
    for element in _all(observation, "interpretationCode"):
        interpretation_code = _code_of(element)
        if interpretation_code is None:
            raise _decline("an empty interpretationCode")
        interpretations.append(interpretation_code)
    return LabResult(
        code=code,
        code_translations=translations,
        reference=reference,
        status=_status(observation),
        effective_time=_read_time(_opt(observation, "effectiveTime")),
        value=value,
        value_reference=value_reference,
        value_translations=value_translations,
        interpretations=tuple(interpretations),
        method=method,
        method_reference=method_reference,
        devices=tuple(devices),
        previous=tuple(previous),
        comments=tuple(comments),
        reference_range=reference_range,
    )


def _read_specimen(organizer: etree._Element) -> Specimen | None:
    specimen = _opt(organizer, "specimen")
    if specimen is None:
        return None
    role = _one(specimen, "specimenRole")
    entity = _one(role, "specimenPlayingEntity")
    code, reference, translations = _read_coded(_opt(entity, "code"))
    return Specimen(code=code, id=_read_ii(_opt(role, "id")), translations=translations, reference=reference)


def _read_battery(organizer: etree._Element) -> LabBattery:
    code, reference, translations = _read_coded(_opt(organizer, "code"))
    return LabBattery(
        isolate=organizer.get("classCode") == "CLUSTER",
        code=code,
        code_translations=translations,
        reference=reference,
        status=_status(organizer),
        effective_time=_read_time(_opt(organizer, "effectiveTime")),
        specimen=_read_specimen(organizer),
        components=tuple(_component(_only_child(c)) for c in _all(organizer, "component")),
    )


def _read_image(media: etree._Element) -> LabImage:
    value = _one(media, "value")
    if value.get("representation") != "B64":
        raise _decline("an image not in base64")
    try:
        data = base64.b64decode("".join((value.text or "").split()), validate=True)
    except binascii.Error:
        raise _decline("an image whose base64 does not decode") from None
    return LabImage(xml_id=media.get("ID") or "", data=data, media_type=value.get("mediaType"))


def _component(statement: etree._Element) -> LabResult | LabBattery | LabComment | LabImage:
    if local_name(statement) == "observationMedia" and _IMAGE_TEMPLATES[-1] in _template_roots(statement):
        return _read_image(statement)
    item = _read_item(statement)
    if isinstance(item, SpecimenCollection):
        raise _decline("a specimen collection inside a battery")
    return item


def _read_collection(procedure: etree._Element) -> SpecimenCollection:
    code, code_reference, _ = _read_coded(_opt(procedure, "code"))
    time = _opt(procedure, "effectiveTime")
    role = _one(_one(procedure, "participant"), "participantRole")
    specimen_type, specimen_reference, _ = _read_coded(_one(_one(role, "playingEntity"), "code"))
    if specimen_type is None:
        raise _decline("a specimen collection without the specimen's type")
    performer = _opt(procedure, "performer")
    receipt = _opt(procedure, "entryRelationship")
    received = _read_time(_opt(_one(receipt, "act"), "effectiveTime")) if receipt is not None else None
    return SpecimenCollection(
        code=code,
        code_reference=code_reference,
        collected=_read_time(_opt(time, "high")) if time is not None else None,
        target_site=_read_coded(_opt(procedure, "targetSiteCode"))[0],
        performer=_read_assigned(_one(performer, "assignedEntity")) if performer is not None else None,
        specimen_id=_read_ii(_one(role, "id")),
        specimen_type=specimen_type,
        specimen_reference=specimen_reference,
        received=received,
    )


def _template_roots(element: etree._Element) -> set[str | None]:
    return {t.get("root") for t in _all(element, "templateId")}


def _read_item(statement: etree._Element, type_code: str | None = "COMP") -> LabItem:
    name = local_name(statement)
    roots = {t.get("root") for t in _all(statement, "templateId")}
    if name == "observation" and _RESULT_TEMPLATES[0] in roots:
        return _read_result(statement)
    if name == "organizer" and roots & {_BATTERY_TEMPLATES[0], _ISOLATE_TEMPLATES[0]}:
        return _read_battery(statement)
    if name == "act" and _COMMENT_TEMPLATES[-1] in roots:
        return _read_comment(statement, type_code)
    if name == "procedure" and _COLLECTION_TEMPLATES[0] in roots:
        return _read_collection(statement)
    raise _decline(f"a <{name}> the model does not hold")


def _read_performer(element: etree._Element) -> LabPerformer:
    time = _read_time(_one(element, "time"))
    if time is None:
        raise _decline("a performer without time")
    return LabPerformer(entity=_read_assigned(_one(element, "assignedEntity")), time=time)


def _read_validator(element: etree._Element) -> LabValidator:
    time = _read_time(_opt(_one(element, "time"), "high"))
    role = _one(element, "participantRole")
    ident = _read_ii(_opt(role, "id"))
    name = _read_person_name(_one(role, "playingEntity"))
    if time is None or ident is None or name is None:
        raise _decline("a validating biologist without time, id or name")
    return LabValidator(id=ident, name=name, time=time, addresses=_read_addresses(role), telecoms=_read_telecoms(role))
