"""The one error tree of dmp_connector.

Every error the SDK raises derives from :class:`DmpConnectorError`, so a vendor can
catch everything with one clause and still branch on the kind of failure::

    DmpConnectorError
    ├── ConfigurationError          the settings are wrong or a file is missing/expired
    ├── TransportError              the request did not get an answer
    │   ├── RequestTimeout
    │   ├── TlsError
    │   ├── ConnectError
    │   └── HttpStatusError         an HTTP error status with no SOAP answer (502/503/504 …)
    ├── ProtocolError               an answer came back but is not what the protocol says
    │   ├── SoapFaultError          a SOAP 1.2 Fault (code, subcodes and reason kept)
    │   ├── MalformedResponseError  not SOAP, not MTOM, missing parts …
    │   ├── UnsafeXmlError          DTD, entities, too deep, too large: refused unread
    │   ├── LimitExceededError      an answer over a configured cap (fault size, references, pages)
    │   └── PatientMismatchError    an answer about another patient, or naming ids nobody asked for
    ├── ServiceError                a national service answered "no", with its code kept
    └── ValidationError             what we were asked to build or send is invalid
        ├── InvalidIdentifierError  a matricule, key, OID or national id that breaks its rules
        ├── IdentityNotQualifiedError  an identity not QUAL used where the rules require it
        └── SignatureVerificationError  a signature that does not verify (``reason`` says why)

Messages say what failed and what to do. They never carry health data: no patient
identity, no document content. A service's free text (a fault reason, a registry error's
context, a mail server's reply) never goes into a message either: it is kept, as sent, on
the error (``reason``, ``text``) for whoever reads it on purpose (:func:`service_text`
gives a bounded, redacted copy). Foreign exceptions are translated at one boundary each
and chained with ``raise … from exc`` so that the cause stays inspectable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = [
    "MAX_SERVICE_TEXT",
    "ConfigurationError",
    "ConnectError",
    "DmpConnectorError",
    "HttpStatusError",
    "IdentityNotQualifiedError",
    "InvalidIdentifierError",
    "LimitExceededError",
    "MalformedResponseError",
    "PatientMismatchError",
    "ProtocolError",
    "RequestTimeout",
    "ServiceError",
    "SignatureVerificationError",
    "SoapFaultError",
    "TlsError",
    "TransportError",
    "UnsafeXmlError",
    "ValidationError",
    "service_text",
    "shown_code",
]

MAX_SERVICE_TEXT = 200
"""Characters of a service's free text kept by :func:`service_text`."""

# What may be an identity in a service's free text: a run of digits (a matricule, a NIR, a date
# written without separators), a date with separators, and any word in capitals of two letters and
# more (INSi and the DMP write names in capitals). The text is for a human reading a ticket, not
# for a program: a redacted word costs little, a name in a log costs a patient's privacy.
_DIGITS = re.compile(r"[0-9](?:[ .\-/]?[0-9AB]){4,}")
_UPPER_WORD = re.compile(r"(?<![\w])[A-ZÀ-ÖØ-Þ][A-ZÀ-ÖØ-Þ'\-]+(?![\w])")
# A capitalised word inside the text (not its first word: "Destinataire Zoé Adrun inconnu") may be a
# name as a mail server or a person writes it.
_CAPITALISED_WORD = re.compile(r"(?<=[\s(,;:])[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'\-]+(?![\w])")
_YEAR = re.compile(r"(?<![\w])(?:18|19|20)[0-9]{2}(?![\w])")  # a birth year written apart from its day
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def service_text(text: str | None, *, limit: int = MAX_SERVICE_TEXT, redact: Iterable[str] = ()) -> str | None:
    """A service's free text made safe to show: redacted, on one line, at most ``limit`` characters.

    Digit runs (matricules, dates), years, words in capitals (names as INSi and the DMP write them) and
    capitalised words after the first (names as a mail server or a person writes them) become
    ``…``, and so does every value of ``redact`` (the identity at hand), whatever its case.
    The raw text stays on the error that carries it; this copy is for messages and tickets.
    """
    if text is None:
        return None
    shown = _CONTROL.sub(" ", text[: limit * 4])
    for value in sorted({v for v in redact if v and len(v) >= 2}, key=len, reverse=True):
        shown = re.sub(re.escape(value), "…", shown, flags=re.IGNORECASE)
    shown = _CAPITALISED_WORD.sub("…", _UPPER_WORD.sub("…", _YEAR.sub("…", _DIGITS.sub("…", shown))))
    shown = " ".join(shown.split())
    if len(shown) > limit or len(text) > limit * 4:
        shown = shown[: limit - 1].rstrip() + "…"
    return shown


class DmpConnectorError(Exception):
    """Root of every error raised by dmp_connector.

    ``message`` says what failed, ``hint`` what to do about it. ``attempts`` is the number
    of attempts made when the error ends a retried call (1 when no retry happened).
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.attempts = 1
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigurationError(DmpConnectorError):
    """The configuration is incomplete or inconsistent, or a file it names is unusable."""


class TransportError(DmpConnectorError):
    """The request could not be carried to the service or its answer was not received.

    ``retryable`` tells the retry policy whether repeating the same request may help.
    """

    retryable: bool = True


class RequestTimeout(TransportError):
    """The service did not answer in time (connect, read, write or pool timeout)."""


class TlsError(TransportError):
    """The TLS handshake failed: unknown server CA, refused client certificate, protocol."""

    retryable = False


class ConnectError(TransportError):
    """No connection could be opened or it was dropped before an answer came."""


class HttpStatusError(TransportError):
    """The server answered with an HTTP error status and no SOAP envelope.

    ``retry_after`` holds the delay in seconds the server asked for, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after: float | None = None,
        retryable: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = retryable


