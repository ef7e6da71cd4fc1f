"""SOAP 1.2 envelopes: building them with WS-Addressing and a WS-Security slot, reading answers.

Building follows the order DRIMbox sends to the DMP (MessageID, To, Action with
``mustUnderstand``, then ``wsse:Security``); the security step runs last so that a signer
sees the finished envelope, as zeep does. Reading goes through the hardened
:func:`~dmp_connector.xml.parse_xml`, checks the SOAP 1.2 shape, and turns an
``env:Fault`` into :class:`~dmp_connector.errors.SoapFaultError`.
"""

from __future__ import annotations

import binascii
import copy
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol, cast, overload
from urllib.parse import quote, unquote

from lxml import etree

from dmp_connector.errors import MalformedResponseError, SoapFaultError, ValidationError
from dmp_connector.xml import DEFAULT_LIMITS, XmlLimits, parse_xml, to_bytes

from .mtom import Attachment
from .namespaces import SOAP11_ENV, SOAP12_ENV, WSA, WSSE, XMIME, XML, XOP

__all__ = [
    "Addressing",
    "AssertionSecurity",
    "SoapMessage",
    "WsSecurity",
    "build_envelope",
    "new_message_id",
    "parse_envelope",
    "resolve_xop",
    "xop_include",
]

_ENVELOPE: Final = f"{{{SOAP12_ENV}}}Envelope"
_HEADER: Final = f"{{{SOAP12_ENV}}}Header"
_BODY: Final = f"{{{SOAP12_ENV}}}Body"
_FAULT: Final = f"{{{SOAP12_ENV}}}Fault"
_MUST_UNDERSTAND: Final = f"{{{SOAP12_ENV}}}mustUnderstand"
_XOP_INCLUDE: Final = f"{{{XOP}}}Include"
# RFC 3986 pchar minus unreserved (which quote() always keeps): what a cid: URL may hold as is.
_CID_SAFE: Final = "!$&'()*+,;=:@"
# What quote() keeps as it is: unreserved characters and _CID_SAFE (a Content-ID made here holds nothing else).
_CID_KEPT: Final = re.compile(r"[A-Za-z0-9_.~!$&'()*+,;=:@-]+")
_NO_REASON: Final = "(no reason given)"
# What lxml escapes in element text (``&<>`` and a carriage return) or refuses (characters XML 1.0 excludes):
# an addressing value holding one is written by the tree path, which escapes or refuses it as it always has.
_NOT_PLAIN_TEXT: Final = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ENVELOPE_OPEN: Final = (
    f"<?xml version='1.0' encoding='UTF-8'?>\n<env:Envelope xmlns:env=\"{SOAP12_ENV}\" xmlns:wsa=\"{WSA}\">"
    "<env:Header><wsa:MessageID>"
).encode("ascii")
_SECURITY_OPEN: Final = f'<wsse:Security xmlns:wsse="{WSSE}">'.encode("ascii")


def new_message_id() -> str:
    """A fresh ``wsa:MessageID``: made once per logical call and kept on every retry."""
    return f"urn:uuid:{uuid.uuid4()}"


@dataclass(frozen=True)
class Addressing:
    """The WS-Addressing headers of one request.

    ``reply_to`` is left out by default: the DMP expects anonymous replies and no
    ``wsa:ReplyTo``. ``must_understand_action`` marks ``wsa:Action`` with
    ``env:mustUnderstand="true"``, as DRIMbox does.
    """

    action: str
    to: str
    message_id: str = field(default_factory=new_message_id)
    reply_to: str | None = None
    must_understand_action: bool = True

    def __post_init__(self) -> None:
        if not self.action or not self.to or not self.message_id:
            raise ValidationError("WS-Addressing needs a non-empty action, destination (to) and message id")


class WsSecurity(Protocol):
    """Fills the ``wsse:Security`` header of an envelope that is otherwise complete.

    :func:`build_envelope` calls :meth:`apply` last, with the empty ``wsse:Security``
    element already in the header, so that a signature can cover the final envelope.
    """

    def apply(self, envelope: etree._Element, security: etree._Element) -> None: ...


