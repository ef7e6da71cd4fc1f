"""Shared helpers of the INSi tests: settings, identities, and one call path for sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from dmp_connector.audit import AuditSink
from dmp_connector.config import Environment, Organisation, Settings, SoftwareIdentity, StructureIdKind
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.ins.client import AssertionProvider, AsyncInsiClient, InsiClient
from dmp_connector.retries import RetryPolicy
from dmp_connector.sandbox import Handler, as_async_transport, as_transport

IDAM = "TESTIDAM0001"
INSTANCE = "5e8a2c1e-0000-4000-8000-00000000c0de"
SOFTWARE = SoftwareIdentity(
    name="TestLPS", version="1.0", editor="Test Editor", insi_authorisation_id=IDAM, instance_id=INSTANCE
)
ORGANISATION = Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="Cabinet Test")
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002, jitter=0.0)
BASE = "https://insi.test.invalid"
URL = f"{BASE}/insi/lps"

MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def settings(**overrides: Any) -> Settings:
    """Sandbox settings on a host that does not exist (respx or an in-process transport answers)."""
    data: dict[str, Any] = {
        "software": SOFTWARE,
        "organisation": ORGANISATION,
        "environment": Environment.sandbox(BASE),
        "retry": FAST_RETRY,
    }
    data.update(overrides)
    return Settings.model_validate(data)


def traits(
    birth_name: str,
    first_names: str,
    sex: str,
    birth_date: str,
    birth_place: str | None = None,
) -> IdentityTraits:
    return IdentityTraits.build(
        birth_name=birth_name, birth_first_names=first_names, sex=sex, birth_date=birth_date, birth_place=birth_place
    )


ADRUN = traits("ADRUN", "ZOE", "F", "1975-12-31", "63220")
ECETINSI = traits("ECETINSI", "PIERRE-ALAIN MURIEL FLORIANT", "M", "2009-07-14", "63220")
HOUILLES = traits("HOUILLES", "PIERRE PAUL JACQUES", "M", "1993-01-27")
AEION = traits("D'AEION", "COEUR", "M", "1987-01-25")


def identity(
    subject: IdentityTraits,
    matricule: str | None = None,
    *,
    oid: InsOid = InsOid.NIR,
    status: IdentityStatus | None = None,
    **flags: bool,
) -> Identity:
    ins = INS.parse(matricule, oid=oid) if matricule else None
    chosen = status or (IdentityStatus.RECUP if ins is not None else IdentityStatus.PROV)
    return Identity(traits=subject, ins=ins, status=chosen, **flags)


def call(
    mode: str,
    config: Settings,
    method: str,
    *args: Any,
    handler: Handler | None = None,
    audit: Iterable[AuditSink] = (),
    assertion_provider: AssertionProvider | None = None,
    **kwargs: Any,
) -> Any:
    """``InsiClient(...).<method>(...)`` or its async twin; in-process when ``handler`` is given."""
    if mode == "sync":
        sync_http = httpx.Client(transport=as_transport(handler)) if handler is not None else None
        try:
            with InsiClient(config, http_client=sync_http, audit=audit, assertion_provider=assertion_provider) as c:
                return getattr(c, method)(*args, **kwargs)
        finally:
            if sync_http is not None:
                sync_http.close()

    async def run() -> Any:
        async_http = httpx.AsyncClient(transport=as_async_transport(handler)) if handler is not None else None
        try:
            async with AsyncInsiClient(
                config, http_client=async_http, audit=audit, assertion_provider=assertion_provider
            ) as c:
                return await getattr(c, method)(*args, **kwargs)
        finally:
            if async_http is not None:
                await async_http.aclose()

    return asyncio.run(run())
