"""The public names of dmp_connector.soap are exactly those listed, and all importable."""

from __future__ import annotations

import inspect

import dmp_connector.soap as soap
from dmp_connector.soap import envelope, mtom, namespaces


def test_package_all_is_the_union_of_the_public_module_names() -> None:
    public = {name for name in (*envelope.__all__, *mtom.__all__) if not name.isupper()}
    assert set(soap.__all__) == public
    assert sorted(soap.__all__) == soap.__all__


def test_every_listed_name_exists() -> None:
    for module in (soap, envelope, mtom, namespaces):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_no_unlisted_public_definitions() -> None:
    for module in (envelope, mtom):
        defined = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__
        }
        assert defined <= set(module.__all__), module.__name__
    constants = {name for name, value in vars(namespaces).items() if name.isupper() and isinstance(value, str)}
    assert constants == set(namespaces.__all__)


def test_namespace_constants() -> None:
    assert namespaces.SOAP12_ENV == "http://www.w3.org/2003/05/soap-envelope"
    assert namespaces.WSA == "http://www.w3.org/2005/08/addressing"
    assert namespaces.XOP == "http://www.w3.org/2004/08/xop/include"
    assert namespaces.XDSB == "urn:ihe:iti:xds-b:2007"
    assert namespaces.RIM.endswith(":rim:3.0")