class AssertionSecurity:
    """Puts already-built tokens, such as a VIHF assertion signed elsewhere, in ``wsse:Security``.

    Each envelope gets deep copies, so one assertion can serve several requests and the
    caller's tree is left as it was::

        <wsse:Security xmlns:wsse="…wssecurity-secext-1.0.xsd">
          <saml2:Assertion ID="_6e1f…" Version="2.0" …>…</saml2:Assertion>
        </wsse:Security>
    """

    def __init__(self, *tokens: etree._Element) -> None:
        if not tokens:
            raise ValidationError("AssertionSecurity needs at least one element to put in wsse:Security")
        for token in tokens:
            _require_element(token, "AssertionSecurity")
        self._tokens = tokens

    @property
    def tokens(self) -> tuple[etree._Element, ...]:
        """The elements copied into each Security header, in order."""
        return self._tokens

    def apply(self, envelope: etree._Element, security: etree._Element) -> None:
        for token in self._tokens:
            security.append(_detached_copy(token))


class _MarkupBody(Sequence[etree._Element]):
    """Body elements a writer of this package already wrote as the UTF-8 markup they serialise to.

    ``_envelope_bytes`` splices :attr:`data` into the envelope as it is: no tree is built,
    copied into ``env:Body`` and serialised again. Read as a sequence (by :func:`build_envelope`, say),
    it is the element ``parse`` makes of :attr:`data`, parsed once on first use; the writer vouches
    that this element serialises back to :attr:`data` exactly (tests/xds compares them).
    """

    __slots__ = ("_element", "_parse", "data")

    def __init__(self, data: bytes, parse: Callable[[bytes], etree._Element]) -> None:
        self.data = data
        """The body's one element as UTF-8 markup, namespaces declared on it, no XML declaration."""
        self._parse = parse
        self._element: etree._Element | None = None

    @property
    def parsed(self) -> bool:
        """Whether the element was asked for (it may then have been changed: the markup no longer speaks for it)."""
        return self._element is not None

    def _elements(self) -> list[etree._Element]:
        if self._element is None:
            self._element = self._parse(self.data)
        return [self._element]

    def __len__(self) -> int:
        return 1

    @overload
    def __getitem__(self, index: int) -> etree._Element: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[etree._Element]: ...

    def __getitem__(self, index: int | slice) -> etree._Element | Sequence[etree._Element]:
        return self._elements()[index]

    def __iter__(self) -> Iterator[etree._Element]:
        return iter(self._elements())


class _TokenWriter(Protocol):
    def __call__(self, security: WsSecurity, /) -> object: ...


def _envelope_bytes(
    body: etree._Element | Sequence[etree._Element],
    *,
    addressing: Addressing,
    headers: Sequence[etree._Element] = (),
    security: WsSecurity | None = None,
) -> bytes:
    """``to_bytes(build_envelope(...))``, written as text when nothing in it needs a tree.

    That is when ``body`` is a ``_MarkupBody`` not yet parsed, there are no extra headers, no
    addressing value needs escaping, and the security is none or writes its tokens itself: a
    ``wsse_token_bytes()`` method of its class that returns what its :meth:`WsSecurity.apply`
    would append, serialised as the envelope serialises it (as
    :class:`~dmp_connector.signature.VihfSecurity`'s does), or None, before any work, to be asked
    through ``apply``; anything but non-empty ``bytes`` is asked through ``apply``. The text is then the
    envelope's bytes as lxml writes them; anything else goes through :func:`build_envelope`.
    """
    if type(body) is _MarkupBody and not body.parsed and not headers and _plain(addressing):
        tokens: object = b""
        if security is not None:
            # Looked up on the type, as a method: an object answering any attribute (a proxy, a
            # mock) or an instance attribute of that name is not taken for a writer of its tokens.
            writer = cast("_TokenWriter | None", getattr(type(security), "wsse_token_bytes", None))
            if writer is None or "wsse_token_bytes" in getattr(security, "__dict__", {}):
                tokens = None
            else:
                written = writer(security)
                # Bytes only, and not empty: lxml writes an empty wsse:Security as <wsse:Security …/>.
                tokens = written if type(written) is bytes and written else None
        if type(tokens) is bytes:
            parts = [
                _ENVELOPE_OPEN,
                addressing.message_id.encode("utf-8"),
                b"</wsa:MessageID><wsa:To>",
                addressing.to.encode("utf-8"),
                b'</wsa:To><wsa:Action env:mustUnderstand="true">'
                if addressing.must_understand_action
                else b"</wsa:To><wsa:Action>",
                addressing.action.encode("utf-8"),
                b"</wsa:Action>",
            ]
            if addressing.reply_to is not None:
                parts += (b"<wsa:ReplyTo><wsa:Address>", addressing.reply_to.encode("utf-8"))
                parts.append(b"</wsa:Address></wsa:ReplyTo>")
            if security is not None:
                parts += (_SECURITY_OPEN, tokens, b"</wsse:Security>")
            parts += (b"</env:Header><env:Body>", body.data, b"</env:Body></env:Envelope>")
            return b"".join(parts)
    return to_bytes(build_envelope(body, addressing=addressing, headers=headers, security=security))


