"""Hostile XDM archives through the public read API: zip bombs of many entries, traversal in a received mail.

``tests/mssante/test_xdm.py`` covers one-entry bombs (ratio, declared and lying sizes), each
traversal form, links, encryption and entry counts on :func:`read_package`. This file adds
what it does not: a bomb spread over many entries each small enough to escape the per-entry
ratio (refused by the archive-wide ratio, with memory bounded), and every refusal seen through
:func:`parse_message`, where a hostile archive must not stop the mail from being read.
"""

from __future__ import annotations

import tracemalloc
from email.message import EmailMessage

import pytest

from dmp_connector.errors import MalformedResponseError, ProtocolError
from dmp_connector.mssante.message import parse_message
from dmp_connector.mssante.xdm import ArchiveLimits, UnsafeArchiveError, build_package, read_package
from tests.mssante.test_xdm import N1, SENDER, SETTINGS, files_of, rezip

GOOD = files_of(build_package([N1], SETTINGS, sender=SENDER).archive)
MiB = 1024 * 1024

__all__ = ["GOOD", "rezip"]


def mail_with(archive: bytes, filename: str = "IHE_XDM.ZIP") -> bytes:
    mail = EmailMessage()
    mail["From"] = "dr.house@medecin.mssante.fr"
    mail["To"] = "lps@cabinet-test.mssante.fr"
    mail["Subject"] = "documents"
    mail.set_content("see attached")
    mail.add_attachment(archive, maintype="application", subtype="zip", filename=filename)
    return mail.as_bytes()


def many_entry_bomb(entries: int, size: int) -> bytes:
    """``entries`` files of ``size`` zeros: each under the 1 MB below which no per-entry ratio applies."""
    return rezip([*GOOD, *((f"IHE_XDM/SUBSET01/PAD{i:05d}.BIN", b"\0" * size) for i in range(entries))])


def test_a_bomb_of_many_small_entries_is_refused_early() -> None:
    bomb = many_entry_bomb(300, 900 * 1024)  # 270 MB once inflated, from a few hundred kB
    assert len(bomb) < 1 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeArchiveError, match="times") as info:
            read_package(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "zip bomb" in str(info.value)
    assert peak < 32 * MiB  # refused after a few MB, not at the 256 MB total limit


def test_many_ordinary_entries_still_pass() -> None:
    # Text that compresses like XML (about 5 times): far under the ratio, whatever the entry count.
    text = b"".join(b"<line n='%d'>compte rendu %d</line>\n" % (i, i * 7919 % 10007) for i in range(40_000))
    archive = rezip([*GOOD, *((f"IHE_XDM/SUBSET01/X{i:04d}.XML", text) for i in range(3))])
    assert len(read_package(archive).documents) == 1


def test_the_archive_wide_ratio_follows_the_limits() -> None:
    bomb = many_entry_bomb(20, 900 * 1024)
    with pytest.raises(UnsafeArchiveError):
        read_package(bomb)
    assert read_package(bomb, limits=ArchiveLimits(max_ratio=5000.0)).documents


@pytest.mark.parametrize(
    "name",
    [
        "../../.ssh/authorized_keys",
        "IHE_XDM/SUBSET01/../../../etc/cron.d/x",
        "/tmp/evil",
        "C:/Windows/evil.exe",
        "IHE_XDM\\..\\..\\evil",
    ],
)
def test_traversal_in_a_received_mail_leaves_the_message_readable(name: str) -> None:
    archive = rezip([*GOOD, (name, b"owned")])
    received = parse_message(mail_with(archive))
    assert received.xdm is None
    assert isinstance(received.xdm_error, UnsafeArchiveError)
    assert received.text is not None and received.text.strip() == "see attached"
    # The attachment itself is still there for the user, as received, never written anywhere by the SDK.
    assert [a.filename for a in received.attachments] == ["IHE_XDM.ZIP"]


def test_a_bomb_in_a_received_mail_leaves_the_message_readable() -> None:
    received = parse_message(mail_with(many_entry_bomb(300, 900 * 1024)))
    assert received.xdm is None and isinstance(received.xdm_error, UnsafeArchiveError)


def test_an_archive_named_otherwise_is_still_checked() -> None:
    # The XDM archive is recognised by its type and name prefix, so a renamed bomb is not skipped.
    received = parse_message(mail_with(many_entry_bomb(300, 900 * 1024), filename="IHE_XDM_2.ZIP"))
    assert received.xdm is None and isinstance(received.xdm_error, UnsafeArchiveError)


def test_a_zip_inside_the_archive_is_not_opened() -> None:
    inner = many_entry_bomb(50, 900 * 1024)
    package = read_package(rezip([*GOOD, ("IHE_XDM/SUBSET01/NESTED.ZIP", inner)]))
    assert [d.filename for d in package.documents] == ["DOC00001.XML"]


def test_not_a_zip_is_a_protocol_error() -> None:
    with pytest.raises(MalformedResponseError) as info:
        read_package(b"PK\x05\x06" + b"\0" * 18)
    assert isinstance(info.value, ProtocolError)
