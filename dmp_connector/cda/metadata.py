"""XDS DocumentEntry metadata derived from a CDA document, so that a deposit needs no hand-typed metadata.

:func:`extract_metadata` takes a built model or the bytes of a document and returns a
:class:`DocumentMetadata`, a neutral typed model whose fields are named after the XDS
DocumentEntry attributes. The DMP client maps it onto its ebRIM DocumentEntry; nothing here
knows ebRIM.

The mapping follows the ANS table "Mapping XDS" of the CDA transmission guide
(``ansforge/IG-hl7v2-volet-transmission-document-cda-r2``, ``mapping.md``)::

    uniqueId                    id/@root, ^@extension when there is one
    typeCode                    code (JDV_J07)
    classCode                   from typeCode through ASS_X04-CorrespondanceType-Classe-CISIS
    formatCode                  PDF body: urn:ihe:iti:xds-sd:pdf:2008 (ASS_A12);
                                structured body: the volet templateId through ASS_A11
    confidentialityCode         confidentialityCode, then the DMP masking codes the caller adds
    creationTime                effectiveTime (in UTC)
    healthcareFacilityTypeCode  componentOf/encompassingEncounter/location/healthCareFacility/code
    practiceSettingCode         documentationOf/serviceEvent/performer/…/standardIndustryClassCode
    serviceStart/StopTime       documentationOf/serviceEvent/effectiveTime/low, high
    eventCodeList               documentationOf/serviceEvent/code
    author*                     author/assignedAuthor (+ representedOrganization, code, functionCode)
    legalAuthenticator          legalAuthenticator/assignedEntity
    patientId                   the INS, <matricule>^^^&<OID>&ISO^NH
    sourcePatientId / Info      the local id (IPP), else the INS / the patient's traits
    hash, size                  SHA-1 (hex) and length of the exact bytes deposited

The two correspondence tables below are data from the ANS terminology server (files named
in each table's comment); refresh them when the ANS publishes new document types or volets.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.codes import Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Sex
from dmp_connector.xds import Author, Cx, DocumentEntry, Slot, Xcn, XdsTime, Xon
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits

from ._header import Entity, Facts, facts_of, read_facts
from .build import build
from .model import ClinicalDocument, InstanceId

__all__ = [
    "CLASS_CODES",
    "CLASS_OF_TYPE",
    "FORMAT_OF_TEMPLATE",
    "PDF_FORMAT",
    "DocumentMetadata",
    "XdsAuthor",
    "XdsPerson",
    "class_code_for",
    "extract_metadata",
    "xds_time",
]

CLASS_SYSTEM: Final = "1.2.250.1.213.1.1.4.1"
"""TRE_A03-ClasseDocument, the code system of the CI-SIS class codes (JDV_J06/J57)."""
IHE_FORMAT_SYSTEM: Final = "1.3.6.1.4.1.19376.1.2.3"
"""TRE_A11-IheFormatCode: IHE format codes."""
ANS_FORMAT_SYSTEM: Final = "1.2.250.1.213.1.1.4.2.282"
"""TRE_A06-FormatCodeComplementaire: the ANS volets' format codes."""

PDF_FORMAT: Final = Code.of(
    "urn:ihe:iti:xds-sd:pdf:2008", IHE_FORMAT_SYSTEM, "Document à corps non structuré en Pdf/A-1"
)
"""formatCode of a PDF body (ASS_A12-CorresMediaTypeCDANonStructure-XdsFormatCode-CISIS)."""

# TRE_A03 classes with the display names of JDV_J57-ClassCode-DMP.
CLASS_CODES: Final[Mapping[str, Code]] = MappingProxyType(
    {
        code: Code.of(code, CLASS_SYSTEM, display)
        for code, display in (
            ("10", "Compte rendu"),
            ("11", "Synthèse"),
            ("31", "Imagerie médicale"),
            ("42", "Prescription"),
            ("43", "Dispensation"),
            ("44", "Plan de soins, protocole de soins"),
            ("45", "Traitement administré"),
            ("52", "Certificat, déclaration"),
            ("60", "Données de remboursement"),
            ("90", "Autres documents déposés par le patient"),
            ("95", "Document de gestion"),
        )
    }
)
"""The document classes (TRE_A03-ClasseDocument, ``1.2.250.1.213.1.1.4.1``) of JDV_J57-ClassCode-DMP."""

