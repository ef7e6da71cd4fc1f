"""What the DMP simulator keeps: patients and their DMP, authorisations, and the XDS registry and repository.

One SQLite database holds everything, in memory by default or in a file (``path=``) so that a
sandbox restarted on the same file finds what was deposited. The store knows nothing of the DMP's
rules: :mod:`dmp_connector.sandbox.dmp` checks them and calls the store inside
:meth:`DmpStore.transaction`, which makes "is this uniqueId already there?" and "store it" one
atomic step even when the loopback server answers several requests at once.

Records are pydantic models kept as JSON next to the columns the queries filter on, so that a
new field does not need a schema change. Document bytes are kept once per uniqueId with their
SHA-1 and size, as a repository does.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dmp_connector.codes import Code
from dmp_connector.dmp._td import Address, AuthorisationStatus, DmpState
from dmp_connector.errors import ConfigurationError
from dmp_connector.ins.identity import INS, IdentityTraits
from dmp_connector.signature.vihf import AccessMode
from dmp_connector.xds.model import Association, Cx, DocumentEntry, SubmissionSet

__all__ = [
    "AuthorisationRecord",
    "DmpStore",
    "PatientRecord",
    "ProfessionalRecord",
    "StoredContent",
    "StoredEntry",
    "StoredSubmissionSet",
    "patient_key",
]

_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")
_SCHEMA_VERSION: Final = "1"


def patient_key(patient: Cx | INS | None) -> str:
    """The key a patient is stored under: the INS as an XDS CX (matricule and OID; the type is always NH).

    An entry without patientId (limited metadata) gets a key no patient has: a NUL cannot be in XML.
    """
    if patient is None:
        return "\x00no patientId"
    if isinstance(patient, INS):
        return _key(patient.matricule, patient.oid.value)
    return _key(patient.id, patient.assigning_authority)


@functools.lru_cache(maxsize=1024)
def _key(matricule: str, authority: str) -> str:
    """:func:`patient_key` of a matricule and its OID, kept: a deposit asks for it about ten times."""
    return Cx(id=matricule, assigning_authority=authority, id_type="NH").text


class PatientRecord(BaseModel):
    """A patient the simulator knows, and their DMP (also the seed type: ``DEFAULT_DMP_PATIENTS``)."""

    model_config = _FROZEN

    ins: INS
    """The patient's INS; XDS requests must carry it as ``<matricule>^^^&<OID>&ISO^NH`` with this OID."""
    traits: IdentityTraits
    """The traits TD0.5 (patient search) matches and TD0.2 returns."""
    dmp: DmpState | None = DmpState.ACTIVE
    """The DMP's state (active, or closed — ``terminated``); None when the patient has no DMP (TD0.2
    answers ``NF``, TD1.1 creates it). A store written before 0.x with ``completed`` reads as closed."""
    oppositions: frozenset[AccessMode] = frozenset()
    """Access modes the patient opposed (``bris_de_glace``, ``centre_15``; TD1.3b changes them)."""
    created: dt.datetime | None = None
    """When the DMP was created."""
    closed: dt.datetime | None = None
    """When the DMP was closed, for a closed one."""
    closing_reason: str | None = None
    """Why it was closed (TD1.4): the reason code as given (``DEMANDE_PATIENT`` …)."""
    closing_text: str | None = None
    """The free text given with the closure."""
    email: str | None = None
    """Contact address for the DMP's notifications (administrative data, TD1.1/TD1.3b)."""
    mobile_phone: str | None = None
    """Mobile phone for the DMP's notifications."""
    home_phone: str | None = None
    """Home phone (administrative data)."""
    civility: str | None = None
    """Civilité (administrative data)."""
    address: Address | None = None
    """Postal address (administrative data)."""
    mes_attached: bool = True
    """Whether the DMP is attached to the patient's Mon espace santé account (reported by TD0.2)."""
    note: str = ""
    """Why this seed exists (the case it shows)."""

    @field_validator("dmp", mode="before")
    @classmethod
    def _former_closed(cls, value: Any) -> Any:
        return DmpState.CLOSED if value == "completed" else value  # the guess stores kept before the evidence

    @property
    def key(self) -> str:
        """The storage key (:func:`patient_key`)."""
        return patient_key(self.ins)

    @property
    def cx(self) -> Cx:
        """The patient id as XDS carries it."""
        return Cx(id=self.ins.matricule, assigning_authority=self.ins.oid.value, id_type="NH")


