"""The DMP simulator's rules (reference notes §7), in-process: requests built by hand, sent by ``transport.Client``.

Each request is built with the XDS builders (``dmp_connector.xds``) and the TD builders
(``dmp_connector.dmp._td``), signed with a VIHF from the test PKI and sent by a small raw
operation, so that every rule can be broken on purpose. The harness at the top (:class:`Dmp`)
is shared by the fault tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import httpx
import pytest
from lxml import etree

from dmp_connector._transport import CallContext, Client, Operation, SoapRequest
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import (
    DmpService,
    Environment,
    Organisation,
    Professional,
    Settings,
    SigningSettings,
    SoftwareIdentity,
    StructureIdKind,
)
from dmp_connector.dmp import _td as td
from dmp_connector.errors import SoapFaultError
from dmp_connector.ins import INS, BirthDate, Sex
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import HttpRequest, HttpResponse, TestPki, as_transport
from dmp_connector.sandbox.dmp import (
    DEFAULT_DMP_PATIENTS,
    DMP_SERVICE_PATH,
    AuthorisationRecord,
    DmpErrorCode,
    DmpSimulator,
    PatientRecord,
)
from dmp_connector.signature import (
    AccessMode,
    AuthenticationMode,
    CodedValue,
    FileSigner,
    SubmittedDocument,
    VihfAttribute,
    VihfRequest,
    VihfSecurity,
    sign_submission_set,
)
from dmp_connector.signature.vihf import ATTR_PURPOSE, VIHF_ATTRIBUTES
from dmp_connector.soap import Attachment, SoapMessage, decode_mtom
from dmp_connector.soap.envelope import parse_envelope
from dmp_connector.soap.namespaces import WSSE, XDSB
from dmp_connector.xds import (
    INVISIBLE_PATIENT,
    MASQUE_PS,
    RECEIVED,
    AdhocQueryRequest,
    AdhocQueryResponse,
    Association,
    AssociationType,
    Author,
    AvailabilityStatus,
    Cx,
    DocumentEntry,
    DocumentRequest,
    FindDocumentsQuery,
    FindSubmissionSetsQuery,
    GetAssociationsQuery,
    GetDocumentsAndAssociationsQuery,
    GetDocumentsQuery,
    GetSubmissionSetAndContentsQuery,
    GetSubmissionSetsQuery,
    QueryParameter,
    RegistryResponse,
    ResponseStatus,
    RetrieveDocumentSetRequest,
    RetrieveDocumentSetResponse,
    ReturnType,
    StoredQuery,
    StoredQueryId,
    SubmissionRequest,
    SubmissionSet,
    Xcn,
    XdsTime,
    Xon,
    build_adhoc_query_request,
    build_provide_and_register_request,
    build_retrieve_document_set_request,
    build_submit_objects_request,
    parse_adhoc_query_response,
    parse_registry_response,
    parse_retrieve_document_set_response,
)
from dmp_connector.xds.vocabulary import DMP_REPOSITORY_UNIQUE_ID, Action
from tests.conftest import PkiFiles

from .client_support import schemas

# ----------------------------------------------------------------------------------------------- harness

STRUCTURE = "1123456789"
CABINET = Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel")
MEDECIN = Code.of("10", "1.2.250.1.71.1.2.7", "Médecin")
GENERALISTE = professional_specialty("SM26", "Qualifié en médecine générale")
SOFTWARE = SoftwareIdentity(name="TestLPS", version="1.0", editor="Test Editor", dmp_homologation_id="HOMOL-TEST")
ORGANISATION = Organisation(
    id="123456789", id_kind=StructureIdKind.FINESS, name="Cabinet Test", activity_sector=CABINET
)
SANDBOX = Professional(
    id="99700000001", family_name="SANDBOX", given_name="JEANNE", profession=MEDECIN, specialty=GENERALISTE
)
"""IdNat 899700000001: no authorisation on any seeded DMP."""
DUPONT = Professional(
    id="10001234567", family_name="DUPONT", given_name="Jean", profession=MEDECIN, specialty=GENERALISTE
)
CHARLES = SANDBOX.model_copy(update={"id": "10002422979", "family_name": "CHARLES", "given_name": "Pascal"})
"""IdNat 810002422979: blocked by PAT-TROIS."""
OTHER = SANDBOX.model_copy(update={"id": "99700000002", "family_name": "AUTRE", "given_name": "Paul"})
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0.0)

ADRUN = DEFAULT_DMP_PATIENTS[0]
"""An open DMP, nobody authorised."""
NO_DMP = DEFAULT_DMP_PATIENTS[1]
CLOSED = DEFAULT_DMP_PATIENTS[2]
OPPOSED = DEFAULT_DMP_PATIENTS[3]
PAT_TROIS = DEFAULT_DMP_PATIENTS[4]
"""DUPONT authorised (médecin traitant), CHARLES blocked."""

NORMAL = Code.of("N", "2.16.840.1.113883.5.25", "Normal")
CLASS_CR = Code.of("11", "1.2.250.1.213.1.1.4.1", "Compte rendu")
CLASS_SYNTHESE = Code.of("60", "1.2.250.1.213.1.1.4.1", "Synthèse")
TYPE_CONSULT = Code.of("11488-4", "2.16.840.1.113883.6.1", "CR de consultation")
TYPE_VSM = Code.of("SYNTH", "1.2.250.1.213.1.1.4.12", "Synthèse")
FORMAT_PDF = Code.of("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "PDF")
PRACTICE = Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
CONTENT = Code.of("07", "1.2.250.1.213.1.1.4.12", "Consultation")
SOURCE_OID = "1.2.250.1.999.42"


@functools.cache
def organisation_signer(pki: TestPki, structure: str = STRUCTURE) -> FileSigner:
    """The organisation's signature certificate (VIHF, submission sets), one per PKI."""
    issued = pki.issue_organisation_sign(organisation="Cabinet Test", structure_id=structure)
    return FileSigner([issued.certificate], issued.key)


@functools.cache
def foreign_pki() -> TestPki:
    """A PKI the simulator does not trust."""
    return TestPki.create(name="not the sandbox CA")


def settings(**overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "software": SOFTWARE,
        "organisation": ORGANISATION,
        "professional": SANDBOX,
        "environment": Environment.sandbox("https://dmp.sandbox.invalid"),
        "retry": FAST_RETRY,
    }
    data.update(overrides)
    return Settings.model_validate(data)


class _Raw(Operation[SoapMessage]):
    """Any DMP request as it was built; the answer as it came (faults raise)."""

    service: ClassVar[str] = "dmp"
    name: ClassVar[str] = "raw"
    action: ClassVar[str] = ""
    safe_to_repeat: ClassVar[bool] = True

    def __init__(self, dmp_service: str, body: etree._Element, attachments: Sequence[Attachment]) -> None:
        self.dmp_service = dmp_service
        self.body = body
        self.attachments = tuple(attachments)

    def endpoint(self, environment: Environment) -> str:
        return environment.dmp_url(DmpService(self.dmp_service))

    def build(self, call: CallContext) -> SoapRequest:
        return SoapRequest(body=[self.body], attachments=self.attachments)

    def parse(self, message: SoapMessage) -> SoapMessage:
        return message


def raw(dmp_service: str, action: str, body: etree._Element, attachments: Sequence[Attachment] = ()) -> _Raw:
    kind = type("RawCall", (_Raw,), {"action": action})
    operation: _Raw = kind(dmp_service, body, attachments)
    return operation


