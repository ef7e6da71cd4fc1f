"""``VihfSecurity.wsse_token_bytes`` (issue 22): the assertion's bytes without its tree, against the tree's.

The envelope writer splices these bytes into ``wsse:Security`` where :meth:`VihfSecurity.apply`
appended the element. An assertion signed as text is rewritten from its canonical form into lxml's
(``_lxml_form``) when the two differ only by their empty elements; any other (an escaped character,
a ``>`` in an attribute, a name libxml2 refuses, the tree builder's assertions) is parsed and serialised,
with the errors it has always had.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from dmp_connector.errors import MalformedResponseError
from dmp_connector.sandbox import IssuedCertificate
from dmp_connector.signature import FileSigner, VihfRequest, VihfSecurity
from dmp_connector.signature import vihf as vihf_mod
from dmp_connector.signature.vihf import VIHF_ATTRIBUTES, CodedValue, VihfAttribute
from dmp_connector.soap import Addressing, build_envelope
from dmp_connector.soap.envelope import _envelope_bytes, _MarkupBody
from dmp_connector.xml import parse_xml, to_bytes
from tests.conftest import PkiFiles
from tests.signature.test_signing_fast_paths import AWKWARD, INS_CX, NOW, awkward_table, settings_with

# Values the canonical text and lxml write alike (escaped alike, or not at all).
ALIKE: tuple[str, ...] = ("plain", "a & b", '"quoted"', "it's", "é ü ß Œ", "emoji 😀", "  padded  ", "&amp; already")
ALIKE += ("\u00a0nbsp", "x" * 300)

BODY = b'<p:Request xmlns:p="urn:test:p"><p:Item>1</p:Item></p:Request>'
ADDRESSING = Addressing(action="urn:a", to="https://h/x", message_id="urn:uuid:1")


@pytest.fixture(scope="module")
def plain_sign(pki_files: PkiFiles) -> IssuedCertificate:
    return pki_files.pki.issue_organisation_sign(organisation="CABINET PLAIN", structure_id="1123456781")


@pytest.fixture(scope="module")
def plain(plain_sign: IssuedCertificate) -> FileSigner:
    return FileSigner([plain_sign.certificate], plain_sign.key)


@pytest.fixture(scope="module")
def awkward(pki_files: PkiFiles) -> FileSigner:
    sign = pki_files.pki.issue_organisation_sign(organisation='CABINET <A&B> "é"', structure_id="1123456782")
    return FileSigner([sign.certificate], sign.key)


@pytest.fixture(autouse=True)
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=42))


@pytest.fixture
def rewritten(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each call of ``_lxml_form`` rewrote the text (True) or left it to the tree (False)."""
    calls: list[bool] = []
    original = vihf_mod._lxml_form

    def noted(*pieces: str) -> bytes | None:
        written = original(*pieces)
        calls.append(written is not None)
        return written

    monkeypatch.setattr(vihf_mod, "_lxml_form", noted)
    return calls


def security(signer: FileSigner, table: list[VihfAttribute] | None = None, **signing: Any) -> VihfSecurity:
    request = VihfRequest(patient_resource_id=INS_CX)
    return VihfSecurity(settings_with(**signing), signer, request, attributes=table, clock=lambda: NOW)


def tree_envelope(made: VihfSecurity) -> bytes:
    return to_bytes(build_envelope(parse_xml(BODY), addressing=ADDRESSING, security=made))


def outcome(call: Any) -> tuple[str, bytes | str]:
    try:
        return "ok", call()
    except Exception as exc:
        return type(exc).__name__, str(exc)


