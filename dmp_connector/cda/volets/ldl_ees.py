"""The admission letter, *Lettre de liaison à l'entrée en établissement de santé* (LDL-EES 2022.01).

The letter the referring doctor (often the médecin traitant) sends with a patient who is
admitted to hospital: why, what the patient takes, what they are allergic to, their history.
:class:`LdlEesContent` holds it as typed data; :func:`ldl_ees_document` and :func:`as_ldl_ees`
make the whole document: type ``18761-7``, templateId ``1.2.250.1.213.1.1.1.21`` version
``2022.01``, service event ``IMP`` (hospitalisation) starting at the admission.

Body layout, as the LDL-EES schematron and the ANS section rules want it::

    section 1.3.6.1.4.1.19376.1.5.3.1.3.1 / …2.127        42349-1  Motif d'hospitalisation (text)
    section …1.3.20 / 1.2.250.1.213.1.1.2.144              42346-7  Traitements à l'admission (Medication entries)
    section 2.16.840.1.113883.10.20.1.2 / …1.3.13 / …2.137 48765-2  Allergies et hypersensibilités (Allergy entries)
    section …1.3.8 / …2.134                                 11348-0  Antécédents médicaux (Problem entries, optional)
    section 2.16.840.1.113883.10.12.201 / …1.4.1.2.16 / …2.73  55112-7  Autres informations (text)

The four sections the volet requires are always written. An empty treatment or allergy list
is written as the kit writes it: an entry stating *none known* (when the caller says so) or
*no information* (otherwise) — never an invented treatment or allergy.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final, Self

from pydantic import Field, model_validator

from dmp_connector.cda.metadata import FORMAT_OF_TEMPLATE
from dmp_connector.cda.model import (
    CISIS_TEMPLATE,
    HL7_FRANCE_TEMPLATE,
    LOINC,
    ClinicalDocument,
    InstanceId,
    NonXmlBody,
    Patient,
    Section,
    StructuredBody,
    _Model,
)
from dmp_connector.cda.valuesets import (
    JDV_ABSENT_OR_UNKNOWN_ALLERGY,
    AllergyAbsence,
    DocumentType,
    EncounterType,
    MedicationAbsence,
)
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from ._entries import (
    SNOMED_CT,
    Allergy,
    Medication,
    NoMedication,
    Problem,
    check_anchors,
    narrative_paragraphs,
    narrative_statement,
    narrative_table,
    place_medications,
    show_code,
)
from ._sections import SectionKind, allergies_section, problems_section, section, typed_entries, walk_sections

if TYPE_CHECKING:
    from dmp_connector.config import Settings

__all__ = [
    "LDL_EES_FORMAT_CODE",
    "LDL_EES_REQUIRED_SECTIONS",
    "LDL_EES_SERVICE_CODE",
    "LDL_EES_TEMPLATE",
    "LDL_EES_TITLE",
    "LDL_EES_TYPE_CODE",
    "LdlEesContent",
    "as_ldl_ees",
    "ldl_ees_document",
    "ldl_ees_problems",
]

LDL_EES_TEMPLATE: Final = InstanceId(root="1.2.250.1.213.1.1.1.21", extension="2022.01")
"""Document templateId of the LDL-EES, version 2022.01."""
LDL_EES_TYPE_CODE: Final = DocumentType.ADMISSION_LETTER
"""``18761-7`` (LOINC), the document type the LDL-EES schematron requires."""
LDL_EES_SERVICE_CODE: Final = Code.of("IMP", "2.16.840.1.113883.5.4", "Hospitalisation (établissement, y compris HAD)")
"""``documentationOf/serviceEvent/code`` the volet fixes (``IMP``, HL7 ActCode)."""
LDL_EES_FORMAT_CODE: Final = FORMAT_OF_TEMPLATE[LDL_EES_TEMPLATE.root]
"""XDS formatCode of an LDL-EES, ``urn:asip:ci-sis:ldl-ees:2017`` (ASS_A11, as the metadata extraction uses it)."""
LDL_EES_TITLE: Final = "Lettre de liaison à l'entrée en établissement de santé"
"""Default document title."""
NOT_INFORMED: Final = "Non renseigné"
"""Narrative of the comment section (which the volet requires) when the caller gives none."""

_REASON: Final[SectionKind] = (
    ("1.3.6.1.4.1.19376.1.5.3.1.3.1", "1.2.250.1.213.1.1.2.127"),
    Code.of("42349-1", LOINC, "Raison de la recommandation"),
    "Motif d'hospitalisation",
)
_ADMISSION_MEDICATIONS: Final[SectionKind] = (
    ("1.3.6.1.4.1.19376.1.5.3.1.3.20", "1.2.250.1.213.1.1.2.144"),
    Code.of("42346-7", LOINC, "Traitements à l'admission"),
    "Traitements à l'admission",
)
_ALLERGIES: Final[SectionKind] = (
    ("2.16.840.1.113883.10.20.1.2", "1.3.6.1.4.1.19376.1.5.3.1.3.13", "1.2.250.1.213.1.1.2.137"),
    Code.of("48765-2", LOINC, "Allergies et hypersensibilités"),
    "Allergies et hypersensibilités connues",
)
_PAST_ILLNESSES: Final[SectionKind] = (
    ("1.3.6.1.4.1.19376.1.5.3.1.3.8", "1.2.250.1.213.1.1.2.134"),
    Code.of("11348-0", LOINC, "Antécédents médicaux"),
    "Antécédents médicaux",
)
_COMMENT: Final[SectionKind] = (
    ("2.16.840.1.113883.10.12.201", "1.3.6.1.4.1.19376.1.4.1.2.16", "1.2.250.1.213.1.1.2.73"),
    Code.of("55112-7", LOINC, "Commentaire"),
    "Autres informations",
)

LDL_EES_REQUIRED_SECTIONS: Final = {
    "1.3.6.1.4.1.19376.1.5.3.1.3.1": "Motif d'hospitalisation",
    "1.3.6.1.4.1.19376.1.5.3.1.3.20": "Traitements à l'admission",
    "1.3.6.1.4.1.19376.1.5.3.1.3.13": "Allergies et hypersensibilités",
    "1.3.6.1.4.1.19376.1.4.1.2.16": "Autres informations (commentaire)",
}
"""Sections the LDL-EES 2022.01 schematron requires, by templateId."""

_ABSENT_OR_UNKNOWN: Final = AllergyAbsence.NO_INFORMATION.code_system
_NO_ALLERGY: Final = JDV_ABSENT_OR_UNKNOWN_ALLERGY
_DRUG_ALLERGY: Final = Code.of("416098002", SNOMED_CT, "allergie médicamenteuse")
"""The kind the ANS examples give the entry that states an absence of allergy."""


class LdlEesContent(_Model):
    """What an LDL-EES says; :meth:`to_body` lays it out in the sections the volet requires."""

    reason_for_admission: str = Field(min_length=1)
    """Why the patient is sent to hospital (the section is text only)."""
    admission_medications: tuple[Medication, ...] = ()
    """What the patient takes on admission. Empty, the section states that none is known (with
    ``no_admission_medication``) or that nothing is known, as a :class:`NoMedication` entry."""
    no_admission_medication: bool = False
    """True when the patient takes no treatment (rather than: not informed)."""
    admission_medications_note: str | None = Field(default=None, min_length=1)
    """Free text on the treatment at admission."""
    allergies: tuple[Allergy, ...] = ()
    """Known allergies and intolerances. Empty, the section states *no known allergy* (with
    ``no_known_allergy``) or *no information*, as the kit's examples write it."""
    no_known_allergy: bool = False
    """True when the patient has no known allergy (rather than: not informed)."""
    allergies_note: str | None = Field(default=None, min_length=1)
    """Free text on allergies."""
    medical_history: tuple[Problem, ...] = ()
    """Past illnesses (*antécédents médicaux*); an optional section, left out when empty."""
    comment: str | None = Field(default=None, min_length=1)
    """Other useful information (*autres informations*); the section is required and reads
    :data:`NOT_INFORMED` when this is None."""

    @model_validator(mode="after")
    def _contradictions(self) -> Self:
        problems = []
        if self.no_admission_medication and self.admission_medications:
            problems.append("no_admission_medication")
        if self.no_known_allergy and self.allergies:
            problems.append("no_known_allergy")
        if problems:
            raise ValidationError(
                "the letter both lists entries and says there are none: " + ", ".join(problems), problems=problems
            )
        return self

    def value_set_problems(self) -> list[str]:
        """Codes of the entries outside the value sets the volet uses (empty when all are fine)."""
        found: list[str] = []
        groups: tuple[tuple[str, tuple[Any, ...]], ...] = (
            ("admission_medications", self.admission_medications),
            ("allergies", self.allergies),
            ("medical_history", self.medical_history),
        )
        for name, entries in groups:
            for i, entry in enumerate(entries):
                found += [f"{name}[{i}].{problem.split('.', 1)[-1]}" for problem in entry.value_set_problems()]
        return found

    def to_body(self) -> StructuredBody:
        """The structured body, or :class:`ValidationError` if a code is outside its value set."""
        found = self.value_set_problems()
        if found:
            raise ValidationError(
                "the LDL-EES content has codes outside their value sets: " + "; ".join(found), problems=found
            )
        sections = [
            section(_REASON, text=narrative_paragraphs(self.reason_for_admission)),
            self._medications_section(),
            self._allergies_section(),
        ]
        if self.medical_history:
            sections.append(problems_section(_PAST_ILLNESSES, self.medical_history, "atcd"))
        sections.append(section(_COMMENT, text=narrative_paragraphs(self.comment or NOT_INFORMED)))
        check_anchors(tuple(sections), "LDL-EES")
        return StructuredBody(sections=tuple(sections))

    def _medications_section(self) -> Section:
        notes = (self.admission_medications_note,) if self.admission_medications_note else ()
        if self.admission_medications:
            placed, headers, rows = place_medications(self.admission_medications, "trt-entree")
            return section(_ADMISSION_MEDICATIONS, text=narrative_table(headers, rows, notes=notes), entries=placed)
        absent = MedicationAbsence.NO_KNOWN_MEDICATIONS if self.no_admission_medication else None
        code = absent or MedicationAbsence.NO_INFORMATION
        none = NoMedication(code=code, reference="trt-entree-aucun")
        text = narrative_statement(show_code(code), "trt-entree-aucun", *notes)
        return section(_ADMISSION_MEDICATIONS, text=text, entries=(none,))

    def _allergies_section(self) -> Section:
        notes = (self.allergies_note,) if self.allergies_note else ()
        if self.allergies:
            return allergies_section(_ALLERGIES, self.allergies, notes=notes)
        code = AllergyAbsence.NO_KNOWN_ALLERGIES if self.no_known_allergy else AllergyAbsence.NO_INFORMATION
        none = Allergy(kind=_DRUG_ALLERGY, reaction=code, reference="allergie-aucune")
        text = narrative_statement(show_code(code), "allergie-aucune", *notes)
        return section(_ALLERGIES, text=text, entries=(none,))


