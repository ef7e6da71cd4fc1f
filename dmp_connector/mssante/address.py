"""MSSanté addresses and the trust space they must belong to.

Four kinds of mailbox (BAL) exist for professionals — personal (PER), practice (CAB),
organisational (ORG) and applicative (APP), the TRE_R257 codes — and one for patients,
``<matricule INS>@patient.mssante.fr`` (Mon espace santé). A patient address is health
data *and* an identity-vigilance matter: it may only be built from a **qualified** INS
(ECO.2.2.6), so :meth:`MssanteAddress.for_patient` is the only way to get one that can be
sent to; a patient address merely read from a header stays usable for display and replies
in the SDK's own objects but is refused as a recipient.

Operators only relay mail inside the trust space: the domains listed in the *liste
blanche* (``listeblanchemssante.xml``). :class:`DomainWhitelist` reads that file through
the hardened parser; :func:`require_trusted` refuses recipients outside it before anything
is sent. Without a whitelist at hand, :data:`MSSANTE_DOMAINS` applies the rule the list
follows today — ``*.mssante.fr`` and the two Apicrypt domains — which is an inference, not
the list itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from email.headerregistry import Address
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity
from dmp_connector.xml import XmlLimits, parse_xml, parse_xml_file

__all__ = [
    "MSSANTE_DOMAINS",
    "PATIENT_DOMAIN",
    "WHITELIST_NS",
    "DomainWhitelist",
    "MailboxKind",
    "MssanteAddress",
    "SuffixTrustSpace",
    "TrustSpace",
    "UntrustedRecipientError",
    "WhitelistEntry",
    "require_trusted",
]

PATIENT_DOMAIN = "patient.mssante.fr"
"""Domain of the patients' mailboxes in Mon espace santé (operated by the CNAM)."""

WHITELIST_NS = "https://listeblanche.mssante.fr/schema"
"""Namespace of the ``ListeBlancheMSSante`` root element of the whitelist file."""

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_NAMED = re.compile(r"^\s*(?P<name>.*?)\s*<(?P<addr>[^<>]*)>\s*$", re.DOTALL)


class MailboxKind(StrEnum):
    """The kind of mailbox; professional values are the TRE_R257-TypeBAL codes."""

    PERSONAL = "PER"
    """Personal box of a professional (RPPS), used under their own responsibility."""
    CABINET = "CAB"
    """Shared box of a private practice."""
    ORGANISATIONAL = "ORG"
    """Box of a service or team, under an organisation's responsibility."""
    APPLICATIVE = "APP"
    """Box of a software or machine, for automated sending and receiving (certificate authentication)."""
    PATIENT = "PATIENT"
    """A patient's Mon espace santé box, ``<matricule>@patient.mssante.fr`` (not a TRE_R257 code)."""


def _check_addr_spec(value: str) -> str:
    """The address with its domain lower-cased, or a ValidationError saying which rule failed."""
    if len(value) > 254:
        raise ValidationError("an e-mail address has at most 254 characters")
    local, sep, domain = value.rpartition("@")
    if not sep or not local or not domain:
        raise ValidationError("an e-mail address is local-part@domain")
    if len(local) > 64 or not _LOCAL.match(local):
        raise ValidationError(
            "the local part of an MSSanté address is made of ASCII letters, digits and . _ - + (no spaces, no dots "
            "at either end)"
        )
    domain = domain.lower().rstrip(".")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValidationError("the domain of an e-mail address is made of dot-separated ASCII labels (a-z, 0-9, -)")
    return f"{local}@{domain}"


class _Masked(str):
    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{self!s}>"