def test_a_plain_assertion_is_rewritten_without_its_tree(
    plain: FileSigner, rewritten: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = tree_envelope(security(plain))
    monkeypatch.setattr(vihf_mod, "parse_xml", None)  # no tree for the assertion: nothing parsed
    made = security(plain)
    written = _envelope_bytes(_MarkupBody(BODY, parse_xml), addressing=ADDRESSING, security=made)
    assert written == expected
    assert rewritten == [True]
    assert b"<CanonicalizationMethod Algorithm=" in written and b"></CanonicalizationMethod>" not in written


@pytest.mark.parametrize("value", ["plain", *AWKWARD])
@pytest.mark.parametrize("which", ["plain", "awkward"])
def test_the_bytes_are_the_assertion_the_envelope_holds(
    value: str, which: str, plain: FileSigner, awkward: FileSigner, rewritten: list[bool]
) -> None:
    # The "awkward" signer's Issuer holds '<A&B> "é"' (written alike), the patient's CX an "&" (too).
    chosen = plain if which == "plain" else awkward
    table = awkward_table(value)
    tokens = security(chosen, table).wsse_token_bytes()
    assert tokens == to_bytes(security(chosen, table).assertion(), xml_declaration=False)
    spliced = _envelope_bytes(_MarkupBody(BODY, parse_xml), addressing=ADDRESSING, security=security(chosen, table))
    assert spliced == tree_envelope(security(chosen, table))
    assert rewritten[0] is (value in ALIKE)


@pytest.mark.parametrize(
    "value",
    [
        CodedValue("Role", "a>b", "s"),  # ">" in an attribute: C14N keeps it, lxml writes &gt;
        CodedValue("Role", "a\tb", "s"),  # &#x9; against &#9;
        "text\rhere",  # &#xD; against &#13;
    ],
)
def test_what_c14n_and_lxml_write_differently_is_serialised_from_the_tree(
    value: Any, plain: FileSigner, rewritten: list[bool]
) -> None:
    table = [*VIHF_ATTRIBUTES, VihfAttribute("Odd", lambda ctx: [value])]
    tokens = security(plain, table).wsse_token_bytes()
    assert tokens == to_bytes(security(plain, table).assertion(), xml_declaration=False)
    assert rewritten == [False]


def test_a_name_libxml2_refuses_is_refused_as_the_assertion_is(plain: FileSigner, rewritten: list[bool]) -> None:
    # Its canonical text is well formed but for libxml2's longest name (50,000 characters): the parser refused
    # it when the assertion was always parsed, and must still refuse it.
    table = [*VIHF_ATTRIBUTES, VihfAttribute("Long", lambda ctx: [CodedValue("R" * 50_001, "c", "s")])]
    tokens = outcome(security(plain, table).wsse_token_bytes)
    assert tokens == outcome(security(plain, table).assertion)
    assert tokens[0] == MalformedResponseError.__name__ and "Name too long" in str(tokens[1])
    assert rewritten == [False]


def test_a_large_assertion_with_plain_names_is_the_same_bytes(plain: FileSigner, rewritten: list[bool]) -> None:
    table = [*VIHF_ATTRIBUTES, VihfAttribute("Many", lambda ctx: ["v" * 100] * 600)]
    tokens = security(plain, table).wsse_token_bytes()
    assert tokens is not None and len(tokens) > 60_000
    assert tokens == to_bytes(security(plain, table).assertion(), xml_declaration=False)


def test_the_tree_builders_assertion_is_serialised(
    plain: FileSigner, rewritten: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vihf_mod, "certificate_dn", lambda cert: "")  # an empty Issuer: the tree path signs it
    tokens = security(plain).wsse_token_bytes()
    assert tokens == to_bytes(security(plain).assertion(), xml_declaration=False)
    assert rewritten == []  # no canonical text to rewrite
    assert b"<Issuer Format" in tokens and b"></Issuer>" in tokens


def test_the_cached_assertion_gives_the_same_bytes_each_time(plain: FileSigner, awkward: FileSigner) -> None:
    for chosen in (plain, awkward):
        made = security(chosen, vihf_validity_seconds=300)
        first = made.wsse_token_bytes()
        cached = made.assertion()
        assert made.wsse_token_bytes() == first == to_bytes(cached, xml_declaration=False)
        assert made.assertion() is cached and cached.getparent() is None
        spliced = _envelope_bytes(_MarkupBody(BODY, parse_xml), addressing=ADDRESSING, security=made)
        assert spliced == tree_envelope(made)


def test_an_assertion_without_attributes_is_the_same_bytes(plain: FileSigner, rewritten: list[bool]) -> None:
    tokens = security(plain, []).wsse_token_bytes()  # <AttributeStatement/>
    assert tokens == to_bytes(security(plain, []).assertion(), xml_declaration=False)
    assert b"<AttributeStatement/>" in tokens and rewritten == [True]


@pytest.mark.parametrize("validity", [None, 600])
@pytest.mark.parametrize("mode", ["rsa-sha1", "rsa-sha256"])
def test_conditions_and_algorithms_are_the_same_bytes(
    validity: int | None, mode: str, plain: FileSigner, rewritten: list[bool]
) -> None:
    signing: dict[str, Any] = {"signature_algorithm": mode, "digest_algorithm": mode.removeprefix("rsa-")}
    made = security(plain, None, vihf_validity_seconds=validity, **signing)
    tokens = made.wsse_token_bytes()
    assert tokens == to_bytes(made.assertion(), xml_declaration=False)
    assert (b"<Conditions NotBefore=" in tokens) is (validity is not None)
    assert rewritten[0] is True


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(st.sampled_from("a &<>\"'\t\n\r\x85\u2028é😀;#x")) | st.text(max_size=6))
def test_any_value_gives_the_bytes_of_the_assertion(value: str, plain: FileSigner) -> None:
    table = awkward_table(value)
    assert outcome(security(plain, table).wsse_token_bytes) == outcome(
        lambda: to_bytes(security(plain, table).assertion(), xml_declaration=False)
    )


