"""``MssanteClient`` / ``AsyncMssanteClient``: send and read MSSanté mail in a few calls.

The facade joins the pure parts — :func:`~.message.build_message` (rules, headers, XDM)
and :func:`~.message.parse_message` (bodies, XDM, receipts) — to the mail transport
(:class:`~.transport.MailTransport`, SMTP + IMAP with STARTTLS and certificate or XOAUTH2
authentication). The transport emits the audit events, one per attempt, with the
patient pseudonymised and no subject or address of a patient in them.

::

    with MssanteClient(settings) as mss:
        result = mss.send(MssanteMessage(to=(MssanteAddress.for_patient(identity),), documents=(cda,)))
        for summary in mss.inbox():
            received = mss.fetch(summary.uid)
            ...
            mss.mark_read(summary.uid)

Both clients take the same arguments and have the same methods (``close`` is ``aclose``
on the async one).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from types import TracebackType
from typing import Self

from dmp_connector.audit import AuditSink
from dmp_connector.config import Settings, Timeouts, client_repr
from dmp_connector.retries import RetryPolicy

from .address import MSSANTE_DOMAINS, TrustSpace
from .auth import AsyncTokenProvider, TokenProvider
from .message import (
    BuiltMessage,
    MssanteMessage,
    ReceivedMessage,
    UnreadableMessageError,
    build_message,
    parse_message,
)
from .transport import AsyncMailTransport, DsnOptions, MailSummary, MailTransport, SendResult
from .xdm import ArchiveLimits

__all__ = ["AsyncMssanteClient", "MssanteClient"]

INBOX = "INBOX"


def _dsn(built: BuiltMessage) -> DsnOptions | None:
    """DSN parameters for a send that asks for a delivery receipt; the envelope id is the message id."""
    if not built.delivery_receipt:
        return None
    envid = built.message_id.strip("<>")
    return DsnOptions(envid=envid if 0 < len(envid) <= 100 and " " not in envid else None)


_Key = tuple[str, int, int]


class _PoisonMemory:
    """Unreadable messages by (folder, UIDVALIDITY, UID), so that a poll does not download and
    parse them again; bounded, oldest forgotten first. A new UIDVALIDITY makes old keys moot."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._known: OrderedDict[_Key, UnreadableMessageError] = OrderedDict()

    def get(self, folder: str, validity: int | None, uid: int) -> UnreadableMessageError | None:
        return self._known.get((folder, validity, uid)) if validity is not None else None

    def remember(self, folder: str, validity: int | None, uid: int, error: UnreadableMessageError) -> None:
        if validity is None or self.size == 0:
            return
        self._known[(folder, validity, uid)] = error
        while len(self._known) > self.size:
            self._known.popitem(last=False)

    def mark(self, summaries: list[MailSummary]) -> list[MailSummary]:
        return [
            replace(s, error=known)
            if s.error is None and (known := self.get(s.folder, s.uid_validity, s.uid)) is not None
            else s
            for s in summaries
        ]


def _again(error: UnreadableMessageError) -> UnreadableMessageError:
    """A fresh error for a message already found unreadable (not re-raising an old traceback)."""
    return UnreadableMessageError(
        f"{error.message} (known from an earlier fetch: not downloaded again)",
        reason=error.reason,
        uid=error.uid,
        folder=error.folder,
        hint=error.hint,
    )


class _Base:
    """What both clients share: settings, message building and parsing; no I/O."""

    def __init__(self, settings: Settings, *, trust_space: TrustSpace, archive_limits: ArchiveLimits | None) -> None:
        self.settings = settings
        self.trust_space = trust_space
        self.archive_limits = archive_limits or ArchiveLimits()
        self._poison = _PoisonMemory(settings.mssante.poison_memory)

    def __repr__(self) -> str:
        env = self.settings.environment
        return client_repr(self, env, smtp=env.mssante_smtp, imap=env.mssante_imap)

    def build(self, message: MssanteMessage) -> BuiltMessage:
        """The mail :meth:`send` would send, without sending it (to inspect, store or sign it).

        Pass the result to :meth:`send` to transmit exactly it: the same Message-ID, XDM
        archive and document ids, the bytes of :meth:`BuiltMessage.as_bytes`.
        """
        return build_message(message, self.settings, trust_space=self.trust_space)

    def _built(self, message: MssanteMessage | BuiltMessage) -> BuiltMessage:
        return message if isinstance(message, BuiltMessage) else self.build(message)

    def _parse(self, raw: bytes, uid: int, folder: str, validity: int | None) -> ReceivedMessage:
        try:
            return parse_message(raw, uid=uid, folder=folder, limits=self.archive_limits, settings=self.settings)
        except UnreadableMessageError as exc:
            self._poison.remember(folder, validity, uid, exc)
            raise

    def _known_poison(self, uid: int, folder: str, validity: int | None) -> None:
        known = self._poison.get(folder, validity, uid)
        if known is not None:
            raise _again(known)


