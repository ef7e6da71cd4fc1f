"""The verification side's shortcuts (issue 22), each against the code it replaces.

- ``vihf._same_id_elements`` (one XPath comparing attribute values, names checked in Python)
  against the former XPath ``vihf._SAME_ID`` (three ``local-name()`` calls per attribute);
- ``vihf._dn_parts`` (split kept per distinct short DN text) against the plain split, including
  from many threads, and never answering for another text;
- ``xades._check_trust`` (the path built once, its dates checked at the signing time and now)
  against the two ``verify_certificate_path`` calls it replaces: same result, same error
  (reason, message, hint) for every combination of path, dates and key usage below.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from dmp_connector.errors import SignatureVerificationError
from dmp_connector.signature import _xmldsig as xmldsig
from dmp_connector.signature import vihf as vihf_mod
from dmp_connector.signature import xades as xades_mod
from dmp_connector.xml import parse_xml

# --------------------------------------------------------------------------------------------
# The single-ID check of the VIHF

_DOCUMENTS = [
    b'<a ID="x"/>',
    b'<a ID="x"><b Id="x"/></a>',
    b'<a ID="x" Id="x" id="x"><b/></a>',
    b'<a xmlns:w="urn:w" ID="x"><b w:Id="x"/><c w:ID="y"/></a>',
    b'<a ID="x"><b ref="x" Target="x" URI="#x"/><c iD="x" IDX="x" xid="x"/></a>',
    b'<a ID="x"><b ID=" x"/><c ID="x "/><d ID="X"/></a>',
    b'<a ID="x"><!-- ID="x" --><?pi ID="x"?><b>x</b><c ID="x">ID</c></a>',
    b'<a xmlns="urn:d" xmlns:p="urn:p" ID="x"><p:b p:id="x"/><b id="x"/><b><c ID="x" Id="x"/></b></a>',
    b'<a ID="&quot;x&apos;"><b Id="&quot;x&apos;"/></a>',
    b'<a ID="caf\xc3\xa9"><b id="cafe\xcc\x81"/><c id="caf\xc3\xa9"/></a>',
    b'<a ID=""><b id=""/></a>',
    b"<a/>",
]
_VALUES = ["x", "y", "X", " x", "\"x'", "café", "", "ID", "#x"]


@pytest.mark.parametrize("document", _DOCUMENTS)
def test_the_same_id_search_finds_what_the_xpath_found(document: bytes) -> None:
    root = parse_xml(document)
    for value in _VALUES:
        expected = list(vihf_mod._SAME_ID(root, value=value))  # type: ignore[arg-type]
        found = vihf_mod._same_id_elements(root, value)
        assert len(found) == len(expected), (document, value)
        assert all(a is b for a, b in zip(found, expected, strict=True)), (document, value)


def test_the_same_id_search_on_a_wrapped_vihf_envelope() -> None:
    """An envelope of some size, the assertion's ID repeated (or not) in every kind of place."""
    body = "".join(f'<item n="{i}" ID="_other{i}" ref="_a1"/>' for i in range(200))
    for extra in ["", '<copy ID="_a1"/>', '<copy xmlns:w="urn:w" w:Id="_a1"/>', '<copy Id="_a2" id="_a1"/>']:
        document = (
            f'<Envelope><Header><Assertion ID="_a1"><Issuer/></Assertion></Header><Body>{body}{extra}</Body></Envelope>'
        ).encode()
        root = parse_xml(document)
        expected = list(vihf_mod._SAME_ID(root, value="_a1"))  # type: ignore[arg-type]
        found = vihf_mod._same_id_elements(root, "_a1")
        assert [id(e) for e in found] == [id(e) for e in expected]
        assert len(found) == (1 if not extra else 2)


# --------------------------------------------------------------------------------------------
# The DN split kept per text

_DNS = [
    "CN=DMP SIGN,OU=1123456789,O=Cabinet Test,ST=Paris (75),C=FR",
    "C=FR,ST=Paris (75),O=Cabinet Test,OU=1123456789,CN=DMP SIGN",
    "cn = DMP SIGN ; ou=1123456789",
    r"CN=A\,B,O=C\;D,OU=E\\,G=F,S=Paris,SURNAME=X,2.5.4.42=Y",
    "CN=DMP SIGN,OU=1123456789,O=Cabinet Test,ST=Paris (75),C=FX",
    "",
    ",,",
    "CN",
]


def test_the_kept_dn_split_is_the_plain_split() -> None:
    vihf_mod._kept_dn_parts.cache_clear()
    for _ in range(2):
        for text in _DNS:
            assert vihf_mod._dn_parts(text) == vihf_mod._split_dn(text), text


def test_the_kept_dn_split_never_answers_for_another_text() -> None:
    vihf_mod._kept_dn_parts.cache_clear()
    first = vihf_mod._dn_parts(_DNS[0])
    other = vihf_mod._dn_parts(_DNS[4])  # differs in its last character only
    assert first != other
    assert other[-1] == ("C", "FX")
    assert vihf_mod._dn_parts(_DNS[0])[-1] == ("C", "FR")
    # an issuer naming another certificate is still refused once the right one is kept
    assert vihf_mod._dn_parts(_DNS[1]) == first[::-1]
    assert vihf_mod._dn_parts(_DNS[4]) not in (first, first[::-1])


