"""The imaging report, *Compte rendu d'imagerie médicale* (IMG-CR-IMG 2024.01).

What a radiology practice deposits after an examination. :class:`CrImgContent` holds the
acts (each a LOINC code with its CCAM act, modalities and anatomical sites, the DICOM study
with its series and instances), the request and history, the findings and the conclusion;
:func:`cr_img_document` and :func:`as_cr_img` make the whole document: type ``18748-4``,
templateId ``1.2.250.1.213.1.1.1.45`` version ``2024.01`` and the three DICOM Part 20
header templates, one ``documentationOf/serviceEvent`` per act whose id is the Study
Instance UID and whose code carries the CCAM, modality and region translations.

Body layout, as the IMG-CR-IMG schematron and the DICOM Part 20 templates want it::

    section 1.2.840.10008.9.2 / …2.205         55752-0  Informations cliniques (optional)
      section 1.2.840.10008.9.7 / …2.211       55115-0  Demande (request, purpose: text)
      section …10.20.22.2.39 / …2.213          11329-0  Historique médical (FR-DICOM-Observation entries)
    section 1.2.840.10008.9.3 / …2.206         55111-9  Acte d'imagerie, one per act (ImagingTechnique entry)
      section …10.20.6.1.1 / …2.217            121181   Catalogue d'objets DICOM (ImagingStudy entry)
    section …10.20.6.1.2 / …2.208              59776-5  Résultats (text, optional)
    section 1.2.840.10008.9.5 / …2.209         19005-8  Conclusion (text)

The imaging reader entries — :class:`ImagingTechnique`, :class:`ImagingStudy`,
:class:`DicomObservation`, :class:`RadiationDose`, :class:`PatientExposure`,
:class:`ContrastAdministration` and :class:`RadiopharmaceuticalAdministration` — are registered
with :func:`dmp_connector.cda.register_entry_reader`, so :func:`dmp_connector.cda.parse` reads
them back typed (in the ANS example too).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Self, TypeVar

from lxml import etree
from pydantic import Field, model_validator

from dmp_connector.cda._namespaces import hl7, new_root
from dmp_connector.cda.build import _person_name as _write_person_name
from dmp_connector.cda.metadata import FORMAT_OF_TEMPLATE
from dmp_connector.cda.model import (
    CISIS_TEMPLATE,
    HL7_FRANCE_TEMPLATE,
    LOINC,
    ClinicalDocument,
    Entry,
    InstanceId,
    Narrative,
    NonXmlBody,
    Patient,
    Period,
    PersonName,
    RawElement,
    Section,
    ServiceEvent,
    StructuredBody,
    Timestamp,
    _Model,
)
from dmp_connector.cda.valuesets import (
    JDV_CONTRE_INDICATION,
    JDV_LOCALISATION_ANATOMIQUE,
    JDV_MODALITE_ACQUISITION,
    JDV_QUANTITE_EXPOSITION_RAYONNEMENTS,
    JDV_REGION_ANATOMIQUE,
    JDV_ROUTEOF_ADMINISTRATION,
    JDV_SOP_CLASS,
    JDV_STATUT_GROSSESSE,
    DocumentType,
)
from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity

from ._entries import (
    _NSMAP,
    _XSI_TYPE,
    EDQM,
    Quantity,
    VoletEntry,
    _all,
    _code,
    _decline,
    _expect_templates,
    _ii,
    _new_id,
    _one,
    _only,
    _opt,
    _read_code,
    _read_ii,
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
    narrative_paragraphs,
    narrative_table,
    same_element,
    show_code,
    show_time,
)

if TYPE_CHECKING:
    from dmp_connector.config import Settings

__all__ = [
    "CCAM",
    "CONTRAST_ADMINISTRATION_TEMPLATES",
    "CR_IMG_FORMAT_CODE",
    "CR_IMG_TEMPLATE",
    "CR_IMG_TEMPLATES",
    "CR_IMG_TITLE",
    "CR_IMG_TYPE_CODE",
    "DCM",
    "DICOM_OBSERVATION_TEMPLATES",
    "IMAGING_STUDY_TEMPLATES",
    "IMAGING_TECHNIQUE_TEMPLATES",
    "RADIOPHARMACEUTICAL_TEMPLATES",
    "ClinicalInformation",
    "ContrastAdministration",
    "CrImgContent",
    "DicomObservation",
    "ImagingAct",
    "ImagingSeries",
    "ImagingStudy",
    "ImagingTechnique",
    "PatientExposure",
    "RadiationDose",
    "RadiationExposure",
    "RadiopharmaceuticalAdministration",
    "SopInstance",
    "as_cr_img",
    "cr_img_acts",
    "cr_img_document",
    "cr_img_problems",
]

CR_IMG_TEMPLATE: Final = InstanceId(root="1.2.250.1.213.1.1.1.45", extension="2024.01")
"""Document templateId of the CR-IMG, version 2024.01."""
CR_IMG_TEMPLATES: Final = (
    InstanceId(root="1.2.840.10008.9.1"),
    InstanceId(root="1.2.840.10008.9.20"),
    InstanceId(root="1.2.840.10008.9.21"),
)
"""DICOM Part 20 header templates (Imaging Report, General Header, Imaging Header) the volet requires."""
CR_IMG_TYPE_CODE: Final = DocumentType.IMAGING_REPORT
"""``18748-4`` (LOINC), the document type the CR-IMG schematron requires."""
CR_IMG_FORMAT_CODE: Final = FORMAT_OF_TEMPLATE[CR_IMG_TEMPLATE.root]
"""XDS formatCode of a CR-IMG, ``urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013`` (IHE)."""
CR_IMG_TITLE: Final = "Compte rendu d'imagerie médicale"
"""Default document title."""
DCM: Final = "1.2.840.10008.2.16.4"
"""DICOM controlled terminology (DCM): modalities, ``113014`` study, ``113015`` series …"""
CCAM: Final = "1.2.250.1.215.300.1"
"""CCAM, the French classification of medical acts."""
_DCMUID: Final = "1.2.840.10008.2.6.1"
_MODALITY: Final = Code.of("121139", DCM, "Modalité")
_REGION: Final = Code.of("39111-0", LOINC, "Localisation anatomique")
_STUDY: Final = Code.of("113014", DCM, "Examen")
_SERIES: Final = Code.of("113015", DCM, "Séries")
_COMMENT: Final = Code.of("48767-8", LOINC, "Commentaire")
MEDICAL_HISTORY: Final = Code.of("11348-0", LOINC, "Antécédents médicaux")
SURGICAL_HISTORY: Final = Code.of("47519-4", LOINC, "Antécédents chirurgicaux")
CONTRAINDICATION: Final = Code.of("64100-1", LOINC, "Contre-indications")
PREGNANCY_STATUS: Final = Code.of("364320009", "2.16.840.1.113883.6.96", "statut de grossesse")
_EXPOSURE_CODE: Final = Code.of("121290", DCM, "Exposition du patient aux rayonnements ionisants")
_AUTHORISATION: Final = Code.of("113850", DCM, "Autorisation d'irradiation")
_RADIOPHARMACEUTICAL: Final = Code.of(
    "440252007", "2.16.840.1.113883.6.96", "administration de produits radiopharmaceutiques"
)

IMAGING_TECHNIQUE_TEMPLATES: Final = ("1.2.840.10008.9.14", "1.2.250.1.213.1.1.3.153")
"""Procedure Technique (DICOM) and FR-DICOM-Technique-imagerie."""
IMAGING_STUDY_TEMPLATES: Final = ("1.2.840.10008.9.16", "1.2.250.1.213.1.1.3.155")
"""Study Act (DICOM) and FR-DICOM-Examen-imagerie."""
DICOM_OBSERVATION_TEMPLATES: Final = ("2.16.840.1.113883.10.20.6.2.13", "1.2.250.1.213.1.1.3.150")
"""Coded Observation (DICOM) and FR-DICOM-Observation."""
RADIATION_DOSE_TEMPLATES: Final = ("2.16.840.1.113883.10.20.6.2.14", "1.2.250.1.213.1.1.3.154")
"""Quantity Measurement (DICOM) and FR-DICOM-Quantite."""
PATIENT_EXPOSURE_TEMPLATES: Final = ("1.2.250.1.213.1.1.3.165",)
"""FR-DICOM-Exposition-patient."""
CONTRAST_ADMINISTRATION_TEMPLATES: Final = ("1.2.840.10008.9.13", "1.2.250.1.213.1.1.3.151")
"""templateIds of FR-DICOM-Administration-produit-de-sante (DICOM Procedural Medication, then CI-SIS)."""
RADIOPHARMACEUTICAL_TEMPLATES: Final = ("1.2.250.1.213.1.1.3.173",)
"""templateId of FR-DICOM-Administration-radiopharmaceutique."""
_SERIES_TEMPLATES: Final = ("1.2.840.10008.9.17", "1.2.250.1.213.1.1.3.156")
_SOP_TEMPLATES: Final = ("1.2.840.10008.9.18", "1.2.250.1.213.1.1.3.157")
_COMMENT_TEMPLATES: Final = (
    "2.16.840.1.113883.10.20.1.40",
    "1.3.6.1.4.1.19376.1.5.3.1.4.2",
    "1.2.250.1.213.1.1.3.32",
)

_Kind = tuple[tuple[str, ...], Code, str]
_CLINICAL: Final[_Kind] = (
    ("1.2.840.10008.9.2", "1.2.250.1.213.1.1.2.205"),
    Code.of("55752-0", LOINC, "Informations cliniques"),
    "Informations cliniques",
)
_REQUEST: Final[_Kind] = (
    ("1.2.840.10008.9.7", "1.2.250.1.213.1.1.2.211"),
    Code.of("55115-0", LOINC, "Demande"),
    "Justification de la demande d'examen / Finalité de l'examen",
)
_HISTORY: Final[_Kind] = (
    ("2.16.840.1.113883.10.20.22.2.39", "1.2.250.1.213.1.1.2.213"),
    Code.of("11329-0", LOINC, "Historique médical"),
    "Antécédents médicaux / Antécédents chirurgicaux / Contre-indications",
)
_ACT: Final[_Kind] = (
    ("1.2.840.10008.9.3", "1.2.250.1.213.1.1.2.206"),
    Code.of("55111-9", LOINC, "Description de l'acte d'imagerie"),
    "Technique d'imagerie",
)
_EXPOSURE: Final[_Kind] = (
    ("1.2.840.10008.9.8", "1.2.250.1.213.1.1.2.215"),
    Code.of("73569-6", LOINC, "Exposition aux rayonnements et informations de radioprotection"),
    "Exposition aux rayonnements et informations de radioprotection",
)
_CATALOG: Final[_Kind] = (
    ("2.16.840.1.113883.10.20.6.1.1", "1.2.250.1.213.1.1.2.217"),
    Code.of("121181", DCM, "Catalogue d'objets DICOM"),
    "Catalogue d'objets DICOM",
)
_FINDINGS: Final[_Kind] = (
    ("2.16.840.1.113883.10.20.6.1.2", "1.2.250.1.213.1.1.2.208"),
    Code.of("59776-5", LOINC, "Résultats de l'acte"),
    "Résultats",
)
_CONCLUSION: Final[_Kind] = (
    ("1.2.840.10008.9.5", "1.2.250.1.213.1.1.2.209"),
    Code.of("19005-8", LOINC, "Conclusions"),
    "Conclusion",
)

CR_IMG_REQUIRED_SECTIONS: Final = {
    "1.2.250.1.213.1.1.2.206": "Acte d'imagerie",
    "1.2.250.1.213.1.1.2.209": "Conclusion",
}
"""Sections the CR-IMG 2024.01 schematron requires, by templateId."""


# --------------------------------------------------------------------------- coded values with a narrative link


def _coded(
    parent: etree._Element,
    name: str,
    code: Code,
    reference: str | None,
    *,
    media_type: str | None,
    xsi_type: str | None = None,
) -> etree._Element:
    """``<name code=…>`` with ``<originalText mediaType=…><reference/></originalText>`` when referenced."""
    element = _code(parent, name, code, xsi_type=xsi_type)
    if reference is not None:
        original = _sub(element, "originalText")
        if media_type is not None:
            original.set("mediaType", media_type)
        _reference(original, reference)
    return element


def _read_coded(
    element: etree._Element,
    *,
    media_type: str | None,
    xsi_type: str | None = None,
    children: frozenset[str] = frozenset(),
) -> tuple[Code, str | None]:
    """The code and the narrative it points to; declined when written otherwise than :func:`_coded` writes it."""
    if element.get(_XSI_TYPE) != xsi_type:
        raise _decline(f"<{etree.QName(element).localname}> with another xsi:type")
    code = _read_code(element, allow_children=set(children))
    if code is None:
        raise _decline(f"<{etree.QName(element).localname}> without a code")
    original = _opt(element, "originalText")
    if original is None:
        return code, None
    if original.get("mediaType") != media_type or set(original.attrib) - {"mediaType"}:
        raise _decline("an originalText with another mediaType")
    reference = _read_reference(original)
    if reference is None:
        raise _decline("an originalText without reference")
    return code, reference


def _attributes(element: etree._Element) -> dict[str, str]:
    return {str(k): str(v) for k, v in element.attrib.items()}


def _time_value(element: etree._Element | None) -> date | datetime | None:
    """A time with a value, or None when absent; a null-flavoured one is declined (it would be written absent)."""
    if element is None:
        return None
    if element.get("nullFlavor") is not None or set(element.attrib) != {"value"}:
        raise _decline("a time with a null flavor or other attributes")
    return _read_time(element)


def _one_reference(references: list[str | None], what: str) -> str | None:
    if len(set(references)) > 1:
        raise _decline(f"{what} pointing to different narratives")
    return references[0] if references else None


def _check_in(found: list[str], where: str, code: Code, value_set: Any) -> None:
    if code not in value_set:
        found.append(f"{where}: {code.code} is not in {value_set.name}")


# --------------------------------------------------------------------------- entries


class ImagingTechnique(VoletEntry):
    """An FR-DICOM-Technique-imagerie (``1.2.250.1.213.1.1.3.153``): the act as performed.

    ``<procedure classCode="PROC" moodCode="EVN"><code code="24727-0" codeSystem="…6.1">``
    ``<translation code="ACQH004" codeSystem="1.2.250.1.215.300.1"/></code>``
    ``<methodCode code="CT" codeSystem="1.2.840.10008.2.16.4"/><targetSiteCode code="302548004" …/></procedure>``
    """

    code: Code
    """The act (LOINC, jdv-code-document-imagerie-cisis)."""
    ccam: Code | None = None
    """The CCAM act, written as the code's one translation."""
    code_reference: str | None = None
    """``ID`` of the narrative naming the act (``code/originalText``)."""
    effective_time: Timestamp | None = None
    """When the act was performed; None writes no time."""
    modalities: tuple[Code, ...] = Field(min_length=1)
    """Acquisition modalities (``methodCode``, JDV_ModaliteAcquisition: ``CT``, ``MR`` …)."""
    modality_reference: str | None = None
    """``ID`` of the narrative naming the modalities."""
    target_sites: tuple[Code, ...] = Field(min_length=1)
    """Anatomical sites (``targetSiteCode``, JDV_LocalisationAnatomique)."""
    site_reference: str | None = None
    """``ID`` of the narrative naming the sites."""
    comment_reference: str | None = None
    """``ID`` of the narrative holding other parameters (an FR-Commentaire-ER), if any."""

    @model_validator(mode="after")
    def _ccam(self) -> ImagingTechnique:
        if self.ccam is not None and self.ccam.code_system != CCAM:
            raise ValidationError(f"the CCAM act must be in CCAM ({CCAM})", problems=("ccam: not a CCAM code",))
        return self

    def value_set_problems(self) -> list[str]:
        """Modalities and sites outside JDV_ModaliteAcquisition and JDV_LocalisationAnatomique."""
        found: list[str] = []
        for i, modality in enumerate(self.modalities):
            _check_in(found, f"technique.modalities[{i}]", modality, JDV_MODALITE_ACQUISITION)
        for i, site in enumerate(self.target_sites):
            _check_in(found, f"technique.target_sites[{i}]", site, JDV_LOCALISATION_ANATOMIQUE)
        return found

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the procedure."""
        entry = self._entry()
        procedure = _sub(entry, "procedure", moodCode="EVN", classCode="PROC")
        _templates(procedure, IMAGING_TECHNIQUE_TEMPLATES)
        _ii(procedure, self.id)
        code = _coded(procedure, "code", self.code, self.code_reference, media_type="text/xml")
        if self.ccam is not None:
            _code(code, "translation", self.ccam)
        _text(procedure, self.reference)
        if self.effective_time is not None:
            _time(procedure, "effectiveTime", self.effective_time)
        for modality in self.modalities:
            _coded(procedure, "methodCode", modality, self.modality_reference, media_type="text/xml")
        for site in self.target_sites:
            _coded(procedure, "targetSiteCode", site, self.site_reference, media_type="text/xml", xsi_type="CD")
        if self.comment_reference is not None:
            _comment(procedure, self.comment_reference)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> ImagingTechnique:
        """Read a technique written as :meth:`to_element` writes it; declined otherwise."""
        procedure = _statement(element, "procedure")
        if procedure.get("moodCode") != "EVN" or procedure.get("classCode") != "PROC":
            raise _decline("a procedure that is not an event")
        _expect_templates(procedure, IMAGING_TECHNIQUE_TEMPLATES)
        _only(
            procedure,
            {"templateId", "id", "code", "text", "effectiveTime", "methodCode", "targetSiteCode", "entryRelationship"},
        )
        code_element = _one(procedure, "code")
        code, code_reference = _read_coded(code_element, media_type="text/xml", children=frozenset({"translation"}))
        translations = _all(code_element, "translation")
        if len(translations) > 1:
            raise _decline("an act with more than one translation")
        ccam = _read_code(translations[0]) if translations else None
        if translations and (ccam is None or ccam.code_system != CCAM):
            raise _decline("an act translation that is not a CCAM code")
        modalities = [_read_coded(m, media_type="text/xml") for m in _all(procedure, "methodCode")]
        sites = [_read_coded(s, media_type="text/xml", xsi_type="CD") for s in _all(procedure, "targetSiteCode")]
        if not modalities or not sites:
            raise _decline("a technique without modality or site")
        relationships = _all(procedure, "entryRelationship")
        if len(relationships) > 1:
            raise _decline("a technique with more than one comment")
        return cls(
            id=_required_id(procedure),
            reference=_read_reference(_opt(procedure, "text")),
            entry_type_code=element.get("typeCode"),
            code=code,
            ccam=ccam,
            code_reference=code_reference,
            effective_time=_time_value(_opt(procedure, "effectiveTime")),
            modalities=tuple(m for m, _ in modalities),
            modality_reference=_one_reference([r for _, r in modalities], "modalities"),
            target_sites=tuple(s for s, _ in sites),
            site_reference=_one_reference([r for _, r in sites], "sites"),
            comment_reference=_read_comment(relationships[0]) if relationships else None,
        )


def _comment(parent: etree._Element, reference: str) -> None:
    relationship = _sub(parent, "entryRelationship", typeCode="SUBJ", inversionInd="true")
    act = _sub(relationship, "act", classCode="ACT", moodCode="EVN")
    _templates(act, _COMMENT_TEMPLATES)
    _code(act, "code", _COMMENT)
    _text(act, reference)
    _sub(act, "statusCode", code="completed")


def _read_comment(relationship: etree._Element) -> str:
    if _attributes(relationship) != {"typeCode": "SUBJ", "inversionInd": "true"}:
        raise _decline("a comment relationship written otherwise")
    acts = [c for c in relationship if isinstance(c.tag, str)]
    if len(acts) != 1 or acts[0].tag != hl7("act"):
        raise _decline("a comment relationship without one act")
    act = acts[0]
    _expect_templates(act, _COMMENT_TEMPLATES)
    _only(act, {"templateId", "code", "text", "statusCode"})
    if _read_code(_one(act, "code")) != _COMMENT or _one(act, "statusCode").get("code") != "completed":
        raise _decline("a comment with another code or status")
    reference = _read_reference(_one(act, "text"))
    if reference is None:
        raise _decline("a comment without reference")
    return reference


class SopInstance(_Model):
    """One DICOM object of a series (FR-DICOM-SOP-instance-observation ``1.2.250.1.213.1.1.3.157``)."""

    uid: InstanceId
    """SOP Instance UID."""
    sop_class: Code
    """SOP class (jdv-sop-class-cisis, e.g. ``1.2.840.10008.5.1.4.1.1.2`` CT Image Storage)."""
    class_reference: str | None = None
    """``ID`` of the narrative naming it (often the link to the images)."""
    url: str | None = Field(default=None, min_length=1)
    """Where the images are (a WADO URL), written as ``text mediaType="application/dicom"``."""
    effective_time: Timestamp | None = None
    """When the object was created."""


class ImagingSeries(_Model):
    """A series of a study (FR-DICOM-Serie-imagerie ``1.2.250.1.213.1.1.3.156``)."""

    uid: InstanceId
    """Series Instance UID."""
    modality: Code
    """Modality of the series (JDV_ModaliteAcquisition)."""
    modality_reference: str | None = None
    """``ID`` of the narrative naming the modality."""
    effective_time: Timestamp | None = None
    """When the series was acquired."""
    instance: SopInstance
    """The series' DICOM object (the 2024.01 schematron counts exactly one per series)."""


