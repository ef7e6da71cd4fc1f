"""The signing shortcuts of issue 22 against what they replace, and the per-certificate facts kept between calls.

* the VIHF written as its canonical text (``_VihfText.render`` + ``_sign_rendered``) against the
  tree builder it replaces (``_build_tree``, still the path of every input the text path does not
  take): same bytes, same errors, with awkward values everywhere a value goes;
* ``VihfSecurity.apply`` moves a fresh assertion into the envelope and copies only the cached one;
* ``keys.certificate_memo``: per certificate object, never another certificate's value, the dates
  still checked at each signature, nothing kept from a failure, safe across threads.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from dmp_connector.codes import Code
from dmp_connector.config import (
    Organisation,
    Professional,
    Settings,
    SigningSettings,
    SoftwareIdentity,
    StructureIdKind,
)
from dmp_connector.errors import ConfigurationError
from dmp_connector.sandbox import IssuedCertificate, TestPki
from dmp_connector.signature import FileSigner, VihfRequest, VihfSecurity, build_vihf, check_signer
from dmp_connector.signature import _xmldsig as xmldsig
from dmp_connector.signature import keys as keys_mod
from dmp_connector.signature import vihf as vihf_mod
from dmp_connector.signature import xades as xades_mod
from dmp_connector.signature.keys import certificate_dn, certificate_memo, check_signing_certificate
from dmp_connector.signature.signer import DigestAlgorithm
from dmp_connector.signature.vihf import (
    VIHF_ATTRIBUTES,
    AccessMode,
    AuthenticationMode,
    Automaton,
    CodedValue,
    VihfAttribute,
    verify_vihf,
)
from dmp_connector.xml import to_bytes
from tests.conftest import PkiFiles

NOW = dt.datetime.now(dt.UTC).replace(microsecond=123456)
INS_CX = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
TRE_G15 = "1.2.250.1.71.1.2.7"
AWKWARD = (
    "a & b",
    "<x>",
    '"quoted"',
    "it's",
    "tab\there",
    "line\nbreak",
    "cr\rhere",
    "crlf\r\nend",
    "]]>",
    "é ü ß Œ",
    "emoji 😀",
    "  padded  ",
    "&amp; already",
    "\u00a0nbsp",
    "x" * 300,
)


def settings_with(name: str = "MARTIN", **signing: Any) -> Settings:
    return Settings(
        software=SoftwareIdentity(
            name=f"LPS {name}", version="2.1.0", editor="Editeur", dmp_homologation_id="HOMOL-42", instance_id="1.2.3"
        ),
        organisation=Organisation(
            id="123456789",
            id_kind=StructureIdKind.FINESS,
            name=f"CABINET {name}",
            activity_sector=Code(code="SA07", code_system="1.2.250.1.71.4.2.4"),
        ),
        professional=Professional(
            id="99700000001",
            family_name=name,
            given_name="Luc",
            profession=Code(code="10", code_system=TRE_G15, display_name=f"Médecin {name}"),
            specialty=Code(code="SM26", code_system="1.2.250.1.71.4.2.5", display_name="Qualifié"),
        ),
        signing=SigningSettings(**signing),
    )


@pytest.fixture(scope="module")
def sign(pki_files: PkiFiles) -> IssuedCertificate:
    return pki_files.pki.issue_organisation_sign(organisation='CABINET <A&B> "é"', structure_id="1123456789")


@pytest.fixture(scope="module")
def signer(sign: IssuedCertificate) -> FileSigner:
    return FileSigner([sign.certificate], sign.key)


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=42))


@pytest.fixture
def text_path_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = vihf_mod._sign_rendered

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(vihf_mod, "_sign_rendered", counted)
    return calls


def both_paths(monkeypatch: pytest.MonkeyPatch, build: Callable[[], etree._Element]) -> tuple[bytes, bytes]:
    """The assertion's bytes by the text path, then by the tree path (the text path switched off)."""
    fast = to_bytes(build())
    with monkeypatch.context() as patch:
        patch.setattr(vihf_mod._VihfText, "render", lambda self: None)
        reference = to_bytes(build())
    return fast, reference


def outcome(build: Callable[[], etree._Element]) -> tuple[str, str]:
    try:
        return "ok", to_bytes(build()).decode()
    except Exception as exc:
        return type(exc).__name__, str(exc)


