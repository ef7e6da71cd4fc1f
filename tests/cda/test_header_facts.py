"""extract_metadata's header reader (``_header.py``, issue 22) against the former path: the whole model first.

The reference (``_reference_metadata.py``) is the former ``extract_metadata`` of bytes. For every
input compared, the new path gives the same metadata or the same error (class and message), and
its reading of the header (:func:`read_facts`) raises exactly when :func:`parse` raises, with the
same error: on the ANS kit, on the deposit benchmark's document, and on hypothesis mutations of
them (header elements and attributes dropped, altered, repeated).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from dmp_connector.cda import ClinicalDocument, NonXmlBody, build, extract_metadata, parse
from dmp_connector.cda._header import facts_of, read_facts
from dmp_connector.xml import DEFAULT_LIMITS, parse_xml

from ._reference_metadata import reference_extract_metadata
from .conftest import make_pdf

_header = sys.modules["dmp_connector.cda._header"]
_HL7 = "urn:hl7-org:v3"
_NS = {"h": _HL7}


def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """What ``call`` gives, or the class and message of what it raises."""
    try:
        return ("ok", call())
    except Exception as exc:
        return ("error", type(exc), str(exc), getattr(exc, "problems", None))


def _compare(data: bytes) -> None:
    """The new path against the former one, and its header reading against parse()."""
    new = _outcome(lambda: extract_metadata(data))
    assert new == _outcome(lambda: reference_extract_metadata(data))
    facts = _outcome(lambda: read_facts(data, DEFAULT_LIMITS))
    full = _outcome(lambda: parse(data))
    if full[0] == "error":
        assert facts[1:] == full[1:]
    else:
        assert facts[0] == "ok"


@pytest.fixture(scope="module")
def deposit_document(make_pdf_document: Callable[..., ClinicalDocument]) -> bytes:
    """The deposit benchmark's shape: a PDF body large enough for the reader's PDF-ends shortcut (>= 16 kB)."""
    return build(make_pdf_document(body=NonXmlBody(data=make_pdf(padding=40_000))))


_KIT_SAMPLES = (
    "VAC-NOTE_2023.01.xml",
    "LDL-SES_2022.01.xml",
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
    "BIO-CR-BIO_2024.01_Microbiologie_V2.xml",
    "ANEST-CR-CPA_2022.01.xml",
    "CSE-CS8_2025.01.xml",
)


# --------------------------------------------------------------------------- the kit and the deposit's document


def test_the_kit_examples_give_what_they_gave(example_files: Mapping[str, bytes]) -> None:
    for name, data in example_files.items():
        try:
            _compare(data)
        except AssertionError:
            pytest.fail(f"{name}: the header reader differs from the former path")


def test_the_deposit_document_gives_what_it_gave(deposit_document: bytes) -> None:
    _compare(deposit_document)
    assert extract_metadata(deposit_document) == reference_extract_metadata(deposit_document)


def test_a_model_and_its_bytes_give_the_same_facts(
    example_files: Mapping[str, bytes], parsed_examples: Mapping[str, ClinicalDocument]
) -> None:
    for name, document in parsed_examples.items():
        assert read_facts(example_files[name], DEFAULT_LIMITS) == facts_of(document), name


def test_the_full_reader_is_not_needed_for_the_kit_or_the_deposit(
    monkeypatch: pytest.MonkeyPatch, example_files: Mapping[str, bytes], deposit_document: bytes
) -> None:
    """The header reader handles every document parse() accepts in the kit by itself (else no gain)."""
    readable = {}
    for name, data in example_files.items():
        try:
            readable[name] = facts_of(parse(data))
        except Exception:
            continue
    readable["deposit"] = facts_of(parse(deposit_document))

    def refuse(*args: object) -> None:
        raise AssertionError("the full reader was asked")

    monkeypatch.setattr(_header, "_document", refuse)
    for name, facts in readable.items():
        data = deposit_document if name == "deposit" else example_files[name]
        assert read_facts(data, DEFAULT_LIMITS) == facts, name


# --------------------------------------------------------------------------- each rule of the models, one by one


def _found(doc: etree._Element, path: str) -> list[etree._Element]:
    found = doc.xpath(path, namespaces=_NS)
    assert isinstance(found, list)
    return [e for e in found if isinstance(e, etree._Element)]


def _set(path: str, name: str, value: str) -> Callable[[etree._Element], None]:
    def change(doc: etree._Element) -> None:
        for element in _found(doc, path):
            element.set(name, value)

    return change


def _drop(path: str) -> Callable[[etree._Element], None]:
    def change(doc: etree._Element) -> None:
        for element in _found(doc, path):
            parent = element.getparent()
            assert parent is not None
            parent.remove(element)

    return change


def _add(path: str, markup: str, *, first: bool = False) -> Callable[[etree._Element], None]:
    def change(doc: etree._Element) -> None:
        for element in _found(doc, path):
            new = parse_xml(markup.encode())
            if first:
                element.insert(0, new)
            else:
                element.append(new)

    return change


def _text(path: str, value: str) -> Callable[[etree._Element], None]:
    def change(doc: etree._Element) -> None:
        for element in _found(doc, path):
            element.text = value

    return change


_PERFORMER_ORG = "//h:serviceEvent/h:performer/h:assignedEntity/h:representedOrganization"
_REFUSED = {
    "practice setting code system": _set(f"{_PERFORMER_ORG}/h:standardIndustryClassCode", "codeSystem", "1.2.3"),
    "facility code system": _set("//h:healthCareFacility/h:code", "codeSystem", "1.2.3"),
    "author id root": _set("/h:ClinicalDocument/h:author/h:assignedAuthor/h:id", "root", "1.2.3"),
    "author time": _drop("/h:ClinicalDocument/h:author/h:time"),
    "author person and device": _add(
        "/h:ClinicalDocument/h:author/h:assignedAuthor",
        f'<assignedAuthoringDevice xmlns="{_HL7}"><softwareName>X</softwareName></assignedAuthoringDevice>',
    ),
    "legal authenticator person": _drop("//h:legalAuthenticator/h:assignedEntity/h:assignedPerson"),
    "legal authenticator time": _drop("//h:legalAuthenticator/h:time"),
    "service period order": _set("//h:serviceEvent/h:effectiveTime/h:low", "value", "20250101"),
    "encounter period order": _set("//h:encompassingEncounter/h:effectiveTime/h:high", "value", "20200101"),
    "performer's entity": _drop("//h:serviceEvent/h:performer/h:assignedEntity"),
    "birth place with an INS": _drop("//h:patient/h:birthplace"),
    "second INS": _add(
        "//h:patientRole", f'<id xmlns="{_HL7}" root="1.2.250.1.213.1.4.10" extension="275126322074974"/>', first=True
    ),
    "no patient id": _drop("//h:patientRole/h:id"),
    "patient INS": _set("//h:patientRole/h:id", "extension", "12345"),
    "patient sex": _set("//h:patient/h:administrativeGenderCode", "code", "X"),
    "patient birth time": _set("//h:patient/h:birthTime", "value", "197"),
    "patient family name": _drop("//h:patient/h:name/h:family"),
    "empty title": _text("/h:ClinicalDocument/h:title", " "),
    "version 0": _set("/h:ClinicalDocument/h:versionNumber", "value", "0"),
    "confidentiality code": _set("/h:ClinicalDocument/h:confidentialityCode", "code", "X"),
    "language": _set("/h:ClinicalDocument/h:languageCode", "code", "french"),
    "CI-SIS template": _drop("/h:ClinicalDocument/h:templateId[@root='1.2.250.1.213.1.1.1.1']"),
    "XDS-SD template": _drop("/h:ClinicalDocument/h:templateId[@root='1.3.6.1.4.1.19376.1.2.20']"),
    "two HL7 France templates": _add(
        "/h:ClinicalDocument", f'<templateId xmlns="{_HL7}" root="2.16.840.1.113883.2.8.2.1"/>'
    ),
    "custodian id root": _set("//h:representedCustodianOrganization/h:id", "root", "1.2.3"),
    "type code system": _set("/h:ClinicalDocument/h:code", "codeSystem", "1.2.3"),
    "type display name": lambda doc: doc.find(f"{{{_HL7}}}code").attrib.pop("displayName"),
    "document id root": _set("/h:ClinicalDocument/h:id", "root", "x y"),
    "effective time": _set("/h:ClinicalDocument/h:effectiveTime", "value", "2024-03-12"),
    "relatedDocument not RPLC": _add("/h:ClinicalDocument", f'<relatedDocument xmlns="{_HL7}" typeCode="XFRM"/>'),
    "participant without typeCode": _add(
        "/h:ClinicalDocument",
        f'<participant xmlns="{_HL7}"><associatedEntity classCode="PROV"/></participant>',
    ),
    "no service event": _drop("//h:documentationOf"),
    "no author": _drop("/h:ClinicalDocument/h:author"),
    "no custodian": _drop("/h:ClinicalDocument/h:custodian"),
    "no encounter": _drop("/h:ClinicalDocument/h:componentOf"),
    "PDF media type": _set("//h:nonXMLBody/h:text", "mediaType", "text/plain"),
}


def _changed(data: bytes, change: Callable[[etree._Element], Any]) -> bytes:
    root = parse_xml(data)
    change(root)
    return etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=True)


@pytest.mark.parametrize("case", sorted(_REFUSED))
def test_each_rule_of_the_models_is_checked(case: str, deposit_document: bytes) -> None:
    """Each document is refused by parse(); the header reader refuses it by itself (removing one of its checks
    fails here), and the deposit gets parse()'s error."""
    data = _changed(deposit_document, _REFUSED[case])
    assert data != deposit_document
    refused = _outcome(lambda: parse(data))
    assert refused[0] == "error"
    tree = parse_xml(data)
    document = tree if tree.tag == f"{{{_HL7}}}ClinicalDocument" else tree.find(f".//{{{_HL7}}}ClinicalDocument")
    with pytest.raises(Exception):  # noqa: B017 - whatever it is, the full reader then decides
        _header._header(document, None, None)
    _compare(data)