# ASS_X04-CorrespondanceType-Classe-CISIS (urn:oid:1.2.250.1.213.1.1.4.249), version 20260629:
# document type (LOINC or TRE_A05) -> TRE_A03 class. Source: ansforge/IG-terminologie-de-sante,
# DM/input/fsh/Done/GitHub/ASS-X04-CorrespondanceType-Classe-CISIS.fsh. FEUILLE-DE-STYLE (class 99,
# outside JDV_J57) and the signature type E1762 (not a CDA) are left out.
_TYPE_TO_CLASS: Final = {
    "10": "10213-7 11488-4 11490-0 11493-4 11502-2 11505-5 11506-3 11526-1 11528-7 15507-7 15508-5 24611-6 "
    "27899-4 28617-9 28653-4 29274-8 29554-3 34112-3 34120-6 34749-2 34794-8 34874-8 34875-5 34876-3 39256-3 "
    "46241-6 47420-5 51969-4 59283-2 60568-3 67851-6 68814-3 70004-7 75482-0 75492-9 75497-8 75496-0 77436-4 "
    "78513-9 78601-2 83981-1 85208-7 89233-1 93024-8 96349-6 97694-4 100967-9 BIL_AUTO DOCPAT03 DOCPAT05 DOCPAT06",
    "11": "18761-7 34133-9 34842-5 56445-0 57055-6 57057-2 57075-4 60280-5 60591-5 68599-0 68817-6 74207-2 78341-5 "
    "78489-2 80820-4 83836-7 83901-9 83963-9 84067-8 89235-6 88348-8 96163-1 EXPORT_DUI DOCPAT01 DOCPAT08 SYNTH",
    "31": "18748-4 52040-3 DOCPAT04 IMG-KOS",
    "42": "29551-9 52063-5 52521-2 55115-0 57828-6 57832-8 57833-6 61357-0 75468-9 DOCPAT02 PRESC-AAT PRESC-BIO "
    "PRESC-KINE PRESC-INF PRESC-PEDI PRESC-ORTHOPHO PRESC-ORTHOPTIE",
    "43": "29550-1 60593-1 DISP_AUT",
    "44": "18776-5 34895-3 77604-7 80771-9 80788-3 83869-8 PROT_ALD",
    "45": "80565-5",
    "52": "11369-6 55751-2 87273-9 89601-9 96874-3 96173-0 101881-1 CERT_DECL DOCPAT07",
    "60": "REMB",
    "90": "74465-6 EXPPAT_1 EXPPAT_2 EXPPAT_3 DOCPAT10",
    "95": "51851-4 56446-8 59284-0 61358-8 61359-6 86531-1 ATTEST-ASS-COMPL ATTEST-HEBGT ATTEST-RESID "
    "ATTEST-DROITS-AM ATTEST-VITALE AUTORIS-SOINS CONTACTS-URGENCE DOCPAT09 PIECE-IDENTITE FICHE-CONTACTS",
}
CLASS_OF_TYPE: Final[Mapping[str, str]] = MappingProxyType(
    {type_code: klass for klass, codes in _TYPE_TO_CLASS.items() for type_code in codes.split()}
)
"""Document type code (LOINC or TRE_A05) → class code (TRE_A03), from ASS_X04."""

