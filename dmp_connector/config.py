"""Settings: the target environment, who is calling, and with which credentials.

One :class:`Settings` object feeds every client. It can be built in code, from
environment variables (``DMP_CONNECTOR_`` prefix, ``__`` between levels) and from a TOML
file, in that order of precedence::

    settings = Settings.load("dmp-connector.toml")          # file, then env over it
    settings = Settings(software=SoftwareIdentity(...), environment="test")

No service holds a URL of its own: every endpoint comes from :class:`Environment`.
Facts marked [I] in the reference notes (production INSi URLs, structure-id prefixes
other than FINESS/SIRET, the ADELI prefix) are settings with a documented default.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import os
import socket
import tomllib
import uuid
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .codes import RPPS_SPECIALTY_SYSTEM, Code
from .errors import ConfigurationError
from .retries import RetryPolicy
from .xml import XmlLimits

__all__ = [
    "AuditSettings",
    "CdaSettings",
    "CertificateFiles",
    "DirectorySettings",
    "DmpService",
    "DmpSettings",
    "DmpTransaction",
    "Environment",
    "EnvironmentName",
    "InsiAuthMode",
    "InsiSettings",
    "MailServer",
    "MssanteAuthMode",
    "MssanteSettings",
    "Organisation",
    "Professional",
    "ProfessionalIdKind",
    "PscClientAuth",
    "PscSettings",
    "Settings",
    "SigningSettings",
    "SoftwareIdentity",
    "StructureIdKind",
    "Timeouts",
    "TlsCredentials",
    "client_repr",
    "settings_with_timeout",
]

_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")


class EnvironmentName(StrEnum):
    """Where the calls go: the embedded sandbox, a national test platform, or production."""

    SANDBOX = "sandbox"
    TEST = "test"
    PRODUCTION = "production"


class DmpService(StrEnum):
    """The DMP's SOAP services; each is ``<dmp_base_url>/<service>``."""

    REGISTRY = "registry"
    REPOSITORY = "repository"
    PATIENTS = "patients"
    PATIENTS_PDQ = "patientsPDQ"
    PATIENTS_SPECIFIC = "patientsSpecific"
    PATIENT_CERTIF = "patientCertif"
    HABILITATIONS = "habilitations"


class MailServer(BaseModel):
    """An MSSanté operator's SMTP submission or IMAP server (STARTTLS on a plain port)."""

    model_config = _FROZEN

    host: str = Field(min_length=1)
    """Host name as the operator's certificate names it."""
    port: int = Field(gt=0, lt=65536)
    """587 for submission, 143 for IMAP in the MSSanté interface."""
    starttls: bool = True
    """Upgrade the connection with STARTTLS; the MSSanté rules require TLS ≥ 1.2."""


def settings_with_timeout(settings: Settings, timeout: float | Timeouts | None) -> Settings:
    """``settings`` whose calls end after ``timeout`` seconds (no attempt longer), or with these ``Timeouts``."""
    if timeout is None:
        return settings
    if isinstance(timeout, Timeouts):
        timeouts = timeout
    else:
        current = settings.timeouts
        timeouts = Timeouts.model_validate(
            {**current.model_dump(), "call": timeout, "attempt": min(current.attempt, timeout)}
        )
    return settings.model_copy(update={"timeouts": timeouts})


def client_repr(client: object, environment: Environment, **endpoints: str | MailServer | None) -> str:
    """``<DmpClient environment='test' dmp='https://…'>``: what a client talks to, for logs and debuggers.

    Only the environment and the endpoints: never a credential, a certificate path, a mailbox or
    the practice's identifiers. A URL loses any ``user:password@`` and query string.
    """
    parts = [f"environment={environment.name.value!r}"]
    for name, endpoint in endpoints.items():
        if endpoint is None:
            continue
        if isinstance(endpoint, MailServer):
            text = f"{endpoint.host}:{endpoint.port}"
        else:
            scheme, sep, rest = endpoint.partition("://")
            host, slash, path = rest.partition("/")
            text = f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path.split('?', 1)[0]}"
        parts.append(f"{name}={text!r}")
    return f"<{type(client).__name__} {' '.join(parts)}>"


_DMP_PRODUCTION = "https://lps2.dmp.gouv.fr/si-dmp-server/v2/services"
_ANNUAIRE = "https://gateway.api.esante.gouv.fr/fhir/v2"
_WHITELIST = "https://espacedeconfiance.mssante.fr/listeblanchemssante.xml"