class ProfessionalRecord(BaseModel):
    """A health professional the simulator knows (names for the authorisation lists)."""

    model_config = _FROZEN

    national_id: str = Field(min_length=2)
    """IdNat_PS (``8`` + RPPS …), as the VIHF ``Subject/NameID`` carries it."""
    family_name: str = Field(min_length=1)
    """Family name."""
    given_name: str = Field(min_length=1)
    """Given name."""
    profession: Code | None = None
    """Profession (TRE_G15)."""
    note: str = ""
    """Why this seed exists."""


class AuthorisationRecord(BaseModel):
    """One professional's standing on one patient's DMP."""

    model_config = _FROZEN

    patient: str = Field(min_length=1)
    """The patient's key (:func:`patient_key`)."""
    professional_id: str = Field(min_length=1)
    """IdNat_PS of the professional."""
    status: AuthorisationStatus = AuthorisationStatus.VALID
    """``VALIDE`` (authorised), ``INTERDIT`` (blocked by the patient), ``EXPIRE`` or ``NON_EXISTE``."""

    @field_validator("status", mode="before")
    @classmethod
    def _former_values(cls, value: Any) -> Any:
        return {"EXPIREE": "EXPIRE", "AUCUNE": "NON_EXISTE"}.get(value, value) if isinstance(value, str) else value

    attending_physician: bool = False
    """Declared "médecin traitant DMP" (TD0.3 with the ``MEDECIN_TRAITANT`` role)."""
    since: dt.datetime | None = None
    """When it was given (TD0.4 ``LASTAUTORIZATION`` sorts on it)."""


class StoredEntry(BaseModel):
    """A registry document entry with what the simulator needs besides its metadata."""

    model_config = _FROZEN

    entry: DocumentEntry
    """The metadata as the registry answers it: ``urn:uuid:`` id, status, version, logical id, repository."""
    submission_set: str
    """entryUUID of the submission set that registered this version."""
    submitter: str
    """IdNat_PS of the VIHF subject who deposited it (a masked document stays visible to them)."""
    recorded: dt.datetime
    """When the registry recorded this version."""

    @property
    def author_ids(self) -> frozenset[str]:
        """Who counts as an author for masking: the authorPerson ids and the depositor."""
        ids = {author.person.id for author in self.entry.authors if author.person is not None and author.person.id}
        return frozenset({*ids, self.submitter})


class StoredSubmissionSet(BaseModel):
    """A registered submission set."""

    model_config = _FROZEN

    submission_set: SubmissionSet
    """The metadata with its ``urn:uuid:`` id and status."""
    submitter: str
    """IdNat_PS of the depositor."""
    recorded: dt.datetime
    """When the registry recorded it."""