@dataclasses.dataclass
class Doc:
    """One document to deposit and the ways a test may break its metadata."""

    data: bytes
    unique_id: str = dataclasses.field(default_factory=lambda: f"2.25.{uuid.uuid4().int}")
    mime_type: str = "application/pdf"
    class_code: Code | None = CLASS_CR
    type_code: Code = TYPE_CONSULT
    confidentiality: tuple[Code, ...] = (NORMAL,)
    patient: Cx | None = None
    hash: str | None = "auto"
    size: int | None = -1
    authors: tuple[Author, ...] | None = None
    creation_time: XdsTime | None = None
    event_codes: tuple[Code, ...] = ()


def author(professional: Professional = SANDBOX, structure: str = STRUCTURE) -> Author:
    return Author(
        person=Xcn.national_professional(professional.national_id, professional.family_name, professional.given_name),
        institutions=(Xon.national_structure("Cabinet Test", structure),),
    )


def pdf(text: str) -> bytes:
    return b"%PDF-1.4\n" + text.encode() + b"\n%%EOF\n"


class Dmp:
    """The simulator in-process, and calls to it as a given professional, patient and access mode."""

    def __init__(self, pki: TestPki, simulator: DmpSimulator | None = None, *, handler: Any = None) -> None:
        self.pki = pki
        self.simulator = simulator or DmpSimulator(trusted=[pki.ca.certificate])
        self.handler: Callable[[HttpRequest], HttpResponse] = handler or self.simulator
        self.signer = organisation_signer(pki)

    def call(
        self,
        service: str,
        action: str,
        body: etree._Element,
        *,
        patient: Cx | INS | None = None,
        attachments: Sequence[Attachment] = (),
        professional: Professional = SANDBOX,
        access: AccessMode = AccessMode.NORMAL,
        reason: str | None = None,
        mode: AuthenticationMode = AuthenticationMode.INDIRECTE,
        signer: FileSigner | None = None,
        config: Settings | None = None,
        attributes: Sequence[VihfAttribute] | None = None,
        security: bool = True,
    ) -> SoapMessage:
        resource = patient.to_xds_cx() if isinstance(patient, INS) else patient.text if patient is not None else None
        if access is AccessMode.BRIS_DE_GLACE and reason is None:
            reason = "Patient inconscient aux urgences"
        request = VihfRequest(
            patient_resource_id=resource, access_mode=access, access_reason=reason, authentication_mode=mode
        )
        config = config or settings(professional=professional)
        vihf = VihfSecurity(config, signer or self.signer, request, attributes=attributes) if security else None
        with (
            httpx.Client(transport=as_transport(self.handler)) as http,
            Client(config, http_client=http, security=vihf) as client,
        ):
            return client.send(raw(service, action, body, attachments))

    # --- XDS ------------------------------------------------------------------------------------

    def submission(
        self,
        documents: Sequence[Doc],
        *,
        patient: PatientRecord = ADRUN,
        ss_unique_id: str | None = None,
        signed: Sequence[Doc] | None = None,
        sign: bool = True,
        signer: FileSigner | None = None,
        signs_target: str = "SubmissionSet01",
        ss_author: Author | None = None,
        extra: Sequence[Association] = (),
        tamper: Callable[[bytes], bytes] | None = None,
        ss_patient: Cx | None = None,
    ) -> tuple[SubmissionRequest, list[Attachment]]:
        """A deposit as the client builds it, with every piece replaceable; validated as received (unchecked)."""
        ss_uid = ss_unique_id or f"2.25.{uuid.uuid4().int}"
        now = XdsTime.now()
        entries: list[DocumentEntry] = []
        attachments: list[Attachment] = []
        contents: dict[str, str] = {}
        for number, doc in enumerate(documents, 1):
            data = tamper(doc.data) if tamper is not None else doc.data
            entry = DocumentEntry(
                entry_uuid=f"Document{number:02d}",
                unique_id=doc.unique_id,
                patient_id=doc.patient or patient.cx,
                source_patient_id=patient.cx,
                mime_type=doc.mime_type,
                class_code=doc.class_code,
                type_code=doc.type_code,
                format_code=FORMAT_PDF,
                healthcare_facility_type_code=CABINET,
                practice_setting_code=PRACTICE,
                confidentiality_codes=doc.confidentiality,
                event_codes=doc.event_codes,
                authors=doc.authors if doc.authors is not None else (author(),),
                creation_time=doc.creation_time or now,
                language_code="fr-FR",
                title=f"Document {number}",
                hash=hashlib.sha1(data).hexdigest() if doc.hash == "auto" else doc.hash,
                size=len(data) if doc.size == -1 else doc.size,
            )
            part = Attachment.from_bytes(data, content_type=doc.mime_type)
            entries.append(entry)
            attachments.append(part)
            contents[entry.entry_uuid] = part.content_id
        ss = SubmissionSet(
            unique_id=ss_uid,
            source_id=SOURCE_OID,
            patient_id=ss_patient or patient.cx,
            submission_time=now,
            content_type_code=CONTENT,
            authors=(ss_author or author(),),
        )
        associations = [
            Association.has_member(f"Association{n:02d}", "SubmissionSet01", e.entry_uuid)
            for n, e in enumerate(entries, 1)
        ]
        if sign:
            covered = documents if signed is None else signed
            signature = sign_submission_set(
                submission_set_unique_id=ss_uid,
                documents=[
                    SubmittedDocument(unique_id=d.unique_id, content=d.data, is_cda=d.mime_type == "text/xml")
                    for d in covered
                ],
                signer=signer or self.signer,
            )
            signature_entry = DocumentEntry.for_signature(
                signature,
                patient_id=patient.cx,
                healthcare_facility_type_code=CABINET,
                practice_setting_code=PRACTICE,
                legal_authenticator=author().person,
            )
            part = Attachment.from_bytes(signature.xml, content_type="text/xml")
            entries.append(signature_entry)
            attachments.append(part)
            contents["Signature01"] = part.content_id
            associations.append(
                Association.has_member(f"Association{len(associations) + 1:02d}", "SubmissionSet01", "Signature01")
            )
            associations.append(
                Association(
                    entry_uuid=f"Association{len(associations) + 1:02d}",
                    association_type=AssociationType.SIGNS,
                    source_object="Signature01",
                    target_object=signs_target,
                    submission_set_status="Original",
                )
            )
        associations.extend(extra)
        request = SubmissionRequest.model_validate(
            {
                "submission_set": ss,
                "documents": tuple(entries),
                "associations": tuple(associations),
                "contents": contents,
            },
            context=RECEIVED,
        )
        return request, attachments

    def deposit(
        self,
        documents: Sequence[Doc],
        *,
        patient: PatientRecord = ADRUN,
        vihf_patient: Cx | None = None,
        body_hook: Callable[[etree._Element], None] | None = None,
        call: dict[str, Any] | None = None,
        **options: Any,
    ) -> RegistryResponse:
        request, attachments = self.submission(documents, patient=patient, **options)
        body = build_provide_and_register_request(request)
        if body_hook is not None:
            body_hook(body)
        message = self.call(
            "repository",
            Action.PROVIDE_AND_REGISTER.value,
            body,
            patient=vihf_patient or patient.cx,
            attachments=attachments,
            **(call or {}),
        )
        return parse_registry_response(message.payload)

    def query(
        self,
        query: Any,
        *,
        patient: Cx | None = ADRUN.cx,
        return_type: ReturnType = ReturnType.LEAF_CLASS,
        **call: Any,
    ) -> AdhocQueryResponse:
        body = build_adhoc_query_request(AdhocQueryRequest(query=query, return_type=return_type))
        message = self.call("registry", Action.REGISTRY_STORED_QUERY.value, body, patient=patient, **call)
        return parse_adhoc_query_response(message.payload)

    def find(self, patient: PatientRecord = ADRUN, **call: Any) -> AdhocQueryResponse:
        statuses = call.pop("statuses", (AvailabilityStatus.APPROVED,))
        filters = call.pop("filters", {})
        query = FindDocumentsQuery(patient_id=patient.cx, statuses=statuses, **filters)
        return self.query(query, patient=patient.cx, **call)

    def retrieve(self, *unique_ids: str, patient: PatientRecord = ADRUN, **call: Any) -> RetrieveDocumentSetResponse:
        repository = call.pop("repository", DMP_REPOSITORY_UNIQUE_ID)
        request = RetrieveDocumentSetRequest(
            documents=tuple(DocumentRequest(repository_unique_id=repository, document_unique_id=u) for u in unique_ids)
        )
        body = build_retrieve_document_set_request(request)
        message = self.call("repository", Action.RETRIEVE_DOCUMENT_SET.value, body, patient=patient.cx, **call)
        return parse_retrieve_document_set_response(message.payload, message.attachments)

    def update(self, request: SubmissionRequest, *, patient: PatientRecord = ADRUN, **call: Any) -> RegistryResponse:
        body = build_submit_objects_request(request)
        message = self.call("registry", Action.UPDATE_DOCUMENT_SET.value, body, patient=patient.cx, **call)
        return parse_registry_response(message.payload)

    def status_update(
        self, entry: DocumentEntry, new: AvailabilityStatus, *, original: str | None = None, **call: Any
    ) -> RegistryResponse:
        request = SubmissionRequest.status_update(
            update_submission_set(),
            entry.entry_uuid,
            original_status=original or str(entry.availability_status),
            new_status=new,
        )
        return self.update(request, **call)

    # --- TD -------------------------------------------------------------------------------------

    def header(self) -> td.Hl7Header:
        return td.Hl7Header(
            message_id=str(uuid.uuid4()),
            id_root=SOURCE_OID,
            creation_time=dt.datetime.now(dt.UTC),
            sender_root=SOURCE_OID,
            sender_name="TestLPS",
        )

    def test_existence(
        self, patient: PatientRecord, *, reason: td.QueryReason = td.QueryReason.TEST_EXISTENCE, **call: Any
    ) -> td.PatientQueryAnswer:
        query = td.PatientQuery(ins=patient.ins, reason=reason, query_id="q1")
        body = td.build_patient_query_request(query, self.header())
        action = call.pop("action", td.TdAction.PATIENT_QUERY.value)
        message = self.call("patients", action, body, patient=patient.ins, **call)
        return td.parse_patient_query_response(message.payload)

    def authorise(
        self,
        patient: PatientRecord,
        action: td.AuthorisationAction = td.AuthorisationAction.ADD,
        *,
        treating: bool = False,
        **call: Any,
    ) -> td.ServiceStatus:
        body = td.build_set_authorisation_request(action, treating_doctor=treating)
        message = self.call("habilitations", td.TdAction.SET_AUTHORIZATION.value, body, patient=patient.ins, **call)
        return td.parse_set_authorisation_response(message.payload)

    def register(self, request: td.RegistrationRequest, **call: Any) -> td.RegistrationAnswer:
        body = td.build_registration_request(request, self.header())
        action = td.TdAction.CREATE if request.kind is td.RegistrationKind.CREATE else td.TdAction.REVISE
        message = self.call("patients", action.value, body, patient=request.ins, **call)
        return td.parse_registration_response(message.payload)


