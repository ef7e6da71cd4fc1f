"""A deposit's envelope is spliced from text (issue 22): the bytes of the tree path, and no tree built for them.

``ProvideAndRegister.build`` gives its ITI-41 body as markup and ``VihfSecurity`` writes its signed
assertion as bytes; the transport splices both into the envelope. For real deposits (sync and async,
a PDF body and a title that needs escaping) the envelope sent must be the one ``build_envelope``
builds from the same body and the same assertion, and neither the body nor the VIHF is parsed.
Queries and TD transactions keep the tree path (their bodies are elements).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import respx

from dmp_connector import _transport
from dmp_connector.config import DmpService
from dmp_connector.dmp.client import AsyncDmpClient, DmpClient
from dmp_connector.signature import vihf as vihf_mod
from dmp_connector.soap import build_envelope
from dmp_connector.soap.envelope import _MarkupBody
from dmp_connector.soap.namespaces import WSSE
from dmp_connector.xds import ebrim as ebrim_mod
from dmp_connector.xml import to_bytes
from tests.dmp.client_support import (
    PATIENT,
    SETTINGS,
    cda_document,
    received,
    registry,
    schemas,
    signer,
    soap_response,
    url,
)

MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def deposit(mode: str, data: bytes) -> Any:
    if mode == "sync":
        with DmpClient(SETTINGS, signer=signer()) as client:
            return client.deposit(data, patient=PATIENT)

    async def run() -> Any:
        async with AsyncDmpClient(SETTINGS, signer=signer()) as client:
            return await client.deposit(data, patient=PATIENT)

    return asyncio.run(run())


@MODES
@pytest.mark.parametrize("title", ["Compte rendu de consultation", 'CR <urgent> & "suite" \t\r\n é'])
@respx.mock
def test_the_spliced_envelope_is_the_tree_envelope(mode: str, title: str, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bool] = []
    original = _transport._envelope_bytes  # type: ignore[attr-defined]
    sign_once = vihf_mod._sign
    kept: list[Any] = []

    def one_signature(*args: Any, **kwargs: Any) -> Any:
        # The tree path below asks the security again: it gets the very assertion the text path wrote.
        # (Patched where it signs, not VihfSecurity's own methods: a replaced method sends it to the tree.)
        if not kept:
            kept.append(sign_once(*args, **kwargs))
        return kept[0]

    def both(body: Any, **kwargs: Any) -> bytes:
        spliced = original(body, **kwargs)
        if isinstance(body, _MarkupBody):
            assert not body.parsed  # the text path took it as it was
            compared.append(spliced == to_bytes(build_envelope(body, **kwargs)))
        return spliced

    monkeypatch.setattr(vihf_mod, "_sign", one_signature)
    monkeypatch.setattr(_transport, "_envelope_bytes", both)
    route = respx.post(url(DmpService.REPOSITORY)).mock(return_value=registry_answer())
    deposit(mode, cda_document(title))
    assert compared == [True]
    schemas().assert_xdsb_valid(received(route.calls.last.request).payload)


@MODES
@respx.mock
def test_a_deposit_parses_neither_its_body_nor_its_vihf(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a tree was built for the request")

    monkeypatch.setattr(ebrim_mod, "_parsed_markup", refused)
    monkeypatch.setattr(vihf_mod, "parse_xml", refused)
    route = respx.post(url(DmpService.REPOSITORY)).mock(return_value=registry_answer())
    result = deposit(mode, cda_document())
    assert not result.already_deposited
    message = received(route.calls.last.request)
    schemas().assert_xdsb_valid(message.payload)
    assert len(message.header_elements(WSSE, "Security")) == 1


def registry_answer() -> Any:
    return soap_response(registry())