class MssanteAddress(BaseModel):
    """One MSSanté mailbox address, with an optional display name and kind.

    Build a professional address with :meth:`parse` (or the constructor) and a patient
    address with :meth:`for_patient` only. The ``repr`` of a patient address hides the
    matricule, which is health data.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    address: str
    """The addr-spec, ``local@domain``; the domain is stored in lower case."""
    display_name: str | None = None
    """Name shown next to the address (MSS/va1.16 asks for a meaningful one on what you send)."""
    kind: MailboxKind | None = None
    """The kind of mailbox, when known; a ``patient.mssante.fr`` address is always ``PATIENT``."""
    patient: Identity | None = Field(default=None, repr=False)
    """The qualified identity a patient address was built from; None for an address read from mail."""

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("address"), str):
            data = dict(data)
            data["address"] = _check_addr_spec(data["address"].strip())
            if data["address"].endswith("@" + PATIENT_DOMAIN) and data.get("kind") is None:
                data["kind"] = MailboxKind.PATIENT
        return data

    @model_validator(mode="after")
    def _patient_rules(self) -> Self:
        on_patient_domain = self.domain == PATIENT_DOMAIN
        if self.kind is MailboxKind.PATIENT and not on_patient_domain:
            raise ValidationError(f"a patient's MSSanté address is on {PATIENT_DOMAIN}")
        if on_patient_domain and self.kind is not MailboxKind.PATIENT:
            raise ValidationError(f"an address on {PATIENT_DOMAIN} is a patient's, not a {self.kind} mailbox")
        if self.patient is not None:
            ins = self.patient.require_qualified("an MSSanté patient address")
            if self.address != ins.mssante_address():
                raise ValidationError("this patient address is not the one of the identity it carries")
        if self.display_name is not None and any(ch in self.display_name for ch in "\r\n"):
            raise ValidationError("a display name cannot hold a line break")
        return self

    @classmethod
    def parse(cls, text: str, *, kind: MailboxKind | None = None) -> MssanteAddress:
        """Read ``jean.dupont@medecin.mssante.fr`` or ``Dr Jean Dupont <jean.dupont@…>``."""
        raw = text.strip()
        name: str | None = None
        match = _NAMED.match(raw)
        if match is not None:
            raw = match["addr"].strip()
            name = match["name"].strip().strip('"').strip() or None
        return cls(address=raw, display_name=name, kind=kind)

    @classmethod
    def for_patient(cls, identity: Identity, *, display_name: str | None = None) -> MssanteAddress:
        """The patient's Mon espace santé address, from a **qualified** identity only.

        Raises :class:`~dmp_connector.errors.IdentityNotQualifiedError` for any other
        status (ECO.2.2.6: patient addresses come from a qualified INS). Write to a minor's
        own address, never to a legal representative's.
        """
        ins = identity.require_qualified("an MSSanté patient address")
        return cls(address=ins.mssante_address(), display_name=display_name, kind=MailboxKind.PATIENT, patient=identity)

    @property
    def local_part(self) -> str:
        """What comes before the ``@``."""
        return self.address.rpartition("@")[0]

    @property
    def domain(self) -> str:
        """What comes after the ``@``, in lower case."""
        return self.address.rpartition("@")[2]

    @property
    def is_patient(self) -> bool:
        """True for a ``patient.mssante.fr`` address."""
        return self.kind is MailboxKind.PATIENT

    def header_address(self) -> Address:
        """The address as :mod:`email` writes it in a header (the display name encoded if needed)."""
        local, _, domain = self.address.rpartition("@")
        return Address(display_name=self.display_name or "", username=local, domain=domain)

    def masked(self) -> str:
        """The address fit for logs: a patient's matricule hidden, a professional's kept."""
        if self.is_patient:
            return f"{self.local_part[0]}…{self.local_part[-2:]}@{self.domain}"
        return self.address

    def __str__(self) -> str:
        return str(self.header_address())

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        if self.is_patient:
            yield "address", _Masked(self.masked())
            yield "kind", self.kind
            yield "qualified", self.patient is not None
            return
        yield "address", self.address
        if self.display_name is not None:
            yield "display_name", self.display_name
        if self.kind is not None:
            yield "kind", self.kind


# --------------------------------------------------------------------------- trust space


@runtime_checkable
class TrustSpace(Protocol):
    """Anything that says whether a mail domain belongs to the MSSanté trust space."""

    def contains(self, domain: str) -> bool:
        """True when mail to ``domain`` will be relayed by MSSanté operators."""
        ...


class SuffixTrustSpace(BaseModel):
    """A trust space given by domain suffixes and exact domains, for use without the whitelist file."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    suffixes: tuple[str, ...] = ()
    """Parent domains whose every sub-domain is trusted (``mssante.fr`` trusts ``x.mssante.fr``)."""
    domains: tuple[str, ...] = ()
    """Domains trusted exactly."""

    def contains(self, domain: str) -> bool:
        """True for a listed domain or a sub-domain of a listed suffix (on a label boundary)."""
        name = domain.lower().rstrip(".")
        if name in self.domains:
            return True
        return any(name == suffix or name.endswith("." + suffix) for suffix in self.suffixes)


MSSANTE_DOMAINS = SuffixTrustSpace(
    suffixes=("mssante.fr",), domains=("mssante.apicrypt.org", "interop-mssante.apicrypt.org")
)
"""The shape of the whitelist as of 2025 (every domain under ``mssante.fr``, plus Apicrypt's two):
an approximation for when the official file is not loaded — prefer :class:`DomainWhitelist`."""


class WhitelistEntry(BaseModel):
    """One ``Domaine`` of the whitelist: a domain served by one operator server certificate."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    domain: str
    """``Nom``: the mail domain, in lower case."""
    description: str | None = None
    """``Description``: who the domain belongs to."""
    operator_certificate_dn: str | None = None
    """``DNCertificatOperateur``: subject DN of the operator's server certificate for this domain."""
    responsible_contact: str | None = None
    """``ResponsableContact``: the operator's contact for the domain."""
    support_contact: str | None = None
    """``SupportContact``: the operator's technical support."""
    updated_at: datetime | None = None
    """``DateMAJ``: when the entry last changed (None when absent or unreadable)."""


