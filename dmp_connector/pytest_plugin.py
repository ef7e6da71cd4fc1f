"""The pytest plugin (``pytest11`` entry point): sandbox and client fixtures for vendors' test suites.

Every fixture is named ``dmpc_*`` and is lazy: nothing is imported, generated or started until
a test asks for it, so the plugin costs nothing to a test run that does not use it. The
heavy pieces (the SDK, the sandbox, respx) are imported inside the fixtures for that reason.

In-process fixtures share one state per test: ``dmpc_insi`` and ``dmpc_dmp`` talk to
``dmpc_insi_simulator`` and ``dmpc_dmp_simulator`` through the scripts of ``dmpc_faults``,
record their audit events in ``dmpc_audit``, and ``dmpc_loopback_sandbox`` serves the same
simulators on 127.0.0.1 with mutual TLS. See ``docs/testing.md`` (The pytest plugin).

The practice the tests stand for (structure id and kind, professional id and kind, names) is
set in one place: the ``dmpc_*`` ini options (:data:`PRACTICE_OPTIONS`) or an override of the
``dmpc_practice`` fixture. The test PKI is issued for it and ``dmpc_settings`` carries it.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import respx
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from lxml import etree

    from dmp_connector.audit import MemorySink
    from dmp_connector.config import DmpService, Settings
    from dmp_connector.dmp.client import AsyncDmpClient, DmpClient
    from dmp_connector.dmp.td import DmpStatus
    from dmp_connector.ins.client import AsyncInsiClient, InsiClient
    from dmp_connector.mssante import MssanteClient
    from dmp_connector.psc import CibaRequest, PscClient, PscSession
    from dmp_connector.sandbox import (
        DmpFault,
        DmpSimulator,
        Handler,
        HttpRequest,
        HttpResponse,
        InsiSimulator,
        LoopbackServer,
        SandboxPractice,
        ScriptedHandler,
        SeededIdentity,
        SimulatedFault,
        TestPki,
        TestPkiFiles,
    )
    from dmp_connector.sandbox.mssante import SandboxMailOperator
    from dmp_connector.sandbox.psc import PscSimulator
    from dmp_connector.xds import DocumentEntry

__all__ = [
    "DMPC_COLLEAGUE_MAILBOX",
    "DMPC_MAILBOX",
    "DMPC_PATIENT_MATRICULE",
    "PRACTICE_OPTIONS",
    "FaultInjector",
    "LoopbackSandbox",
    "PendingCiba",
    "RespxDmp",
    "RespxInsi",
    "SandboxPki",
    "dmpc_async_dmp",
    "dmpc_async_insi",
    "dmpc_audit",
    "dmpc_dmp",
    "dmpc_dmp_simulator",
    "dmpc_faults",
    "dmpc_insi",
    "dmpc_insi_simulator",
    "dmpc_loopback_sandbox",
    "dmpc_mail_operator",
    "dmpc_mssante",
    "dmpc_pki",
    "dmpc_practice",
    "dmpc_psc",
    "dmpc_psc_ciba",
    "dmpc_psc_client",
    "dmpc_psc_session",
    "dmpc_psc_settings",
    "dmpc_respx_dmp",
    "dmpc_respx_insi",
    "dmpc_settings",
    "insi_answer",
    "pytest_addoption",
]

PRACTICE_OPTIONS: dict[str, tuple[str, str]] = {
    "dmpc_structure_id": ("structure_id", "the structure's own id without prefix (9-digit FINESS, 14-digit SIRET …)"),
    "dmpc_structure_id_kind": ("structure_id_kind", "FINESS (default), SIRET, SIREN, ADELI_RANG or RPPS_RANG"),
    "dmpc_organisation_name": ("organisation_name", "the organisation's name (certificate O)"),
    "dmpc_professional_id": ("professional_id", "the professional's own id without prefix (11-digit RPPS …)"),
    "dmpc_professional_id_kind": ("professional_id_kind", "RPPS (default) or ADELI"),
    "dmpc_professional_family_name": ("family_name", "the professional's family name"),
    "dmpc_professional_given_name": ("given_name", "the professional's given name"),
}
"""The ini options that set the sandbox practice (``dmpc_practice``), and the field each fills."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """The practice's identifiers as ini options (pytest.ini / pyproject ``[tool.pytest.ini_options]``)."""
    for name, (_field, help_text) in PRACTICE_OPTIONS.items():
        parser.addini(name, f"dmp_connector sandbox: {help_text}", default="")