def test_a_replacement_gives_what_it_gave(deposit_document: bytes) -> None:
    related = (
        f'<relatedDocument xmlns="{_HL7}" typeCode="RPLC"><parentDocument>'
        '<id root="1.2.250.1.213.1.1.9" extension="v1"/></parentDocument></relatedDocument>'
    )
    data = _changed(deposit_document, _add("/h:ClinicalDocument", related))
    _compare(data)
    assert extract_metadata(data).replaced_unique_id == "1.2.250.1.213.1.1.9^v1"


# --------------------------------------------------------------------------- hypothesis: mutations of the header

_VALUES = (
    "",
    " ",
    "x",
    "0",
    "1",
    "N",
    "NR",
    "V",
    "fr-FR",
    "en-us",
    "RPLC",
    "M",
    "UN",
    "UNK",
    "1.2.3",
    "1.2.3 ",
    "a b",
    "2.16.840.1.113883.6.1",
    "1.2.250.1.213.1.1.4.12",
    "1.2.250.1.71.4.2.1",
    "1.2.250.1.71.4.2.2",
    "1.2.250.1.213.4.1",
    "1.2.250.1.213.1.4.8",
    "1.2.250.1.213.1.4.10",
    "1.2.250.1.213.1.1.4.9",
    "1.2.250.1.213.1.1.4.6",
    "1.2.250.1.71.4.2.4",
    "1.2.250.1.213.1.1.1.1",
    "2.16.840.1.113883.2.8.2.1",
    "1.3.6.1.4.1.19376.1.2.20",
    "20240312",
    "2024031210",
    "20240312103000+0100",
    "20240312103000+100",
    "20240312103000",
    "20250101",
    "20231301",
    "1975",
    "197512",
    "275126322074974",
    "275126322074975",
)
_ATTRIBUTES = (
    "root",
    "extension",
    "code",
    "codeSystem",
    "displayName",
    "value",
    "typeCode",
    "classCode",
    "nullFlavor",
    "qualifier",
    "mediaType",
)


