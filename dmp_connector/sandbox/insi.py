"""The INSi simulator: the two searches over the same SOAP 1.2 messages, from seeded test identities.

:class:`InsiSimulator` is a handler ``HttpRequest -> HttpResponse``, so it runs
in-process (:func:`~dmp_connector.sandbox.as_transport`), on a loopback HTTPS server
with mutual TLS (:class:`~dmp_connector.sandbox.LoopbackServer`), or behind a
:class:`~dmp_connector.sandbox.ScriptedHandler` that queues faults in front of it::

    script = ScriptedHandler(InsiSimulator()).then(SimulatedFault.technical().respond)

It reads requests with the hardened parser and checks what the real service checks as
far as public material tells: the action matches the body, ``ContexteBAM`` and
``ContexteLPS`` are there with their versions, the ``IDAM`` is present (and known, when
``known_idams`` is given), optionally the client certificate's CN and a card assertion.
A wrong request gets a Sender fault over HTTP 500 like the real service's. Fault codes
starting with ``sandbox_`` are the simulator's own: the real codes for those cases are
not public.

Matching (traits search): birth name, sex and birth date equal after normalisation; the
``Prenom`` values, read as words, must equal the first one or more birth first names
(hyphen and apostrophe count as spaces); ``LieuNaissance``, when sent, must equal the
birth place. One match gives 00, none 01, several 02. :data:`DEFAULT_INSI_IDENTITIES` lists the
seeds; pass your own list (``[*DEFAULT_INSI_IDENTITIES, mine]``) to extend them.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import date
from typing import Literal, Self

import httpx
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dmp_connector.audit import AuditSink
from dmp_connector.config import Settings
from dmp_connector.errors import DmpConnectorError
from dmp_connector.ins.client import AsyncInsiClient, InsiClient
from dmp_connector.ins.identity import INS, BirthDate, IdentityTraits, InsOid, Sex
from dmp_connector.ins.insi import (
    ACTION_SEARCH_CARTE_VITALE,
    ACTION_SEARCH_TRAITS,
    CTXBAM_NS,
    CTXLPS_NS,
    INSI_RECSANS_NS,
    INSI_RECVIT_NS,
    INSI_RESULTAT_NS,
    SIRAM_NS,
    InsiHistoryEntry,
)
from dmp_connector.retries import RetryPolicy
from dmp_connector.soap import namespaces as ns
from dmp_connector.soap.envelope import Addressing, SoapMessage, build_envelope, parse_envelope
from dmp_connector.xml import to_bytes

from ._http import HttpRequest, HttpResponse, as_async_transport, as_transport

__all__ = [
    "DEFAULT_INSI_IDENTITIES",
    "InsiSimulator",
    "SeededIdentity",
    "SimulatedFault",
    "in_process_async_insi",
    "in_process_insi",
]

_SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
_ENV = ns.SOAP12_ENV
_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")
_LABELS = {"00": "OK", "01": "Aucune identite trouvee", "02": "Plusieurs identites trouvees"}
_TRAITS_ORDER = ("NomNaissance", "Prenom", "Sexe", "DateNaissance", "LieuNaissance")
_VITALE_ORDER = ("MatriculeIndividu", "MatriculeOD", "NomNaissance", "DateNaissance", "RangNaissance")


class SimulatedFault(BaseModel):
    """A SOAP fault as INSi sends it: code, ``siram_*`` subcode, reason and ``siram:Erreur`` detail.

    Use the presets (:meth:`technical`, :meth:`unknown_idam` …) or build your own; queue
    one with ``ScriptedHandler.then(fault.respond)`` (the detail then names the request's
    MessageID) or ``.then(fault.response())``.
    """

    model_config = _FROZEN

    code: Literal["Sender", "Receiver"]
    """``env:Code/env:Value``: Sender (the request must change) or Receiver (service side)."""
    subcode: str = Field(min_length=1)
    """``env:Subcode/env:Value``, e.g. ``siram_40``."""
    reason: str = Field(min_length=1)
    """``env:Reason/env:Text``."""
    reason_lang: str = "fr"
    """``xml:lang`` of the reason (the real service sends ``fr`` or ``en``)."""
    detail_code: str | None = None
    """``siram:Erreur/@code`` (``insi_102``, ``desir_550`` …); no detail when None."""
    severity: str = "erreur"
    """``siram:Erreur/@severite`` as the service spells it (``fatal`` has been seen too)."""
    detail_text: str | None = None
    """Text of ``siram:Erreur``."""

    @classmethod
    def technical(cls) -> SimulatedFault:
        """Receiver ``siram_40`` / ``insi_102``: the traits search failed on the service side (transient)."""
        return cls(
            code="Receiver",
            subcode="siram_40",
            reason="Le service est temporairement inaccessible. Veuillez renouveler votre demande ultérieurement.",
            reason_lang="en",
            detail_code="insi_102",
            severity="fatal",
            detail_text="L'appel au service de recherche avec les traits d'identité renvoie une erreur technique.",
        )

    @classmethod
    def unavailable(cls) -> SimulatedFault:
        """Receiver ``siram_40`` / ``insi_111``: the teleservices are unavailable (transient)."""
        return cls(
            code="Receiver",
            subcode="siram_40",
            reason="Le service est temporairement inaccessible. Veuillez renouveler votre demande ultérieurement.",
            detail_code="insi_111",
            severity="fatale",
            detail_text="Indisponibilité des téléservices",
        )

    @classmethod
    def unknown_idam(cls) -> SimulatedFault:
        """Sender ``siram_100`` / ``desir_550``: the software's authorisation number is unknown."""
        return cls(
            code="Sender",
            subcode="siram_100",
            reason=(
                "L'accès par ce progiciel au service n'est pas autorisé. Contactez l'éditeur du progiciel "
                "ou votre responsable informatique."
            ),
            detail_code="desir_550",
            detail_text="Numéro d'autorisation du logiciel inconnu.",
        )

    @classmethod
    def access_level(cls) -> SimulatedFault:
        """Sender ``DESIR_560``: the client certificate's CN is not INSI-AUTO / INSI-MANU.

        The code is public; its subcode is not, ``siram_100`` is inferred [I].
        """
        return cls(
            code="Sender",
            subcode="siram_100",
            reason="L'accès par ce progiciel au service n'est pas autorisé.",
            detail_code="DESIR_560",
            detail_text="Niveau d'accès insuffisant",
        )

    @classmethod
    def invalid_request(cls, why: str) -> SimulatedFault:
        """Sender ``sandbox_invalid_request``: the simulator's own refusal of a malformed request."""
        return cls(
            code="Sender",
            subcode="sandbox_invalid_request",
            reason=f"Requête invalide : {why}",
            detail_code="sandbox_invalid_request",
            detail_text=why,
        )

    def envelope(self, *, message_id: str | None = None) -> bytes:
        """The fault as a SOAP 1.2 envelope, prefixes as the real service writes them."""
        root = etree.Element(f"{{{_ENV}}}Envelope", nsmap={"soap": _ENV})
        body = etree.SubElement(root, f"{{{_ENV}}}Body")
        fault = etree.SubElement(body, f"{{{_ENV}}}Fault")
        code = etree.SubElement(fault, f"{{{_ENV}}}Code")
        etree.SubElement(code, f"{{{_ENV}}}Value").text = f"soap:{self.code}"
        subcode = etree.SubElement(code, f"{{{_ENV}}}Subcode")
        etree.SubElement(subcode, f"{{{_ENV}}}Value").text = f"soap:{self.subcode}"
        reason = etree.SubElement(etree.SubElement(fault, f"{{{_ENV}}}Reason"), f"{{{_ENV}}}Text")
        reason.set(f"{{{ns.XML}}}lang", self.reason_lang)
        reason.text = self.reason
        if self.detail_code is not None:
            detail = etree.SubElement(fault, f"{{{_ENV}}}Detail")
            error = etree.SubElement(detail, f"{{{SIRAM_NS}}}Erreur", nsmap={"siram": SIRAM_NS})
            error.set("code", self.detail_code)
            if message_id:
                error.set("messageID", message_id)
            error.set("severite", self.severity)
            error.text = self.detail_text or ""
        return to_bytes(root)

    def response(self, *, message_id: str | None = None) -> HttpResponse:
        """The fault as the HTTP 500 answer INSi gives."""
        return HttpResponse(500, {"Content-Type": _SOAP_CONTENT_TYPE}, self.envelope(message_id=message_id))

    def respond(self, request: HttpRequest) -> HttpResponse:
        """A handler answering any request with this fault, naming its MessageID in the detail."""
        return self.response(message_id=_message_id_of(request.body))