# ------------------------------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class SandboxPki:
    """The test PKI ``generate_test_pki`` wrote, and its root loaded once (the DMP simulator trusts it)."""

    files: TestPkiFiles
    """Paths of every certificate and key (``files.tls_credentials()``, ``files.signing_credentials()`` …)."""
    ca_certificate: x509.Certificate
    """The root every test certificate chains to."""


@dataclass
class FaultInjector:
    """Faults queued in front of the in-process simulators, one per request, then the simulator answers.

    ``DmpFault`` presets are HTTP-level (503, latency, timeout, dropped or malformed answer) and
    work in front of either simulator; ``SimulatedFault`` is an INSi SOAP fault; an
    ``HttpResponse`` or a handler is sent as is. ``insi_script.requests`` and
    ``dmp_script.requests`` record what each simulator was sent.
    """

    insi_script: ScriptedHandler
    dmp_script: ScriptedHandler

    def insi(self, *faults: DmpFault | SimulatedFault | HttpResponse | Handler) -> FaultInjector:
        """Queue answers for the next INSi requests."""
        self.insi_script.then(*(_entry(fault, self.insi_script.handler) for fault in faults))
        return self

    def dmp(self, *faults: DmpFault | SimulatedFault | HttpResponse | Handler) -> FaultInjector:
        """Queue answers for the next DMP requests."""
        self.dmp_script.then(*(_entry(fault, self.dmp_script.handler) for fault in faults))
        return self


def _entry(fault: DmpFault | SimulatedFault | HttpResponse | Handler, simulator: Handler) -> HttpResponse | Handler:
    from dmp_connector.sandbox import DmpFault, SimulatedFault

    if isinstance(fault, DmpFault):
        return fault.entry(simulator)
    if isinstance(fault, SimulatedFault):
        return fault.respond
    return fault


@dataclass(frozen=True)
class LoopbackSandbox:
    """INSi and the DMP served on ``url`` over HTTPS with mutual TLS; ``settings`` point at it."""

    url: str
    """``https://127.0.0.1:<port>``: INSi under ``/insi/lps``, the DMP under its service path."""
    settings: Settings
    """``dmpc_settings`` with the environment moved to :attr:`url` (TLS from the test PKI)."""
    server: LoopbackServer
    """The running server (stopped at teardown)."""


def insi_answer(code: str, identity: SeededIdentity | None = None) -> bytes:
    """A canned INSi answer (``RESULTAT``) as the service sends it: ``00`` with ``identity``, ``01`` or ``02``.

    Written from a template rather than by the simulator, so that a respx test never depends on
    the request's content.
    """
    from dmp_connector.ins.insi import INSI_RESULTAT_NS
    from dmp_connector.soap.namespaces import SOAP12_ENV

    labels = {"00": "OK", "01": "Aucune identite trouvee", "02": "Plusieurs identites trouvees"}
    if code not in labels:
        raise ValueError(f"INSi answers 00, 01 or 02, not {code!r} (a fault is SimulatedFault.envelope())")
    individu = ""
    if code == "00":
        if identity is None or identity.ins is None:
            raise ValueError("a 00 answer needs an identity with an INS")
        ins, traits = identity.ins, identity.traits
        place = f"<LieuNaissance>{html.escape(traits.birth_place)}</LieuNaissance>" if traits.birth_place else ""
        individu = (
            f"<INDIVIDU><INSACTIF><IdIndividu><NumIdentifiant>{ins.nir13}</NumIdentifiant><Cle>{ins.key}</Cle>"
            f"</IdIndividu><OID>{ins.oid.value}</OID></INSACTIF>"
            f"<TIQ><NomNaissance>{html.escape(traits.birth_name)}</NomNaissance>"
            f"<ListePrenom>{html.escape(' '.join(traits.birth_first_names))}</ListePrenom>"
            f"<Sexe>{traits.sex.value}</Sexe><DateNaissance>{traits.birth_date.iso()}</DateNaissance>{place}</TIQ>"
            "</INDIVIDU>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="{SOAP12_ENV}"><soap:Body>'
        f'<RESULTAT xmlns="{INSI_RESULTAT_NS}"><CR><CodeCR>{code}</CodeCR><LibelleCR>{labels[code]}</LibelleCR></CR>'
        f"{individu}</RESULTAT></soap:Body></soap:Envelope>"
    ).encode()