class ImagingStudy(VoletEntry):
    """An FR-DICOM-Examen-imagerie (``1.2.250.1.213.1.1.3.155``): the DICOM study; ``id`` is its Study Instance UID.

    ``<act classCode="ACT" moodCode="EVN"><id root="<Study Instance UID>"/><code code="113014" …/>``
    ``<effectiveTime value="…"/><entryRelationship typeCode="COMP"><act>(series)…</act></entryRelationship></act>``
    """

    effective_time: Timestamp
    """Date and time of the study (required by the volet)."""
    series: ImagingSeries
    """The study's series (the 2024.01 schematron counts exactly one per study)."""

    def value_set_problems(self) -> list[str]:
        """The series modality and SOP class must be in their value sets."""
        found: list[str] = []
        _check_in(found, "study.series.modality", self.series.modality, JDV_MODALITE_ACQUISITION)
        _check_in(found, "study.series.instance.sop_class", self.series.instance.sop_class, JDV_SOP_CLASS)
        return found

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the study act, its series and its instance."""
        entry = self._entry()
        act = _sub(entry, "act", classCode="ACT", moodCode="EVN")
        _templates(act, IMAGING_STUDY_TEMPLATES)
        _ii(act, self.id)
        _code(act, "code", _STUDY)
        _text(act, self.reference)
        _time(act, "effectiveTime", self.effective_time)
        series = _sub(_sub(act, "entryRelationship", typeCode="COMP"), "act", classCode="ACT", moodCode="EVN")
        _templates(series, _SERIES_TEMPLATES)
        _ii(series, self.series.uid)
        code = _code(series, "code", _SERIES)
        qualifier = _sub(code, "qualifier")
        _code(qualifier, "name", _MODALITY)
        _coded(qualifier, "value", self.series.modality, self.series.modality_reference, media_type="text/plain")
        if self.series.effective_time is not None:
            _time(series, "effectiveTime", self.series.effective_time)
        instance = self.series.instance
        sop = _sub(_sub(series, "entryRelationship", typeCode="COMP"), "observation", classCode="DGIMG", moodCode="EVN")
        _templates(sop, _SOP_TEMPLATES)
        _ii(sop, instance.uid)
        _coded(sop, "code", instance.sop_class, instance.class_reference, media_type=None)
        if instance.url is not None:
            _sub(_sub(sop, "text", mediaType="application/dicom"), "reference", value=instance.url)
        if instance.effective_time is not None:
            _time(sop, "effectiveTime", instance.effective_time)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> ImagingStudy:
        """Read a study with one series of one instance; declined otherwise."""
        act = _statement(element, "act")
        _event(act, "ACT")
        _expect_templates(act, IMAGING_STUDY_TEMPLATES)
        _only(act, {"templateId", "id", "code", "text", "effectiveTime", "entryRelationship"})
        if _read_code(_one(act, "code")) != _STUDY:
            raise _decline("a study act with another code")
        time = _time_value(_one(act, "effectiveTime"))
        if time is None:
            raise _decline("a study without time")
        series = _component(act, "act")
        _event(series, "ACT")
        _expect_templates(series, _SERIES_TEMPLATES)
        _only(series, {"templateId", "id", "code", "effectiveTime", "entryRelationship"})
        code = _one(series, "code")
        _only(code, {"qualifier"})
        if _read_code(code, allow_children={"qualifier"}) != _SERIES:
            raise _decline("a series act with another code")
        qualifier = _one(code, "qualifier")
        _only(qualifier, {"name", "value"})
        if _read_code(_one(qualifier, "name")) != _MODALITY:
            raise _decline("a series qualifier that is not the modality")
        modality, modality_reference = _read_coded(_one(qualifier, "value"), media_type="text/plain")
        sop = _component(series, "observation")
        if sop.get("classCode") != "DGIMG" or sop.get("moodCode") != "EVN":
            raise _decline("a SOP instance that is not a DGIMG event")
        _expect_templates(sop, _SOP_TEMPLATES)
        _only(sop, {"templateId", "id", "code", "text", "effectiveTime"})
        sop_class, class_reference = _read_coded(_one(sop, "code"), media_type=None)
        url = None
        text = _opt(sop, "text")
        if text is not None:
            if _attributes(text) != {"mediaType": "application/dicom"} or (text.text or "").strip():
                raise _decline("a SOP instance text written otherwise")
            _only(text, {"reference"})
            url = _one(text, "reference").get("value") or None
        uid = _read_ii(_one(series, "id"))
        instance_uid = _read_ii(_one(sop, "id"))
        if uid is None or instance_uid is None:
            raise _decline("a series or instance without UID")
        return cls(
            id=_required_id(act),
            reference=_read_reference(_opt(act, "text")),
            entry_type_code=element.get("typeCode"),
            effective_time=time,
            series=ImagingSeries(
                uid=uid,
                modality=modality,
                modality_reference=modality_reference,
                effective_time=_time_value(_opt(series, "effectiveTime")),
                instance=SopInstance(
                    uid=instance_uid,
                    sop_class=sop_class,
                    class_reference=class_reference,
                    url=url,
                    effective_time=_time_value(_opt(sop, "effectiveTime")),
                ),
            ),
        )


def _event(element: etree._Element, class_code: str) -> None:
    if element.get("classCode") != class_code or element.get("moodCode") != "EVN":
        raise _decline(f"an <{etree.QName(element).localname}> that is not a {class_code} event")


def _component(parent: etree._Element, name: str) -> etree._Element:
    relationship = _one(parent, "entryRelationship")
    if _attributes(relationship) != {"typeCode": "COMP"}:
        raise _decline("a component relationship written otherwise")
    found = [c for c in relationship if isinstance(c.tag, str)]
    if len(found) != 1 or found[0].tag != hl7(name):
        raise _decline(f"a component that is not one <{name}>")
    return found[0]


class DicomObservation(VoletEntry):
    """An FR-DICOM-Observation (``1.2.250.1.213.1.1.3.150``): history, surgical history, contraindication …

    The value is a code (a contraindication from jdv-contre-indication-cisis) or only a
    pointer to the narrative (free-text history); ``targetSiteCode`` is written masked, as
    the ANS example writes it.
    """

    code: Code
    """What is observed (``11348-0`` medical history, ``47519-4`` surgical history, ``64100-1`` contraindication)."""
    value: Code | None = None
    """A coded value; None writes a value holding only the narrative pointer."""
    value_reference: str | None = None
    """``ID`` of the narrative the value comes from."""
    effective_time: Timestamp | None = None
    """When; None writes no time."""
    target_site_null_flavor: Literal["MSK", "NA"] = "MSK"
    """How the (absent) target site is written: ``MSK`` in the history, ``NA`` for the pregnancy status,
    as the ANS example writes them."""

    @model_validator(mode="after")
    def _value(self) -> DicomObservation:
        if self.value is None and self.value_reference is None:
            raise ValidationError(
                "an FR-DICOM-Observation needs a coded value or a narrative reference",
                problems=("value/value_reference",),
            )
        return self

    def value_set_problems(self) -> list[str]:
        """A contraindication must be in jdv-contre-indication-cisis."""
        found: list[str] = []
        if self.code == CONTRAINDICATION and self.value is not None:
            _check_in(found, "observation.value", self.value, JDV_CONTRE_INDICATION)
        if self.code == PREGNANCY_STATUS and self.value is not None:
            _check_in(found, "observation.value", self.value, JDV_STATUT_GROSSESSE)
        return found

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the observation."""
        entry = self._entry()
        observation = _sub(entry, "observation", classCode="OBS", moodCode="EVN")
        _templates(observation, DICOM_OBSERVATION_TEMPLATES)
        _ii(observation, self.id)
        _code(observation, "code", self.code)
        _text(observation, self.reference)
        _sub(observation, "statusCode", code="completed")
        if self.effective_time is not None:
            _time(observation, "effectiveTime", self.effective_time)
        value = _sub(observation, "value")
        value.set(_XSI_TYPE, "CD")
        if self.value is not None:
            value.set("code", self.value.code)
            if self.value.display_name is not None:
                value.set("displayName", self.value.display_name)
            value.set("codeSystem", self.value.code_system)
        if self.value_reference is not None:
            _reference(_sub(value, "originalText"), self.value_reference)
        _sub(observation, "targetSiteCode", nullFlavor=self.target_site_null_flavor)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> DicomObservation:
        """Read an observation written as :meth:`to_element` writes it; declined otherwise."""
        observation = _statement(element, "observation")
        _event(observation, "OBS")
        _expect_templates(observation, DICOM_OBSERVATION_TEMPLATES)
        _only(
            observation, {"templateId", "id", "code", "text", "statusCode", "effectiveTime", "value", "targetSiteCode"}
        )
        if _one(observation, "statusCode").get("code") != "completed":
            raise _decline("an observation that is not completed")
        site = _attributes(_one(observation, "targetSiteCode"))
        if site not in ({"nullFlavor": "MSK"}, {"nullFlavor": "NA"}):
            raise _decline("an observation with a target site")
        code = _read_code(_one(observation, "code"))
        if code is None:
            raise _decline("an observation without code")
        value_element = _one(observation, "value")
        if value_element.get(_XSI_TYPE) != "CD":
            raise _decline("an observation value that is not a CD")
        if set(_attributes(value_element)) - {_XSI_TYPE, "code", "codeSystem", "displayName", "codeSystemName"}:
            raise _decline("an observation value with a null flavor or other attributes")
        value = _read_code(value_element)
        original = _opt(value_element, "originalText")
        if original is not None and original.attrib:
            raise _decline("an originalText with attributes")
        return cls(
            id=_required_id(observation),
            reference=_read_reference(_opt(observation, "text")),
            entry_type_code=element.get("typeCode"),
            code=code,
            value=value,
            value_reference=_read_reference(original),
            effective_time=_time_value(_opt(observation, "effectiveTime")),
            target_site_null_flavor="NA" if site == {"nullFlavor": "NA"} else "MSK",
        )


