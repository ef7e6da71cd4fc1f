"""A throw-away PKI for the sandbox and for tests: a root CA, server, organisation and professional certificates.

It stands in for IGC-Santé on loopback so that mutual TLS and signatures are real in
tests and in the examples: the server checks the client certificate, the client checks
the server against the test CA, the DMP simulator checks the VIHF's signature, nothing is
turned off. Keys are RSA (the national services sign with RSA). Never use these
certificates outside a sandbox.

Subjects are shaped like IGC-Santé ones (reference notes ``ins.md`` §2.6, ``dmp_xds.md`` §5):

* organisation authentication — ``C=FR, O=<name>, OU=<structure national id>, CN=INSI-AUTO``
  (INSi requires the CN ``INSI-AUTO`` or ``INSI-MANU``; Padoa's sample has
  ``O=CENTRE DE SANTE RPPS15287/OU=10B0152872``), key usage digitalSignature +
  keyEncipherment, extended usage clientAuth;
* organisation signature ("cachet") — ``C=FR, ST=…, O=<name>, OU=<structure id>, CN=DMP SIGN``
  as in ANS's VIHF example, key usage digitalSignature + nonRepudiation;
* professional — ``C=FR, O=<name>, OU=<structure id>, SN=<surname>, GN=<given name>,
  CN=<IdNat_PS>`` [I: the reference does not show a card certificate's subject; the national id
  as CN follows the card id the CPx assertion carries], one key for authentication and
  signature (a real CPS card has one of each).

:func:`generate_test_pki` writes a whole set to a directory (``dmp-connector sandbox pki DIR``),
issued for a :class:`SandboxPractice` — the practice's identifiers in one place, which the pytest
plugin and ``sandbox serve`` build their settings from too, so that certificates and calls agree
as the DMP checks (OU = the VIHF's ``Identifiant_Structure``, card CN = the VIHF subject).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from dmp_connector._tls import load_client_identity
from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import (
    CertificateFiles,
    Organisation,
    Professional,
    ProfessionalIdKind,
    StructureIdKind,
    TlsCredentials,
)
from dmp_connector.errors import ConfigurationError

__all__ = [
    "IssuedCertificate",
    "SandboxPractice",
    "TestPki",
    "TestPkiFiles",
    "certificate_subject",
    "client_subject",
    "generate_test_pki",
]


@dataclass(frozen=True)
class SandboxPractice:
    """The practice a sandbox stands for: its structure, its professional, their names — in one place.

    The test PKI issues its certificates for these (organisation OU = :attr:`structure_national_id`,
    professional CN = :attr:`professional_national_id`), the pytest plugin builds its settings from them
    and the simulators check one against the other as the national services do. The defaults are the
    sandbox's own practice (FINESS ``123456789``, RPPS ``99700000001``); a vendor gives its own (its
    FINESS or SIRET, its RPPS or ADELI) so that its tests run with the identifiers it ships with.
    The ids are checked as :class:`~dmp_connector.config.Organisation` and
    :class:`~dmp_connector.config.Professional` check them (9-digit FINESS, 11-digit RPPS …).
    """

    structure_id: str = "123456789"
    """The structure's own id, without prefix (9-digit FINESS, 14-digit SIRET, ADELI-rang …)."""
    structure_id_kind: StructureIdKind = StructureIdKind.FINESS
    """What kind of id :attr:`structure_id` is; its value is the national id's prefix."""
    organisation_name: str = "CABINET SANDBOX"
    """The organisation's name (certificate O, documents, mail)."""
    professional_id: str = "99700000001"
    """The professional's own id, without prefix (11-digit RPPS, 9-character ADELI)."""
    professional_id_kind: ProfessionalIdKind = ProfessionalIdKind.RPPS
    """What kind of id :attr:`professional_id` is."""
    family_name: str = "SANDBOX"
    """The professional's family name (certificate SN)."""
    given_name: str = "JEANNE"
    """The professional's given name (certificate GN)."""

    def __post_init__(self) -> None:
        self.organisation()
        self.professional()

    @classmethod
    def of(cls, **values: Any) -> SandboxPractice:
        """A practice from text values (an ini file, the command line): kinds by name (``FINESS``, ``RPPS`` …).

        Empty values keep their default.
        """
        given = {key: value for key, value in values.items() if value not in (None, "")}
        for key, kind in (("structure_id_kind", StructureIdKind), ("professional_id_kind", ProfessionalIdKind)):
            if isinstance(given.get(key), str):
                text = given[key].strip().upper().replace("-", "_")
                names = ", ".join(member.name for member in kind)
                if text not in kind.__members__:
                    raise ConfigurationError(f"{key} {given[key]!r} is not one of {names}")
                given[key] = kind[text]
        return cls(**given)

    @property
    def structure_national_id(self) -> str:
        """The structure's national id (kind prefix + id): the certificates' OU and the VIHF's Identifiant_Structure."""
        return f"{self.structure_id_kind.value}{self.structure_id}"

    @property
    def professional_national_id(self) -> str:
        """The professional's national id (IdNat_PS): the card certificate's CN and the VIHF subject."""
        return f"{self.professional_id_kind.value}{self.professional_id}"

    def organisation(self) -> Organisation:
        """The :class:`~dmp_connector.config.Organisation` of the settings (activity sector SA07, cabinet)."""
        try:
            return Organisation(
                id=self.structure_id,
                id_kind=self.structure_id_kind,
                name=self.organisation_name,
                activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"the sandbox practice's structure id is not a valid {self.structure_id_kind.name} id",
                hint="a FINESS has 9 digits, a SIRET 14, a SIREN 9 (dmpc_structure_id / SandboxPractice)",
            ) from exc

    def professional(self) -> Professional:
        """The :class:`~dmp_connector.config.Professional` of the settings (a general practitioner)."""
        try:
            return Professional(
                id=self.professional_id,
                id_kind=self.professional_id_kind,
                family_name=self.family_name,
                given_name=self.given_name,
                profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
                specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"the sandbox practice's professional id is not a valid {self.professional_id_kind.name} id",
                hint="an RPPS number has 11 digits, an ADELI number 9 characters (dmpc_professional_id)",
            ) from exc