class RespxInsi:
    """Canned INSi answers on the URL the settings name, through a respx router (no simulator).

    Each method replaces the route's answer and returns the route (``route.call_count``,
    ``route.calls``); ``route.mock(side_effect=[...])`` scripts a sequence.
    """

    def __init__(self, router: respx.MockRouter, url: str) -> None:
        self.router = router
        self.url = url
        self.route: respx.Route = router.post(url)

    def _answer(self, status: int, body: bytes) -> respx.Route:
        import httpx

        headers = {"Content-Type": "application/soap+xml; charset=utf-8"}
        return self.route.mock(return_value=httpx.Response(status, headers=headers, content=body))

    def found(self, identity: SeededIdentity | None = None) -> respx.Route:
        """Answer 00 with ``identity`` (default: ADRUN ZOE, the first seeded identity)."""
        from dmp_connector.sandbox import DEFAULT_INSI_IDENTITIES

        return self._answer(200, insi_answer("00", identity or DEFAULT_INSI_IDENTITIES[0]))

    def not_found(self) -> respx.Route:
        """Answer 01: no identity matches."""
        return self._answer(200, insi_answer("01"))

    def several(self) -> respx.Route:
        """Answer 02: several identities match (the client refines its search, each time 02)."""
        return self._answer(200, insi_answer("02"))

    def fault(self, fault: SimulatedFault | None = None) -> respx.Route:
        """Answer a SOAP fault over HTTP 500 (default: the transient ``insi_102``)."""
        from dmp_connector.sandbox import SimulatedFault

        return self._answer(500, (fault or SimulatedFault.technical()).envelope())


_SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"


