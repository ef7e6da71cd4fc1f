"""Signature wrapping, forged and replayed assertions: what ``tests/signature`` does not already try.

``tests/signature/test_vihf.py`` and ``test_xades.py`` cover the classic wrapping shapes (a
forged assertion over the signed one, a moved or second signature, a forged manifest first in
document order, a moved or second manifest, retargeted properties), tampering byte by byte,
untrusted and expired certificates and the assertion's own dates. Here:

* comment and whitespace tricks: a comment splitting a signed value must not change what is
  read (the SAML "comment truncation" attack), whitespace and comments added where the
  canonical form keeps them must break the digest;
* references that point away from the signed element: ``URI=""``, an XPointer, a decoy with
  the same ID elsewhere in the SOAP envelope, a second copy of the assertion in the body;
* altered, added and removed attributes of a VIHF;
* a VIHF without ``Conditions`` replayed after an hour (refused by default since this suite);
* a forged or stale VIHF end to end: the DMP simulator refuses it and the DMP client raises a
  typed error.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography import x509
from lxml import etree

from dmp_connector.config import CertificateFiles, SigningSettings
from dmp_connector.dmp.client import DmpClient
from dmp_connector.errors import DmpConnectorError, SignatureVerificationError
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.pytest_plugin import SandboxPki
from dmp_connector.sandbox import DEFAULT_DMP_PATIENTS, DmpSimulator, TestPki, as_transport
from dmp_connector.signature import FileSigner, VihfRequest, build_vihf, verify_vihf
from dmp_connector.signature.vihf import UNBOUNDED_VIHF_MAX_AGE
from dmp_connector.signature.xades import SubmittedDocument, sign_submission_set, verify_submission_set_signature
from dmp_connector.soap.envelope import Addressing, AssertionSecurity, build_envelope
from dmp_connector.xml import parse_xml, to_bytes
from tests.signature.test_vihf import INS_CX, make_settings

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"saml": SAML, "ds": DS}
PATIENT = Identity(traits=DEFAULT_DMP_PATIENTS[0].traits, ins=DEFAULT_DMP_PATIENTS[0].ins, status=IdentityStatus.QUAL)


@dataclass(frozen=True)
class Keys:
    pki: TestPki
    signer: FileSigner
    stranger: FileSigner

    @property
    def trusted(self) -> list[x509.Certificate]:
        return [self.pki.ca.certificate]


@pytest.fixture(scope="module")
def keys() -> Keys:
    pki = TestPki.create(name="security suite CA")
    sign = pki.issue_organisation_sign(organisation="CABINET TEST", structure_id="1123456789")
    other = TestPki.create(name="attacker CA").issue_organisation_sign(organisation="CABINET TEST", structure_id="1")
    return Keys(pki, FileSigner([sign.certificate], sign.key), FileSigner([other.certificate], other.key))


def vihf_bytes(keys: Keys) -> bytes:
    return to_bytes(build_vihf(make_settings(), keys.signer, VihfRequest(patient_resource_id=INS_CX)))


def refused(reason: str, data: bytes | etree._Element, keys: Keys, **kwargs: object) -> SignatureVerificationError:
    with pytest.raises(SignatureVerificationError) as info:
        verify_vihf(data, trusted=keys.trusted, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason == reason, str(info.value)
    return info.value


# --------------------------------------------------------------------------- VIHF: comments and whitespace


def test_a_comment_splitting_a_signed_value_does_not_truncate_it(keys: Keys) -> None:
    data = vihf_bytes(keys)
    name_id = re.search(rb"(<NameID[^>]*>)([^<]*)(<)", data)
    assert name_id is not None
    value = name_id.group(2)
    split = data.replace(name_id.group(0), name_id.group(1) + value[:4] + b"<!-- -->" + value[4:] + b"<", 1)
    split = split.replace(b">279035121518989^^^", b">2790351<!--x-->21518989^^^", 1)
    assert split != data
    claims = verify_vihf(split, trusted=keys.trusted)  # comments are outside exclusive c14n: still valid
    # …and what is read is the whole signed value, not the text before the comment.
    assert claims.subject_name_id == value.decode()
    assert claims.patient_resource_id == INS_CX


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b">279035121518989^^^", b"> 279035121518989^^^"),  # whitespace inside a signed value
        (b"</NameID>", b" </NameID>"),
        (b"<Subject>", b"<Subject>\n"),  # whitespace between elements
    ],
)
def test_whitespace_the_canonical_form_keeps_breaks_the_digest(keys: Keys, old: bytes, new: bytes) -> None:
    data = vihf_bytes(keys)
    assert old in data
    refused("digest_mismatch", data.replace(old, new, 1), keys)


def test_an_altered_added_or_removed_attribute_breaks_the_digest(keys: Keys) -> None:
    data = vihf_bytes(keys)
    another_patient = data.replace(b">279035121518989^^^", b">180000000000000^^^", 1)
    refused("digest_mismatch", another_patient, keys)
    root = parse_xml(data)
    statement = root.find("saml:AttributeStatement", NS)
    assert statement is not None
    role = next(a for a in statement if a.get("Name") == "urn:oasis:names:tc:xacml:2.0:subject:role")
    statement.append(copy.deepcopy(role))
    refused("digest_mismatch", root, keys)
    root = parse_xml(data)
    statement = root.find("saml:AttributeStatement", NS)
    assert statement is not None
    statement.remove(next(a for a in statement if a.get("Name") == "urn:oasis:names:tc:xacml:2.0:resource:resource-id"))
    refused("digest_mismatch", root, keys)


# --------------------------------------------------------------------------- VIHF: references away from the assertion


@pytest.mark.parametrize("uri", ["", "#xpointer(/)", "#xpointer(id('X'))", "#_decoy"])
def test_a_reference_that_does_not_name_the_assertion_is_wrapping(keys: Keys, uri: str) -> None:
    root = parse_xml(vihf_bytes(keys))
    reference = root.find("ds:Signature/ds:SignedInfo/ds:Reference", NS)
    assert reference is not None
    reference.set("URI", uri)
    refused("wrapping", root, keys)


def envelope_with(assertion: etree._Element, *body: etree._Element) -> etree._Element:
    return build_envelope(
        list(body) or [etree.Element("{urn:x}Ping")],
        addressing=Addressing(action="urn:a", to="urn:b"),
        security=AssertionSecurity(assertion),
    )


def test_a_decoy_with_the_assertion_id_elsewhere_in_the_envelope_is_wrapping(keys: Keys) -> None:
    assertion = parse_xml(vihf_bytes(keys))
    assert verify_vihf(envelope_with(assertion), trusted=keys.trusted)
    decoy = etree.Element(
        "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd}Timestamp"
    )
    decoy.set(
        "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd}Id",
        assertion.get("ID") or "",
    )
    refused("wrapping", envelope_with(assertion, decoy), keys)


def test_a_second_copy_of_the_assertion_in_the_body_is_wrapping(keys: Keys) -> None:
    assertion = parse_xml(vihf_bytes(keys))
    forged = copy.deepcopy(assertion)
    for value in forged.iterfind(".//saml:AttributeValue", NS):
        if value.text == INS_CX:
            value.text = "180000000000000^^^&1.2.250.1.213.1.4.10&ISO^NH"
    refused("wrapping", envelope_with(assertion, forged), keys)


def test_a_forged_assertion_signed_by_another_ca_is_untrusted(keys: Keys) -> None:
    forged = to_bytes(build_vihf(make_settings(), keys.stranger, VihfRequest(patient_resource_id=INS_CX)))
    refused("untrusted_certificate", forged, keys)


# --------------------------------------------------------------------------- VIHF: replay


def test_an_assertion_without_conditions_is_not_valid_forever(keys: Keys) -> None:
    data = vihf_bytes(keys)
    assert b"<Conditions" not in data  # the default: no validity window
    # Times from the signed IssueInstant, not from the module's import: the suite may reach this test minutes later.
    issued = verify_vihf(data, trusted=keys.trusted).issue_instant
    assert verify_vihf(data, trusted=keys.trusted, now=issued + dt.timedelta(minutes=30))
    error = refused("expired_assertion", data, keys, now=issued + UNBOUNDED_VIHF_MAX_AGE + dt.timedelta(minutes=10))
    assert "older than" in error.message
    # An explicit bound still wins, either way.
    assert verify_vihf(data, trusted=keys.trusted, now=issued + dt.timedelta(hours=3), max_age=dt.timedelta(hours=4))


def test_an_assertion_with_a_window_is_held_to_it_not_to_the_default(keys: Keys) -> None:
    bounded = to_bytes(
        build_vihf(make_settings(vihf_validity_seconds=4 * 3600), keys.signer, VihfRequest(patient_resource_id=INS_CX))
    )
    issued = verify_vihf(bounded, trusted=keys.trusted).issue_instant
    assert verify_vihf(bounded, trusted=keys.trusted, now=issued + dt.timedelta(hours=3))
    refused("expired_assertion", bounded, keys, now=issued + dt.timedelta(hours=5))


# --------------------------------------------------------------------------- end to end: the DMP refuses it


def dmp_client(dmpc_settings: object, simulator: DmpSimulator, **signing: object) -> Iterator[DmpClient]:
    settings = dmpc_settings.model_copy(update=signing)  # type: ignore[attr-defined]
    with httpx.Client(transport=as_transport(simulator)) as http, DmpClient(settings, http_client=http) as client:
        yield client


def fault_text(error: BaseException) -> str:
    """The SOAP fault's reason, where the simulated DMP says why it refused the VIHF."""
    texts = [str(error), str(getattr(error, "text", "") or "")]
    cause = error.__cause__
    texts.append(str(getattr(cause, "reason", "") or ""))
    return " ".join(texts)