# ASS_A11-CorresModeleCDA-XdsFormatCode-CISIS (version 5.0.0, 2026-02-10), structured volets: volet
# templateId -> formatCode, with the JDV_J10 display names. Source: ansforge/IG-terminologie-de-sante.
_ANS = ANS_FORMAT_SYSTEM
_IHE = IHE_FORMAT_SYSTEM
_EYE = "CR de consultation en ophtalmologie"
FORMAT_OF_TEMPLATE: Final[Mapping[str, Code]] = MappingProxyType(
    {
        template: Code.of(code, system, display)
        for template, code, system, display in (
            ("1.2.250.1.213.1.1.1.5.1", "urn:asip:ci-sis:cse-cs8:2017", _ANS, "Certificat de santé du 8ème jour"),
            ("1.2.250.1.213.1.1.1.5.2", "urn:asip:ci-sis:cse-cs9:2017", _ANS, "Certificat de santé du 9ème mois"),
            ("1.2.250.1.213.1.1.1.5.3", "urn:asip:ci-sis:cse-cs24:2017", _ANS, "Certificat de santé du 24ème mois"),
            ("1.2.250.1.213.1.1.1.5.4", "urn:ans:ci-sis:cse-mde:2023", _ANS, "Mesures de signes vitaux"),
            ("1.2.250.1.213.1.1.1.8", "urn:asip:ci-sis:frcp:2011", _ANS, "Fiche de RCP"),
            ("1.2.250.1.213.1.1.1.9", "urn:asip:ci-sis:idap:2011", _ANS, "Information et directives anticipées"),
            ("1.2.250.1.213.1.1.1.12.1", "urn:asip:ci-sis:obp-sap:2023", _ANS, "Synthèse antepartum"),
            ("1.2.250.1.213.1.1.1.12.2", "urn:asip:ci-sis:obp-snm:2023", _ANS, "Synthèse Salle de Naissance Mère"),
            ("1.2.250.1.213.1.1.1.12.3", "urn:asip:ci-sis:obp-sne:2023", _ANS, "Synthèse Salle de Naissance Enfant"),
            ("1.2.250.1.213.1.1.1.12.4", "urn:asip:ci-sis:obp-scm:2023", _ANS, "Synthèse Suites de Couches Mère"),
            ("1.2.250.1.213.1.1.1.12.5", "urn:asip:ci-sis:obp-sem:2023", _ANS, "Synthèse Enfant en Maternité"),
            ("1.2.250.1.213.1.1.1.13", "urn:asip:ci-sis:vsm:2012", _ANS, "Synthèse médicale"),
            ("1.2.250.1.213.1.1.1.15", "urn:asip:ci-sis:aunv:2013", _ANS, "Fiche d'admission en UNV"),
            ("1.2.250.1.213.1.1.1.16", "urn:asip:ci-sis:eunv:2013", _ANS, "Fiche d'épisode de soin en UNV"),
            ("1.2.250.1.213.1.1.1.17", "urn:asip:ci-sis:sunv:2013", _ANS, "Fiche de sortie d'UNV"),
            ("1.2.250.1.213.1.1.1.18", "urn:asip:ci-sis:crrtn:2013", _ANS, "Compte-rendu de rétinographie"),
            ("1.2.250.1.213.1.1.1.2.1.1", "urn:asip:ci-sis:avk:2009", _ANS, "Fiche patient à risque - AVK"),
            ("1.2.250.1.213.1.1.1.2.1.2", "urn:asip:ci-sis:tap:2009", _ANS, "Fiche patient à risque - TAP"),
            ("1.2.250.1.213.1.1.1.2.1.3", "urn:asip:ci-sis:dci:2009", _ANS, "Fiche patient à risque - DCI"),
            ("1.2.250.1.213.1.1.1.2.1.4", "urn:asip:ci-sis:psc:2009", _ANS, "Fiche patient à risque - PSC"),
            ("1.2.250.1.213.1.1.1.2.1.5", "urn:asip:ci-sis:ppv:2009", _ANS, "Fiche patient à risque - PPV"),
            ("1.2.250.1.213.1.1.1.21", "urn:asip:ci-sis:ldl-ees:2017", _ANS, "Lettre de liaison à l'entrée"),
            ("1.2.250.1.213.1.1.1.22", "urn:asip:ci-sis:dlu:2015", _ANS, "Document de liaison d'urgence"),
            ("1.2.250.1.213.1.1.1.23", "urn:asip:ci-sis:fludt:2017", _ANS, "Fiche de liaison d'urgence - Transfert"),
            ("1.2.250.1.213.1.1.1.24", "urn:asip:ci-sis:fludr:2017", _ANS, "Fiche de liaison d'urgence - Retour"),
            ("1.2.250.1.213.1.1.1.25", "urn:asip:ci-sis:pavc:2016", _ANS, "CR d'évaluation post AVC"),
            ("1.2.250.1.213.1.1.1.26", "urn:asip:ci-sis:pps-cancer:2017", _ANS, "PPS - Cancer"),
            ("1.2.250.1.213.1.1.1.27", "urn:asip:ci-sis:d2lm-fin:2017", _ANS, "D2LM - Fiche d'interprétation"),
            ("1.2.250.1.213.1.1.1.28", "urn:asip:ci-sis:d2lm-fidd:2017", _ANS, "D2LM - Diagnostic différé"),
            ("1.2.250.1.213.1.1.1.29", "urn:asip:ci-sis:ldl-ses:2017", _ANS, "Lettre de liaison à la sortie"),
            ("1.2.250.1.213.1.1.1.30", "urn:asip:ci-sis:sdm-mr:2017", _ANS, "Set de Données Minimum - Maladies Rares"),
            ("1.2.250.1.213.1.1.1.32", "urn:asip:ci-sis:crgm:2018", _ANS, "Compte rendu de génétique moléculaire"),
            ("1.2.250.1.213.1.1.1.36", "urn:asip:ci-sis:hr:2019", _ANS, "Données de remboursement"),
            ("1.2.250.1.213.1.1.1.37", "urn:asip:ci-sis:vac:2019", _ANS, "Historique des vaccinations"),
            ("1.2.250.1.213.1.1.1.38", "urn:asip:ci-sis:tlm-da:2020", _ANS, "Demande d'acte de télémédecine"),
            ("1.2.250.1.213.1.1.1.40", "urn:asip:ci-sis:cr-anest:2020", _ANS, "Compte rendu d'anesthésie"),
            ("1.2.250.1.213.1.1.1.41", "urn:asip:ci-sis:cr-cpa:2020", _ANS, "CR de consultation pré-anesthésique"),
            ("1.2.250.1.213.1.1.1.46", "urn:asip:ci-sis:vac-note:2021", _ANS, "Note de vaccination"),
            ("1.2.250.1.213.1.1.1.47", "urn:ans:ci-sis:img-da:2022", _ANS, "Demande d'actes d'imagerie"),
            ("1.2.250.1.213.1.1.1.52", "urn:ans:ci-sis:bio-ep-bio:2022", _ANS, "Prescription d'actes de biologie"),
            ("1.2.250.1.213.1.1.1.56", "urn:asip:ci-sis:ppp:2023", _ANS, "Plan personnalisé de prévention"),
            ("1.2.250.1.213.1.1.1.58", "urn:asip:ci-sis:export-dui:2023", _ANS, "Export DUI"),
            ("1.2.250.1.213.1.1.1.59", "urn:ans:ci-sis:trod:2024", _ANS, "Test rapide d'orientation diagnostique"),
            ("1.2.250.1.213.1.1.1.61", "urn:asip:ci-sis:ft-su:2024", _ANS, "Fiche de transfert vers les urgences"),
            ("1.2.250.1.213.1.1.1.62", "urn:asip:ci-sis:fr-su:2024", _ANS, "Fiche de retour des urgences"),
            ("1.2.250.1.213.1.1.1.39", "urn:ihe:pharm:pre:2010", _IHE, "Prescription de médicaments"),
            ("1.2.250.1.213.1.1.1.54", "urn:ihe:pharm:dis:2010", _IHE, "Dispensation médicamenteuse"),
            (
                "1.2.250.1.213.1.1.1.42",
                "urn:ihe:eyecare:geneyeevalcn:2014",
                _IHE,
                "CR de consultation en ophtalmologie",
            ),
            (
                "1.2.250.1.213.1.1.1.43",
                "urn:ihe:eyecare:geneyeevalcn:2014",
                _IHE,
                "CR de consultation en ophtalmologie",
            ),
            (
                "1.2.250.1.213.1.1.1.44",
                "urn:ihe:eyecare:geneyeevalcn:2014",
                _IHE,
                "CR de consultation en ophtalmologie",
            ),
            (
                "1.2.250.1.213.1.1.1.45",
                "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013",
                _IHE,
                "Compte-rendu d'imagerie médicale",
            ),
            ("1.2.250.1.213.1.1.1.55", "urn:ihe:lab:xd-lab:2008", _IHE, "CR structuré d'examens de biologie médicale"),
            ("1.3.6.1.4.1.19376.1.3.3", "urn:ihe:lab:xd-lab:2008", _IHE, "CR structuré d'examens de biologie médicale"),
            ("1.2.250.1.213.1.1.1.57", "urn:ihe:palm:apsr:2016", _IHE, "CR d'anatomie et de cytologie pathologiques"),
            ("1.2.250.1.213.1.1.1.51", "urn:ihe:pcc:ips:2020", _IHE, "Synthèse médicale"),
        )
    }
)
"""Volet templateId → formatCode (ASS_A11), for structured documents."""

