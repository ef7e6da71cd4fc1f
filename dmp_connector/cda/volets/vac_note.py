"""The vaccination note, *Note de vaccination* (VAC-NOTE 2023.01).

The document a vaccinator (doctor, pharmacist, nurse, midwife) deposits for one
vaccination given. :class:`Vaccination` is the FR-Vaccination entry as typed data — the
vaccine (CIS code with its ATC class and, optionally, its CIP pack), lot number, date,
route, body site, dose number (*rang*), observed reactions, a comment, who gave it and who
recorded it; :func:`vac_note_document` and :func:`as_vac_note` make the whole document:
type ``87273-9``, templateId ``1.2.250.1.213.1.1.1.46`` version ``2023.01`` and the IHE
Immunization Content template.

Body layout, as the VAC-NOTE schematron wants it::

    section 2.16.840.1.113883.10.20.1.6 / …1.3.23 / …2.147   11369-6  Note de vaccination
      entry  substanceAdministration …1.4.12 / …3.45         exactly one FR-Vaccination

:class:`Vaccination` is registered with :func:`dmp_connector.cda.register_entry_reader`, so
:func:`dmp_connector.cda.parse` reads it back typed (in the ANS example too).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from lxml import etree
from pydantic import Field, field_validator, model_validator

from dmp_connector.cda._namespaces import hl7
from dmp_connector.cda.build import _assigned as _write_assigned
from dmp_connector.cda.build import _author as _write_author
from dmp_connector.cda.metadata import FORMAT_OF_TEMPLATE
from dmp_connector.cda.model import (
    CISIS_TEMPLATE,
    HL7_FRANCE_TEMPLATE,
    LOINC,
    AssignedEntity,
    Author,
    ClinicalDocument,
    InstanceId,
    NonXmlBody,
    Patient,
    Section,
    StructuredBody,
    Timestamp,
    _Model,
)
from dmp_connector.cda.parse import _assigned as _read_assigned
from dmp_connector.cda.parse import _author as _read_author
from dmp_connector.cda.valuesets import (
    JDV_IMMUNIZATION_APPROACH_SITE_CODE,
    JDV_IMMUNIZATION_CODE,
    JDV_IMMUNIZATION_ROUTE_CODE,
)
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from ._entries import (
    _XSI_TYPE,
    PRODUCT_TEMPLATES,
    VoletEntry,
    _all,
    _code,
    _decline,
    _expect_templates,
    _ii,
    _one,
    _only,
    _opt,
    _read_code,
    _read_reference,
    _read_time,
    _reference,
    _required_id,
    _statement,
    _sub,
    _templates,
    _text,
    _time,
    check_anchors,
    narrative_table,
    show_code,
    show_time,
)

if TYPE_CHECKING:
    from dmp_connector.config import Settings

__all__ = [
    "ATC",
    "CIP",
    "CIS",
    "REPORTED_SYMPTOM",
    "VACCINATION_TEMPLATES",
    "VAC_NOTE_FORMAT_CODE",
    "VAC_NOTE_TEMPLATE",
    "VAC_NOTE_TITLE",
    "VAC_NOTE_TYPE_CODE",
    "VacNoteContent",
    "Vaccination",
    "VaccinationReaction",
    "as_vac_note",
    "vac_note_document",
    "vac_note_problems",
    "vac_note_vaccination",
]

VAC_NOTE_TEMPLATE: Final = InstanceId(root="1.2.250.1.213.1.1.1.46", extension="2023.01")
"""Document templateId of the VAC-NOTE, version 2023.01."""
IMMUNIZATION_CONTENT_TEMPLATE: Final = InstanceId(root="1.3.6.1.4.1.19376.1.5.3.1.1.18.1.2")
"""IHE Immunization Content (IC), which the VAC-NOTE schematron requires on the document."""
VAC_NOTE_TYPE_CODE: Final = Code.of("87273-9", LOINC, "Note de vaccination")
"""``87273-9`` (LOINC, in JDV_J07), the document type the VAC-NOTE schematron requires."""
VAC_NOTE_FORMAT_CODE: Final = FORMAT_OF_TEMPLATE[VAC_NOTE_TEMPLATE.root]
"""XDS formatCode of a VAC-NOTE, ``urn:asip:ci-sis:vac-note:2021`` (ASS_A11)."""
VAC_NOTE_TITLE: Final = "Note de vaccination"
"""Default document title."""
CIS: Final = "1.2.250.1.213.2.3.1"
"""Code system of the vaccine (CIS, the medicinal product's specialty code), required by the volet."""
ATC: Final = "2.16.840.1.113883.6.73"
"""ATC, the vaccine's class, required as a translation."""
CIP: Final = "1.2.250.1.213.2.3.2"
"""CIP, the pack, an optional translation."""
REPORTED_SYMPTOM: Final = Code.of(
    "418799008", "2.16.840.1.113883.6.96", "symptôme rapporté par le patient ou le répondant"
)
"""Kind of problem of a reaction, as the ANS example writes it."""

VACCINATION_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.24",
    "1.3.6.1.4.1.19376.1.5.3.1.4.12",
    "1.2.250.1.213.1.1.3.45",
)
"""Medication activity (CCD), Immunizations (IHE PCC), FR-Vaccination."""
_DOSE_TEMPLATES: Final = ("2.16.840.1.113883.10.20.1.46", "1.2.250.1.213.1.1.3.82")
_DOSE: Final = Code.of("30973-2", LOINC, "Rang de la vaccination")
_REACTION_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.28",
    "2.16.840.1.113883.10.20.1.54",
    "1.3.6.1.4.1.19376.1.5.3.1.4.5",
    "1.2.250.1.213.1.1.3.37",
)
_COMMENT_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.40",
    "1.3.6.1.4.1.19376.1.5.3.1.4.2",
    "1.2.250.1.213.1.1.3.32",
)
_COMMENT: Final = Code.of("48767-8", LOINC, "Commentaire")
_SECTION_TEMPLATES: Final = ("2.16.840.1.113883.10.20.1.6", "1.3.6.1.4.1.19376.1.5.3.1.3.23", "1.2.250.1.213.1.1.2.147")
_SECTION_CODE: Final = Code.of("11369-6", LOINC, "Historique des vaccinations")