def _event_code_matches(code: Code | None) -> bool:
    return code is not None and (code.code, code.code_system) == (
        LDL_EES_SERVICE_CODE.code,
        LDL_EES_SERVICE_CODE.code_system,
    )


def ldl_ees_problems(document: ClinicalDocument) -> list[str]:
    """What keeps ``document`` from being an LDL-EES 2022.01: header, templateId, required sections, value sets."""
    found: list[str] = []
    if (document.type_code.code, document.type_code.code_system) != (
        LDL_EES_TYPE_CODE.code,
        LDL_EES_TYPE_CODE.code_system,
    ):
        found.append(f"type_code: an LDL-EES is of type {LDL_EES_TYPE_CODE.code} (LOINC)")
    if LDL_EES_TEMPLATE.root not in {t.root for t in document.template_ids}:
        found.append(f"template_ids: the LDL-EES templateId {LDL_EES_TEMPLATE.root} is missing")
    event = document.service_events[0]
    if not _event_code_matches(event.code):
        found.append(f"service_events[0].code: an LDL-EES documents {LDL_EES_SERVICE_CODE.code} (hospitalisation)")
    if event.effective_time is None:
        found.append("service_events[0].effective_time: an LDL-EES gives the admission date")
    if isinstance(document.body, NonXmlBody):
        found.append("body: an LDL-EES has a structured body")
        return found
    present = {t.root for item in walk_sections(document.body.sections) for t in item.template_ids}
    for root, name in LDL_EES_REQUIRED_SECTIONS.items():
        if root not in present:
            found.append(f"body: the section '{name}' ({root}) is missing")
    for where, entry in typed_entries(document.body.sections, "body"):
        found += [f"{where}: {problem}" for problem in entry.value_set_problems()]
        reaction = entry.reaction if isinstance(entry, Allergy) else None
        if reaction is not None and reaction.code_system == _ABSENT_OR_UNKNOWN and reaction not in _NO_ALLERGY:
            found.append(f"{where}.reaction: {reaction.code} is not in {_NO_ALLERGY.name}")
    return found