def _plain(addressing: Addressing) -> bool:
    """Whether every addressing value is written as it is (nothing to escape, nothing lxml refuses)."""
    values = (addressing.message_id, addressing.to, addressing.action, addressing.reply_to or "")
    return all(type(value) is str and _NOT_PLAIN_TEXT.search(value) is None for value in values)


def build_envelope(
    body: etree._Element | Sequence[etree._Element],
    *,
    addressing: Addressing,
    headers: Sequence[etree._Element] = (),
    security: WsSecurity | None = None,
) -> etree._Element:
    """Build a SOAP 1.2 envelope around ``body``; ``headers`` and ``body`` are copied, not moved.

    ::

        <env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"
                      xmlns:wsa="http://www.w3.org/2005/08/addressing">
          <env:Header>
            <wsa:MessageID>urn:uuid:0f6c…</wsa:MessageID>
            <wsa:To>https://lps2.dmp.gouv.fr/si-dmp-server/v2/services/repository</wsa:To>
            <wsa:Action env:mustUnderstand="true">urn:ihe:iti:2007:RetrieveDocumentSet</wsa:Action>
            <!-- wsa:ReplyTo if asked, then the extra headers (INSi ContexteLPS …) -->
            <wsse:Security xmlns:wsse="…">…filled by security.apply()…</wsse:Security>
          </env:Header>
          <env:Body><xdsb:RetrieveDocumentSetRequest …/></env:Body>
        </env:Envelope>
    """
    bodies = [body] if isinstance(body, etree._Element) else list(body)
    for element in (*bodies, *headers):
        _require_element(element, "build_envelope")

    envelope = etree.Element(_ENVELOPE, nsmap={"env": SOAP12_ENV, "wsa": WSA})
    header = etree.SubElement(envelope, _HEADER)
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = addressing.message_id
    etree.SubElement(header, f"{{{WSA}}}To").text = addressing.to
    action = etree.SubElement(header, f"{{{WSA}}}Action")
    action.text = addressing.action
    if addressing.must_understand_action:
        action.set(_MUST_UNDERSTAND, "true")
    if addressing.reply_to is not None:
        reply_to = etree.SubElement(header, f"{{{WSA}}}ReplyTo")
        etree.SubElement(reply_to, f"{{{WSA}}}Address").text = addressing.reply_to
    for extra in headers:
        header.append(_detached_copy(extra))

    body_element = etree.SubElement(envelope, _BODY)
    for element in bodies:
        body_element.append(_detached_copy(element))

    if security is not None:
        security_element = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
        security.apply(envelope, security_element)
    return envelope


