"""INSi clients: :class:`InsiClient` and its async twin, thin shells around the SOAP clients.

Everything INSi-specific (headers, parsing, faults, the verification verdict) lives in
:mod:`dmp_connector.ins.insi`, without I/O; these classes only choose the searches to
send, send them through :class:`dmp_connector.transport.Client` / :class:`dmp_connector.transport.AsyncClient`
(retries, audit, TLS) and return typed results. The two classes have the same methods
with the same signatures; a test keeps it so.

Authentication is mutual TLS with the organisation certificate by default. In assertion
mode (``settings.insi.auth_mode = "assertion"``) an *assertion provider* — any callable
returning the SAML assertion as an lxml element, produced with the professional's card
outside the SDK — is called once per search and its result put in ``wsse:Security``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Protocol, Self, cast

from lxml import etree

from dmp_connector._deadline import call_scope
from dmp_connector._transport import AsyncClient, Client
from dmp_connector.audit import AuditDispatcher, AuditSink
from dmp_connector.config import InsiAuthMode, Settings, Timeouts, client_repr
from dmp_connector.errors import ConfigurationError, ValidationError
from dmp_connector.retries import RetryPolicy

from .identity import Identity, IdentityTraits
from .insi import (
    CarteVitaleBeneficiary,
    InsiResult,
    InsiResultCode,
    InsiVerification,
    SearchByCarteVitale,
    SearchByTraits,
    SearchCriteria,
    assess_verification,
    search_plan,
)

__all__ = ["AssertionProvider", "AsyncHttpClient", "AsyncInsiClient", "InsiClient", "SyncHttpClient"]

AssertionProvider = Callable[[], etree._Element]
"""Returns the SAML assertion to put in ``wsse:Security`` (produced outside the SDK, e.g. with the CPS card)."""


class SyncHttpClient(Protocol):
    """What :class:`InsiClient` needs of a caller's HTTP client; an ``httpx.Client`` is one.

    Declared here so that the service package does not import httpx itself.
    """

    def stream(self, method: str, url: str, *, content: Any = ..., headers: Any = ...) -> AbstractContextManager[Any]:
        """Send a request and stream its answer."""
        ...


class AsyncHttpClient(Protocol):
    """What :class:`AsyncInsiClient` needs of a caller's HTTP client; an ``httpx.AsyncClient`` is one."""

    def stream(
        self, method: str, url: str, *, content: Any = ..., headers: Any = ...
    ) -> AbstractAsyncContextManager[Any]:
        """Send a request and stream its answer."""
        ...