def awkward_table(value: str) -> list[VihfAttribute]:
    """The reference table, plus attributes that carry ``value`` in every place a value can go."""
    coded = CodedValue("Role", f"c{value}", f"s{value}", f"d{value}", f"n{value}")
    bare = CodedValue("PurposeOfUse", value, value)
    return [
        *VIHF_ATTRIBUTES,
        VihfAttribute(f"name {value}", lambda ctx: [value, f"second {value}"]),
        VihfAttribute("coded", lambda ctx: [coded, bare, value]),
    ]


@pytest.mark.parametrize("value", AWKWARD)
def test_the_text_path_writes_the_bytes_of_the_tree_builder(
    value: str, signer: FileSigner, monkeypatch: pytest.MonkeyPatch, fixed_ids: None, text_path_calls: list[int]
) -> None:
    request = VihfRequest(
        patient_resource_id=INS_CX,
        access_mode=AccessMode.BRIS_DE_GLACE,
        access_reason=f"urgence {value}",
        authentication_mode=AuthenticationMode.INDIRECTE_RENFORCEE,
        authn_context_class=f"urn:ctx:{value}",
        authn_instant=NOW - dt.timedelta(minutes=3),
        subject_service=f"SAU {value}",
        confidentiality_code=Code(code="N", code_system="2.16.840.1.113883.5.25", display_name=f"Normal {value}"),
    )
    settings = settings_with(f"NOM {value}", vihf_validity_seconds=600, vihf_attribute_overrides={"Extra": value})

    def build() -> etree._Element:
        return build_vihf(settings, signer, request, attributes=awkward_table(value), now=NOW)

    fast, reference = both_paths(monkeypatch, build)
    assert len(text_path_calls) == 1  # the text path did write the first one
    assert fast == reference
    verify_vihf(fast, trusted=[signer.certificate_chain()[0]], now=NOW, mandatory=())


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "rsa-sha1"])
@pytest.mark.parametrize(
    "request_fields",
    [
        {},
        {"patient_resource_id": INS_CX},
        {"access_mode": AccessMode.CENTRE_15, "confidentiality_code": "SECRET"},
        {"automaton": Automaton(responsible_id="810001234567", model="Robot", service="Nuit")},
        {"authentication_mode": AuthenticationMode.DIRECTE},
    ],
)
def test_every_shape_of_request_by_both_paths(
    request_fields: dict[str, Any],
    algorithm: str,
    signer: FileSigner,
    monkeypatch: pytest.MonkeyPatch,
    fixed_ids: None,
    text_path_calls: list[int],
) -> None:
    digest = "sha256" if algorithm == "rsa-sha256" else "sha1"
    settings = settings_with(signature_algorithm=algorithm, digest_algorithm=digest)
    fast, reference = both_paths(
        monkeypatch, lambda: build_vihf(settings, signer, VihfRequest(**request_fields), now=NOW)
    )
    assert text_path_calls == [1]
    assert fast == reference


@pytest.mark.parametrize(
    "values",
    [
        ["control \x01 character"],  # lxml refuses it when the tree is built
        ["non-character \uffff"],  # lxml takes it, its parser refuses it when canonicalising
        [CodedValue("not a name", "c", "s")],  # no element of that name
        [CodedValue("Role", 10, "s")],  # type: ignore[arg-type]  # a code that is no text
        [42],  # neither text nor a coded value
    ],
)
def test_what_the_text_path_does_not_take_is_decided_by_the_tree_builder(
    values: list[Any], signer: FileSigner, monkeypatch: pytest.MonkeyPatch, fixed_ids: None, text_path_calls: list[int]
) -> None:
    table = [*VIHF_ATTRIBUTES, VihfAttribute("Odd", lambda ctx: values)]
    settings = settings_with()

    def build() -> etree._Element:
        return build_vihf(settings, signer, VihfRequest(patient_resource_id=INS_CX), attributes=table, now=NOW)

    fast = outcome(build)
    with monkeypatch.context() as patch:
        patch.setattr(vihf_mod._VihfText, "render", lambda self: None)
        reference = outcome(build)
    assert text_path_calls == []  # the text path never signed it
    assert fast == reference