class SeededIdentity(BaseModel):
    """One person the simulator knows, with what INSi returns for them."""

    model_config = _FROZEN

    traits: IdentityTraits
    """The traits INS, as INSi returns them (``TIQ``) and as searches match them."""
    ins: INS | None = None
    """The active INS (``INSACTIF``); may carry a wrong key on purpose (``key_valid`` False)."""
    history: tuple[InsiHistoryEntry, ...] = ()
    """``INSHISTO`` entries, sent as given (repeats and inverted dates included)."""
    send_first_name: bool = False
    """Also send ``TIQ/Prenom`` (the first first name), as some real answers do."""
    fault: SimulatedFault | None = None
    """Answer this fault instead of the identity whenever a search matches this person."""
    card_holder: str | None = Field(default=None, pattern=r"^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}$")
    """NIR (13 characters) of the Carte Vitale holder this person is a beneficiary of; their own when None."""
    birth_rank: int = Field(default=1, ge=1, le=9)
    """Rank among twins on the Carte Vitale."""
    note: str = ""
    """Why this seed exists (the case it shows)."""

    @model_validator(mode="after")
    def _ins_or_fault(self) -> Self:
        if self.ins is None and self.fault is None:
            raise ValueError("a seeded identity needs an INS, or a fault to answer instead")
        return self


