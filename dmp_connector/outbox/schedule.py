"""When to try again, and what trying again cannot fix.

The retry schedule is data (:class:`RetrySchedule`): a list of waits after each failed attempt,
from a minute to days, so that an hour of DMP downtime or a weekend costs nothing but delay. What
retrying cannot fix — no DMP, a closed DMP, the patient's opposition, an identity not qualified, a
document refused — ends the item at once in ``failed`` with its :class:`FailureReason`, kept.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from dmp_connector.dmp import (
    DmpAccessDeniedError,
    DmpClosedError,
    DmpNotFoundError,
    DmpServiceError,
    DocumentConflictError,
)
from dmp_connector.errors import (
    ConfigurationError,
    DmpConnectorError,
    HttpStatusError,
    IdentityNotQualifiedError,
    PatientMismatchError,
    ProtocolError,
    ServiceError,
    TransportError,
    ValidationError,
)

__all__ = ["DEFAULT_DELAYS", "Classified", "FailureReason", "RetrySchedule", "classify"]


class FailureReason(StrEnum):
    """Why an item ended in ``failed``: what retrying cannot fix (or the schedule ran out)."""

    NO_DMP = "no_dmp"
    """The patient has no DMP (create it with the patient's consent, then retry the item by hand)."""
    DMP_CLOSED = "dmp_closed"
    """The patient's DMP is closed."""
    ACCESS_DENIED = "access_denied"
    """Access refused: the patient's opposition, a blocked professional, no authorisation."""
    IDENTITY_NOT_QUALIFIED = "identity_not_qualified"
    """The identity is not qualified (QUAL): the DMP takes no other; qualify it through INSi first."""
    CONFLICT = "conflict"
    """The document's uniqueId is in the DMP with other content: give the new version its own id."""
    REFUSED = "refused"
    """The DMP refused the document (a registry or service error that is not transient)."""
    INVALID = "invalid"
    """The document or its metadata are invalid (caught by the SDK before sending)."""
    PATIENT_MISMATCH = "patient_mismatch"
    """An answer named another patient: identity vigilance stops the item."""
    EXHAUSTED = "exhausted"
    """Transient failures went on past the last wait of the schedule."""


@dataclass(frozen=True)
class Classified:
    """An error seen by the queue: transient (try again later) or final (with its reason)."""

    transient: bool
    reason: FailureReason | None
    code: str
    """A short code for the history: the service's code, the HTTP status, or the error's class."""
    detail: str
    """The error's class and message (the SDK's messages never carry an identity)."""
    retry_after: float | None = None
    """Seconds the service asked to wait (HTTP ``Retry-After``), if any."""


_FINAL_KINDS: Final[tuple[tuple[type[BaseException], FailureReason], ...]] = (
    (DocumentConflictError, FailureReason.CONFLICT),
    (DmpNotFoundError, FailureReason.NO_DMP),
    (DmpClosedError, FailureReason.DMP_CLOSED),
    (DmpAccessDeniedError, FailureReason.ACCESS_DENIED),
    (IdentityNotQualifiedError, FailureReason.IDENTITY_NOT_QUALIFIED),
    (PatientMismatchError, FailureReason.PATIENT_MISMATCH),
    (ValidationError, FailureReason.INVALID),
)


def _code(error: BaseException) -> str:
    if isinstance(error, ServiceError):
        return error.code[:100]
    if isinstance(error, HttpStatusError):
        return str(error.status_code)
    return type(error).__name__


def _detail(error: BaseException) -> str:
    message = error.message if isinstance(error, DmpConnectorError) else "unexpected error (see the worker's log)"
    return f"{type(error).__name__}: {message}"[:400]


def classify(error: BaseException) -> Classified:
    """Transient or final, and why. A :class:`~dmp_connector.errors.ConfigurationError` is neither:
    it is the worker's, not the item's (the caller stops the worker and leaves the item waiting).

    Transient: transport failures (no answer, timeouts, 5xx and 429), malformed answers (the deposit
    may have landed: the replay is idempotent), a service error marked transient (SOAP Receiver
    fault, ``XDSRegistryBusy``), and any error the SDK does not know (logged by the worker).
    """
    if isinstance(error, ConfigurationError):
        raise error
    code, detail = _code(error), _detail(error)
    for kind, reason in _FINAL_KINDS:
        if isinstance(error, kind):
            return Classified(False, reason, code, detail)
    if isinstance(error, HttpStatusError):
        transient = error.status_code >= 500 or error.status_code in (408, 425, 429)
        return Classified(
            transient, None if transient else FailureReason.REFUSED, code, detail, retry_after=error.retry_after
        )
    if isinstance(error, (TransportError, ProtocolError)):
        return Classified(True, None, code, detail)
    if isinstance(error, (ServiceError, DmpServiceError)):
        return Classified(error.transient, None if error.transient else FailureReason.REFUSED, code, detail)
    return Classified(True, None, code, detail)


DEFAULT_DELAYS: Final[tuple[dt.timedelta, ...]] = tuple(
    dt.timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 240, 480, 720, 1440, 1440, 1440)
)
"""1 min, 5 min, 15 min, 30 min, 1 h, 2 h, 4 h, 8 h, 12 h, then a day three times: 13 attempts over
about four and a half days — a DMP down for a long weekend, a patient whose DMP is being created."""

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_WAIT: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


@dataclass(frozen=True)
class RetrySchedule:
    """The waits after each transient failure: after attempt ``n`` fails, wait ``delays[n - 1]``.

    After the last wait has been used, the next transient failure ends the item (``exhausted``).
    ``jitter`` spreads the waits by up to that fraction either way, so that items that failed
    together (the DMP was down) do not all come back in the same second.
    """

    delays: tuple[dt.timedelta, ...] = DEFAULT_DELAYS
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if any(d.total_seconds() < 0 for d in self.delays):
            raise ValueError("a retry delay cannot be negative")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter is a fraction, 0 <= jitter < 1")

    @classmethod
    def parse(cls, text: str | Iterable[str], *, jitter: float = 0.1) -> RetrySchedule:
        """``"1m 5m 15m 1h 6h 1d 1d"`` (units s, m, h, d) as a schedule."""
        words = text.replace(",", " ").split() if isinstance(text, str) else list(text)
        delays: list[dt.timedelta] = []
        for word in words:
            match = _WAIT.fullmatch(word.strip())
            if match is None:
                raise ValueError(f"{word!r} is not a wait (a number and s, m, h or d: 30s, 5m, 2h, 1d)")
            delays.append(dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)]))
        return cls(tuple(delays), jitter=jitter)

    @classmethod
    def of_seconds(cls, seconds: Sequence[float], *, jitter: float = 0.0) -> RetrySchedule:
        """A schedule from plain seconds (tests, benchmarks)."""
        return cls(tuple(dt.timedelta(seconds=s) for s in seconds), jitter=jitter)

    @property
    def max_attempts(self) -> int:
        """Attempts an item gets before it ends ``exhausted``."""
        return len(self.delays) + 1

    def wait_after(self, attempt: int, *, retry_after: float | None = None) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); None when none is left."""
        if attempt < 1 or attempt > len(self.delays):
            return None
        wait = self.delays[attempt - 1].total_seconds()
        if self.jitter:
            wait *= 1.0 + random.uniform(-self.jitter, self.jitter)  # noqa: S311 - spreading, not secrecy
        return max(wait, retry_after or 0.0)

    def describe(self) -> str:
        """The waits as text (``1m 5m 15m …``)."""
        return " ".join(_short(d) for d in self.delays)


def _short(delay: dt.timedelta) -> str:
    seconds = delay.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