def test_the_kept_dn_split_is_bounded_and_keeps_no_long_text() -> None:
    vihf_mod._kept_dn_parts.cache_clear()
    long_dn = "CN=" + "A" * vihf_mod._KEPT_DN
    assert vihf_mod._dn_parts(long_dn) == (("CN", "A" * vihf_mod._KEPT_DN),)
    assert vihf_mod._kept_dn_parts.cache_info().currsize == 0
    for i in range(500):
        assert vihf_mod._dn_parts(f"CN=n{i},O=x") == (("CN", f"n{i}"), ("O", "x"))
    info = vihf_mod._kept_dn_parts.cache_info()
    assert info.maxsize is not None
    assert info.currsize <= info.maxsize


def test_the_kept_dn_split_from_many_threads() -> None:
    vihf_mod._kept_dn_parts.cache_clear()
    failures: list[str] = []

    def work(n: int) -> None:
        for i in range(300):
            text = f"CN=t{n}-{i % 90},O=Org {n},C=FR"
            if vihf_mod._dn_parts(text) != (("CN", f"t{n}-{i % 90}"), ("O", f"Org {n}"), ("C", "FR")):
                failures.append(text)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --------------------------------------------------------------------------------------------
# The XAdES trust check: the path once, the dates at two moments

_T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(
    cn: str,
    *,
    issuer: str,
    days: tuple[int, int] = (-1000, 1000),
    ca: bool = False,
    signing: bool | None = True,
    key: rsa.RSAPrivateKey = _KEY,
    subject_key: rsa.RSAPrivateKey = _KEY,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_T0 + dt.timedelta(days=days[0]))
        .not_valid_after(_T0 + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if signing is not None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=signing,
                content_commitment=False,
                key_encipherment=not signing,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(key, hashes.SHA256())


_CA = _certificate("CA", issuer="CA", ca=True, signing=None)
_SHORT_CA = _certificate("Short CA", issuer="CA", days=(-10, 10), ca=True, signing=None)
_NOT_CA = _certificate("Not a CA", issuer="CA", ca=False)
_FOREIGN_CA = _certificate("CA", issuer="CA", ca=True, signing=None, key=_OTHER_KEY)
_CHAINS: dict[str, list[x509.Certificate]] = {
    "good": [_certificate("Leaf", issuer="CA")],
    "expired": [_certificate("Leaf", issuer="CA", days=(-1000, -5))],
    "not yet": [_certificate("Leaf", issuer="CA", days=(5, 1000))],
    "no signing usage": [_certificate("Leaf", issuer="CA", signing=False)],
    "no usage stated": [_certificate("Leaf", issuer="CA", signing=None)],
    "no usage, expired": [_certificate("Leaf", issuer="CA", signing=False, days=(-1000, -5))],
    "no usage, not yet": [_certificate("Leaf", issuer="CA", signing=False, days=(5, 1000))],
    "via short CA": [_certificate("Leaf", issuer="Short CA"), _SHORT_CA],
    "via a non-CA": [_certificate("Leaf", issuer="Not a CA"), _NOT_CA],
    "foreign": [_certificate("Leaf", issuer="CA", key=_OTHER_KEY)],
    "empty": [],
}
_TRUSTED: dict[str, list[x509.Certificate]] = {"CA": [_CA], "foreign CA": [_FOREIGN_CA], "none": []}
_MOMENTS = [_T0 + dt.timedelta(days=d) for d in (-2000, -20, -7, 0, 7, 20, 2000)]


def _former_check_trust(
    certificates: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
    signing_time: dt.datetime,
    now: dt.datetime,
) -> None:
    """``xades._check_trust`` before issue 22: ``verify_certificate_path`` at each moment."""
    for moment, when in ((signing_time, "at the signing time"), (now, "now")):
        try:
            xmldsig.verify_certificate_path(certificates, trusted, now=moment)
        except SignatureVerificationError as exc:
            if exc.reason != "expired_certificate":
                raise
            raise xades_mod._fail("expired_certificate", f"{exc.message} (checked {when})", hint=exc.hint) from exc


def _outcome(check: Callable[..., None], *args: object) -> tuple[str, str, str | None] | None:
    try:
        check(*args)
    except SignatureVerificationError as exc:
        return (exc.reason, exc.message, exc.hint)
    return None


@pytest.mark.parametrize("chain_name", sorted(_CHAINS))
def test_the_trust_check_refuses_what_two_path_checks_refused(chain_name: str) -> None:
    chain = _CHAINS[chain_name]
    outcomes: set[str] = set()
    for trusted in _TRUSTED.values():
        for signing_time in _MOMENTS:
            for now in _MOMENTS:
                expected = _outcome(_former_check_trust, chain, trusted, signing_time, now)
                actual = _outcome(xades_mod._check_trust, chain, trusted, signing_time, now)
                assert actual == expected, (chain_name, signing_time, now)
                outcomes.add("accepted" if expected is None else expected[0])
    if chain_name in ("good", "no usage stated", "via short CA"):
        assert "accepted" in outcomes
    if chain_name != "empty":
        assert "untrusted_certificate" in outcomes  # trusted=[] or the foreign CA


# --------------------------------------------------------------------------------------------
# "Issued by": the RSA shortcut against cryptography's verify_directly_issued_by


def _directly_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _tampered(cert: x509.Certificate, offset_from_end: int) -> x509.Certificate:
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-offset_from_end] ^= 0x01
    return x509.load_der_x509_certificate(bytes(der))