class VaccinationReaction(VoletEntry):
    """A reaction observed after the vaccination (an FR-Probleme under ``entryRelationship typeCode="CAUS"``)."""

    code: Code = REPORTED_SYMPTOM
    """Kind of problem (JDV_ProblemCodes), the ANS example's ``418799008`` by default."""
    value: Code
    """The reaction (CIM-10, e.g. ``R50.2`` drug-induced fever)."""
    value_reference: str | None = None
    """``ID`` of the narrative naming it (``value/originalText``)."""
    start: Timestamp | None = None
    """When it began (``effectiveTime/low``); None writes ``nullFlavor="UNK"``."""


class Vaccination(VoletEntry):
    """An FR-Vaccination (``1.2.250.1.213.1.1.3.45``): one vaccine given on one day.

    ``<substanceAdministration classCode="SBADM" moodCode="EVN" negationInd="false">…<code code="INITIMMUNIZ"/>``
    ``<effectiveTime value="20090928"/><routeCode …/><approachSiteCode …/><consumable>…<lotNumberText>…``
    ``</consumable><performer>…</performer><author>…</author><entryRelationship>(rang, reactions, comment)``
    """

    code: Code
    """Kind of vaccination act (jdv-hl7-v3-ActSubstanceAdministrationImmunizationCode: ``INITIMMUNIZ``,
    ``BOOSTER``, ``IMMUNIZ``)."""
    day: date
    """The day the vaccine was given (the volet wants a date, not a time)."""
    product: Code
    """The vaccine, by its CIS code (code system :data:`CIS`)."""
    atc: Code
    """The vaccine's ATC class (code system :data:`ATC`), required by the volet."""
    cip: Code | None = None
    """The pack, by its CIP code (code system :data:`CIP`)."""
    product_name: str = Field(min_length=1)
    """The vaccine's brand name (``manufacturedMaterial/name``), which the CI-SIS product entry requires."""
    product_reference: str | None = None
    """``ID`` of the narrative naming the vaccine (``code/originalText``)."""
    lot_number: str = Field(min_length=1)
    """The lot number, required by the volet."""
    route: Code | None = None
    """Route (jdv-immunization-route-code-cisis, EDQM: ``20035000`` intramuscular …)."""
    approach_site: Code | None = None
    """Body site (jdv-immunization-approach-site-code-cisis, e.g. left deltoid)."""
    approach_site_reference: str | None = None
    """``ID`` of the narrative naming the site."""
    dose_number: int | None = Field(default=None, ge=1)
    """Rank of the dose in the series (*rang de la vaccination*)."""
    performer: AssignedEntity | None = None
    """Who gave the vaccine."""
    author: Author | None = None
    """Who recorded it (required by the volet; :func:`vac_note_document` puts the configured professional)."""
    reactions: tuple[VaccinationReaction, ...] = ()
    """Reactions observed."""
    comment: str | None = Field(default=None, min_length=1)
    """A comment, written in the comment entry's text after its narrative pointer."""
    comment_reference: str | None = None
    """``ID`` of the narrative holding the comment."""

    @field_validator("day", mode="before")
    @classmethod
    def _day_only(cls, value: object) -> object:
        if isinstance(value, datetime):
            raise ValidationError(
                "the VAC-NOTE gives the vaccination day only (YYYYMMDD): pass a date, not a date-time",
                problems=("day: a date-time",),
            )
        return value

    @model_validator(mode="after")
    def _systems(self) -> Vaccination:
        found = []
        for field, code, system in (("product", self.product, CIS), ("atc", self.atc, ATC), ("cip", self.cip, CIP)):
            if code is not None and code.code_system != system:
                found.append(f"{field}: the code system must be {system}")
        for field, code in (("product", self.product), ("code", self.code)):
            if code.display_name is None:
                found.append(f"{field}: the volet requires a display name")
        if found:
            raise ValidationError(
                "the vaccination's codes are not as the volet wants: " + "; ".join(found), problems=found
            )
        return self

    def value_set_problems(self) -> list[str]:
        """Act kind, route and site outside their value sets."""
        found = []
        checks = (
            ("code", self.code, JDV_IMMUNIZATION_CODE),
            ("route", self.route, JDV_IMMUNIZATION_ROUTE_CODE),
            ("approach_site", self.approach_site, JDV_IMMUNIZATION_APPROACH_SITE_CODE),
        )
        for field, code, value_set in checks:
            if code is not None and code not in value_set:
                found.append(f"vaccination.{field}: {code.code} is not in {value_set.name}")
        return found

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the substance administration."""
        if self.author is None:
            raise ValidationError("the VAC-NOTE requires the vaccination's author", problems=("vaccination.author",))
        entry = self._entry()
        sbadm = _sub(entry, "substanceAdministration", classCode="SBADM", moodCode="EVN", negationInd="false")
        _templates(sbadm, VACCINATION_TEMPLATES)
        _ii(sbadm, self.id)
        _code(sbadm, "code", self.code)
        _text(sbadm, self.reference)
        _sub(sbadm, "statusCode", code="completed")
        _time(sbadm, "effectiveTime", self.day)
        if self.route is not None:
            _code(sbadm, "routeCode", self.route)
        if self.approach_site is not None:
            _code(sbadm, "approachSiteCode", self.approach_site, reference=self.approach_site_reference)
        product = _sub(_sub(sbadm, "consumable", typeCode="CSM"), "manufacturedProduct")
        _templates(product, PRODUCT_TEMPLATES)
        material = _sub(product, "manufacturedMaterial")
        code = _code(material, "code", self.product, reference=self.product_reference)
        _code(code, "translation", self.atc)
        if self.cip is not None:
            _code(code, "translation", self.cip)
        _sub(material, "name").text = self.product_name
        _sub(material, "lotNumberText").text = self.lot_number
        if self.performer is not None:
            performer = _sub(sbadm, "performer", typeCode="PRF")
            assigned = _write_assigned(self.performer, "assignedEntity")
            assigned.set("classCode", "ASSIGNED")
            performer.append(assigned)
        author = _write_author(self.author)
        author.set("contextControlCode", "OP")
        author.set("typeCode", "AUT")
        assigned_author = author.find(hl7("assignedAuthor"))
        if assigned_author is not None:
            assigned_author.set("classCode", "ASSIGNED")
        sbadm.append(author)
        if self.dose_number is not None:
            observation = _sub(_sub(sbadm, "entryRelationship", typeCode="SUBJ"), "observation")
            observation.set("classCode", "OBS")
            observation.set("moodCode", "EVN")
            _templates(observation, _DOSE_TEMPLATES)
            _code(observation, "code", _DOSE)
            _sub(observation, "statusCode", code="completed")
            value = _sub(observation, "value", value=str(self.dose_number))
            value.set(_XSI_TYPE, "INT")
        for reaction in self.reactions:
            _write_reaction(sbadm, reaction)
        if self.comment is not None or self.comment_reference is not None:
            act = _sub(_sub(sbadm, "entryRelationship", typeCode="SUBJ"), "act", classCode="ACT", moodCode="EVN")
            _templates(act, _COMMENT_TEMPLATES)
            _code(act, "code", _COMMENT)
            text = _sub(act, "text")
            if self.comment_reference is not None:
                _reference(text, self.comment_reference)
                text[-1].tail = self.comment
            else:
                text.text = self.comment
            _sub(act, "statusCode", code="completed")
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> Vaccination:
        """Read a vaccination written as :meth:`to_element` writes it; declined otherwise."""
        sbadm = _statement(element, "substanceAdministration")
        if (sbadm.get("classCode"), sbadm.get("moodCode"), sbadm.get("negationInd")) != ("SBADM", "EVN", "false"):
            raise _decline("a substance administration that is not a given vaccination")
        _expect_templates(sbadm, VACCINATION_TEMPLATES)
        _only(
            sbadm,
            {
                "templateId",
                "id",
                "code",
                "text",
                "statusCode",
                "effectiveTime",
                "routeCode",
                "approachSiteCode",
                "consumable",
                "performer",
                "author",
                "entryRelationship",
            },
        )
        if _one(sbadm, "statusCode").get("code") != "completed":
            raise _decline("a vaccination that is not completed")
        day = _read_time(_one(sbadm, "effectiveTime"))
        if day is None or isinstance(day, datetime):
            raise _decline("a vaccination whose time is not a day")
        code_element = _one(sbadm, "code")
        _only(code_element, set())
        code = _read_code(code_element)
        route_element = _opt(sbadm, "routeCode")
        if route_element is not None:
            _only(route_element, set())
        site_element = _opt(sbadm, "approachSiteCode")
        consumable = _one(sbadm, "consumable")
        if _attributes(consumable) != {"typeCode": "CSM"}:
            raise _decline("a consumable written otherwise")
        _only(consumable, {"manufacturedProduct"})
        product = _one(consumable, "manufacturedProduct")
        if product.attrib:
            raise _decline("a manufacturedProduct with attributes")
        _expect_templates(product, PRODUCT_TEMPLATES)
        _only(product, {"templateId", "manufacturedMaterial"})
        material = _one(product, "manufacturedMaterial")
        _only(material, {"code", "name", "lotNumberText"})
        product_code_element = _one(material, "code")
        product_code = _read_code(product_code_element, allow_children={"translation"})
        for translation in _all(product_code_element, "translation"):
            _only(translation, set())
        translations = [_read_code(t) for t in _all(product_code_element, "translation")]
        atc = [t for t in translations if t is not None and t.code_system == ATC]
        cip = [t for t in translations if t is not None and t.code_system == CIP]
        if len(atc) != 1 or len(cip) > 1 or translations != [atc[0], *cip]:
            raise _decline("vaccine translations other than one ATC then at most one CIP")
        lot = _plain_text(_one(material, "lotNumberText"))
        name = _plain_text(_one(material, "name"))
        if code is None or product_code is None or lot is None or name is None:
            raise _decline("a vaccination without act or vaccine code")
        performers = _all(sbadm, "performer")
        if len(performers) > 1:
            raise _decline("a vaccination with several performers")
        performer = _read_performer(performers[0]) if performers else None
        author = _read_entry_author(_one(sbadm, "author"))
        dose, reactions, comment, comment_reference = _read_relationships(_all(sbadm, "entryRelationship"))
        return cls(
            id=_required_id(sbadm),
            reference=_read_reference(_opt(sbadm, "text")),
            entry_type_code=element.get("typeCode"),
            code=code,
            day=day,
            product=product_code,
            atc=atc[0],
            cip=cip[0] if cip else None,
            product_name=name,
            product_reference=_read_reference(_opt(product_code_element, "originalText")),
            lot_number=lot,
            route=_read_code(route_element),
            approach_site=_read_code(site_element),
            approach_site_reference=_read_reference(_opt(site_element, "originalText"))
            if site_element is not None
            else None,
            dose_number=dose,
            performer=performer,
            author=author,
            reactions=reactions,
            comment=comment,
            comment_reference=comment_reference,
        )


def _attributes(element: etree._Element) -> dict[str, str]:
    return {str(k): str(v) for k, v in element.attrib.items()}


def _plain_text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    _only(element, set())
    if element.attrib:
        raise _decline(f"<{etree.QName(element).localname}> with attributes")
    return element.text or None


def _read_performer(performer: etree._Element) -> AssignedEntity:
    if _attributes(performer) != {"typeCode": "PRF"}:
        raise _decline("a performer written otherwise")
    _only(performer, {"assignedEntity"})
    entity = _one(performer, "assignedEntity")
    if _attributes(entity) != {"classCode": "ASSIGNED"}:
        raise _decline("a performer's assignedEntity without classCode ASSIGNED")
    return _read_assigned(entity)


def _read_entry_author(author: etree._Element) -> Author:
    if _attributes(author) != {"contextControlCode": "OP", "typeCode": "AUT"}:
        raise _decline("an author written otherwise")
    _only(author, {"time", "assignedAuthor"})
    if _attributes(_one(author, "assignedAuthor")) != {"classCode": "ASSIGNED"}:
        raise _decline("an assignedAuthor without classCode ASSIGNED")
    try:
        return _read_author(author)
    except ValidationError as error:
        raise _decline("an author the model does not hold") from error


def _write_reaction(parent: etree._Element, reaction: VaccinationReaction) -> None:
    relationship = _sub(parent, "entryRelationship", inversionInd="false", typeCode="CAUS")
    observation = _sub(relationship, "observation", classCode="OBS", moodCode="EVN")
    _templates(observation, _REACTION_TEMPLATES)
    _ii(observation, reaction.id)
    _code(observation, "code", reaction.code)
    _text(observation, reaction.reference)
    _sub(observation, "statusCode", code="completed")
    _time(_sub(observation, "effectiveTime"), "low", reaction.start)
    _code(observation, "value", reaction.value, xsi_type="CD", reference=reaction.value_reference)


def _read_reaction(relationship: etree._Element) -> VaccinationReaction:
    observation = _only_child(relationship, "observation")
    if (observation.get("classCode"), observation.get("moodCode")) != ("OBS", "EVN"):
        raise _decline("a reaction that is not an observed event")
    _expect_templates(observation, _REACTION_TEMPLATES)
    _only(observation, {"templateId", "id", "code", "text", "statusCode", "effectiveTime", "value"})
    if _one(observation, "statusCode").get("code") != "completed":
        raise _decline("a reaction that is not completed")
    interval = _one(observation, "effectiveTime")
    _only(interval, {"low"})
    code = _read_code(_one(observation, "code"))
    value_element = _one(observation, "value")
    if value_element.get(_XSI_TYPE) != "CD":
        raise _decline("a reaction value that is not a CD")
    value = _read_code(value_element)
    if code is None or value is None:
        raise _decline("a reaction without code or value")
    return VaccinationReaction(
        id=_required_id(observation),
        reference=_read_reference(_opt(observation, "text")),
        code=code,
        value=value,
        value_reference=_read_reference(_opt(value_element, "originalText")),
        start=_reaction_start(_one(interval, "low")),
    )


def _reaction_start(low: etree._Element) -> date | datetime | None:
    """``low``'s time; ``nullFlavor="UNK"`` (how an unknown start is written) is None, another null is declined."""
    if low.get("nullFlavor") is not None:
        if _attributes(low) != {"nullFlavor": "UNK"}:
            raise _decline("a reaction start with another null flavor")
        return None
    return _read_time(low)