class RespxDmp:
    """Canned national DMP answers on the URLs the settings name, through a respx router (no simulator).

    One route per service (``routes[DmpService.REPOSITORY]`` …), created on first use; each
    method replaces that route's answer and returns it (``route.call_count``, ``route.calls``).
    """

    def __init__(self, router: respx.MockRouter, settings: Settings) -> None:
        self.router = router
        self.settings = settings
        self.routes: dict[DmpService, respx.Route] = {}

    def route(self, service: DmpService) -> respx.Route:
        """The route of ``service`` (``settings.environment.dmp_url(service)``), created on first use."""
        if service not in self.routes:
            self.routes[service] = self.router.post(self.settings.environment.dmp_url(service))
        return self.routes[service]

    def _soap(self, service: DmpService, body: etree._Element, status: int = 200) -> respx.Route:
        import httpx

        from dmp_connector.soap import Addressing, build_envelope
        from dmp_connector.xml import to_bytes

        anonymous = Addressing(action="urn:dmpc:canned", to="http://www.w3.org/2005/08/addressing/anonymous")
        content = to_bytes(build_envelope(body, addressing=anonymous))
        answer = httpx.Response(status, headers={"Content-Type": _SOAP_CONTENT_TYPE}, content=content)
        return self.route(service).mock(return_value=answer)

    def deposited(self) -> respx.Route:
        """The repository answers ``RegistryResponse`` Success: a deposit (TD2.1) succeeds."""
        from dmp_connector.config import DmpService

        return self.registry_success(DmpService.REPOSITORY)

    def registry_success(self, service: DmpService) -> respx.Route:
        """``service`` answers ``RegistryResponse`` Success (the registry for metadata updates)."""
        from dmp_connector.xds import RegistryResponse, ResponseStatus, build_registry_response

        return self._soap(service, build_registry_response(RegistryResponse(status=ResponseStatus.SUCCESS)))

    def registry_failure(self, error_code: str, context: str = "", *, service: DmpService | None = None) -> respx.Route:
        """``RegistryResponse`` Failure with one XDS error (``XDSRegistryMetadataError``, ``DMPClosed`` …).

        On the repository by default (a refused deposit); the client raises ``DmpRegistryError``
        or one of its typed subclasses.
        """
        from dmp_connector.config import DmpService
        from dmp_connector.xds import RegistryError, RegistryResponse, ResponseStatus, build_registry_response

        error = RegistryError(error_code=error_code, code_context=context or error_code)
        response = RegistryResponse(status=ResponseStatus.FAILURE, errors=(error,))
        return self._soap(service or DmpService.REPOSITORY, build_registry_response(response))

    def found(self, *entries: DocumentEntry) -> respx.Route:
        """The registry answers a query (FindDocuments, GetDocuments …) with ``entries`` (none: empty)."""
        from dmp_connector.config import DmpService
        from dmp_connector.xds import (
            AdhocQueryResponse,
            RegistryResponse,
            ResponseStatus,
            build_adhoc_query_response,
        )

        response = AdhocQueryResponse(response=RegistryResponse(status=ResponseStatus.SUCCESS), documents=entries)
        return self._soap(DmpService.REGISTRY, build_adhoc_query_response(response))

    def dmp_status(self, status: DmpStatus | None = None) -> respx.Route:
        """TD0.2 answers ``status`` (default: ADRUN ZOE's open DMP, this professional authorised)."""
        import datetime as dt

        from dmp_connector.config import DmpService
        from dmp_connector.dmp import _td
        from dmp_connector.dmp.td import AuthorizationStatus, DmpState
        from dmp_connector.dmp.td import DmpStatus as Status
        from dmp_connector.sandbox import DEFAULT_DMP_PATIENTS

        if status is None:
            status = Status(
                exists=True,
                ins=DEFAULT_DMP_PATIENTS[0].ins,
                state=DmpState.ACTIVE,
                authorization=AuthorizationStatus.VALID,
                treating_doctor=False,
            )
        header = _td.Hl7Header(
            message_id="dmpc-canned",
            id_root=_td.DMP_DEVICE_ROOT,
            creation_time=dt.datetime.now(dt.UTC),
            sender_root=_td.DMP_DEVICE_ROOT,
            receiver_root="1.2.250.1.999",
        )
        ack = _td.Acknowledgement(type_code=_td.AckType.ACCEPT)
        return self._soap(DmpService.PATIENTS, _td.build_patient_query_response(header, ack, status))

    def fault(
        self, service: DmpService, *, code: str = "Receiver", subcode: str | None = None, reason: str = "Erreur interne"
    ) -> respx.Route:
        """A SOAP 1.2 fault over HTTP 500 (``Receiver`` is retried by the client, ``Sender`` is not)."""
        import httpx

        sub = ""
        if subcode:
            sub = f'<env:Subcode><env:Value xmlns:d="urn:dmp">d:{html.escape(subcode)}</env:Value></env:Subcode>'
        body = (
            '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault>'
            f"<env:Code><env:Value>env:{html.escape(code)}</env:Value>{sub}</env:Code>"
            f'<env:Reason><env:Text xml:lang="fr">{html.escape(reason)}</env:Text></env:Reason>'
            "</env:Fault></env:Body></env:Envelope>"
        )
        answer = httpx.Response(500, headers={"Content-Type": _SOAP_CONTENT_TYPE}, content=body.encode())
        return self.route(service).mock(return_value=answer)


def _ca_only_pki(ca_certificate: x509.Certificate, placeholder: RSAPrivateKey) -> TestPki:
    """The plugin's root for the mail operator, which only reads ``ca_pem`` when given its server certificate.

    ``generate_test_pki`` keeps no CA key on disk: ``placeholder`` fills the slot and issuing refuses.
    """
    from dmp_connector.errors import ConfigurationError
    from dmp_connector.sandbox import IssuedCertificate, TestPki

    class CaOnlyPki(TestPki):
        def _issue(self, *args: Any, **kwargs: Any) -> IssuedCertificate:
            raise ConfigurationError("the pytest plugin's PKI issues no new certificates (its CA key is not kept)")

    return CaOnlyPki(IssuedCertificate(ca_certificate, placeholder))


