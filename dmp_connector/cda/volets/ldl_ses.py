"""The discharge letter, *Lettre de liaison à la sortie d'un établissement de santé* (LDL-SES 2022.01).

The letter a hospital gives the patient and the médecin traitant on the day of
discharge. :class:`LdlSesContent` holds its four required sections as typed data —
document status, reason for the stay (text), stay summary (coded observations: admission
and discharge modes, summary, multi-resistant organisms, transfusion …) and the treatment
at discharge — plus pending results as text. :func:`ldl_ses_document` and
:func:`as_ldl_ses` make the whole document: type ``11490-0``, templateId
``1.2.250.1.213.1.1.1.29`` version ``2022.01``.

Body layout, as the LDL-SES schematron and the ANS section rules want it::

    section 1.2.250.1.213.1.1.2.35 / .35.1            33557-0  Statut du document   (FR-Statut-du-document)
    section 1.3.6.1.4.1.19376.1.5.3.1.3.1 / …2.127   42349-1  Motif de l'hospitalisation (text)
    section …1.21.2.9 / …1.13.7 / …2.163 / .163.1    42545-4  Synthèse médicale du séjour (simple observations)
    section 1.3.6.1.4.1.19376.1.5.3.1.3.22 / …2.146  10183-2  Traitements à la sortie (Medication entries)
    section …1.3.27 / …2.150                          30954-2  Résultats en attente (text, optional)
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

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
    Timestamp,
    _Model,
)
from dmp_connector.cda.valuesets import (
    JDV_MODALITE_ENTREE,
    JDV_MODALITE_SORTIE,
    JDV_STATUT_DOC,
    DocumentType,
    EncounterType,
    MedicationAbsence,
)
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from ._entries import (
    Medication,
    NoMedication,
    ObservationValue,
    SimpleObservation,
    VoletEntry,
    check_anchors,
    narrative_paragraphs,
    narrative_statement,
    narrative_table,
    place_medications,
    show_code,
    show_time,
)
from ._sections import SectionKind, section, walk_sections

if TYPE_CHECKING:
    from dmp_connector.config import Settings

__all__ = [
    "CISIS_OBSERVATION_SYSTEM",
    "LDL_SES_FORMAT_CODE",
    "LDL_SES_REQUIRED_SECTIONS",
    "LDL_SES_TEMPLATE",
    "LDL_SES_TITLE",
    "LDL_SES_TYPE_CODE",
    "LdlSesContent",
    "StaySummary",
    "as_ldl_ses",
    "ldl_ses_document",
    "ldl_ses_problems",
]

LDL_SES_TEMPLATE: Final = InstanceId(root="1.2.250.1.213.1.1.1.29", extension="2022.01")
"""Document templateId of the LDL-SES, version 2022.01."""
LDL_SES_TYPE_CODE: Final = DocumentType.DISCHARGE_LETTER
"""``11490-0`` (LOINC), the document type the LDL-SES schematron requires."""
LDL_SES_FORMAT_CODE: Final = FORMAT_OF_TEMPLATE[LDL_SES_TEMPLATE.root]
"""XDS formatCode of an LDL-SES, ``urn:asip:ci-sis:ldl-ses:2017`` (ASS_A11, as the metadata extraction uses it)."""
LDL_SES_TITLE: Final = "Lettre de liaison à la sortie de l'établissement de santé"
"""Default document title."""
CISIS_OBSERVATION_SYSTEM: Final = "1.2.250.1.213.1.1.4.322"
"""TA_ASIP / TerminologieCISIS, the code system of the CI-SIS observation codes (``ORG-070`` …)."""

_Kind = SectionKind

_STATUS_SECTION: Final[_Kind] = (
    ("1.2.250.1.213.1.1.2.35", "1.2.250.1.213.1.1.2.35.1"),
    Code.of("33557-0", LOINC, "Etat d'achèvement"),
    "Statut du document",
)
_REASON_SECTION: Final[_Kind] = (
    ("1.3.6.1.4.1.19376.1.5.3.1.3.1", "1.2.250.1.213.1.1.2.127"),
    Code.of("42349-1", LOINC, "Raison de la recommandation"),
    "Motif de l'hospitalisation",
)
_EVENTS_SECTION: Final[_Kind] = (
    (
        "1.3.6.1.4.1.19376.1.5.3.1.1.21.2.9",
        "1.3.6.1.4.1.19376.1.7.3.1.1.13.7",
        "1.2.250.1.213.1.1.2.163",
        "1.2.250.1.213.1.1.2.163.1",
    ),
    Code.of("42545-4", LOINC, "Evènements observés"),
    "Synthèse médicale du séjour",
)
_DISCHARGE_MEDICATIONS: Final[_Kind] = (
    ("1.3.6.1.4.1.19376.1.5.3.1.3.22", "1.2.250.1.213.1.1.2.146"),
    Code.of("10183-2", LOINC, "Traitements à la sortie"),
    "Traitements à la sortie",
)
_PENDING_RESULTS: Final[_Kind] = (
    ("1.3.6.1.4.1.19376.1.5.3.1.3.27", "1.2.250.1.213.1.1.2.150"),
    Code.of("30954-2", LOINC, "Résultats d'examens"),
    "Résultats d'examens en attente",
)

LDL_SES_REQUIRED_SECTIONS: Final = {
    "1.2.250.1.213.1.1.2.35.1": "Statut du document",
    "1.3.6.1.4.1.19376.1.5.3.1.3.1": "Motif de l'hospitalisation",
    "1.3.6.1.4.1.19376.1.7.3.1.1.13.7": "Synthèse médicale du séjour",
    "1.3.6.1.4.1.19376.1.5.3.1.3.22": "Traitements à la sortie",
}
"""Sections the LDL-SES 2022.01 schematron requires, by templateId."""


def _observation_kind(code: str, display: str, *templates: str) -> tuple[Code, tuple[str, ...]]:
    return Code.of(code, CISIS_OBSERVATION_SYSTEM, display), templates


# The simple observations of the LDL-SES, with their FR specialisation templateIds.
_DOCUMENT_STATUS = _observation_kind(
    "GEN-065", "Statut du document", "1.2.250.1.213.1.1.3.48.16", "1.2.250.1.213.1.1.3.48.16.1"
)
_ADMISSION = _observation_kind("ORG-070", "Modalité d'entrée", "1.2.250.1.213.1.1.3.48.6")
_DISCHARGE = _observation_kind("ORG-074", "Modalité de sortie", "1.2.250.1.213.1.1.3.48.7")
_SUMMARY = _observation_kind("MED-142", "Synthèse médicale", "1.2.250.1.213.1.1.3.48.9")
_ADVERSE_EVENTS = _observation_kind(
    "MED-143", "Evènements indésirables survenus pendant l'hospitalisation", "1.2.250.1.213.1.1.3.48.3"
)
_MDRO_SCREENING = _observation_kind(
    "MED-309", "Recherche de microorganismes multi-résistants ou émergents effectuée", "1.2.250.1.213.1.1.3.48.8"
)
_MDRO_FOUND = _observation_kind(
    "MED-144", "Identification de micro-organismes multirésistants", "1.2.250.1.213.1.1.3.48.5"
)
_TRANSFUSION = _observation_kind("MED-145", "Transfusion de produits sanguins", "1.2.250.1.213.1.1.3.48.10")
_TRANSFUSION_ACCIDENTS = _observation_kind("MED-146", "Accidents transfusionnels", "1.2.250.1.213.1.1.3.48.1")
_BLOOD_DERIVATIVES = _observation_kind("MED-147", "Administration de dérivés du sang", "1.2.250.1.213.1.1.3.48.2")
_BLOOD_DERIVATIVE_EVENTS = _observation_kind(
    "MED-148",
    "Evènements indésirables suite à l'administration de dérivés du sang",
    "1.2.250.1.213.1.1.3.48.4",
)


class StaySummary(_Model):
    """The coded summary of the stay (section FR-Resultats-evenements): one observation per field.

    The modes come from JDV_ModaliteEntree and JDV_ModaliteSortie (see
    :class:`~dmp_connector.cda.valuesets.AdmissionMode` and ``DischargeMode``); the optional
    texts are left out when None.
    """

    admission_mode: Code
    """How the patient came in (JDV_ModaliteEntree: emergency, scheduled, transfer …)."""
    admission_date: Timestamp
    """When the stay began."""
    discharge_mode: Code
    """Where the patient goes (JDV_ModaliteSortie: home, another facility …)."""
    discharge_date: Timestamp
    """When the stay ended."""
    summary: str = Field(min_length=1)
    """The medical summary of the stay (*synthèse médicale*)."""
    mdro_screening: bool
    """Whether multi-resistant or emerging organisms were screened for."""
    transfusion: bool
    """Whether blood products were transfused."""
    blood_derivatives: bool
    """Whether blood derivatives were given."""
    adverse_events: str | None = Field(default=None, min_length=1)
    """Adverse events during the stay."""
    mdro_identified: str | None = Field(default=None, min_length=1)
    """Multi-resistant organisms identified."""
    transfusion_accidents: str | None = Field(default=None, min_length=1)
    """Transfusion accidents."""
    blood_derivative_adverse_events: str | None = Field(default=None, min_length=1)
    """Adverse events after blood derivatives."""

    @model_validator(mode="after")
    def _order(self) -> StaySummary:
        if _day(self.discharge_date) < _day(self.admission_date):
            raise ValidationError(
                "the discharge is before the admission", problems=("stay.discharge_date: before admission_date",)
            )
        return self

    def value_set_problems(self) -> list[str]:
        """The modes must be in JDV_ModaliteEntree and JDV_ModaliteSortie."""
        found = []
        if self.admission_mode not in JDV_MODALITE_ENTREE:
            found.append(f"stay.admission_mode: {self.admission_mode.code} is not in {JDV_MODALITE_ENTREE.name}")
        if self.discharge_mode not in JDV_MODALITE_SORTIE:
            found.append(f"stay.discharge_mode: {self.discharge_mode.code} is not in {JDV_MODALITE_SORTIE.name}")
        return found


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def _yes_no(value: bool) -> str:
    return "Oui" if value else "Non"


class LdlSesContent(_Model):
    """What an LDL-SES says; :meth:`to_body` lays it out in the sections the volet requires."""

    status: Code
    """Status of the letter (JDV_StatutDoc, see :class:`~dmp_connector.cda.valuesets.DocumentStatus`)."""
    reason_for_admission: str = Field(min_length=1)
    """Why the patient was hospitalised (the section is text only)."""
    stay: StaySummary
    """The coded summary of the stay."""
    discharge_medications: tuple[Medication, ...] = ()
    """The treatment at discharge. Empty, the section states that there is none known (with
    ``no_discharge_medication``) or that nothing is known, as a :class:`NoMedication` entry."""
    no_discharge_medication: bool = False
    """True when the patient leaves without any treatment (rather than: not informed)."""
    discharge_medications_note: str | None = Field(default=None, min_length=1)
    """Free text on the treatment at discharge."""
    pending_results: tuple[str, ...] = ()
    """Results still awaited, one per line (an optional section)."""
    status_time: Timestamp | None = None
    """When the status was set; defaults to the discharge date."""

    @model_validator(mode="after")
    def _treatment(self) -> LdlSesContent:
        if self.no_discharge_medication and self.discharge_medications:
            raise ValidationError(
                "no_discharge_medication contradicts the discharge medications given",
                problems=("no_discharge_medication",),
            )
        return self

    def value_set_problems(self) -> list[str]:
        """Codes outside the value sets the volet uses (empty when all are fine)."""
        found = []
        if self.status not in JDV_STATUT_DOC:
            found.append(f"status: {self.status.code} is not in {JDV_STATUT_DOC.name}")
        found += self.stay.value_set_problems()
        for i, medication in enumerate(self.discharge_medications):
            found += [f"discharge_medications[{i}].{p.split('.', 1)[-1]}" for p in medication.value_set_problems()]
        return found

    def to_body(self) -> StructuredBody:
        """The structured body, or :class:`ValidationError` if a code is outside its value set."""
        found = self.value_set_problems()
        if found:
            raise ValidationError(
                "the LDL-SES content has codes outside their value sets: " + "; ".join(found), problems=found
            )
        sections = [
            self._status_section(),
            section(_REASON_SECTION, text=narrative_paragraphs(self.reason_for_admission)),
        ]
        sections.append(self._events_section())
        if self.discharge_medications:
            placed, headers, rows = place_medications(self.discharge_medications, "trt-sortie")
            notes = (self.discharge_medications_note,) if self.discharge_medications_note else ()
            sections.append(
                section(_DISCHARGE_MEDICATIONS, text=narrative_table(headers, rows, notes=notes), entries=placed)
            )
        else:
            absence = MedicationAbsence.NO_KNOWN_MEDICATIONS if self.no_discharge_medication else None
            none = NoMedication(code=absence or MedicationAbsence.NO_INFORMATION, reference="trt-sortie-aucun")
            notes = (self.discharge_medications_note,) if self.discharge_medications_note else ()
            text = narrative_statement(show_code(none.code), "trt-sortie-aucun", *notes)
            sections.append(section(_DISCHARGE_MEDICATIONS, text=text, entries=(none,)))
        if self.pending_results:
            sections.append(section(_PENDING_RESULTS, text=narrative_paragraphs(*self.pending_results)))
        check_anchors(tuple(sections), "LDL-SES")
        return StructuredBody(sections=tuple(sections))

    def _status_section(self) -> Section:
        observation = _observation(
            _DOCUMENT_STATUS, self.status, self.status_time or self.stay.discharge_date, "statut-document"
        )
        text = narrative_table(("Statut du document",), [((show_code(self.status), "statut-document"),)])
        return section(_STATUS_SECTION, text=text, entries=(observation,))

    def _events_section(self) -> Section:
        stay = self.stay
        at = stay.discharge_date
        rows: list[tuple[Any, ...]] = []
        entries: list[SimpleObservation] = []

        def add(kind: tuple[Code, tuple[str, ...]], value: ObservationValue, shown: str, when: date | datetime) -> None:
            reference = f"sejour-{len(entries) + 1}"
            entries.append(_observation(kind, value, when, reference))
            rows.append((kind[0].display_name or kind[0].code, (shown, reference)))

        add(
            _ADMISSION,
            stay.admission_mode,
            f"{show_time(stay.admission_date)}, {show_code(stay.admission_mode)}",
            stay.admission_date,
        )
        add(_DISCHARGE, stay.discharge_mode, f"{show_time(stay.discharge_date)}, {show_code(stay.discharge_mode)}", at)
        add(_SUMMARY, stay.summary, stay.summary, at)
        if stay.adverse_events is not None:
            add(_ADVERSE_EVENTS, stay.adverse_events, stay.adverse_events, at)
        add(_MDRO_SCREENING, stay.mdro_screening, _yes_no(stay.mdro_screening), at)
        if stay.mdro_identified is not None:
            add(_MDRO_FOUND, stay.mdro_identified, stay.mdro_identified, at)
        add(_TRANSFUSION, stay.transfusion, _yes_no(stay.transfusion), at)
        if stay.transfusion_accidents is not None:
            add(_TRANSFUSION_ACCIDENTS, stay.transfusion_accidents, stay.transfusion_accidents, at)
        add(_BLOOD_DERIVATIVES, stay.blood_derivatives, _yes_no(stay.blood_derivatives), at)
        if stay.blood_derivative_adverse_events is not None:
            add(
                _BLOOD_DERIVATIVE_EVENTS, stay.blood_derivative_adverse_events, stay.blood_derivative_adverse_events, at
            )
        return section(_EVENTS_SECTION, text=narrative_table(("Élément", "Valeur"), rows), entries=tuple(entries))


def _observation(
    kind: tuple[Code, tuple[str, ...]], value: ObservationValue, when: date | datetime, reference: str
) -> SimpleObservation:
    code, templates = kind
    return SimpleObservation(
        code=code,
        value=value,
        value_type="CE" if code.code in ("ORG-070", "ORG-074") else "CD",
        effective_time=when,
        template_ids=templates,
        reference=reference,
    )


def ldl_ses_problems(document: ClinicalDocument) -> list[str]:
    """What keeps ``document`` from being an LDL-SES 2022.01: type, templateId, required sections, value sets."""
    found: list[str] = []
    if (document.type_code.code, document.type_code.code_system) != (
        LDL_SES_TYPE_CODE.code,
        LDL_SES_TYPE_CODE.code_system,
    ):
        found.append(f"type_code: an LDL-SES is of type {LDL_SES_TYPE_CODE.code} (LOINC)")
    if LDL_SES_TEMPLATE.root not in {t.root for t in document.template_ids}:
        found.append(f"template_ids: the LDL-SES templateId {LDL_SES_TEMPLATE.root} is missing")
    event = document.service_events[0]
    if event.effective_time is None:
        found.append("service_events[0].effective_time: an LDL-SES gives the stay's dates")
    if isinstance(document.body, NonXmlBody):
        found.append("body: an LDL-SES has a structured body")
        return found
    present = {t.root for t in _all_templates(document.body.sections)}
    for root, name in LDL_SES_REQUIRED_SECTIONS.items():
        if root not in present:
            found.append(f"body: the section '{name}' ({root}) is missing")
    for item in walk_sections(document.body.sections):
        for entry in item.entries:
            if isinstance(entry, SimpleObservation) and entry.code.code == "ORG-070" and isinstance(entry.value, Code):
                if entry.value not in JDV_MODALITE_ENTREE:
                    found.append(f"body: admission mode {entry.value.code} is not in {JDV_MODALITE_ENTREE.name}")
            elif isinstance(entry, VoletEntry):
                found += [f"body: {problem}" for problem in entry.value_set_problems()]
    return found


def _all_templates(sections: tuple[Section, ...]) -> list[InstanceId]:
    return [t for item in walk_sections(sections) for t in item.template_ids]


def as_ldl_ses(document: ClinicalDocument, content: LdlSesContent | None = None) -> ClinicalDocument:
    """``document`` made an LDL-SES: type ``11490-0``, the LDL-SES templateId, and ``content``'s body.

    Without ``content`` the document's own body is kept and checked: a missing required
    section raises :class:`ValidationError`.
    """
    fields = {name: getattr(document, name) for name in type(document).model_fields}
    if content is not None:
        fields["body"] = content.to_body()
    roots = [t for t in document.template_ids if t.root != LDL_SES_TEMPLATE.root]
    if not any(t.root == HL7_FRANCE_TEMPLATE for t in roots):
        roots.insert(0, InstanceId(root=HL7_FRANCE_TEMPLATE))
    if not any(t.root == CISIS_TEMPLATE for t in roots):
        roots.insert(1, InstanceId(root=CISIS_TEMPLATE))
    fields["template_ids"] = (*roots, LDL_SES_TEMPLATE)
    fields["type_code"] = LDL_SES_TYPE_CODE
    result = ClinicalDocument(**fields)
    found = ldl_ses_problems(result)
    if found:
        raise ValidationError("the document is not a valid LDL-SES: " + "; ".join(found), problems=found)
    return result


def ldl_ses_document(
    content: LdlSesContent,
    *,
    settings: Settings,
    patient: Identity | Patient,
    effective_time: datetime,
    practice_setting: Code,
    title: str = LDL_SES_TITLE,
    encounter_code: Code | None = EncounterType.INPATIENT,
    **fields: Any,
) -> ClinicalDocument:
    """An LDL-SES whose author, legal authenticator and organisation come from ``settings``.

    The service event and the encounter span the stay (admission to discharge) unless
    ``service_start`` / ``service_end`` are given; the other keyword arguments are those of
    :meth:`~dmp_connector.cda.model.ClinicalDocument.from_settings`.
    """
    fields.setdefault("service_start", content.stay.admission_date)
    fields.setdefault("service_end", content.stay.discharge_date)
    document = ClinicalDocument.from_settings(
        settings,
        patient=patient,
        type_code=LDL_SES_TYPE_CODE,
        title=title,
        body=content.to_body(),
        effective_time=effective_time,
        practice_setting=practice_setting,
        encounter_code=encounter_code,
        template_ids=(HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE, LDL_SES_TEMPLATE),
        **fields,
    )
    return as_ldl_ses(document)