class RadiationDose(VoletEntry):
    """An FR-DICOM-Quantite (``1.2.250.1.213.1.1.3.154``): a radiation dose measured (PDL, PDS, DGM …).

    ``<observation classCode="OBS" moodCode="EVN"><code code="113813" codeSystem="1.2.840.10008.2.16.4"/>``
    ``<value xsi:type="PQ" value="1140.26" unit="mGy.cm"/><targetSiteCode xsi:type="CD" code="302548004" …/>``
    """

    code: Code
    """What is measured (jdv-quantite-exposition-rayonnements-cisis, e.g. ``113813`` total DLP)."""
    quantity: Quantity
    """The measure, with its UCUM unit (``mGy.cm``, ``Gy.m2`` …)."""
    target_site: Code
    """Where (jdv-localisation-anatomique-cisis)."""
    site_reference: str | None = None
    """``ID`` of the narrative naming the site."""
    effective_time: Timestamp | None = None
    """When it was measured; None writes no time."""

    def value_set_problems(self) -> list[str]:
        """The measure and the site must be in their value sets."""
        found: list[str] = []
        _check_in(found, "dose.code", self.code, JDV_QUANTITE_EXPOSITION_RAYONNEMENTS)
        _check_in(found, "dose.target_site", self.target_site, JDV_LOCALISATION_ANATOMIQUE)
        return found

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the measurement."""
        entry = self._entry()
        observation = _sub(entry, "observation", classCode="OBS", moodCode="EVN")
        _templates(observation, RADIATION_DOSE_TEMPLATES)
        _ii(observation, self.id)
        _code(observation, "code", self.code)
        _text(observation, self.reference)
        _sub(observation, "statusCode", code="completed")
        if self.effective_time is not None:
            _time(observation, "effectiveTime", self.effective_time)
        value = _sub(observation, "value")
        value.set(_XSI_TYPE, "PQ")
        value.set("value", format(self.quantity.value, "f"))
        value.set("unit", self.quantity.unit)
        _coded(
            observation, "targetSiteCode", self.target_site, self.site_reference, media_type="text/xml", xsi_type="CD"
        )
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> RadiationDose:
        """Read a measurement written as :meth:`to_element` writes it; declined otherwise."""
        observation = _statement(element, "observation")
        _event(observation, "OBS")
        _expect_templates(observation, RADIATION_DOSE_TEMPLATES)
        _only(
            observation, {"templateId", "id", "code", "text", "statusCode", "effectiveTime", "value", "targetSiteCode"}
        )
        if _one(observation, "statusCode").get("code") != "completed":
            raise _decline("a measurement that is not completed")
        code = _read_code(_one(observation, "code"))
        value = _one(observation, "value")
        _only(value, set())
        if set(_attributes(value)) != {_XSI_TYPE, "value", "unit"} or value.get(_XSI_TYPE) != "PQ":
            raise _decline("a measurement value written otherwise")
        try:
            quantity = Quantity(value=Decimal(value.get("value") or ""), unit=value.get("unit") or "")
        except InvalidOperation:
            raise _decline("a measurement value that is not a number") from None
        site, site_reference = _read_coded(_one(observation, "targetSiteCode"), media_type="text/xml", xsi_type="CD")
        if code is None:
            raise _decline("a measurement without code")
        return cls(
            id=_required_id(observation),
            reference=_read_reference(_opt(observation, "text")),
            entry_type_code=element.get("typeCode"),
            code=code,
            quantity=quantity,
            target_site=site,
            site_reference=site_reference,
            effective_time=_time_value(_opt(observation, "effectiveTime")),
        )


class PatientExposure(_Model):
    """An FR-DICOM-Exposition-patient (``1.2.250.1.213.1.1.3.165``): who authorised the irradiation.

    ``<procedure classCode="PROC" moodCode="EVN"><code code="121290" …/><participant typeCode="RESP">``
    ``<participantRole><id …/><code code="113850" …/><playingEntity><name>…</name></playingEntity>``
    ``</participantRole></participant></procedure>``

    The procedure's own id is optional in the volet (the kit's example has none): unlike the
    other entries it may be None, so that an exposure read without one is written without one.
    """

    id: InstanceId | None = Field(default_factory=_new_id)
    """Id of the procedure; a fresh UUID unless given, None when the entry has none (then none is written)."""
    entry_type_code: str | None = None
    """``entry/@typeCode``, if any."""
    authorised_by: PersonName
    """The professional who authorised the exposure."""
    authoriser_id: InstanceId
    """That professional's id (IdNat_PS: root ``1.2.250.1.71.4.2.1``, ``8`` + RPPS)."""
    code_reference: str | None = None
    """``ID`` of the narrative naming the exposure (``code/originalText``)."""
    authorisation: Code = _AUTHORISATION
    """The role's code, ``113850`` (DCM) *Autorisation d'irradiation*, with the display name as read."""

    @model_validator(mode="after")
    def _authorisation(self) -> Self:
        if (self.authorisation.code, self.authorisation.code_system) != (_AUTHORISATION.code, DCM):
            raise ValidationError(
                "the exposure's role code is 113850 (DCM), the authorisation", problems=("authorisation",)
            )
        return self

    def value_set_problems(self) -> list[str]:
        """No value set applies to the exposure itself."""
        return []

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the procedure."""
        entry = new_root("entry", _NSMAP)
        if self.entry_type_code is not None:
            entry.set("typeCode", self.entry_type_code)
        procedure = _sub(entry, "procedure", classCode="PROC", moodCode="EVN")
        _templates(procedure, PATIENT_EXPOSURE_TEMPLATES)
        if self.id is not None:
            _ii(procedure, self.id)
        _coded(procedure, "code", _EXPOSURE_CODE, self.code_reference, media_type=None)
        role = _sub(_sub(procedure, "participant", typeCode="RESP"), "participantRole")
        _ii(role, self.authoriser_id)
        _code(role, "code", self.authorisation)
        _write_person_name(_sub(_sub(role, "playingEntity"), "name"), self.authorised_by)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> PatientExposure:
        """Read an exposure written as :meth:`to_element` writes it; declined otherwise."""
        procedure = _statement(element, "procedure")
        if procedure.get("classCode") != "PROC" or procedure.get("moodCode") != "EVN":
            raise _decline("a procedure that is not an event")
        _expect_templates(procedure, PATIENT_EXPOSURE_TEMPLATES)
        _only(procedure, {"templateId", "id", "code", "participant"})
        code, code_reference = _read_coded(_one(procedure, "code"), media_type=None)
        if code != _EXPOSURE_CODE:
            raise _decline("an exposure with another code")
        participant = _one(procedure, "participant")
        if _attributes(participant) != {"typeCode": "RESP"}:
            raise _decline("an exposure participant that is not RESP")
        _only(participant, {"participantRole"})
        role = _one(participant, "participantRole")
        if role.attrib:
            raise _decline("a participantRole with attributes")
        _only(role, {"id", "code", "playingEntity"})
        authorisation = _read_code(_one(role, "code"))
        if authorisation is None or (authorisation.code, authorisation.code_system) != (_AUTHORISATION.code, DCM):
            raise _decline("a participant role that is not the authorisation")
        authoriser = _read_ii(_one(role, "id"))
        entity = _one(role, "playingEntity")
        if entity.attrib or authoriser is None:
            raise _decline("an authoriser without id, or a playingEntity with attributes")
        _only(entity, {"name"})
        read = cls(
            id=_read_ii(_opt(procedure, "id")),
            entry_type_code=element.get("typeCode"),
            authorised_by=_read_name(_one(entity, "name")),
            authoriser_id=authoriser,
            code_reference=code_reference,
            authorisation=authorisation,
        )
        if not same_element(element, read.to_element()):
            raise _decline("an exposure that does not rewrite as read")
        return read


# --------------------------------------------------------------------------- products administered


class _ProductAdministration(_Model):
    """What the contrast-product and radiopharmaceutical administrations share (a ``substanceAdministration``).

    Both are read by taking each part the model holds, then proving the reading: the entry
    written afresh from the fields must equal the element, child for child; otherwise the
    entry stays as it came (``RawEntry``).
    """

    TEMPLATES: ClassVar[tuple[str, ...]] = ()
    CODE: ClassVar[Code | None] = None
    WRITES_STATUS: ClassVar[bool] = False
    DOSE_AS_LOW: ClassVar[bool] = False
    CONSUMABLE_TYPE: ClassVar[str | None] = None

    id: InstanceId | None = None
    """Id of the administration; None writes none (the kit's radiopharmaceutical has none)."""
    reference: str | None = None
    """``ID`` of the narrative describing the administration (``text``), if any."""
    entry_type_code: str | None = None
    """``entry/@typeCode``, if any."""
    route: Code | None = None
    """Route of administration (EDQM, JDV_RouteofAdministration)."""
    dose: Quantity | None = None
    """The amount given (``150 mL``, ``200 MBq``)."""
    dose_reference: str | None = None
    """``ID`` of the narrative showing the dose, written as the dose's ``translation/originalText``."""
    product: Code | None = None
    """The product's own code on ``manufacturedMaterial/code``; None writes a code that only points to the
    narrative and carries the translations, as the kit writes it."""
    product_reference: str | None = None
    """``ID`` of the narrative naming the product (``originalText mediaType="text/xml"``)."""
    product_translations: tuple[Code, ...] = ()
    """Codes of the product (CIP ``1.2.250.1.213.2.3.2``, ATC ``2.16.840.1.113883.6.73`` …)."""
    name: str | None = Field(default=None, min_length=1)
    """The product's name (``manufacturedMaterial/name``)."""
    lot_number: str | None = Field(default=None, min_length=1)
    """The batch number (``lotNumberText``)."""
    comment_reference: str | None = None
    """``ID`` of the narrative holding a comment on the administration (an FR-Commentaire-ER), if any."""

    @model_validator(mode="after")
    def _references(self) -> Self:
        for name in ("reference", "dose_reference", "product_reference", "comment_reference"):
            value = getattr(self, name)
            if value is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_.\-]*$", value):
                raise ValidationError(f"{name}: a narrative reference is an XML ID", problems=(name,))
        if self.dose_reference is not None and self.dose is None:
            raise ValidationError("dose_reference: only with a dose", problems=("dose_reference",))
        return self

    def value_set_problems(self) -> list[str]:
        """An EDQM route must be in JDV_RouteofAdministration."""
        found: list[str] = []
        if self.route is not None and self.route.code_system == EDQM:
            _check_in(found, "administration.route", self.route, JDV_ROUTEOF_ADMINISTRATION)
        return found

    def to_element(self) -> etree._Element:
        """The ``<entry>`` with the substance administration."""
        entry = new_root("entry", _NSMAP)
        if self.entry_type_code is not None:
            entry.set("typeCode", self.entry_type_code)
        administration = _sub(entry, "substanceAdministration", classCode="SBADM", moodCode="EVN")
        _templates(administration, self.TEMPLATES)
        if self.id is not None:
            _ii(administration, self.id)
        if self.CODE is not None:
            _code(administration, "code", self.CODE)
        _text(administration, self.reference)
        if self.WRITES_STATUS:
            _sub(administration, "statusCode", code="completed")
        if self.route is not None:
            _code(administration, "routeCode", self.route)
        if self.dose is not None:
            dose = _sub(administration, "doseQuantity")
            if self.DOSE_AS_LOW:
                dose = _sub(dose, "low")
            dose.set("value", format(self.dose.value, "f"))
            dose.set("unit", self.dose.unit)
            if self.dose_reference is not None:
                _reference(_sub(_sub(dose, "translation"), "originalText"), self.dose_reference)
        consumable = _sub(administration, "consumable")
        if self.CONSUMABLE_TYPE is not None:
            consumable.set("typeCode", self.CONSUMABLE_TYPE)
        material = _sub(_sub(consumable, "manufacturedProduct", classCode="MANU"), "manufacturedMaterial")
        code = _sub(material, "code")
        if self.product is not None:
            code.set("code", self.product.code)
            if self.product.display_name is not None:
                code.set("displayName", self.product.display_name)
            code.set("codeSystem", self.product.code_system)
        if self.product_reference is not None:
            _reference(_sub(code, "originalText", mediaType="text/xml"), self.product_reference)
        for translation in self.product_translations:
            _code(code, "translation", translation)
        if self.name is not None:
            _sub(material, "name").text = self.name
        if self.lot_number is not None:
            _sub(material, "lotNumberText").text = self.lot_number
        if self.comment_reference is not None:
            _comment(administration, self.comment_reference)
        return entry

    @classmethod
    def from_element(cls, element: etree._Element) -> Self:
        """Read an administration the model holds exactly; declined otherwise."""
        administration = _statement(element, "substanceAdministration")
        _event(administration, "SBADM")
        _expect_templates(administration, cls.TEMPLATES)
        allowed = {"templateId", "id", "code", "text", "statusCode", "routeCode", "doseQuantity", "consumable"}
        _only(administration, allowed | {"entryRelationship"})
        dose_element = _opt(administration, "doseQuantity")
        dose, dose_reference = _read_dose(dose_element, cls.DOSE_AS_LOW)
        consumable = _one(administration, "consumable")
        _only(consumable, {"manufacturedProduct"})
        product = _one(consumable, "manufacturedProduct")
        _only(product, {"manufacturedMaterial"})
        material = _one(product, "manufacturedMaterial")
        _only(material, {"code", "name", "lotNumberText"})
        code_element = _one(material, "code")
        product_code = _read_code(code_element, allow_children={"translation"})
        translations = [_read_code(t) for t in _all(code_element, "translation")]
        relationships = _all(administration, "entryRelationship")
        if len(relationships) > 1:
            raise _decline("an administration with more than one comment")
        read = cls(
            id=_read_ii(_opt(administration, "id")),
            reference=_read_reference(_opt(administration, "text")),
            entry_type_code=element.get("typeCode"),
            route=_read_code(_opt(administration, "routeCode")),
            dose=dose,
            dose_reference=dose_reference,
            product=product_code,
            product_reference=_read_reference(_opt(code_element, "originalText")),
            product_translations=tuple(t for t in translations if t is not None),
            name=_plain_text(_opt(material, "name")),
            lot_number=_plain_text(_opt(material, "lotNumberText")),
            comment_reference=_read_comment(relationships[0]) if relationships else None,
        )
        if not same_element(element, read.to_element()):
            raise _decline("an administration that does not rewrite as read")
        return read