DMPC_MAILBOX = "lps@cabinet-sandbox.mssante.fr"
"""The applicative mailbox of ``dmpc_mssante``: the PKI's organisation certificate (CN INSI-AUTO) opens it."""
DMPC_COLLEAGUE_MAILBOX = "dr.confrere@medecin.mssante.fr"
"""A colleague's personal mailbox (``dmpc_mail_operator.issue_token`` opens it; ``.stored`` reads it)."""
DMPC_PATIENT_MATRICULE = "275126322074974"
"""ADRUN ZOE (the first seeded INSi and DMP patient), whose Mon espace santé mailbox is open."""


@dataclass(frozen=True)
class PendingCiba:
    """A CIBA login waiting on the simulated e-CPS: approve, deny or expire it on ``simulator``, then
    ``client.wait_ciba(request)``."""

    simulator: PscSimulator
    client: PscClient
    request: CibaRequest


DMPC_PSC_CLIENT_ID = "sandbox-lps"
DMPC_PSC_SECRET = "sandbox-secret"  # noqa: S105 - the sandbox's client secret
DMPC_PSC_LOGIN_HINT = "899700000001"
"""The PSC simulator's professional at the plugin PKI's structure (SANDBOX JEANNE)."""


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def dmpc_practice(pytestconfig: pytest.Config) -> SandboxPractice:
    """The practice the sandbox stands for, from the ``dmpc_*`` ini options (defaults: the sandbox's own).

    Override it in your ``conftest.py`` (session scope) to give it in code:
    ``return SandboxPractice(structure_id="…", professional_id="…")``. The PKI and ``dmpc_settings``
    follow it.
    """
    from dmp_connector.sandbox import SandboxPractice

    values = {field: str(pytestconfig.getini(name)).strip() for name, (field, _help) in PRACTICE_OPTIONS.items()}
    return SandboxPractice.of(**values)


@pytest.fixture(scope="session")
def dmpc_pki(tmp_path_factory: pytest.TempPathFactory, dmpc_practice: SandboxPractice) -> SandboxPki:
    """A throw-away PKI (CA, server, organisation auth + sign, professional), made once per session.

    Issued for ``dmpc_practice``: OU = its structure's national id, the professional's CN = its
    IdNat_PS. Session-scoped because RSA key generation is the slow part of a sandbox test.
    """
    from cryptography import x509

    from dmp_connector.sandbox import generate_test_pki

    files = generate_test_pki(tmp_path_factory.mktemp("dmpc-pki"), practice=dmpc_practice)
    return SandboxPki(files=files, ca_certificate=x509.load_pem_x509_certificate(files.ca_cert.read_bytes()))


@pytest.fixture
def dmpc_settings(dmpc_pki: SandboxPki, dmpc_practice: SandboxPractice) -> Settings:
    """Sandbox settings matching the PKI: software, ``dmpc_practice``'s organisation and professional, credentials.

    Retries are fast (10 ms, no jitter). Override this fixture in your ``conftest.py`` to use
    your own software identity: every client fixture follows it. Change the practice with the
    ``dmpc_*`` ini options or ``dmpc_practice`` rather than here, so that the certificates follow.
    """
    from dmp_connector.config import Environment, Settings, SigningSettings, SoftwareIdentity
    from dmp_connector.retries import RetryPolicy

    files = dmpc_pki.files
    return Settings(
        software=SoftwareIdentity(
            name="SandboxLPS",
            version="1.0",
            editor="Sandbox Editor",
            insi_authorisation_id="CNDA-SANDBOX",
            dmp_homologation_id="HOMOL-SANDBOX",
        ),
        organisation=dmpc_practice.organisation(),
        professional=dmpc_practice.professional(),
        environment=Environment.sandbox(),
        tls=files.tls_credentials(),
        signing=SigningSettings(credentials=files.signing_credentials()),
        retry=RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0.0),
    )


@pytest.fixture
def dmpc_audit() -> MemorySink:
    """The audit sink every client fixture writes to: one event per attempt (and one outcome per deposit)."""
    from dmp_connector.audit import MemorySink

    return MemorySink()


@pytest.fixture
def dmpc_insi_simulator() -> InsiSimulator:
    """The INSi simulator behind ``dmpc_insi``: edit ``.identities`` to seed your own patients."""
    from dmp_connector.sandbox import InsiSimulator

    return InsiSimulator()