def _only_child(relationship: etree._Element, name: str) -> etree._Element:
    found = [c for c in relationship if isinstance(c.tag, str)]
    if len(found) != 1 or found[0].tag != hl7(name):
        raise _decline(f"an entryRelationship that is not one <{name}>")
    return found[0]


def _read_relationships(
    relationships: list[etree._Element],
) -> tuple[int | None, tuple[VaccinationReaction, ...], str | None, str | None]:
    """Dose number, reactions and comment, in the order :meth:`Vaccination.to_element` writes them."""
    dose: int | None = None
    reactions: list[VaccinationReaction] = []
    comment: str | None = None
    comment_reference: str | None = None
    order: list[str] = []
    for relationship in relationships:
        attributes = _attributes(relationship)
        child = _only_child(relationship, "act" if relationship.find(hl7("act")) is not None else "observation")
        roots = {t.get("root") for t in _all(child, "templateId")}
        if attributes == {"typeCode": "SUBJ"} and _DOSE_TEMPLATES[-1] in roots:
            order.append("dose")
            _expect_templates(child, _DOSE_TEMPLATES)
            _only(child, {"templateId", "code", "statusCode", "value"})
            value = _one(child, "value")
            if (
                _read_code(_one(child, "code")) != _DOSE
                or _one(child, "statusCode").get("code") != "completed"
                or value.get(_XSI_TYPE) != "INT"
                or not (value.get("value") or "").isdigit()
            ):
                raise _decline("a dose number written otherwise")
            dose = int(value.get("value") or "0")
        elif attributes == {"inversionInd": "false", "typeCode": "CAUS"}:
            order.append("reaction")
            reactions.append(_read_reaction(relationship))
        elif attributes == {"typeCode": "SUBJ"} and _COMMENT_TEMPLATES[-1] in roots:
            order.append("comment")
            comment, comment_reference = _read_comment(child)
        else:
            raise _decline("an entryRelationship the model does not hold")
    expected = sorted(order, key=["dose", "reaction", "comment"].index)
    if order != expected or order.count("dose") > 1 or order.count("comment") > 1:
        raise _decline("entryRelationships in another order or repeated")
    return dose, tuple(reactions), comment, comment_reference