class ProtocolError(DmpConnectorError):
    """An answer arrived but does not follow the protocol."""


class SoapFaultError(ProtocolError):
    """The service answered with a SOAP 1.2 Fault.

    ``code`` is the ``env:Code/env:Value`` (``env:Sender``, ``env:Receiver`` …) as a
    Clark name, ``subcodes`` the nested ``env:Subcode`` values, ``reason`` the first
    ``env:Reason/env:Text``. ``detail`` keeps the serialized ``env:Detail`` for the
    service layer, which may turn it into a :class:`ServiceError`; it is never put in
    the message because a service may echo request data there.
    """

    def __init__(
        self,
        *,
        code: str,
        reason: str,
        subcodes: Sequence[str] = (),
        detail: bytes | None = None,
        operation: str | None = None,
    ) -> None:
        where = f" to {operation}" if operation else ""
        codes = " / ".join(shown_code(c) for c in (code, *subcodes))
        super().__init__(
            f"the service answered{where} with a SOAP fault {codes} (reason: {len(reason)} characters, not shown)",
            hint="a Sender fault means the request must change; a Receiver fault is on the service side",
        )
        self.code = code
        self.reason = reason
        self.subcodes = tuple(subcodes)
        self.detail = detail
        self.operation = operation


def shown_code(code: str) -> str:
    """A service's code as a message may show it: its local name if it looks like a code, else a
    placeholder (a hostile answer could put anything in a code, a name included)."""
    local = code.rsplit("}", 1)[-1].rsplit(":", 1)[-1]
    return local if _CODE.fullmatch(local) else "(unreadable code)"


_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


class MalformedResponseError(ProtocolError):
    """The answer is not a well-formed SOAP 1.2 / MTOM message of the expected shape."""


class UnsafeXmlError(ProtocolError):
    """XML refused before it was read: DTD, entity, external reference, size or depth."""


class LimitExceededError(ProtocolError):
    """An answer went over a cap the settings set: a fault's size, the references or pages of a
    paged search. ``limit`` names the setting (``xml.max_fault_bytes``, ``dmp.max_references`` …)."""

    def __init__(self, message: str, *, limit: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or f"raise {limit} if the answer is legitimate")
        self.limit = limit


class PatientMismatchError(ProtocolError):
    """An answer names another patient than the one asked, or holds objects nobody asked for.

    The whole answer is refused — never a partial result that would hide it. ``service`` and
    ``operation`` say who answered; ``problems`` says what differed, without any value (no
    matricule, name or date: "an entry's patientId is not the INS asked", "birth_name differs").
    The attempt's audit event records this error with the asked patient pseudonymised.
    """

    def __init__(
        self,
        message: str,
        *,
        service: str,
        operation: str | None = None,
        problems: Sequence[str] = (),
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            hint=hint
            or "do not use this answer; report it to the service with the correlation id (identity vigilance)",
        )
        self.service = service
        self.operation = operation
        self.problems = tuple(problems)


class ServiceError(DmpConnectorError):
    """A national service processed the request and refused it.

    The service's own ``code`` and ``text`` are kept as they came, so that a vendor can
    look them up in the service's guide; ``service`` and ``operation`` say who said no.
    ``transient`` is True when the service said it is temporarily unable to answer
    (INSi ``insi_1xx`` technical errors, XDS ``…Busy``): the retry policy may repeat
    such a call if the operation is safe to repeat.
    """

    def __init__(
        self,
        message: str,
        *,
        service: str,
        code: str,
        text: str | None = None,
        operation: str | None = None,
        transient: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.service = service
        self.code = code
        self.text = text
        self.operation = operation
        self.transient = transient


class ValidationError(DmpConnectorError):
    """What the caller asked to build or send breaks a rule; ``problems`` lists each one."""

    def __init__(self, message: str, *, problems: Sequence[str] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = tuple(problems)


class InvalidIdentifierError(ValidationError):
    """An identifier (INS matricule and key, OID, RPPS, FINESS …) breaks its format rules.

    The message says which rule failed; it does not repeat the identifier, which may be
    a patient's matricule.
    """


class IdentityNotQualifiedError(ValidationError):
    """An identity whose status is not QUAL was used where the identity-vigilance rules require it
    (a matricule in a CDA, a DMP call, a patient's MSSanté address), or an INSi call was
    attempted for a doubtful or fictitious identity."""


class SignatureVerificationError(ValidationError):
    """A signature did not verify. ``reason`` is a stable code for programs:
    ``digest_mismatch``, ``bad_signature``, ``untrusted_certificate``, ``expired_certificate``,
    ``expired_assertion``, ``manifest_mismatch``, ``wrapping``, ``malformed``."""

    def __init__(self, message: str, *, reason: str, problems: Sequence[str] = (), hint: str | None = None) -> None:
        super().__init__(message, problems=problems, hint=hint)
        self.reason = reason