_INS_SYSTEM_PREFIX: Final = "1.2.250.1.213.1.4."


def class_code_for(type_code: Code) -> Code:
    """The XDS classCode of a document type (ASS_X04), or :class:`ValidationError` if the table lacks it."""
    klass = CLASS_OF_TYPE.get(type_code.code)
    if klass is None:
        raise ValidationError(
            f"no class code is known for document type {type_code.code} (ASS_X04)",
            problems=("class_code",),
            hint="pass class_code= to extract_metadata, from JDV_J57-ClassCode-DMP",
        )
    return CLASS_CODES[klass]


def xds_time(value: datetime | date) -> str:
    """An XDS DTM: ``YYYYMMDDHHMMSS`` in UTC for a date-time, ``YYYYMMDD`` for a date."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return value.strftime("%Y%m%d")


class XdsPerson(BaseModel):
    """A person as an XDS XCN (authorPerson, legalAuthenticator)."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    id: InstanceId | None
    """National id (IdNat_PS root ``1.2.250.1.71.4.2.1``), when known."""
    family_name: str | None = None
    """Family name."""
    given_name: str | None = None
    """Given name."""
    prefix: str | None = None
    """Civility or title."""

    def xcn(self) -> str:
        """``<id>^<FAMILY>^<Given>^^^^^^&<root>&ISO^D^^^IDNPS`` as the DMP expects it (dmp_xds.md §4)."""
        ident = self.id
        family, given = self.family_name or "", self.given_name or ""
        if ident is None:
            return f"^{family}^{given}"
        kind = "IDNPS" if ident.root == "1.2.250.1.71.4.2.1" else ""
        return f"{ident.extension or ''}^{family}^{given}^^^^^^&{ident.root}&ISO^D^^^{kind}"