def update_submission_set(patient: PatientRecord = ADRUN) -> SubmissionSet:
    return SubmissionSet(
        unique_id=f"2.25.{uuid.uuid4().int}",
        source_id=SOURCE_OID,
        patient_id=patient.cx,
        submission_time=XdsTime.now(),
        content_type_code=CONTENT,
        authors=(author(),),
    )


def codes(response: RegistryResponse) -> list[str]:
    return [str(e.error_code) for e in response.errors]


def admin_data(patient: PatientRecord, **changes: Any) -> td.AdministrativeData:
    data: dict[str, Any] = {
        "ins": patient.ins,
        "birth_name": patient.traits.birth_name,
        "given_names": " ".join(patient.traits.birth_first_names),
        "sex": patient.traits.sex,
        "birth_date": patient.traits.birth_date,
    }
    data.update(changes)
    return td.AdministrativeData.model_validate(data)


@pytest.fixture
def dmp(pki_files: PkiFiles) -> Dmp:
    return Dmp(pki_files.pki)


def fault_of(action: Callable[[], object]) -> SoapFaultError:
    with pytest.raises(SoapFaultError) as info:
        action()
    return info.value


# ----------------------------------------------------------------------------------------------- caller


def test_a_request_without_a_vihf_is_refused_with_a_security_fault(dmp: Dmp) -> None:
    fault = fault_of(lambda: dmp.find(security=False))
    assert fault.code == "{http://www.w3.org/2003/05/soap-envelope}Sender"
    assert fault.subcodes == (f"{{{WSSE}}}InvalidSecurity",)


def test_a_vihf_signed_outside_the_trusted_pki_is_refused(dmp: Dmp) -> None:
    fault = fault_of(lambda: dmp.find(signer=organisation_signer(foreign_pki())))
    assert fault.subcodes == (f"{{{WSSE}}}FailedAuthentication",)
    assert "untrusted_certificate" in fault.reason


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"LPS_Nom": None}, "LPS_Nom"),
        ({"Identifiant_Structure": None}, "Identifiant_Structure"),
        ({"Ressource_URN": "urn:autre"}, "Ressource_URN"),
        ({"Mode_Acces_Raison": None}, "Mode_Acces_Raison"),
    ],
)
def test_a_vihf_without_its_mandatory_data_is_refused(
    dmp: Dmp, overrides: dict[str, str | None], expected: str
) -> None:
    config = settings(signing=SigningSettings(vihf_attribute_overrides=overrides))
    fault = fault_of(lambda: dmp.find(config=config, access=AccessMode.BRIS_DE_GLACE))
    assert fault.subcodes == (f"{{{WSSE}}}InvalidSecurityToken",)
    assert expected in fault.reason


def test_an_unknown_purpose_of_use_is_refused(dmp: Dmp) -> None:
    unknown = CodedValue("PurposeOfUse", "vacances", "1.2.250.1.213.1.1.4.248")
    table = [
        VihfAttribute(ATTR_PURPOSE, lambda ctx: [unknown], True) if a.name == ATTR_PURPOSE else a
        for a in VIHF_ATTRIBUTES
    ]
    fault = fault_of(lambda: dmp.find(attributes=table))
    assert "purposeofuse" in fault.reason
    text_purpose = settings(signing=SigningSettings(vihf_attribute_overrides={ATTR_PURPOSE: "normal"}))
    assert "purposeofuse" in fault_of(lambda: dmp.find(config=text_purpose)).reason


def with_subject(dmp: Dmp, subject: str | None) -> Dmp:
    """The same simulator, reached as if over TLS with this client certificate subject."""

    def handler(request: HttpRequest) -> HttpResponse:
        return dmp.simulator(dataclasses.replace(request, client_subject=subject))

    return Dmp(dmp.pki, dmp.simulator, handler=handler)