class _InsiBase:
    """What both clients share without I/O: the auth mode check and building the searches."""

    def __init__(self, settings: Settings, assertion_provider: AssertionProvider | None) -> None:
        mode = settings.insi.auth_mode
        if mode is InsiAuthMode.ASSERTION and assertion_provider is None:
            raise ConfigurationError(
                "insi.auth_mode is 'assertion' but no assertion provider was given",
                hint="pass assertion_provider= (a callable returning the signed SAML assertion), or use mtls",
            )
        if mode is InsiAuthMode.MTLS and assertion_provider is not None:
            raise ConfigurationError(
                "an assertion provider was given but insi.auth_mode is 'mtls'",
                hint="set insi.auth_mode = 'assertion' to authenticate with a card assertion",
            )
        self.settings = settings
        self._assertion_provider = assertion_provider

    def __repr__(self) -> str:
        env = self.settings.environment
        url = env.insi_mtls_url if self.settings.insi.auth_mode is InsiAuthMode.MTLS else env.insi_url
        return client_repr(self, env, insi=url)

    def _tokens(self, extra: Sequence[etree._Element] = ()) -> tuple[etree._Element, ...]:
        tokens: list[etree._Element] = []
        if self._assertion_provider is not None:
            token = self._assertion_provider()
            if not isinstance(token, etree._Element):
                raise TypeError("the assertion provider must return an lxml element (the SAML assertion)")
            tokens.append(token)
        tokens.extend(extra)
        return tuple(tokens)

    def _traits_search(self, subject: Identity | IdentityTraits, criteria: SearchCriteria) -> SearchByTraits:
        return SearchByTraits(
            subject, criteria=criteria, auth_mode=self.settings.insi.auth_mode, security_tokens=self._tokens()
        )

    def _traits_searches(
        self, subject: Identity | IdentityTraits, criteria: SearchCriteria | None
    ) -> Iterator[SearchByTraits]:
        """The given criteria, or the refinement plan; the first search checks the identity before anything."""
        first = self._traits_search(subject, criteria or SearchCriteria())
        yield first
        if criteria is None:
            for step in search_plan(first.traits)[1:]:
                yield self._traits_search(subject, step)

    def _vitale_search(
        self, beneficiary: CarteVitaleBeneficiary, vitale_assertion: etree._Element | None
    ) -> SearchByCarteVitale:
        extra = () if vitale_assertion is None else (vitale_assertion,)
        return SearchByCarteVitale(
            beneficiary, auth_mode=self.settings.insi.auth_mode, security_tokens=self._tokens(extra)
        )

    @staticmethod
    def _verifiable(identity: Identity) -> Identity:
        if not isinstance(identity, Identity):
            raise TypeError("verify takes an Identity that holds an INS")
        identity.require_insi_allowed()
        if identity.ins is None:
            raise ValidationError("the identity has no INS to verify", hint="search INSi by its traits instead")
        return identity