def client_subject(tls: TlsCredentials | None) -> str | None:
    """The subject the TLS client certificate of ``tls`` presents (None without one), for in-process transports."""
    if tls is None:
        return None
    identity = load_client_identity(tls)
    return None if identity is None else certificate_subject(identity[0][0])


_SUBJECT_NAMES = {
    NameOID.COUNTRY_NAME: "countryName",
    NameOID.STATE_OR_PROVINCE_NAME: "stateOrProvinceName",
    NameOID.ORGANIZATION_NAME: "organizationName",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "organizationalUnitName",
    NameOID.SURNAME: "surname",
    NameOID.GIVEN_NAME: "givenName",
    NameOID.COMMON_NAME: "commonName",
}


def certificate_subject(certificate: x509.Certificate) -> str:
    """A certificate's subject as the loopback server reports a TLS client's (``organizationalUnitName=…,…``).

    The in-process transports present it so that a simulator checks the same certificate it would
    see over TLS.
    """
    return ",".join(
        f"{_SUBJECT_NAMES.get(attribute.oid, attribute.oid.dotted_string)}={attribute.value!s}"
        for attribute in certificate.subject
    )


INSI_AUTO = "INSI-AUTO"
"""The CN INSi requires of an organisation certificate used by machine-initiated calls."""
INSI_MANU = "INSI-MANU"
"""The CN INSi requires of an organisation certificate used by user-initiated calls."""


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(
    *, digital_signature: bool = True, non_repudiation: bool = False, encipherment: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=non_repudiation,
        key_encipherment=encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_TLS_USAGE = _key_usage(encipherment=True)
_SIGN_USAGE = _key_usage(non_repudiation=True)
_CARD_USAGE = _key_usage(non_repudiation=True, encipherment=True)


def _organisation_name(common_name: str, organisation: str, structure_id: str, state: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]
    if state:
        attributes.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, state))
    attributes += [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, structure_id),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    return x509.Name(attributes)