def _header_elements(doc: etree._Element) -> list[etree._Element]:
    """The header's elements (the body's but its ``nonXMLBody/text``, whose attributes the reader checks)."""
    body = doc.find(f"{{{_HL7}}}component")
    inside = set(body.iter()) if body is not None else set()
    out = [e for e in doc.iter() if isinstance(e.tag, str) and e not in inside and e is not doc]
    out.extend(doc.iterfind(f"{{{_HL7}}}component/{{{_HL7}}}nonXMLBody/{{{_HL7}}}text"))
    return out


def _mutate(data: bytes, draw: Callable[[st.SearchStrategy[Any]], Any], count: int) -> bytes:
    root = parse_xml(data)
    doc = root if root.tag == f"{{{_HL7}}}ClinicalDocument" else root.find(f".//{{{_HL7}}}ClinicalDocument")
    assert doc is not None
    for _ in range(count):
        elements = _header_elements(doc)
        element = elements[draw(st.integers(0, len(elements) - 1))]
        action = draw(st.sampled_from(("drop", "drop attribute", "set attribute", "text", "repeat")))
        parent = element.getparent()
        if action == "drop" and parent is not None:
            parent.remove(element)
        elif action == "drop attribute" and element.attrib:
            del element.attrib[draw(st.sampled_from(sorted(element.attrib)))]
        elif action == "set attribute":
            element.set(draw(st.sampled_from(_ATTRIBUTES)), draw(st.sampled_from(_VALUES)))
        elif action == "text" and not len(element) and element.tag != f"{{{_HL7}}}text":
            element.text = draw(st.sampled_from(_VALUES))
        elif action == "repeat" and parent is not None:
            element.addnext(copy.deepcopy(element))
    return etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=True)


@given(st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutations_of_the_deposit_document(deposit_document: bytes, data: st.DataObject) -> None:
    _compare(_mutate(deposit_document, data.draw, data.draw(st.integers(1, 3))))


@pytest.mark.parametrize("name", _KIT_SAMPLES)
@given(st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutations_of_kit_examples(name: str, example_files: Mapping[str, bytes], data: st.DataObject) -> None:
    _compare(_mutate(example_files[name], data.draw, data.draw(st.integers(1, 3))))