def test_the_tls_client_certificate_must_match_the_vihf(dmp: Dmp) -> None:
    dmp.simulator.require_client_certificate = True
    assert "Certificat client" in fault_of(dmp.find).reason
    org = "countryName=FR,organizationName=Cabinet Test,organizationalUnitName={ou},commonName=INSI-AUTO"
    right = with_subject(dmp, org.format(ou=STRUCTURE))
    assert codes(right.find().response) == [DmpErrorCode.ACCESS_DENIED]  # authenticated; not authorised
    wrong = with_subject(dmp, org.format(ou="1999999999"))
    assert "personne morale" in fault_of(wrong.find).reason
    card = "countryName=FR,surname=SANDBOX,givenName=JEANNE,commonName={cn}"
    direct = AuthenticationMode.DIRECTE
    assert codes(with_subject(dmp, card.format(cn="899700000001")).find(mode=direct).response)
    assert "carte" in fault_of(lambda: with_subject(dmp, card.format(cn="899700000009")).find(mode=direct)).reason


def test_addressing_and_transport_shapes(dmp: Dmp) -> None:
    sim = dmp.simulator
    assert sim(HttpRequest("GET", f"{DMP_SERVICE_PATH}/registry", {}, b"")).status == 405
    assert sim(HttpRequest("POST", f"{DMP_SERVICE_PATH}/nowhere", {}, b"")).status == 404
    assert sim(HttpRequest("POST", "/other/registry", {}, b"")).status == 404
    plain = sim(HttpRequest("POST", f"{DMP_SERVICE_PATH}/registry", {"Content-Type": "text/plain"}, b"hello"))
    assert plain.status == 500 and b"SOAP 1.2" in bytes(plain.body)  # type: ignore[arg-type]
    garbage = sim(HttpRequest("POST", f"{DMP_SERVICE_PATH}/registry", {"Content-Type": "application/soap+xml"}, b"<"))
    assert garbage.status == 500 and b"illisible" in bytes(garbage.body)  # type: ignore[arg-type]
    body = build_adhoc_query_request(AdhocQueryRequest(query=FindDocumentsQuery(patient_id=ADRUN.cx)))
    fault = fault_of(lambda: dmp.call("repository", Action.REGISTRY_STORED_QUERY.value, body, patient=ADRUN.cx))
    assert fault.subcodes == ("{http://www.w3.org/2005/08/addressing}ActionNotSupported",)
    assert fault_of(lambda: dmp.call("patientCertif", "urn:x", body, patient=ADRUN.cx)).subcodes


