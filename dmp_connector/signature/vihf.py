"""The VIHF: the signed SAML 2.0 assertion that tells the DMP who calls, for whom, and how.

Every DMP call carries one in ``wsse:Security`` (reference notes, ``dmp_xds.md`` §5). It is
built from the :class:`~dmp_connector.config.Settings` (software, organisation, professional)
and per-call data (:class:`VihfRequest`: patient, access mode, authentication mode), then
signed enveloped with the organisation's signature certificate through a
:class:`~dmp_connector.signature.Signer`::

    <Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xsi="…XMLSchema-instance"
               ID="_09cd372d-…" IssueInstant="2024-09-02T13:22:25.789Z" Version="2.0">
      <Issuer Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName">CN=DMP SIGN,OU=1123456789,…</Issuer>
      <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">…exc-c14n, rsa-sha256, URI="#_09cd372d-…"…</Signature>
      <Subject><NameID>810001234567</NameID></Subject>
      <AuthnStatement AuthnInstant="…"><AuthnContext>
        <AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</AuthnContextClassRef>
      </AuthnContext></AuthnStatement>
      <AttributeStatement>
        <Attribute Name="VIHF_Version"><AttributeValue>3.0</AttributeValue></Attribute>
        …
        <Attribute Name="urn:oasis:names:tc:xacml:2.0:subject:role"><AttributeValue>
          <Role xmlns="urn:hl7-org:v3" code="10" codeSystem="1.2.250.1.71.1.2.7" xsi:type="CE"/>
        </AttributeValue></Attribute>
      </AttributeStatement>
    </Assertion>

The attributes come from a table, :data:`VIHF_ATTRIBUTES`: a list of (name, value builder,
mandatory) that a newer guide can change — pass your own list to :func:`build_vihf`, or
override single attributes by name in ``[signing] vihf_attribute_overrides`` with no code.

Facts marked [I] in the reference are choices with a default: the bris-de-glace reason
travels in ``Mode_Acces_Raison`` (the name Pro Santé Connect uses for the same datum); the
confidentiality attribute is an HL7 ``ConfidentialityCode`` when given as a :class:`Code`;
the Issuer is the RFC 2253 form of the certificate subject.

:func:`verify_vihf` is the other side, for the DMP simulator: structure and wrapping
checks, trust chain, signature (signxml), dates and mandatory attributes, then a typed
:class:`VihfClaims` read from the signed bytes only.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import hashlib
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final, Protocol, Self, cast, runtime_checkable

from cryptography import x509
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dmp_connector.codes import Code
from dmp_connector.config import Organisation, Professional, Settings, SoftwareIdentity
from dmp_connector.errors import (
    ConfigurationError,
    InvalidIdentifierError,
    MalformedResponseError,
    SignatureVerificationError,
    UnsafeXmlError,
    ValidationError,
)
from dmp_connector.soap.namespaces import SAML2, SOAP12_ENV, WSSE
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, parse_xml

from . import _xmldsig as xmldsig
from .keys import certificate_dn
from .signer import DigestAlgorithm, SignatureAlgorithm, Signer, algorithms_from_settings, check_signer

__all__ = [
    "AC_PASSWORD",
    "AC_SMARTCARD_PKI",
    "AC_TLS_CLIENT",
    "AC_UNSPECIFIED",
    "INCLUSIVE_PREFIXES",
    "MANDATORY_VIHF_ATTRIBUTES",
    "UNBOUNDED_VIHF_MAX_AGE",
    "VIHF_ATTRIBUTES",
    "AccessMode",
    "AuthenticationMode",
    "Automaton",
    "CodedValue",
    "MissingVihfData",
    "SupportsXdsCx",
    "VihfAttribute",
    "VihfClaims",
    "VihfContext",
    "VihfRequest",
    "VihfSecurity",
    "VihfValue",
    "build_vihf",
    "verify_vihf",
    "vihf_attributes",
]

XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
HL7: Final = "urn:hl7-org:v3"
ISSUER_FORMAT: Final = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
INCLUSIVE_PREFIXES: Final = ("ds", "saml", "#default", "xsi")
"""``ec:InclusiveNamespaces/@PrefixList`` of the reference transform, as in ANS's VIHF example."""

AC_SMARTCARD_PKI: Final = "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI"
"""Authentication context of a CPS-card login (direct mode)."""
AC_PASSWORD: Final = "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"  # noqa: S105 - a URI
"""Authentication context of a local password login (indirect mode, the default)."""
AC_TLS_CLIENT: Final = "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient"
"""Authentication context DRIMbox sends (reinforced indirect mode)."""
AC_UNSPECIFIED: Final = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
"""Authentication context of ANS's automaton example."""

_TRE_R248: Final = "1.2.250.1.213.1.1.4.248"
_TRE_R248_NAME: Final = "mode acces VIHF 1.0"
_TRE_G15: Final = "1.2.250.1.71.1.2.7"
_AUTOMATE_SYSTEM: Final = "1.2.250.1.213.1.1.4.6"
_RESSOURCE_URN: Final = "urn:dmp"
_AIR_DECL: Final = "APP_BROWSER_AUTH"
_PROFESSIONS_WITH_SPECIALTY: Final = {"10": "a physician", "21": "a pharmacist"}
_CX: Final = re.compile(r"^[^\^&\s]{1,64}\^\^\^&[0-2](\.(0|[1-9][0-9]*))+&ISO\^NH(\^[^\s]*)?$")
_CLOCK_SKEW: Final = dt.timedelta(minutes=5)
UNBOUNDED_VIHF_MAX_AGE: Final = dt.timedelta(hours=1)
"""How old :func:`verify_vihf` lets an assertion *without* ``Conditions`` be, when no ``max_age`` is given.

Such an assertion (the default of :class:`VihfSecurity`, as DRIMbox sends it) states no end of
validity; without a bound, one captured on the wire could be replayed for as long as its
certificate lives. A fresh one is signed for every call, so an hour (plus the clock skew) is ample."""
_REUSE_MARGIN: Final = dt.timedelta(seconds=30)

ATTR_VIHF_VERSION: Final = "VIHF_Version"
ATTR_AUTH_MODE: Final = "Authentification_Mode"
ATTR_SECTOR: Final = "Secteur_Activite"
ATTR_RESOURCE_ID: Final = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
ATTR_RESOURCE_URN: Final = "Ressource_URN"
ATTR_SUBJECT_ID: Final = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ATTR_STRUCTURE: Final = "Identifiant_Structure"
ATTR_LPS_VERSION: Final = "LPS_Version"
ATTR_LPS_ID: Final = "LPS_ID"
ATTR_LPS_NAME: Final = "LPS_Nom"
ATTR_HOMOLOGATION: Final = "LPS_ID_HOMOLOGATION_DMP"
ATTR_PURPOSE: Final = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
ATTR_ACCESS_REASON: Final = "Mode_Acces_Raison"
ATTR_ROLE: Final = "urn:oasis:names:tc:xacml:2.0:subject:role"
ATTR_CONFIDENTIALITY: Final = "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code"


def _saml(local: str) -> str:
    return f"{{{SAML2}}}{local}"


_DS_SIGNATURE: Final = f"{{{xmldsig.DS}}}Signature"


class AccessMode(StrEnum):
    """How the professional reaches the patient's DMP (TRE_R248_ModeAcces, ``purposeofuse``)."""

    NORMAL = "normal"
    BRIS_DE_GLACE = "bris_de_glace"
    """Emergency access; the software must collect a free-text reason."""
    CENTRE_15 = "centre_15"
    """Access by a medical regulation centre (SAMU, "centre 15")."""

    @property
    def display_name(self) -> str:
        """The TRE_R248 label."""
        return _ACCESS_LABELS[self]


_ACCESS_LABELS: Final = {
    AccessMode.NORMAL: "Accès normal",
    AccessMode.BRIS_DE_GLACE: "Accès en bris de glace",
    AccessMode.CENTRE_15: "Accès par un centre de régulation médicale",
}