@pytest.fixture
def dmpc_dmp_simulator(dmpc_pki: SandboxPki) -> DmpSimulator:
    """The DMP simulator behind ``dmpc_dmp`` (seeded patients, in memory): inspect ``.store`` after a call."""
    from dmp_connector.sandbox import DmpSimulator

    return DmpSimulator(trusted=[dmpc_pki.ca_certificate])


@pytest.fixture
def dmpc_faults(dmpc_insi_simulator: InsiSimulator, dmpc_dmp_simulator: DmpSimulator) -> FaultInjector:
    """Queue 503s, latency, timeouts, dropped or malformed answers in front of the simulators."""
    from dmp_connector.sandbox import ScriptedHandler

    return FaultInjector(ScriptedHandler(dmpc_insi_simulator), ScriptedHandler(dmpc_dmp_simulator))


@pytest.fixture
def dmpc_insi(dmpc_settings: Settings, dmpc_faults: FaultInjector, dmpc_audit: MemorySink) -> Iterator[InsiClient]:
    """An ``InsiClient`` on the in-process INSi simulator (through ``dmpc_faults``), audited to ``dmpc_audit``."""
    import httpx

    from dmp_connector.ins.client import InsiClient
    from dmp_connector.sandbox import as_transport, client_subject

    subject = client_subject(dmpc_settings.tls)
    with (
        httpx.Client(transport=as_transport(dmpc_faults.insi_script, client_subject=subject)) as http,
        InsiClient(dmpc_settings, http_client=http, audit=[dmpc_audit]) as client,
    ):
        yield client


@pytest.fixture
def dmpc_dmp(dmpc_settings: Settings, dmpc_faults: FaultInjector, dmpc_audit: MemorySink) -> Iterator[DmpClient]:
    """A ``DmpClient`` on the in-process DMP simulator, signing with the PKI's organisation certificate.

    Its requests present the settings' TLS client certificate, so that the simulator applies the
    certificate-versus-VIHF rules of ``dmpc_loopback_sandbox`` in-process too.
    """
    import httpx

    from dmp_connector.dmp.client import DmpClient
    from dmp_connector.sandbox import as_transport, client_subject

    subject = client_subject(dmpc_settings.tls)
    with (
        httpx.Client(transport=as_transport(dmpc_faults.dmp_script, client_subject=subject)) as http,
        DmpClient(dmpc_settings, http_client=http, audit=[dmpc_audit]) as client,
    ):
        yield client


@pytest.fixture
def dmpc_async_insi(
    dmpc_settings: Settings, dmpc_faults: FaultInjector, dmpc_audit: MemorySink
) -> Callable[[], AbstractAsyncContextManager[AsyncInsiClient]]:
    """Opens an ``AsyncInsiClient`` like ``dmpc_insi``: ``async with dmpc_async_insi() as insi``.

    A factory rather than a client, so that the client is opened in your test's own event loop
    whatever async plugin (or ``asyncio.run``) runs it.
    """

    @asynccontextmanager
    async def open_client() -> AsyncIterator[AsyncInsiClient]:
        import httpx

        from dmp_connector.ins.client import AsyncInsiClient
        from dmp_connector.sandbox import as_async_transport, client_subject

        transport = as_async_transport(dmpc_faults.insi_script, client_subject=client_subject(dmpc_settings.tls))
        async with (
            httpx.AsyncClient(transport=transport) as http,
            AsyncInsiClient(dmpc_settings, http_client=http, audit=[dmpc_audit]) as client,
        ):
            yield client

    return open_client


@pytest.fixture
def dmpc_async_dmp(
    dmpc_settings: Settings, dmpc_faults: FaultInjector, dmpc_audit: MemorySink
) -> Callable[[], AbstractAsyncContextManager[AsyncDmpClient]]:
    """Opens an ``AsyncDmpClient`` like ``dmpc_dmp``: ``async with dmpc_async_dmp() as dmp``."""

    @asynccontextmanager
    async def open_client() -> AsyncIterator[AsyncDmpClient]:
        import httpx

        from dmp_connector.dmp.client import AsyncDmpClient
        from dmp_connector.sandbox import as_async_transport, client_subject

        transport = as_async_transport(dmpc_faults.dmp_script, client_subject=client_subject(dmpc_settings.tls))
        async with (
            httpx.AsyncClient(transport=transport) as http,
            AsyncDmpClient(dmpc_settings, http_client=http, audit=[dmpc_audit]) as client,
        ):
            yield client

    return open_client