def as_ldl_ees(document: ClinicalDocument, content: LdlEesContent | None = None) -> ClinicalDocument:
    """``document`` made an LDL-EES: type ``18761-7``, its templateId, service event ``IMP``, ``content``'s body.

    Without ``content`` the document's own body is kept and checked: a missing required
    section raises :class:`ValidationError`.
    """
    fields = {name: getattr(document, name) for name in type(document).model_fields}
    if content is not None:
        fields["body"] = content.to_body()
    roots = [t for t in document.template_ids if t.root != LDL_EES_TEMPLATE.root]
    if not any(t.root == HL7_FRANCE_TEMPLATE for t in roots):
        roots.insert(0, InstanceId(root=HL7_FRANCE_TEMPLATE))
    if not any(t.root == CISIS_TEMPLATE for t in roots):
        roots.insert(1, InstanceId(root=CISIS_TEMPLATE))
    fields["template_ids"] = (*roots, LDL_EES_TEMPLATE)
    fields["type_code"] = LDL_EES_TYPE_CODE
    events = list(document.service_events)
    if not _event_code_matches(events[0].code):
        events[0] = events[0].model_copy(update={"code": LDL_EES_SERVICE_CODE})
    fields["service_events"] = tuple(events)
    result = ClinicalDocument(**fields)
    found = ldl_ees_problems(result)
    if found:
        raise ValidationError("the document is not a valid LDL-EES: " + "; ".join(found), problems=found)
    return result


def ldl_ees_document(
    content: LdlEesContent,
    *,
    settings: Settings,
    patient: Identity | Patient,
    effective_time: datetime,
    admission: datetime | date,
    practice_setting: Code,
    title: str = LDL_EES_TITLE,
    encounter_code: Code | None = EncounterType.INPATIENT,
    **fields: Any,
) -> ClinicalDocument:
    """An LDL-EES whose author, legal authenticator and organisation come from ``settings``.

    ``admission`` is when the stay begins (the service event's start, which the volet
    requires); the other keyword arguments are those of
    :meth:`~dmp_connector.cda.model.ClinicalDocument.from_settings` (``facility_type``,
    ``participants``, ``document_id`` …).
    """
    document = ClinicalDocument.from_settings(
        settings,
        patient=patient,
        type_code=LDL_EES_TYPE_CODE,
        title=title,
        body=content.to_body(),
        effective_time=effective_time,
        service_start=admission,
        practice_setting=practice_setting,
        service_code=LDL_EES_SERVICE_CODE,
        encounter_code=encounter_code,
        template_ids=(HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE, LDL_EES_TEMPLATE),
        **fields,
    )
    return as_ldl_ees(document)