class AuthenticationMode(StrEnum):
    """``Authentification_Mode``: how the caller authenticated to the DMP."""

    DIRECTE = "DIRECTE"
    """The professional's CPS card (the TLS session is the card's)."""
    INDIRECTE = "INDIRECTE"
    """The organisation's certificate; the professional logged in locally."""
    INDIRECTE_RENFORCEE = "INDIRECTE_RENFORCEE"
    """Reinforced indirect ("AIR"): a strong local login, e.g. Pro Santé Connect."""

    @property
    def default_context_class(self) -> str:
        """The ``AuthnContextClassRef`` sent unless the request names another."""
        return {
            AuthenticationMode.DIRECTE: AC_SMARTCARD_PKI,
            AuthenticationMode.INDIRECTE: AC_PASSWORD,
            AuthenticationMode.INDIRECTE_RENFORCEE: AC_TLS_CLIENT,
        }[self]


@runtime_checkable
class SupportsXdsCx(Protocol):
    """Anything that gives the patient's INS as an XDS CX (the INS type of ``dmp_connector.ins``)."""

    def to_xds_cx(self) -> str:
        """``<matricule>^^^&<OID>&ISO^NH``."""
        ...


_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")


class Automaton(BaseModel):
    """The calling automaton, for processing that no professional triggers (ANS's "VIHF avec automate")."""

    model_config = _FROZEN

    responsible_id: str = Field(min_length=1)
    """``Subject/NameID``: the national id of the person responsible for the processing."""
    model: str | None = None
    """Model name, the 2nd part of ``subject-id`` (software name, model, service)."""
    service: str | None = None
    """Service, the 3rd part of ``subject-id``."""


class VihfRequest(BaseModel):
    """What changes from one DMP call to the next: the patient, the access and the login.

    ``patient_resource_id`` takes the CX string or any object with ``to_xds_cx()`` (the INS
    type). Emergency access needs its reason: ``VihfRequest(access_mode="bris_de_glace")``
    without ``access_reason`` raises :class:`~dmp_connector.errors.ValidationError`.
    """

    model_config = _FROZEN

    patient_resource_id: str | None = None
    """The patient's INS in XDS CX form ``<matricule>^^^&1.2.250.1.213.1.4.8&ISO^NH``; None for calls
    that concern no patient."""
    access_mode: AccessMode = AccessMode.NORMAL
    """Normal, emergency (``bris_de_glace``) or regulation-centre (``centre_15``) access."""
    access_reason: str | None = None
    """Free-text reason of an emergency access (mandatory then, refused otherwise)."""
    authentication_mode: AuthenticationMode = AuthenticationMode.INDIRECTE
    """How the caller authenticated; indirect (organisation certificate) by default."""
    authn_instant: dt.datetime | None = None
    """When the user logged in locally (``AuthnInstant``); the signing time if not given."""
    authn_context_class: str | None = None
    """``AuthnContextClassRef`` if the default of the authentication mode does not describe the login."""
    professional: Professional | None = None
    """The acting professional when it is not ``Settings.professional`` (one server, many users)."""
    automaton: Automaton | None = None
    """Set for automated processing: subject-id becomes the software, the role ``AUTOMATE``."""
    subject_service: str | None = None
    """The user's service, appended to ``subject-id`` ("Nom, Prénom, Service")."""
    confidentiality_code: Code | str | None = None
    """Only for a "secret" connection to the DMP when that feature is on; the format is not public [I]."""

    @field_validator("patient_resource_id", mode="before")
    @classmethod
    def _cx_from_ins(cls, value: Any) -> Any:
        # A CX string or None (what the clients pass) is taken as it is: neither has ``to_xds_cx``, and the
        # isinstance check against a runtime-checkable Protocol costs more than the rest of the model (issue 22).
        if value is None or type(value) is str:
            return value
        if isinstance(value, SupportsXdsCx):
            return value.to_xds_cx()
        return value

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.patient_resource_id is not None and not _CX.match(self.patient_resource_id):
            raise InvalidIdentifierError(
                "the patient resource id is not an XDS CX of the form <matricule>^^^&<OID>&ISO^NH",
                hint="build it from the INS (to_xds_cx()), e.g. with the OID 1.2.250.1.213.1.4.8",
            )
        reason = (self.access_reason or "").strip()
        if self.access_mode is AccessMode.BRIS_DE_GLACE and not reason:
            raise ValidationError(
                "an emergency (bris de glace) access needs the reason the professional gave",
                problems=["access_reason: missing for access_mode=bris_de_glace"],
                hint="collect a free-text reason from the user and pass it as access_reason",
            )
        if self.access_mode is not AccessMode.BRIS_DE_GLACE and self.access_reason is not None:
            raise ValidationError(
                "access_reason is for emergency (bris de glace) access only",
                problems=[f"access_reason: given for access_mode={self.access_mode.value}"],
            )
        if self.automaton is not None and self.professional is not None:
            raise ValidationError("a VIHF names either a professional or an automaton, not both")
        return self

    @classmethod
    def for_patient(cls, patient: str | SupportsXdsCx, **fields: Any) -> VihfRequest:
        """A request about ``patient`` (a CX string or an INS object); other fields as keywords."""
        return cls(patient_resource_id=patient, **fields)


@dataclass(frozen=True)
class CodedValue:
    """An HL7 v3 CE value inside ``AttributeValue``, as the VIHF's roles and purpose of use are written::

    <Role xmlns="urn:hl7-org:v3" code="10" codeSystem="1.2.250.1.71.1.2.7" displayName="Médecin" xsi:type="CE"/>
    """

    element: str
    code: str
    code_system: str
    display_name: str | None = None
    code_system_name: str | None = None

    @classmethod
    def from_code(cls, element: str, code: Code) -> CodedValue:
        """The CE form of a :class:`Code`."""
        return cls(element, code.code, code.code_system, code.display_name)

    def as_code(self) -> Code:
        """Back to a :class:`Code`."""
        return Code(code=self.code, code_system=self.code_system, display_name=self.display_name)

    def __str__(self) -> str:
        return f"{self.code}^{self.code_system}"


VihfValue = str | CodedValue
"""One ``AttributeValue``: text, or an HL7 coded element."""


class MissingVihfData(ValidationError):
    """Raised by a value builder when its data is missing; :func:`build_vihf` collects them all.

    ``configuration`` is True when the fix is in the settings (then the error the caller
    sees is a :class:`ConfigurationError`), False when it is in the request.
    """

    def __init__(self, problem: str, *, configuration: bool = True) -> None:
        super().__init__(problem, problems=[problem])
        self.configuration = configuration


@dataclass(frozen=True)
class VihfContext:
    """What a value builder may read: the identities from the settings and the per-call request."""

    software: SoftwareIdentity
    organisation: Organisation | None
    professional: Professional | None
    request: VihfRequest
    vihf_version: str

    def require_organisation(self, attribute: str) -> Organisation:
        """The organisation, or :class:`MissingVihfData` naming ``attribute``."""
        if self.organisation is None:
            raise MissingVihfData(f"{attribute}: no organisation is configured (set [organisation])")
        return self.organisation

    def require_professional(self, attribute: str) -> Professional:
        """The professional (request first, then settings), or :class:`MissingVihfData`."""
        if self.professional is None:
            raise MissingVihfData(
                f"{attribute}: no professional is configured (set [professional] or VihfRequest.professional, "
                "or VihfRequest.automaton for automated processing)"
            )
        return self.professional


ValueBuilder = Callable[[VihfContext], Sequence[VihfValue]]


@dataclass(frozen=True)
class VihfAttribute:
    """One row of the VIHF table: the attribute name, how to get its values, and whether it must be there."""

    name: str
    values: ValueBuilder
    mandatory: bool = False
    missing: str = ""
    """What to set when a mandatory attribute comes out empty (goes into the error message)."""


def _const(value: str) -> ValueBuilder:
    return lambda ctx: [value]


def _sector(ctx: VihfContext) -> Sequence[VihfValue]:
    sector = ctx.require_organisation(ATTR_SECTOR).activity_sector
    return [f"{sector.code}^{sector.code_system}"] if sector is not None else []