def test_a_bug_in_the_simulator_is_a_receiver_fault_not_a_hang(dmp: Dmp, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(DmpSimulator, "_answer_query", broken)
    fault = fault_of(lambda: dmp.call("registry", Action.REGISTRY_STORED_QUERY.value, find_body(), patient=ADRUN.cx))
    assert fault.code.endswith("Receiver") and "KeyError" in fault.reason


def find_body(patient: PatientRecord = ADRUN) -> etree._Element:
    return build_adhoc_query_request(AdhocQueryRequest(query=FindDocumentsQuery(patient_id=patient.cx)))


# ----------------------------------------------------------------------------------------------- identity


def test_the_patient_of_a_deposit_must_be_the_vihf_patient_everywhere(dmp: Dmp) -> None:
    other = PAT_TROIS.cx
    assert codes(dmp.deposit([Doc(pdf("a"))], vihf_patient=other)) == ["XDSPatientIdDoesNotMatch"]
    assert codes(dmp.deposit([Doc(pdf("b"), patient=other)])) == ["XDSPatientIdDoesNotMatch"]
    assert codes(dmp.deposit([Doc(pdf("c"))], ss_patient=other)) == ["XDSPatientIdDoesNotMatch"]
    assert dmp.simulator.store.entry_count() == 0


@pytest.mark.parametrize(
    ("patient", "code"),
    [
        (NO_DMP, DmpErrorCode.DMP_NOT_FOUND),
        (CLOSED, DmpErrorCode.DMP_CLOSED),
        (
            PatientRecord(ins=INS.parse("1 84 12 75 111 222 52", oid="1.2.250.1.213.1.4.8"), traits=ADRUN.traits),
            "XDSUnknownPatientId",
        ),
    ],
    ids=["no DMP", "closed DMP", "unknown patient"],
)
def test_deposits_and_queries_for_a_patient_without_an_open_dmp_get_the_dmp_outcome(
    dmp: Dmp, patient: PatientRecord, code: str
) -> None:
    assert codes(dmp.deposit([Doc(pdf("x"))], patient=patient)) == [code]
    assert codes(dmp.find(patient, access=AccessMode.CENTRE_15).response) == [code]


# ----------------------------------------------------------------------------------------------- authorisation


def test_consultation_needs_an_authorisation_that_td03_adds_and_removes(dmp: Dmp) -> None:
    assert dmp.deposit([Doc(pdf("cr"))]).ok  # deposits need no authorisation
    assert codes(dmp.find().response) == [DmpErrorCode.ACCESS_DENIED]
    assert dmp.authorise(ADRUN).ok
    found = dmp.find()
    assert found.response.ok and len(found.documents) == 2  # the document and its signature (its author sees it)
    assert dmp.authorise(ADRUN, td.AuthorisationAction.REMOVE).ok
    assert codes(dmp.find().response) == [DmpErrorCode.ACCESS_DENIED]


@pytest.mark.parametrize("access", [AccessMode.BRIS_DE_GLACE, AccessMode.CENTRE_15])
def test_emergency_and_regulation_access_need_no_authorisation_unless_the_patient_opposed(
    dmp: Dmp, access: AccessMode
) -> None:
    assert dmp.find(access=access).response.ok
    assert codes(dmp.find(OPPOSED, access=access).response) == [DmpErrorCode.PATIENT_OPPOSITION]
    assert codes(dmp.find(OPPOSED).response) == [DmpErrorCode.ACCESS_DENIED]


def test_a_professional_blocked_by_the_patient_has_no_access_at_all(dmp: Dmp) -> None:
    assert dmp.find(PAT_TROIS, professional=DUPONT).response.ok
    for access in AccessMode:
        refused = dmp.find(PAT_TROIS, professional=CHARLES, access=access)
        assert codes(refused.response) == [DmpErrorCode.PATIENT_OPPOSITION]
    assert dmp.authorise(PAT_TROIS, professional=CHARLES).status == DmpErrorCode.PATIENT_OPPOSITION


def test_an_expired_authorisation_does_not_grant_access(dmp: Dmp) -> None:
    dmp.simulator.store.put_authorisation(
        AuthorisationRecord(patient=ADRUN.key, professional_id="899700000001", status=td.AuthorisationStatus.EXPIRED)
    )
    assert codes(dmp.find().response) == [DmpErrorCode.ACCESS_DENIED]
    assert dmp.test_existence(ADRUN).status.authorisation is td.AuthorisationStatus.EXPIRED


# ----------------------------------------------------------------------------------------------- deposit


def test_a_deposit_is_stored_as_the_registry_answers_it(dmp: Dmp) -> None:
    doc = Doc(pdf("compte rendu"), hash=None, size=None)
    assert dmp.deposit([doc]).ok
    store = dmp.simulator.store
    (entry,) = store.entries(unique_id=doc.unique_id)
    assert entry.entry.entry_uuid.startswith("urn:uuid:") and entry.entry.logical_id == entry.entry.entry_uuid
    assert entry.entry.availability_status == AvailabilityStatus.APPROVED and entry.entry.version == "1"
    assert entry.entry.repository_unique_id == DMP_REPOSITORY_UNIQUE_ID
    assert entry.entry.hash == hashlib.sha1(doc.data).hexdigest()
    assert entry.entry.size == len(doc.data)
    assert entry.submitter == "899700000001"
    ss = store.submission_sets(ADRUN.key)
    assert len(ss) == 1 and ss[0].submission_set.entry_uuid == entry.submission_set
    kinds = sorted(str(a.association_type).rsplit(":", 1)[-1] for a in store.associations([entry.submission_set]))
    assert kinds == ["HasMember", "HasMember", "signs"]


def test_the_submission_set_signature_is_required_and_must_prove_the_documents(dmp: Dmp) -> None:
    metadata = "XDSRegistryMetadataError"
    assert codes(dmp.deposit([Doc(pdf("a"))], sign=False)) == [metadata]
    assert codes(dmp.deposit([Doc(pdf("b"))], signs_target="Document01")) == [metadata]
    signed, unsigned = Doc(pdf("c")), Doc(pdf("not signed"))
    refused = dmp.deposit([signed, unsigned], signed=[signed])
    assert codes(refused) == [metadata] and "manifest_mismatch" in refused.errors[0].code_context
    tampered = dmp.deposit([Doc(pdf("d"))], tamper=lambda data: data + b"% changed after signing")
    assert codes(tampered) == [metadata] and "digest_mismatch" in tampered.errors[0].code_context
    foreign = dmp.deposit([Doc(pdf("e"))], signer=organisation_signer(foreign_pki()))
    assert "untrusted_certificate" in foreign.errors[0].code_context
    assert dmp.simulator.store.entry_count() == 0


def test_hash_and_size_must_match_the_mtom_part(dmp: Dmp) -> None:
    assert codes(dmp.deposit([Doc(pdf("a"), hash="0" * 40)])) == ["XDSNonIdenticalHash"]
    assert codes(dmp.deposit([Doc(pdf("b"), size=3)])) == ["XDSNonIdenticalSize"]


def test_metadata_and_parts_must_go_together(dmp: Dmp) -> None:
    def drop_document(body: etree._Element) -> None:
        body.remove(body.findall(f"{{{XDSB}}}Document")[0])

    def add_document(body: etree._Element) -> None:
        etree.SubElement(body, f"{{{XDSB}}}Document", id="Document99").text = "JVBERi0K"

    assert codes(dmp.deposit([Doc(pdf("a"))], body_hook=drop_document)) == ["XDSMissingDocument"]
    assert codes(dmp.deposit([Doc(pdf("b"))], body_hook=add_document)) == ["XDSMissingDocumentMetadata"]


def test_required_metadata_is_checked_with_the_dmp_profile(dmp: Dmp) -> None:
    refused = dmp.deposit([Doc(pdf("a"), class_code=None)])
    assert codes(refused) == ["XDSRegistryMetadataError"]
    assert "classCode is missing" in refused.errors[0].code_context
    no_person = Author(institutions=(Xon.national_structure("Cabinet Test", STRUCTURE),))
    refused = dmp.deposit([Doc(pdf("b"))], ss_author=no_person)
    assert any("authorPerson" in e.code_context for e in refused.errors)


def test_in_indirect_mode_an_author_institution_must_be_the_vihf_structure(dmp: Dmp) -> None:
    elsewhere = author(structure="1999999999")
    refused = dmp.deposit([Doc(pdf("a"))], ss_author=elsewhere)
    assert refused.errors[0].code_context == "Aucun AuthorInstitution ne correspond à l'utilisateur du VIHF"
    assert dmp.deposit([Doc(pdf("b"))], ss_author=elsewhere, call={"mode": AuthenticationMode.DIRECTE}).ok


def test_a_unique_id_is_never_reused(dmp: Dmp) -> None:
    doc = Doc(pdf("once"))
    request, attachments = dmp.submission([doc])
    body = build_provide_and_register_request(request)

    def send() -> RegistryResponse:
        message = dmp.call(
            "repository", Action.PROVIDE_AND_REGISTER.value, body, patient=ADRUN.cx, attachments=attachments
        )
        return parse_registry_response(message.payload)

    assert send().ok
    replay = send()
    assert set(codes(replay)) == {"XDSDuplicateUniqueIdInRegistry"}
    assert {e.location for e in replay.errors} >= {doc.unique_id, request.submission_set.unique_id}
    other_bytes = dmp.deposit([Doc(pdf("twice, differently"), unique_id=doc.unique_id)])
    assert codes(other_bytes) == ["XDSNonIdenticalHash"]
    assert dmp.simulator.store.entry_count() == 2  # the document and its signature, once


def test_a_replacement_deprecates_the_replaced_entry(dmp: Dmp) -> None:
    first = Doc(pdf("v1"))
    assert dmp.deposit([first]).ok
    (old,) = dmp.simulator.store.entries(unique_id=first.unique_id)
    rplc = Association(
        entry_uuid="Association90",
        association_type=AssociationType.REPLACE,
        source_object="Document01",
        target_object=old.entry.entry_uuid,
    )
    second = Doc(pdf("v2"))
    assert dmp.deposit([second], extra=[rplc]).ok
    replaced = dmp.simulator.store.entry(old.entry.entry_uuid)
    assert replaced is not None and replaced.entry.availability_status == AvailabilityStatus.DEPRECATED
    assert codes(dmp.deposit([Doc(pdf("v3"))], extra=[rplc])) == ["XDSRegistryMetadataError"]  # not Approved now
    unknown = rplc.model_copy(update={"target_object": f"urn:uuid:{uuid.uuid4()}"})
    assert codes(dmp.deposit([Doc(pdf("v4"))], extra=[unknown])) == ["XDSRegistryMetadataError"]


# ----------------------------------------------------------------------------------------------- queries


@pytest.fixture
def filled(dmp: Dmp) -> dict[str, Doc]:
    """ADRUN's DMP with four documents by two professionals; SANDBOX authorised."""
    docs = {
        "cr": Doc(pdf("cr"), creation_time=XdsTime.parse("20240110")),
        "masked": Doc(pdf("masked"), confidentiality=(NORMAL, MASQUE_PS), creation_time=XdsTime.parse("20240210")),
        "hidden": Doc(
            pdf("hidden"), confidentiality=(NORMAL, INVISIBLE_PATIENT), creation_time=XdsTime.parse("20240310")
        ),
        "synthese": Doc(
            pdf("vsm"),
            class_code=CLASS_SYNTHESE,
            type_code=TYPE_VSM,
            authors=(author(OTHER),),
            creation_time=XdsTime.parse("20240410"),
            event_codes=(Code.of("E1", "1.2.3.4"),),
        ),
    }
    for doc in docs.values():
        assert dmp.deposit([doc]).ok
    assert dmp.authorise(ADRUN).ok
    assert dmp.authorise(ADRUN, professional=OTHER).ok
    return docs


def unique_ids(response: AdhocQueryResponse) -> set[str]:
    return {d.unique_id for d in response.documents if d.mime_type != "text/xml"}


def test_masked_documents_are_hidden_from_other_professionals_invisible_patient_ones_are_not(
    dmp: Dmp, filled: dict[str, Doc]
) -> None:
    mine = dmp.find()
    assert unique_ids(mine) == {d.unique_id for d in filled.values()}
    theirs = dmp.find(professional=OTHER)
    assert unique_ids(theirs) == {d.unique_id for k, d in filled.items() if k != "masked"}
    assert all(d.mime_type != "text/xml" for d in theirs.documents)  # signatures are masked too
    assert codes(dmp.retrieve(filled["masked"].unique_id, professional=OTHER).response) == ["XDSDocumentUniqueIdError"]
    assert dmp.retrieve(filled["hidden"].unique_id, professional=OTHER).response.ok


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"class_codes": (CLASS_SYNTHESE,)}, {"synthese"}),
        ({"type_codes": (TYPE_CONSULT,)}, {"cr", "masked", "hidden"}),
        ({"format_codes": (FORMAT_PDF,)}, {"cr", "masked", "hidden", "synthese"}),
        ({"confidentiality_codes": (MASQUE_PS,)}, {"masked"}),
        ({"event_codes": (Code.of("E1", "1.2.3.4"),)}, {"synthese"}),
        ({"creation_time_from": XdsTime.parse("20240201"), "creation_time_to": XdsTime.parse("20240310")}, {"masked"}),
        ({"author_persons": ("%AUTRE%",)}, {"synthese"}),
        (
            {"practice_setting_codes": (PRACTICE,), "healthcare_facility_type_codes": (CABINET,)},
            {"cr", "masked", "hidden", "synthese"},
        ),
        ({"class_codes": (Code.of("99", "1.2.3"),)}, set()),
    ],
)
def test_find_documents_filters(dmp: Dmp, filled: dict[str, Doc], filters: dict[str, Any], expected: set[str]) -> None:
    found = dmp.find(filters=filters)
    assert found.response.ok
    assert unique_ids(found) == {filled[k].unique_id for k in expected}