@pytest.fixture
def dmpc_loopback_sandbox(
    dmpc_pki: SandboxPki, dmpc_settings: Settings, dmpc_faults: FaultInjector
) -> Iterator[LoopbackSandbox]:
    """INSi and the DMP on 127.0.0.1 over HTTPS, a client certificate required (same simulators and faults).

    For tests of your TLS configuration and certificate loading: build your clients from
    ``sandbox.settings`` as in production, without ``http_client``.
    """
    import ssl

    from dmp_connector.config import Environment
    from dmp_connector.sandbox import LoopbackServer

    files = dmpc_pki.files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_cert, files.server_key)
    context.load_verify_locations(cafile=files.ca_cert)
    context.verify_mode = ssl.CERT_REQUIRED

    def route(request: HttpRequest) -> HttpResponse:
        insi = request.path.startswith("/insi/")
        return (dmpc_faults.insi_script if insi else dmpc_faults.dmp_script)(request)

    with LoopbackServer(route, ssl_context=context) as server:
        settings = dmpc_settings.model_copy(update={"environment": Environment.sandbox(server.url)})
        yield LoopbackSandbox(url=server.url, settings=settings, server=server)


@pytest.fixture
def dmpc_respx_insi(dmpc_settings: Settings) -> Iterator[RespxInsi]:
    """Canned INSi answers (00, 01, 02, faults) with respx on the URL ``dmpc_settings`` names.

    The router is local to the test (``respx.mock(assert_all_called=False)``): nothing else is
    patched. respx is not an SDK dependency; the test is skipped when it is missing.
    """
    respx = pytest.importorskip("respx", reason="dmpc_respx_insi needs respx: add it to your test requirements")
    from dmp_connector.config import InsiAuthMode

    environment = dmpc_settings.environment
    mtls = dmpc_settings.insi.auth_mode is InsiAuthMode.MTLS
    url = environment.insi_mtls_url if mtls else environment.insi_url
    with respx.mock(assert_all_called=False) as router:
        yield RespxInsi(router, url)


@pytest.fixture
def dmpc_respx_dmp(dmpc_settings: Settings) -> Iterator[RespxDmp]:
    """Canned national DMP answers (deposit, registry failure, queries, TD0.2, faults) with respx.

    On the URLs ``dmpc_settings`` names, through a router local to the test. respx is not an
    SDK dependency; the test is skipped when it is missing.
    """
    respx = pytest.importorskip("respx", reason="dmpc_respx_dmp needs respx: add it to your test requirements")

    with respx.mock(assert_all_called=False) as router:
        yield RespxDmp(router, dmpc_settings)