def test_the_dmp_refuses_a_vihf_from_another_ca(dmpc_settings: object, dmpc_pki: SandboxPki, tmp_path: object) -> None:
    stranger = TestPki.create(name="attacker CA").issue_organisation_sign(
        organisation="CABINET SANDBOX", structure_id="1123456789"
    )
    directory = dmpc_pki.files.directory / "stranger"
    cert, key = stranger.write_pem(directory, "sign")
    signing = SigningSettings(credentials=CertificateFiles(cert_file=cert, key_file=key))
    simulator = DmpSimulator(trusted=[dmpc_pki.ca_certificate], require_client_certificate=False)
    for client in dmp_client(dmpc_settings, simulator, signing=signing):
        with pytest.raises(DmpConnectorError) as info:
            client.test_existence(PATIENT)
        assert "untrusted_certificate" in fault_text(info.value)


def test_the_dmp_refuses_a_stale_vihf(dmpc_settings: object, dmpc_pki: SandboxPki) -> None:
    later = DmpSimulator(
        trusted=[dmpc_pki.ca_certificate],
        require_client_certificate=False,
        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
    )
    for client in dmp_client(dmpc_settings, later):
        with pytest.raises(DmpConnectorError) as info:
            client.test_existence(PATIENT)
        assert "expired_assertion" in fault_text(info.value)
    now = DmpSimulator(trusted=[dmpc_pki.ca_certificate], require_client_certificate=False)
    for client in dmp_client(dmpc_settings, now):
        assert client.test_existence(PATIENT).exists