@dataclass(frozen=True)
class StoredContent:
    """A document's bytes in the repository, with the hash and size the registry announces."""

    unique_id: str
    mime_type: str
    sha1: str
    size: int
    data: bytes


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patients (key TEXT PRIMARY KEY, matricule TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS professionals (national_id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authorisations (
    patient TEXT NOT NULL, professional_id TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (patient, professional_id));
CREATE TABLE IF NOT EXISTS submission_sets (
    entry_uuid TEXT PRIMARY KEY, unique_id TEXT NOT NULL UNIQUE, patient TEXT NOT NULL, submitter TEXT NOT NULL,
    recorded TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    entry_uuid TEXT PRIMARY KEY, unique_id TEXT NOT NULL, logical_id TEXT NOT NULL, patient TEXT NOT NULL,
    status TEXT NOT NULL, submitter TEXT NOT NULL, recorded TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_patient ON entries (patient);
CREATE INDEX IF NOT EXISTS entries_unique_id ON entries (unique_id);
CREATE INDEX IF NOT EXISTS entries_logical_id ON entries (logical_id);
CREATE TABLE IF NOT EXISTS associations (
    entry_uuid TEXT PRIMARY KEY, source TEXT NOT NULL, target TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS associations_source ON associations (source);
CREATE INDEX IF NOT EXISTS associations_target ON associations (target);
CREATE TABLE IF NOT EXISTS contents (
    unique_id TEXT PRIMARY KEY, mime_type TEXT NOT NULL, sha1 TEXT NOT NULL, size INTEGER NOT NULL,
    data BLOB NOT NULL);
"""


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


class DmpStore:
    """The simulator's storage: SQLite in memory (``path=None``) or in a file that survives restarts.

    Thread-safe: one connection guarded by a re-entrant lock. Group reads and writes that must
    not interleave with another request in :meth:`transaction` (committed at the end, rolled
    back on an exception). Every other method is atomic on its own.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        target = str(self.path) if self.path is not None else ":memory:"
        try:
            self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"the DMP sandbox cannot open its database {target}: {exc}", hint="check the path and its permissions"
            ) from exc
        self._lock = threading.RLock()
        self._depth = 0
        if self.path is not None:  # a sandbox, not a bank: WAL with fewer fsyncs keeps deposits fast
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (_SCHEMA_VERSION,))
            elif row[0] != _SCHEMA_VERSION:
                raise ConfigurationError(
                    f"the DMP sandbox database {target} has schema {row[0]}, not {_SCHEMA_VERSION}",
                    hint="start from a new file",
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path) if self.path else ':memory:'})"

    # --- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the store for a group of reads and writes; nested calls join the outer transaction."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, tuple(params)).fetchall())

    def _write(self, sql: str, params: Sequence[object] = ()) -> None:
        with self.transaction():
            self._db.execute(sql, tuple(params))

    def close(self) -> None:
        """Close the database (a file store keeps everything for the next :class:`DmpStore` on it)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- seeds ----------------------------------------------------------------------------------

    def seed(
        self,
        *,
        patients: Iterable[PatientRecord] = (),
        professionals: Iterable[ProfessionalRecord] = (),
        authorisations: Iterable[AuthorisationRecord] = (),
    ) -> None:
        """Add seeds that are not there yet; what a file store already holds (a DMP since closed …) wins."""
        with self.transaction():
            for patient in patients:
                self._db.execute(
                    "INSERT OR IGNORE INTO patients (key, matricule, record) VALUES (?, ?, ?)",
                    (patient.key, patient.ins.matricule, patient.model_dump_json()),
                )
            for professional in professionals:
                self._db.execute(
                    "INSERT OR IGNORE INTO professionals (national_id, record) VALUES (?, ?)",
                    (professional.national_id, professional.model_dump_json()),
                )
            for authorisation in authorisations:
                self._db.execute(
                    "INSERT OR IGNORE INTO authorisations (patient, professional_id, record) VALUES (?, ?, ?)",
                    (authorisation.patient, authorisation.professional_id, authorisation.model_dump_json()),
                )

    # --- patients -------------------------------------------------------------------------------

    def patient(self, patient: Cx | INS | str) -> PatientRecord | None:
        """The patient stored under this INS (a :class:`Cx`, an :class:`INS` or a key), or None."""
        key = patient if isinstance(patient, str) else patient_key(patient)
        rows = self._rows("SELECT record FROM patients WHERE key = ?", (key,))
        return PatientRecord.model_validate_json(str(rows[0][0])) if rows else None

    def patients(self) -> list[PatientRecord]:
        """Every patient, in key order."""
        return [
            PatientRecord.model_validate_json(str(r[0])) for r in self._rows("SELECT record FROM patients ORDER BY key")
        ]

    def put_patient(self, patient: PatientRecord) -> None:
        """Add or replace a patient."""
        self._write(
            "INSERT OR REPLACE INTO patients (key, matricule, record) VALUES (?, ?, ?)",
            (patient.key, patient.ins.matricule, patient.model_dump_json()),
        )

    # --- professionals --------------------------------------------------------------------------

    def professional(self, national_id: str) -> ProfessionalRecord | None:
        """The professional with this IdNat_PS, or None."""
        rows = self._rows("SELECT record FROM professionals WHERE national_id = ?", (national_id,))
        return ProfessionalRecord.model_validate_json(str(rows[0][0])) if rows else None

    def put_professional(self, professional: ProfessionalRecord) -> None:
        """Add or replace a professional."""
        self._write(
            "INSERT OR REPLACE INTO professionals (national_id, record) VALUES (?, ?)",
            (professional.national_id, professional.model_dump_json()),
        )

    # --- authorisations -------------------------------------------------------------------------

    def authorisation(self, patient: str, professional_id: str) -> AuthorisationRecord | None:
        """The standing of ``professional_id`` on the DMP of the patient keyed ``patient``, or None."""
        rows = self._rows(
            "SELECT record FROM authorisations WHERE patient = ? AND professional_id = ?", (patient, professional_id)
        )
        return AuthorisationRecord.model_validate_json(str(rows[0][0])) if rows else None

    def authorisations(
        self, *, patient: str | None = None, professional_id: str | None = None
    ) -> list[AuthorisationRecord]:
        """Authorisations on one patient's DMP, or of one professional, or all."""
        sql, params = "SELECT record FROM authorisations WHERE 1 = 1", list[object]()
        if patient is not None:
            sql, params = sql + " AND patient = ?", [*params, patient]
        if professional_id is not None:
            sql, params = sql + " AND professional_id = ?", [*params, professional_id]
        rows = self._rows(sql + " ORDER BY patient, professional_id", params)
        return [AuthorisationRecord.model_validate_json(str(r[0])) for r in rows]

    def put_authorisation(self, authorisation: AuthorisationRecord) -> None:
        """Add or replace an authorisation."""
        self._write(
            "INSERT OR REPLACE INTO authorisations (patient, professional_id, record) VALUES (?, ?, ?)",
            (authorisation.patient, authorisation.professional_id, authorisation.model_dump_json()),
        )

    def remove_authorisation(self, patient: str, professional_id: str) -> bool:
        """Remove an authorisation; False when there was none."""
        with self.transaction():
            cursor = self._db.execute(
                "DELETE FROM authorisations WHERE patient = ? AND professional_id = ?", (patient, professional_id)
            )
            return cursor.rowcount > 0

    # --- registry: submission sets --------------------------------------------------------------

    def add_submission_set(self, stored: StoredSubmissionSet) -> None:
        """Register a submission set (its entryUUID and uniqueId must be new)."""
        ss = stored.submission_set
        self._write(
            "INSERT INTO submission_sets (entry_uuid, unique_id, patient, submitter, recorded, record) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                ss.entry_uuid,
                ss.unique_id,
                patient_key(ss.patient_id),
                stored.submitter,
                _iso(stored.recorded),
                stored.model_dump_json(),
            ),
        )

    def submission_set(
        self, *, entry_uuid: str | None = None, unique_id: str | None = None
    ) -> StoredSubmissionSet | None:
        """A submission set by entryUUID or uniqueId."""
        column, value = ("entry_uuid", entry_uuid) if entry_uuid is not None else ("unique_id", unique_id)
        rows = self._rows(f"SELECT record FROM submission_sets WHERE {column} = ?", (value,))  # noqa: S608
        return StoredSubmissionSet.model_validate_json(str(rows[0][0])) if rows else None

    def submission_sets(self, patient: str) -> list[StoredSubmissionSet]:
        """A patient's submission sets, oldest first."""
        rows = self._rows("SELECT record FROM submission_sets WHERE patient = ? ORDER BY recorded, rowid", (patient,))
        return [StoredSubmissionSet.model_validate_json(str(r[0])) for r in rows]

    # --- registry: document entries -------------------------------------------------------------

    def add_entry(self, stored: StoredEntry) -> None:
        """Register a document entry version (its entryUUID must be new)."""
        entry = stored.entry
        self._write(
            "INSERT INTO entries (entry_uuid, unique_id, logical_id, patient, status, submitter, recorded, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.entry_uuid,
                entry.unique_id,
                entry.logical_id or entry.entry_uuid,
                patient_key(entry.patient_id),
                str(entry.availability_status or ""),
                stored.submitter,
                _iso(stored.recorded),
                stored.model_dump_json(),
            ),
        )

    def replace_entry(self, stored: StoredEntry) -> None:
        """Rewrite an entry already registered (a status change)."""
        entry = stored.entry
        self._write(
            "UPDATE entries SET status = ?, record = ? WHERE entry_uuid = ?",
            (str(entry.availability_status or ""), stored.model_dump_json(), entry.entry_uuid),
        )

    def entry(self, entry_uuid: str) -> StoredEntry | None:
        """A document entry version by entryUUID."""
        rows = self._rows("SELECT record FROM entries WHERE entry_uuid = ?", (entry_uuid,))
        return StoredEntry.model_validate_json(str(rows[0][0])) if rows else None

    def entries(
        self, *, patient: str | None = None, unique_id: str | None = None, logical_id: str | None = None
    ) -> list[StoredEntry]:
        """Document entry versions filtered by patient, uniqueId or logical id, in registration order."""
        sql, params = "SELECT record FROM entries WHERE 1 = 1", list[object]()
        for column, value in (("patient", patient), ("unique_id", unique_id), ("logical_id", logical_id)):
            if value is not None:
                sql, params = f"{sql} AND {column} = ?", [*params, value]
        rows = self._rows(sql + " ORDER BY recorded, rowid", params)
        return [StoredEntry.model_validate_json(str(r[0])) for r in rows]

    def entry_count(self, patient: str | None = None) -> int:
        """How many document entry versions there are (for one patient, or in all)."""
        if patient is None:
            rows = self._rows("SELECT COUNT(*) FROM entries")
        else:
            rows = self._rows("SELECT COUNT(*) FROM entries WHERE patient = ?", (patient,))
        return int(str(rows[0][0]))

    # --- registry: associations -----------------------------------------------------------------

    def add_association(self, association: Association) -> None:
        """Register an association (its entryUUID must be new)."""
        self._write(
            "INSERT INTO associations (entry_uuid, source, target, record) VALUES (?, ?, ?, ?)",
            (
                association.entry_uuid,
                association.source_object,
                association.target_object,
                association.model_dump_json(),
            ),
        )

    def associations(self, touching: Iterable[str]) -> list[Association]:
        """The associations whose source or target is one of ``touching``, in registration order."""
        ids = sorted(set(touching))
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = self._rows(
            f"SELECT record FROM associations WHERE source IN ({marks}) OR target IN ({marks}) ORDER BY rowid",  # noqa: S608
            [*ids, *ids],
        )
        return [Association.model_validate_json(str(r[0])) for r in rows]

    # --- repository -----------------------------------------------------------------------------

    def put_content(self, unique_id: str, data: bytes, *, mime_type: str, sha1: str | None = None) -> StoredContent:
        """Keep a document's bytes under its uniqueId; the bytes of a uniqueId never change once kept.

        ``sha1``: the SHA-1 (hex) of ``data`` when the caller computed it already (the simulator, which
        checked the submitted hash against it), so that a large document is not hashed twice.
        """
        if sha1 is None:
            sha1 = hashlib.sha1(data).hexdigest()  # noqa: S324 - the XDS hash slot is SHA-1 by definition
        self._write(
            "INSERT OR IGNORE INTO contents (unique_id, mime_type, sha1, size, data) VALUES (?, ?, ?, ?, ?)",
            (unique_id, mime_type, sha1, len(data), data),
        )
        return StoredContent(unique_id, mime_type, sha1, len(data), data)

    def content(self, unique_id: str) -> StoredContent | None:
        """A document's bytes by uniqueId, or None."""
        rows = self._rows("SELECT mime_type, sha1, size, data FROM contents WHERE unique_id = ?", (unique_id,))
        if not rows:
            return None
        mime_type, sha1, size, data = rows[0]
        return StoredContent(unique_id, str(mime_type), str(sha1), int(str(size)), bytes(data))

    def content_count(self) -> int:
        """How many documents the repository holds."""
        return int(str(self._rows("SELECT COUNT(*) FROM contents")[0][0]))

    # --- housekeeping ---------------------------------------------------------------------------

    def dump(self) -> dict[str, int]:
        """Row counts per table, for tests and the CLI."""
        tables = (
            "patients",
            "professionals",
            "authorisations",
            "submission_sets",
            "entries",
            "associations",
            "contents",
        )
        return {table: int(str(self._rows(f"SELECT COUNT(*) FROM {table}")[0][0])) for table in tables}  # noqa: S608
