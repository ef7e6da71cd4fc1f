"""Shared fixtures (one test PKI per session: RSA key generation is the slow part) and the whole-run leak scan."""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dmp_connector.audit import AuditDispatcher, AuditEvent
from dmp_connector.config import Organisation, Settings, SoftwareIdentity, StructureIdKind, TlsCredentials
from dmp_connector.errors import DmpConnectorError, ValidationError
from dmp_connector.sandbox import IssuedCertificate, TestPki

from .security import leak_scan


@dataclass(frozen=True)
class PkiFiles:
    pki: TestPki
    ca_bundle: Path
    server: IssuedCertificate
    client: IssuedCertificate
    client_cert: Path
    client_key: Path
    workdir: Path


@pytest.fixture(autouse=True)
def _no_configuration_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read DMP_CONNECTOR_* variables: keep the developer's shell out of the tests."""
    for key in list(os.environ):
        if key.startswith("DMP_CONNECTOR_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def pki_files(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    workdir = tmp_path_factory.mktemp("pki")
    pki = TestPki.create()
    ca_bundle = workdir / "ca.pem"
    ca_bundle.write_bytes(pki.ca_pem)
    server = pki.issue_server()
    client = pki.issue_client("Cabinet Test AUTH_CLI")
    client_cert, client_key = client.write_pem(workdir, "client")
    return PkiFiles(pki, ca_bundle, server, client, client_cert, client_key, workdir)


SOFTWARE = SoftwareIdentity(name="TestLPS", version="1.0", editor="Test Editor", dmp_homologation_id="HOMOLOG-TEST")
ORGANISATION = Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="Cabinet Test")


def make_settings(pki_files: PkiFiles, **overrides: object) -> Settings:
    """Sandbox settings that trust the test CA and present the test client certificate."""
    data: dict[str, object] = {
        "software": SOFTWARE,
        "organisation": ORGANISATION,
        "tls": TlsCredentials(
            cert_file=pki_files.client_cert, key_file=pki_files.client_key, ca_bundle=pki_files.ca_bundle
        ),
    }
    data.update(overrides)
    return Settings.model_validate(data)


# --------------------------------------------------------------------------------------------------
# The whole-run scan for identities in clear (see tests/security/leak_scan.py and docs/security.md).
#
# Every log record (``dmp_connector`` at DEBUG, and the root logger), every audit event any
# AuditDispatcher emits, the message of every DmpConnectorError raised and, at the end of the test
# that made it, what ``log.exception`` would print for it (traceback.format_exception: the whole
# cause and context chain, foreign causes included) are written, one JSON line each, to
# <basetemp>/leak-scan/captured.jsonl; at the end of the session the file is searched for the
# matricules, names and birth dates the tests use, and any hit fails the run.


REMOTE_LOGGER = "mail.log"
"""aiosmtpd's logger: the sandbox's SMTP server, standing in for the MSSanté operator, logs each line it
receives at DEBUG. That is the remote side, out of the SDK's hands (see docs/security.md, out of scope)."""


class _LeakCapture(logging.Handler):
    """Writes what the scan reads, one JSON line per record; thread-safe (the handler's lock), closed at session end."""

    def __init__(self, path: Path) -> None:
        super().__init__(level=logging.DEBUG)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self.current_test = "(collection)"
        self.counts: dict[str, int] = {}
        self.pending: list[DmpConnectorError] = []
        """The errors made since the last flush: their cause chain is complete once they have been raised."""

    def write(self, stream: str, where: str, text: str) -> None:
        line = json.dumps({"stream": stream, "where": f"{where} @ {self.current_test}", "text": text})
        self.acquire()
        try:
            if not self._file.closed:
                self._file.write(line + "\n")
                self.counts[stream] = self.counts.get(stream, 0) + 1
        finally:
            self.release()

    def keep(self, error: DmpConnectorError) -> None:
        self.acquire()
        try:
            self.pending.append(error)
            overflow = self.pending[:-_PENDING] if len(self.pending) > _PENDING else []
            del self.pending[: len(overflow)]
        finally:
            self.release()
        for old in overflow:  # long raised by now: their chain is complete
            self.write_chain(old)

    def flush_chains(self) -> None:
        self.acquire()
        try:
            errors, self.pending = self.pending, []
        finally:
            self.release()
        for error in errors:
            self.write_chain(error)

    def write_chain(self, error: DmpConnectorError) -> None:
        try:
            text = leak_scan.exception_text(error)
        except Exception as exc:  # an error that cannot be formatted is still recorded
            text = f"(format_exception failed: {type(exc).__name__}) {error.message}"
        self.write("traceback", type(error).__name__, text)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == REMOTE_LOGGER or record.name.startswith(REMOTE_LOGGER + "."):
            return
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format is still scanned as written
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        extra = getattr(record, "audit_event", None)
        if extra is not None:
            text += "\n" + json.dumps(extra, default=str)
        self.write("log", record.name, text)

    def close(self) -> None:
        self.acquire()
        try:
            self._file.close()
        finally:
            self.release()
        super().close()