def _outer_algorithm_swapped(cert: x509.Certificate) -> x509.Certificate:
    """The outer signatureAlgorithm says SHA-384 while the signed (inner) one says SHA-256."""
    der = cert.public_bytes(serialization.Encoding.DER)
    sha256_rsa = bytes.fromhex("06092a864886f70d01010b")
    sha384_rsa = bytes.fromhex("06092a864886f70d01010c")
    at = der.rindex(sha256_rsa)
    return x509.load_der_x509_certificate(der[:at] + sha384_rsa + der[at + len(sha256_rsa) :])


def _printable_ca() -> x509.Certificate:
    """A CA named "CA" as a PrintableString: equal to the leaves' UTF8String issuer for Python, not in DER."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA", _type=_ASN1Type.PrintableString)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(1)
        .not_valid_before(_T0 - dt.timedelta(days=10))
        .not_valid_after(_T0 + dt.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(_KEY, hashes.SHA256())
    )


def _other_certificates() -> list[x509.Certificate]:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_ca = (
        x509.CertificateBuilder()
        .subject_name(_name("CA"))
        .issuer_name(_name("CA"))
        .public_key(ec_key.public_key())
        .serial_number(2)
        .not_valid_before(_T0 - dt.timedelta(days=10))
        .not_valid_after(_T0 + dt.timedelta(days=10))
        .sign(ec_key, hashes.SHA256())
    )
    leaf = _CHAINS["good"][0]
    pss = (
        x509.CertificateBuilder()
        .subject_name(_name("PSS leaf"))
        .issuer_name(_name("CA"))
        .public_key(_KEY.public_key())
        .serial_number(3)
        .not_valid_before(_T0 - dt.timedelta(days=10))
        .not_valid_after(_T0 + dt.timedelta(days=10))
        .sign(_KEY, hashes.SHA256(), rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), 32))
    )
    sha512 = (
        x509.CertificateBuilder()
        .subject_name(_name("SHA-512 leaf"))
        .issuer_name(_name("CA"))
        .public_key(_KEY.public_key())
        .serial_number(4)
        .not_valid_before(_T0 - dt.timedelta(days=10))
        .not_valid_after(_T0 + dt.timedelta(days=10))
        .sign(_KEY, hashes.SHA512())
    )
    return [
        ec_ca,
        pss,
        sha512,
        _printable_ca(),
        _tampered(leaf, 1),
        _tampered(leaf, 200),
        _outer_algorithm_swapped(leaf),
    ]


def test_the_rsa_issued_by_shortcut_answers_as_cryptography() -> None:
    certificates = [_CA, _SHORT_CA, _NOT_CA, _FOREIGN_CA, *(c for chain in _CHAINS.values() for c in chain)]
    certificates += _other_certificates()
    shortcut_taken = 0
    for cert in certificates:
        for issuer in certificates:
            expected = _directly_issued_by(cert, issuer)
            assert xmldsig._issued_by(cert, issuer) is expected, (cert.subject, issuer.subject)
            if xmldsig._rsa_issued_by(cert, issuer):
                assert expected, (cert.subject, issuer.subject)  # the shortcut accepts nothing cryptography refuses
                shortcut_taken += 1
    assert shortcut_taken > 10  # the usual case does take it
    swapped = _outer_algorithm_swapped(_CHAINS["good"][0])
    assert not _directly_issued_by(swapped, _CA)
    assert not xmldsig._rsa_issued_by(_CHAINS["good"][0], _printable_ca())


def test_the_der_reader_reads_the_names_cryptography_reads() -> None:
    for cert in [_CA, _SHORT_CA, _NOT_CA, *_CHAINS["good"], *_CHAINS["via short CA"], *_other_certificates()[:-1]]:
        parts = xmldsig._der_parts(cert)
        assert parts is not None
        inner, outer, issuer, subject = parts
        assert issuer == cert.issuer.public_bytes()
        assert subject == cert.subject.public_bytes()
        der = cert.public_bytes(serialization.Encoding.DER)
        assert outer + b"\x03" in der[len(cert.tbs_certificate_bytes) :]  # then the signature's BIT STRING
        assert inner in cert.tbs_certificate_bytes
        assert inner == outer
    inner, outer, _, _ = xmldsig._der_parts(_outer_algorithm_swapped(_CHAINS["good"][0])) or (b"", b"", b"", b"")
    assert inner != outer