def _ins(matricule: str, oid: InsOid = InsOid.NIR, *, lenient: bool = False) -> INS:
    return INS.from_parts(matricule[:13], matricule[13:], oid, lenient=lenient)


def _seed(
    birth_name: str,
    first_names: str,
    sex: str,
    birth_date: str,
    birth_place: str | None,
    matricule: str | None,
    *,
    oid: InsOid = InsOid.NIR,
    lenient: bool = False,
    history: Sequence[tuple[str, date | None, date | None]] = (),
    note: str = "",
    **extra: object,
) -> SeededIdentity:
    traits = IdentityTraits.build(
        birth_name=birth_name,
        birth_first_names=tuple(first_names.split()),
        sex=Sex(sex),
        birth_date=BirthDate.parse(birth_date),
        birth_place=birth_place,
    )
    return SeededIdentity.model_validate(
        {
            "traits": traits,
            "ins": _ins(matricule, oid, lenient=lenient) if matricule else None,
            "history": tuple(
                InsiHistoryEntry(ins=_ins(m, oid, lenient=lenient), start=start, end=end) for m, start, end in history
            ),
            "note": note,
            **extra,
        }
    )


DEFAULT_INSI_IDENTITIES: tuple[SeededIdentity, ...] = (
    # The test identities published for the INSi qualification server and the CNDA kit (ins.md §2.9).
    _seed("ADRUN", "ZOE", "F", "1975-12-31", "63220", "275126322074974", note="qualification: 00"),
    _seed("ADRTROIS", "DOMINIQUE", "F", "1997-02-26", "2A020", "297022A02077878", note="born in Corse-du-Sud (2A)"),
    _seed("ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020", "160012B02077713", note="born in Haute-Corse (2B)"),
    _seed("ADRDEUX", "LAURENT", "M", "1981-01-01", "63220", "181016322075140", note="qualification: 00"),
    _seed(
        "TCHITCHI",
        "CATARINA BELLA",
        "F",
        "1936-06-21",
        "63220",
        "236066322083656",
        note="01 with OLA, 00 with CATARINA",
    ),
    _seed(
        "ECETINSI",
        "PIERRE-ALAIN MURIEL FLORIANT",
        "M",
        "2009-07-14",
        "63220",
        "109076322083489",
        history=(("209076322083439", date(2019, 3, 1), date(2019, 2, 28)), ("209066322012355", None, None)),
        note="former matricules replaced (INSHISTO x2, DateDeb after DateFin; CNDA 2.04)",
    ),
    _seed(
        "NESSI",
        "MICHELANGELO ANTHONY",
        "M",
        "2010-08-07",
        "63220",
        "110086322083060",
        card_holder="2780563220123",
        note="several first names; a child on a parent's Carte Vitale",
    ),
    _seed(
        "CORSE",
        "ANTHONY",
        "M",
        "1980-03-02",
        "2B020",
        "180032B02040123",
        history=(("180032B02040123", None, None),),
        send_first_name=True,
        note="INSHISTO repeating INSACTIF, TIQ/Prenom sent (CNDA 2.08 case 1)",
    ),
    _seed(
        "HERMANN",
        "GATIEN",
        "M",
        "1981-03-24",
        "63220",
        "181036322045660",
        lenient=True,
        history=(("181036322045660", None, None), ("281036322045610", None, None)),
        send_first_name=True,
        note="matricules with wrong keys: the client must flag them (CNDA 2.08 case 2)",
    ),
    _seed(
        "PROVISOIRE",
        "MATRICULE",
        "M",
        "2009-07-01",
        "63220",
        "109076322088835",
        oid=InsOid.NIA,
        send_first_name=True,
        note="a NIA (OID .9) with placeholder traits (CNDA 2.05)",
    ),
    _seed(
        "D'AEION",
        "COEUR",
        "M",
        "1987-01-25",
        None,
        None,
        fault=SimulatedFault.technical(),
        note="technical fault Receiver siram_40 / insi_102 (apostrophe in the name)",
    ),
    # Two people sharing traits: a search without the birth place gives 02.
    _seed("DE VINCI", "LEONARDO", "M", "2014-02-01", "75056", "114027505601241", note="02 unless the place is sent"),
    _seed("DE VINCI", "LEONARDO", "M", "2014-02-01", "13055", "114021305503474", note="02 unless the place is sent"),
    # The ANS interoperability test patient (CDA, HL7 and DMP material), under the test OID.
    _seed(
        "PAT-TROIS",
        "DOMINIQUE MARIE-LOUISE",
        "F",
        "1979-03-28",
        "51215",
        "279035121518989",
        oid=InsOid.NIR_TEST,
        note="ANS test patient, OID .10",
    ),
    # Born abroad: birth place 99 + country code (Portugal 139).
    _seed("DOS SANTOS", "ANA MARIA", "F", "1985-04-12", "99139", "285049913901202", note="born abroad (99139)"),
)
"""The seeds of a default :class:`InsiSimulator`. Unknown people (e.g. HOUILLES PIERRE PAUL
JACQUES, M, 1993-01-27) give 01."""


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.replace("Œ", "OE").replace("œ", "oe"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return " ".join(plain.replace("’", "'").split())


def _words(text: str) -> list[str]:
    return _fold(text).replace("-", " ").replace("'", " ").split()


def _first_names_match(requested: Sequence[str], listed: Sequence[str]) -> bool:
    """The requested words equal the words of the first k listed first names, for some k ≥ 1."""
    wanted = [word for value in requested for word in _words(value)]
    if not wanted:
        return False
    words: list[str] = []
    for name in listed:
        words.extend(_words(name))
        if words == wanted:
            return True
        if len(words) >= len(wanted):
            return False
    return False


def _message_id_of(body: bytes) -> str | None:
    try:
        return parse_envelope(body).message_id
    except DmpConnectorError:
        return None


class _Refusal(Exception):
    """A request the simulator answers with a fault."""

    def __init__(self, fault: SimulatedFault) -> None:
        super().__init__(fault.reason)
        self.fault = fault


def _q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def _text_of(element: etree._Element | None) -> str:
    return "" if element is None else (element.text or "").strip()


class InsiSimulator:
    """The INSi simulator (see the module docstring); ``identities`` may be changed between calls.

    ``known_idams``: IDAM values accepted (any non-empty one when None); others get
    ``siram_100``/``desir_550``. ``required_client_cn``: client-certificate CNs accepted
    on a TLS connection (e.g. ``{"INSI-AUTO", "INSI-MANU"}``; in-process calls carry no
    certificate and are not checked); others get ``DESIR_560``. ``require_assertion``:
    refuse a request without a SAML assertion in ``wsse:Security`` (card mode).
    """

    def __init__(
        self,
        identities: Iterable[SeededIdentity] | None = None,
        *,
        known_idams: Iterable[str] | None = None,
        required_client_cn: Iterable[str] | None = None,
        require_assertion: bool = False,
    ) -> None:
        self.identities: list[SeededIdentity] = list(DEFAULT_INSI_IDENTITIES if identities is None else identities)
        self.known_idams = frozenset(known_idams) if known_idams is not None else None
        self.required_client_cn = frozenset(required_client_cn) if required_client_cn is not None else None
        self.require_assertion = require_assertion
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self.identities)} identities>)"

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(405, {"Content-Type": "text/plain", "Allow": "POST"}, b"INSi takes POST only")
        if not request.path.split("?", 1)[0].rstrip("/").endswith("/lps"):
            return HttpResponse(404, {"Content-Type": "text/plain"}, b"no INSi service here (try /insi/lps)")
        if not request.header("Content-Type").lower().startswith("application/soap+xml"):
            return HttpResponse(415, {"Content-Type": "text/plain"}, b"INSi takes application/soap+xml (SOAP 1.2)")
        try:
            message = parse_envelope(request.body, operation="the INSi request")
        except DmpConnectorError as exc:
            return SimulatedFault.invalid_request(f"unreadable request ({exc.message})").response()
        try:
            action = self._check_headers(request, message)
            payload = message.payload
            search = self._search_traits if action == ACTION_SEARCH_TRAITS else self._search_vitale
            matches = search(payload)
        except _Refusal as refusal:
            return refusal.fault.response(message_id=message.message_id)
        except DmpConnectorError as exc:
            return SimulatedFault.invalid_request(exc.message).response(message_id=message.message_id)
        for match in matches:
            if match.fault is not None:
                return match.fault.response(message_id=message.message_id)
        return self._answer(action, message.message_id, matches)

    # --- checks -----------------------------------------------------------------------------

    def _check_headers(self, request: HttpRequest, message: SoapMessage) -> str:
        action = message.action
        if not message.message_id:
            raise _Refusal(SimulatedFault.invalid_request("wsa:MessageID is missing"))
        if action not in (ACTION_SEARCH_TRAITS, ACTION_SEARCH_CARTE_VITALE):
            raise _Refusal(SimulatedFault.invalid_request(f"unknown wsa:Action {action!r}"))
        expected_body = (
            _q(INSI_RECSANS_NS, "RECSANSVITALE") if action == ACTION_SEARCH_TRAITS else _q(INSI_RECVIT_NS, "RECVITALE")
        )
        if message.payload.tag != expected_body:
            raise _Refusal(SimulatedFault.invalid_request("the body does not match wsa:Action"))
        media_action = _media_action(request.header("Content-Type"))
        if media_action is not None and media_action != action:
            raise _Refusal(SimulatedFault.invalid_request("the Content-Type action differs from wsa:Action"))
        self._check_bam(message)
        self._check_lps(message)
        self._check_client(request)
        if self.require_assertion and not _has_assertion(message):
            raise _Refusal(SimulatedFault.invalid_request("no assertion in wsse:Security (card mode)"))
        return action

    @staticmethod
    def _check_bam(message: SoapMessage) -> None:
        blocks = message.header_elements(CTXBAM_NS, "ContexteBAM")
        if len(blocks) != 1:
            raise _Refusal(SimulatedFault.invalid_request("exactly one ctxbam:ContexteBAM is required"))
        bam = blocks[0]
        if bam.get("Version") != "01_02":
            raise _Refusal(SimulatedFault.invalid_request("ContexteBAM Version must be 01_02"))
        for local in ("Id", "Temps", "COUVERTURE"):
            if bam.find(_q(CTXBAM_NS, local)) is None:
                raise _Refusal(SimulatedFault.invalid_request(f"ContexteBAM lacks {local}"))

    def _check_lps(self, message: SoapMessage) -> None:
        blocks = message.header_elements(CTXLPS_NS, "ContexteLPS")
        if len(blocks) != 1:
            raise _Refusal(SimulatedFault.invalid_request("exactly one ctxlps:ContexteLPS is required"))
        lps = blocks[0]
        if lps.get("Version") != "01_00" or lps.get("Nature", "CTXLPS") != "CTXLPS":
            raise _Refusal(SimulatedFault.invalid_request("ContexteLPS must be Nature CTXLPS, Version 01_00"))
        for local in ("Id", "Temps"):
            if lps.find(_q(CTXLPS_NS, local)) is None:
                raise _Refusal(SimulatedFault.invalid_request(f"ContexteLPS lacks {local}"))
        idam = lps.find(f"{_q(CTXLPS_NS, 'LPS')}/{_q(CTXLPS_NS, 'IDAM')}")
        if idam is None or not _text_of(idam) or idam.get("R") != "4":
            raise _Refusal(SimulatedFault.unknown_idam())
        if self.known_idams is not None and _text_of(idam) not in self.known_idams:
            raise _Refusal(SimulatedFault.unknown_idam())

    def _check_client(self, request: HttpRequest) -> None:
        if self.required_client_cn is None or request.client_subject is None:
            return
        names = [
            value
            for key, _, value in (part.strip().partition("=") for part in request.client_subject.split(","))
            if key in ("CN", "commonName")
        ]
        if not names or names[-1] not in self.required_client_cn:
            raise _Refusal(SimulatedFault.access_level())

    # --- searches -----------------------------------------------------------------------------

    @staticmethod
    def _fields(payload: etree._Element, namespace: str, order: Sequence[str]) -> dict[str, list[etree._Element]]:
        """The body's children by name, refusing unknown ones and the wrong order (as the XSD does)."""
        fields: dict[str, list[etree._Element]] = {}
        position = 0
        for child in payload:
            if not isinstance(child.tag, str):
                continue
            qname = etree.QName(child)
            if qname.namespace != namespace or qname.localname not in order:
                raise _Refusal(SimulatedFault.invalid_request(f"unexpected element {qname.localname} in the body"))
            index = order.index(qname.localname)
            if index < position:
                raise _Refusal(SimulatedFault.invalid_request(f"{qname.localname} is out of order in the body"))
            position = index
            fields.setdefault(qname.localname, []).append(child)
        return fields

    def _search_traits(self, payload: etree._Element) -> list[SeededIdentity]:
        fields = self._fields(payload, INSI_RECSANS_NS, _TRAITS_ORDER)
        for local in ("NomNaissance", "Prenom", "Sexe", "DateNaissance"):
            if not fields.get(local) or not _text_of(fields[local][0]):
                raise _Refusal(SimulatedFault.invalid_request(f"{local} is required"))
        for local in ("NomNaissance", "Sexe", "DateNaissance", "LieuNaissance"):
            if len(fields.get(local, [])) > 1:
                raise _Refusal(SimulatedFault.invalid_request(f"{local} may appear once"))
        name = _fold(_text_of(fields["NomNaissance"][0]))
        first_names = [_text_of(element) for element in fields["Prenom"]]
        sex = _fold(_text_of(fields["Sexe"][0]))
        born = _text_of(fields["DateNaissance"][0])
        place = _fold(_text_of(fields["LieuNaissance"][0])) if fields.get("LieuNaissance") else None
        with self._lock:
            seeds = list(self.identities)
        return [
            seed
            for seed in seeds
            if _fold(seed.traits.birth_name) == name
            and seed.traits.sex.value == sex
            and seed.traits.birth_date.iso() == born
            and (place is None or (seed.traits.birth_place or "") == place)
            and _first_names_match(first_names, seed.traits.birth_first_names)
        ]

    def _search_vitale(self, payload: etree._Element) -> list[SeededIdentity]:
        fields = self._fields(payload, INSI_RECVIT_NS, _VITALE_ORDER)

        def number(local: str) -> str | None:
            element = fields.get(local, [None])[0]
            if element is None:
                return None
            return _text_of(element.find(_q(INSI_RECVIT_NS, "NumIdentifiant"))) or None

        beneficiary, holder = number("MatriculeIndividu"), number("MatriculeOD")
        born = _text_of(fields.get("DateNaissance", [None])[0])
        rank = _text_of(fields.get("RangNaissance", [None])[0]) or "1"
        name = _fold(_text_of(fields.get("NomNaissance", [None])[0]))
        if not born or (beneficiary is None and holder is None):
            raise _Refusal(SimulatedFault.invalid_request("DateNaissance and a matricule are required"))
        with self._lock:
            seeds = list(self.identities)
        found = []
        for seed in seeds:
            if seed.ins is None or seed.traits.birth_date.iso() != born:
                continue
            if name and _fold(seed.traits.birth_name) != name:
                continue
            own = {seed.ins.nir13, *(entry.ins.nir13 for entry in seed.history)}
            if beneficiary is not None:
                if beneficiary in own:
                    found.append(seed)
            elif (seed.card_holder or seed.ins.nir13) == holder and str(seed.birth_rank) == rank:
                found.append(seed)
        return found

    # --- answers --------------------------------------------------------------------------------

    def _answer(self, action: str, message_id: str | None, matches: Sequence[SeededIdentity]) -> HttpResponse:
        code = "00" if len(matches) == 1 else "01" if not matches else "02"
        resultat = etree.Element(_q(INSI_RESULTAT_NS, "RESULTAT"), nsmap={None: INSI_RESULTAT_NS})  # type: ignore[dict-item]
        cr = etree.SubElement(resultat, _q(INSI_RESULTAT_NS, "CR"))
        etree.SubElement(cr, _q(INSI_RESULTAT_NS, "CodeCR")).text = code
        etree.SubElement(cr, _q(INSI_RESULTAT_NS, "LibelleCR")).text = _LABELS[code]
        if code == "00":
            resultat.append(_individu(matches[0]))
        relates = etree.Element(_q(ns.WSA, "RelatesTo"), nsmap={"wsa": ns.WSA})
        relates.text = message_id or ""
        envelope = build_envelope(
            resultat, addressing=Addressing(action=action + "Response", to=_ANONYMOUS), headers=[relates]
        )
        return HttpResponse(200, {"Content-Type": _SOAP_CONTENT_TYPE}, to_bytes(envelope))