def _read_dose(element: etree._Element | None, as_low: bool) -> tuple[Quantity | None, str | None]:
    """The dose (a ``low`` bound, or the quantity itself) and the narrative its translation points to."""
    if element is None:
        return None, None
    if as_low:
        _only(element, {"low"})
        element = _one(element, "low")
    _only(element, {"translation"})
    value = element.get("value")
    if value is None:
        raise _decline("a dose without value")
    try:
        dose = Quantity(value=Decimal(value), unit=element.get("unit") or "1")
    except InvalidOperation:
        raise _decline("a dose that is not a number") from None
    translation = _opt(element, "translation")
    if translation is None:
        return dose, None
    _only(translation, {"originalText"})
    return dose, _read_reference(_opt(translation, "originalText"))


def _plain_text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    if element.attrib or len(element):
        raise _decline(f"a <{etree.QName(element).localname}> that is not plain text")
    return (element.text or "").strip() or None


class ContrastAdministration(_ProductAdministration):
    """An FR-DICOM-Administration-produit-de-sante (``1.2.250.1.213.1.1.3.151``): a contrast product given.

    ``<substanceAdministration classCode="SBADM" moodCode="EVN"><templateId root="1.2.840.10008.9.13"/>…``
    ``<routeCode code="20045000" …/><doseQuantity><low value="150" unit="mL">…</low></doseQuantity>``
    ``<consumable><manufacturedProduct classCode="MANU"><manufacturedMaterial><code><originalText …/>``
    ``<translation code="3400936915657" codeSystem="1.2.250.1.213.2.3.2" …/></code><name>XENETIX 350</name>``
    ``<lotNumberText>0002034</lotNumberText>…``
    """

    TEMPLATES: ClassVar[tuple[str, ...]] = CONTRAST_ADMINISTRATION_TEMPLATES
    WRITES_STATUS: ClassVar[bool] = True
    DOSE_AS_LOW: ClassVar[bool] = True


