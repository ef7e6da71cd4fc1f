"""The DMP sandbox served on loopback with mutual TLS, for the modules that deposit through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dmp_connector.sandbox.dmp import DmpSimulator
from tests.conftest import PkiFiles

from .test_sandbox_integration import Credentials, Sandbox, organisation_credentials, serve


@pytest.fixture(scope="module")
def credentials(pki_files: PkiFiles, tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    """The organisation's authentication certificate and signer, issued by the session's test PKI."""
    return organisation_credentials(pki_files.pki, tmp_path_factory)


@pytest.fixture
def sandbox(pki_files: PkiFiles, credentials: Credentials, tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh DMP simulator (in memory) behind a loopback server, and settings pointing at it."""
    with serve(pki_files, credentials, tmp_path, DmpSimulator(trusted=[pki_files.pki.ca.certificate])) as served:
        yield served
