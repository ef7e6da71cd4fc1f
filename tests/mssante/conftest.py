"""MSSanté fixtures: a running sandbox operator and settings that point at it.

The operator is real (SMTP and IMAP on loopback, STARTTLS with the session's test PKI);
one is started per test (a second or two of setup saved by reusing the session's server
certificate), so that scripted faults and mailboxes never leak from one test to another.

Mailboxes: ``APP_MAILBOX`` is applicative (the test client certificate authenticates
it), ``PRO_MAILBOX`` and ``OTHER_MAILBOX`` are personal (XOAUTH2 with a sandbox token).
Patients: ``PATIENT_ACTIVE`` has an open Mon espace santé mailbox, ``PATIENT_CLOSED``
closed it, ``PATIENT_UNKNOWN`` is not known at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dmp_connector.config import MssanteAuthMode, MssanteSettings, Settings, TlsCredentials
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox.mssante import (
    PatientMailboxState,
    SandboxMailbox,
    SandboxMailOperator,
    SandboxTokenProvider,
)
from tests.conftest import PkiFiles, make_settings

APP_MAILBOX = "lps@cabinet-test.mssante.fr"
PRO_MAILBOX = "dr.martin@medecin.mssante.fr"
OTHER_MAILBOX = "secretariat@ch-exemple.mssante.fr"
CLIENT_CN = "Cabinet Test AUTH_CLI"
"""CN of the session's test client certificate (tests/conftest.py), bound to APP_MAILBOX."""
PATIENT_ACTIVE = "279035121518989"
PATIENT_CLOSED = "185057800608436"
PATIENT_UNKNOWN = "299999999999999"

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05, jitter=0.0)


def patient_address(matricule: str) -> str:
    """``<matricule>@patient.mssante.fr``."""
    return f"{matricule}@patient.mssante.fr"


@pytest.fixture
def mail_operator(pki_files: PkiFiles) -> Iterator[SandboxMailOperator]:
    """A started sandbox operator with the three mailboxes and two seeded patients."""
    operator = SandboxMailOperator(
        pki_files.pki,
        mailboxes=[SandboxMailbox(APP_MAILBOX, certificate_cn=CLIENT_CN), PRO_MAILBOX, OTHER_MAILBOX],
        patients={PATIENT_ACTIVE: PatientMailboxState.ACTIVE, PATIENT_CLOSED: PatientMailboxState.CLOSED},
        server_certificate=pki_files.server,
    )
    with operator:
        yield operator


def operator_settings(
    pki_files: PkiFiles, operator: SandboxMailOperator, *, mailbox: str = APP_MAILBOX, **overrides: Any
) -> Settings:
    """Settings for ``operator``: certificate mode for APP_MAILBOX, else XOAUTH2 (CA only, no client certificate)."""
    if mailbox == APP_MAILBOX:
        mss = MssanteSettings(mailbox=mailbox, auth_mode=MssanteAuthMode.CERTIFICATE, connect_timeout=5, timeout=5)
        data: dict[str, Any] = {}
    else:
        mss = MssanteSettings(mailbox=mailbox, auth_mode=MssanteAuthMode.XOAUTH2, connect_timeout=5, timeout=5)
        data = {"tls": TlsCredentials(ca_bundle=pki_files.ca_bundle)}
    data.update({"environment": operator.environment(), "mssante": mss, "retry": FAST_RETRY})
    data.update(overrides)
    return make_settings(pki_files, **data)


@pytest.fixture
def app_settings(pki_files: PkiFiles, mail_operator: SandboxMailOperator) -> Settings:
    """Certificate authentication as the applicative mailbox APP_MAILBOX."""
    return operator_settings(pki_files, mail_operator)


@pytest.fixture
def pro_settings(pki_files: PkiFiles, mail_operator: SandboxMailOperator) -> Settings:
    """XOAUTH2 authentication as the personal mailbox PRO_MAILBOX (pair with ``pro_tokens``)."""
    return operator_settings(pki_files, mail_operator, mailbox=PRO_MAILBOX)


@pytest.fixture
def pro_tokens(mail_operator: SandboxMailOperator) -> SandboxTokenProvider:
    """A token provider for PRO_MAILBOX, recording its calls."""
    return SandboxTokenProvider(mail_operator, PRO_MAILBOX)