# --------------------------------------------------------------------------- submission-set signature


CDA_ID, PDF_ID, SUBMISSION_SET = "1.2.250.1.999.8.2", "1.2.250.1.999.8.3", "1.2.250.1.999.8.1"
CDA = b'<ClinicalDocument xmlns="urn:hl7-org:v3"><!-- signed --><id root="1.2.250.1.999.8.2"/></ClinicalDocument>'
PDF = b"%PDF-1.4\n%%EOF\n"
DOCUMENTS = {CDA_ID: CDA, PDF_ID: PDF}


def signed(keys: Keys) -> bytes:
    return sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=[
            SubmittedDocument(unique_id=CDA_ID, content=CDA, is_cda=True),
            SubmittedDocument(unique_id=PDF_ID, content=PDF, is_cda=False),
        ],
        signer=keys.signer,
        unique_id="1.2.250.1.999.8.4",
    ).xml


def xades_refused(reason: str, xml: bytes, keys: Keys) -> SignatureVerificationError:
    with pytest.raises(SignatureVerificationError) as info:
        verify_submission_set_signature(
            xml, documents=DOCUMENTS, submission_set_unique_id=SUBMISSION_SET, trusted=keys.trusted
        )
    assert info.value.reason == reason, str(info.value)
    return info.value


