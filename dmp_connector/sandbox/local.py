"""The whole sandbox in one call, for a first integration and for the docs' examples.

:meth:`LocalSandbox.start` creates a throw-away test PKI and starts, on ``127.0.0.1`` in
background threads, what the national services would be: INSi and the DMP over HTTPS with
mutual TLS, and an MSSanté operator (SMTP submission and IMAP with STARTTLS). Its
:attr:`~LocalSandbox.settings` reach them exactly as production settings reach the national
platforms (certificates in files, loopback URLs), so that the code under them is the code a
vendor ships: ``InsiClient(settings)``, ``DmpClient(settings)``, ``MssanteClient(settings)``.

It needs the ``sandbox`` extra (aiosmtpd, pymap) for the mail operator. The pytest plugin's
fixtures (``dmpc_*``) are the better tool inside a test suite; this is for a script, a
notebook or a page of documentation.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import (
    CertificateFiles,
    Environment,
    MssanteAuthMode,
    MssanteSettings,
    Organisation,
    Professional,
    Settings,
    SigningSettings,
    SoftwareIdentity,
    StructureIdKind,
    TlsCredentials,
)

from ._http import LoopbackServer, server_ssl_context
from .dmp import DmpSimulator
from .insi import InsiSimulator
from .pki import TestPki

if TYPE_CHECKING:
    from .mssante import SandboxMailOperator

__all__ = ["LocalSandbox", "sandbox_practice"]

_PRACTICE_MAILBOX = "secretariat@cabinet-test.mssante.fr"
_COLLEAGUE_MAILBOX = "dr.martin@medecin.mssante.fr"


def sandbox_practice() -> Settings:
    """A practice for the sandbox: its software, its organisation (a FINESS) and one doctor.

    Replace it with your own (``Settings.load("dmp-connector.toml")``): the sandbox issues its
    certificates for whatever organisation the settings name.
    """
    return Settings(
        software=SoftwareIdentity(
            name="MonLogiciel",
            version="2.3",
            editor="Editeur SA",
            insi_authorisation_id="CNDA-SANDBOX",
            dmp_homologation_id="HOM-SANDBOX",
        ),
        organisation=Organisation(
            id="123456789",
            id_kind=StructureIdKind.FINESS,
            name="Cabinet Test",
            activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"),
        ),
        professional=Professional(
            id="99700000001",
            family_name="SANDBOX",
            given_name="JEANNE",
            profession=Code.of("10", "1.2.250.1.71.1.2.7", "Médecin"),
            specialty=professional_specialty("SM26", "Qualifié en médecine générale"),
        ),
        mssante=MssanteSettings(mailbox=_PRACTICE_MAILBOX, auth_mode=MssanteAuthMode.CERTIFICATE),
    )


@dataclass
class LocalSandbox:
    """INSi, the DMP and an MSSanté operator running on loopback, and the settings that reach them.

    Use it as a context manager (or call :meth:`close`): it stops the servers on exit.
    """

    settings: Settings
    """The practice's settings completed with the sandbox: environment, TLS and signing files."""
    directory: Path
    """Where the PKI's files (``ca.crt``, ``org-auth.*``, ``org-sign.*``) are written."""
    pki: TestPki
    """The throw-away certificate authority every certificate chains to."""
    insi: InsiSimulator
    """The INSi simulator (its seeded identities: :data:`~dmp_connector.sandbox.DEFAULT_INSI_IDENTITIES`)."""
    dmp: DmpSimulator
    """The DMP simulator (its patients: :data:`~dmp_connector.sandbox.DEFAULT_DMP_PATIENTS`)."""
    mail: SandboxMailOperator
    """The MSSanté operator: the practice's mailbox and a colleague's, ``dr.martin@medecin.mssante.fr``."""
    _stack: ExitStack = field(repr=False)

    @classmethod
    def start(cls, directory: str | Path = "sandbox", *, settings: Settings | None = None) -> LocalSandbox:
        """Start the sandbox for the practice of ``settings`` (:func:`sandbox_practice` by default).

        The certificates are issued for that organisation (the DMP checks the certificate's OU
        against its national id); its MSSanté mailbox (``settings.mssante.mailbox``) is bound to
        the organisation's authentication certificate, as an operator binds an applicative mailbox.
        """
        from .mssante import SandboxMailbox, SandboxMailOperator  # the sandbox extra

        practice = settings if settings is not None else sandbox_practice()
        if practice.organisation is None:
            raise ValueError("the sandbox needs the practice's organisation in the settings")
        mailbox = practice.mssante.mailbox or _PRACTICE_MAILBOX
        workdir = Path(directory).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        pki = TestPki.create()
        ca = workdir / "ca.crt"
        ca.write_bytes(pki.ca_pem)
        name, structure = practice.organisation.name, practice.organisation.national_id
        auth = pki.issue_organisation_auth(organisation=name, structure_id=structure)
        sign = pki.issue_organisation_sign(organisation=name, structure_id=structure)
        auth_cert, auth_key = auth.write_pem(workdir, "org-auth")
        sign_cert, sign_key = sign.write_pem(workdir, "org-sign")
        server_certificate = pki.issue_server()
        insi = InsiSimulator()
        dmp = DmpSimulator(trusted=[pki.ca.certificate])
        common_name = auth.certificate.subject.rfc4514_string().split("CN=", 1)[1].split(",", 1)[0]
        mail = SandboxMailOperator(
            pki, mailboxes=[SandboxMailbox(mailbox, certificate_cn=common_name), _COLLEAGUE_MAILBOX]
        )
        stack = ExitStack()
        try:
            insi_server = stack.enter_context(
                LoopbackServer(insi, ssl_context=server_ssl_context(server_certificate, pki, workdir=workdir))
            )
            dmp_server = stack.enter_context(dmp.serve(pki, workdir=workdir, server_certificate=server_certificate))
            stack.enter_context(mail)
        except BaseException:
            stack.close()
            raise
        environment = mail.environment(Environment.sandbox(dmp_server.url)).model_copy(
            update={"insi_url": f"{insi_server.url}/insi/lps", "insi_mtls_url": f"{insi_server.url}/insi/lps"}
        )
        completed = practice.model_copy(
            update={
                "environment": environment,
                "tls": TlsCredentials(cert_file=auth_cert, key_file=auth_key, ca_bundle=ca),
                "signing": practice.signing.model_copy(
                    update={"credentials": CertificateFiles(cert_file=sign_cert, key_file=sign_key)}
                )
                if practice.signing is not None
                else SigningSettings(credentials=CertificateFiles(cert_file=sign_cert, key_file=sign_key)),
                "mssante": practice.mssante.model_copy(
                    update={"mailbox": mailbox, "auth_mode": MssanteAuthMode.CERTIFICATE}
                ),
            }
        )
        return cls(completed, workdir, pki, insi, dmp, mail, stack)

    def close(self) -> None:
        """Stop the servers (the files in :attr:`directory` stay)."""
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
