"""The public surface is explicit, and the async client mirrors the sync one."""

from __future__ import annotations

import inspect

import dmp_connector
from dmp_connector import AsyncClient, Client


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(dmp_connector) if not name.startswith("_")} - {"annotations"}
    modules = {name for name, value in vars(dmp_connector).items() if inspect.ismodule(value)}
    assert set(dmp_connector.__all__) - {"__version__"} == public - modules
    assert len(set(dmp_connector.__all__)) == len(dmp_connector.__all__)


def test_every_public_name_has_a_docstring() -> None:
    for name in dmp_connector.__all__:
        obj = getattr(dmp_connector, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_async_client_mirrors_the_sync_client() -> None:
    sync, asyn = _public_methods(Client), _public_methods(AsyncClient)
    renamed = {"close": "aclose"}
    assert {renamed.get(n, n) for n in sync} == set(asyn)
    for name, signature in sync.items():
        twin = getattr(AsyncClient, renamed.get(name, name))
        assert inspect.iscoroutinefunction(twin), f"AsyncClient.{name} is not async"
        assert list(inspect.signature(twin).parameters) == list(signature.parameters), name
    sync_init = inspect.signature(Client.__init__).parameters
    async_init = inspect.signature(AsyncClient.__init__).parameters
    assert list(sync_init) == list(async_init)


def test_errors_share_one_root() -> None:
    for name in dmp_connector.__all__:
        obj = getattr(dmp_connector, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, dmp_connector.DmpConnectorError), name