def _subject_id(ctx: VihfContext) -> Sequence[VihfValue]:
    request = ctx.request
    if request.automaton is not None:
        parts = [ctx.software.name, request.automaton.model, request.automaton.service]
    else:
        pro = ctx.require_professional(ATTR_SUBJECT_ID)
        parts = [pro.family_name, pro.given_name, request.subject_service]
    return [", ".join(p for p in parts if p)]


def _roles(ctx: VihfContext) -> Sequence[VihfValue]:
    if ctx.request.automaton is not None:
        return [CodedValue("Role", "AUTOMATE", _AUTOMATE_SYSTEM, "AUTOMATE")]
    pro = ctx.require_professional(ATTR_ROLE)
    roles = [CodedValue.from_code("Role", pro.profession)]
    who = _PROFESSIONS_WITH_SPECIALTY.get(pro.profession.code) if pro.profession.code_system == _TRE_G15 else None
    if pro.specialty is not None:
        roles.append(CodedValue.from_code("Role", pro.specialty))
    elif who is not None:
        raise MissingVihfData(
            f"{ATTR_ROLE}: the specialty of {who} is mandatory (set professional.specialty: TRE_R01/TRE_R38 "
            "for a physician, TRE_G05 for a pharmacist)"
        )
    if pro.role is not None:
        roles.append(CodedValue.from_code("Role", pro.role))
    return roles


def _purpose(ctx: VihfContext) -> Sequence[VihfValue]:
    mode = ctx.request.access_mode
    return [CodedValue("PurposeOfUse", mode.value, _TRE_R248, mode.display_name, _TRE_R248_NAME)]


def _access_reason(ctx: VihfContext) -> Sequence[VihfValue]:
    if ctx.request.access_mode is not AccessMode.BRIS_DE_GLACE:
        return []
    reason = (ctx.request.access_reason or "").strip()
    if not reason:
        raise MissingVihfData(f"{ATTR_ACCESS_REASON}: an emergency access needs its reason", configuration=False)
    return [reason]


def _confidentiality(ctx: VihfContext) -> Sequence[VihfValue]:
    value = ctx.request.confidentiality_code
    if value is None:
        return []
    return [CodedValue.from_code("ConfidentialityCode", value) if isinstance(value, Code) else value]


def _optional(value: str | None) -> Sequence[VihfValue]:
    return [value] if value else []


VIHF_ATTRIBUTES: Final[tuple[VihfAttribute, ...]] = (
    VihfAttribute(ATTR_VIHF_VERSION, lambda ctx: [ctx.vihf_version], True, "set signing.vihf_version"),
    VihfAttribute(ATTR_AUTH_MODE, lambda ctx: [ctx.request.authentication_mode.value], True),
    VihfAttribute(ATTR_SECTOR, _sector, True, "set organisation.activity_sector (JDV_J61, e.g. SA07)"),
    VihfAttribute(ATTR_RESOURCE_ID, lambda ctx: _optional(ctx.request.patient_resource_id)),
    VihfAttribute(ATTR_RESOURCE_URN, _const(_RESSOURCE_URN), True),
    VihfAttribute(ATTR_SUBJECT_ID, _subject_id, True, "set the professional's names"),
    VihfAttribute(
        ATTR_STRUCTURE,
        lambda ctx: [ctx.require_organisation(ATTR_STRUCTURE).national_id],
        True,
        "set organisation.id and id_kind",
    ),
    VihfAttribute(ATTR_LPS_VERSION, lambda ctx: [ctx.software.version]),
    VihfAttribute(ATTR_LPS_ID, lambda ctx: _optional(ctx.software.instance_id)),
    VihfAttribute(ATTR_LPS_NAME, lambda ctx: [ctx.software.name], True, "set software.name"),
    VihfAttribute(
        ATTR_HOMOLOGATION,
        lambda ctx: _optional(ctx.software.dmp_homologation_id),
        True,
        "set software.dmp_homologation_id (the DMP homologation number)",
    ),
    VihfAttribute(ATTR_PURPOSE, _purpose, True),
    VihfAttribute(ATTR_ACCESS_REASON, _access_reason),
    VihfAttribute(ATTR_ROLE, _roles, True, "set professional.profession"),
    VihfAttribute(ATTR_CONFIDENTIALITY, _confidentiality),
)
"""The VIHF attributes, in the order of ANS's example (mandatory set as DRIMbox's ``VIHFField``)."""

MANDATORY_VIHF_ATTRIBUTES: Final[tuple[str, ...]] = tuple(a.name for a in VIHF_ATTRIBUTES if a.mandatory)
"""Names :func:`verify_vihf` requires by default."""


def vihf_attributes(
    overrides: Mapping[str, str | None], base: Sequence[VihfAttribute] = VIHF_ATTRIBUTES
) -> tuple[VihfAttribute, ...]:
    """``base`` with ``overrides`` applied: a text replaces (or appends) an attribute, ``None`` removes it."""
    if not overrides:  # the usual case, at every assertion: nothing to apply, no list of names to make
        return tuple(base)
    table = list(base)
    names = [a.name for a in table]
    for name, value in overrides.items():
        if name in names:
            index = names.index(name)
            if value is None:
                del table[index]
                del names[index]
            else:
                table[index] = replace(table[index], values=_const(value))
        elif value is not None:
            table.append(VihfAttribute(name, _const(value)))
            names.append(name)
    return tuple(table)


def _instant(moment: dt.datetime) -> str:
    utc = moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    if utc.year >= 1000:
        # The same text from isoformat (milliseconds truncated, as below; "+00:00" for "Z"): half the cost of
        # strftime and a format (three an assertion, issue 22). strftime writes a year before 1000 unpadded.
        return utc.isoformat(timespec="milliseconds")[:-6] + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _evaluate(
    table: Sequence[VihfAttribute], ctx: VihfContext
) -> tuple[list[tuple[str, Sequence[VihfValue]]], list[str], bool]:
    rows: list[tuple[str, Sequence[VihfValue]]] = []
    problems: list[str] = []
    configuration = False
    for attribute in table:
        try:
            values = [v for v in attribute.values(ctx) if not (isinstance(v, str) and not v.strip())]
        except MissingVihfData as missing:
            problems.extend(missing.problems)
            configuration = configuration or missing.configuration
            continue
        if not values:
            if attribute.mandatory:
                problems.append(f"{attribute.name}: missing" + (f" ({attribute.missing})" if attribute.missing else ""))
                configuration = True
            continue
        rows.append((attribute.name, values))
    return rows, problems, configuration


def _default_ns(namespace: str, **prefixed: str) -> dict[str, str]:
    # lxml-stubs type nsmap as Mapping[str, str]; lxml takes None for the default namespace.
    return cast("dict[str, str]", {None: namespace, **prefixed})


def _append_value(attribute: etree._Element, value: VihfValue) -> None:
    holder = etree.SubElement(attribute, _saml("AttributeValue"))
    if isinstance(value, str):
        holder.text = value
        return
    coded = etree.SubElement(holder, f"{{{HL7}}}{value.element}", nsmap=_default_ns(HL7))
    coded.set("code", value.code)
    coded.set("codeSystem", value.code_system)
    if value.code_system_name:
        coded.set("codeSystemName", value.code_system_name)
    if value.display_name:
        coded.set("displayName", value.display_name)
    coded.set(f"{{{XSI}}}type", "CE")


_OUTSIDE_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_SPECIAL: Final = re.compile("[&<>\r]")
_ATTRIBUTE_SPECIAL: Final = re.compile('[&<"\t\n\r]')
_TEXT_ESCAPES: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"})
_ATTRIBUTE_ESCAPES: Final = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}
)
_ELEMENT_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")
_MAX_TEXT: Final = 1 << 20
"""Characters of the largest assertion the text path writes (a VIHF is about 3,000); larger ones take the tree path."""
_DS_OPEN: Final = f'<Signature xmlns="{xmldsig.DS}">'
_SIGNED_INFO_OPEN: Final = f'<SignedInfo xmlns="{xmldsig.DS}">'
_TRANSFORMS: Final = (
    f'<Transforms><Transform Algorithm="{xmldsig.ENVELOPED_SIGNATURE}"></Transform>'
    f'<Transform Algorithm="{xmldsig.C14nMethod.EXC_C14N.value}">'
    f'<ec:InclusiveNamespaces xmlns:ec="{xmldsig.EC}" PrefixList="{" ".join(INCLUSIVE_PREFIXES)}">'
    "</ec:InclusiveNamespaces></Transform></Transforms>"
)
_HASHLIB: Final = {DigestAlgorithm.SHA256: hashlib.sha256, DigestAlgorithm.SHA1: hashlib.sha1}