def _read_comment(act: etree._Element) -> tuple[str | None, str | None]:
    if (act.get("classCode"), act.get("moodCode")) != ("ACT", "EVN"):
        raise _decline("a comment that is not an act event")
    _expect_templates(act, _COMMENT_TEMPLATES)
    _only(act, {"templateId", "code", "text", "statusCode"})
    if _read_code(_one(act, "code")) != _COMMENT or _one(act, "statusCode").get("code") != "completed":
        raise _decline("a comment with another code or status")
    text = _one(act, "text")
    _only(text, {"reference"})
    if text.attrib:
        raise _decline("a comment text with attributes")
    references = _all(text, "reference")
    if not references:
        return text.text or None, None
    if len(references) > 1 or (text.text or "").strip() or set(_attributes(references[0])) != {"value"}:
        raise _decline("a comment text written otherwise")
    value = (references[0].get("value") or "").removeprefix("#") or None
    return references[0].tail or None, value


# --------------------------------------------------------------------------- content and documents


class VacNoteContent(_Model):
    """What a VAC-NOTE says: the one vaccination (the volet allows exactly one per note)."""

    vaccination: Vaccination
    """The vaccination given."""

    def to_body(self) -> StructuredBody:
        """The structured body, or :class:`ValidationError` if a code is outside its value set."""
        vaccination = self.vaccination
        found = vaccination.value_set_problems()
        if found:
            raise ValidationError(
                "the VAC-NOTE content has codes outside their value sets: " + "; ".join(found), problems=found
            )
        placed = vaccination.model_copy(
            update={
                "reference": "vac-1",
                "product_reference": "vac-1",
                "approach_site_reference": "vac-1-site" if vaccination.approach_site is not None else None,
                "comment_reference": "vac-1-commentaire" if vaccination.comment is not None else None,
                "reactions": tuple(
                    r.model_copy(update={"reference": "vac-1-reactions", "value_reference": "vac-1-reactions"})
                    for r in vaccination.reactions
                ),
            }
        )
        performer = vaccination.performer
        row: tuple[str | tuple[str, str], ...] = (
            show_time(vaccination.day),
            (vaccination.product.display_name or vaccination.product.code, "vac-1"),
            vaccination.lot_number,
            str(vaccination.dose_number) if vaccination.dose_number is not None else "",
            show_code(vaccination.route) if vaccination.route is not None else "",
            (show_code(vaccination.approach_site), "vac-1-site") if vaccination.approach_site is not None else "",
            (", ".join(show_code(r.value) for r in vaccination.reactions), "vac-1-reactions")
            if vaccination.reactions
            else "",
            (vaccination.comment, "vac-1-commentaire") if vaccination.comment is not None else "",
            _person(performer) if performer is not None else "",
        )
        headers = (
            "Date",
            "Vaccin",
            "Lot n°",
            "Rang",
            "Voie d'administration",
            "Région d'administration",
            "Réaction observée",
            "Commentaire",
            "Vaccinateur",
        )
        text = narrative_table(headers, [row])
        section = Section(
            template_ids=_SECTION_TEMPLATES,
            id=InstanceId(root=str(uuid.uuid4()).upper()),
            code=_SECTION_CODE,
            title=VAC_NOTE_TITLE,
            text=text,
            entries=(placed,),
        )
        check_anchors((section,), "VAC-NOTE")
        return StructuredBody(sections=(section,))