class MssanteClient(_Base):
    """Synchronous MSSanté client for the configured mailbox.

    ``token_provider`` gives the Pro Santé Connect token in XOAUTH2 mode;
    ``trust_space`` decides which recipient domains are accepted (the official
    :class:`~.address.DomainWhitelist` when you have it); ``archive_limits`` bound the
    XDM archives read. Pass ``transport`` to bring your own (its lifetime is then yours).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        token_provider: TokenProvider | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
        trust_space: TrustSpace = MSSANTE_DOMAINS,
        archive_limits: ArchiveLimits | None = None,
        transport: MailTransport | None = None,
    ) -> None:
        super().__init__(settings, trust_space=trust_space, archive_limits=archive_limits)
        self._owns_transport = transport is None
        self._transport = transport or MailTransport(settings, token_provider=token_provider, audit=audit, retry=retry)

    def with_options(self, *, timeout: float | Timeouts | None = None, retry: RetryPolicy | None = None) -> Self:
        """This client for a call or a few with another deadline (seconds per call) or retry policy.

        Shares this client's connections, token provider, audit sinks and poison memory; closing the
        copy closes none of them. ``mss.with_options(timeout=5).inbox()``; see
        :meth:`dmp_connector.transport.Client.with_options`.
        """
        clone = copy.copy(self)
        clone._transport = self._transport.with_options(timeout=timeout, retry=retry)
        clone.settings = clone._transport.settings
        clone._owns_transport = False
        return clone

    def send(self, message: MssanteMessage | BuiltMessage) -> SendResult:
        """Build ``message`` by the MSSanté rules and submit it; refused before sending if it breaks one.

        A :class:`BuiltMessage` from :meth:`build` is sent as it is, byte for byte (its
        Message-ID and XDM ids kept), so that what was archived is what left.
        """
        built = self._built(message)
        return self._transport.send(
            built.email,
            sender=built.sender,
            recipients=built.recipients,
            dsn=_dsn(built),
            patient=built.patient_matricule,
            document_ids=built.document_ids,
        )

    def inbox(self, *, unseen_only: bool = True, folder: str = INBOX) -> list[MailSummary]:
        """The messages waiting in ``folder`` (unread only by default), oldest first, not downloaded.

        No message can make the listing fail: one whose headers cannot be decoded, or that an
        earlier :meth:`fetch` found unreadable, is listed with its ``error``.
        """
        return self._poison.mark(self._transport.list_messages(folder, unseen_only=unseen_only))

    def fetch(self, uid: int, *, folder: str = INBOX) -> ReceivedMessage:
        """Download one message and read it: bodies, attachments, XDM documents, receipt. Leaves it unread.

        A message that cannot be read safely raises :class:`UnreadableMessageError` (with its
        ``uid``); it is remembered by folder, UIDVALIDITY and UID and not downloaded again.
        """
        self._known_poison(uid, folder, self._transport.uid_validities.get(folder))
        raw = self._transport.fetch(uid, folder)
        return self._parse(raw, uid, folder, self._transport.uid_validities.get(folder))

    def mark_read(self, uid: int, *, folder: str = INBOX) -> None:
        """Mark a message as read (``\\Seen``), once it has been processed."""
        self._transport.mark_seen(uid, folder)

    def move(self, uid: int, target_folder: str, *, folder: str = INBOX) -> None:
        """Move a message to ``target_folder`` (created if needed)."""
        self._transport.move(uid, target_folder, folder)

    def close(self) -> None:
        """Close the mail connections if this client opened them."""
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncMssanteClient(_Base):
    """Asynchronous twin of :class:`MssanteClient`; the token provider may be sync or async."""

    def __init__(
        self,
        settings: Settings,
        *,
        token_provider: TokenProvider | AsyncTokenProvider | None = None,
        audit: Iterable[AuditSink] = (),
        retry: RetryPolicy | None = None,
        trust_space: TrustSpace = MSSANTE_DOMAINS,
        archive_limits: ArchiveLimits | None = None,
        transport: AsyncMailTransport | None = None,
    ) -> None:
        super().__init__(settings, trust_space=trust_space, archive_limits=archive_limits)
        self._owns_transport = transport is None
        self._transport = transport or AsyncMailTransport(
            settings, token_provider=token_provider, audit=audit, retry=retry
        )

    def with_options(self, *, timeout: float | Timeouts | None = None, retry: RetryPolicy | None = None) -> Self:
        """This client for a call or a few with another deadline or retry policy.

        Shares this client's connections, token provider, audit sinks and poison memory; closing the
        copy closes none of them. See :meth:`MssanteClient.with_options`.
        """
        clone = copy.copy(self)
        clone._transport = self._transport.with_options(timeout=timeout, retry=retry)
        clone.settings = clone._transport.settings
        clone._owns_transport = False
        return clone

    async def send(self, message: MssanteMessage | BuiltMessage) -> SendResult:
        """See :meth:`MssanteClient.send`."""
        built = self._built(message)
        return await self._transport.send(
            built.email,
            sender=built.sender,
            recipients=built.recipients,
            dsn=_dsn(built),
            patient=built.patient_matricule,
            document_ids=built.document_ids,
        )

    async def inbox(self, *, unseen_only: bool = True, folder: str = INBOX) -> list[MailSummary]:
        """See :meth:`MssanteClient.inbox`."""
        return self._poison.mark(await self._transport.list_messages(folder, unseen_only=unseen_only))

    async def fetch(self, uid: int, *, folder: str = INBOX) -> ReceivedMessage:
        """See :meth:`MssanteClient.fetch`."""
        self._known_poison(uid, folder, self._transport.uid_validities.get(folder))
        raw = await self._transport.fetch(uid, folder)
        return self._parse(raw, uid, folder, self._transport.uid_validities.get(folder))

    async def mark_read(self, uid: int, *, folder: str = INBOX) -> None:
        """See :meth:`MssanteClient.mark_read`."""
        await self._transport.mark_seen(uid, folder)

    async def move(self, uid: int, target_folder: str, *, folder: str = INBOX) -> None:
        """See :meth:`MssanteClient.move`."""
        await self._transport.move(uid, target_folder, folder)

    async def aclose(self) -> None:
        """See :meth:`MssanteClient.close`."""
        if self._owns_transport:
            await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