class RadiopharmaceuticalAdministration(_ProductAdministration):
    """An FR-DICOM-Administration-radiopharmaceutique (``1.2.250.1.213.1.1.3.173``): the tracer of a nuclear
    medicine act, with the activity given.

    ``<substanceAdministration classCode="SBADM" moodCode="EVN"><templateId root="1.2.250.1.213.1.1.3.173"/>``
    ``<code code="440252007" codeSystem="2.16.840.1.113883.6.96" …/><routeCode …/>``
    ``<doseQuantity value="200" unit="MBq">…</doseQuantity><consumable typeCode="CSM">…``
    """

    TEMPLATES: ClassVar[tuple[str, ...]] = RADIOPHARMACEUTICAL_TEMPLATES
    CODE: ClassVar[Code | None] = _RADIOPHARMACEUTICAL
    CONSUMABLE_TYPE: ClassVar[str | None] = "CSM"


def _read_name(name: etree._Element) -> PersonName:
    """A name with at most one prefix, given, family and suffix, in that order, as plain text."""
    if name.attrib:
        raise _decline("a name with attributes")
    parts = [c for c in name if isinstance(c.tag, str)]
    order = ["prefix", "given", "family", "suffix"]
    names = [etree.QName(p).localname for p in parts]
    if names != [n for n in order if n in names] or any(p.attrib or len(p) for p in parts):
        raise _decline("a name written otherwise")
    if (name.text or "").strip() or any((p.tail or "").strip() for p in parts):
        raise _decline("a name with text of its own")
    values = {etree.QName(p).localname: p.text or "" for p in parts}
    if "family" not in values:
        raise _decline("a name without family name")
    if any(v != v.strip() or not v for v in values.values()):
        raise _decline("a name part with surrounding spaces")
    return PersonName(
        family=values["family"], given=values.get("given"), prefix=values.get("prefix"), suffix=values.get("suffix")
    )