class DomainWhitelist(BaseModel):
    """The official MSSanté whitelist (*liste blanche*): which domains form the trust space.

    A domain appears once per operator server certificate, so :meth:`entries_for` may give
    several entries for one domain. Cache the file and reload it when ``generated_at``
    changes; its URL is ``Environment.mssante_whitelist_url``.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    generated_at: datetime | None = None
    """``DateDeGeneration``: when the ANS generated the file."""
    entries: tuple[WhitelistEntry, ...] = ()
    """Every ``Domaine`` element, in file order."""

    _domains: frozenset[str] = PrivateAttr(default=frozenset())

    def model_post_init(self, context: Any, /) -> None:
        """Index the domains once, for constant-time look-ups."""
        self._domains = frozenset(entry.domain for entry in self.entries)

    @classmethod
    def from_xml(cls, data: bytes, *, limits: XmlLimits | None = None) -> DomainWhitelist:
        """Read the whitelist from the bytes of ``listeblanchemssante.xml`` (hardened parser)."""
        root = parse_xml(data, limits=limits or XmlLimits(), what="the MSSanté whitelist")
        return cls._from_root(root)

    @classmethod
    def load(cls, path: str | Path, *, limits: XmlLimits | None = None) -> DomainWhitelist:
        """Read the whitelist from a file."""
        return cls._from_root(parse_xml_file(path, limits=limits or XmlLimits()))

    @classmethod
    def _from_root(cls, root: etree._Element) -> DomainWhitelist:
        if root.tag != f"{{{WHITELIST_NS}}}ListeBlancheMSSante":
            raise ValidationError(
                "this file is not an MSSanté whitelist (root element ListeBlancheMSSante expected)",
                hint=f"the official file's root is ListeBlancheMSSante in the namespace {WHITELIST_NS}",
            )
        entries = []
        problems = []
        path = f"{{{WHITELIST_NS}}}ListeDomaines/{{{WHITELIST_NS}}}Domaine"
        for number, element in enumerate(root.iterfind(path), 1):
            name = _child_text(element, "Nom")
            if not name:
                problems.append(f"Domaine #{number} has no Nom")
                continue
            entries.append(
                WhitelistEntry(
                    domain=name.lower().rstrip("."),
                    description=_child_text(element, "Description"),
                    operator_certificate_dn=_child_text(element, "DNCertificatOperateur"),
                    responsible_contact=_child_text(element, "ResponsableContact"),
                    support_contact=_child_text(element, "SupportContact"),
                    updated_at=_datetime(_child_text(element, "DateMAJ")),
                )
            )
        if problems:
            raise ValidationError("the MSSanté whitelist has unreadable entries", problems=problems)
        return cls(generated_at=_datetime(_child_text(root, "DateDeGeneration")), entries=tuple(entries))

    @property
    def domains(self) -> frozenset[str]:
        """The distinct domains of the trust space."""
        return self._domains

    def contains(self, domain: str) -> bool:
        """True when ``domain`` is listed (exact match: the list names each domain it covers)."""
        return domain.lower().rstrip(".") in self._domains

    def entries_for(self, domain: str) -> tuple[WhitelistEntry, ...]:
        """Every entry of ``domain`` (one per operator server certificate)."""
        name = domain.lower().rstrip(".")
        return tuple(entry for entry in self.entries if entry.domain == name)


def _child_text(element: etree._Element, name: str) -> str | None:
    child = element.find(f"{{{WHITELIST_NS}}}{name}")
    if child is None or child.text is None:
        return None
    text = " ".join(child.text.split())
    return text or None


def _datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class UntrustedRecipientError(ValidationError):
    """A recipient's domain is outside the MSSanté trust space: no operator would relay the mail.

    ``domains`` lists the refused domains (a domain is not health data; the addresses are
    not repeated, since a patient's would be).
    """

    def __init__(self, message: str, *, domains: Iterable[str], hint: str | None = None) -> None:
        self.domains = tuple(domains)
        super().__init__(message, problems=[f"{d} is not in the MSSanté trust space" for d in self.domains], hint=hint)


def require_trusted(addresses: Iterable[MssanteAddress], trust_space: TrustSpace = MSSANTE_DOMAINS) -> None:
    """Refuse, all at once, every address whose domain is outside ``trust_space``."""
    refused: list[str] = []
    for address in addresses:
        if not trust_space.contains(address.domain) and address.domain not in refused:
            refused.append(address.domain)
    if refused:
        raise UntrustedRecipientError(
            "MSSanté mail can only go to the trust space; refused: " + ", ".join(refused),
            domains=refused,
            hint="check the address in the Annuaire Santé; an ordinary e-mail address cannot receive MSSanté mail",
        )
