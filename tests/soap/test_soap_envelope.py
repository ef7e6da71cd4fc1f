"""Envelope building (header order, security last), parsing, faults and refusals."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from dmp_connector.errors import MalformedResponseError, SoapFaultError, UnsafeXmlError, ValidationError
from dmp_connector.soap import (
    Addressing,
    AssertionSecurity,
    Attachment,
    build_envelope,
    new_message_id,
    parse_envelope,
    resolve_xop,
    xop_include,
)
from dmp_connector.soap.namespaces import SAML2, SOAP12_ENV, WSA, WSSE, XDSB, XMIME, XOP
from dmp_connector.xml import parse_xml, to_bytes

ENV = f"{{{SOAP12_ENV}}}"
ACTION = "urn:ihe:iti:2007:RetrieveDocumentSet"
TO = "https://lps2.dmp.gouv.fr/si-dmp-server/v2/services/repository"


def _body() -> etree._Element:
    request = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB})
    etree.SubElement(request, f"{{{XDSB}}}DocumentUniqueId").text = "1.2.3.4"
    return request


def _context_header(name: str) -> etree._Element:
    element = etree.Element(f"{{urn:test:insi}}{name}", nsmap={"ctx": "urn:test:insi"})
    element.text = name
    return element


def _assertion() -> etree._Element:
    assertion = etree.Element(f"{{{SAML2}}}Assertion", nsmap={"saml2": SAML2}, ID="_a1", Version="2.0")
    etree.SubElement(assertion, f"{{{SAML2}}}Issuer").text = "CN=Cachet"
    return assertion


def _tags(header: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in header]


# --------------------------------------------------------------------------- building


def test_new_message_id_is_a_uuid_urn() -> None:
    first, second = new_message_id(), new_message_id()
    assert first.startswith("urn:uuid:")
    assert len(first) == len("urn:uuid:") + 36
    assert first != second


def test_header_order_without_reply_to() -> None:
    envelope = build_envelope(
        _body(), addressing=Addressing(action=ACTION, to=TO), security=AssertionSecurity(_assertion())
    )
    header = envelope.find(f"{ENV}Header")
    assert header is not None
    assert _tags(header) == ["MessageID", "To", "Action", "Security"]
    assert envelope.tag == f"{ENV}Envelope"
    assert [etree.QName(child).localname for child in envelope] == ["Header", "Body"]


def test_header_order_with_reply_to_and_extra_headers() -> None:
    addressing = Addressing(action=ACTION, to=TO, reply_to="http://www.w3.org/2005/08/addressing/anonymous")
    envelope = build_envelope(
        _body(),
        addressing=addressing,
        headers=[_context_header("ContexteBAM"), _context_header("ContexteLPS")],
        security=AssertionSecurity(_assertion()),
    )
    header = envelope.find(f"{ENV}Header")
    assert header is not None
    assert _tags(header) == ["MessageID", "To", "Action", "ReplyTo", "ContexteBAM", "ContexteLPS", "Security"]
    address = header.find(f"{{{WSA}}}ReplyTo/{{{WSA}}}Address")
    assert address is not None
    assert address.text == "http://www.w3.org/2005/08/addressing/anonymous"


def test_addressing_values_and_must_understand() -> None:
    addressing = Addressing(action=ACTION, to=TO)
    envelope = build_envelope(_body(), addressing=addressing)
    header = envelope.find(f"{ENV}Header")
    assert header is not None
    assert header.findtext(f"{{{WSA}}}MessageID") == addressing.message_id
    assert header.findtext(f"{{{WSA}}}To") == TO
    action = header.find(f"{{{WSA}}}Action")
    assert action is not None
    assert action.text == ACTION
    assert action.get(f"{ENV}mustUnderstand") == "true"
    assert header.find(f"{{{WSA}}}MessageID").get(f"{ENV}mustUnderstand") is None  # type: ignore[union-attr]
    # no security given: no Security header at all
    assert header.find(f"{{{WSSE}}}Security") is None


def test_must_understand_can_be_turned_off() -> None:
    envelope = build_envelope(_body(), addressing=Addressing(action=ACTION, to=TO, must_understand_action=False))
    action = envelope.find(f"{ENV}Header/{{{WSA}}}Action")
    assert action is not None
    assert action.get(f"{ENV}mustUnderstand") is None


def test_message_id_is_kept_when_given() -> None:
    addressing = Addressing(action=ACTION, to=TO, message_id="urn:uuid:00000000-0000-4000-8000-000000000000")
    envelope = build_envelope(_body(), addressing=addressing)
    assert envelope.findtext(f"{ENV}Header/{{{WSA}}}MessageID") == "urn:uuid:00000000-0000-4000-8000-000000000000"


def test_empty_addressing_is_refused() -> None:
    with pytest.raises(ValidationError):
        Addressing(action="", to=TO)


def test_security_is_applied_last_on_the_complete_envelope() -> None:
    seen: list[str] = []

    class Spy:
        def apply(self, envelope: etree._Element, security: etree._Element) -> None:
            assert security.tag == f"{{{WSSE}}}Security"
            assert len(security) == 0
            body = envelope.find(f"{ENV}Body")
            assert body is not None
            assert body.find(f"{{{XDSB}}}RetrieveDocumentSetRequest") is not None
            header = envelope.find(f"{ENV}Header")
            assert header is not None
            assert header[-1] is security
            assert _tags(header)[:-1] == ["MessageID", "To", "Action", "ContexteLPS"]
            seen.append("applied")
            etree.SubElement(security, "{urn:test}Token")

    envelope = build_envelope(
        _body(), addressing=Addressing(action=ACTION, to=TO), headers=[_context_header("ContexteLPS")], security=Spy()
    )
    assert seen == ["applied"]
    assert envelope.find(f"{ENV}Header/{{{WSSE}}}Security/{{urn:test}}Token") is not None


def test_assertion_security_copies_each_time() -> None:
    assertion = _assertion()
    security = AssertionSecurity(assertion)
    first = build_envelope(_body(), addressing=Addressing(action=ACTION, to=TO), security=security)
    second = build_envelope(_body(), addressing=Addressing(action=ACTION, to=TO), security=security)
    for envelope in (first, second):
        copied = envelope.find(f"{ENV}Header/{{{WSSE}}}Security/{{{SAML2}}}Assertion")
        assert copied is not None
        assert copied is not assertion
        assert copied.get("ID") == "_a1"
    assert assertion.getparent() is None  # the caller's element was not moved


def test_assertion_security_needs_a_token() -> None:
    with pytest.raises(ValidationError):
        AssertionSecurity()


def test_body_and_headers_are_copied_not_moved() -> None:
    parent = etree.Element("holder")
    body = etree.SubElement(parent, f"{{{XDSB}}}RetrieveDocumentSetRequest")
    envelope = build_envelope(body, addressing=Addressing(action=ACTION, to=TO))
    assert body.getparent() is parent
    assert envelope.find(f"{ENV}Body/{{{XDSB}}}RetrieveDocumentSetRequest") is not None


def test_several_body_elements_keep_their_order() -> None:
    first, second = etree.Element("{urn:t}First"), etree.Element("{urn:t}Second")
    envelope = build_envelope([first, second], addressing=Addressing(action=ACTION, to=TO))
    body = envelope.find(f"{ENV}Body")
    assert body is not None
    assert [child.tag for child in body] == ["{urn:t}First", "{urn:t}Second"]


def test_non_element_body_is_refused() -> None:
    with pytest.raises(TypeError):
        build_envelope(etree.Comment("x"), addressing=Addressing(action=ACTION, to=TO))


# --------------------------------------------------------------------------- parsing


def test_built_envelope_round_trips_through_parse_envelope() -> None:
    addressing = Addressing(action=ACTION, to=TO)
    envelope = build_envelope(
        _body(),
        addressing=addressing,
        headers=[_context_header("ContexteLPS")],
        security=AssertionSecurity(_assertion()),
    )
    message = parse_envelope(to_bytes(envelope))
    assert message.payload.tag == f"{{{XDSB}}}RetrieveDocumentSetRequest"
    assert message.payload.findtext(f"{{{XDSB}}}DocumentUniqueId") == "1.2.3.4"
    assert message.action == ACTION
    assert message.message_id == addressing.message_id
    assert message.relates_to is None
    assert len(message.header_elements(WSSE, "Security")) == 1
    assert message.header_elements("urn:test:insi", "ContexteLPS")[0].text == "ContexteLPS"
    assert message.attachments == {}
    assert etree.tostring(message.payload) == etree.tostring(envelope.find(f"{ENV}Body")[0])  # type: ignore[index]


def test_relates_to_and_action_are_read() -> None:
    data = f"""<env:Envelope xmlns:env="{SOAP12_ENV}" xmlns:wsa="{WSA}">
      <env:Header>
        <wsa:Action> urn:ihe:iti:2007:RetrieveDocumentSetResponse </wsa:Action>
        <wsa:RelatesTo>urn:uuid:1234</wsa:RelatesTo>
      </env:Header>
      <env:Body><r:Answer xmlns:r="urn:r"/></env:Body>
    </env:Envelope>""".encode()
    message = parse_envelope(data)
    assert message.action == "urn:ihe:iti:2007:RetrieveDocumentSetResponse"
    assert message.relates_to == "urn:uuid:1234"
    assert message.payload.tag == "{urn:r}Answer"


def test_envelope_without_header_parses() -> None:
    message = parse_envelope(f'<e:Envelope xmlns:e="{SOAP12_ENV}"><e:Body><x/></e:Body></e:Envelope>'.encode())
    assert message.header is None
    assert message.header_elements(WSA, "Action") == []
    assert message.action is None
    assert message.payload.tag == "x"


def test_empty_body_has_no_payload() -> None:
    message = parse_envelope(f'<e:Envelope xmlns:e="{SOAP12_ENV}"><e:Body><!-- c --></e:Body></e:Envelope>'.encode())
    with pytest.raises(MalformedResponseError, match="empty env:Body"):
        _ = message.payload


def test_soap11_envelope_is_refused_by_name() -> None:
    data = b"""<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
      <soapenv:Body><x/></soapenv:Body></soapenv:Envelope>"""
    with pytest.raises(MalformedResponseError, match=r"SOAP 1\.1"):
        parse_envelope(data)


def test_non_envelope_root_is_refused() -> None:
    with pytest.raises(MalformedResponseError, match="not a SOAP envelope") as info:
        parse_envelope(b"<html><body>Bad gateway</body></html>", operation="ITI-43")
    assert "ITI-43" in str(info.value)
    assert info.value.hint is not None
    assert "proxy" in info.value.hint


def test_missing_body_is_refused() -> None:
    data = f'<e:Envelope xmlns:e="{SOAP12_ENV}"><e:Header/></e:Envelope>'.encode()
    with pytest.raises(MalformedResponseError, match="no env:Body"):
        parse_envelope(data)


@pytest.mark.parametrize(
    "inner",
    [
        "<e:Body/><e:Header/>",
        "<e:Header/><e:Header/><e:Body/>",
        "<e:Body/><e:Body/>",
        "<e:Header/><e:Body/><extra/>",
    ],
)
def test_misplaced_envelope_children_are_refused(inner: str) -> None:
    data = f'<e:Envelope xmlns:e="{SOAP12_ENV}">{inner}</e:Envelope>'.encode()
    with pytest.raises(MalformedResponseError, match="unexpected"):
        parse_envelope(data)


def test_dtd_in_envelope_is_refused() -> None:
    data = f"""<?xml version="1.0"?>
    <!DOCTYPE e:Envelope [<!ENTITY x "boom">]>
    <e:Envelope xmlns:e="{SOAP12_ENV}"><e:Body><a>&x;</a></e:Body></e:Envelope>""".encode()
    with pytest.raises(UnsafeXmlError):
        parse_envelope(data)


def test_not_xml_is_refused() -> None:
    with pytest.raises(MalformedResponseError):
        parse_envelope(b"Service Unavailable")


# --------------------------------------------------------------------------- faults


def _fault(inner: str, *, extra_ns: str = "") -> bytes:
    return f"""<env:Envelope xmlns:env="{SOAP12_ENV}" {extra_ns}>
      <env:Body><env:Fault>{inner}</env:Fault></env:Body>
    </env:Envelope>""".encode()


def test_sender_fault_with_subcode_and_languages() -> None:
    data = _fault(
        """<env:Code><env:Value>env:Sender</env:Value>
             <env:Subcode><env:Value>rs:XDSMissingDocument</env:Value>
               <env:Subcode><env:Value>Unprefixed</env:Value></env:Subcode>
             </env:Subcode></env:Code>
           <env:Reason>
             <env:Text xml:lang="en">Document not found</env:Text>
             <env:Text xml:lang="fr-FR">Document introuvable</env:Text>
           </env:Reason>""",
        extra_ns='xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"',
    )
    with pytest.raises(SoapFaultError) as info:
        parse_envelope(data, operation="ITI-43")
    fault = info.value
    assert fault.code == f"{{{SOAP12_ENV}}}Sender"
    assert fault.subcodes == ("{urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0}XDSMissingDocument", "Unprefixed")
    assert fault.reason == "Document introuvable"
    assert fault.detail is None
    assert fault.operation == "ITI-43"
    assert "ITI-43" in str(fault)


def test_receiver_fault_prefers_english_over_other_languages() -> None:
    data = _fault(
        """<env:Code><env:Value>env:Receiver</env:Value></env:Code>
           <env:Reason>
             <env:Text xml:lang="de">Interner Fehler</env:Text>
             <env:Text xml:lang="en">Internal error</env:Text>
           </env:Reason>"""
    )
    with pytest.raises(SoapFaultError) as info:
        parse_envelope(data)
    assert info.value.code == f"{{{SOAP12_ENV}}}Receiver"
    assert info.value.subcodes == ()
    assert info.value.reason == "Internal error"
    assert info.value.operation is None


def test_fault_reason_falls_back_to_first_text() -> None:
    data = _fault(
        """<env:Code><env:Value>env:Receiver</env:Value></env:Code>
           <env:Reason><env:Text xml:lang="de">Eins</env:Text><env:Text xml:lang="it">Due</env:Text></env:Reason>"""
    )
    with pytest.raises(SoapFaultError) as info:
        parse_envelope(data)
    assert info.value.reason == "Eins"


def test_fault_code_with_unknown_prefix_is_kept_as_written() -> None:
    data = _fault("<env:Code><env:Value>nope:Sender</env:Value></env:Code>")
    with pytest.raises(SoapFaultError) as info:
        parse_envelope(data)
    assert info.value.code == "nope:Sender"
    assert info.value.reason == "(no reason given)"


def test_fault_detail_is_kept_but_not_in_the_message() -> None:
    data = _fault(
        """<env:Code><env:Value>env:Sender</env:Value></env:Code>
           <env:Reason><env:Text xml:lang="fr">Requete invalide</env:Text></env:Reason>
           <env:Detail><d:Info xmlns:d="urn:detail">DUPONT Jean 1850175123456</d:Info></env:Detail>"""
    )
    with pytest.raises(SoapFaultError) as info:
        parse_envelope(data)
    fault = info.value
    assert fault.detail is not None
    assert b"DUPONT Jean 1850175123456" in fault.detail
    detail = parse_xml(fault.detail)
    assert detail.tag == f"{ENV}Detail"
    assert "DUPONT" not in str(fault)
    assert "DUPONT" not in fault.message
    assert fault.reason == "Requete invalide"


def test_fault_without_code_is_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="Code"):
        parse_envelope(_fault("<env:Reason><env:Text>x</env:Text></env:Reason>"))


# --------------------------------------------------------------------------- XOP


def test_xop_include_percent_encodes_the_cid() -> None:
    include = xop_include("<doc 1/a%b@example.org>")
    assert include.tag == f"{{{XOP}}}Include"
    assert include.get("href") == "cid:doc%201%2Fa%25b@example.org"


def test_resolve_xop_finds_the_part() -> None:
    attachment = Attachment.from_bytes(b"%PDF-1.7 data", content_type="application/pdf", content_id="doc/1%x@y")
    document = etree.Element(f"{{{XDSB}}}Document", id="Doc1")
    document.append(xop_include(attachment.content_id))
    envelope = build_envelope(
        etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest"), addressing=Addressing(action=ACTION, to=TO)
    )
    envelope.find(f"{ENV}Body")[0].append(document)  # type: ignore[index]
    message = parse_envelope(to_bytes(envelope), attachments={attachment.content_id: attachment})
    found = message.payload.find(f"{{{XDSB}}}Document")
    assert found is not None
    resolved = resolve_xop(found, message.attachments)
    assert resolved is attachment
    assert resolved.read() == b"%PDF-1.7 data"


def test_resolve_xop_unknown_cid_is_malformed() -> None:
    document = etree.Element(f"{{{XDSB}}}Document")
    document.append(xop_include("missing@x"))
    with pytest.raises(MalformedResponseError, match="missing@x"):
        resolve_xop(document, {})


def test_resolve_xop_accepts_inline_base64() -> None:
    document = etree.Element(f"{{{XDSB}}}Document", nsmap={"xmime": XMIME})
    document.set(f"{{{XMIME}}}contentType", "text/xml")
    encoded = base64.b64encode(b"<ClinicalDocument/>").decode()
    document.text = f"\n  {encoded[:8]}\n  {encoded[8:]}\n"
    attachment = resolve_xop(document, {})
    assert attachment.read() == b"<ClinicalDocument/>"
    assert attachment.content_type == "text/xml"
    assert attachment.size == len(b"<ClinicalDocument/>")


def test_resolve_xop_refuses_bad_base64() -> None:
    document = etree.Element(f"{{{XDSB}}}Document")
    document.text = "not base64!"
    with pytest.raises(MalformedResponseError, match="base64"):
        resolve_xop(document, {})