def _person(entity: AssignedEntity) -> str:
    name = entity.person
    if name is None:
        return ""
    return " ".join(p for p in (name.prefix, name.given, name.family) if p)


def vac_note_vaccination(document: ClinicalDocument) -> Vaccination | None:
    """The typed vaccination of a read VAC-NOTE (None when its entry is not one the model holds)."""
    if isinstance(document.body, NonXmlBody):
        return None
    found = [e for s in document.body.sections for e in s.entries if isinstance(e, Vaccination)]
    return found[0] if len(found) == 1 else None


def vac_note_problems(document: ClinicalDocument) -> list[str]:
    """What keeps ``document`` from being a VAC-NOTE 2023.01: type, templateIds, the one vaccination, value sets."""
    found: list[str] = []
    if (document.type_code.code, document.type_code.code_system) != (
        VAC_NOTE_TYPE_CODE.code,
        VAC_NOTE_TYPE_CODE.code_system,
    ):
        found.append(f"type_code: a VAC-NOTE is of type {VAC_NOTE_TYPE_CODE.code} (LOINC)")
    roots = {t.root for t in document.template_ids}
    for template in (IMMUNIZATION_CONTENT_TEMPLATE, VAC_NOTE_TEMPLATE):
        if template.root not in roots:
            found.append(f"template_ids: the VAC-NOTE templateId {template.root} is missing")
    if isinstance(document.body, NonXmlBody):
        found.append("body: a VAC-NOTE has a structured body")
        return found
    sections = [s for s in document.body.sections if _SECTION_TEMPLATES[1] in {t.root for t in s.template_ids}]
    if len(sections) != 1:
        found.append(f"body: a VAC-NOTE has one vaccination section ({_SECTION_TEMPLATES[1]}), not {len(sections)}")
        return found
    vaccinations = [e for e in sections[0].entries if isinstance(e, Vaccination)]
    for vaccination in vaccinations:
        found += [f"body: {p}" for p in vaccination.value_set_problems()]
    return found