def test_an_empty_issuer_takes_the_tree_path(
    pki_files: PkiFiles, monkeypatch: pytest.MonkeyPatch, fixed_ids: None, text_path_calls: list[int]
) -> None:
    sign = pki_files.pki.issue_organisation_sign(organisation="CABINET VIDE", structure_id="1123456780")
    signer = FileSigner([sign.certificate], sign.key)
    monkeypatch.setattr(vihf_mod, "certificate_dn", lambda cert: "")  # an empty text: <Issuer></Issuer> in the tree
    fast, reference = both_paths(monkeypatch, lambda: build_vihf(settings_with(), signer, now=NOW))
    assert text_path_calls == []
    assert fast == reference and b"<Issuer Format" in fast and b"></Issuer>" in fast


# --- the WS-Security slot ------------------------------------------------------------------------------------------


def envelope_slot() -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element("{urn:test}Envelope")
    return envelope, etree.SubElement(envelope, "{urn:test}Security")


def test_a_fresh_assertion_moves_into_its_envelope(signer: FileSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    signed: list[Any] = []
    original = vihf_mod._sign

    def keep(*args: Any, **kwargs: Any) -> Any:
        signed.append(original(*args, **kwargs))
        return signed[-1]

    monkeypatch.setattr(vihf_mod, "_sign", keep)
    security = VihfSecurity(settings_with(), signer, clock=lambda: NOW)
    slots = [envelope_slot() for _ in range(2)]
    for envelope, slot in slots:
        security.apply(envelope, slot)
    built = [one.element() for one in signed]
    assert [slot[0] for _, slot in slots] == built  # the very assertions signed, one per envelope
    assert built[0].get("ID") != built[1].get("ID")


def test_the_cached_assertion_is_copied_into_each_envelope(signer: FileSigner) -> None:
    security = VihfSecurity(settings_with(vihf_validity_seconds=300), signer, clock=lambda: NOW)
    cached = security.assertion()
    slots = [envelope_slot() for _ in range(2)]
    for envelope, slot in slots:
        security.apply(envelope, slot)
    first, second = (slot[0] for _, slot in slots)
    assert cached.getparent() is None and security.assertion() is cached  # still whole, still cached
    assert first is not cached and second is not cached and first is not second
    alone = to_bytes(cached, xml_declaration=False)
    assert all(alone in to_bytes(envelope) for envelope, _ in slots)


# --- per-certificate facts -----------------------------------------------------------------------------------------


@pytest.fixture
def empty_memo() -> Iterator[None]:
    saved = dict(keys_mod._MEMOS)
    keys_mod._MEMOS.clear()
    yield
    keys_mod._MEMOS.clear()
    keys_mod._MEMOS.update(saved)


def test_facts_are_per_certificate_object(pki_files: PkiFiles, empty_memo: None) -> None:
    one = pki_files.pki.issue_organisation_sign(organisation="CABINET UN", structure_id="1000000001").certificate
    two = pki_files.pki.issue_organisation_sign(organisation="CABINET DEUX", structure_id="1000000002").certificate
    assert "CABINET UN" in certificate_dn(one) and "CABINET DEUX" in certificate_dn(two)
    assert certificate_dn(one) == one.subject.rfc4514_string(keys_mod._DN_NAMES)
    assert xmldsig.certificate_base64(two) != xmldsig.certificate_base64(one)
    # An equal certificate read again is another object: it gets its own entry, never another's.
    twin = x509.load_pem_x509_certificate(one.public_bytes(serialization.Encoding.PEM))
    seen: list[x509.Certificate] = []

    def record(cert: x509.Certificate) -> str:
        seen.append(cert)
        return "value"

    assert certificate_memo(one, "probe", record) == certificate_memo(one, "probe", record) == "value"
    assert certificate_memo(twin, "probe", record) == "value"
    assert seen == [one, twin] and seen[1] is twin


def test_a_failed_computation_keeps_nothing(pki_files: PkiFiles, empty_memo: None) -> None:
    cert = pki_files.pki.issue_organisation_sign(organisation="CABINET TROIS", structure_id="1000000003").certificate
    attempts: list[int] = []

    def flaky(c: x509.Certificate) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first")
        return len(attempts)

    with pytest.raises(ValueError, match="first"):
        certificate_memo(cert, "flaky", flaky)
    assert certificate_memo(cert, "flaky", flaky) == 2
    assert certificate_memo(cert, "flaky", flaky) == 2 and len(attempts) == 2


def test_the_oldest_certificates_leave_and_come_back_right(pki_files: PkiFiles, empty_memo: None) -> None:
    certs = [
        pki_files.pki.issue_organisation_sign(organisation=f"CABINET {i}", structure_id=f"20000000{i:02d}").certificate
        for i in range(keys_mod._KEPT_CERTIFICATES + 4)
    ]
    for cert in certs:
        certificate_dn(cert)
    assert len(keys_mod._MEMOS) == keys_mod._KEPT_CERTIFICATES
    for i, cert in enumerate(certs):
        assert certificate_dn(cert) == cert.subject.rfc4514_string(keys_mod._DN_NAMES)
        assert f"CABINET {i}," in certificate_dn(cert)


def test_an_expired_certificate_is_refused_once_its_facts_are_kept(pki_files: PkiFiles, empty_memo: None) -> None:
    sign = pki_files.pki.issue_organisation_sign(
        organisation="CABINET COURT", structure_id="1000000004", not_after=NOW + dt.timedelta(hours=1)
    )
    signer = FileSigner([sign.certificate], sign.key)
    assert check_signer(signer, now=NOW) is sign.certificate  # facts kept now
    later = NOW + dt.timedelta(hours=2)
    expected = f"the signature certificate expired on {sign.certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    with pytest.raises(ConfigurationError) as info:
        check_signer(signer, now=later)
    assert info.value.message == expected
    with pytest.raises(ConfigurationError, match="not valid before"):
        check_signing_certificate(sign.certificate, what="the signature certificate", now=NOW - dt.timedelta(days=3))
    with pytest.raises(ConfigurationError, match="expired on"):
        build_vihf(settings_with(), signer, now=later)
    check_signer(signer, now=NOW)  # and valid again at a valid moment


def test_a_certificate_that_may_not_sign_is_still_refused(empty_memo: None) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CHIFFREMENT SEUL")])
    usage = x509.KeyUsage(False, False, True, False, False, False, False, False, False)  # keyEncipherment only
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    for _ in range(2):  # refused when the facts are computed, and when they are read back
        with pytest.raises(ConfigurationError, match="allows neither digitalSignature nor nonRepudiation"):
            check_signing_certificate(cert, what="the signature certificate", now=NOW)
    with pytest.raises(ConfigurationError, match="expired on"):  # the dates come first, as always
        check_signing_certificate(cert, what="the signature certificate", now=NOW + dt.timedelta(days=2))


def test_facts_across_threads(pki_files: PkiFiles, empty_memo: None) -> None:
    certs = [
        pki_files.pki.issue_organisation_sign(organisation=f"CABINET T{i}", structure_id=f"30000000{i:02d}").certificate
        for i in range(keys_mod._KEPT_CERTIFICATES + 8)  # more than kept: entries leave while others read
    ]
    expected = {id(c): (c.subject.rfc4514_string(keys_mod._DN_NAMES), xmldsig._der_base64(c)) for c in certs}
    wrong: list[int] = []
    start = threading.Barrier(6)

    def work(offset: int) -> None:
        start.wait()
        for round_ in range(30):
            cert = certs[(offset * 7 + round_) % len(certs)]
            if (certificate_dn(cert), xmldsig.certificate_base64(cert)) != expected[id(cert)]:
                wrong.append(1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


# --- the submission-set signature written as text ------------------------------------------------------------------

CDA_BYTES = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<?xml-stylesheet type="text/xsl" href="x.xsl"?>\n'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3"><!-- c --><id root="1.2.250.1.999.7.2"/>'
    b"<title>Compte rendu</title></ClinicalDocument>\n"
)
PROFILES = [
    xades_mod.SubmissionSetSignatureProfile(),
    xades_mod.SubmissionSetSignatureProfile.sha1(),
    xades_mod.SubmissionSetSignatureProfile(xades_version=xades_mod.XadesVersion.V1_3_2),
    xades_mod.SubmissionSetSignatureProfile(
        certificate_scope=xades_mod.SigningCertificateScope.CHAIN,
        certificate_digest_algorithm=DigestAlgorithm.SHA1,
        xades_version=xades_mod.XadesVersion.V1_3_2,
    ),
]


def sign_both_ways(
    monkeypatch: pytest.MonkeyPatch, **arguments: Any
) -> tuple[tuple[str, Any], tuple[str, Any], list[int]]:
    """The outcome by the text writer, then by the tree builder (the text writer switched off), and the text writes."""
    written: list[int] = []
    original = xades_mod._text_document

    def counted(parts: Any) -> Any:
        document = original(parts)
        written.append(document is not None)
        return document

    def run() -> tuple[str, Any]:
        try:
            return "ok", xades_mod.sign_submission_set(**arguments)
        except Exception as exc:
            return type(exc).__name__, str(exc)

    with monkeypatch.context() as patch:
        patch.setattr(xades_mod, "_text_document", counted)
        fast = run()
    with monkeypatch.context() as patch:
        patch.setattr(xades_mod, "_text_document", lambda parts: None)
        reference = run()
    return fast, reference, written


@pytest.mark.parametrize("profile", PROFILES, ids=["default", "sha1", "1.3.2", "chain"])
@pytest.mark.parametrize("xml_id", [None, "_1.2.250.1.999.7.3", "sig-é"])
def test_the_submission_set_signature_text_is_the_tree_builders(
    profile: Any, xml_id: str | None, pki_files: PkiFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign = pki_files.pki.issue_organisation_sign(organisation="CABINET XADES", structure_id="1000000006")
    signer = FileSigner([sign.certificate, pki_files.pki.ca.certificate], sign.key)
    documents = [
        xades_mod.SubmittedDocument(unique_id="1.2.250.1.999.7.2", content=CDA_BYTES, is_cda=True),
        xades_mod.SubmittedDocument(unique_id="1.2.250.1.999.7.4", content=b"%PDF-1.4 <&>", is_cda=False),
    ]
    fast, reference, written = sign_both_ways(
        monkeypatch,
        submission_set_unique_id="1.2.250.1.999.7.1",
        documents=documents,
        signer=signer,
        unique_id="1.2.250.1.999.7.3",
        profile=profile,
        signing_time=NOW,
        signature_xml_id=xml_id,
    )
    assert written == [True]
    assert fast[0] == reference[0] == "ok"
    assert fast[1].xml == reference[1].xml
    assert fast[1] == reference[1]
    xades_mod.verify_submission_set_signature(
        fast[1].xml,
        documents={d.unique_id: d.content for d in documents},
        submission_set_unique_id="1.2.250.1.999.7.1",
        trusted=[pki_files.pki.ca.certificate],
        now=NOW,
    )


@pytest.mark.parametrize("xml_id", ['id "quoted"', "a&b", "<x>", "tab\tid", "nl\nid", "cr\rid", "ctl\x01id"])
def test_values_the_text_writer_leaves_to_the_tree_builder(
    xml_id: str, pki_files: PkiFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign = pki_files.pki.issue_organisation_sign(organisation="CABINET XADES", structure_id="1000000006")
    fast, reference, written = sign_both_ways(
        monkeypatch,
        submission_set_unique_id="1.2.250.1.999.7.1",
        documents=[xades_mod.SubmittedDocument(unique_id="1.2.250.1.999.7.2", content=CDA_BYTES, is_cda=True)],
        signer=FileSigner([sign.certificate], sign.key),
        unique_id="1.2.250.1.999.7.3",
        signing_time=NOW,
        signature_xml_id=xml_id,
    )
    assert written == [False]
    assert fast == reference


def test_an_issuer_name_to_escape_goes_to_the_tree_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    ca = TestPki.create(name='CA <Santé> & "Co"')
    sign = ca.issue_organisation_sign(organisation="CABINET XADES", structure_id="1000000006")
    fast, reference, written = sign_both_ways(
        monkeypatch,
        submission_set_unique_id="1.2.250.1.999.7.1",
        documents=[xades_mod.SubmittedDocument(unique_id="1.2.250.1.999.7.2", content=CDA_BYTES, is_cda=True)],
        signer=FileSigner([sign.certificate], sign.key),
        unique_id="1.2.250.1.999.7.3",
        signing_time=NOW,
    )
    assert written == [False]
    assert fast[0] == "ok" and fast[1].xml == reference[1].xml and b"&amp;" in fast[1].xml