@dataclass(frozen=True)
class SoapMessage:
    """A SOAP 1.2 answer that passed the shape checks and is not a fault."""

    envelope: etree._Element
    header: etree._Element | None
    body: etree._Element
    attachments: Mapping[str, Attachment] = field(default_factory=dict)
    """MTOM parts by Content-ID (without angle brackets); empty for a plain SOAP answer."""

    @property
    def payload(self) -> etree._Element:
        """The first element in ``env:Body``: the operation's answer."""
        for child in self.body:
            if isinstance(child.tag, str):
                return child
        raise MalformedResponseError("the SOAP answer has an empty env:Body")

    def header_elements(self, ns: str, local: str) -> list[etree._Element]:
        """The header blocks named ``{ns}local``, in document order."""
        if self.header is None:
            return []
        tag = f"{{{ns}}}{local}"
        return [child for child in self.header if child.tag == tag]

    @property
    def action(self) -> str | None:
        """``wsa:Action`` of the answer, if it has one."""
        return self._wsa_text("Action")

    @property
    def relates_to(self) -> str | None:
        """``wsa:RelatesTo``: the MessageID of the request this answers, if given."""
        return self._wsa_text("RelatesTo")

    @property
    def message_id(self) -> str | None:
        """``wsa:MessageID`` of the answer, if it has one."""
        return self._wsa_text("MessageID")

    def _wsa_text(self, local: str) -> str | None:
        for element in self.header_elements(WSA, local):
            return (element.text or "").strip() or None
        return None


def parse_envelope(
    data: bytes,
    *,
    attachments: Mapping[str, Attachment] | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
    operation: str | None = None,
) -> SoapMessage:
    """Parse a SOAP 1.2 answer, refuse any other shape, and raise a SOAP fault as an error.

    ``attachments`` are the MTOM parts that came with the envelope (see
    :class:`~dmp_connector.soap.mtom.MultipartRelatedParser`); ``operation`` names the call
    in error messages.
    """
    what = f"the answer to {operation}" if operation else "the SOAP answer"
    root = parse_xml(data, limits=limits, what=what)
    if root.tag == f"{{{SOAP11_ENV}}}Envelope":
        raise MalformedResponseError(
            f"{what} is a SOAP 1.1 envelope; SOAP 1.2 was expected",
            hint="the endpoint may be wrong, or a gateway answered instead of the service",
        )
    if root.tag != _ENVELOPE:
        qname = etree.QName(root)
        shown = f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname
        hint = (
            "an HTML page comes from a proxy or a gateway, not from the service" if qname.localname == "html" else None
        )
        raise MalformedResponseError(f"{what} is not a SOAP envelope: its root element is {shown}", hint=hint)

    header: etree._Element | None = None
    body: etree._Element | None = None
    for position, child in enumerate(c for c in root if isinstance(c.tag, str)):
        if child.tag == _HEADER and position == 0:
            header = child
        elif child.tag == _BODY and body is None:
            body = child
        else:
            qname = etree.QName(child)
            raise MalformedResponseError(
                f"{what} has an unexpected {qname.localname} element in env:Envelope "
                "(SOAP 1.2 allows one env:Header, then one env:Body)"
            )
    if body is None:
        raise MalformedResponseError(f"{what} has no env:Body")

    fault = body.find(_FAULT)
    if fault is not None:
        raise _fault_error(fault, what, operation)
    return SoapMessage(
        envelope=root,
        header=header,
        body=body,
        attachments=MappingProxyType(dict(attachments or {})),
    )


def xop_include(content_id: str) -> etree._Element:
    """An ``xop:Include`` pointing at an MTOM part, its Content-ID percent-encoded as RFC 2392 asks.

    ::

        <xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:1b4e…@dmp-connector"/>

    Characters a URL may not hold as they are (space, ``%``, ``/``, ``?``, ``#`` …) become ``%hh``.
    """
    element = etree.Element(_XOP_INCLUDE, nsmap={"xop": XOP})
    element.set("href", _cid_url(content_id))
    return element


def _cid_url(content_id: str) -> str:
    """The ``cid:`` URL of an MTOM part, as :func:`xop_include` writes it in ``href``."""
    cid = content_id.strip()
    if cid.startswith("<") and cid.endswith(">"):
        cid = cid[1:-1]
    if not cid:
        raise ValidationError("xop:Include needs a non-empty Content-ID")
    return "cid:" + (cid if _CID_KEPT.fullmatch(cid) else quote(cid, safe=_CID_SAFE))