class _NotText(Exception):
    """A value the text path does not write; the tree path decides."""


def _text(value: object) -> str:
    """``value`` as the canonical form writes element text; a value that is not plain non-empty XML text raises.

    A printable ASCII value (U+0020 to U+007E: every one an XML character, no carriage return) is told by two
    C tests and looked through for the three characters to escape, without the two regular expressions (some
    40 values an assertion, issue 22).
    """
    if type(value) is not str or not value:
        raise _NotText
    if value.isascii() and value.isprintable():
        return value.translate(_TEXT_ESCAPES) if "&" in value or "<" in value or ">" in value else value
    if _OUTSIDE_XML.search(value):
        raise _NotText
    return value.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL.search(value) else value


def _attribute(value: object) -> str:
    """``value`` as the canonical form writes an attribute value (between double quotes); printable ASCII as in
    :func:`_text` (no tab, line feed or carriage return to escape)."""
    if type(value) is not str:
        raise _NotText
    if value.isascii() and value.isprintable():
        return value.translate(_ATTRIBUTE_ESCAPES) if "&" in value or "<" in value or '"' in value else value
    if _OUTSIDE_XML.search(value):
        raise _NotText
    return value.translate(_ATTRIBUTE_ESCAPES) if _ATTRIBUTE_SPECIAL.search(value) else value


_KEPT_TEXTS: Final = 256
_ROW_OPENS: dict[str, str] = {}
"""``<Attribute Name="…">`` by attribute name: the names of the table (a few, the same at every assertion),
escaped once rather than at every assertion (issue 22). At most :data:`_KEPT_TEXTS` names."""
_CODED_TEXTS: dict[CodedValue, str] = {}
"""What :func:`_coded_text` wrote for a coded value of plain ``str`` fields: the roles, purpose of use and
confidentiality codes (codes of the settings and the access mode, never the patient's identity), written once
rather than at every assertion. At most :data:`_KEPT_TEXTS` values."""


def _row_open(name: object) -> str:
    """``<Attribute Name="…">`` for ``name`` (see :data:`_ROW_OPENS`); raises :class:`_NotText` as :func:`_attribute`
    does."""
    if type(name) is str:
        written = _ROW_OPENS.get(name)
        if written is not None:
            return written
    written = f'<Attribute Name="{_attribute(name)}">'
    if type(name) is str and len(_ROW_OPENS) < _KEPT_TEXTS:
        _ROW_OPENS[name] = written
    return written


def _plain_coded(value: CodedValue) -> bool:
    """Whether every field of ``value`` is a ``str`` (the optional ones may be None): a value made otherwise
    (a ``str`` subclass, say) may compare equal to a kept one and yet not be written by the text path."""
    optional = (value.code_system_name, value.display_name)
    return (
        type(value.element) is str
        and type(value.code) is str
        and type(value.code_system) is str
        and all(field is None or type(field) is str for field in optional)
    )


def _coded_row_text(value: CodedValue) -> str:
    """:func:`_coded_text` of ``value``, kept for later assertions when its fields are plain (:data:`_CODED_TEXTS`)."""
    plain = _plain_coded(value)
    if plain:
        written = _CODED_TEXTS.get(value)
        if written is not None:
            return written
    written = _coded_text(value)
    if plain and len(_CODED_TEXTS) < _KEPT_TEXTS:
        _CODED_TEXTS[value] = written
    return written


def _coded_text(value: CodedValue) -> str:
    if not _ELEMENT_NAME.match(value.element if type(value.element) is str else ""):
        raise _NotText
    optional = ""
    if value.code_system_name:
        optional += f' codeSystemName="{_attribute(value.code_system_name)}"'
    if value.display_name:
        optional += f' displayName="{_attribute(value.display_name)}"'
    return (
        f'<AttributeValue><{value.element} xmlns="{HL7}" code="{_attribute(value.code)}" '
        f'codeSystem="{_attribute(value.code_system)}"{optional} xsi:type="CE"></{value.element}></AttributeValue>'
    )


@dataclass(frozen=True)
class _VihfText:
    """What one assertion says, already decided: both builders write exactly this."""

    assertion_id: str
    issue_instant: str
    issuer: str
    name_id: str
    validity: tuple[str, str] | None
    authn_instant: str
    class_ref: str
    reinforced: bool
    rows: Sequence[tuple[str, Sequence[VihfValue]]]

    def render(self) -> tuple[str, str] | None:
        """The assertion in exclusive canonical form, cut where the signature goes (after ``Issuer``).

        The canonical form of the tree :func:`_build_tree` builds (the inclusive prefix ``xsi``
        declared on the assertion, attributes in canonical order, which is also the order they are
        set in, empty elements as start and end tags, text and attributes escaped as C14N does),
        hence also a text that parses back into that tree. None when a value is not plain XML text
        (a character XML does not allow, an empty text, an odd coded value): the tree path then
        builds it, or refuses it with its own error.
        """
        try:
            head = (
                f'<Assertion xmlns="{SAML2}" xmlns:xsi="{XSI}" ID="{_attribute(self.assertion_id)}" '
                f'IssueInstant="{_attribute(self.issue_instant)}" Version="2.0">'
                f'<Issuer Format="{ISSUER_FORMAT}">{_text(self.issuer)}</Issuer>'
            )
            parts = [f"<Subject><NameID>{_text(self.name_id)}</NameID></Subject>"]
            if self.validity is not None:
                not_before, not_on_or_after = self.validity
                parts.append(
                    f'<Conditions NotBefore="{_attribute(not_before)}" '
                    f'NotOnOrAfter="{_attribute(not_on_or_after)}"></Conditions>'
                )
            parts.append(
                f'<AuthnStatement AuthnInstant="{_attribute(self.authn_instant)}"><AuthnContext>'
                f"<AuthnContextClassRef>{_text(self.class_ref)}</AuthnContextClassRef>"
            )
            if self.reinforced:
                parts.append(f"<AuthnContextDecl>{_AIR_DECL}</AuthnContextDecl>")
            parts.append("</AuthnContext></AuthnStatement><AttributeStatement>")
            for name, values in self.rows:
                parts.append(_row_open(name))
                for value in values:
                    if type(value) is CodedValue:
                        parts.append(_coded_row_text(value))
                    else:
                        parts.append(f"<AttributeValue>{_text(value)}</AttributeValue>")
                parts.append("</Attribute>")
            parts.append("</AttributeStatement></Assertion>")
        except _NotText:
            return None
        tail = "".join(parts)
        if len(head) + len(tail) > _MAX_TEXT:
            return None
        return head, tail


class _Signed:
    """A signed assertion: the canonical text the text path signed, or the tree the tree path built.

    The text path also keeps its pieces for :meth:`serialized`: the canonical head (up to
    ``Issuer``) and tail (after the signature), and the signature as lxml writes it.
    """

    __slots__ = ("_document", "_pieces", "_tree")

    def __init__(
        self,
        document: str | None = None,
        tree: etree._Element | None = None,
        pieces: tuple[str, str, str] | None = None,
    ) -> None:
        self._document = document
        self._tree = tree
        self._pieces = pieces

    def element(self) -> etree._Element:
        """The assertion's element: the text path's parsed once, on first use (as :func:`build_vihf` returns it)."""
        if self._tree is None:
            assert self._document is not None
            self._tree = parse_xml(self._document.encode("utf-8"), what="the VIHF")
        return self._tree

    def serialized(self) -> bytes:
        """The bytes :meth:`element` serialises to (in an envelope too: it declares every namespace it uses).

        Written from the text path's pieces when lxml writes their values as C14N does (see
        :func:`_lxml_form`); otherwise the element is serialised.
        """
        if self._pieces is not None:
            written = _lxml_form(*self._pieces)
            if written is not None:
                return written
        return etree.tostring(self.element(), encoding="UTF-8", xml_declaration=False)