class RadiationExposure(_Model):
    """The radiation exposure of an act (FR-DICOM-Exposition-aux-radiations): who authorised it, the doses.

    The subsection is optional; once given, the volet requires the authorisation.
    """

    authorised_by: PersonName
    """The professional who authorised the exposure."""
    authoriser_id: InstanceId
    """That professional's id (IdNat_PS)."""
    pregnancy: Code | None = None
    """Pregnancy status (jdv-statut-grossesse-cisis), when known."""
    doses: tuple[RadiationDose, ...] = ()
    """The doses measured (jdv-quantite-exposition-rayonnements-cisis codes, UCUM units)."""
    radiopharmaceuticals: tuple[RadiopharmaceuticalAdministration, ...] = ()
    """Tracers given (nuclear medicine), each with its activity; the builder writes their narrative and
    references (a ``comment_reference`` of the caller's own has no narrative and is refused)."""

    def value_set_problems(self) -> list[str]:
        """Pregnancy status, measures and sites outside their value sets."""
        found: list[str] = []
        if self.pregnancy is not None:
            _check_in(found, "exposure.pregnancy", self.pregnancy, JDV_STATUT_GROSSESSE)
        for i, dose in enumerate(self.doses):
            found += [f"exposure.doses[{i}].{p.split('.', 1)[1]}" for p in dose.value_set_problems()]
        for i, tracer in enumerate(self.radiopharmaceuticals):
            found += [f"exposure.radiopharmaceuticals[{i}].{p.split('.', 1)[1]}" for p in tracer.value_set_problems()]
        return found


# --------------------------------------------------------------------------- content


class ClinicalInformation(_Model):
    """Why the examination was asked for, and what the radiologist must know (section FR-DICOM-informations-cliniques).

    The volet requires, once this section is given, the request and both histories, and
    at least one contraindication (JDV_Contre-indications, e.g. pregnancy) — the section is
    optional, the report may leave it out.
    """

    request: str = Field(min_length=1)
    """Why the examination was requested (*justification de la demande*)."""
    purpose: str | None = Field(default=None, min_length=1)
    """What the examination is for (*finalité*)."""
    medical_history: str = Field(min_length=1)
    """Medical history (free text)."""
    surgical_history: str = Field(min_length=1)
    """Surgical history (free text)."""
    contraindications: tuple[Code, ...] = Field(min_length=1)
    """Contraindications (jdv-contre-indication-cisis)."""

    def value_set_problems(self) -> list[str]:
        """Contraindications outside jdv-contre-indication-cisis."""
        found: list[str] = []
        for i, code in enumerate(self.contraindications):
            _check_in(found, f"clinical_information.contraindications[{i}]", code, JDV_CONTRE_INDICATION)
        return found