@pytest.fixture
def dmpc_mail_operator(dmpc_pki: SandboxPki) -> Iterator[SandboxMailOperator]:
    """An MSSanté operator (SMTP and IMAP with STARTTLS) on 127.0.0.1, certified by the plugin's PKI.

    Mailboxes: :data:`DMPC_MAILBOX` (applicative) and :data:`DMPC_COLLEAGUE_MAILBOX`; patient:
    :data:`DMPC_PATIENT_MATRICULE`. One per test, so that mail never leaks between tests. Needs
    the ``sandbox`` extra; the test is skipped when it is missing.
    """
    reason = "dmpc_mail_operator needs the sandbox extra: pip install 'dmp-connector[sandbox]'"
    pytest.importorskip("aiosmtpd", reason=reason)
    pytest.importorskip("pymap", reason=reason)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from dmp_connector.sandbox.mssante import PatientMailboxState, SandboxMailbox, SandboxMailOperator
    from dmp_connector.sandbox.pki import INSI_AUTO, IssuedCertificate

    files = dmpc_pki.files
    key = serialization.load_pem_private_key(files.server_key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    server = IssuedCertificate(x509.load_pem_x509_certificate(files.server_cert.read_bytes()), key)
    operator = SandboxMailOperator(
        _ca_only_pki(dmpc_pki.ca_certificate, key),
        mailboxes=[SandboxMailbox(DMPC_MAILBOX, certificate_cn=INSI_AUTO), DMPC_COLLEAGUE_MAILBOX],
        patients={DMPC_PATIENT_MATRICULE: PatientMailboxState.ACTIVE},
        server_certificate=server,
    )
    with operator:
        yield operator


@pytest.fixture
def dmpc_mssante(
    dmpc_settings: Settings, dmpc_mail_operator: SandboxMailOperator, dmpc_audit: MemorySink
) -> Iterator[MssanteClient]:
    """A ``MssanteClient`` for :data:`DMPC_MAILBOX` (mutual TLS, no token), audited to ``dmpc_audit``."""
    from dmp_connector.config import MssanteAuthMode, MssanteSettings
    from dmp_connector.mssante import MssanteClient

    mailbox = MssanteSettings(mailbox=DMPC_MAILBOX, auth_mode=MssanteAuthMode.CERTIFICATE, connect_timeout=5, timeout=5)
    settings = dmpc_settings.model_copy(
        update={"environment": dmpc_mail_operator.environment(dmpc_settings.environment), "mssante": mailbox}
    )
    with MssanteClient(settings, audit=[dmpc_audit]) as client:
        yield client


@pytest.fixture
def dmpc_psc(dmpc_pki: SandboxPki) -> Iterator[PscSimulator]:
    """The Pro Santé Connect simulator on 127.0.0.1 over TLS (client ``sandbox-lps``, CIBA polled every 50 ms).

    Drive its simulated e-CPS with ``approve()``, ``deny()`` and ``expire()``; see ``docs/psc.md``.
    """
    pytest.importorskip("joserfc", reason="the PSC fixtures need the psc extra: pip install 'dmp-connector[psc]'")
    from dmp_connector.sandbox.psc import PscSimulator, serve_psc

    simulator = PscSimulator(clients={DMPC_PSC_CLIENT_ID: DMPC_PSC_SECRET}, ciba_interval=0.05)
    with serve_psc(dmpc_pki.files, simulator) as served:
        yield served


@pytest.fixture
def dmpc_psc_settings(dmpc_settings: Settings, dmpc_psc: PscSimulator) -> Settings:
    """``dmpc_settings`` with ``[psc]`` pointing at ``dmpc_psc`` (client secret, Basic)."""
    from pydantic import SecretStr

    from dmp_connector.config import PscSettings

    psc = PscSettings(
        issuer=dmpc_psc.issuer,
        client_id=DMPC_PSC_CLIENT_ID,
        client_secret=SecretStr(DMPC_PSC_SECRET),
        redirect_uri="https://lps.sandbox.invalid/callback",
    )
    return dmpc_settings.model_copy(update={"psc": psc})


@pytest.fixture
def dmpc_psc_client(dmpc_psc_settings: Settings, dmpc_audit: MemorySink) -> Iterator[PscClient]:
    """A ``PscClient`` on ``dmpc_psc``, audited to ``dmpc_audit``."""
    from dmp_connector.psc import PscClient

    with PscClient(dmpc_psc_settings, audit=[dmpc_audit]) as client:
        yield client


@pytest.fixture
def dmpc_psc_ciba(dmpc_psc: PscSimulator, dmpc_psc_client: PscClient) -> PendingCiba:
    """A CIBA login for :data:`DMPC_PSC_LOGIN_HINT`, pending on the simulated e-CPS."""
    request = dmpc_psc_client.start_ciba(DMPC_PSC_LOGIN_HINT)
    return PendingCiba(dmpc_psc, dmpc_psc_client, request)


@pytest.fixture
def dmpc_psc_session(dmpc_psc_ciba: PendingCiba) -> Iterator[PscSession]:
    """SANDBOX JEANNE logged in through CIBA (approved on the simulated e-CPS); logged out after the test."""
    dmpc_psc_ciba.simulator.approve()
    session = dmpc_psc_ciba.client.wait_ciba(dmpc_psc_ciba.request)
    yield session
    if not session.closed:
        session.logout()