def test_other_stored_queries(dmp: Dmp, filled: dict[str, Doc]) -> None:
    all_docs = dmp.find()
    by_uid = {d.unique_id: d for d in all_docs.documents}
    cr = by_uid[filled["cr"].unique_id]
    refs = dmp.find(return_type=ReturnType.OBJECT_REF)
    assert {r.id for r in refs.object_refs} == {d.entry_uuid for d in all_docs.documents} and not refs.documents
    got = dmp.query(GetDocumentsQuery(entry_uuids=(cr.entry_uuid,)))
    assert [d.unique_id for d in got.documents] == [cr.unique_id]
    got = dmp.query(GetDocumentsQuery(unique_ids=(cr.unique_id, filled["masked"].unique_id)))
    assert {d.unique_id for d in got.documents} == {cr.unique_id, filled["masked"].unique_id}
    masked_for_other = dmp.query(GetDocumentsQuery(unique_ids=(filled["masked"].unique_id,)), professional=OTHER)
    assert masked_for_other.response.ok and masked_for_other.documents == ()
    with_assocs = dmp.query(GetDocumentsAndAssociationsQuery(entry_uuids=(cr.entry_uuid,)))
    assert [str(a.association_type).rsplit(":", 1)[-1] for a in with_assocs.associations] == ["HasMember"]
    sets = dmp.query(GetSubmissionSetsQuery(uuids=(cr.entry_uuid,)))
    assert len(sets.submission_sets) == 1 and len(sets.associations) == 1
    assocs = dmp.query(GetAssociationsQuery(uuids=(cr.entry_uuid,)))
    assert len(assocs.associations) == 1
    contents = dmp.query(GetSubmissionSetAndContentsQuery(entry_uuid=sets.submission_sets[0].entry_uuid))
    assert {d.unique_id for d in contents.documents} >= {cr.unique_id} and len(contents.documents) == 2
    only_pdf = dmp.query(
        GetSubmissionSetAndContentsQuery(unique_id=sets.submission_sets[0].unique_id, format_codes=(FORMAT_PDF,))
    )
    assert [d.unique_id for d in only_pdf.documents] == [cr.unique_id]
    found_sets = dmp.query(FindSubmissionSetsQuery(patient_id=ADRUN.cx, content_type_codes=(CONTENT,)))
    assert len(found_sets.submission_sets) == 4
    assert dmp.query(FindSubmissionSetsQuery(patient_id=ADRUN.cx, source_ids=("1.2.3",))).submission_sets == ()
    folders = dmp.query(StoredQuery(query_id=StoredQueryId.FIND_FOLDERS))
    assert folders.response.ok and folders.folders == ()


def test_stored_query_errors(dmp: Dmp, filled: dict[str, Doc]) -> None:
    unknown = build_adhoc_query_request(AdhocQueryRequest(query=FindDocumentsQuery(patient_id=ADRUN.cx)))
    adhoc = unknown.find("{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}AdhocQuery")
    assert adhoc is not None
    adhoc.set("id", f"urn:uuid:{uuid.uuid4()}")
    message = dmp.call("registry", Action.REGISTRY_STORED_QUERY.value, unknown, patient=ADRUN.cx)
    assert codes(parse_adhoc_query_response(message.payload).response) == ["XDSUnknownStoredQuery"]
    missing = StoredQuery(
        query_id=StoredQueryId.FIND_DOCUMENTS,
        parameters=(
            QueryParameter(
                name="$XDSDocumentEntryStatus", values=("('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')",)
            ),
        ),
    )
    assert codes(dmp.query(missing).response) == ["XDSStoredQueryMissingParam"]
    assert codes(dmp.query(StoredQuery(query_id=StoredQueryId.GET_ALL)).response) == ["XDSRegistryError"]
    other_patient = FindDocumentsQuery(patient_id=PAT_TROIS.cx)
    assert codes(dmp.query(other_patient).response) == ["XDSPatientIdDoesNotMatch"]
    dmp.simulator.max_results = 3
    assert codes(dmp.find().response) == ["XDSTooManyResults"]
    assert dmp.find(return_type=ReturnType.OBJECT_REF).response.ok


def test_retrieve_is_byte_identical_and_reports_each_document(dmp: Dmp, filled: dict[str, Doc]) -> None:
    cr = filled["cr"]
    got = dmp.retrieve(cr.unique_id)
    assert got.response.ok
    (document,) = got.documents
    assert document.content is not None and document.content.read() == cr.data
    assert document.mime_type == "application/pdf" and document.repository_unique_id == DMP_REPOSITORY_UNIQUE_ID
    partial = dmp.retrieve(cr.unique_id, "2.25.1")
    assert partial.response.status is ResponseStatus.PARTIAL_SUCCESS and len(partial.documents) == 1
    assert [e.location for e in partial.response.errors] == ["2.25.1"]
    assert codes(dmp.retrieve("2.25.1").response) == ["XDSDocumentUniqueIdError"]
    assert codes(dmp.retrieve(cr.unique_id, repository="1.2.3").response) == ["XDSUnknownRepositoryId"]
    assert codes(dmp.retrieve(cr.unique_id, professional=DUPONT).response) == [DmpErrorCode.ACCESS_DENIED]
    assert dmp.retrieve(cr.unique_id, professional=DUPONT, access=AccessMode.BRIS_DE_GLACE).response.ok


# ----------------------------------------------------------------------------------------------- ITI-57


