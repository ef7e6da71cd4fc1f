"""The public surface is explicit, and the async client mirrors the sync one."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dmp_connector
from dmp_connector.transport import AsyncClient, Client


def test_all_lists_exactly_the_public_names() -> None:
    for name in dmp_connector.__all__:
        getattr(dmp_connector, name)  # resolves the lazy names
    public = {name for name in vars(dmp_connector) if not name.startswith("_")} - {"annotations", "importlib"}
    modules = {name for name, value in vars(dmp_connector).items() if inspect.ismodule(value)}
    assert set(dmp_connector.__all__) - {"__version__"} == public - modules - {"TYPE_CHECKING", "Any"}
    assert len(set(dmp_connector.__all__)) == len(dmp_connector.__all__)
    assert set(dir(dmp_connector)) >= set(dmp_connector.__all__)


def test_lazy_names_agree_with_what_type_checkers_see() -> None:
    """The runtime map and the ``TYPE_CHECKING`` imports name the same objects from the same modules."""
    tree = ast.parse(Path(dmp_connector.__file__).read_text(encoding="utf-8"))
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    seen: dict[str, list[str]] = {}
    for node in guarded.body:
        assert isinstance(node, ast.ImportFrom)
        seen.setdefault(f".{node.module}", []).extend(alias.name for alias in node.names)
    assert {module: tuple(names) for module, names in seen.items()} == dmp_connector._EXPORTS
    lazy = [name for names in dmp_connector._EXPORTS.values() for name in names]
    assert sorted(lazy) == sorted(set(dmp_connector.__all__) - {"__version__"})


def test_importing_the_package_does_not_import_the_services() -> None:
    """The pytest plugin imports the package in every vendor test run: it must stay cheap."""
    code = "import sys, dmp_connector; print(sorted(m for m in sys.modules if m.startswith('dmp_connector.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['dmp_connector._version']"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        getattr(dmp_connector, "NoSuchThing")  # noqa: B009


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
        # with_options returns a client and does no I/O: synchronous in both.
        assert inspect.iscoroutinefunction(twin) is (name != "with_options"), f"AsyncClient.{name}"
        assert list(inspect.signature(twin).parameters) == list(signature.parameters), name
    sync_init = inspect.signature(Client.__init__).parameters
    async_init = inspect.signature(AsyncClient.__init__).parameters
    assert list(sync_init) == list(async_init)


def test_errors_share_one_root() -> None:
    for name in dmp_connector.__all__:
        obj = getattr(dmp_connector, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, dmp_connector.DmpConnectorError), name


def test_the_top_level_is_what_a_vendor_uses_first() -> None:
    """Clients, settings, errors, identity, documents: a short list, the rest in sub-packages."""
    assert len(dmp_connector.__all__) <= 60
    for name in ("InsiClient", "DmpClient", "MssanteClient", "Settings", "DmpConnectorError", "Identity"):
        assert name in dmp_connector.__all__
    assert "ClinicalDocument" in dmp_connector.__all__
    assert not set(dmp_connector.__all__) & set(dmp_connector._MOVED)


@pytest.mark.parametrize("name", sorted(dmp_connector._MOVED))
def test_a_moved_name_still_imports_with_a_warning_naming_its_new_home(name: str) -> None:
    home, _, new = dmp_connector._MOVED[name].partition(":")
    new = new or name
    with pytest.warns(DeprecationWarning, match=rf"from {re.escape(home)} import {new}\b"):
        value = getattr(dmp_connector, name)
    assert value is getattr(importlib.import_module(home), new)
    assert new in importlib.import_module(home).__all__
    assert home.split(".")[1][0] != "_", "a moved name's new home is public"


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        ("dmp_connector.dmp", "AuthorizationStatus", "AuthorisationStatus"),
        ("dmp_connector.dmp", "AuthorizedProfessional", "AuthorisedProfessional"),
        ("dmp_connector.dmp.td", "AuthorizationAction", "AuthorisationAction"),
        ("dmp_connector.dmp.td", "SetAuthorizationOperation", "SetAuthorisationOperation"),
        ("dmp_connector.dmp.td", "ListAuthorizationsOperation", "ListAuthorisationsOperation"),
    ],
)
def test_the_american_spelling_still_imports_with_a_warning(module: str, old: str, new: str) -> None:
    imported = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{old} is deprecated: use {module}\.{new}"):
        value = getattr(imported, old)
    assert value is getattr(imported, new)
    assert old not in imported.__all__


def test_dmp_status_and_settings_keep_the_old_spelling_for_one_release() -> None:
    from dmp_connector.config import DmpSettings
    from dmp_connector.dmp import AuthorisationStatus, DmpStatus

    status = DmpStatus(exists=True, authorisation=AuthorisationStatus.VALID)
    with pytest.warns(DeprecationWarning, match="use DmpStatus.authorisation"):
        assert status.authorization is AuthorisationStatus.VALID
    assert AuthorisationStatus("VALIDE") is AuthorisationStatus.VALID
    with pytest.warns(DeprecationWarning, match="use dmp.authorisation_list_mode"):
        settings = DmpSettings.model_validate({"authorization_list_mode": "ACTIVE"})
    assert settings.authorisation_list_mode == "ACTIVE"
    with pytest.warns(DeprecationWarning, match="use authorisation_role_element"):
        assert settings.authorization_role_element == "role"


def test_a_moved_name_warns_on_every_use() -> None:
    """The warning is not cached away after the first access (each importing module is told)."""
    for _ in range(2):
        with pytest.warns(DeprecationWarning, match="dmp_connector.xds import DocumentEntry"):
            from dmp_connector import DocumentEntry  # type: ignore[attr-defined]  # noqa: F401