class ImagingAct(_Model):
    """One imaging act: what was done, how, where, and the DICOM study it produced."""

    code: Code
    """The act (LOINC, jdv-code-document-imagerie-cisis, e.g. ``24727-0`` CT Head W contrast IV)."""
    ccam: Code | None = None
    """The CCAM act (code system ``1.2.250.1.215.300.1``)."""
    modalities: tuple[Code, ...] = Field(min_length=1)
    """Acquisition modalities (JDV_ModaliteAcquisition)."""
    target_sites: tuple[Code, ...] = Field(min_length=1)
    """Anatomical sites (JDV_LocalisationAnatomique)."""
    regions: tuple[Code, ...] = ()
    """Anatomical regions for the header (JDV_RegionAnatomique), optional."""
    start: Timestamp
    """When the act began."""
    end: Timestamp | None = None
    """When it ended."""
    description: str | None = Field(default=None, min_length=1)
    """Description of the act (free text)."""
    parameters: str | None = Field(default=None, min_length=1)
    """Other technical parameters (device, settings), written as a comment."""
    study_uid: InstanceId
    """DICOM Study Instance UID (the service event id and the study act id)."""
    study_time: Timestamp
    """Date and time of the study."""
    series: ImagingSeries
    """The study's series and its instance."""
    exposure: RadiationExposure | None = None
    """The radiation exposure and doses (ionising modalities), optional."""
    contrast_products: tuple[ContrastAdministration, ...] = ()
    """Products given for the act (contrast media …); the builder writes their narrative and references."""

    @model_validator(mode="after")
    def _rules(self) -> ImagingAct:
        if self.ccam is not None and self.ccam.code_system != CCAM:
            raise ValidationError(f"the CCAM act must be in CCAM ({CCAM})", problems=("act.ccam: not a CCAM code",))
        if self.end is not None and _day(self.end) < _day(self.start):
            raise ValidationError("the act ends before it starts", problems=("act.end: before start",))
        return self

    def value_set_problems(self) -> list[str]:
        """Codes outside the value sets the volet checks."""
        found: list[str] = []
        for i, modality in enumerate(self.modalities):
            _check_in(found, f"modalities[{i}]", modality, JDV_MODALITE_ACQUISITION)
        for i, site in enumerate(self.target_sites):
            _check_in(found, f"target_sites[{i}]", site, JDV_LOCALISATION_ANATOMIQUE)
        for i, region in enumerate(self.regions):
            _check_in(found, f"regions[{i}]", region, JDV_REGION_ANATOMIQUE)
        _check_in(found, "series.modality", self.series.modality, JDV_MODALITE_ACQUISITION)
        _check_in(found, "series.instance.sop_class", self.series.instance.sop_class, JDV_SOP_CLASS)
        if self.exposure is not None:
            found += self.exposure.value_set_problems()
        for i, product in enumerate(self.contrast_products):
            found += [f"contrast_products[{i}].{p.split('.', 1)[1]}" for p in product.value_set_problems()]
        return found

    def header_translations(self) -> tuple[RawElement, ...]:
        """The service event code's translations: the CCAM act, each modality, each region (qualified)."""
        out: list[RawElement] = []
        holder = new_root("code", _NSMAP)
        if self.ccam is not None:
            _code(holder, "translation", self.ccam)
        for values, qualifier in ((self.modalities, _MODALITY), (self.regions, _REGION)):
            for value in values:
                translation = _code(holder, "translation", value)
                _code(_sub(translation, "qualifier"), "name", qualifier)
        for element in holder:
            out.append(RawElement.from_element(element))
        return tuple(out)


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


class CrImgContent(_Model):
    """What a CR-IMG says; :meth:`to_body` lays it out in the sections the volet requires."""

    acts: tuple[ImagingAct, ...] = Field(min_length=1)
    """The imaging acts, one section (and one header service event) each."""
    conclusion: str = Field(min_length=1)
    """The conclusion of the report."""
    findings: str | None = Field(default=None, min_length=1)
    """The findings (*résultats*), optional."""
    clinical_information: ClinicalInformation | None = None
    """Request and history, optional."""

    def value_set_problems(self) -> list[str]:
        """Codes outside the value sets the volet uses (empty when all are fine)."""
        found: list[str] = []
        for i, act in enumerate(self.acts):
            found += [f"acts[{i}].{p}" for p in act.value_set_problems()]
        if self.clinical_information is not None:
            found += self.clinical_information.value_set_problems()
        return found

    def to_body(self) -> StructuredBody:
        """The structured body, or :class:`ValidationError` if a code is outside its value set."""
        found = self.value_set_problems()
        if found:
            raise ValidationError(
                "the CR-IMG content has codes outside their value sets: " + "; ".join(found), problems=found
            )
        sections: list[Section] = []
        if self.clinical_information is not None:
            sections.append(_clinical_section(self.clinical_information))
        sections += [_act_section(act, i + 1) for i, act in enumerate(self.acts)]
        if self.findings is not None:
            sections.append(_section(_FINDINGS, text=narrative_paragraphs(self.findings)))
        sections.append(_section(_CONCLUSION, text=narrative_paragraphs(self.conclusion)))
        check_anchors(tuple(sections), "CR-IMG")
        return StructuredBody(sections=tuple(sections))


def _clinical_section(info: ClinicalInformation) -> Section:
    rows: list[tuple[str | tuple[str, str], ...]] = [("Justification de la demande", info.request)]
    if info.purpose is not None:
        rows.append(("Finalité de l'examen", info.purpose))
    request = _section(_REQUEST, text=narrative_table(("Élément", "Valeur"), rows))
    history_rows: list[tuple[str | tuple[str, str], ...]] = [
        ("Antécédents médicaux", (info.medical_history, "antecedents-medicaux")),
        ("Antécédents chirurgicaux", (info.surgical_history, "antecedents-chirurgicaux")),
    ]
    entries: list[VoletEntry] = [
        DicomObservation(
            code=MEDICAL_HISTORY, reference="antecedents-medicaux", value_reference="antecedents-medicaux"
        ),
        DicomObservation(
            code=SURGICAL_HISTORY, reference="antecedents-chirurgicaux", value_reference="antecedents-chirurgicaux"
        ),
    ]
    for i, code in enumerate(info.contraindications, start=1):
        anchor = f"contre-indication-{i}"
        history_rows.append(("Contre-indication", (show_code(code), anchor)))
        entries.append(DicomObservation(code=CONTRAINDICATION, reference=anchor, value=code, value_reference=anchor))
    history = _section(_HISTORY, text=narrative_table(("Élément", "Valeur"), history_rows), entries=tuple(entries))
    return _section(_CLINICAL, text=narrative_paragraphs(info.request), subsections=(request, history))


def _act_section(act: ImagingAct, n: int) -> Section:
    anchor = f"acte-{n}"
    technique = ImagingTechnique(
        code=act.code,
        ccam=act.ccam,
        code_reference=anchor,
        reference=f"{anchor}-description" if act.description is not None else None,
        effective_time=act.start,
        modalities=act.modalities,
        modality_reference=f"{anchor}-modalite",
        target_sites=act.target_sites,
        site_reference=f"{anchor}-localisation",
        comment_reference=f"{anchor}-parametres" if act.parameters is not None else None,
    )
    shown = show_code(act.code) + (f" — CCAM {act.ccam.code}" if act.ccam is not None else "")
    row: list[tuple[str, str]] = [
        (shown, anchor),
        (", ".join(show_code(m) for m in act.modalities), f"{anchor}-modalite"),
        (", ".join(show_code(s) for s in act.target_sites), f"{anchor}-localisation"),
    ]
    headers = ["Acte d'imagerie", "Modalité d'imagerie", "Localisation anatomique"]
    if act.description is not None:
        headers.append("Description de l'acte")
        row.append((act.description, f"{anchor}-description"))
    if act.parameters is not None:
        headers.append("Autres paramètres")
        row.append((act.parameters, f"{anchor}-parametres"))
    series = act.series
    series_anchor = f"{anchor}-serie-modalite"
    instance = series.instance.model_copy(update={"class_reference": f"{anchor}-sop-classe"})
    study = ImagingStudy(
        id=act.study_uid,
        effective_time=act.study_time,
        series=series.model_copy(update={"modality_reference": series_anchor, "instance": instance}),
    )
    catalog_text = narrative_table(
        ("Examen", "Date", "Série", "Modalité d'acquisition", "Objet DICOM"),
        [
            (
                f"Study Instance UID : {act.study_uid.root}",
                show_time(act.study_time),
                f"Series Instance UID : {series.uid.root}",
                (show_code(series.modality), series_anchor),
                (show_code(series.instance.sop_class), f"{anchor}-sop-classe"),
            )
        ],
    )
    catalog = _section(_CATALOG, text=catalog_text, entries=(study,))
    subsections = (catalog,) if act.exposure is None else (_exposure_section(act.exposure, anchor), catalog)
    text = narrative_table(tuple(headers), [tuple(row)]).to_element()
    products = _placed_products(act.contrast_products, f"{anchor}-produit")
    if products:
        text.append(_br())
        text.extend(_products_table(products, "Produit administré").to_element())
    return _section(
        _ACT,
        text=Narrative.from_element(text),
        entries=(technique, *products),
        subsections=subsections,
    )


_P = TypeVar("_P", bound=_ProductAdministration)


def _br() -> etree._Element:
    return new_root("br")


