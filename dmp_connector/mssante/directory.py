"""Finding professionals' MSSanté addresses in the Annuaire Santé (FHIR API v2).

The directory publishes each mailbox (BAL) as a ``telecom`` of ``system=email`` whose
``fr-core-contact-point-email-type`` extension is ``MSSANTE`` (TRE_R256), with an
``as-ext-mailbox-mss-metadata`` extension giving its type (TRE_R257: PER, CAB, ORG, APP),
description and service. Personal and practice boxes hang on ``Practitioner`` (RPPS only)
or ``PractitionerRole`` (RPPS + a structure); organisational and applicative boxes on
``Organization``. Other e-mail addresses in ``telecom`` are not MSSanté and are skipped.

Searches follow the bundle's ``next`` links (absolute gateway URLs) up to
``directory.max_pages``, and only on the API's own origin, so that the API key is never
sent elsewhere. Every page is one request through :mod:`dmp_connector._rest`, paced by a
token bucket at ``directory.requests_per_second`` (17 at most, the API's limit per
application) and shared by all calls of one client. There is no test platform: tests use
respx, never the network.

Known limit of the service (not of this module): addresses visible on annuaire.sante.fr or
in the bulk extraction are sometimes missing from the API, and red-listed boxes are never
published — "not found" here is not proof that no mailbox exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from dmp_connector._deadline import call_scope
from dmp_connector._rest import AsyncRestClient, JsonObject, RestClient, RestRequest, TokenBucket
from dmp_connector.audit import AuditSink
from dmp_connector.config import Settings, TlsCredentials, client_repr
from dmp_connector.errors import ConfigurationError, InvalidIdentifierError, MalformedResponseError, ValidationError

from .address import MailboxKind, MssanteAddress

__all__ = [
    "MAILBOX_METADATA",
    "MSSANTE_EMAIL_TYPE",
    "AsyncDirectoryClient",
    "DirectoryClient",
    "DirectoryMailbox",
    "DirectoryPractitioner",
]

SERVICE = "annuaire"

EMAIL_TYPE_EXTENSION = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
MSSANTE_EMAIL_TYPE = "MSSANTE"
"""Code (TRE_R256-TypeMessagerie) that marks a ``telecom`` as an MSSanté mailbox."""
MAILBOX_METADATA = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
"""URL of the extension carrying a mailbox's type, description and service."""

Source = Literal["Practitioner", "PractitionerRole", "Organization"]


class DirectoryMailbox(BaseModel):
    """One MSSanté mailbox published in the directory, with who it belongs to."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    address: str
    """The MSSanté address."""
    kind: MailboxKind | None = None
    """PER, CAB, ORG or APP, from the mailbox metadata; None when the directory does not say."""
    description: str | None = None
    """The mailbox's description."""
    service: str | None = None
    """The service or team the mailbox belongs to, when given."""
    digitization: bool | None = None
    """The ``digitization`` flag of the metadata, when given (its meaning is not documented publicly)."""
    source: Source
    """The resource the mailbox was read from."""
    resource_id: str | None = None
    """That resource's technical id in the directory."""
    rpps: str | None = None
    """RPPS of the professional, for personal and practice boxes."""
    family_name: str | None = None
    """Practising family name of the professional."""
    given_name: str | None = None
    """Practising given name of the professional."""
    organisation_name: str | None = None
    """Name of the organisation, for organisational and applicative boxes."""

    def to_address(self) -> MssanteAddress:
        """The mailbox as an :class:`MssanteAddress`, with a display name from the directory."""
        name = " ".join(filter(None, (self.given_name, self.family_name))) or self.organisation_name
        return MssanteAddress(address=self.address, display_name=name or None, kind=self.kind)


