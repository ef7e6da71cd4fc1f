"""Hostile XML where a vendor meets it: a SOAP reply to the real clients, a received mail's XDM, a CDA.

``tests/test_xml.py`` proves the parser alone refuses each attack, ``tests/soap`` that
``parse_envelope`` does. Here each attack comes back as the *answer* of a national service to
the real INSi and DMP clients (the pytest plugin's in-process simulators, sync and async, and the
loopback server over mutual TLS), and inside received MSSanté mail: every one ends in a typed
:class:`UnsafeXmlError` (a :class:`ProtocolError`), is not retried, never reads the file an
external entity names, and never expands an entity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from dmp_connector.audit import MemorySink
from dmp_connector.cda import parse as parse_cda
from dmp_connector.dmp.client import DmpClient
from dmp_connector.errors import ProtocolError, UnsafeXmlError
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.ins.client import InsiClient
from dmp_connector.mssante.message import parse_message
from dmp_connector.mssante.xdm import METADATA_PATH, ArchiveLimits, XdmDocument, read_package
from dmp_connector.pytest_plugin import FaultInjector, LoopbackSandbox
from dmp_connector.sandbox import DEFAULT_DMP_PATIENTS, DEFAULT_INSI_IDENTITIES, HttpResponse

from . import hostile
from .test_xdm_hostile import GOOD, rezip

ADRUN = DEFAULT_INSI_IDENTITIES[0].traits
PATIENT = Identity(traits=DEFAULT_DMP_PATIENTS[0].traits, ins=DEFAULT_DMP_PATIENTS[0].ins, status=IdentityStatus.QUAL)
SOAP = {"Content-Type": "application/soap+xml; charset=utf-8"}


def payloads(tmp_path: Path) -> dict[str, bytes]:
    secret = tmp_path / "secret.txt"
    secret.write_text(hostile.SECRET)
    return {
        "dtd": hostile.dtd_only(),
        "xxe": hostile.xxe(secret),
        "billion-laughs": hostile.billion_laughs(),
        "too-deep": hostile.deep(200),
        "libxml2-depth": hostile.deep(20_000),
        "huge-text": hostile.huge_text(),
    }


ATTACKS = pytest.mark.parametrize("attack", ["dtd", "xxe", "billion-laughs", "too-deep", "libxml2-depth", "huge-text"])


def refused(call: Callable[[], Any]) -> UnsafeXmlError:
    with pytest.raises(UnsafeXmlError) as info:
        call()
    error = info.value
    assert isinstance(error, ProtocolError)
    assert hostile.SECRET not in str(error) and "lol" not in str(error)
    return error


@ATTACKS
def test_an_insi_answer(
    attack: str, dmpc_insi: InsiClient, dmpc_faults: FaultInjector, dmpc_audit: MemorySink, tmp_path: Path
) -> None:
    dmpc_faults.insi(HttpResponse(200, SOAP, payloads(tmp_path)[attack]))
    error = refused(lambda: dmpc_insi.search(ADRUN))
    assert error.attempts == 1  # refused, not retried
    assert len(dmpc_faults.insi_script.requests) == 1
    assert [(e.outcome, e.error_type) for e in dmpc_audit.events] == [("failure", "UnsafeXmlError")]


@ATTACKS
def test_an_async_dmp_answer(
    attack: str, dmpc_async_dmp: Callable[[], Any], dmpc_faults: FaultInjector, tmp_path: Path
) -> None:
    dmpc_faults.dmp(HttpResponse(200, SOAP, payloads(tmp_path)[attack]))

    async def scenario() -> Any:
        async with dmpc_async_dmp() as dmp:
            return await dmp.test_existence(PATIENT)

    refused(lambda: asyncio.run(scenario()))
    assert len(dmpc_faults.dmp_script.requests) == 1


@pytest.mark.parametrize("attack", ["dtd", "xxe", "billion-laughs"])
def test_a_dtd_in_the_soap_part_of_an_mtom_answer(
    attack: str, dmpc_dmp: DmpClient, dmpc_faults: FaultInjector, tmp_path: Path
) -> None:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Type: application/xop+xml\r\nContent-ID: <root>\r\n\r\n".encode()
        + payloads(tmp_path)[attack]
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = f'multipart/related; type="application/xop+xml"; start="<root>"; boundary="{boundary}"'
    dmpc_faults.dmp(HttpResponse(200, {"Content-Type": content_type}, body))
    refused(lambda: dmpc_dmp.test_existence(PATIENT))


@pytest.mark.parametrize("attack", ["dtd", "xxe", "billion-laughs", "too-deep"])
def test_over_the_network_with_mutual_tls(
    attack: str, dmpc_loopback_sandbox: LoopbackSandbox, dmpc_faults: FaultInjector, tmp_path: Path
) -> None:
    dmpc_faults.insi(HttpResponse(200, SOAP, payloads(tmp_path)[attack]))
    with InsiClient(dmpc_loopback_sandbox.settings) as insi:
        refused(lambda: insi.search(ADRUN))


# --------------------------------------------------------------------------- received mail, XDM and CDA


def mail_with(archive: bytes) -> bytes:
    mail = EmailMessage()
    mail["From"] = "dr.house@medecin.mssante.fr"
    mail["To"] = "lps@cabinet-test.mssante.fr"
    mail["Subject"] = "XDM/1.0/DDM+documents"
    mail.set_content("see attached")
    mail.add_attachment(archive, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return mail.as_bytes()


@ATTACKS
def test_a_hostile_metadata_xml_in_a_received_mail(attack: str, tmp_path: Path) -> None:
    hostile_xml = payloads(tmp_path)[attack]
    archive = rezip([(n, hostile_xml if n == METADATA_PATH else c) for n, c in GOOD])
    lenient = ArchiveLimits(max_ratio=1e6)  # so that the 11 MB of one letter reach the XML parser
    refused(lambda: read_package(archive, limits=lenient))
    received = parse_message(mail_with(archive), limits=lenient)
    # The message is still read; the archive is left out and the reason kept, without the content.
    assert received.xdm is None and received.text is not None
    assert isinstance(received.xdm_error, UnsafeXmlError)
    assert hostile.SECRET not in (received.xdm_error_text or "")


@ATTACKS
def test_a_hostile_cda_in_an_archive_is_refused_when_read(attack: str, tmp_path: Path) -> None:
    hostile_xml = payloads(tmp_path)[attack]
    document = next(d for d in read_package(rezip(GOOD)).documents)
    forged = XdmDocument(path=document.path, content=hostile_xml, entry=document.entry)
    refused(forged.parse_cda)
    refused(lambda: parse_cda(hostile_xml))