class XdsAuthor(BaseModel):
    """One XDS author: person, institution, role and specialty slots."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    person: XdsPerson | None
    """authorPerson (None for a device author with no person)."""
    institution_name: str | None = None
    """authorInstitution name (``representedOrganization/name``)."""
    institution_id: InstanceId | None = None
    """authorInstitution id (IdNat_Struct)."""
    role: Code | None = None
    """authorRole, from ``author/functionCode``."""
    specialty: Code | None = None
    """authorSpecialty, from ``assignedAuthor/code`` (JDV_J01)."""
    telecoms: tuple[str, ...] = ()
    """authorTelecommunication URLs (``mailto:`` MSSanté addresses, ``tel:``)."""

    def xon(self) -> str | None:
        """``<name>^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^<id>`` (dmp_xds.md §4), or None without institution."""
        if self.institution_name is None and self.institution_id is None:
            return None
        name = self.institution_name or ""
        if self.institution_id is None:
            return name
        return f"{name}^^^^^&{self.institution_id.root}&ISO^IDNST^^^{self.institution_id.extension or ''}"

    def specialty_cne(self) -> str | None:
        """``<code>^<display>^<code system>``, e.g. ``G15_10/SM26^Médecin - …^1.2.250.1.213.1.1.4.5``."""
        if self.specialty is None:
            return None
        return f"{self.specialty.code}^{self.specialty.display_name or ''}^{self.specialty.code_system}"


class DocumentMetadata(BaseModel):
    """What an XDS DocumentEntry needs, derived from one CDA document (fields named after the XDS attributes)."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    unique_id: str
    """uniqueId: ``root`` or ``root^extension`` of ``ClinicalDocument/id``."""
    class_code: Code
    """classCode (TRE_A03, from the type code through ASS_X04)."""
    type_code: Code
    """typeCode (JDV_J07)."""
    format_code: Code
    """formatCode (JDV_J10: ASS_A12 for a PDF body, ASS_A11 for a structured volet)."""
    practice_setting_code: Code
    """practiceSettingCode (JDV_J04)."""
    healthcare_facility_type_code: Code
    """healthcareFacilityTypeCode (JDV_J02)."""
    confidentiality_codes: tuple[Code, ...] = Field(min_length=1)
    """confidentialityCode: the CDA's first, then the masking codes given (``MASQUE_PS`` …)."""
    event_codes: tuple[Code, ...] = ()
    """eventCodeList: the service events' codes."""
    authors: tuple[XdsAuthor, ...] = Field(min_length=1)
    """author."""
    legal_authenticator: XdsPerson | None = None
    """legalAuthenticator."""
    patient_id: str
    """patientId: the INS as CX, ``<matricule>^^^&<OID>&ISO^NH``."""
    source_patient_id: str
    """sourcePatientId: the first local id (IPP) as CX ``<id>^^^&<root>&ISO^PI``, else the INS."""
    source_patient_info: tuple[str, ...] = ()
    """sourcePatientInfo: ``PID-5|…``, ``PID-7|YYYYMMDD``, ``PID-8|F``."""
    creation_time: datetime | date
    """creationTime (``effectiveTime``, in UTC); :func:`xds_time` formats it."""
    service_start_time: datetime | date | None = None
    """serviceStartTime."""
    service_stop_time: datetime | date | None = None
    """serviceStopTime."""
    title: str
    """title."""
    language_code: str
    """languageCode."""
    mime_type: str = "text/xml"
    """mimeType: ``text/xml``, or ``application/xslt+xml`` for a self-presenting document."""
    hash: str = Field(pattern=r"^[0-9a-f]{40}$")
    """hash: SHA-1 of the exact bytes deposited, in lower-case hex."""
    size: int = Field(ge=1)
    """size in bytes."""
    reference_id_list: tuple[str, ...] = ()
    """referenceIdList: the encounter ids as ``<id>^^^&<root>&ISO^urn:ihe:iti:xds:2013:encounterId``."""
    replaced_unique_id: str | None = None
    """uniqueId of the document this one replaces (the RPLC association's target), if any."""
    set_id: str
    """The CDA setId (``root[^extension]``), common to every version of the document."""
    version: int
    """The CDA versionNumber."""

    def to_document_entry(self, *, entry_id: str, extra_slots: Sequence[Slot] = ()) -> DocumentEntry:
        """The XDS DocumentEntry of this document, every attribute from these metadata.

        The one mapping shared by the DMP deposit and the MSSanté XDM package (which adds its
        ``URI`` slot through ``extra_slots``)::

            type_code   → typeCode     authors[i]  → author (XCN, XON, role, specialty, telecom)
            unique_id   → uniqueId     patient_id  → patientId (the INS as CX)
        """
        return DocumentEntry(
            entry_uuid=entry_id,
            unique_id=self.unique_id,
            patient_id=Cx.parse(self.patient_id),
            source_patient_id=Cx.parse(self.source_patient_id),
            source_patient_info=self.source_patient_info,
            mime_type=self.mime_type,
            class_code=self.class_code,
            type_code=self.type_code,
            format_code=self.format_code,
            healthcare_facility_type_code=self.healthcare_facility_type_code,
            practice_setting_code=self.practice_setting_code,
            confidentiality_codes=self.confidentiality_codes,
            event_codes=self.event_codes,
            authors=tuple(_xds_author(a) for a in self.authors),
            legal_authenticator=_xcn(self.legal_authenticator),
            creation_time=_entry_time(self.creation_time),
            service_start_time=_entry_time(self.service_start_time),
            service_stop_time=_entry_time(self.service_stop_time),
            language_code=self.language_code,
            title=self.title,
            hash=self.hash,
            size=self.size,
            reference_ids=self.reference_id_list,
            extra_slots=tuple(extra_slots),
        )