class DirectoryPractitioner(BaseModel):
    """A professional found in the directory, with their MSSanté mailboxes."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    resource_id: str | None
    """Technical id of the ``Practitioner``."""
    rpps: str | None
    """RPPS number (11 digits)."""
    idnps: str | None = None
    """National professional id (``8`` + RPPS, or ``0`` + ADELI)."""
    family_name: str | None = None
    """Practising family name."""
    given_names: tuple[str, ...] = ()
    """Practising given names."""
    active: bool | None = None
    """Whether the professional practice is open."""
    mailboxes: tuple[DirectoryMailbox, ...] = ()
    """Their MSSanté mailboxes, from the Practitioner and its PractitionerRoles."""


# --------------------------------------------------------------------------- pure parsing


def _extensions(node: Mapping[str, Any], url: str) -> list[Mapping[str, Any]]:
    items = node.get("extension")
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping) and item.get("url") == url]


def _codes(concept: Any) -> list[str]:
    if not isinstance(concept, Mapping):
        return []
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return []
    return [str(c["code"]) for c in codings if isinstance(c, Mapping) and isinstance(c.get("code"), str)]


def _is_mssante(telecom: Mapping[str, Any]) -> bool:
    for extension in _extensions(telecom, EMAIL_TYPE_EXTENSION):
        coding = extension.get("valueCoding")
        if isinstance(coding, Mapping) and coding.get("code") == MSSANTE_EMAIL_TYPE:
            return True
    return False


def _kind(code: str | None) -> MailboxKind | None:
    if code is None:
        return None
    try:
        kind = MailboxKind(code)
    except ValueError:
        return None
    return None if kind is MailboxKind.PATIENT else kind


def _mailboxes(resource: Mapping[str, Any], owner: Mapping[str, Any]) -> list[DirectoryMailbox]:
    found = []
    telecoms = resource.get("telecom")
    for telecom in telecoms if isinstance(telecoms, list) else []:
        if not isinstance(telecom, Mapping) or telecom.get("system") != "email" or not _is_mssante(telecom):
            continue
        value = telecom.get("value")
        if not isinstance(value, str) or "@" not in value:
            continue
        meta: dict[str, Any] = {}
        for extension in _extensions(telecom, MAILBOX_METADATA):
            for sub in extension.get("extension") or []:
                if isinstance(sub, Mapping) and isinstance(sub.get("url"), str):
                    meta[sub["url"]] = sub
        type_codes = _codes(meta.get("type", {}).get("valueCodeableConcept"))
        found.append(
            DirectoryMailbox(
                address=value.strip(),
                kind=_kind(type_codes[0] if type_codes else None),
                description=_string(meta.get("description", {}).get("valueString")),
                service=_string(meta.get("service", {}).get("valueString")),
                digitization=_bool(meta.get("digitization", {}).get("valueBoolean")),
                source=resource["resourceType"],
                resource_id=_string(resource.get("id")),
                **owner,
            )
        )
    return found


def _string(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _identifiers(resource: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(RPPS, IDNPS) of a Practitioner, read from the identifier type codes or systems."""
    rpps: str | None = None
    idnps: str | None = None
    for identifier in resource.get("identifier") or []:
        if not isinstance(identifier, Mapping) or not isinstance(identifier.get("value"), str):
            continue
        codes = _codes(identifier.get("type"))
        system = str(identifier.get("system") or "")
        if "RPPS" in codes or "rpps" in system:
            rpps = rpps or identifier["value"]
        elif "IDNPS" in codes or system == "urn:oid:1.2.250.1.71.4.2.1":
            idnps = idnps or identifier["value"]
    if rpps is None and idnps is not None and idnps.startswith("8") and len(idnps) == 12:
        rpps = idnps[1:]
    return rpps, idnps