_MAX_LXML_FORM: Final = 50_000
"""Characters of the largest canonical assertion :func:`_lxml_form` rewrites: below libxml2's longest name
(50,000 characters), so that what it writes is what :func:`parse_xml` would have taken (a coded value's
element name is the only name a caller chooses). A VIHF is about 3,000."""
_EMPTY_CODED: Final = re.compile(' xsi:type="CE"></[^<>]*>')
_TRANSFORMS_LXML: Final = (
    f'<Transforms><Transform Algorithm="{xmldsig.ENVELOPED_SIGNATURE}"/>'
    f'<Transform Algorithm="{xmldsig.C14nMethod.EXC_C14N.value}">'
    f'<ec:InclusiveNamespaces xmlns:ec="{xmldsig.EC}" PrefixList="{" ".join(INCLUSIVE_PREFIXES)}"/>'
    "</Transform></Transforms>"
)


def _lxml_form(head: str, signature: str, tail: str) -> bytes | None:
    """The canonical assertion as lxml serialises the element parsed from it, or None when that takes the tree.

    Exclusive C14N and lxml write the same text but for empty elements (``<x></x>`` against
    ``<x/>``) and for some escaped characters: both write ``&amp;``, ``&lt;``, ``&quot;`` and a
    text's ``&gt;`` (the ``&`` of the patient's CX among them), but white space as ``&#xD;``
    against ``&#13;`` and so on, and a ``>`` in an attribute as it is against ``&gt;``. The former
    brings an ``&#x``; the latter makes more ``>`` than ``<`` (a ``<`` in a value is always
    escaped). Without either, every ``<`` and ``>`` is a tag's, so the empty elements the writer
    may leave in the tail (``Conditions``, the coded values, an ``AttributeStatement`` of no
    attribute) are found by their end tags. ``signature`` is already in lxml's form.
    """
    if (
        len(head) + len(tail) > _MAX_LXML_FORM
        or "&#x" in head
        or "&#x" in tail
        or head.count("<") != head.count(">")
        or tail.count("<") != tail.count(">")
    ):
        return None
    tail = tail.replace("></Conditions>", "/>").replace(
        "<AttributeStatement></AttributeStatement>", "<AttributeStatement/>"
    )
    if ' xsi:type="CE"></' in tail:
        tail = _EMPTY_CODED.sub(' xsi:type="CE"/>', tail)
    return (head + signature + tail).encode("utf-8")


def _sign_rendered(
    text: _VihfText,
    rendered: tuple[str, str],
    signer: Signer,
    signature_algorithm: SignatureAlgorithm,
    digest_algorithm: DigestAlgorithm,
) -> _Signed:
    """Sign the canonical text as :func:`._xmldsig.sign_enveloped` signs the tree, without a tree.

    The reference digest is taken over the canonical assertion, the signer signs the canonical
    ``SignedInfo`` (exclusive C14N, its default namespace declared on it), then ``SignatureValue``
    and ``KeyInfo`` (the signing certificate only) follow, and the signature goes right after
    ``Issuer``. No tree is built, serialised and read back to canonicalise it: the assertion is
    parsed at most once, from the text that is its canonical form, and not at all when only its
    bytes are wanted (:meth:`VihfSecurity.wsse_token_bytes`).
    """
    head, tail = rendered
    digest_value = base64.b64encode(_HASHLIB[digest_algorithm]((head + tail).encode("utf-8")).digest())
    reference = f'<Reference URI="#{_attribute(text.assertion_id)}">'
    digest_method = f'<DigestMethod Algorithm="{digest_algorithm.value}"'
    digest = f"<DigestValue>{digest_value.decode('ascii')}</DigestValue></Reference></SignedInfo>"
    c14n = f'<CanonicalizationMethod Algorithm="{xmldsig.C14nMethod.EXC_C14N.value}"'
    method = f'<SignatureMethod Algorithm="{signature_algorithm.value}"'
    signed_info = (
        f"{c14n}></CanonicalizationMethod>{method}></SignatureMethod>"
        f"{reference}{_TRANSFORMS}{digest_method}></DigestMethod>{digest}"
    )
    value = signer.sign((_SIGNED_INFO_OPEN + signed_info).encode("utf-8"), signature_algorithm)
    chain = list(signer.certificate_chain())
    key_info = (
        f"<KeyInfo><X509Data><X509Certificate>{xmldsig.certificate_base64(chain[0])}</X509Certificate>"
        "</X509Data></KeyInfo>"
        if chain
        else ""
    )
    rest = f"<SignatureValue>{base64.b64encode(value).decode('ascii')}</SignatureValue>{key_info}</Signature>"
    document = f"{head}{_DS_OPEN}<SignedInfo>{signed_info}{rest}{tail}"
    # The same signature as lxml writes it: its empty elements as <x/> (its values are base64 and constants).
    signature = f"{_DS_OPEN}<SignedInfo>{c14n}/>{method}/>{reference}{_TRANSFORMS_LXML}{digest_method}/>{digest}{rest}"
    return _Signed(document=document, pieces=(head, signature, tail))


def build_vihf(
    settings: Settings,
    signer: Signer,
    request: VihfRequest | None = None,
    *,
    attributes: Sequence[VihfAttribute] | None = None,
    now: dt.datetime | None = None,
) -> etree._Element:
    """Build and sign a VIHF for one call; returns the ``Assertion`` element, ready for ``wsse:Security``.

    ``attributes`` replaces the :data:`VIHF_ATTRIBUTES` table (``[signing]
    vihf_attribute_overrides`` is applied on top). Every missing datum is reported at once:
    :class:`ConfigurationError` when a setting is missing (no homologation number, no
    activity sector, a physician without specialty …), :class:`ValidationError` when the
    request is. The signer's certificate is checked (dates, usage) before it signs.
    """
    return _sign(settings, signer, request, attributes=attributes, now=now).element()


def _sign(
    settings: Settings,
    signer: Signer,
    request: VihfRequest | None,
    *,
    attributes: Sequence[VihfAttribute] | None,
    now: dt.datetime | None,
) -> _Signed:
    """:func:`build_vihf`'s assertion, as its text when the text path signed it."""
    request = request or VihfRequest()
    moment = now or dt.datetime.now(dt.UTC)
    signing = settings.signing
    signature_algorithm, digest_algorithm = algorithms_from_settings(signing)
    professional = None if request.automaton is not None else (request.professional or settings.professional)
    ctx = VihfContext(
        software=settings.software,
        organisation=settings.organisation,
        professional=professional,
        request=request,
        vihf_version=signing.vihf_version,
    )
    table = vihf_attributes(signing.vihf_attribute_overrides, VIHF_ATTRIBUTES if attributes is None else attributes)
    rows, problems, configuration = _evaluate(table, ctx)
    name_id: str | None = None
    if request.automaton is not None:
        name_id = request.automaton.responsible_id
    elif professional is not None:
        name_id = professional.national_id
    else:
        problems.append("Subject/NameID: no professional is configured and no automaton is given")
        configuration = True
    if problems:
        message = "the VIHF cannot be built: " + "; ".join(problems)
        if configuration:
            raise ConfigurationError(message, hint="complete the settings named above (see docs/signature.md)")
        raise ValidationError(message, problems=problems)
    assert name_id is not None
    cert = check_signer(signer, now=moment)
    assertion_id = f"_{uuid.uuid4()}"
    if signing.vihf_validity_seconds is not None:
        validity: tuple[str, str] | None = (
            _instant(moment),
            _instant(moment + dt.timedelta(seconds=signing.vihf_validity_seconds)),
        )
    else:
        validity = None
    if request.authn_context_class:
        class_ref = request.authn_context_class
    elif request.automaton is not None:
        class_ref = AC_UNSPECIFIED
    else:
        class_ref = request.authentication_mode.default_context_class
    text = _VihfText(
        assertion_id=assertion_id,
        issue_instant=_instant(moment),
        issuer=certificate_dn(cert),
        name_id=name_id,
        validity=validity,
        authn_instant=_instant(request.authn_instant or moment),
        class_ref=class_ref,
        reinforced=request.authentication_mode is AuthenticationMode.INDIRECTE_RENFORCEE,
        rows=rows,
    )
    rendered = text.render()
    if rendered is not None:
        return _sign_rendered(text, rendered, signer, signature_algorithm, digest_algorithm)
    return _Signed(tree=_build_tree(text, signer, signature_algorithm, digest_algorithm))