def _xcn(person: XdsPerson | None) -> Xcn | None:
    return None if person is None else Xcn.parse(person.xcn())


def _telecom(url: str) -> str | None:
    """An XTN as XDS wants it: ``^^Internet^<address>`` for a mailbox, ``^PRN^PH^^^^^^^^^<number>`` for a phone."""
    scheme, _, value = url.partition(":")
    if not value:
        return None
    if scheme.lower() == "mailto":
        return f"^^Internet^{value}"
    if scheme.lower() == "tel":
        return f"^PRN^PH^^^^^^^^^{value}"
    return None


def _xds_author(author: XdsAuthor) -> Author:
    xon = author.xon()
    specialty = author.specialty_cne()
    role = author.role
    return Author(
        person=_xcn(author.person),
        institutions=(Xon.parse(xon),) if xon else (),
        roles=((role.display_name or role.code),) if role is not None else (),
        specialties=(specialty,) if specialty else (),
        telecommunications=tuple(t for t in map(_telecom, author.telecoms) if t is not None),
    )


def _entry_time(value: datetime | date | None) -> XdsTime | None:
    """An XDS time; a date-time without time zone is taken as UTC [I] (the CDA builder refuses such times)."""
    if value is None:
        return None
    if isinstance(value, datetime) and value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    return XdsTime.model_validate(value)