def test_status_changes_take_effect(dmp: Dmp, filled: dict[str, Doc]) -> None:
    by_uid = {d.unique_id: d for d in dmp.find().documents}
    cr, hidden = by_uid[filled["cr"].unique_id], by_uid[filled["hidden"].unique_id]
    assert dmp.status_update(cr, AvailabilityStatus.DELETED).ok
    assert cr.unique_id not in unique_ids(dmp.find())
    everything = tuple(AvailabilityStatus)
    assert cr.unique_id not in unique_ids(dmp.find(statuses=everything))
    assert codes(dmp.retrieve(cr.unique_id).response) == ["XDSDocumentUniqueIdError"]
    assert codes(dmp.status_update(cr, AvailabilityStatus.APPROVED, original=AvailabilityStatus.DELETED)) == [
        "XDSMetadataUpdateError"
    ]
    assert dmp.status_update(hidden, AvailabilityStatus.ARCHIVED).ok
    assert hidden.unique_id not in unique_ids(dmp.find())
    assert unique_ids(dmp.find(statuses=(AvailabilityStatus.ARCHIVED,))) == {hidden.unique_id}
    stale = dmp.status_update(hidden, AvailabilityStatus.DELETED, original=AvailabilityStatus.APPROVED)
    assert codes(stale) == ["XDSMetadataUpdateError"]
    assert codes(
        dmp.status_update(
            hidden, AvailabilityStatus.APPROVED, original=AvailabilityStatus.ARCHIVED, professional=DUPONT
        )
    ) == [DmpErrorCode.ACCESS_DENIED]


def test_masking_is_a_new_metadata_version(dmp: Dmp, filled: dict[str, Doc]) -> None:
    by_uid = {d.unique_id: d for d in dmp.find().documents}
    cr = by_uid[filled["cr"].unique_id]
    assert cr.version == "1" and cr.logical_id == cr.entry_uuid
    masked = cr.model_copy(
        update={
            "entry_uuid": "Document01",
            "confidentiality_codes": (NORMAL, MASQUE_PS),
            "availability_status": None,
            "version": None,
            "repository_unique_id": None,
        }
    )
    request = SubmissionRequest.metadata_update(update_submission_set(), masked, previous_version="1")
    assert dmp.update(request).ok
    versions = dmp.simulator.store.entries(logical_id=cr.entry_uuid)
    assert [(v.entry.version, v.entry.availability_status) for v in versions] == [
        ("1", AvailabilityStatus.DEPRECATED),
        ("2", AvailabilityStatus.APPROVED),
    ]
    assert filled["cr"].unique_id not in unique_ids(dmp.find(professional=OTHER))
    assert dmp.retrieve(filled["cr"].unique_id).documents[0].content is not None  # still the author's
    assert codes(dmp.update(request)) == ["XDSDuplicateUniqueIdInRegistry"]  # the same submission set again
    stale = SubmissionRequest.metadata_update(update_submission_set(), masked, previous_version="1")
    assert codes(dmp.update(stale)) == ["XDSMetadataVersionError"]
    renamed = masked.model_copy(update={"unique_id": "2.25.77"})
    renamed_request = SubmissionRequest.metadata_update(update_submission_set(), renamed, previous_version="2")
    assert codes(dmp.update(renamed_request)) == ["XDSMetadataUpdateError"]


# ----------------------------------------------------------------------------------------------- TD transactions


def test_td02_reports_existence_state_and_this_professionals_standing(dmp: Dmp) -> None:
    open_dmp = dmp.test_existence(ADRUN)
    assert open_dmp.acknowledgement.accepted and open_dmp.status.active
    assert open_dmp.status.authorisation is td.AuthorisationStatus.NONE and open_dmp.status.attached_to_mes
    assert open_dmp.status.ins == ADRUN.ins
    none = dmp.test_existence(NO_DMP)
    assert none.acknowledgement.accepted and not none.status.exists
    closed = dmp.test_existence(CLOSED)
    assert closed.status.state is td.DmpState.CLOSED and closed.status.closure is not None
    assert closed.status.closure.date == dt.date(2024, 6, 1)
    treating = dmp.test_existence(PAT_TROIS, professional=DUPONT)
    assert treating.status.authorisation is td.AuthorisationStatus.VALID and treating.status.treating_doctor
    blocked = dmp.test_existence(PAT_TROIS, professional=CHARLES)
    assert blocked.status.authorisation is td.AuthorisationStatus.FORBIDDEN
    assert dmp.test_existence(ADRUN, action="urn:hl7-org:v3:PRPA_IN201308UV02").status.active


def test_td02_names_the_vihf_patient(dmp: Dmp) -> None:
    query = td.PatientQuery(ins=ADRUN.ins, query_id="q")
    body = td.build_patient_query_request(query, dmp.header())
    fault = fault_of(lambda: dmp.call("patients", td.TdAction.PATIENT_QUERY.value, body, patient=PAT_TROIS.ins))
    assert "resource-id" in fault.reason
    fault = fault_of(lambda: dmp.call("patients", td.TdAction.PATIENT_QUERY.value, body))
    assert "resource-id" in fault.reason


def test_the_administrative_data_read_needs_access(dmp: Dmp) -> None:
    refused = dmp.test_existence(OPPOSED, reason=td.QueryReason.ADMINISTRATIVE_DATA)
    assert not refused.acknowledgement.accepted and refused.acknowledgement.codes == (DmpErrorCode.ACCESS_DENIED,)
    assert dmp.authorise(OPPOSED).ok
    read = dmp.test_existence(OPPOSED, reason=td.QueryReason.ADMINISTRATIVE_DATA)
    assert read.administrative is not None
    assert read.administrative.oppositions == td.Oppositions(bris_de_glace=True, centre_15=True)
    assert read.administrative.birth_name == "ADRTROIS"


def test_td03_treating_doctor_is_unique_and_listed(dmp: Dmp) -> None:
    assert dmp.authorise(PAT_TROIS, treating=True).ok
    assert not dmp.test_existence(PAT_TROIS, professional=DUPONT).status.treating_doctor
    assert dmp.test_existence(PAT_TROIS).status.treating_doctor

    def listed(mode: str) -> set[tuple[str, str | None]]:
        body = td.build_list_authorisations_request(mode=mode)
        message = dmp.call("habilitations", td.TdAction.LIST_AUTHORIZATIONS.value, body, patient=PAT_TROIS.ins)
        status, professionals = td.parse_list_authorisations_response(message.payload)
        assert status.ok and all(p.treating_doctor is None for p in professionals)  # not in the public rows
        return {(p.national_id, p.family_name) for p in professionals}

    assert listed("TOUTE") == {("899700000001", "SANDBOX"), ("810001234567", "DUPONT"), ("810002422979", "CHARLES")}
    assert listed("ACTIVE") == {("899700000001", "SANDBOX"), ("810001234567", "DUPONT")}
    assert listed("INTERDITE") == {("810002422979", "CHARLES")}
    for patient, code in ((NO_DMP, DmpErrorCode.DMP_NOT_FOUND), (CLOSED, DmpErrorCode.DMP_CLOSED)):
        assert dmp.authorise(patient).status == code
    refused = dmp.call(
        "habilitations",
        td.TdAction.LIST_AUTHORIZATIONS.value,
        td.build_list_authorisations_request(),
        patient=ADRUN.ins,
    )
    status, professionals = td.parse_list_authorisations_response(refused.payload)
    assert status.status == DmpErrorCode.ACCESS_DENIED and professionals == ()


def test_td04_recent_dmps(dmp: Dmp) -> None:
    since = dt.date.today() - dt.timedelta(days=1)

    def recent(kind: td.RecentDmpKind, professional: Professional = SANDBOX) -> list[tuple[str | None, str]]:
        body = td.build_patient_list_request(since, kind)
        message = dmp.call("patientsSpecific", td.TdAction.PATIENT_LIST.value, body, professional=professional)
        status, patients = td.parse_patient_list_response(message.payload)
        assert status.ok and status.status == "DMPOk"  # the spelling the kit compares
        assert all(p.ins is None for p in patients)  # the public rows name no INS
        return [(p.family_name, str(p.birth_date)) for p in patients]

    assert recent(td.RecentDmpKind.LAST_AUTHORISATION) == []
    assert dmp.authorise(ADRUN).ok
    assert dmp.deposit([Doc(pdf("x"), patient=OPPOSED.cx)], patient=OPPOSED).ok
    adrun = (ADRUN.traits.birth_name, str(ADRUN.traits.birth_date))
    assert recent(td.RecentDmpKind.LAST_AUTHORISATION) == [adrun]
    assert recent(td.RecentDmpKind.LAST_DOCUMENT) == [(OPPOSED.traits.birth_name, str(OPPOSED.traits.birth_date))]
    assert recent(td.RecentDmpKind.LAST_DOCUMENT, DUPONT) == []


