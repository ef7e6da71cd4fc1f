"""Shared helpers of the DMP client tests (B's): settings, a signer, a patient, CDA documents,
canned SOAP/MTOM answers, request decoding and the XDS schemas."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import re
import shutil
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from lxml import etree

from dmp_connector.cda import ClinicalDocument, InstanceId, NonXmlBody, build
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import (
    DmpService,
    Environment,
    Organisation,
    Professional,
    Settings,
    SoftwareIdentity,
    StructureIdKind,
)
from dmp_connector.dmp.mapping import derived_oid
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import TestPki
from dmp_connector.signature import FileSigner
from dmp_connector.soap import Addressing, Attachment, SoapMessage, build_envelope, decode_mtom, encode_mtom
from dmp_connector.soap import namespaces as ns
from dmp_connector.soap.envelope import parse_envelope
from dmp_connector.xds import (
    DocumentEntry,
    RegistryError,
    RegistryResponse,
    ResponseStatus,
    build_registry_response,
)
from dmp_connector.xml import to_bytes
from tests.cda.conftest import make_pdf

BASE = "https://dmp.test.invalid"
PARIS = ZoneInfo("Europe/Paris")
SHARED_XDS = Path(__file__).resolve().parents[3] / "shared" / "xds" / "schema"

SETTINGS = Settings.model_validate(
    {
        "software": SoftwareIdentity(
            name="TestLPS", version="1.0", editor="Test Editor", dmp_homologation_id="HOMOLOG-TEST"
        ),
        "environment": Environment.sandbox(BASE),
        "organisation": Organisation(
            id="123456789",
            id_kind=StructureIdKind.FINESS,
            name="Cabinet Test",
            activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        ),
        "professional": Professional(
            id="99700000001",
            family_name="SANDBOX",
            given_name="JEANNE",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
        ),
        "retry": RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002, jitter=0.0),
    }
)

TRAITS = IdentityTraits.build(
    birth_name="PAT-TROIS", birth_first_names="DOMINIQUE", sex="F", birth_date="1979-03-01", birth_place="63220"
)
INS_TEST = INS.parse("279035121518989", oid=InsOid.NIR_TEST)
PATIENT = Identity(traits=TRAITS, ins=INS_TEST, status=IdentityStatus.QUAL)
"""A qualified identity with a test INS (OID .10)."""
UNQUALIFIED = PATIENT.updated(status=IdentityStatus.RECUP)
OTHER = Identity(
    traits=IdentityTraits.build(
        birth_name="ADRUN", birth_first_names="ZOE", sex="F", birth_date="1975-12-01", birth_place="63220"
    ),
    ins=INS.parse("275126322074974", oid=InsOid.NIR_TEST),
    status=IdentityStatus.QUAL,
)
CONSULTATION = Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite")
AMBULATOIRE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")


@functools.cache
def pki() -> TestPki:
    """One test PKI per test process (RSA key generation is the slow part)."""
    return TestPki.create()


@functools.cache
def signer() -> FileSigner:
    """The organisation's signature certificate from the test PKI."""
    issued = pki().issue_organisation_sign(organisation="CABINET TEST", structure_id="1123456789")
    return FileSigner([issued.certificate, pki().ca.certificate], issued.key)


def cda_document(text: str = "Compte rendu de consultation", *, patient: Identity = PATIENT, **fields: object) -> bytes:
    """A PDF-body CI-SIS CDA for ``patient``, built by the documents package (deterministic for the same inputs)."""
    data: dict[str, object] = {
        "patient": patient,
        "type_code": CONSULTATION,
        "title": "Compte rendu de consultation",
        "body": NonXmlBody(data=make_pdf(text)),
        "effective_time": dt.datetime(2024, 3, 12, 10, 30, tzinfo=PARIS),
        "service_start": dt.datetime(2024, 3, 12, 9, 45, tzinfo=PARIS),
        "service_end": dt.datetime(2024, 3, 12, 10, 15, tzinfo=PARIS),
        "practice_setting": AMBULATOIRE,
        "document_id": InstanceId(root=derived_oid("1.2.250.1.999.7", "test-cda", text, str(patient.ins))),
    }
    data.update(fields)
    return build(ClinicalDocument.from_settings(SETTINGS, **data))  # type: ignore[arg-type]


def url(service: DmpService) -> str:
    return SETTINGS.environment.dmp_url(service)


# --------------------------------------------------------------------------- answers


def envelope(body: etree._Element, action: str = "urn:answer") -> etree._Element:
    return build_envelope(
        body, addressing=Addressing(action=action, to="http://www.w3.org/2005/08/addressing/anonymous")
    )