def extract_metadata(
    source: ClinicalDocument | bytes,
    *,
    confidentiality: Sequence[Code] = (),
    class_code: Code | None = None,
    format_code: Code | None = None,
    data: bytes | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> DocumentMetadata:
    """The DocumentEntry metadata of a document, from its model or from its bytes.

    From a model, the document is built (:func:`dmp_connector.cda.build` is deterministic)
    so that ``hash`` and ``size`` are those of the bytes you will deposit: deposit
    ``build(document)``. ``confidentiality`` adds the DMP masking codes after the CDA's
    own (JDV_J08, e.g. ``MASQUE_PS``); ``class_code`` and ``format_code`` override the
    tables for a type or volet they lack. Every missing piece is reported at once in one
    :class:`ValidationError`.

    A document already parsed from ``data`` can be given with it (``extract_metadata(parse(data),
    data=data)``): the bytes are then hashed, not parsed or built again.
    """
    if isinstance(source, ClinicalDocument):
        facts = facts_of(source)
        data = bytes(data) if data is not None else build(source)
    else:
        data = bytes(source)
        facts = read_facts(data, limits)  # the header's values, checked as parse() checks them; no model built
    problems: list[str] = []
    ins = facts.ins
    patient_id = ins.to_xds_cx() if ins is not None and facts.qualified else None
    if patient_id is None:
        problems.append("patient_id: the document carries no INS of a qualified identity")
    if class_code is None:
        try:
            class_code = class_code_for(facts.type_code)
        except ValidationError as exc:
            problems.append(exc.message)
    if format_code is None:
        format_code = _format_code(facts)
        if format_code is None:
            problems.append("format_code: no volet templateId of the document is in ASS_A11; pass format_code=")
    setting = facts.setting
    if setting is None:
        problems.append("practice_setting_code: the main service event's performer has no standardIndustryClassCode")
    facility = facts.facility_code
    if facility is None:
        problems.append("healthcare_facility_type_code: the encounter has no healthCareFacility/code")
    unique_id = _unique_id(facts.id, "unique_id", problems)
    if problems:
        raise ValidationError("the document lacks XDS metadata: " + "; ".join(problems), problems=problems)
    assert class_code and format_code and setting and facility and patient_id and unique_id
    return DocumentMetadata(
        unique_id=unique_id,
        class_code=class_code,
        type_code=facts.type_code,
        format_code=format_code,
        practice_setting_code=setting,
        healthcare_facility_type_code=facility,
        confidentiality_codes=(facts.confidentiality, *confidentiality),
        event_codes=facts.event_codes,
        authors=tuple(_author(entity, function_code) for entity, function_code in facts.authors),
        legal_authenticator=_person(facts.legal),
        patient_id=patient_id,
        source_patient_id=_source_patient_id(facts, patient_id),
        source_patient_info=_source_patient_info(facts),
        creation_time=_utc(facts.effective_time),
        service_start_time=_utc(facts.service_start) if facts.service_start is not None else None,
        service_stop_time=_utc(facts.service_stop) if facts.service_stop is not None else None,
        title=facts.title,
        language_code=facts.language,
        mime_type="application/xslt+xml" if _self_presenting(data) else "text/xml",
        hash=hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        size=len(data),
        reference_id_list=tuple(
            f"{i.extension}^^^&{i.root}&ISO^urn:ihe:iti:xds:2013:encounterId"
            for i in facts.encounter_ids
            if i.extension
        ),
        replaced_unique_id=_unique_id(facts.replaces, "replaced_unique_id", []) if facts.replaces else None,
        set_id=_joined(facts.set_id or facts.id),
        version=facts.version,
    )


# --------------------------------------------------------------------------- helpers


def _format_code(facts: Facts) -> Code | None:
    if facts.pdf_body:
        return PDF_FORMAT
    for root in facts.template_roots:
        found = FORMAT_OF_TEMPLATE.get(root)
        if found is not None:
            return found
    return None


def _joined(ident: InstanceId) -> str:
    return f"{ident.root}^{ident.extension}" if ident.extension else ident.root


def _unique_id(ident: InstanceId, field: str, problems: list[str]) -> str:
    """``root`` or ``root^extension``; XDS allows 64 characters for the OID and 128 in all [I: ITI TF-3 4.2.3.2]."""
    if len(ident.root) > 64:
        problems.append(f"{field}: the id root is longer than the 64 characters an XDS uniqueId allows")
    value = _joined(ident)
    if len(value) > 128:
        problems.append(f"{field}: root^extension is longer than 128 characters")
    return value


def _person(entity: Entity) -> XdsPerson:
    name = entity.person
    return XdsPerson(
        id=entity.id,
        family_name=name[0] if name is not None else None,
        given_name=name[1] if name is not None else None,
        prefix=name[2] if name is not None else None,
    )


def _author(entity: Entity, function_code: Code | None) -> XdsAuthor:
    return XdsAuthor(
        person=_person(entity) if entity.person is not None or entity.id is not None else None,
        institution_name=entity.org_name,
        institution_id=entity.org_id,
        role=function_code,
        specialty=entity.code,
        telecoms=entity.telecoms,
    )


def _source_patient_id(facts: Facts, patient_id: str) -> str:
    local = next((i for i in facts.other_ids if i.extension and not i.root.startswith(_INS_SYSTEM_PREFIX)), None)
    if local is None:
        return patient_id
    return f"{local.extension}^^^&{local.root}&ISO^PI"


def _source_patient_info(facts: Facts) -> tuple[str, ...]:
    traits = facts.traits
    sex = {Sex.M: "M", Sex.F: "F", Sex.I: "U"}[traits.sex]
    return (
        f"PID-5|{traits.birth_name}^{traits.first_first_name}^^^^^L",
        f"PID-7|{traits.birth_date.cda()}",
        f"PID-8|{sex}",
    )


def _utc(value: datetime | date) -> datetime | date:
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value.astimezone(UTC)
    return value


_STYLESHEET: Final = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?stylesheet\b")


def _self_presenting(data: bytes) -> bool:
    """True when the document is wrapped in its own XSLT stylesheet (looked for before the CDA root)."""
    head = data[: data.find(b"ClinicalDocument")] if b"ClinicalDocument" in data else data[:4096]
    return _STYLESHEET.search(head) is not None