def _names(resource: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    names = resource.get("name")
    if not isinstance(names, list) or not names or not isinstance(names[0], Mapping):
        return None, ()
    given = names[0].get("given")
    given_names = tuple(g for g in given if isinstance(g, str)) if isinstance(given, list) else ()
    return _string(names[0].get("family")), given_names


def _bundle(data: JsonObject) -> tuple[list[Mapping[str, Any]], str | None]:
    """The resources of a search bundle and its ``next`` link."""
    if data.get("resourceType") != "Bundle":
        raise MalformedResponseError(
            f"the Annuaire Santé answered with a {data.get('resourceType') or 'non-FHIR'} resource, not a Bundle"
        )
    resources = []
    for entry in data.get("entry") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
            resource = entry["resource"]
            if resource.get("resourceType") in ("Practitioner", "PractitionerRole", "Organization"):
                resources.append(resource)
    next_url = None
    for link in data.get("link") or []:
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            next_url = link["url"]
    return resources, next_url


def _practitioners(resources: Sequence[Mapping[str, Any]]) -> tuple[DirectoryPractitioner, ...]:
    """Practitioners with the mailboxes of their own resource and of their PractitionerRoles."""
    owners: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    boxes: dict[str, list[DirectoryMailbox]] = {}
    for resource in resources:
        if resource.get("resourceType") != "Practitioner":
            continue
        key = str(resource.get("id") or f"#{len(order)}")
        rpps, idnps = _identifiers(resource)
        family, given = _names(resource)
        active = resource.get("active")
        owners[key] = {
            "resource_id": _string(resource.get("id")),
            "rpps": rpps,
            "idnps": idnps,
            "family_name": family,
            "given_names": given,
            "active": active if isinstance(active, bool) else None,
        }
        order.append(key)
        boxes[key] = _mailboxes(
            resource, {"rpps": rpps, "family_name": family, "given_name": given[0] if given else None}
        )
    for resource in resources:
        if resource.get("resourceType") != "PractitionerRole":
            continue
        reference = resource.get("practitioner")
        ref = reference.get("reference") if isinstance(reference, Mapping) else None
        key = str(ref).rpartition("/")[2] if isinstance(ref, str) else ""
        if key not in owners:
            continue
        owner = owners[key]
        given = owner["given_names"]
        boxes[key].extend(
            _mailboxes(
                resource,
                {"rpps": owner["rpps"], "family_name": owner["family_name"], "given_name": given[0] if given else None},
            )
        )
    return tuple(DirectoryPractitioner(**owners[key], mailboxes=_unique(boxes[key])) for key in order)


def _organisation_mailboxes(resources: Sequence[Mapping[str, Any]]) -> tuple[DirectoryMailbox, ...]:
    found: list[DirectoryMailbox] = []
    for resource in resources:
        if resource.get("resourceType") == "Organization":
            found.extend(_mailboxes(resource, {"organisation_name": _string(resource.get("name"))}))
    return _unique(found)


def _unique(boxes: Iterable[DirectoryMailbox]) -> tuple[DirectoryMailbox, ...]:
    seen: set[tuple[str, str]] = set()
    out = []
    for box in boxes:
        key = (box.address.lower(), box.source)
        if key not in seen:
            seen.add(key)
            out.append(box)
    return tuple(out)


def _check_rpps(rpps: str) -> str:
    value = rpps.strip()
    if len(value) == 11 and value.isdigit():
        return value
    if len(value) == 12 and value.isdigit() and value.startswith("8"):
        return value
    raise InvalidIdentifierError("an RPPS number has 11 digits (or 12 as an IdNat_PS starting with 8)")


class _DirectoryBase:
    """Request building and the page loop's checks, shared by both clients; no I/O."""

    def __init__(self, settings: Settings) -> None:
        key = settings.directory.api_key
        if key is None or not key.get_secret_value():
            raise ConfigurationError(
                "no Annuaire Santé API key is configured",
                hint="set directory.api_key (or DMP_CONNECTOR_DIRECTORY__API_KEY); get one on the ANS API portal",
            )
        self.settings = settings
        self.base_url = settings.environment.annuaire_url.rstrip("/")
        self._key = key.get_secret_value()
        self._origin = urlsplit(self.base_url)[:2]
        self.throttle = TokenBucket(settings.directory.requests_per_second)
        self._tls = TlsCredentials(ca_bundle=settings.directory.ca_bundle)

    def __repr__(self) -> str:
        return client_repr(self, self.settings.environment, annuaire=self.settings.environment.annuaire_url)

    def _first(self, resource: str, params: dict[str, str], operation: str) -> RestRequest:
        query = dict(params)
        query["_count"] = str(self.settings.directory.page_size)
        return RestRequest(
            service=SERVICE,
            operation=operation,
            url=f"{self.base_url}/{resource}",
            params=query,
            secret_headers={"ESANTE-API-KEY": self._key},
        )

    def _next(self, previous: RestRequest, url: str, page: int) -> RestRequest | None:
        if page >= self.settings.directory.max_pages:
            return None
        if urlsplit(url)[:2] != self._origin:
            raise MalformedResponseError(
                "the Annuaire Santé gave a next-page link to another host; it was not followed",
                hint="the API key is only ever sent to environment.annuaire_url",
            )
        return RestRequest(
            service=SERVICE, operation=previous.operation, url=url, secret_headers=previous.secret_headers
        )

    @staticmethod
    def _by_rpps(rpps: str) -> tuple[str, dict[str, str]]:
        return "Practitioner", {"identifier": _check_rpps(rpps), "_revinclude": "PractitionerRole:practitioner"}

    @staticmethod
    def _by_name(family: str | None, given: str | None) -> tuple[str, dict[str, str]]:
        params = {"mailbox-mss:contains": "@", "_revinclude": "PractitionerRole:practitioner"}
        if family and family.strip():
            params["family"] = family.strip()
        if given and given.strip():
            params["given"] = given.strip()
        if "family" not in params and "given" not in params:
            raise ValidationError("give a family name, a given name or both to search the directory by name")
        return "Practitioner", params

    @staticmethod
    def _by_address(address: str) -> list[tuple[str, dict[str, str]]]:
        value = MssanteAddress.parse(address).address
        return [
            ("Practitioner", {"mailbox-mss:exact": value, "_revinclude": "PractitionerRole:practitioner"}),
            ("PractitionerRole", {"mailbox-mss:exact": value}),
            ("Organization", {"mailbox-mss:exact": value}),
        ]

    @staticmethod
    def _by_organisation(identifier: str) -> tuple[str, dict[str, str]]:
        value = identifier.strip()
        if not value.isalnum():
            raise InvalidIdentifierError("an organisation identifier (FINESS, SIRET …) is letters and digits only")
        return "Organization", {"identifier": value, "mailbox-mss:contains": "@"}

    @staticmethod
    def _matching(boxes: Iterable[DirectoryMailbox], address: str) -> tuple[DirectoryMailbox, ...]:
        wanted = MssanteAddress.parse(address).address.lower()
        return _unique(box for box in boxes if box.address.lower() == wanted)


class DirectoryClient(_DirectoryBase):
    """Look up MSSanté addresses in the Annuaire Santé (synchronous).

    ``audit`` sinks receive one event per page requested (service ``annuaire``); the API
    key never appears in them.
    """

    def __init__(self, settings: Settings, *, audit: Iterable[AuditSink] = (), http: RestClient | None = None) -> None:
        super().__init__(settings)
        self._owns_http = http is None
        self._http = (
            http if http is not None else RestClient(settings, tls=self._tls, audit=audit, throttle=self.throttle)
        )

    def _search(self, resource: str, params: dict[str, str], operation: str) -> list[Mapping[str, Any]]:
        request: RestRequest | None = self._first(resource, params, operation)
        found: list[Mapping[str, Any]] = []
        page = 0
        with call_scope(self.settings):  # every page of one search within one timeouts.call
            while request is not None:
                page += 1
                resources, next_url = _bundle(self._http.get_json(request))
                found.extend(resources)
                request = self._next(request, next_url, page) if next_url else None
        return found

    def practitioner_by_rpps(self, rpps: str) -> DirectoryPractitioner | None:
        """The professional with this RPPS and their MSSanté mailboxes, or None if unknown."""
        resource, params = self._by_rpps(rpps)
        found = _practitioners(self._search(resource, params, "practitioner-by-rpps"))
        return found[0] if found else None

    def search_practitioners(
        self, *, family: str | None = None, given: str | None = None
    ) -> tuple[DirectoryPractitioner, ...]:
        """Professionals with at least one MSSanté mailbox whose practising name matches."""
        resource, params = self._by_name(family, given)
        return _practitioners(self._search(resource, params, "practitioner-by-name"))

    def organisation_mailboxes(self, identifier: str) -> tuple[DirectoryMailbox, ...]:
        """Organisational and applicative mailboxes of a structure (FINESS, SIRET …)."""
        resource, params = self._by_organisation(identifier)
        return _organisation_mailboxes(self._search(resource, params, "organisation-mailboxes"))

    def find_address(self, address: str) -> tuple[DirectoryMailbox, ...]:
        """Where the directory publishes ``address`` (empty when it does not)."""
        boxes: list[DirectoryMailbox] = []
        for resource, params in self._by_address(address):
            resources = self._search(resource, params, "mailbox-by-address")
            if resource == "Organization":
                boxes.extend(_organisation_mailboxes(resources))
            elif resource == "Practitioner":
                boxes.extend(box for p in _practitioners(resources) for box in p.mailboxes)
            else:
                boxes.extend(box for r in resources for box in _mailboxes(r, {}))
        return self._matching(boxes, address)

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> DirectoryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncDirectoryClient(_DirectoryBase):
    """Asynchronous twin of :class:`DirectoryClient`."""

    def __init__(
        self, settings: Settings, *, audit: Iterable[AuditSink] = (), http: AsyncRestClient | None = None
    ) -> None:
        super().__init__(settings)
        self._owns_http = http is None
        self._http = (
            http if http is not None else AsyncRestClient(settings, tls=self._tls, audit=audit, throttle=self.throttle)
        )

    async def _search(self, resource: str, params: dict[str, str], operation: str) -> list[Mapping[str, Any]]:
        request: RestRequest | None = self._first(resource, params, operation)
        found: list[Mapping[str, Any]] = []
        page = 0
        with call_scope(self.settings):  # every page of one search within one timeouts.call
            while request is not None:
                page += 1
                resources, next_url = _bundle(await self._http.get_json(request))
                found.extend(resources)
                request = self._next(request, next_url, page) if next_url else None
        return found

    async def practitioner_by_rpps(self, rpps: str) -> DirectoryPractitioner | None:
        """The professional with this RPPS and their MSSanté mailboxes, or None if unknown."""
        resource, params = self._by_rpps(rpps)
        found = _practitioners(await self._search(resource, params, "practitioner-by-rpps"))
        return found[0] if found else None

    async def search_practitioners(
        self, *, family: str | None = None, given: str | None = None
    ) -> tuple[DirectoryPractitioner, ...]:
        """Professionals with at least one MSSanté mailbox whose practising name matches."""
        resource, params = self._by_name(family, given)
        return _practitioners(await self._search(resource, params, "practitioner-by-name"))

    async def organisation_mailboxes(self, identifier: str) -> tuple[DirectoryMailbox, ...]:
        """Organisational and applicative mailboxes of a structure (FINESS, SIRET …)."""
        resource, params = self._by_organisation(identifier)
        return _organisation_mailboxes(await self._search(resource, params, "organisation-mailboxes"))

    async def find_address(self, address: str) -> tuple[DirectoryMailbox, ...]:
        """Where the directory publishes ``address`` (empty when it does not)."""
        boxes: list[DirectoryMailbox] = []
        for resource, params in self._by_address(address):
            resources = await self._search(resource, params, "mailbox-by-address")
            if resource == "Organization":
                boxes.extend(_organisation_mailboxes(resources))
            elif resource == "Practitioner":
                boxes.extend(box for p in _practitioners(resources) for box in p.mailboxes)
            else:
                boxes.extend(box for r in resources for box in _mailboxes(r, {}))
        return self._matching(boxes, address)

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncDirectoryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