def _placed_products(products: tuple[_P, ...], prefix: str) -> tuple[_P, ...]:
    """The products with their narrative references set: one row each, the dose in its own cell."""
    placed: list[_P] = []
    for i, product in enumerate(products, start=1):
        row = f"{prefix}-{i}"
        placed.append(
            product.model_copy(
                update={
                    "reference": row,
                    "product_reference": row,
                    "dose_reference": f"{row}-dose" if product.dose is not None else None,
                }
            )
        )
    return tuple(placed)


def _products_table(products: tuple[_ProductAdministration, ...], first: str) -> Narrative:
    rows: list[tuple[str | tuple[str, str], ...]] = []
    for product in products:
        shown = product.name or ", ".join(show_code(t) for t in product.product_translations) or "(produit)"
        dose: str | tuple[str, str] = ""
        if product.dose is not None and product.dose_reference is not None:
            dose = (f"{format(product.dose.value, 'f')} {product.dose.unit}", product.dose_reference)
        rows.append(((shown, product.reference or ""), dose, show_code(product.route), product.lot_number or ""))
    return narrative_table((first, "Dose", "Voie d'administration", "Numéro de lot"), rows)


def _exposure_section(exposure: RadiationExposure, anchor: str) -> Section:
    text = new_root("text")
    name = exposure.authorised_by
    shown = " ".join(p for p in (name.prefix, name.given, name.family, name.suffix) if p)
    paragraph = _sub(text, "paragraph")
    paragraph.text = "Autorisation d'irradiation : "
    _sub(paragraph, "content", ID=f"{anchor}-exposition").text = shown
    entries: list[Entry] = [
        PatientExposure(authorised_by=name, authoriser_id=exposure.authoriser_id, code_reference=f"{anchor}-exposition")
    ]
    if exposure.pregnancy is not None:
        paragraph = _sub(text, "paragraph")
        paragraph.text = "Statut de grossesse : "
        _sub(paragraph, "content", ID=f"{anchor}-grossesse").text = show_code(exposure.pregnancy)
        entries.append(
            DicomObservation(
                code=PREGNANCY_STATUS,
                value=exposure.pregnancy,
                value_reference=f"{anchor}-grossesse",
                target_site_null_flavor="NA",
            )
        )
    if exposure.doses:
        table = _sub(text, "table", border="1")
        head = _sub(_sub(table, "thead"), "tr")
        for header in ("Mesure", "Localisation", "Quantité"):
            _sub(head, "th").text = header
        body = _sub(table, "tbody")
        for i, dose in enumerate(exposure.doses, start=1):
            measure, site = f"{anchor}-dose-{i}", f"{anchor}-dose-{i}-localisation"
            row = _sub(body, "tr")
            _sub(_sub(row, "td"), "content", ID=measure).text = show_code(dose.code)
            _sub(_sub(row, "td"), "content", ID=site).text = show_code(dose.target_site)
            _sub(row, "td").text = f"{format(dose.quantity.value, 'f')} {dose.quantity.unit}"
            entries.append(dose.model_copy(update={"reference": measure, "site_reference": site}))
    tracers = _placed_products(exposure.radiopharmaceuticals, f"{anchor}-radiopharmaceutique")
    if tracers:
        text.extend(_products_table(tracers, "Produit radiopharmaceutique administré").to_element())
        entries.extend(tracers)
    return _section(_EXPOSURE, text=Narrative.from_element(text), entries=tuple(entries))


def _section(
    kind: _Kind,
    *,
    text: Narrative | None = None,
    entries: tuple[Entry, ...] = (),
    subsections: tuple[Section, ...] = (),
) -> Section:
    templates, code, title = kind
    return Section(
        template_ids=templates,
        id=InstanceId(root=str(uuid.uuid4()).upper()),
        code=code,
        title=title,
        text=text,
        entries=entries,
        subsections=subsections,
    )


# --------------------------------------------------------------------------- documents


def _walk(sections: tuple[Section, ...]) -> list[Section]:
    found: list[Section] = []
    for section in sections:
        found.append(section)
        found += _walk(section.subsections)
    return found


def cr_img_problems(document: ClinicalDocument) -> list[str]:
    """What keeps ``document`` from being a CR-IMG 2024.01: type, templateIds, acts, required sections, value sets."""
    found: list[str] = []
    if (document.type_code.code, document.type_code.code_system) != (
        CR_IMG_TYPE_CODE.code,
        CR_IMG_TYPE_CODE.code_system,
    ):
        found.append(f"type_code: a CR-IMG is of type {CR_IMG_TYPE_CODE.code} (LOINC)")
    roots = {t.root for t in document.template_ids}
    for template in (*CR_IMG_TEMPLATES, CR_IMG_TEMPLATE):
        if template.root not in roots:
            found.append(f"template_ids: the CR-IMG templateId {template.root} is missing")
    for i, event in enumerate(document.service_events):
        if event.code is not None and event.code.code_system == LOINC and not _has_modality(event):
            found.append(f"service_events[{i}].code: a LOINC act needs a modality translation (qualifier 121139)")
    if isinstance(document.body, NonXmlBody):
        found.append("body: a CR-IMG has a structured body")
        return found
    sections = _walk(document.body.sections)
    present = {t.root for section in sections for t in section.template_ids}
    for root, name in CR_IMG_REQUIRED_SECTIONS.items():
        if root not in present:
            found.append(f"body: the section '{name}' ({root}) is missing")
    for section in sections:
        for entry in section.entries:
            if isinstance(entry, VoletEntry | PatientExposure | _ProductAdministration):
                found += [f"body: {problem}" for problem in entry.value_set_problems()]
    return found


def _has_modality(event: ServiceEvent) -> bool:
    for translation in event.code_translations:
        element = translation.to_element()
        for name in element.iterfind(f"{hl7('qualifier')}/{hl7('name')}"):
            if name.get("code") == _MODALITY.code:
                return True
    return False


def cr_img_acts(document: ClinicalDocument) -> list[ImagingTechnique]:
    """The typed imaging techniques of a read CR-IMG, in document order (an untyped one is left out)."""
    if isinstance(document.body, NonXmlBody):
        return []
    return [e for s in _walk(document.body.sections) for e in s.entries if isinstance(e, ImagingTechnique)]


def as_cr_img(document: ClinicalDocument, content: CrImgContent | None = None) -> ClinicalDocument:
    """``document`` made a CR-IMG: type ``18748-4``, the CR-IMG templateIds, and ``content``'s body.

    Without ``content`` the document's own body is kept and checked: a missing required
    section raises :class:`ValidationError`.
    """
    fields = {name: getattr(document, name) for name in type(document).model_fields}
    if content is not None:
        fields["body"] = content.to_body()
    ours = {t.root for t in (*CR_IMG_TEMPLATES, CR_IMG_TEMPLATE)}
    roots = [t for t in document.template_ids if t.root not in ours]
    if not any(t.root == HL7_FRANCE_TEMPLATE for t in roots):
        roots.insert(0, InstanceId(root=HL7_FRANCE_TEMPLATE))
    if not any(t.root == CISIS_TEMPLATE for t in roots):
        roots.insert(1, InstanceId(root=CISIS_TEMPLATE))
    fields["template_ids"] = (*roots, *CR_IMG_TEMPLATES, CR_IMG_TEMPLATE)
    fields["type_code"] = CR_IMG_TYPE_CODE
    result = ClinicalDocument(**fields)
    found = cr_img_problems(result)
    if found:
        raise ValidationError("the document is not a valid CR-IMG: " + "; ".join(found), problems=found)
    return result


def cr_img_document(
    content: CrImgContent,
    *,
    settings: Settings,
    patient: Identity | Patient,
    effective_time: datetime,
    practice_setting: Code,
    title: str = CR_IMG_TITLE,
    **fields: Any,
) -> ClinicalDocument:
    """A CR-IMG whose author, legal authenticator, organisation and performer come from ``settings``.

    Each act becomes a ``documentationOf/serviceEvent`` (id: the Study Instance UID; code:
    the act with its CCAM, modality and region translations; the act's start and end),
    performed by the configured professional. The other keyword arguments are those of
    :meth:`~dmp_connector.cda.model.ClinicalDocument.from_settings`.
    """
    first = content.acts[0]
    fields.setdefault("service_start", first.start)
    fields.setdefault("service_end", first.end)
    document = ClinicalDocument.from_settings(
        settings,
        patient=patient,
        type_code=CR_IMG_TYPE_CODE,
        title=title,
        body=content.to_body(),
        effective_time=effective_time,
        practice_setting=practice_setting,
        service_code=first.code,
        template_ids=(HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE, *CR_IMG_TEMPLATES, CR_IMG_TEMPLATE),
        **fields,
    )
    main = document.service_events[0]
    events = tuple(
        main.model_copy(
            update={
                "ids": (act.study_uid,),
                "code": act.code,
                "code_translations": act.header_translations(),
                "effective_time": Period(low=act.start, high=act.end),
            }
        )
        for act in content.acts
    )
    return as_cr_img(document.model_copy(update={"service_events": events}))
