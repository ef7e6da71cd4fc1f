"""Delivered, read, failed: the DSNs and MDNs received, linked to the messages sent.

A vendor shows, for each message it sent, where each recipient stands. It keeps a
:class:`SentMessage` per send (:meth:`SentMessage.from_result`), then applies every receipt
that comes back (:attr:`ReceivedMessage.receipt <dmp_connector.mssante.ReceivedMessage.receipt>`):
:func:`link_receipt` finds the message a receipt is about (its ``Original-Message-ID``, the
DSN's ``Original-Envelope-Id`` or the returned headers' ``Message-ID``) and
:meth:`MessageTracking.apply` moves each recipient forward — never back: a late DSN does not
undo a read receipt.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.mssante import (
    BounceReason,
    DeliveryAction,
    DeliveryReport,
    DispositionType,
    IntegrationError,
    ReadReceipt,
    Receipt,
    SendResult,
)

__all__ = ["MessageTracking", "RecipientProgress", "RecipientState", "SentMessage", "link_receipt"]


class RecipientState(StrEnum):
    """Where one recipient of a sent message stands."""

    SENT = "sent"
    """Accepted by our server; nothing heard since."""
    DELAYED = "delayed"
    """A DSN says the operator is still trying."""
    DELIVERED = "delivered"
    """Accusé de réception: in the recipient's mailbox (or relayed)."""
    FAILED = "failed"
    """Not delivered (a bounce): see :attr:`RecipientProgress.bounce`."""
    READ = "read"
    """Accusé de lecture: displayed to the recipient."""
    PROCESSED = "processed"
    """The recipient's software integrated it."""
    DELETED = "deleted"
    """Deleted without being read (an MDN ``deleted``)."""
    INTEGRATION_ERROR = "integration_error"
    """The recipient's software could not integrate it: see :attr:`RecipientProgress.integration_error`."""


_RANK = {
    RecipientState.SENT: 0,
    RecipientState.DELAYED: 1,
    RecipientState.DELIVERED: 2,
    RecipientState.FAILED: 2,
    RecipientState.READ: 3,
    RecipientState.PROCESSED: 3,
    RecipientState.DELETED: 3,
    RecipientState.INTEGRATION_ERROR: 4,
}


def _mid(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip().strip("<>").strip()
    return text or None


class SentMessage(BaseModel):
    """What to keep of a send to follow its receipts."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    message_id: str
    """Its ``Message-ID``."""
    recipients: tuple[str, ...] = Field(repr=False)
    """The addresses it was accepted for."""

    @classmethod
    def from_result(cls, result: SendResult) -> SentMessage:
        """From what :meth:`MssanteClient.send <dmp_connector.mssante.MssanteClient.send>` returned."""
        return cls(message_id=result.message_id, recipients=result.accepted)

    def matches(self, receipt: Receipt) -> bool:
        """True when ``receipt`` is about this message."""
        ours = _mid(self.message_id)
        if ours is None:
            return False
        if isinstance(receipt, DeliveryReport):
            return ours in (_mid(receipt.original_envelope_id), _mid(receipt.original_message_id))
        return _mid(receipt.original_message_id) == ours


class RecipientProgress(BaseModel):
    """One recipient's state."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    address: str = Field(repr=False)
    """The recipient."""
    state: RecipientState = RecipientState.SENT
    """Where it stands."""
    bounce: BounceReason | None = None
    """For a failure: why (a patient without Mon espace santé …)."""
    integration_error: IntegrationError | None = None
    """For an integration error: the ANS code and label."""


class MessageTracking(BaseModel):
    """A sent message and its recipients' progress; :meth:`apply` gives the next one."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    sent: SentMessage
    """The message."""
    recipients: tuple[RecipientProgress, ...]
    """One entry per recipient, in the order of the send."""

    @classmethod
    def start(cls, sent: SentMessage) -> MessageTracking:
        """Every recipient at "sent"."""
        return cls(sent=sent, recipients=tuple(RecipientProgress(address=a) for a in sent.recipients))

    @property
    def delivered(self) -> bool:
        """True when every recipient has it (delivered, read or processed)."""
        return all(_RANK[r.state] >= 2 and r.state is not RecipientState.FAILED for r in self.recipients)

    @property
    def read(self) -> bool:
        """True when every recipient read or integrated it."""
        return all(r.state in (RecipientState.READ, RecipientState.PROCESSED) for r in self.recipients)

    def state_of(self, address: str) -> RecipientState | None:
        """The state of ``address`` (None when it was not a recipient)."""
        wanted = address.lower()
        return next((r.state for r in self.recipients if r.address.lower() == wanted), None)

    def apply(self, receipt: Receipt) -> MessageTracking:
        """The tracking once ``receipt`` is taken into account (itself when it is about another message)."""
        if not self.sent.matches(receipt):
            return self
        updates: dict[str, RecipientProgress] = {}
        if isinstance(receipt, DeliveryReport):
            for report in receipt.recipients:
                address = self._recipient(report.original_recipient, report.final_recipient)
                state = _DSN_STATES.get(report.action) if report.action is not None else None
                if address is None or state is None:
                    continue
                updates[address] = RecipientProgress(address=address, state=state, bounce=report.reason)
            if not receipt.structured and len(self.recipients) == 1:  # a bounce that is not a DSN
                address = self.recipients[0].address
                updates[address] = RecipientProgress(address=address, state=RecipientState.FAILED)
        else:
            address = self._recipient(receipt.original_recipient, receipt.final_recipient)
            state = _mdn_state(receipt)
            if address is not None and state is not None:
                updates[address] = RecipientProgress(address=address, state=state, integration_error=receipt.error)
        progressed = tuple(
            updates[r.address] if r.address in updates and _RANK[updates[r.address].state] >= _RANK[r.state] else r
            for r in self.recipients
        )
        return self.model_copy(update={"recipients": progressed})

    def _recipient(self, *candidates: str | None) -> str | None:
        """Our recipient address a receipt names (original first), or the only one when it names another."""
        for candidate in candidates:
            if candidate is None:
                continue
            for r in self.recipients:
                if r.address.lower() == candidate.lower():
                    return r.address
        return self.recipients[0].address if len(self.recipients) == 1 else None


_DSN_STATES = {
    DeliveryAction.DELIVERED: RecipientState.DELIVERED,
    DeliveryAction.RELAYED: RecipientState.DELIVERED,
    DeliveryAction.EXPANDED: RecipientState.DELIVERED,
    DeliveryAction.DELAYED: RecipientState.DELAYED,
    DeliveryAction.FAILED: RecipientState.FAILED,
}


def _mdn_state(receipt: ReadReceipt) -> RecipientState | None:
    if receipt.failed:
        return RecipientState.INTEGRATION_ERROR
    return (
        {
            DispositionType.DISPLAYED: RecipientState.READ,
            DispositionType.PROCESSED: RecipientState.PROCESSED,
            DispositionType.DISPATCHED: RecipientState.PROCESSED,
            DispositionType.DELETED: RecipientState.DELETED,
        }.get(receipt.disposition)
        if receipt.disposition is not None
        else None
    )


def link_receipt(receipt: Receipt, sent: Iterable[SentMessage]) -> SentMessage | None:
    """The sent message ``receipt`` is about, or None (a receipt for a message we did not keep)."""
    return next((message for message in sent if message.matches(receipt)), None)