def as_vac_note(document: ClinicalDocument, content: VacNoteContent | None = None) -> ClinicalDocument:
    """``document`` made a VAC-NOTE: type ``87273-9``, the VAC-NOTE templateIds, and ``content``'s body."""
    fields = {name: getattr(document, name) for name in type(document).model_fields}
    if content is not None:
        fields["body"] = content.to_body()
    ours = {IMMUNIZATION_CONTENT_TEMPLATE.root, VAC_NOTE_TEMPLATE.root}
    roots = [t for t in document.template_ids if t.root not in ours]
    if not any(t.root == HL7_FRANCE_TEMPLATE for t in roots):
        roots.insert(0, InstanceId(root=HL7_FRANCE_TEMPLATE))
    if not any(t.root == CISIS_TEMPLATE for t in roots):
        roots.insert(1, InstanceId(root=CISIS_TEMPLATE))
    fields["template_ids"] = (*roots, IMMUNIZATION_CONTENT_TEMPLATE, VAC_NOTE_TEMPLATE)
    fields["type_code"] = VAC_NOTE_TYPE_CODE
    result = ClinicalDocument(**fields)
    found = vac_note_problems(result)
    if found:
        raise ValidationError("the document is not a valid VAC-NOTE: " + "; ".join(found), problems=found)
    return result