class Environment(BaseModel):
    """Every endpoint of one target environment.

    Use the presets (:meth:`sandbox`, :meth:`test`, :meth:`production`) and override a
    field where your contract says otherwise. MSSanté servers belong to your operator,
    not to a national platform, so they have no preset outside the sandbox.
    """

    model_config = _FROZEN

    name: EnvironmentName
    """Which kind of environment this is; production refuses test identities and vice versa."""
    insi_url: str
    """INSi endpoint when the caller authenticates with a card assertion (CPx mode)."""
    insi_mtls_url: str
    """INSi endpoint when the organisation authenticates with its certificate (mutual TLS)."""
    dmp_base_url: str
    """Base of the DMP services; a service URL is ``<base>/<service>``."""
    annuaire_url: str = _ANNUAIRE
    """Annuaire Santé FHIR API (no test platform exists: the production API is used everywhere)."""
    mssante_whitelist_url: str = _WHITELIST
    """The MSSanté trust-space domain list."""
    mssante_smtp: MailServer | None = None
    """Your operator's SMTP submission server."""
    mssante_imap: MailServer | None = None
    """Your operator's IMAP server."""

    @field_validator("insi_url", "insi_mtls_url", "dmp_base_url", "annuaire_url", "mssante_whitelist_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError(f"{value!r} is not an https:// URL; every national service is reached over TLS")
        return value.rstrip("/")

    @property
    def is_production(self) -> bool:
        """True for production: only real identities (INS OID .8/.9) may be used there."""
        return self.name is EnvironmentName.PRODUCTION

    def dmp_url(self, service: DmpService) -> str:
        """URL of one DMP service."""
        return f"{self.dmp_base_url}/{DmpService(service).value}"

    def require_smtp(self) -> MailServer:
        """The SMTP server, or a clear error when it is not configured."""
        if self.mssante_smtp is None:
            raise ConfigurationError(
                "no MSSanté SMTP server is configured",
                hint="set environment.mssante_smtp (host, port) to your MSSanté operator's submission server",
            )
        return self.mssante_smtp

    def require_imap(self) -> MailServer:
        """The IMAP server, or a clear error when it is not configured."""
        if self.mssante_imap is None:
            raise ConfigurationError(
                "no MSSanté IMAP server is configured",
                hint="set environment.mssante_imap (host, port) to your MSSanté operator's IMAP server",
            )
        return self.mssante_imap

    @classmethod
    def sandbox(cls, base_url: str = "https://127.0.0.1:8443", *, smtp_port: int = 8587, imap_port: int = 8143) -> Self:
        """The embedded sandbox on loopback; ``base_url`` is where it listens."""
        base = base_url.rstrip("/")
        host = base.split("://", 1)[1].split(":", 1)[0].split("/", 1)[0]
        return cls(
            name=EnvironmentName.SANDBOX,
            insi_url=f"{base}/insi/lps",
            insi_mtls_url=f"{base}/insi/lps",
            dmp_base_url=f"{base}/si-dmp-server/v2/services",
            annuaire_url=f"{base}/fhir/v2",
            mssante_whitelist_url=f"{base}/listeblanchemssante.xml",
            mssante_smtp=MailServer(host=host, port=smtp_port),
            mssante_imap=MailServer(host=host, port=imap_port),
        )

    @classmethod
    def test(cls, platform: str = "dev6") -> Self:
        """The national qualification platforms (INSi "qualiflps", DMP ``<platform>.lps2``)."""
        if not platform.isalnum():
            raise ConfigurationError(f"DMP test platform {platform!r} is not a plain name such as 'dev6'")
        return cls(
            name=EnvironmentName.TEST,
            insi_url="https://qualiflps.services-ps.ameli.fr:443/lps",
            insi_mtls_url="https://qualiflps-services-ps-tlsm.ameli.fr:443/lps",
            dmp_base_url=f"https://{platform}.lps2.dmp.gouv.fr/si-dmp-server/v2/services",
        )

    @classmethod
    def production(cls) -> Self:
        """Production. The INSi URLs are inferred from the test ones [I]: check them with your CNDA kit."""
        return cls(
            name=EnvironmentName.PRODUCTION,
            insi_url="https://services-ps.ameli.fr/lps",
            insi_mtls_url="https://services-ps-tlsm.ameli.fr/lps",
            dmp_base_url=_DMP_PRODUCTION,
        )

    @classmethod
    def preset(cls, name: EnvironmentName | str, **overrides: Any) -> Self:
        """The preset for ``name`` with some fields overridden (what a TOML table gives)."""
        kind = EnvironmentName(name)
        if kind is EnvironmentName.SANDBOX:
            base = cls.sandbox(
                **{k: overrides.pop(k) for k in ("base_url", "smtp_port", "imap_port") if k in overrides}
            )
        elif kind is EnvironmentName.TEST:
            base = cls.test(**({"platform": overrides.pop("platform")} if "platform" in overrides else {}))
        else:
            base = cls.production()
        data = base.model_dump()
        data.update(overrides)
        return cls.model_validate(data)


class SoftwareIdentity(BaseModel):
    """The software (LPS) as the national services know it."""

    model_config = _FROZEN

    name: str = Field(min_length=1)
    """Product name, as declared to the CNDA and the DMP homologation (``LPS_Nom``)."""
    version: str = Field(min_length=1)
    """Product version (``LPS_Version``)."""
    editor: str = Field(min_length=1)
    """The editor's company name."""
    dmp_homologation_id: str | None = None
    """DMP homologation number (VIHF ``LPS_ID_HOMOLOGATION_DMP``); required for DMP calls."""
    insi_authorisation_id: str | None = None
    """CNDA authorisation number for INSi (``ContexteLPS/LPS/IDAM``); required for INSi calls."""
    instance_id: str = Field(default="", validate_default=True)
    """Id of this installation (``ContexteLPS/LPS/Instance``). Without one, a UUID derived from the
    software name, editor and host name is used, so that it stays the same from run to run; set it
    to keep it across a change of host name."""

    @field_validator("instance_id")
    @classmethod
    def _stable_instance(cls, value: str, info: ValidationInfo) -> str:
        if value:
            return value
        seed = f"dmp-connector:{info.data.get('name')}:{info.data.get('editor')}:{socket.gethostname()}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


class StructureIdKind(StrEnum):
    """Kinds of organisation id; the value is the prefix of the national id (IdNat_Struct).

    FINESS (1) and SIRET (3) are confirmed by the reference; ADELI-rang (0), SIREN (2)
    and RPPS-rang (4) follow the ANS national-id convention [I].
    """

    ADELI_RANG = "0"
    FINESS = "1"
    SIREN = "2"
    SIRET = "3"
    RPPS_RANG = "4"


class Organisation(BaseModel):
    """The organisation (structure) on whose behalf the software calls."""

    model_config = _FROZEN

    id: str = Field(min_length=1, pattern=r"^[0-9A-Za-z]+$")
    """The structure's own id (9-digit FINESS, 14-digit SIRET, …) without prefix."""
    id_kind: StructureIdKind
    """What kind of id ``id`` is."""
    name: str = Field(min_length=1)
    """Name shown in documents and mail."""
    activity_sector: Code | None = None
    """Activity sector (TRE_R02 / JDV_J61, e.g. ``SA07`` cabinet individuel); required by the VIHF."""

    @model_validator(mode="after")
    def _id_shape(self) -> Self:
        expected = {StructureIdKind.FINESS: 9, StructureIdKind.SIRET: 14, StructureIdKind.SIREN: 9}
        length = expected.get(self.id_kind)
        if length is not None and (len(self.id) != length or not self.id.isdigit()):
            raise ValueError(f"a {self.id_kind.name} id has {length} digits")
        return self

    @property
    def national_id(self) -> str:
        """Struct_IdNat: kind prefix + id (``1`` + FINESS …), as the VIHF and CDA carry it."""
        return f"{self.id_kind.value}{self.id}"


_TRE_G15: Final = "1.2.250.1.71.1.2.7"
"""TRE_G15 (professions): ``10`` médecin, ``21`` pharmacien."""


class ProfessionalIdKind(StrEnum):
    """Kinds of professional id; the value is the IdNat_PS prefix (RPPS 8; ADELI 0 [I])."""

    ADELI = "0"
    RPPS = "8"


class Professional(BaseModel):
    """The health professional acting (author of documents, VIHF subject)."""

    model_config = _FROZEN

    id: str = Field(pattern=r"^[0-9A-Za-z]+$")
    """RPPS (11 digits) or ADELI (9 characters) number, without prefix."""
    id_kind: ProfessionalIdKind = ProfessionalIdKind.RPPS
    """What kind of id ``id`` is."""
    family_name: str = Field(min_length=1)
    """Family name."""
    given_name: str = Field(min_length=1)
    """First given name."""
    profession: Code
    """Profession (TRE_G15, e.g. ``10`` médecin, code system ``1.2.250.1.71.1.2.7``)."""
    specialty: Code | None = None
    """Specialty, required by the VIHF for physicians and pharmacists: make it with
    :func:`~dmp_connector.codes.professional_specialty` (``professional_specialty("SM26")``, code system
    ``1.2.250.1.71.4.2.5``); the CDA author and XDS authorSpecialty derive the JDV_J01 code from it."""
    role: Code | None = None
    """Role for role-characterised professionals (TRE_R85)."""

    @model_validator(mode="after")
    def _id_shape(self) -> Self:
        if self.id_kind is ProfessionalIdKind.RPPS and (len(self.id) != 11 or not self.id.isdigit()):
            raise ValueError("an RPPS number has 11 digits")
        if self.id_kind is ProfessionalIdKind.ADELI and len(self.id) != 9:
            raise ValueError("an ADELI number has 9 characters")
        physician = self.profession.code == "10" and self.profession.code_system == _TRE_G15
        if physician and self.specialty is not None and self.specialty.code_system != RPPS_SPECIALTY_SYSTEM:
            raise ValueError(
                f"a physician's specialty is an RPPS code under {RPPS_SPECIALTY_SYSTEM}"
                " (use dmp_connector.codes.professional_specialty)"
            )
        return self

    @property
    def national_id(self) -> str:
        """IdNat_PS: kind prefix + id (``8`` + RPPS), as the VIHF and CDA carry it."""
        return f"{self.id_kind.value}{self.id}"


class CertificateFiles(BaseModel):
    """A certificate and its private key, as PEM files or one PKCS#12 file.

    Give either ``cert_file`` + ``key_file`` (PEM) or ``pkcs12_file``. Files are checked
    (present, readable, dates, key matches) when they are first used, with an error that
    names the file.
    """

    model_config = _FROZEN

    cert_file: Path | None = None
    """PEM certificate (its chain may follow in the same file)."""
    key_file: Path | None = None
    """PEM private key of the certificate."""
    key_password: SecretStr | None = None
    """Password of an encrypted PEM key."""
    pkcs12_file: Path | None = None
    """PKCS#12 (.p12/.pfx) holding the key and certificate."""
    pkcs12_password: SecretStr | None = None
    """Password of the PKCS#12 file."""

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        pem = self.cert_file is not None or self.key_file is not None
        if pem and self.pkcs12_file is not None:
            raise ValueError("give either cert_file + key_file or pkcs12_file, not both")
        if pem and (self.cert_file is None or self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    @property
    def has_certificate(self) -> bool:
        """True when a certificate is configured."""
        return self.cert_file is not None or self.pkcs12_file is not None


class TlsCredentials(CertificateFiles):
    """Client certificate for mutual TLS and the CA bundle to trust.

    The client certificate is the organisation's authentication certificate (IGC-Santé
    "AUTH_CLI"; ``INSI-AUTO``/``INSI-MANU`` for INSi). Verification of the server is
    never turned off: without ``ca_bundle`` the system trust store is used, which does
    not hold IGC-Santé — give the IGC-Santé chain for national services.
    """

    ca_bundle: Path | None = None
    """PEM bundle of the CAs that sign the servers' certificates (IGC-Santé for national services)."""

    @property
    def has_client_certificate(self) -> bool:
        """True when a client certificate is configured."""
        return self.has_certificate


class SigningSettings(BaseModel):
    """How the SDK signs (VIHF, submission sets): the organisation's signature certificate.

    The DMP expects a *separate* signature certificate (IGC-Santé "SIGN") from the TLS
    one. Without ``credentials`` a vendor plugs its own ``Signer`` (card, HSM) in code.
    """

    model_config = _FROZEN

    credentials: CertificateFiles | None = None
    """The signature certificate and key (PEM or PKCS#12)."""
    signature_algorithm: str = Field(default="rsa-sha256", pattern=r"^rsa-sha(256|1)$")
    """``rsa-sha256`` (default, ANS's 2024 VIHF example) or ``rsa-sha1`` (the profile of the public DMP
    implementations, for a platform that still wants it)."""
    digest_algorithm: str = Field(default="sha256", pattern=r"^sha(256|1)$")
    """Digest of the signed references: ``sha256`` (default) or ``sha1``."""
    vihf_version: str = Field(default="3.0", min_length=1)
    """``VIHF_Version`` sent: ``3.0`` in every public implementation and ANS's example; ANS's mapping
    table says ``4.0`` — set it here if the platform asks for it."""
    vihf_validity_seconds: int | None = Field(default=None, gt=0)
    """When set, the VIHF carries ``Conditions NotBefore/NotOnOrAfter`` this many seconds apart and is
    reused while valid; by default it has no validity window (as DRIMbox and the editor kit send it)
    and a fresh one is signed for each call."""
    vihf_authn_instant: dt.datetime | None = None
    """When the professional logged in (the VIHF's ``AuthnInstant``, "local login time" in the DMP guide);
    :func:`dmp_connector.psc.air_settings` sets it from the PSC session's ``auth_time``. Unset, the
    signing time is sent, as for a login the software does not know of (organisation certificate)."""
    vihf_attribute_overrides: dict[str, str | None] = Field(default_factory=dict)
    """VIHF attributes by name: a text value replaces (or adds) the attribute, ``None`` removes it —
    so that a newer guide can be followed without a code change."""
    xades_version: str = Field(default="1.1.1", pattern=r"^1\.(1\.1|3\.2)$")
    """XAdES namespace of the submission-set signature: ``1.1.1`` (default, as DRIMbox sends it) or
    ``1.3.2`` (probably the editor kit's library) [I]; the DMP test platforms accepted both."""
    xades_signing_certificate: str = Field(default="signer", pattern=r"^(signer|chain)$")
    """What the submission-set signature's ``SigningCertificate`` lists: ``signer`` (default, DRIMbox)
    or ``chain`` (the signer's whole chain, as the editor kit does)."""


class InsiAuthMode(StrEnum):
    """How the software authenticates to INSi."""

    MTLS = "mtls"
    """The organisation's ``INSI-AUTO``/``INSI-MANU`` certificate in mutual TLS (the default)."""
    ASSERTION = "assertion"
    """A card-based (CPx) assertion in ``wsse:Security``, from a pluggable provider."""


class InsiSettings(BaseModel):
    """Options of the INSi teleservice client."""

    model_config = _FROZEN

    auth_mode: InsiAuthMode = InsiAuthMode.MTLS
    """Mutual TLS (default) or a card-based assertion."""
    emitter: str | None = Field(default=None, min_length=1)
    """``Emetteur`` of ``ContexteBAM``/``ContexteLPS``; by default the organisation's national id.
    Public clients send the certificate subject's OU (mTLS) or the professional's id [I]."""
    message_id_prefix: Literal["uuid:", "urn:uuid:"] = "uuid:"
    """Form of ``wsa:MessageID`` on INSi requests: ``uuid:<uuid4>`` as every captured INSi
    request carries it (the default), or the RFC 4122 ``urn:uuid:`` form used elsewhere."""


class MssanteAuthMode(StrEnum):
    """How the software authenticates to its MSSanté operator (SMTP and IMAP)."""

    CERTIFICATE = "certificate"
    """Applicative mailbox (BAL APP): the organisation's IGC-Santé certificate in mutual TLS after STARTTLS."""
    XOAUTH2 = "xoauth2"
    """Personal or organisational mailbox: SASL XOAUTH2 with the user's Pro Santé Connect access token."""


class MssanteSettings(BaseModel):
    """Options of the MSSanté mail transport; the servers themselves come from :class:`Environment`."""

    model_config = _FROZEN

    auth_mode: MssanteAuthMode = MssanteAuthMode.CERTIFICATE
    """Client certificate (applicative mailbox, the default) or XOAUTH2 with a PSC token."""
    mailbox: str | None = Field(default=None, min_length=3, pattern=r"^[^@\s]+@[^@\s]+$")
    """Your MSSanté address: the default sender, and the XOAUTH2/IMAP user unless ``login`` says otherwise."""
    login: str | None = Field(default=None, min_length=1)
    """Authentication identity when the operator's differs from ``mailbox``."""
    tls: TlsCredentials | None = None
    """Client certificate and trusted CAs for mail; by default the top-level ``tls``. An applicative
    mailbox uses an IGC-Santé "Élémentaire Organisation" certificate, often not the INSi one."""
    connect_timeout: float = Field(default=15.0, gt=0)
    """Time to open the connection and upgrade it with STARTTLS. The answer to the login waits up to
    ``timeout``: servers hold it after a refused login (see ``auth_failure_delay``). Every SMTP and
    IMAP call is bounded as a whole by ``timeouts.attempt`` and ``timeouts.call`` (or
    :func:`~dmp_connector.transport.deadline`), whatever the server sends."""
    timeout: float = Field(default=60.0, gt=0)
    """Longest wait for the next bytes of one server reply (a large DATA or FETCH counts as one)."""
    auth_failure_delay: float = Field(default=2.0, ge=0)
    """Seconds the server is expected to hold a login after a refused one (Dovecot's
    ``auth_failure_delay`` defaults to 2 s; its auth penalty grows with each failure, up to 15 s):
    a refused token is refreshed and tried again only when the call has more than this left. An
    estimate: set it to what your operator's server does."""
    max_message_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    """Largest message sent, as serialised; 25 MB is the cap towards Mon espace santé. A smaller
    ``SIZE`` announced by the server applies too."""
    size_headroom_bytes: int = Field(default=4096, ge=0)
    """Bytes kept under the server's announced ``SIZE`` for the trace headers it adds before checking
    (Postfix counts its own ``Received``, ~300 bytes, and refuses with 552 after DATA); an estimate."""
    max_fetch_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    """Largest message read back over IMAP; a larger one is refused unread."""
    max_mime_depth: int = Field(default=32, ge=1)
    """Deepest nesting of MIME parts in a received message; a deeper one is a per-message error,
    never parsed (the email package recurses per level)."""
    max_mime_parts: int = Field(default=1000, ge=1)
    """Most MIME parts in a received message; real MSSanté mail has a handful."""
    max_header_bytes: int = Field(default=256 * 1024, ge=1024)
    """Largest header block of a received message (the top one, a part's, a listing's header fields)."""
    poison_memory: int = Field(default=10_000, ge=0)
    """How many unreadable messages a client remembers (by folder, UIDVALIDITY and UID) so that it
    does not download and parse them again on every poll; 0 turns the memory off."""
    nil: str | None = Field(default=None, min_length=1)
    """Product reference given when the software was declared on convergence.esante.gouv.fr, sent as
    ``X-MSS-NIL`` on every mail."""

    def identity(self) -> str:
        """The authentication identity (``login``, else ``mailbox``), or a clear error when neither is set."""
        user = self.login or self.mailbox
        if user is None:
            raise ConfigurationError(
                "no MSSanté mailbox is configured", hint="set mssante.mailbox to your MSSanté address"
            )
        return user


class DirectorySettings(BaseModel):
    """Access to the Annuaire Santé FHIR API, where professionals' MSSanté addresses are looked up.

    The API has no test platform: every environment reads the production directory (public
    data), at ``Environment.annuaire_url``. The key comes from an application subscribed to
    "API Annuaire Santé en libre accès" on the ANS API portal.
    """

    model_config = _FROZEN

    api_key: SecretStr | None = None
    """Sent as the ``ESANTE-API-KEY`` header; a secret (``DMP_CONNECTOR_DIRECTORY__API_KEY``)."""
    requests_per_second: float = Field(default=17.0, gt=0, le=17.0)
    """Ceiling on calls per second from this process; the API allows 17 per application."""
    page_size: int = Field(default=50, ge=1, le=1000)
    """``_count`` asked for each page of results (the API's default is 50)."""
    max_pages: int = Field(default=20, ge=1)
    """Most ``next`` links followed for one search, so that a broad search cannot run away."""
    ca_bundle: Path | None = None
    """CAs trusted for the API's server; by default the system store (the gateway is publicly certified)."""


class Timeouts(BaseModel):
    """HTTP timeouts in seconds; a deposit of large documents may need a longer ``write`` and ``attempt``.

    ``connect``, ``read``, ``write`` and ``pool`` bound each wait; ``attempt`` and ``call`` bound
    the whole: no attempt outlasts ``attempt`` (a server that sends one byte a second is cut there),
    no call outlasts ``call`` (its attempts and the waits between them). Override both for the calls
    made in a block with :func:`dmp_connector.transport.deadline`. See docs/retries.md.
    """

    model_config = _FROZEN

    connect: float = Field(default=10.0, gt=0)
    """Time to open the TCP connection and finish the TLS handshake."""
    read: float = Field(default=60.0, gt=0)
    """Longest wait for the next bytes of the answer."""
    write: float = Field(default=60.0, gt=0)
    """Longest wait to send the next bytes of the request."""
    pool: float = Field(default=10.0, gt=0)
    """Longest wait for a free connection in the pool."""
    attempt: float = Field(default=120.0, gt=0)
    """Longest one attempt may take: connect, TLS handshake, sending the request (MTOM streamed
    included), waiting and reading the whole answer. Over it the attempt ends in
    :class:`~dmp_connector.errors.RequestTimeout`, retried if the operation is safe to repeat."""
    call: float = Field(default=300.0, gt=0)
    """Longest one call may take: every attempt and every wait between attempts. No attempt is
    started, and no wait begun, that would end past it."""


class AuditSettings(BaseModel):
    """Where audit events go, and how patients are pseudonymised in them."""

    model_config = _FROZEN

    pseudonym_key: SecretStr | None = None
    """Secret key of the HMAC that pseudonymises the INS in events; without it a random key is
    drawn per process, so the same patient cannot be correlated across runs."""
    jsonl_path: Path | None = None
    """Append every event as one JSON line to this file."""
    log: bool = False
    """Also send every event to the ``dmp_connector.audit`` logger at INFO."""

    @field_validator("pseudonym_key")
    @classmethod
    def _key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 16:
            raise ValueError("the pseudonymisation key must be at least 16 bytes (32 recommended)")
        return value


class CdaSettings(BaseModel):
    """Where the official CDA conformance kit is, and how validation uses it.

    The SDK ships neither the CDA schema nor the ANS schematrons: they are official data the
    vendor downloads (the ANS *TestContenuCDA* kit) and points the SDK at. Without
    ``kit_dir`` only the structural checks run.
    """

    model_config = _FROZEN

    kit_dir: Path | None = None
    """Root of the kit: holds ``infrastructure/cda/CDA_extended.xsd``, ``schematrons/`` and
    ``jeuxDeValeurs/`` (``DMP_CONNECTOR_CDA__KIT_DIR``). Nothing is ever written there."""
    cache_dir: Path | None = None
    """Where compiled schematrons are kept between runs (``DMP_CONNECTOR_CDA__CACHE_DIR``); by default
    ``$XDG_CACHE_HOME/dmp-connector`` or ``~/.cache/dmp-connector``."""
    disk_cache: bool = True
    """Keep compiled schematrons on disk; False keeps them in memory only (each process compiles again)."""
    generic_schematrons: tuple[str, ...] = ("StrucMin", "IHE", "ModelesDeContenusCDA", "Modeles_ANS", "terminologie")
    """The kit-wide schematrons run on every document besides its volet's, as the kit's own pipeline
    does: ``StrucMin`` (header), ``IHE``, ``ModelesDeContenusCDA``, ``Modeles_ANS`` (sections and
    entries) and ``terminologie`` (codes against the terminologies the kit carries)."""

    @classmethod
    def from_environment(cls) -> CdaSettings:
        """``kit_dir`` and ``cache_dir`` from ``DMP_CONNECTOR_CDA__KIT_DIR`` / ``__CACHE_DIR``, for use without
        a full :class:`Settings` (which also needs the software's identity)."""
        values = {
            key: os.environ[f"DMP_CONNECTOR_CDA__{key.upper()}"]
            for key in ("kit_dir", "cache_dir")
            if os.environ.get(f"DMP_CONNECTOR_CDA__{key.upper()}")
        }
        return cls.model_validate(values)


DmpErrorKind = Literal["not_found", "closed", "already_exists", "access_denied"]
"""What a DMP-specific XDS error code means (:attr:`DmpSettings.error_codes`)."""
_UNCONFIRMED_DMP_ERROR_CODES: Final[dict[str, DmpErrorKind]] = {
    "DMPNotFound": "not_found",
    "DMPAccessDenied": "access_denied",
    "DMPPatientOpposition": "access_denied",
}


_AUTHORISATION_RENAMES: Final = {
    "authorization_list_mode": "authorisation_list_mode",
    "authorization_role_element": "authorisation_role_element",
}

DmpTransaction = Literal["consultation", "deposit", "delete", "administration"]
"""Kinds of DMP transaction that may each have their own VIHF authentication mode."""


class DmpSettings(BaseModel):
    """Options of the DMP client: the facts the reference notes mark [I], each with a documented default."""

    model_config = _FROZEN

    unique_id_root: str = Field(default="2.25", pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$", max_length=40)
    """Root OID of the submission-set and signature uniqueIds the client derives. ``2.25`` (UUID-based,
    ITU-T X.667) needs no registration; put your software's OID branch here if you have one."""
    source_id: str | None = Field(default=None, pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$", max_length=64)
    """SubmissionSet.sourceId, the sending software's root OID. Without it, an OID under ``2.25`` derived
    from the software's name and editor (stable from run to run) is sent [I]."""
    content_type_code: Code = Code.of("07", "1.2.250.1.213.2.2", "Consultation")
    """SubmissionSet.contentTypeCode (JDV_J59) when a deposit does not name one. The code system is the one
    DRIMbox sends (``04`` "Hospitalisation de jour"); ``07`` consultation is the reference's example [I]."""
    page_size: int = Field(default=100, ge=1, le=1000)
    """Entries fetched per GetDocuments call when a search is too large for one LeafClass answer."""
    max_references: int = Field(default=5000, ge=1)
    """Most references (ObjectRef) one search answer may hold; more raises
    :class:`~dmp_connector.errors.LimitExceededError` rather than fetching an unbounded list."""
    max_pages: int = Field(default=50, ge=1)
    """Most GetDocuments pages one call may send (``page_size`` entries each)."""
    authentication_mode: Literal["DIRECTE", "INDIRECTE", "INDIRECTE_RENFORCEE"] = "INDIRECTE"
    """VIHF ``Authentification_Mode`` of every DMP call: the organisation's certificate (indirect) by default."""
    accept_found_without_ins: bool = False
    """Accept a TD0.2/TD1.3a answer saying a DMP exists (``OK``) that names no INS. The public clients read
    the answer's patient id but none says the DMP always sends it [I]; such an answer cannot be checked
    against the INS asked, so by default it is refused as unverifiable
    (:class:`~dmp_connector.errors.PatientMismatchError`). ``True`` takes it as the asked patient's."""
    authentication_modes: dict[DmpTransaction, Literal["DIRECTE", "INDIRECTE", "INDIRECTE_RENFORCEE"]] = Field(
        default_factory=dict
    )
    """``Authentification_Mode`` per kind of transaction, over ``authentication_mode``: ``consultation``
    (searches, retrieval, TD0.x reads), ``deposit`` (ITI-41), ``delete`` (deletion, status and visibility
    changes), ``administration`` (authorisations, patient registration). DRIMbox sends the reinforced
    mode (AIR) for consultation only and ``INDIRECTE`` for deposit and delete [V]; whether the DMP accepts
    AIR elsewhere is not public [I]. :func:`dmp_connector.psc.air_settings` fills it that way."""
    reinforced_context_class: str | None = None
    """``AuthnContextClassRef`` sent in reinforced mode: None keeps the VIHF default (``…:TLSClient``, as
    DRIMbox); the ANS/CNAM editor kit sends ``…:Password`` [V]. Which one the DMP expects is not public [I]."""
    test_existence_action: str = Field(default="urn:hl7-org:v3:PRPA_IN201307UV02", min_length=1)
    """``wsa:Action`` of TD0.2: DRIMbox sends the request's interaction; the editor kit's proxy sends
    ``urn:hl7-org:v3:PRPA_IN201308UV02``."""
    hl7_processing_code: Literal["P", "D", "T"] = "P"
    """``processingCode`` of the HL7 v3 messages (TD0.2, TD0.5, TD1.x): production; DRIMbox sends ``D`` to
    the test platforms [I]."""
    close_registration_status: Literal["completed", "terminated"] = "completed"
    """``registrationRequest/statusCode`` of a TD1.4 closure: ``completed`` in the ANS/CNAM editor kit,
    ``terminated`` in Mediboard; the patient's own status is ``terminated`` in both."""
    patient_list_date_format: str = Field(default="%d%m%Y", min_length=2)
    """``strftime`` form of TD0.4's date: the kit sends ``"01012018"`` (read here as ``DDMMYYYY``);
    DmpConnect-JS documents ``YYYYMMDD`` for its own input (``%Y%m%d``). Not public [I]."""
    patient_list_elements: tuple[str, str] = ("date", "type")
    """Element names of TD0.4's date and type: the kit passes them as parameters whose wire names are
    not public [I]."""
    authorisation_list_mode: str = Field(default="TOUTE", min_length=1)
    """``mode`` of ``listAuthorizationByPatient``: ``TOUTE`` is the kit's; other modes are not confirmed."""
    authorisation_role_element: str = Field(default="role", min_length=1)
    """Element name of TD0.3's role (``MEDECIN_TRAITANT``): the kit's parameter is of type ``roleType``;
    its wire name is not public [I]."""

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, data: Any) -> Any:
        """``authorization_*`` keys (until 0.1) still load, with a warning (removed in the next release)."""
        if isinstance(data, dict) and any(key in data for key in _AUTHORISATION_RENAMES):
            data = dict(data)
            for old, new in _AUTHORISATION_RENAMES.items():
                if old in data:
                    warnings.warn(f"dmp.{old} is deprecated: use dmp.{new}", DeprecationWarning, stacklevel=2)
                    data.setdefault(new, data.pop(old))
        return data

    @property
    def authorization_list_mode(self) -> str:
        """Deprecated spelling of :attr:`authorisation_list_mode`."""
        warnings.warn("authorization_list_mode is deprecated: use authorisation_list_mode", DeprecationWarning, 2)
        return self.authorisation_list_mode

    @property
    def authorization_role_element(self) -> str:
        """Deprecated spelling of :attr:`authorisation_role_element`."""
        warnings.warn("authorization_role_element is deprecated: use authorisation_role_element", DeprecationWarning, 2)
        return self.authorisation_role_element

    error_codes: dict[str, DmpErrorKind] = Field(default_factory=lambda: dict(_UNCONFIRMED_DMP_ERROR_CODES))
    """DMP-specific XDS ``RegistryError`` codes and the typed error each raises. None of these codes is
    public (the defaults are the sandbox's names) [I]: add the real ones when the DMP guide names them.
    The ITI TF-3 codes (``XDSUnknownPatientId`` …) and the public ``DMPClosed``/``DMPFound`` are mapped
    whatever this table says."""
    confirm_duplicates: bool = True
    """When a replayed deposit meets ``XDSDuplicateUniqueIdInRegistry``, read the stored entry back
    (GetDocuments by uniqueId) to compare its hash before reporting "already deposited"."""


class PscClientAuth(StrEnum):
    """How the software (the intermediate server) authenticates to Pro Santé Connect."""

    MTLS = "tls_client_auth"
    """Mutual TLS with the organisation's certificate: the production form (Espace de Confiance)."""
    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name
    """HTTP Basic with the client secret (Espace Communautaire, the sandbox)."""
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 - a method name
    """The client secret in the form body, as DRIMbox sends it to the token endpoint."""


_PSC_BAS = "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"


class PscSettings(BaseModel):
    """Pro Santé Connect (the professional's OpenID Connect login). Defaults: the BAS test platform.

    PSC's lifetimes, hosts and signing algorithm are not all public (``docs/psc.md``): every such
    fact is a setting here, and token lifetimes are read from the tokens, never assumed.
    """

    model_config = _FROZEN

    issuer: str = Field(default=_PSC_BAS, pattern=r"^https://\S+[^/]$")
    """Issuer (``https://<auth-host>/auth/realms/esante-wallet``); production: ``auth.esw.esante.gouv.fr`` [V]."""
    discovery_path: str = Field(default="/.well-known/wallet-openid-configuration", pattern=r"^/\S*$")
    """Appended to ``issuer``: PSC's discovery is **not** at ``openid-configuration`` [V]."""
    client_id: str | None = Field(default=None, min_length=1)
    """The client id PSC gave the service (one per DataPass)."""
    client_auth: PscClientAuth = PscClientAuth.CLIENT_SECRET_BASIC
    """Client authentication: ``tls_client_auth`` (mTLS, required in production) or a client secret."""
    client_secret: SecretStr | None = None
    """The client secret for the two secret modes (never logged)."""
    tls: TlsCredentials | None = None
    """CA bundle and, for ``tls_client_auth``, the client certificate; ``tls`` of the settings if unset."""
    scope: str = Field(default="openid scope_all", min_length=6)
    """Scopes asked for (DRIMbox, ANS's proxy)."""
    acr_values: str = Field(default="eidas1", min_length=1)
    """``acr_values`` asked for; PSC's Keycloak accepts only ``eidas1`` [V]."""
    accepted_acr: tuple[str, ...] = ("eidas1",)
    """``acr`` values a token may carry (a 2021 introspection sample shows ``eidas3`` [V]: add it if met)."""
    algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256")
    """Signature algorithms accepted on tokens; PSC's production algorithm is not public [I]."""
    check_access_token_nonce: bool = True
    """Check the nonce in the access token too, as DRIMbox does [V] (the ID token's is always checked)."""
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    """Clock skew tolerated on ``exp``/``iat``/``nbf``."""
    refresh_margin_seconds: float = Field(default=20.0, ge=0)
    """Refresh the access token this long before its ``exp`` (PSC's lifetime: 60–120 s observed [V])."""
    redirect_uri: str | None = None
    """Redirect URI of the browser flow, registered with PSC exactly [V]."""
    post_logout_redirect_uri: str | None = None
    """Where PSC sends the browser after logout (browser flow), registered exactly."""
    ciba_channel: Literal["CARD", "MOBILE"] | None = None
    """ANS's proxy's custom CIBA ``channel`` parameter; what PSC does with it is not public [I]."""
    ciba_slow_down_seconds: float = Field(default=5.0, gt=0)
    """Added to the polling interval at each ``slow_down`` (CIBA Core §11 says 5 s)."""
    ciba_max_wait_seconds: float = Field(default=300.0, gt=0)
    """Upper bound on one CIBA wait, whatever ``expires_in`` PSC announces."""
    air_subject_id: Literal["given_family", "family_given"] = "given_family"
    """AIR VIHF ``subject-id``: DRIMbox writes ``prénom nom`` of the exercise [V]; the SDK's
    indirect mode writes ``NOM, Prénom``."""


_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("dmp_connector_config_file", default=None)


class Settings(BaseSettings):
    """Everything a client needs; see the module docstring for how it is loaded."""

    model_config = SettingsConfigDict(
        use_attribute_docstrings=True,
        env_prefix="DMP_CONNECTOR_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    software: SoftwareIdentity
    """The calling software's identity (required: the services refuse anonymous software)."""
    environment: Annotated[Environment, NoDecode] = Field(default_factory=Environment.sandbox)
    """Target environment; a name (``"test"``) or a table that overrides a preset."""
    organisation: Organisation | None = None
    """The calling organisation; required by INSi, the DMP and MSSanté."""
    professional: Professional | None = None
    """The acting professional; required for calls made in a professional's name."""
    tls: TlsCredentials = Field(default_factory=TlsCredentials)
    """Client certificate and trusted CAs."""
    signing: SigningSettings = Field(default_factory=SigningSettings)
    """Signature certificate and algorithms (VIHF, submission sets)."""
    insi: InsiSettings = Field(default_factory=InsiSettings)
    """INSi client options."""
    mssante: MssanteSettings = Field(default_factory=MssanteSettings)
    """MSSanté mail options (authentication mode, mailbox, limits)."""
    directory: DirectorySettings = Field(default_factory=DirectorySettings)
    """Annuaire Santé API access (key, rate limit)."""
    timeouts: Timeouts = Field(default_factory=Timeouts)
    """HTTP timeouts."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """Retry policy for operations that are safe to repeat."""
    xml: XmlLimits = Field(default_factory=XmlLimits)
    """Bounds on every XML input."""
    audit: AuditSettings = Field(default_factory=AuditSettings)
    """Audit sinks and pseudonymisation."""
    cda: CdaSettings = Field(default_factory=CdaSettings)
    """The CDA conformance kit used to validate documents."""
    dmp: DmpSettings = Field(default_factory=DmpSettings)
    """DMP client options (derived unique ids, contentTypeCode default, paging, VIHF authentication mode)."""
    psc: PscSettings = Field(default_factory=PscSettings)
    """Pro Santé Connect client (issuer, client id, client authentication, token checks)."""

    @field_validator("environment", mode="before")
    @classmethod
    def _environment_preset(cls, value: Any) -> Any:
        if isinstance(value, str):
            # From an environment variable: a preset name, or a JSON table.
            if value.lstrip().startswith("{"):
                value = json.loads(value)
            else:
                return Environment.preset(value)
        required = ("insi_url", "insi_mtls_url", "dmp_base_url")
        if isinstance(value, dict) and "name" in value and not all(k in value for k in required):
            data = dict(value)
            return Environment.preset(data.pop("name"), **data)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Code over environment variables over the TOML file given to :meth:`load`."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=_read_toml(path)))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Self:
        """Load from a TOML file (or ``$DMP_CONNECTOR_CONFIG``), environment variables and ``overrides``.

        Every problem is reported at once as a :class:`ConfigurationError` naming the
        setting, never with a secret value.
        """
        raw = config_file if config_file is not None else os.environ.get("DMP_CONNECTOR_CONFIG")
        path = Path(raw) if raw else None
        if path is not None:
            if not path.is_file():
                raise ConfigurationError(
                    f"configuration file {path} does not exist", hint="check --config or DMP_CONNECTOR_CONFIG"
                )
            if not os.access(path, os.R_OK):
                raise ConfigurationError(f"configuration file {path} is not readable", hint="check its permissions")
        token = _config_file.set(path)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise _config_error(exc, path) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"cannot read configuration file {path}: {exc}") from exc
        finally:
            _config_file.reset(token)

    def require_organisation(self) -> Organisation:
        """The organisation, or a clear error naming the missing setting."""
        if self.organisation is None:
            raise ConfigurationError(
                "no organisation is configured", hint="set [organisation] id, id_kind and name in your configuration"
            )
        return self.organisation

    def require_professional(self) -> Professional:
        """The professional, or a clear error naming the missing setting."""
        if self.professional is None:
            raise ConfigurationError(
                "no professional is configured",
                hint="set [professional] id, family_name, given_name and profession in your configuration",
            )
        return self.professional


_PATH_KEYS = ("cert_file", "key_file", "pkcs12_file", "ca_bundle", "jsonl_path", "kit_dir", "cache_dir")


def _read_toml(path: Path) -> dict[str, Any]:
    """The TOML file as a dict, with relative file paths made relative to the file itself."""
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return _anchor_paths(data, path.resolve().parent)


def _anchor_paths(node: dict[str, Any], base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out[key] = _anchor_paths(value, base)
        elif key in _PATH_KEYS and isinstance(value, str) and not Path(value).expanduser().is_absolute():
            out[key] = str(base / value)
        else:
            out[key] = value
    return out


def _config_error(exc: ValidationError, path: Path | None) -> ConfigurationError:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        problems.append(f"{where}: {err['msg']}")
    origin = f" (file {path})" if path else ""
    return ConfigurationError(
        f"invalid configuration{origin}: " + "; ".join(problems),
        hint="settings come from code, DMP_CONNECTOR_* environment variables and the TOML file",
    )


from dmp_connector._help import document_fields  # noqa: E402 - after the models it documents

document_fields(globals()[name] for name in __all__ if name in globals())