def soap_response(body: etree._Element, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, headers={"Content-Type": "application/soap+xml; charset=utf-8"}, content=to_bytes(envelope(body))
    )


def mtom_response(body: etree._Element, attachments: list[Attachment]) -> httpx.Response:
    payload = encode_mtom(envelope(body), attachments)
    return httpx.Response(200, headers={"Content-Type": payload.content_type}, content=b"".join(payload.iter_bytes()))


def fault_response(
    code: str = "Receiver", subcode: str | None = None, reason: str = "Erreur interne"
) -> httpx.Response:
    sub = (
        f'<env:Subcode><env:Value xmlns:d="urn:dmp">d:{subcode}</env:Value></env:Subcode>'
        if subcode is not None
        else ""
    )
    body = (
        '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault>'
        f"<env:Code><env:Value>env:{code}</env:Value>{sub}</env:Code>"
        f'<env:Reason><env:Text xml:lang="fr">{reason}</env:Text></env:Reason>'
        "</env:Fault></env:Body></env:Envelope>"
    )
    return httpx.Response(500, headers={"Content-Type": "application/soap+xml"}, content=body.encode())


def registry(status: ResponseStatus = ResponseStatus.SUCCESS, *errors: RegistryError) -> etree._Element:
    return build_registry_response(RegistryResponse(status=status, errors=errors))


def error(code: str, context: str = "", location: str | None = None) -> RegistryError:
    return RegistryError(error_code=code, code_context=context, location=location)


# --------------------------------------------------------------------------- requests


def received(request: httpx.Request) -> SoapMessage:
    """The SOAP message of a request the client sent (MTOM decoded)."""
    content_type = request.headers["Content-Type"]
    if content_type.startswith("multipart/related"):
        parts = decode_mtom(content_type, request.content)
        return parse_envelope(parts.root, attachments=parts.attachments)
    return parse_envelope(request.content)


def vihf_attribute(message: SoapMessage, name: str) -> list[etree._Element]:
    """The ``AttributeValue`` elements of one VIHF attribute in a request."""
    security = message.header_elements(ns.WSSE, "Security")
    assert len(security) == 1
    found = security[0].findall(
        f".//{{{ns.SAML2}}}Attribute[@Name='{name}']/{{{ns.SAML2}}}AttributeValue",
    )
    return list(found)


def registry_entry(entry: DocumentEntry, *, uuid: str, version: str = "1") -> DocumentEntry:
    """``entry`` as a registry would answer it: a UUID, a logicalID, a version, a status, a repository."""
    return entry.model_copy(
        update={
            "entry_uuid": uuid,
            "logical_id": uuid,
            "version": version,
            "availability_status": "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved",
            "repository_unique_id": "1.2.250.1.213.4.1.1.1.2",
        }
    )


# --------------------------------------------------------------------------- schemas


class Schemas:
    """The ebRS 3.0 schemas and IHEXDSB.xsd (from a copy whose rim.xsd does not import xcf.xsd)."""

    def __init__(self) -> None:
        copy_dir = Path(tempfile.mkdtemp(prefix="dmp-xds-schema-"))
        shutil.copytree(SHARED_XDS, copy_dir, dirs_exist_ok=True)
        rim = copy_dir / "ebRS30" / "rim.xsd"
        text = rim.read_text(encoding="utf-8")
        patched = text.replace('<import namespace="urn:ihe:iti:xds-b:2007" schemaLocation="../IHE/xcf.xsd"/>', "")
        patched = re.sub(r'<element maxOccurs="1" minOccurs="0" ref="xdsext:Document"[^>]*/>', "", patched)
        rim.write_text(patched, encoding="utf-8")
        self.lcm = _load(SHARED_XDS / "ebRS30" / "lcm.xsd")
        self.query = _load(SHARED_XDS / "ebRS30" / "query.xsd")
        self.xdsb = _load(copy_dir / "IHE" / "IHEXDSB.xsd")

    @staticmethod
    def assert_valid(schema: etree.XMLSchema, element: etree._Element) -> None:
        if not schema.validate(element):
            raise AssertionError(f"schema validation failed:\n{schema.error_log}")

    def assert_xdsb_valid(self, element: etree._Element) -> None:
        """An xdsb message as its XOP-decoded infoset: each xop:Include becomes base64 text."""
        decoded = copy.deepcopy(element)
        for include in decoded.iter(f"{{{ns.XOP}}}Include"):
            parent = include.getparent()
            assert parent is not None
            parent.remove(include)
            parent.text = "JVBERi0xLjQK"
        self.assert_valid(self.xdsb, decoded)


def _load(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path)))  # noqa: TID251 - trusted schema files from ../shared


@functools.cache
def schemas() -> Schemas:
    return Schemas()