def test_the_untouched_submission_set_signature_verifies(keys: Keys) -> None:
    verified = verify_submission_set_signature(
        signed(keys), documents=DOCUMENTS, submission_set_unique_id=SUBMISSION_SET, trusted=keys.trusted
    )
    assert verified.document_unique_ids == (CDA_ID, PDF_ID)


@pytest.mark.parametrize(
    ("anchor", "insert"),
    [
        (b"<ds:SignatureMethod", b"<!-- SignedInfo is canonicalised with comments -->"),
        (b"<ds:SignatureMethod", b"\n"),
        (b"</ds:Manifest>", b"\n  "),
        (b"</xades:SignedSignatureProperties>", b" "),
    ],
)
def test_comments_and_whitespace_in_signed_parts_break_the_signature(keys: Keys, anchor: bytes, insert: bytes) -> None:
    xml = signed(keys)
    assert anchor in xml
    xades_refused("bad_signature", xml.replace(anchor, insert + anchor, 1), keys)


def verified(xml: bytes, keys: Keys) -> object:
    return verify_submission_set_signature(
        xml, documents=DOCUMENTS, submission_set_unique_id=SUBMISSION_SET, trusted=keys.trusted
    )


def split_text(xml: bytes, tag: bytes, at: int, *, after: bytes = b"<ds:Object") -> bytes:
    """A comment slipped into the first ``tag`` value after ``after`` (outside SignedInfo, which keeps comments)."""
    start = xml.index(after)
    match = re.compile(rb"(<" + tag + rb"[^>]*>)([^<]*)(</" + tag + rb">)").search(xml, start)
    assert match is not None, tag
    text = match.group(2)
    forged = match.group(1) + text[:at] + b"<!---->" + text[at:] + match.group(3)
    return xml[: match.start()] + forged + xml[match.end() :]


def test_a_comment_in_a_signed_value_is_read_around_not_cut_at(keys: Keys) -> None:
    # The manifest and the signed properties are canonicalised without comments: a comment slipped
    # into one of their values keeps the signature valid, so the verifier must read the whole value.
    xml = signed(keys)
    original = verified(xml, keys)
    for tag, at in ((b"xades:SigningTime", 10), (b"ds:X509SerialNumber", 3), (b"ds:DigestValue", 8)):
        forged = split_text(xml, tag, at)
        assert forged != xml
        again = verified(forged, keys)
        assert again == original, tag  # before the fix the SigningTime read as midnight


@pytest.mark.parametrize("uri", ["", "#xpointer(/)", "#xpointer(id('IHEManifest'))", "#decoy"])
def test_a_signed_info_reference_away_from_the_manifest_is_wrapping(keys: Keys, uri: str) -> None:
    root = parse_xml(signed(keys))
    reference = root.find("ds:SignedInfo/ds:Reference", {"ds": DS})
    assert reference is not None
    reference.set("URI", uri)
    xades_refused("wrapping", to_bytes(root), keys)


def test_the_signature_wrapped_in_another_document_is_refused(keys: Keys) -> None:
    xml = signed(keys).split(b"?>", 1)[-1]
    xades_refused("malformed", b"<Wrapper>" + xml + b"</Wrapper>", keys)


def test_a_manifest_resigned_by_another_ca_is_untrusted(keys: Keys) -> None:
    forged = sign_submission_set(
        submission_set_unique_id=SUBMISSION_SET,
        documents=[
            SubmittedDocument(unique_id=CDA_ID, content=CDA, is_cda=True),
            SubmittedDocument(unique_id=PDF_ID, content=PDF, is_cda=False),
        ],
        signer=keys.stranger,
        unique_id="1.2.250.1.999.8.4",
    ).xml
    xades_refused("untrusted_certificate", forged, keys)


# --------------------------------------------------------------------------- what verification logs


def test_verifying_logs_no_identity_even_at_debug(keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    # signxml logs the canonical form of what it verifies at DEBUG: the VIHF carries the patient's INS.
    with caplog.at_level(logging.DEBUG):
        verify_vihf(vihf_bytes(keys), trusted=keys.trusted)
    assert "279035121518989" not in caplog.text
    assert "AttributeValue" not in caplog.text
