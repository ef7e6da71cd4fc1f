"""Hostile XML payloads shared by the security tests (built here, never read from disk)."""

from __future__ import annotations

from pathlib import Path

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SECRET = "TOP-SECRET-FILE-CONTENT"


def envelope(inner: str = "<x:Ok xmlns:x='urn:x'/>", *, prolog: str = "") -> bytes:
    return f"{prolog}<env:Envelope xmlns:env='{SOAP12}'><env:Body>{inner}</env:Body></env:Envelope>".encode()


def dtd_only() -> bytes:
    """A harmless-looking internal DTD: refused as such, whatever it declares."""
    return envelope(prolog="<?xml version='1.0'?><!DOCTYPE env:Envelope [<!ELEMENT env:Envelope ANY>]>")


def xxe(secret_file: Path) -> bytes:
    """An external entity that would read a local file into the answer."""
    return envelope(
        "<x:Ok xmlns:x='urn:x'>&xxe;</x:Ok>",
        prolog=f"<?xml version='1.0'?><!DOCTYPE env:Envelope [<!ENTITY xxe SYSTEM '{secret_file.as_uri()}'>]>",
    )


def billion_laughs() -> bytes:
    entities = "<!ENTITY l0 'lol'>" + "".join(f"<!ENTITY l{i} '{f'&l{i - 1};' * 10}'>" for i in range(1, 10))
    return envelope(
        "<x:Ok xmlns:x='urn:x'>&l9;</x:Ok>", prolog=f"<?xml version='1.0'?><!DOCTYPE env:Envelope [{entities}]>"
    )


def deep(levels: int) -> bytes:
    """Elements nested ``levels`` deep inside the body."""
    return envelope("<x:d xmlns:x='urn:x'>" * levels + "</x:d>" * levels)


def huge_text(size: int = 11 * 1024 * 1024) -> bytes:
    """One text node over libxml2's 10 MB limit (huge_tree is off)."""
    return envelope("<x:Ok xmlns:x='urn:x'>" + "A" * size + "</x:Ok>")