def _build_tree(
    text: _VihfText,
    signer: Signer,
    signature_algorithm: SignatureAlgorithm,
    digest_algorithm: DigestAlgorithm,
) -> etree._Element:
    """The assertion built element by element and signed through :mod:`._xmldsig`: the reference of the text path.

    Every input the text path does not take (a character XML does not allow, an empty text, a
    coded value that is not plain text …) comes here, so that its error or its bytes are the ones
    this builder has always given.
    """
    assertion = etree.Element(_saml("Assertion"), nsmap=_default_ns(SAML2, xsi=XSI))
    assertion.set("ID", text.assertion_id)
    assertion.set("IssueInstant", text.issue_instant)
    assertion.set("Version", "2.0")
    issuer = etree.SubElement(assertion, _saml("Issuer"), Format=ISSUER_FORMAT)
    issuer.text = text.issuer
    subject = etree.SubElement(assertion, _saml("Subject"))
    etree.SubElement(subject, _saml("NameID")).text = text.name_id
    if text.validity is not None:
        not_before, not_on_or_after = text.validity
        etree.SubElement(assertion, _saml("Conditions"), NotBefore=not_before, NotOnOrAfter=not_on_or_after)
    authn = etree.SubElement(assertion, _saml("AuthnStatement"), AuthnInstant=text.authn_instant)
    context = etree.SubElement(authn, _saml("AuthnContext"))
    etree.SubElement(context, _saml("AuthnContextClassRef")).text = text.class_ref
    if text.reinforced:
        etree.SubElement(context, _saml("AuthnContextDecl")).text = _AIR_DECL
    statement = etree.SubElement(assertion, _saml("AttributeStatement"))
    for name, values in text.rows:
        attribute = etree.SubElement(statement, _saml("Attribute"), Name=name)
        for value in values:
            _append_value(attribute, value)

    xmldsig.sign_enveloped(
        assertion,
        signer,
        signature_algorithm=signature_algorithm,
        digest_algorithm=digest_algorithm,
        position=1,
        inclusive_prefixes=INCLUSIVE_PREFIXES,
        prefix=None,
    )
    return assertion


