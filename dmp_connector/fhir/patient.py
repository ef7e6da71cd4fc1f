"""An :class:`~dmp_connector.ins.Identity` as an FR Core Patient, and back.

What goes where (FR Core ``fr-core-patient`` / ``fr-core-patient-ins``)::

    INS                 identifier, only for a QUAL identity: system urn:oid:<OID>, type fr-core-v2-0203#INS-NIR
                        (INS-NIA for .9), use official
    status, document    extension fr-core-identity-reliability: identityStatus, validationMode, validationDate
    doubtful/fictitious/homonym   the same extension's comment (DOUT, FICT, HOMA)
    birth name, first names       name use=official: family, given[0] = first birth first name,
                                  extension fr-core-patient-birth-list-given-name = the whole list
    used name, used first name    name use=usual
    sex                 gender (M male, F female, I other)
    birth date          birthDate (YYYY, YYYY-MM or YYYY-MM-DD)
    birth place         extension patient-birthPlace, valueAddress.extension fr-core-address-insee-code

FR Core is between versions (:class:`FrCoreVersion`): the published 2.1.0 codes the status in
HL7 table 0445, where ``VALI`` means what the RNIV calls *qualified*; 2.2.0 codes the four RNIV
statuses as they are. The writer follows :attr:`FrCoreSettings.version`; the reader takes both.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from dmp_connector.errors import DmpConnectorError, PatientMismatchError, ValidationError
from dmp_connector.ins import (
    INS,
    BirthDate,
    Identity,
    IdentityDocument,
    IdentityDocumentKind,
    IdentityStatus,
    IdentityTraits,
    InsOid,
    Sex,
)

from ._library import check_resource, load_json

__all__ = [
    "BIRTH_LIST_GIVEN_NAME",
    "BIRTH_PLACE",
    "IDENTITY_RELIABILITY",
    "INSEE_CODE",
    "FhirMappingError",
    "FrCoreSettings",
    "FrCoreVersion",
    "check_patient",
    "identity_from_patient",
    "identity_to_patient",
]

_CORE = "https://hl7.fr/ig/fhir/core"
IDENTITY_RELIABILITY = f"{_CORE}/StructureDefinition/fr-core-identity-reliability"
"""The identity reliability extension (status, validation mode and date, comments)."""
BIRTH_LIST_GIVEN_NAME = f"{_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name"
"""The extension on the official name that holds the whole list of birth first names."""
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
"""The core birth place extension FR Core uses."""
INSEE_CODE = f"{_CORE}/StructureDefinition/fr-core-address-insee-code"
"""The extension carrying the INSEE COG code in an address."""
PROFILE_PATIENT = f"{_CORE}/StructureDefinition/fr-core-patient"
PROFILE_PATIENT_INS = f"{_CORE}/StructureDefinition/fr-core-patient-ins"
CS_IDENTITY_STATUS = f"{_CORE}/CodeSystem/fr-core-cs-identity-status"
CS_V2_0445 = f"{_CORE}/CodeSystem/fr-core-cs-v2-0445"
CS_STATUS_COMMENT = f"{_CORE}/CodeSystem/fr-core-cs-identity-status-comment"
CS_MODE_VALIDATION = f"{_CORE}/CodeSystem/fr-core-cs-mode-validation-identity"
CS_V2_0203 = f"{_CORE}/CodeSystem/fr-core-cs-v2-0203"
TRE_R13 = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
TRE_R20 = "https://mos.esante.gouv.fr/NOS/TRE_R20-Pays/FHIR/TRE-R20-Pays"

_SLICE_TYPE = {
    InsOid.NIR: "INS-NIR",
    InsOid.NIR_TEST: "INS-NIR",
    InsOid.NIR_DEMO: "INS-NIR",
    InsOid.NIA: "INS-NIA",
}
_GENDER = {Sex.M: "male", Sex.F: "female", Sex.I: "other"}
_SEX = {value: key for key, value in _GENDER.items()}
# The SDK's document codes are FR Core's, but for the family record book (FR Core: LEP).
_MODE_OUT = {IdentityDocumentKind.FAMILY_RECORD_BOOK: "LEP"}
_MODE_IN = {"LEP": IdentityDocumentKind.FAMILY_RECORD_BOOK}
_ATTRIBUTES = (("doubtful", "DOUT"), ("fictitious", "FICT"), ("homonym", "HOMA"))
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


class FhirMappingError(ValidationError):
    """A Patient cannot be read as an identity, or an identity cannot be written; says which rule, no value."""


class FrCoreVersion(StrEnum):
    """The FR Core release the writer follows."""

    V2_1_0 = "2.1.0"
    """Published release: identityStatus from fr-core-cs-v2-0445; QUAL is written VALI, every other status PROV."""
    V2_2_0 = "2.2.0"
    """Next release (ballot, PR #306): identityStatus from fr-core-cs-identity-status, PROV/RECUP/VALI/QUAL as is."""


class FrCoreSettings(BaseModel):
    """How identities are written to FR Core; the defaults follow the published release (2.1.0)."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    version: FrCoreVersion = FrCoreVersion.V2_1_0
    """FR Core release to write; the reader accepts both."""
    meta_profile: bool = True
    """Write ``meta.profile`` (fr-core-patient-ins when the INS is carried, fr-core-patient otherwise)."""
    production: bool = False
    """Refuse the test and demonstration INS OIDs (.10/.11) both ways."""


DEFAULT_SETTINGS = FrCoreSettings()


# --------------------------------------------------------------------------- writing


def identity_to_patient(identity: Identity, *, settings: FrCoreSettings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """The FR Core Patient (JSON as a dict) for ``identity``; the INS is written only if it is QUAL.

    A lunar date, or a day known with an unknown month, has no FHIR ``date`` and raises
    :class:`FhirMappingError`; so do a test INS when ``settings.production`` and a QUAL identity
    without a birth place (``fr-core-patient-ins`` requires it with the INS). The result is
    checked against the FHIR R4 model (extra ``fhir``).
    """
    traits = identity.traits
    carried: INS | None = None
    if identity.status is IdentityStatus.QUAL and identity.ins is not None:
        carried = identity.require_qualified("an FR Core Patient")
        if settings.production and carried.is_test:
            raise FhirMappingError("a test or demonstration INS is refused in production")
        if traits.birth_place is None:
            raise FhirMappingError(
                "fr-core-patient-ins requires the birth place (its INSEE code) with the INS; this identity has none",
                hint="INSi always gives one (99999 when unknown): take the traits from INSi",
            )
    patient: dict[str, Any] = {"resourceType": "Patient"}
    if settings.meta_profile:
        patient["meta"] = {"profile": [PROFILE_PATIENT_INS if carried else PROFILE_PATIENT]}
    extensions: list[dict[str, Any]] = _reliability(identity, settings.version)
    if traits.birth_place is not None:
        extensions.append({"url": BIRTH_PLACE, "valueAddress": {"extension": [_insee(traits.birth_place)]}})
    patient["extension"] = extensions
    if carried is not None:
        patient["identifier"] = [
            {
                "use": "official",
                "type": {"coding": [{"system": CS_V2_0203, "code": _SLICE_TYPE[carried.oid]}]},
                "system": f"urn:oid:{carried.oid.value}",
                "value": carried.matricule,
            }
        ]
    names: list[dict[str, Any]] = [
        {
            "extension": [{"url": BIRTH_LIST_GIVEN_NAME, "valueString": " ".join(traits.birth_first_names)}],
            "use": "official",
            "family": traits.birth_name,
            "given": [traits.first_first_name],
        }
    ]
    if traits.used_name is not None or traits.used_first_name is not None:
        usual: dict[str, Any] = {"use": "usual"}
        if traits.used_name is not None:
            usual["family"] = traits.used_name
        if traits.used_first_name is not None:
            usual["given"] = [traits.used_first_name]
        names.append(usual)
    patient["name"] = names
    patient["gender"] = _GENDER[traits.sex]
    patient["birthDate"] = _fhir_date(traits.birth_date)
    check_resource(patient, "Patient")
    return patient


def _reliability(identity: Identity, version: FrCoreVersion) -> list[dict[str, Any]]:
    if version is FrCoreVersion.V2_2_0:
        subs: list[dict[str, Any]] = [
            {"url": "identityStatus", "valueCoding": {"system": CS_IDENTITY_STATUS, "code": identity.status.value}}
        ]
        subs += [
            {"url": "comment", "valueCodeableConcept": {"coding": [{"system": CS_STATUS_COMMENT, "code": code}]}}
            for name, code in _ATTRIBUTES
            if getattr(identity, name)
        ]
        subs += _document(identity.document)
        return [{"url": IDENTITY_RELIABILITY, "extension": subs}]
    # 2.1.0: one repetition per table-0445 code; HL7's VALI is the RNIV's QUAL.
    status = "VALI" if identity.status is IdentityStatus.QUAL else "PROV"
    first = [{"url": "identityStatus", "valueCoding": {"system": CS_V2_0445, "code": status}}]
    out = [{"url": IDENTITY_RELIABILITY, "extension": first + _document(identity.document)}]
    out += [
        {
            "url": IDENTITY_RELIABILITY,
            "extension": [{"url": "identityStatus", "valueCoding": {"system": CS_V2_0445, "code": code}}],
        }
        for name, code in _ATTRIBUTES
        if getattr(identity, name)
    ]
    return out


def _document(document: IdentityDocument | None) -> list[dict[str, Any]]:
    if document is None:
        return []
    code = _MODE_OUT.get(document.kind, document.kind.value)
    return [
        {"url": "validationMode", "valueCoding": {"system": CS_MODE_VALIDATION, "code": code}},
        {"url": "validationDate", "valueDate": document.checked_on.isoformat()},
    ]


def _insee(cog: str) -> dict[str, Any]:
    system = TRE_R20 if cog.startswith("99") else TRE_R13
    return {"url": INSEE_CODE, "valueCoding": {"system": system, "code": cog}}


def _fhir_date(date: BirthDate) -> str:
    if date.is_lunar:
        raise FhirMappingError(
            "a lunar birth date (not on the calendar) has no FHIR date",
            hint="FR Core's lunar-date extension is not written yet",
        )
    if date.month is None:
        if date.day is not None:
            raise FhirMappingError("a birth date with a day but no month has no FHIR date")
        return f"{date.year:04d}"
    if date.day is None:
        return f"{date.year:04d}-{date.month:02d}"
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}"


# --------------------------------------------------------------------------- reading


def identity_from_patient(
    source: str | bytes | Mapping[str, Any], *, settings: FrCoreSettings = DEFAULT_SETTINGS, lenient: bool = False
) -> Identity:
    """The identity an FR Core Patient describes (JSON text or dict), both FR Core releases.

    Refused with :class:`FhirMappingError`: no official name or no birth date or gender, an
    INS identifier on an identity whose status is not qualified (FR Core: the INS travels with
    a qualified identity only), a RECUP status (its INS cannot travel, and the SDK's RECUP holds
    one), several INS identifiers in use, an INS with a wrong key; with
    :class:`~dmp_connector.fhir.FhirStructureError`, what is not valid FHIR R4.
    Names are kept as written (compare with :meth:`IdentityTraits.compare`, which normalises).
    ``lenient=True`` keeps an INS whose key is wrong (``key_valid=False``; writers refuse it), as
    published examples carry some.
    """
    patient = load_json(source)
    check_resource(patient, "Patient")
    status, attributes, document = _read_reliability(patient)
    ins = _read_ins(patient, settings, lenient)
    if ins is not None and status is not IdentityStatus.QUAL:
        raise FhirMappingError(
            f"this Patient carries an INS with the status {status.value}:"
            " the INS travels with a qualified identity only",
            hint="integrate the identity without its INS, or ask the sender to fix the status",
        )
    if status is IdentityStatus.RECUP:
        raise FhirMappingError(
            "a RECUP identity cannot be read from FHIR: its INS does not travel, and RECUP is defined by it",
            hint="retrieve the INS from INSi for this patient",
        )
    if status is IdentityStatus.QUAL and ins is None:
        raise FhirMappingError("this Patient says QUAL but carries no INS identifier")
    traits = _read_traits(patient)
    try:
        return Identity(traits=traits, ins=ins, status=status, document=document, **attributes)
    except DmpConnectorError as exc:
        raise FhirMappingError("this Patient describes an identity the RNIV forbids: " + exc.message) from None


def _coding_code(value: Any, *systems: str) -> str | None:
    if not isinstance(value, Mapping):
        return None
    codings = value.get("coding") if "coding" in value else [value]
    for coding in codings or ():
        if isinstance(coding, Mapping) and coding.get("system") in systems and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None


def _read_reliability(patient: Mapping[str, Any]) -> tuple[IdentityStatus, dict[str, bool], IdentityDocument | None]:
    statuses: list[IdentityStatus] = []
    attributes: dict[str, bool] = {}
    mode: str | None = None
    day: str | None = None
    by_code = {code: name for name, code in _ATTRIBUTES}
    for extension in patient.get("extension") or ():
        if extension.get("url") != IDENTITY_RELIABILITY:
            continue
        for sub in extension.get("extension") or ():
            url = sub.get("url")
            if url == "identityStatus":
                coding = sub.get("valueCoding")
                new = _coding_code(coding, CS_IDENTITY_STATUS)
                old = _coding_code(coding, CS_V2_0445)
                if new is not None:
                    try:
                        statuses.append(IdentityStatus(new))
                    except ValueError:
                        raise FhirMappingError("identityStatus is not PROV, RECUP, VALI or QUAL") from None
                elif old is not None:
                    # Table 0445 mixes statuses (VIDE, PROV, VALI = the RNIV's QUAL), the RNIV attributes
                    # (DOUT, FICT, HOMA) and management codes (doublons, collisions …) that change no rule here.
                    if old in by_code:
                        attributes[by_code[old]] = True
                    elif old == "VALI":
                        statuses.append(IdentityStatus.QUAL)
                    elif old in ("PROV", "VIDE"):
                        statuses.append(IdentityStatus.PROV)
                else:
                    raise FhirMappingError("identityStatus uses a code system FR Core does not bind")
            elif url == "comment":
                code = _coding_code(sub.get("valueCodeableConcept"), CS_STATUS_COMMENT, CS_V2_0445)
                if code in by_code:
                    attributes[by_code[code]] = True
            elif url == "validationMode":
                mode = _coding_code(sub.get("valueCoding"), CS_MODE_VALIDATION)
            elif url == "validationDate":
                day = sub.get("valueDate")
    if len(set(statuses)) > 1:
        raise FhirMappingError("the Patient gives several identity statuses")
    status = statuses[0] if statuses else IdentityStatus.PROV
    document = None
    if mode is not None:
        try:
            kind = _MODE_IN.get(mode) or IdentityDocumentKind(mode)
        except ValueError:
            raise FhirMappingError("validationMode is a document the SDK does not model") from None
        if day is None:
            raise FhirMappingError("validationMode without validationDate: the day the document was checked is unknown")
        try:
            document = IdentityDocument(kind=kind, checked_on=dt.date.fromisoformat(day))
        except ValueError:
            raise FhirMappingError("validationDate is not a full date (YYYY-MM-DD)") from None
    return status, attributes, document


_INS_TYPES = frozenset({"INS-NIR", "INS-NIA", "INS-NIR-TEST", "INS-NIR-DEMO"})


def _typed_as_ins(identifier: Mapping[str, Any]) -> bool:
    """Whether ``identifier.type`` says INS (fr-core-cs-v2-0203): the system alone does not, the NSS shares it."""
    kind = identifier.get("type")
    codings = kind.get("coding") if isinstance(kind, Mapping) else None
    return any(
        isinstance(c, Mapping) and c.get("system") == CS_V2_0203 and c.get("code") in _INS_TYPES for c in codings or ()
    )


def _read_ins(patient: Mapping[str, Any], settings: FrCoreSettings, lenient: bool) -> INS | None:
    found: list[INS] = []
    for identifier in patient.get("identifier") or ():
        system = identifier.get("system")
        if not isinstance(system, str) or not system.startswith("urn:oid:1.2.250.1.213.1.4."):
            continue
        try:
            oid = InsOid.parse(system)
        except DmpConnectorError:
            continue  # another identifier of the family (INS-C, NSS): not an INS slice
        if identifier.get("use") == "old":
            continue  # a deactivated INS, kept by the sender for history
        if not _typed_as_ins(identifier):
            continue  # the same OID also names the NSS (type NH, often a parent's NIR): never the patient's INS
        value = identifier.get("value")
        if not isinstance(value, str):
            raise FhirMappingError("an INS identifier has no value")
        try:
            found.append(INS.parse(value, oid=oid, lenient=lenient, production=True if settings.production else None))
        except DmpConnectorError as exc:
            raise FhirMappingError("an INS identifier is invalid: " + exc.message, hint=exc.hint) from None
    if len(found) > 1:
        raise FhirMappingError("the Patient carries several INS in use; FR Core sends only the current one")
    return found[0] if found else None


def _read_traits(patient: Mapping[str, Any]) -> IdentityTraits:
    names = [n for n in patient.get("name") or () if isinstance(n, Mapping)]
    official = [n for n in names if n.get("use") == "official"]
    if len(official) != 1:
        raise FhirMappingError("an FR Core Patient has exactly one official name (the birth name)")
    name = official[0]
    family = name.get("family")
    if not isinstance(family, str) or not family.strip():
        raise FhirMappingError("the official name has no family (birth) name")
    birth_list = next(
        (e.get("valueString") for e in name.get("extension") or () if e.get("url") == BIRTH_LIST_GIVEN_NAME), None
    )
    given = name.get("given") or []
    first_names_text = birth_list if isinstance(birth_list, str) and birth_list.strip() else " ".join(given)
    first_names = tuple(first_names_text.split())
    if not first_names:
        raise FhirMappingError("the official name has no first name")
    usual = [n for n in names if n.get("use") == "usual"]
    used_name = usual[0].get("family") if usual else None
    used_first = (usual[0].get("given") or [None])[0] if usual else None
    gender = patient.get("gender")
    if gender not in _SEX:
        raise FhirMappingError("gender is missing or 'unknown': the sex is an INS trait (male, female or other)")
    birth_date = patient.get("birthDate")
    match = _DATE.match(birth_date) if isinstance(birth_date, str) else None
    if match is None:
        raise FhirMappingError("birthDate is missing: it is an INS trait")
    year, month, day = match.groups()
    birth_place = None
    for extension in patient.get("extension") or ():
        if extension.get("url") == BIRTH_PLACE:
            address = extension.get("valueAddress") or {}
            for sub in address.get("extension") or ():
                coding = sub.get("valueCoding")
                if sub.get("url") == INSEE_CODE and isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                    birth_place = str(coding["code"])
    try:
        return IdentityTraits(
            birth_name=family,
            birth_first_names=first_names,
            sex=_SEX[str(gender)],
            birth_date=BirthDate(year=int(year), month=int(month) if month else None, day=int(day) if day else None),
            birth_place=birth_place,
            used_name=used_name,
            used_first_name=used_first,
        )
    except DmpConnectorError as exc:
        raise FhirMappingError("the Patient's traits are invalid: " + exc.message) from None
    except ValueError:
        raise FhirMappingError("the Patient's traits are invalid (a name or the birth date)") from None


# --------------------------------------------------------------------------- vigilance


def check_patient(source: str | bytes | Mapping[str, Any], asked: Identity) -> Identity:
    """The identity in a received Patient, if it is the patient asked; :class:`PatientMismatchError` if not.

    Same INS (when both have one) and matching traits (:meth:`IdentityTraits.compare`);
    the error lists the traits that differ, never their values.
    """
    received = identity_from_patient(source)
    problems: list[str] = []
    if received.ins is not None and asked.ins is not None and not asked.ins.matches(received.ins):
        problems.append("the Patient's INS is not the INS asked")
    comparison = asked.traits.compare(received.traits)
    problems += [f"{trait} differs" for trait in comparison.traits if trait not in ("used_name", "used_first_name")]
    if problems:
        raise PatientMismatchError(
            "the FHIR Patient is not the patient asked", service="FHIR", operation="Patient", problems=problems
        )
    return received
