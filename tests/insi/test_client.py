"""The INSi clients: the async one mirrors the sync one; the sandbox helpers; the public names."""

from __future__ import annotations

import asyncio
import inspect

import httpx

import dmp_connector.ins.client as client_module
import dmp_connector.ins.insi as insi_module
from dmp_connector.audit import MemorySink
from dmp_connector.ins.client import AsyncInsiClient, InsiClient
from dmp_connector.sandbox import as_transport
from dmp_connector.sandbox.insi import InsiSimulator, in_process_async_insi, in_process_insi

from .helpers import ADRUN, settings


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_async_client_mirrors_the_sync_client() -> None:
    sync, asyn = _public_methods(InsiClient), _public_methods(AsyncInsiClient)
    renamed = {"close": "aclose"}
    assert {renamed.get(name, name) for name in sync} == set(asyn)
    for name, signature in sync.items():
        twin = getattr(AsyncInsiClient, renamed.get(name, name))
        # with_options returns a client and does no I/O: synchronous in both.
        assert inspect.iscoroutinefunction(twin) is (name != "with_options"), f"AsyncInsiClient.{name}"
        assert list(inspect.signature(twin).parameters) == list(signature.parameters), name
        for parameter in signature.parameters.values():
            other = inspect.signature(twin).parameters[parameter.name]
            assert (parameter.kind, parameter.default) == (other.kind, other.default), (name, parameter.name)
    assert list(inspect.signature(InsiClient.__init__).parameters) == list(
        inspect.signature(AsyncInsiClient.__init__).parameters
    )
    assert {"search", "search_carte_vitale", "verify", "close"} <= set(sync)


def test_modules_list_their_public_names() -> None:
    for module in (client_module, insi_module):
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__
        }
        assert set(module.__all__) >= public
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"


def test_in_process_helpers_close_what_they_open() -> None:
    sink = MemorySink()
    with in_process_insi(settings(), audit=[sink]) as client:
        assert client.search(ADRUN).found
        assert client.audit.sinks == (sink,)

    async def run() -> bool:
        async with in_process_async_insi(settings(), InsiSimulator()) as client:
            return (await client.search(ADRUN)).found

    assert asyncio.run(run())
    assert len(sink.events) == 1


def test_a_callers_http_client_stays_open() -> None:
    http = httpx.Client(transport=as_transport(InsiSimulator()))
    with InsiClient(settings(), http_client=http) as client:
        assert client.search(ADRUN).found
    assert not http.is_closed
    http.close()