def vac_note_document(
    content: VacNoteContent,
    *,
    settings: Settings,
    patient: Identity | Patient,
    effective_time: datetime,
    practice_setting: Code,
    title: str = VAC_NOTE_TITLE,
    **fields: Any,
) -> ClinicalDocument:
    """A VAC-NOTE whose author, legal authenticator and organisation come from ``settings``.

    The service event is the vaccination (code ``87273-9``, the vaccination day); a
    vaccination without author is recorded by the configured professional at
    ``effective_time``. The other keyword arguments are those of
    :meth:`~dmp_connector.cda.model.ClinicalDocument.from_settings`.
    """
    vaccination = content.vaccination
    if vaccination.author is None:
        vaccination = vaccination.model_copy(update={"author": Author.from_settings(settings, time=effective_time)})
        content = content.model_copy(update={"vaccination": vaccination})
    fields.setdefault("service_start", vaccination.day)
    document = ClinicalDocument.from_settings(
        settings,
        patient=patient,
        type_code=VAC_NOTE_TYPE_CODE,
        title=title,
        body=content.to_body(),
        effective_time=effective_time,
        practice_setting=practice_setting,
        service_code=VAC_NOTE_TYPE_CODE,
        template_ids=(HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE, IMMUNIZATION_CONTENT_TEMPLATE, VAC_NOTE_TEMPLATE),
        **fields,
    )
    return as_vac_note(document)