_BACKDATE = dt.timedelta(hours=1)
"""How far back a certificate's validity starts by default: a run that fixed its clock at start and
issues certificates minutes later (a long test session), or a peer whose clock lags, still sees
them valid."""


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key, ready to be written as PEM or PKCS#12."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: bytes | None = None) -> bytes:
        """The private key in PKCS#8 PEM, encrypted when ``password`` is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def pkcs12(self, password: bytes | None, *, chain: tuple[x509.Certificate, ...] = ()) -> bytes:
        """The key and certificate as a PKCS#12 file."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(
            b"dmp-connector", self.key, self.certificate, list(chain) or None, encryption
        )

    def write_pem(self, directory: Path, stem: str, *, password: bytes | None = None) -> tuple[Path, Path]:
        """Write ``<stem>.crt`` and ``<stem>.key`` (mode 0600) and return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{stem}.crt"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.write_bytes(self.key_pem(password))
        key_path.chmod(0o600)
        return cert_path, key_path


class TestPki:
    """A root CA that issues server and client certificates on demand."""

    __test__ = False  # not a pytest test class

    def __init__(self, ca: IssuedCertificate) -> None:
        self.ca = ca

    @classmethod
    def load(cls, cert_path: str | Path, key_path: str | Path) -> TestPki:
        """The CA written by :func:`generate_test_pki` (``ca.crt``, ``ca.key``), to issue more certificates later.

        The sandbox server needs it to issue the MSSanté operator's certificate from a persisted PKI.
        """
        try:
            certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        except OSError as exc:
            raise ConfigurationError(f"cannot read the test CA: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise ConfigurationError(f"{cert_path} / {key_path} is not a PEM certificate and unencrypted key") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError(f"{key_path} is not an RSA private key")
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
            raise ConfigurationError(f"{key_path} is not the key of {cert_path}")
        return cls(IssuedCertificate(certificate, key))

    @classmethod
    def create(cls, *, name: str = "dmp_connector sandbox root CA", now: dt.datetime | None = None) -> TestPki:
        """A new root CA valid for ten years from ``now``."""
        start = (now or dt.datetime.now(dt.UTC)) - _BACKDATE
        key = _new_key()
        subject = _name(name, "dmp_connector sandbox")
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(IssuedCertificate(cert, key))

    @property
    def ca_pem(self) -> bytes:
        """The root certificate in PEM, to use as a CA bundle."""
        return self.ca.cert_pem

    def _issue(
        self,
        subject: x509.Name,
        *,
        usage: x509.ObjectIdentifier | None,
        sans: list[x509.GeneralName],
        not_before: dt.datetime | None,
        not_after: dt.datetime | None,
        key_usage: x509.KeyUsage = _TLS_USAGE,
    ) -> IssuedCertificate:
        start = not_before or dt.datetime.now(dt.UTC) - _BACKDATE
        end = not_after or start + dt.timedelta(days=365)
        key = _new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca.key.public_key()), critical=False)
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return IssuedCertificate(builder.sign(self.ca.key, hashes.SHA256()), key)

    def issue_server(
        self,
        hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A TLS server certificate for the given host names and IP addresses."""
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue(
            _name(hosts[0], "dmp_connector sandbox"),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=sans,
            not_before=not_before,
            not_after=not_after,
        )

    def issue_client(
        self,
        common_name: str,
        *,
        organisation: str = "dmp_connector sandbox",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A TLS client certificate (an organisation's authentication certificate)."""
        return self._issue(
            _name(common_name, organisation),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=[],
            not_before=not_before,
            not_after=not_after,
        )

    def issue_organisation_auth(
        self,
        *,
        organisation: str,
        structure_id: str,
        common_name: str = INSI_AUTO,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """An organisation's authentication certificate (mutual TLS to INSi and the DMP), IGC-Santé shaped.

        ``structure_id`` is the structure's national id (``1`` + FINESS …), carried in OU;
        the CN defaults to ``INSI-AUTO`` (use :data:`INSI_MANU` for user-initiated calls).
        """
        return self._issue(
            _organisation_name(common_name, organisation, structure_id),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=[],
            not_before=not_before,
            not_after=not_after,
        )

    def issue_organisation_sign(
        self,
        *,
        organisation: str,
        structure_id: str,
        common_name: str = "DMP SIGN",
        state: str | None = "Paris (75)",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """An organisation's signature ("cachet") certificate: signs the VIHF and the submission sets.

        Key usage digitalSignature + nonRepudiation and no extended usage, so that it cannot
        serve as a TLS client certificate by mistake.
        """
        return self._issue(
            _organisation_name(common_name, organisation, structure_id, state),
            usage=None,
            sans=[],
            not_before=not_before,
            not_after=not_after,
            key_usage=_SIGN_USAGE,
        )

    def issue_professional(
        self,
        national_id: str,
        *,
        family_name: str,
        given_name: str,
        organisation: str | None = None,
        structure_id: str | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A professional's certificate shaped like an IGC-Santé card one (see the module docstring).

        ``national_id`` is the IdNat_PS (``8`` + RPPS); it is the CN [I]. The key signs and
        authenticates (clientAuth), so the same certificate serves direct-mode TLS and
        card-style signatures in tests.
        """
        attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]
        if organisation:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
        if structure_id:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, structure_id))
        attributes += [
            x509.NameAttribute(NameOID.SURNAME, family_name),
            x509.NameAttribute(NameOID.GIVEN_NAME, given_name),
            x509.NameAttribute(NameOID.COMMON_NAME, national_id),
        ]
        return self._issue(
            x509.Name(attributes),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=[],
            not_before=not_before,
            not_after=not_after,
            key_usage=_CARD_USAGE,
        )


@dataclass(frozen=True)
class TestPkiFiles:
    """The files :func:`generate_test_pki` wrote (PEM keys unencrypted, mode 0600; PKCS#12 with ``p12_password``)."""

    __test__ = False  # not a pytest test class

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    org_auth_cert: Path
    org_auth_key: Path
    org_auth_p12: Path
    org_sign_cert: Path
    org_sign_key: Path
    org_sign_p12: Path
    professional_cert: Path
    professional_key: Path
    p12_password: str
    structure_id: str
    professional_id: str
    ca_key: Path | None = None
    """The CA's private key (``ca.key``), kept so that the PKI can issue more certificates; None for older sets."""
    practice: SandboxPractice | None = None
    """The practice the certificates were issued for (None for sets written before it was recorded)."""

    def files(self) -> dict[str, Path]:
        """Every file written, by role (``ca_cert``, ``server_key`` …)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "directory"
            and f.name.endswith(("_cert", "_key", "_p12"))
            and getattr(self, f.name) is not None
        }

    def tls_credentials(self) -> TlsCredentials:
        """Mutual TLS as the organisation (``INSI-AUTO``), trusting the test CA."""
        return TlsCredentials(cert_file=self.org_auth_cert, key_file=self.org_auth_key, ca_bundle=self.ca_cert)

    def signing_credentials(self, *, pkcs12: bool = False) -> CertificateFiles:
        """The organisation's signature certificate, as PEM files or as its PKCS#12."""
        if pkcs12:
            return CertificateFiles(pkcs12_file=self.org_sign_p12, pkcs12_password=SecretStr(self.p12_password))
        return CertificateFiles(cert_file=self.org_sign_cert, key_file=self.org_sign_key)

    def load_pki(self) -> TestPki:
        """The CA back from ``ca_cert`` and ``ca_key``, to issue more certificates (the MSSanté operator's)."""
        if self.ca_key is None:
            raise ConfigurationError(
                f"the test PKI in {self.directory} has no CA key", hint="regenerate it (dmp-connector sandbox pki)"
            )
        return TestPki.load(self.ca_cert, self.ca_key)


def generate_test_pki(
    directory: str | Path,
    *,
    practice: SandboxPractice | None = None,
    organisation: str | None = None,
    structure_id: str | None = None,
    professional_id: str | None = None,
    family_name: str | None = None,
    given_name: str | None = None,
    p12_password: str = "dmp-connector-sandbox",  # noqa: S107 - a sandbox PKI, printed by the CLI
    overwrite: bool = False,
    now: dt.datetime | None = None,
) -> TestPkiFiles:
    """Create a test PKI and write it to ``directory``: CA, server, organisation (auth, sign), professional.

    ::

        ca.crt                                the root to trust (CA bundle)
        ca.key                                its private key (mode 0600), to issue more later
        server.crt  server.key                localhost, 127.0.0.1
        org-auth.crt org-auth.key org-auth.p12  CN=INSI-AUTO, OU=<structure_id>  (mutual TLS)
        org-sign.crt org-sign.key org-sign.p12  CN=DMP SIGN                     (VIHF, submission sets)
        professional.crt professional.key       CN=<professional_id>, SN, GN

    The certificates are issued for ``practice`` (default: :class:`SandboxPractice`, FINESS
    ``123456789``, national id ``1123456789``): OU = its structure's national id, the
    professional's CN = its IdNat_PS. ``organisation``, ``structure_id`` (a *national* id, with
    its prefix), ``professional_id`` (IdNat_PS), ``family_name`` and ``given_name`` override one
    value each. Existing files are refused unless ``overwrite``: a ConfigurationError names the
    first one.
    """
    chosen = practice or SandboxPractice()
    overridden = any(v is not None for v in (organisation, structure_id, professional_id, family_name, given_name))
    organisation = organisation or chosen.organisation_name
    structure_id = structure_id or chosen.structure_national_id
    professional_id = professional_id or chosen.professional_national_id
    family_name = family_name or chosen.family_name
    given_name = given_name or chosen.given_name
    target = Path(directory)
    names = {
        "ca_cert": "ca.crt",
        "ca_key": "ca.key",
        "server_cert": "server.crt",
        "server_key": "server.key",
        "org_auth_cert": "org-auth.crt",
        "org_auth_key": "org-auth.key",
        "org_auth_p12": "org-auth.p12",
        "org_sign_cert": "org-sign.crt",
        "org_sign_key": "org-sign.key",
        "org_sign_p12": "org-sign.p12",
        "professional_cert": "professional.crt",
        "professional_key": "professional.key",
    }
    paths = {role: target / name for role, name in names.items()}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise ConfigurationError(
                    f"{path} already exists; the test PKI was not written",
                    hint="choose an empty directory or overwrite (--force)",
                )
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create {target}: {exc.strerror or exc}") from exc
    pki = TestPki.create(now=now)
    start = (now or dt.datetime.now(dt.UTC)) - _BACKDATE
    server = pki.issue_server(not_before=start)
    auth = pki.issue_organisation_auth(organisation=organisation, structure_id=structure_id, not_before=start)
    sign = pki.issue_organisation_sign(organisation=organisation, structure_id=structure_id, not_before=start)
    professional = pki.issue_professional(
        professional_id,
        family_name=family_name,
        given_name=given_name,
        organisation=organisation,
        structure_id=structure_id,
        not_before=start,
    )
    chain = (pki.ca.certificate,)
    password = p12_password.encode()
    try:
        paths["ca_cert"].write_bytes(pki.ca_pem)
        pki.ca.write_pem(target, "ca")
        server.write_pem(target, "server")
        auth.write_pem(target, "org-auth")
        sign.write_pem(target, "org-sign")
        professional.write_pem(target, "professional")
        for role, issued in (("org_auth_p12", auth), ("org_sign_p12", sign)):
            paths[role].write_bytes(issued.pkcs12(password, chain=chain))
            paths[role].chmod(0o600)
    except OSError as exc:
        raise ConfigurationError(f"cannot write the test PKI to {target}: {exc.strerror or exc}") from exc
    return TestPkiFiles(
        directory=target,
        p12_password=p12_password,
        structure_id=structure_id,
        professional_id=professional_id,
        practice=None if overridden else chosen,
        **paths,
    )