def resolve_xop(element: etree._Element, attachments: Mapping[str, Attachment]) -> Attachment:
    """The binary content of ``element`` (an ``xdsb:Document``, say), from its MTOM part or inline base64.

    ``<xdsb:Document id="Doc1"><xop:Include href="cid:…"/></xdsb:Document>`` gives the part
    named by the ``cid:`` URL; ``<xdsb:Document id="Doc1">JVBERi0…</xdsb:Document>``, as a
    server that does not use MTOM sends, gives an in-memory attachment of the decoded bytes.
    """
    include = next((child for child in element if child.tag == _XOP_INCLUDE), None)
    if include is not None:
        href = (include.get("href") or "").strip()
        if href[:4].lower() != "cid:":
            raise MalformedResponseError("an xop:Include in the answer has no cid: href")
        raw = href[4:]
        for candidate in (unquote(raw), raw):
            attachment = attachments.get(candidate)
            if attachment is not None:
                return attachment
        raise MalformedResponseError(
            f"the answer refers to MTOM part <{unquote(raw)}>, which is not in the message",
            hint="the multipart answer may have been cut or its parts renamed by a proxy",
        )
    if any(isinstance(child.tag, str) for child in element):
        raise MalformedResponseError(
            f"the {etree.QName(element).localname} element holds neither an xop:Include nor base64 text"
        )
    text = (element.text or "") + "".join(child.tail or "" for child in element)
    try:
        data = binascii.a2b_base64("".join(text.split()).encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedResponseError(
            f"the {etree.QName(element).localname} element holds neither an xop:Include nor valid base64"
        ) from exc
    content_type = element.get(f"{{{XMIME}}}contentType") or "application/octet-stream"
    try:
        return Attachment.from_bytes(data, content_type=content_type)
    except ValidationError:
        return Attachment.from_bytes(data)


def _fault_error(fault: etree._Element, what: str, operation: str | None) -> Exception:
    env = f"{{{SOAP12_ENV}}}"
    code_element = fault.find(f"{env}Code")
    value = code_element.find(f"{env}Value") if code_element is not None else None
    if code_element is None or value is None or not (value.text or "").strip():
        return MalformedResponseError(f"{what} is a SOAP fault without env:Code/env:Value")
    subcodes: list[str] = []
    parent = code_element
    while (subcode := parent.find(f"{env}Subcode")) is not None:
        sub_value = subcode.find(f"{env}Value")
        if sub_value is None or not (sub_value.text or "").strip():
            break
        subcodes.append(_qname_text(sub_value))
        parent = subcode
    detail = fault.find(f"{env}Detail")
    return SoapFaultError(
        code=_qname_text(value),
        subcodes=subcodes,
        reason=_reason_text(fault.find(f"{env}Reason")),
        detail=etree.tostring(detail, with_tail=False) if detail is not None else None,
        operation=operation,
    )


def _qname_text(element: etree._Element) -> str:
    """An xs:QName value as a Clark name when its prefix (or the default namespace) resolves, else as written."""
    text = (element.text or "").strip()
    prefix, colon, local = text.rpartition(":")
    if not local or ":" in prefix or (colon and not prefix):
        return text
    namespace = element.nsmap.get(prefix or None)
    return f"{{{namespace}}}{local}" if namespace else text


def _reason_text(reason: etree._Element | None) -> str:
    """The first env:Text in French, else in English, else the first one."""
    if reason is None:
        return _NO_REASON
    texts = reason.findall(f"{{{SOAP12_ENV}}}Text")
    if not texts:
        return _NO_REASON

    def language(text: etree._Element) -> str:
        return (text.get(f"{{{XML}}}lang") or "").split("-")[0].strip().lower()

    for wanted in ("fr", "en"):
        for text in texts:
            if language(text) == wanted:
                return _joined_text(text)
    return _joined_text(texts[0])


def _joined_text(element: etree._Element) -> str:
    return "".join(t for t in element.itertext() if isinstance(t, str)).strip() or _NO_REASON


def _require_element(element: object, where: str) -> None:
    if not isinstance(element, etree._Element) or not isinstance(element.tag, str):
        raise TypeError(f"{where} takes lxml elements (not comments, processing instructions or strings)")


def _detached_copy(element: etree._Element) -> etree._Element:
    duplicate = copy.deepcopy(element)
    duplicate.tail = None
    return duplicate