class InsiClient(_InsiBase):
    """Synchronous INSi client.

    ``http_client`` (an ``httpx.Client``) stays yours to configure and close. ``audit``
    sinks receive one event per attempt, with the patient pseudonymised and no trait.
    ``retry`` overrides ``settings.retry``; technical INSi faults are retried, refusals
    and the 01/02 answers are not.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: SyncHttpClient | None = None,
        audit: Iterable[AuditSink] = (),
        assertion_provider: AssertionProvider | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(settings, assertion_provider)
        self._client = Client(settings, http_client=cast(Any, http_client), audit=audit, retry=retry)

    def with_options(self, *, timeout: float | Timeouts | None = None, retry: RetryPolicy | None = None) -> Self:
        """This client with another deadline (seconds per call) or retry policy, for a call or a few.

        Shares this client's connection pool and audit sinks; closing the copy closes neither.
        ``insi.with_options(timeout=5).search(traits)``; see :meth:`dmp_connector.transport.Client.with_options`.
        """
        clone = copy.copy(self)
        clone._client = self._client.with_options(timeout=timeout, retry=retry)
        clone.settings = clone._client.settings
        return clone

    @property
    def audit(self) -> AuditDispatcher:
        """The audit dispatcher: add a sink with ``client.audit.add(sink)``."""
        return self._client.audit

    def search(self, subject: Identity | IdentityTraits, *, criteria: SearchCriteria | None = None) -> InsiResult:
        """Search the INS by traits (``rechercherInsAvecTraitsIdentite``).

        Without ``criteria`` the refinement plan applies: while INSi answers 02, search
        again with every first name, then with the birth place (:func:`search_plan`).
        The result's ``criteria`` says which search gave it. A doubtful or fictitious
        :class:`Identity` raises :class:`IdentityNotQualifiedError` before any call.
        """
        return self._search(subject, criteria)[0]

    def search_carte_vitale(
        self, beneficiary: CarteVitaleBeneficiary, *, vitale_assertion: etree._Element | None = None
    ) -> InsiResult:
        """Search the INS of a Carte Vitale beneficiary (``rechercherInsAvecCarteVitale``).

        ``vitale_assertion`` is the assertion the card middleware made for this reading;
        it goes in ``wsse:Security`` after the professional's.
        """
        return self._client.send(self._vitale_search(beneficiary, vitale_assertion))

    def verify(self, identity: Identity) -> InsiVerification:
        """Verify a stored INS: search by the identity's own traits, then compare INS and traits.

        The verdict (:class:`VerificationVerdict`) says what to do; nothing is changed.
        """
        checked = self._verifiable(identity)
        result, searches = self._search(checked, None)
        return assess_verification(checked, result, searches=searches)

    def _search(self, subject: Identity | IdentityTraits, criteria: SearchCriteria | None) -> tuple[InsiResult, int]:
        result: InsiResult | None = None
        count = 0
        with call_scope(self.settings):  # the refined searches share one timeouts.call
            for operation in self._traits_searches(subject, criteria):
                count += 1
                result = self._client.send(operation).model_copy(update={"criteria": operation.criteria})
                if result.code is not InsiResultCode.AMBIGUOUS:
                    break
        if result is None:  # pragma: no cover - the plan always has a first search
            raise ValidationError("no INSi search was made")
        return result, count

    def close(self) -> None:
        """Close the HTTP client if this object created it, and the audit file."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncInsiClient(_InsiBase):
    """Asynchronous twin of :class:`InsiClient`: same constructor, same methods, awaited.

    The assertion provider is a plain callable here too: it runs in the event loop, so
    keep it quick (have it return an assertion fetched beforehand).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: AsyncHttpClient | None = None,
        audit: Iterable[AuditSink] = (),
        assertion_provider: AssertionProvider | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(settings, assertion_provider)
        self._client = AsyncClient(settings, http_client=cast(Any, http_client), audit=audit, retry=retry)
        # Nothing to sign without an assertion provider (mutual TLS); a provider may wait on a card.
        self._client.build_in_thread = assertion_provider is not None

    def with_options(self, *, timeout: float | Timeouts | None = None, retry: RetryPolicy | None = None) -> Self:
        """This client with another deadline (seconds per call) or retry policy, for a call or a few.

        Shares this client's connection pool and audit sinks; closing the copy closes neither.
        ``insi.with_options(timeout=5).search(traits)``; see :meth:`dmp_connector.transport.Client.with_options`.
        """
        clone = copy.copy(self)
        clone._client = self._client.with_options(timeout=timeout, retry=retry)
        clone.settings = clone._client.settings
        return clone

    @property
    def audit(self) -> AuditDispatcher:
        """The audit dispatcher: add a sink with ``client.audit.add(sink)``."""
        return self._client.audit

    async def search(self, subject: Identity | IdentityTraits, *, criteria: SearchCriteria | None = None) -> InsiResult:
        """Search the INS by traits; see :meth:`InsiClient.search`."""
        return (await self._search(subject, criteria))[0]

    async def search_carte_vitale(
        self, beneficiary: CarteVitaleBeneficiary, *, vitale_assertion: etree._Element | None = None
    ) -> InsiResult:
        """Search the INS of a Carte Vitale beneficiary; see :meth:`InsiClient.search_carte_vitale`."""
        return await self._client.send(self._vitale_search(beneficiary, vitale_assertion))

    async def verify(self, identity: Identity) -> InsiVerification:
        """Verify a stored INS; see :meth:`InsiClient.verify`."""
        checked = self._verifiable(identity)
        result, searches = await self._search(checked, None)
        return assess_verification(checked, result, searches=searches)

    async def _search(
        self, subject: Identity | IdentityTraits, criteria: SearchCriteria | None
    ) -> tuple[InsiResult, int]:
        result: InsiResult | None = None
        count = 0
        with call_scope(self.settings):  # the refined searches share one timeouts.call
            for operation in self._traits_searches(subject, criteria):
                count += 1
                result = (await self._client.send(operation)).model_copy(update={"criteria": operation.criteria})
                if result.code is not InsiResultCode.AMBIGUOUS:
                    break
        if result is None:  # pragma: no cover - the plan always has a first search
            raise ValidationError("no INSi search was made")
        return result, count

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it, and the audit file."""
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
