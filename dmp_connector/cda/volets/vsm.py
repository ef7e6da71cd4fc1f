"""The *Volet de Synthèse Médicale* (VSM 2023.01): the médecin traitant's summary of a patient.

:class:`VsmContent` holds what the summary says (current problems, history, allergies,
risk factors, points of vigilance, long-term treatment) as typed entries and short
texts; :meth:`VsmContent.to_body` lays it out in the sections the volet and the ANS
section rules require, with a narrative table per coded subsection whose rows the
entries point to. :func:`vsm_document` (from the SDK settings) and :func:`as_vsm` (from
any header) give the whole document: type ``SYNTH``, the VSM templateId, the service
event code ``34117-2`` the volet fixes.

Body layout, as the VSM schematron and the ANS section rules want it::

    component/section  1.2.250.1.213.1.1.2.29  46612-8  Pathologies, antécédents, allergies, facteurs de risque
      section          1.2.250.1.213.1.1.2.30  34117-2  Pathologies en cours, antécédents et allergies
        section        …1.3.6  / …2.132        11450-4  Pathologies en cours          (Problem entries)
        section        …1.3.8  / …2.134        11348-0  Antécédents médicaux          (Problem entries)
        section        …1.3.13 / …2.137        48765-2  Allergies et hypersensibilités (Allergy entries)
      section          1.2.250.1.213.1.1.2.31  57207-3  Facteurs de risque (text)
        section        …1.5.3.1 / …2.74        10161-8  Facteurs de risque professionnels (text)
    component/section  …1.3.27 / …2.150        30954-2  Points de vigilance (text)
    component/section  1.2.250.1.213.1.1.2.32  18776-5  Traitement au long cours
      section          …1.3.19 / …2.143        10160-0  Traitements                    (Medication entries)

A subsection with nothing in it is left out; a section that then has no subsection
carries a text (``Non renseigné`` unless a note is given), as the ANS rules require.
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
from dmp_connector.cda.valuesets import DocumentType, MedicationAbsence
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from ._entries import (
    Allergy,
    Medication,
    NoMedication,
    Problem,
    VoletEntry,
    check_anchors,
    narrative_paragraphs,
    narrative_statement,
    narrative_table,
    place_medications,
    show_code,
)
from ._sections import SectionKind, allergies_section, problems_section, section, typed_entries

if TYPE_CHECKING:
    from dmp_connector.config import Settings

__all__ = [
    "NOT_INFORMED",
    "VSM_FORMAT_CODE",
    "VSM_REQUIRED_SECTIONS",
    "VSM_SERVICE_CODE",
    "VSM_TEMPLATE",
    "VSM_TITLE",
    "VSM_TYPE_CODE",
    "VsmContent",
    "as_vsm",
    "vsm_document",
    "vsm_problems",
]

VSM_TEMPLATE: Final = InstanceId(root="1.2.250.1.213.1.1.1.13", extension="2023.01")
"""Document templateId of the VSM; the volet version goes in ``extension``."""
VSM_TYPE_CODE: Final = DocumentType.MEDICAL_SUMMARY
"""``SYNTH`` (TRE_A05), the document type the VSM schematron requires."""
VSM_SERVICE_CODE: Final = Code.of("34117-2", LOINC, "Historique et clinique")
"""``documentationOf/serviceEvent/code`` fixed by the volet (display name included)."""
VSM_FORMAT_CODE: Final = FORMAT_OF_TEMPLATE[VSM_TEMPLATE.root]
"""XDS formatCode of a VSM, ``urn:asip:ci-sis:vsm:2012`` (ASS_A11, as the metadata extraction uses it)."""
VSM_TITLE: Final = "Synthèse médicale"
"""Default document title."""
NOT_INFORMED: Final = "Non renseigné"
"""Narrative of a section the volet requires and the caller left empty."""

# Section kinds: templateIds (in the order the ANS example writes them), LOINC code, title.
_Kind = SectionKind

_HISTORY_AND_RISKS: Final[_Kind] = (
    ("1.2.250.1.213.1.1.2.29",),
    Code.of("46612-8", LOINC, "Conclusions de synthèse"),
    "Pathologies en cours, antécédents, allergies et facteurs de risque",
)
_HISTORY: Final[_Kind] = (
    ("1.2.250.1.213.1.1.2.30",),
    Code.of("34117-2", LOINC, "Historique et physique"),
    "Pathologies en cours, antécédents et allergies",
)
_ACTIVE_PROBLEMS: Final[_Kind] = (
    ("2.16.840.1.113883.10.20.1.11", "1.3.6.1.4.1.19376.1.5.3.1.3.6", "1.2.250.1.213.1.1.2.132"),
    Code.of("11450-4", LOINC, "Liste des problèmes actifs"),
    "Pathologies en cours",
)
_PAST_ILLNESSES: Final[_Kind] = (
    ("1.3.6.1.4.1.19376.1.5.3.1.3.8", "1.2.250.1.213.1.1.2.134"),
    Code.of("11348-0", LOINC, "Antécédents médicaux"),
    "Antécédents médicaux",
)
_ALLERGIES: Final[_Kind] = (
    ("2.16.840.1.113883.10.20.1.2", "1.3.6.1.4.1.19376.1.5.3.1.3.13", "1.2.250.1.213.1.1.2.137"),
    Code.of("48765-2", LOINC, "Allergies et hypersensibilités"),
    "Allergies et hypersensibilités",
)
_RISK_FACTORS: Final[_Kind] = (
    ("1.2.250.1.213.1.1.2.31",),
    Code.of("57207-3", LOINC, "Facteurs de risque présents ou passés affectant l'état de santé et/ou une circonstance"),
    "Facteurs de risque",
)
_OCCUPATIONAL_RISKS: Final[_Kind] = (
    ("1.3.6.1.4.1.19376.1.5.3.1.1.5.3.1", "1.2.250.1.213.1.1.2.74"),
    Code.of("10161-8", LOINC, "Facteurs de risques professionnels"),
    "Facteurs de risque professionnels",
)
_VIGILANCE: Final[_Kind] = (
    ("1.3.6.1.4.1.19376.1.5.3.1.3.27", "1.2.250.1.213.1.1.2.150"),
    Code.of("30954-2", LOINC, "Résultats d'examens"),
    "Points de vigilance",
)
_TREATMENT_PLAN: Final[_Kind] = (
    ("1.2.250.1.213.1.1.2.32",),
    Code.of("18776-5", LOINC, "Plan de traitement"),
    "Traitement au long cours",
)
_MEDICATIONS: Final[_Kind] = (
    ("2.16.840.1.113883.10.20.1.8", "1.3.6.1.4.1.19376.1.5.3.1.3.19", "1.2.250.1.213.1.1.2.143"),
    Code.of("10160-0", LOINC, "Traitements"),
    "Traitements",
)

VSM_REQUIRED_SECTIONS: Final = {
    "1.2.250.1.213.1.1.2.29": "Pathologies, antécédents, allergies et facteurs de risque",
    "1.3.6.1.4.1.19376.1.5.3.1.3.27": "Résultats (points de vigilance)",
    "1.2.250.1.213.1.1.2.32": "Traitement au long cours",
}
"""Top-level sections the VSM 2023.01 schematron requires, by templateId."""


class VsmContent(_Model):
    """What a VSM says, as typed entries and short texts; :meth:`to_body` lays it out.

    Empty lists leave their subsection out; texts default to :data:`NOT_INFORMED` where the
    volet requires one. Narrative references are filled in by :meth:`to_body`.
    """

    active_problems: tuple[Problem, ...] = ()
    """Current problems (*pathologies en cours*)."""
    medical_history: tuple[Problem, ...] = ()
    """Past illnesses (*antécédents médicaux*), usually with an ``end``."""
    allergies: tuple[Allergy, ...] = ()
    """Allergies and intolerances."""
    history_note: str | None = Field(default=None, min_length=1)
    """Free text on problems, history or allergies the entries do not cover (also: surgical history)."""
    risk_factors: str | None = Field(default=None, min_length=1)
    """Risk factors: way of life, family history … as text."""
    occupational_risk_factors: str | None = Field(default=None, min_length=1)
    """Occupational risk factors, as text (their own subsection)."""
    vigilance_points: tuple[str, ...] = ()
    """Points of vigilance (significant results, precautions), one per line."""
    medications: tuple[Medication, ...] = ()
    """Long-term treatment."""
    treatment_note: str | None = Field(default=None, min_length=1)
    """Free text on the treatment (shown after the table, or alone when there is no medication)."""
    no_long_term_treatment: bool = False
    """True when the patient has no long-term treatment: stated as a :class:`NoMedication` entry
    (rather than the section's ``Non renseigné``)."""

    @model_validator(mode="after")
    def _treatment(self) -> Self:
        if self.no_long_term_treatment and self.medications:
            raise ValidationError(
                "no_long_term_treatment contradicts the medications given", problems=("no_long_term_treatment",)
            )
        return self

    def value_set_problems(self) -> list[str]:
        """Codes of the entries outside the value sets the volet uses (empty when all are fine)."""
        found: list[str] = []
        groups: tuple[tuple[str, tuple[VoletEntry, ...]], ...] = (
            ("active_problems", self.active_problems),
            ("medical_history", self.medical_history),
            ("allergies", self.allergies),
            ("medications", self.medications),
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
                "the VSM content has codes outside their value sets: " + "; ".join(found), problems=found
            )
        history_parts: list[Section] = []
        if self.active_problems:
            history_parts.append(problems_section(_ACTIVE_PROBLEMS, self.active_problems, "pb-actif"))
        if self.medical_history:
            history_parts.append(problems_section(_PAST_ILLNESSES, self.medical_history, "atcd"))
        if self.allergies:
            history_parts.append(allergies_section(_ALLERGIES, self.allergies))
        history_text = self.history_note or (None if history_parts else NOT_INFORMED)
        history = section(
            _HISTORY,
            text=narrative_paragraphs(history_text) if history_text else None,
            subsections=tuple(history_parts),
        )
        risk_parts: tuple[Section, ...] = ()
        if self.occupational_risk_factors:
            risk_parts = (section(_OCCUPATIONAL_RISKS, text=narrative_paragraphs(self.occupational_risk_factors)),)
        risk_text = self.risk_factors or (None if risk_parts else NOT_INFORMED)
        risks = section(
            _RISK_FACTORS, text=narrative_paragraphs(risk_text) if risk_text else None, subsections=risk_parts
        )
        vigilance = section(_VIGILANCE, text=narrative_paragraphs(*(self.vigilance_points or (NOT_INFORMED,))))
        if self.medications:
            placed, headers, rows = place_medications(self.medications, "trt")
            notes = (self.treatment_note,) if self.treatment_note else ()
            medications = section(_MEDICATIONS, text=narrative_table(headers, rows, notes=notes), entries=placed)
            plan = section(_TREATMENT_PLAN, subsections=(medications,))
        elif self.no_long_term_treatment:
            none = NoMedication(code=MedicationAbsence.NO_KNOWN_MEDICATIONS, reference="trt-aucun")
            notes = (self.treatment_note,) if self.treatment_note else ()
            text = narrative_statement(show_code(none.code), "trt-aucun", *notes)
            plan = section(_TREATMENT_PLAN, subsections=(section(_MEDICATIONS, text=text, entries=(none,)),))
        else:
            plan = section(_TREATMENT_PLAN, text=narrative_paragraphs(self.treatment_note or NOT_INFORMED))
        sections = (section(_HISTORY_AND_RISKS, subsections=(history, risks)), vigilance, plan)
        check_anchors(sections, "VSM")
        return StructuredBody(sections=sections)


def vsm_problems(document: ClinicalDocument) -> list[str]:
    """What keeps ``document`` from being a VSM 2023.01: header codes, templateId, required sections, value sets."""
    found: list[str] = []
    if (document.type_code.code, document.type_code.code_system) != (VSM_TYPE_CODE.code, VSM_TYPE_CODE.code_system):
        found.append(f"type_code: a VSM is of type {VSM_TYPE_CODE.code} ({VSM_TYPE_CODE.code_system})")
    if VSM_TEMPLATE.root not in {t.root for t in document.template_ids}:
        found.append(f"template_ids: the VSM templateId {VSM_TEMPLATE.root} is missing")
    event = document.service_events[0].code
    if event is None or (event.code, event.code_system, event.display_name) != (
        VSM_SERVICE_CODE.code,
        VSM_SERVICE_CODE.code_system,
        VSM_SERVICE_CODE.display_name,
    ):
        found.append(
            f"service_events[0].code: a VSM documents {VSM_SERVICE_CODE.code} '{VSM_SERVICE_CODE.display_name}'"
        )
    if isinstance(document.body, NonXmlBody):
        found.append("body: a VSM has a structured body")
        return found
    present = {t.root for section in document.body.sections for t in section.template_ids}
    for root, name in VSM_REQUIRED_SECTIONS.items():
        if root not in present:
            found.append(f"body: the section '{name}' ({root}) is missing")
    for where, entry in typed_entries(document.body.sections, "body"):
        found += [f"{where}: {problem}" for problem in entry.value_set_problems()]
    return found


def as_vsm(document: ClinicalDocument, content: VsmContent | None = None) -> ClinicalDocument:
    """``document`` made a VSM: type ``SYNTH``, the VSM templateId, the service event code, and ``content``'s body.

    Without ``content`` the document's own body is kept and checked: a missing required
    section or a code outside its value set raises :class:`ValidationError`.
    """
    fields = {name: getattr(document, name) for name in type(document).model_fields}
    if content is not None:
        fields["body"] = content.to_body()
    roots = [t for t in document.template_ids if t.root not in (VSM_TEMPLATE.root,)]
    if not any(t.root == HL7_FRANCE_TEMPLATE for t in roots):
        roots.insert(0, InstanceId(root=HL7_FRANCE_TEMPLATE))
    if not any(t.root == CISIS_TEMPLATE for t in roots):
        roots.insert(1, InstanceId(root=CISIS_TEMPLATE))
    fields["template_ids"] = (*roots, VSM_TEMPLATE)
    fields["type_code"] = VSM_TYPE_CODE
    events = list(document.service_events)
    events[0] = events[0].model_copy(update={"code": VSM_SERVICE_CODE})
    fields["service_events"] = tuple(events)
    result = ClinicalDocument(**fields)
    found = vsm_problems(result)
    if found:
        raise ValidationError("the document is not a valid VSM: " + "; ".join(found), problems=found)
    return result


def vsm_document(
    content: VsmContent,
    *,
    settings: Settings,
    patient: Identity | Patient,
    effective_time: datetime,
    service_start: datetime | date,
    practice_setting: Code,
    service_end: datetime | date | None = None,
    title: str = VSM_TITLE,
    **fields: Any,
) -> ClinicalDocument:
    """A VSM whose author, legal authenticator and organisation come from ``settings``.

    The other keyword arguments are those of
    :meth:`~dmp_connector.cda.model.ClinicalDocument.from_settings` (``facility_type``,
    ``encounter_code``, ``document_id``, ``participants`` …).
    """
    document = ClinicalDocument.from_settings(
        settings,
        patient=patient,
        type_code=VSM_TYPE_CODE,
        title=title,
        body=content.to_body(),
        effective_time=effective_time,
        service_start=service_start,
        service_end=service_end,
        practice_setting=practice_setting,
        service_code=VSM_SERVICE_CODE,
        template_ids=(HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE, VSM_TEMPLATE),
        **fields,
    )
    return as_vsm(document)