class VihfSecurity:
    """The VIHF in the WS-Security slot: :func:`~dmp_connector.soap.envelope.build_envelope` calls :meth:`apply`.

    A fresh assertion is signed for every envelope, unless ``[signing]
    vihf_validity_seconds`` gives it a validity window: then one assertion is reused
    until 30 s before its ``NotOnOrAfter``. Safe to share between threads.
    ::

        <wsse:Security xmlns:wsse="…">
          <Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" ID="_…">…signed…</Assertion>
        </wsse:Security>
    """

    def __init__(
        self,
        settings: Settings,
        signer: Signer,
        request: VihfRequest | None = None,
        *,
        attributes: Sequence[VihfAttribute] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._settings = settings
        self._signer = signer
        self._request = request or VihfRequest()
        self._attributes = attributes
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.Lock()
        self._cached: tuple[_Signed, dt.datetime] | None = None

    @property
    def request(self) -> VihfRequest:
        """The per-call data every assertion carries."""
        return self._request

    def assertion(self) -> etree._Element:
        """A signed assertion valid now (a new one, or the cached one while it is valid); do not modify it."""
        return self._assertion()[0]

    def _assertion(self) -> tuple[etree._Element, bool]:
        """The assertion, and whether it is shared (the cached one) rather than signed for this call alone."""
        signed, shared = self._signed()
        return signed.element(), shared

    def _signed(self) -> tuple[_Signed, bool]:
        now = self._clock()
        seconds = self._settings.signing.vihf_validity_seconds
        if seconds is None:  # nothing shared: no lock, concurrent calls sign in parallel
            return _sign(self._settings, self._signer, self._request, attributes=self._attributes, now=now), False
        with self._lock:
            if self._cached is not None and now + _REUSE_MARGIN < self._cached[1]:
                return self._cached[0], True
            signed = _sign(self._settings, self._signer, self._request, attributes=self._attributes, now=now)
            signed.element()  # parsed here, under the lock: the calls that share it never parse it at once
            self._cached = (signed, now + dt.timedelta(seconds=seconds))
            return signed, True

    def apply(self, envelope: etree._Element, security: etree._Element) -> None:
        """Append a valid assertion to ``wsse:Security``: a copy of the cached one, or the one signed for this call.

        An assertion signed for this call is held by nothing else: it moves into the envelope as it
        is. The cached one stays where it is for the next calls, and each envelope gets its copy.
        """
        assertion, shared = self._assertion()
        security.append(copy.deepcopy(assertion) if shared else assertion)

    def wsse_token_bytes(self) -> bytes | None:
        """What :meth:`apply` appends, as the bytes the envelope serialises it to.

        The transport's envelope writer splices them into ``wsse:Security``: an assertion signed
        as text (the usual case) is then never parsed into a tree. None, before anything is
        signed, when :meth:`apply` or a method it calls is not this class's own (a subclass, an
        instance attribute, a patch): the envelope is then built as a tree and that ``apply`` fills it.
        """
        if not _writes_as_applied(self):
            return None
        return self._signed()[0].serialized()


_APPLIED_BY: Final = {name: VihfSecurity.__dict__[name] for name in ("apply", "_assertion", "_signed")}
"""The methods :meth:`VihfSecurity.apply` goes through, as defined here (taken once, at import)."""


def _writes_as_applied(security: VihfSecurity) -> bool:
    """Whether ``apply`` would append exactly the assertion ``wsse_token_bytes`` writes.

    Not when a subclass, the instance or a patch of the class replaces ``apply`` or a method it
    calls: the tree is then built and that ``apply`` fills it, so nothing it adds is lost.
    """
    kind = type(security)
    own = getattr(security, "__dict__", {})
    return all(getattr(kind, name, None) is method and name not in own for name, method in _APPLIED_BY.items())


# --- verification ------------------------------------------------------------------------------------


class VihfClaims(BaseModel):
    """What a verified VIHF says, read from the signed bytes only."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", arbitrary_types_allowed=True)

    assertion_id: str
    """``Assertion/@ID``."""
    issue_instant: dt.datetime
    """``Assertion/@IssueInstant`` (UTC)."""
    issuer: str
    """``Issuer``: the DN of the signing certificate."""
    subject_name_id: str
    """``Subject/NameID``: the professional's national id, or the person responsible for an automaton."""
    authn_instant: dt.datetime | None
    """``AuthnStatement/@AuthnInstant``."""
    authn_context_class: str | None
    """``AuthnContextClassRef``."""
    authn_context_decl: str | None
    """``AuthnContextDecl`` (``APP_BROWSER_AUTH`` in reinforced indirect mode)."""
    not_before: dt.datetime | None
    """``Conditions/@NotBefore``, if sent."""
    not_on_or_after: dt.datetime | None
    """``Conditions/@NotOnOrAfter``, if sent."""
    vihf_version: str | None
    """``VIHF_Version``."""
    authentication_mode: AuthenticationMode | None
    """``Authentification_Mode``."""
    structure_id: str | None
    """``Identifiant_Structure``: the organisation's national id."""
    activity_sector: str | None
    """``Secteur_Activite`` as sent (``code^OID``)."""
    subject_id: str | None
    """``subject-id``: "Nom, Prénom" or the automaton's name."""
    roles: tuple[Code, ...]
    """The ``role`` values: profession, then specialty or role."""
    patient_resource_id: str | None
    """``resource-id``: the patient's INS in CX form."""
    resource_urn: str | None
    """``Ressource_URN`` (``urn:dmp``)."""
    access_mode: AccessMode | None
    """``purposeofuse``."""
    access_reason: str | None
    """``Mode_Acces_Raison`` of an emergency access."""
    confidentiality_code: str | None
    """The confidentiality attribute (text, or ``code^OID``), if sent."""
    software_id: str | None
    """``LPS_ID``."""
    software_name: str | None
    """``LPS_Nom``."""
    software_version: str | None
    """``LPS_Version``."""
    dmp_homologation_id: str | None
    """``LPS_ID_HOMOLOGATION_DMP``."""
    attributes: dict[str, tuple[str, ...]]
    """Every attribute by name, values as text (a coded value as ``code^OID``), for those not modelled above."""
    certificate: x509.Certificate
    """The signing certificate, already checked against the trusted ones."""

    @property
    def is_automaton(self) -> bool:
        """True when the caller is an automaton (role ``AUTOMATE``)."""
        return any(role.code == "AUTOMATE" for role in self.roles)


def _refuse(message: str, reason: str, **kwargs: Any) -> SignatureVerificationError:
    return SignatureVerificationError(message, reason=reason, **kwargs)


def _locate_assertion(root: etree._Element) -> etree._Element:
    if root.tag == _saml("Assertion"):
        return root
    security: list[etree._Element] = []
    if root.tag == f"{{{WSSE}}}Security":
        security = [root]
    elif root.tag == f"{{{SOAP12_ENV}}}Envelope":
        header = root.find(f"{{{SOAP12_ENV}}}Header")
        security = header.findall(f"{{{WSSE}}}Security") if header is not None else []
    else:
        raise _refuse("the VIHF is not a SAML 2.0 Assertion (nor a SOAP envelope holding one)", "malformed")
    assertions = [a for s in security for a in s.findall(_saml("Assertion"))]
    if len(assertions) != 1:
        raise _refuse(f"wsse:Security must hold exactly one VIHF assertion, it holds {len(assertions)}", "malformed")
    return assertions[0]


_ID_NAMES: Final = frozenset({"ID", "Id", "id"})
_ID_TEST: Final = "(" + " or ".join(f"local-name() = '{name}'" for name in sorted(_ID_NAMES)) + ") and . = $value"
_SAME_ID: Final = etree.XPath(f"//*[@*[{_ID_TEST}]]")
"""The elements carrying an ID/Id/id attribute (any namespace) of value ``$value``: the reference for
:func:`_same_id_elements`, which finds the same elements ten times faster (kept for the tests)."""
_ANY_ATTRIBUTE_OF_VALUE: Final = etree.XPath("//@*[. = $value]")
_ID_ATTRIBUTE_OF_VALUE: Final = etree.XPath(f"@*[{_ID_TEST}]")


def _same_id_elements(document: etree._Element, value: str) -> list[etree._Element]:
    """The elements of ``document`` carrying an ID/Id/id attribute (any namespace) of value ``value``.

    What :data:`_SAME_ID` finds, in document order: libxml2 compares every attribute's value with
    ``value`` (one string comparison each), and only the elements holding an equal one (one, as a
    rule) are tested with :data:`_SAME_ID`'s own predicate, instead of three ``local-name()`` calls
    per attribute of the message.
    """
    found: list[etree._Element] = []
    for attribute in cast("list[Any]", _ANY_ATTRIBUTE_OF_VALUE(document, value=value)):
        element = attribute.getparent()
        if not any(element is seen for seen in found) and _ID_ATTRIBUTE_OF_VALUE(element, value=value):
            found.append(element)
    return found


def _check_structure(assertion: etree._Element) -> etree._Element:
    """Refuse shapes that signature wrapping relies on; return the assertion's ds:Signature."""
    assertion_id = assertion.get("ID") or ""
    if not assertion_id:
        raise _refuse("the assertion has no ID", "malformed")
    document = assertion.getroottree().getroot()
    # Every element carrying an ID/Id/id attribute (any namespace) of that value, found by libxml2's
    # XPath: the whole message is searched (a deposit's envelope holds hundreds of elements).
    same_id = _same_id_elements(document, assertion_id)
    if len(same_id) != 1:
        raise _refuse("the assertion's ID is used by more than one element (signature wrapping)", "wrapping")
    children = [c for c in assertion if isinstance(c.tag, str)]
    direct = [c for c in children if c.tag == _DS_SIGNATURE]
    nested = [s for s in assertion.iter(_DS_SIGNATURE) if s.getparent() is not assertion]
    if not direct:
        if nested:
            raise _refuse("the assertion's own signature is missing but another one is nested in it", "wrapping")
        raise _refuse("the assertion is not signed", "malformed")
    if len(direct) > 1 or nested:
        raise _refuse("the assertion holds more than one signature (signature wrapping)", "wrapping")
    signature = direct[0]
    if len(children) < 2 or children[0].tag != _saml("Issuer") or children[1] is not signature:
        raise _refuse("the signature must come right after the assertion's Issuer", "malformed")
    signed_info = signature.find(f"{{{xmldsig.DS}}}SignedInfo")
    references = signed_info.findall(f"{{{xmldsig.DS}}}Reference") if signed_info is not None else []
    if len(references) != 1:
        raise _refuse("the VIHF signature must have exactly one reference", "wrapping")
    if references[0].get("URI") != f"#{assertion_id}":
        raise _refuse("the signature does not reference the assertion that holds it (signature wrapping)", "wrapping")
    transforms = [t.get("Algorithm") for t in references[0].iterfind(f".//{{{xmldsig.DS}}}Transform")]
    if transforms != [xmldsig.ENVELOPED_SIGNATURE, xmldsig.C14nMethod.EXC_C14N.value]:
        raise _refuse("the VIHF reference must use the enveloped-signature and exclusive c14n transforms", "malformed")
    method = signed_info.find(f"{{{xmldsig.DS}}}CanonicalizationMethod") if signed_info is not None else None
    if method is None or method.get("Algorithm") != xmldsig.C14nMethod.EXC_C14N.value:
        raise _refuse("the VIHF SignedInfo must be canonicalised with exclusive c14n", "malformed")
    return signature


_DN_ALIASES: Final = {"G": "GN", "GIVENNAME": "GN", "2.5.4.42": "GN", "S": "ST", "SURNAME": "SN", "2.5.4.4": "SN"}


_KEPT_DN: Final = 1024
"""Characters of the longest DN whose split is kept (a sender cannot fill the cache with big ones)."""


def _dn_parts(text: str) -> tuple[tuple[str, str], ...]:
    """The (attribute, value) pairs of an RFC 2253 / 4514 DN, attribute names upper-cased and aliased.

    The split of a short DN is kept per distinct text (the same certificate names every message):
    a pure function of the string, which is its only key.
    """
    return _kept_dn_parts(text) if len(text) <= _KEPT_DN else _split_dn(text)


@functools.lru_cache(maxsize=64)
def _kept_dn_parts(text: str) -> tuple[tuple[str, str], ...]:
    return _split_dn(text)


def _split_dn(text: str) -> tuple[tuple[str, str], ...]:
    parts: list[tuple[str, str]] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char in ",;":
            parts.append(_dn_pair("".join(current)))
            current = []
        else:
            current.append(char)
    parts.append(_dn_pair("".join(current)))
    return tuple(parts)


def _dn_pair(rdn: str) -> tuple[str, str]:
    name, _, value = rdn.partition("=")
    key = name.strip().upper()
    return _DN_ALIASES.get(key, key), value.strip()


def _issuer_names_certificate(issuer: str, cert: x509.Certificate) -> bool:
    expected = _dn_parts(certificate_dn(cert))
    given = _dn_parts(issuer)
    return given in (expected, expected[::-1])


def _parse_instant(value: str | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise _refuse(f"the assertion's {what} is not an xs:dateTime", "malformed") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _values(signed: etree._Element) -> dict[str, list[VihfValue]]:
    found: dict[str, list[VihfValue]] = {}
    for attribute in signed.iterfind(f"{_saml('AttributeStatement')}/{_saml('Attribute')}"):
        values = found.setdefault(attribute.get("Name") or "", [])
        for holder in attribute.iterfind(_saml("AttributeValue")):
            element = next((c for c in holder if isinstance(c.tag, str)), None)
            if element is None:
                values.append((holder.text or "").strip())
            else:
                values.append(
                    CodedValue(
                        etree.QName(element).localname,
                        element.get("code") or "",
                        element.get("codeSystem") or "",
                        element.get("displayName"),
                        element.get("codeSystemName"),
                    )
                )
    return found


def _claims(signed: etree._Element, cert: x509.Certificate, mandatory: Iterable[str]) -> VihfClaims:
    values = _values(signed)
    problems = [f"{name}: missing" for name in mandatory if not [v for v in values.get(name, []) if str(v)]]

    def text(name: str) -> str | None:
        found = values.get(name) or []
        return str(found[0]) if found else None

    mode_text = text(ATTR_AUTH_MODE)
    try:
        mode = AuthenticationMode(mode_text) if mode_text is not None else None
    except ValueError:
        problems.append(f"{ATTR_AUTH_MODE}: unknown value")
        mode = None
    purpose = next((v for v in values.get(ATTR_PURPOSE, []) if isinstance(v, CodedValue)), None)
    access: AccessMode | None = None
    if purpose is not None:
        try:
            access = AccessMode(purpose.code)
        except ValueError:
            problems.append(f"{ATTR_PURPOSE}: unknown access mode")
    reason = text(ATTR_ACCESS_REASON)
    if access is AccessMode.BRIS_DE_GLACE and not reason:
        problems.append(f"{ATTR_ACCESS_REASON}: missing for an emergency access")
    roles: list[Code] = []
    for value in values.get(ATTR_ROLE, []):
        if not isinstance(value, CodedValue):
            problems.append(f"{ATTR_ROLE}: a value is not a coded Role")
            continue
        try:
            roles.append(value.as_code())
        except ValueError:
            problems.append(f"{ATTR_ROLE}: a Role has no valid code and code system")
    if problems:
        raise _refuse("the VIHF lacks mandatory data: " + "; ".join(problems), "malformed", problems=problems)

    subject = signed.find(f"{_saml('Subject')}/{_saml('NameID')}")
    issuer = signed.find(_saml("Issuer"))
    conditions = signed.find(_saml("Conditions"))
    authn = signed.find(_saml("AuthnStatement"))
    context = authn.find(_saml("AuthnContext")) if authn is not None else None
    class_ref = context.find(_saml("AuthnContextClassRef")) if context is not None else None
    decl = context.find(_saml("AuthnContextDecl")) if context is not None else None
    issue_instant = _parse_instant(signed.get("IssueInstant"), "IssueInstant")
    if subject is None or not (subject.text or "").strip() or issuer is None or issue_instant is None:
        raise _refuse("the VIHF lacks its Issuer, Subject/NameID or IssueInstant", "malformed")
    return VihfClaims(
        assertion_id=signed.get("ID") or "",
        issue_instant=issue_instant,
        issuer=(issuer.text or "").strip(),
        subject_name_id=(subject.text or "").strip(),
        authn_instant=_parse_instant(authn.get("AuthnInstant"), "AuthnInstant") if authn is not None else None,
        authn_context_class=(class_ref.text or "").strip() or None if class_ref is not None else None,
        authn_context_decl=(decl.text or "").strip() or None if decl is not None else None,
        not_before=_parse_instant(conditions.get("NotBefore"), "NotBefore") if conditions is not None else None,
        not_on_or_after=(
            _parse_instant(conditions.get("NotOnOrAfter"), "NotOnOrAfter") if conditions is not None else None
        ),
        vihf_version=text(ATTR_VIHF_VERSION),
        authentication_mode=mode,
        structure_id=text(ATTR_STRUCTURE),
        activity_sector=text(ATTR_SECTOR),
        subject_id=text(ATTR_SUBJECT_ID),
        roles=tuple(roles),
        patient_resource_id=text(ATTR_RESOURCE_ID),
        resource_urn=text(ATTR_RESOURCE_URN),
        access_mode=access,
        access_reason=reason,
        confidentiality_code=text(ATTR_CONFIDENTIALITY),
        software_id=text(ATTR_LPS_ID),
        software_name=text(ATTR_LPS_NAME),
        software_version=text(ATTR_LPS_VERSION),
        dmp_homologation_id=text(ATTR_HOMOLOGATION),
        attributes={name: tuple(str(v) for v in found) for name, found in values.items()},
        certificate=cert,
    )


def _check_dates(claims: VihfClaims, now: dt.datetime, max_age: dt.timedelta | None) -> None:
    if max_age is None and claims.not_on_or_after is None:
        max_age = UNBOUNDED_VIHF_MAX_AGE
    if claims.issue_instant > now + _CLOCK_SKEW:
        raise _refuse("the VIHF was issued in the future (check the clocks)", "expired_assertion")
    if claims.not_before is not None and now + _CLOCK_SKEW < claims.not_before:
        raise _refuse("the VIHF is not valid yet (Conditions/@NotBefore)", "expired_assertion")
    if claims.not_on_or_after is not None and now - _CLOCK_SKEW >= claims.not_on_or_after:
        raise _refuse("the VIHF has expired (Conditions/@NotOnOrAfter)", "expired_assertion")
    if max_age is not None and now - claims.issue_instant > max_age + _CLOCK_SKEW:
        raise _refuse("the VIHF is older than the accepted age", "expired_assertion")


def verify_vihf(
    assertion: bytes | etree._Element,
    *,
    trusted: Sequence[x509.Certificate],
    now: dt.datetime | None = None,
    allow_sha1: bool = True,
    max_age: dt.timedelta | None = None,
    mandatory: Iterable[str] = MANDATORY_VIHF_ATTRIBUTES,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> VihfClaims:
    """Verify a VIHF and return what it says; raise :class:`SignatureVerificationError` otherwise.

    ``assertion`` is the assertion (bytes or element), or a SOAP envelope / ``wsse:Security``
    holding exactly one. Checks, in order: the shape signature wrapping needs (one
    signature, right after Issuer, referencing the assertion's own unique ID — reason
    ``wrapping`` or ``malformed``); the certificate path to ``trusted`` and its dates
    (``untrusted_certificate``, ``expired_certificate``); the digest and the signature
    value with signxml (``digest_mismatch``, ``bad_signature``); that the Issuer names the
    signing certificate; the mandatory attributes (``malformed``, each in ``problems``);
    the assertion's dates (``expired_assertion``: ``NotBefore``/``NotOnOrAfter`` with five minutes
    of clock skew; ``max_age`` bounds the age of any assertion, and one without ``NotOnOrAfter`` is
    held to :data:`UNBOUNDED_VIHF_MAX_AGE` when ``max_age`` is not given). RSA-SHA1 is accepted
    unless ``allow_sha1=False``.
    """
    moment = now or dt.datetime.now(dt.UTC)
    if isinstance(assertion, bytes | bytearray | memoryview):
        try:
            root = parse_xml(bytes(assertion), limits=limits, what="the VIHF")
        except (UnsafeXmlError, MalformedResponseError) as exc:
            raise _refuse(f"the VIHF cannot be read: {exc.message}", "malformed") from exc
    else:
        root = assertion
    element = _locate_assertion(root)
    signature = _check_structure(element)
    leaf = xmldsig.verify_certificate_path(xmldsig.key_info_certificates(signature), trusted, now=moment)
    results = xmldsig.verify_with_signxml(
        element, certificate=leaf, id_attribute="ID", location="./", allow_sha1=allow_sha1, now=moment
    )
    signed = results[0].signed_xml
    if signed is None or signed.tag != _saml("Assertion") or signed.get("ID") != element.get("ID"):
        raise _refuse("what the signature covers is not the assertion (signature wrapping)", "wrapping")
    claims = _claims(signed, leaf, mandatory)
    if not _issuer_names_certificate(claims.issuer, leaf):
        raise _refuse("the assertion's Issuer does not name the certificate that signed it", "untrusted_certificate")
    _check_dates(claims, moment, max_age)
    return claims
