"""The HL7 v2 and MLLP errors, each under the SDK's one error tree (:mod:`dmp_connector.errors`)::

    ProtocolError
    ├── Hl7ParseError          not an HL7 v2 message this SDK reads (delimiters, segments, charset)
    ├── MllpFramingError       bytes outside a <VT>…<FS><CR> frame, or a frame cut short
    └── AckMismatchError       an ACK for another message control id (or none)
    LimitExceededError         a frame over ``max_message_bytes``
    ServiceError
    └── Hl7RejectedError       MSA-1 AE/AR (or a business ack saying N): ``code``, ``errors``
    ValidationError
    └── Hl7IdentityError       a PID that breaks the PAM-FR rules (no birth name, INS without OID …)

Messages never quote a value of the message: a PID is an identity.
"""

from __future__ import annotations

from collections.abc import Sequence

from dmp_connector.errors import ProtocolError, ServiceError, ValidationError

__all__ = ["AckMismatchError", "Hl7IdentityError", "Hl7ParseError", "Hl7RejectedError", "MllpFramingError"]


class Hl7ParseError(ProtocolError):
    """The bytes are not an HL7 v2 message this SDK reads, or a segment it needs is missing or malformed."""


class MllpFramingError(ProtocolError):
    """The peer broke MLLP framing: bytes before the start block, a frame not ended by <FS><CR>, a closed stream."""


class AckMismatchError(ProtocolError):
    """The acknowledgement names another message (MSA-2 is not the MSH-10 sent): it is not our answer."""


class Hl7RejectedError(ServiceError):
    """The receiver refused the message (MSA-1 ``AE``/``AR``) or a business ack reports a failure.

    ``code`` is MSA-1 (or ``N`` for a business ack); ``errors`` holds the ERR segments' codes
    (ERR-3 / ERR-5 identifiers, e.g. ``207``), never their free text.
    """

    def __init__(
        self, message: str, *, code: str, errors: Sequence[str] = (), text: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, service="HL7 v2 receiver", code=code, text=text, hint=hint)
        self.errors = tuple(errors)


class Hl7IdentityError(ValidationError):
    """A PID segment breaks the PAM-FR identity rules; ``problems`` says which, without any value."""