def _media_action(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "action":
            return value.strip().strip('"')
    return None


def _has_assertion(message: SoapMessage) -> bool:
    for security in message.header_elements(ns.WSSE, "Security"):
        if security.find(_q(ns.SAML2, "Assertion")) is not None:
            return True
    return False


def _id_individu(parent: etree._Element, tag: str, ins: INS) -> etree._Element:
    element = etree.SubElement(parent, _q(INSI_RESULTAT_NS, tag))
    id_individu = etree.SubElement(element, _q(INSI_RESULTAT_NS, "IdIndividu"))
    etree.SubElement(id_individu, _q(INSI_RESULTAT_NS, "NumIdentifiant")).text = ins.nir13
    etree.SubElement(id_individu, _q(INSI_RESULTAT_NS, "Cle")).text = ins.key
    etree.SubElement(element, _q(INSI_RESULTAT_NS, "OID")).text = ins.oid.value
    return element


def _individu(seed: SeededIdentity) -> etree._Element:
    if seed.ins is None:  # pragma: no cover - a seed without INS always answers its fault
        raise ValueError("a seed without INS has no INDIVIDU")
    individu = etree.Element(_q(INSI_RESULTAT_NS, "INDIVIDU"))
    _id_individu(individu, "INSACTIF", seed.ins)
    for entry in seed.history:
        histo = _id_individu(individu, "INSHISTO", entry.ins)
        if entry.start is not None:
            etree.SubElement(histo, _q(INSI_RESULTAT_NS, "DateDeb")).text = entry.start.isoformat()
        if entry.end is not None:
            etree.SubElement(histo, _q(INSI_RESULTAT_NS, "DateFin")).text = entry.end.isoformat()
    tiq = etree.SubElement(individu, _q(INSI_RESULTAT_NS, "TIQ"))
    traits = seed.traits
    etree.SubElement(tiq, _q(INSI_RESULTAT_NS, "NomNaissance")).text = traits.birth_name
    if seed.send_first_name:
        etree.SubElement(tiq, _q(INSI_RESULTAT_NS, "Prenom")).text = traits.first_first_name
    etree.SubElement(tiq, _q(INSI_RESULTAT_NS, "ListePrenom")).text = " ".join(traits.birth_first_names)
    etree.SubElement(tiq, _q(INSI_RESULTAT_NS, "Sexe")).text = traits.sex.value
    etree.SubElement(tiq, _q(INSI_RESULTAT_NS, "DateNaissance")).text = traits.birth_date.iso()
    if traits.birth_place:
        etree.SubElement(tiq, _q(INSI_RESULTAT_NS, "LieuNaissance")).text = traits.birth_place
    return individu


# --- In-process clients ---------------------------------------------------------------------------


@contextmanager
def in_process_insi(
    settings: Settings,
    simulator: InsiSimulator | None = None,
    *,
    audit: Iterable[AuditSink] = (),
    retry: RetryPolicy | None = None,
) -> Iterator[InsiClient]:
    """An :class:`InsiClient` wired to the simulator in-process (no socket, no certificate)."""
    http = httpx.Client(transport=as_transport(simulator or InsiSimulator()))
    try:
        with InsiClient(settings, http_client=http, audit=audit, retry=retry) as client:
            yield client
    finally:
        http.close()


@asynccontextmanager
async def in_process_async_insi(
    settings: Settings,
    simulator: InsiSimulator | None = None,
    *,
    audit: Iterable[AuditSink] = (),
    retry: RetryPolicy | None = None,
) -> AsyncIterator[AsyncInsiClient]:
    """An :class:`AsyncInsiClient` wired to the simulator in-process."""
    http = httpx.AsyncClient(transport=as_async_transport(simulator or InsiSimulator()))
    try:
        async with AsyncInsiClient(settings, http_client=http, audit=audit, retry=retry) as client:
            yield client
    finally:
        await http.aclose()