def test_td05_patient_search(dmp: Dmp) -> None:
    def search(**criteria: Any) -> list[str]:
        body = td.build_find_candidates_request(td.PatientSearch(**criteria), dmp.header())
        message = dmp.call("patientsPDQ", td.TdAction.FIND_CANDIDATES.value, body)
        acknowledgement, candidates = td.parse_find_candidates_response(message.payload)
        assert acknowledgement.accepted
        return sorted(c.ins.matricule for c in candidates if c.ins is not None)

    assert search(family_name="adrtrois") == [OPPOSED.ins.matricule]  # the closed DMP is not listed
    assert search(family_name="Adrun", given_name="Zoé", sex=Sex.F) == [ADRUN.ins.matricule]
    assert search(birth_date=BirthDate.parse("1975-12-31")) == [ADRUN.ins.matricule]
    assert search(family_name="ADRDEUX") == []  # no DMP
    assert (
        search(given_name="DOMINIQUE", max_results=1) == [OPPOSED.ins.matricule]
        or len(search(given_name="DOMINIQUE")) == 2
    )


def test_td1_create_close_reactivate_and_update(dmp: Dmp) -> None:
    create = td.RegistrationRequest(
        kind=td.RegistrationKind.CREATE, ins=NO_DMP.ins, data=admin_data(NO_DMP), consent=True
    )
    created = dmp.register(create)
    assert created.acknowledgement.accepted and created.interaction == "PRPA_IN201312UV02"
    assert dmp.test_existence(NO_DMP).status.authorisation is td.AuthorisationStatus.VALID  # the creator [I]
    again = dmp.register(create)
    assert again.interaction == "PRPA_IN201313UV02" and again.acknowledgement.codes == ("DMPFound",)
    assert dmp.deposit([Doc(pdf("first"), patient=NO_DMP.cx)], patient=NO_DMP).ok

    close = td.RegistrationRequest(
        kind=td.RegistrationKind.CLOSE,
        ins=NO_DMP.ins,
        closure=td.Closure(reason=td.ClosureReason.PATIENT_REQUEST, text="à sa demande"),
    )
    assert dmp.register(close).interaction == "PRPA_IN201315UV02"
    assert codes(dmp.deposit([Doc(pdf("late"), patient=NO_DMP.cx)], patient=NO_DMP)) == ["DMPClosed"]
    status = dmp.test_existence(NO_DMP).status
    assert status.state is td.DmpState.CLOSED and status.closure is not None
    assert status.closure.reason is td.ClosureReason.PATIENT_REQUEST and status.closure.text == "à sa demande"
    assert dmp.register(close).acknowledgement.codes == ("DMPClosed",)
    assert dmp.register(create).acknowledgement.codes == ("DMPClosed",)

    reactivate = td.RegistrationRequest(kind=td.RegistrationKind.REACTIVATE, ins=NO_DMP.ins, consent=True)
    assert dmp.register(reactivate).acknowledgement.accepted
    assert dmp.register(reactivate).acknowledgement.codes == ("DMPFound",)
    assert dmp.test_existence(NO_DMP).status.active

    opposed = admin_data(NO_DMP, email="patient@example.org", oppositions=td.Oppositions(bris_de_glace=True))
    update = td.RegistrationRequest(kind=td.RegistrationKind.UPDATE, ins=NO_DMP.ins, data=opposed)
    assert dmp.register(update).acknowledgement.accepted
    refused = dmp.find(NO_DMP, professional=DUPONT, access=AccessMode.BRIS_DE_GLACE)
    assert codes(refused.response) == [DmpErrorCode.PATIENT_OPPOSITION]
    stored = dmp.simulator.store.patient(NO_DMP.cx)
    assert stored is not None and stored.email == "patient@example.org" and stored.traits.birth_place == "63220"
    not_authorised = dmp.register(update, professional=DUPONT)
    assert not_authorised.acknowledgement.codes == (DmpErrorCode.ACCESS_DENIED,)
    unknown = INS.parse("1 84 12 75 111 222 52", oid="1.2.250.1.213.1.4.8")
    assert dmp.register(reactivate.model_copy(update={"ins": unknown})).acknowledgement.codes == ("DMPNotFound",)


def test_td1_creates_a_dmp_for_a_patient_the_sandbox_did_not_know(dmp: Dmp) -> None:
    ins = INS.parse("1 84 12 75 111 222 52", oid="1.2.250.1.213.1.4.8")
    data = td.AdministrativeData(
        ins=ins, birth_name="NOUVEAU", given_names="Paul Louis", sex=Sex.M, birth_date=BirthDate.parse("1984-12-01")
    )
    assert dmp.register(
        td.RegistrationRequest(kind=td.RegistrationKind.CREATE, ins=ins, data=data, consent=True)
    ).acknowledgement.accepted
    stored = dmp.simulator.store.patient(ins)
    assert stored is not None and stored.traits.birth_first_names == ("PAUL", "LOUIS")


# ----------------------------------------------------------------------------------------------- schemas


def test_the_simulators_xds_answers_validate_against_the_schemas(pki_files: PkiFiles) -> None:
    answers: list[HttpResponse] = []
    simulator = DmpSimulator(trusted=[pki_files.pki.ca.certificate])

    def recording(request: HttpRequest) -> HttpResponse:
        answer = simulator(request)
        answers.append(answer)
        return answer

    dmp = Dmp(pki_files.pki, simulator, handler=recording)
    doc = Doc(pdf("schema"))
    assert dmp.deposit([doc]).ok
    assert codes(dmp.deposit([doc])) == ["XDSDuplicateUniqueIdInRegistry"]
    assert dmp.authorise(ADRUN).ok
    found = dmp.find()
    dmp.find(return_type=ReturnType.OBJECT_REF)
    dmp.query(StoredQuery(query_id=StoredQueryId.GET_ALL))
    dmp.retrieve(doc.unique_id, "2.25.1")
    dmp.retrieve("2.25.1")
    dmp.status_update(found.documents[0], AvailabilityStatus.ARCHIVED)

    checked = 0
    for answer in answers:
        body = bytes(answer.body)  # type: ignore[arg-type]
        content_type = answer.headers["Content-Type"]
        if content_type.startswith("multipart/related"):
            parts = decode_mtom(content_type, body)
            payload = parse_envelope(parts.root, attachments=parts.attachments).payload
        else:
            payload = parse_envelope(body).payload
        if etree.QName(payload).namespace == td.HABILITATIONS_NS:
            continue
        if etree.QName(payload).namespace == XDSB:
            schemas().assert_xdsb_valid(payload)
        elif etree.QName(payload).localname == "AdhocQueryResponse":
            schemas().assert_valid(schemas().query, payload)
        else:
            schemas().assert_valid(schemas().xdsb, payload)  # rs:RegistryResponse, imported by IHEXDSB.xsd
        checked += 1
    assert checked == 8