_PENDING = 200
"""Errors kept per test before the oldest are formatted (bounds what the capture keeps alive)."""

_CAPTURE: _LeakCapture | None = None
_UNINSTALL: list[Callable[[], None]] = []
_LEAK_REPORT: list[str] = []


def _install_capture(path: Path) -> Callable[[], None]:
    global _CAPTURE
    capture = _CAPTURE = _LeakCapture(path)
    package_logger = logging.getLogger("dmp_connector")
    root = logging.getLogger()
    saved_levels = (package_logger.level, root.level)
    package_logger.setLevel(logging.DEBUG)
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)

    original_emit = AuditDispatcher.emit

    def emit(self: AuditDispatcher, event: AuditEvent) -> None:
        capture.write("audit", f"{event.service}/{event.operation}", event.to_json())
        original_emit(self, event)

    original_init = DmpConnectorError.__init__
    original_validation_init = ValidationError.__init__

    def init(self: DmpConnectorError, message: str, *args: Any, **kwargs: Any) -> None:
        original_init(self, message, *args, **kwargs)
        capture.write("error", type(self).__name__, f"{self.message} | {self.hint or ''}")
        capture.keep(self)

    def validation_init(self: ValidationError, message: str, *args: Any, **kwargs: Any) -> None:
        # ``problems`` is set after DmpConnectorError.__init__ returns: recorded here.
        original_validation_init(self, message, *args, **kwargs)
        if self.problems:
            capture.write("error", type(self).__name__, " | ".join(str(p) for p in self.problems))

    AuditDispatcher.emit = emit  # type: ignore[method-assign]
    DmpConnectorError.__init__ = init  # type: ignore[method-assign]
    ValidationError.__init__ = validation_init  # type: ignore[method-assign]

    def uninstall() -> None:
        capture.flush_chains()
        AuditDispatcher.emit = original_emit  # type: ignore[method-assign]
        DmpConnectorError.__init__ = original_init  # type: ignore[method-assign]
        ValidationError.__init__ = original_validation_init  # type: ignore[method-assign]
        root.removeHandler(capture)
        package_logger.setLevel(saved_levels[0])
        root.setLevel(saved_levels[1])
        capture.close()

    return uninstall


def pytest_sessionstart(session: pytest.Session) -> None:
    factory: pytest.TempPathFactory | None = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or os.environ.get("DMPC_LEAK_SCAN") == "off":  # no basetemp, or turned off by hand
        return
    directory = factory.getbasetemp() / "leak-scan"
    directory.mkdir(parents=True, exist_ok=True)
    _UNINSTALL.append(_install_capture(directory / "captured.jsonl"))


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if _CAPTURE is not None:
        _CAPTURE.current_test = nodeid


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if _CAPTURE is not None:
        _CAPTURE.flush_chains()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _CAPTURE is None:
        return
    while _UNINSTALL:  # stop capturing before the scan (gathering the needles raises errors of its own)
        _UNINSTALL.pop()()
    needles = leak_scan.gather_needles()
    lines, counts, findings = leak_scan.scan_file(_CAPTURE.path, needles)
    kinds = sorted({n.kind for n in needles})
    _LEAK_REPORT.append(
        f"leak scan: {lines} captured lines ({', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'none'}) "
        f"searched for {len(needles)} values ({', '.join(kinds)}) in {_CAPTURE.path}"
    )
    if findings:
        for finding in findings[:50]:
            _LEAK_REPORT.append(
                f"LEAK {finding.needle.kind} {finding.needle.value!r} ({finding.needle.source}) in {finding.stream} "
                f"[{finding.where}]: …{finding.excerpt}…"
            )
        if len(findings) > 50:
            _LEAK_REPORT.append(f"… and {len(findings) - 50} more")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        _LEAK_REPORT.append("leak scan: no matricule, name or birth date in clear")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LEAK_REPORT:
        terminalreporter.section("identities in logs, audit events and errors")
        for line in _LEAK_REPORT:
            terminalreporter.line(line, red=line.startswith("LEAK"))