class _OddId:
    def __str__(self) -> str:
        return "a>b"


@pytest.mark.parametrize("where", ["issuer", "instant", "id"])
def test_what_the_head_writes_differently_is_serialised_from_the_tree(
    where: str, plain: FileSigner, rewritten: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "issuer":
        monkeypatch.setattr(vihf_mod, "certificate_dn", lambda cert: "CN=a\rb")  # &#xD; against &#13;
    elif where == "instant":
        monkeypatch.setattr(vihf_mod, "_instant", lambda moment: "2024>01")  # > kept against &gt;
    else:
        monkeypatch.setattr(uuid, "uuid4", _OddId)  # in the head only: ID="_a>b"
    tokens = security(plain).wsse_token_bytes()
    assert tokens == to_bytes(security(plain).assertion(), xml_declaration=False)
    assert rewritten == [False]


def test_a_subclass_with_its_own_apply_is_asked_through_it(plain: FileSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    class WithTimestamp(VihfSecurity):
        def apply(self, envelope: etree._Element, security: etree._Element) -> None:
            super().apply(envelope, security)
            etree.SubElement(security, "{urn:test}Timestamp")

    signed: list[int] = []
    original = vihf_mod._sign

    def counted(*args: Any, **kwargs: Any) -> Any:
        signed.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(vihf_mod, "_sign", counted)
    made = WithTimestamp(settings_with(), plain, VihfRequest(patient_resource_id=INS_CX), clock=lambda: NOW)
    assert made.wsse_token_bytes() is None and signed == []  # declined before signing anything
    written = _envelope_bytes(_MarkupBody(BODY, parse_xml), addressing=ADDRESSING, security=made)
    assert b"Timestamp" in written and signed == [1]
    assert written == tree_envelope(made)


def test_apply_replaced_on_the_instance_or_patched_on_the_class_is_called(
    plain: FileSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review finding: both kept the text path, and what the replaced apply adds was lost.
    def stamped(self: VihfSecurity, envelope: etree._Element, security_element: etree._Element) -> None:
        original(self, envelope, security_element)
        etree.SubElement(security_element, "{urn:test}Timestamp")

    original = VihfSecurity.apply
    made = security(plain)
    made.apply = stamped.__get__(made)  # type: ignore[method-assign]
    assert made.wsse_token_bytes() is None
    written = _envelope_bytes(_MarkupBody(BODY, parse_xml), addressing=ADDRESSING, security=made)
    assert b"Timestamp" in written and written == tree_envelope(made)

    monkeypatch.setattr(VihfSecurity, "apply", stamped)
    made = security(plain)
    assert made.wsse_token_bytes() is None
    written = _envelope_bytes(_MarkupBody(BODY, parse_xml), addressing=ADDRESSING, security=made)
    assert b"Timestamp" in written and written == tree_envelope(made)


def test_a_subclass_giving_its_own_assertion_is_asked_through_apply(plain: FileSigner) -> None:
    class Marked(VihfSecurity):
        def _assertion(self) -> tuple[etree._Element, bool]:
            assertion, _shared = super()._assertion()
            assertion.set("marked", "yes")
            return assertion, False

    made = Marked(settings_with(), plain, VihfRequest(patient_resource_id=INS_CX), clock=lambda: NOW)
    assert made.wsse_token_bytes() is None
    written = _envelope_bytes(_MarkupBody(BODY, parse_xml), addressing=ADDRESSING, security=made)
    assert b'marked="yes"' in written and written == tree_envelope(made)
