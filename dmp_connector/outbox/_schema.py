"""The queue's tables (SQLAlchemy Core) and the SDK's own migrations (Alembic operations).

Why not an ``alembic.ini`` and a scripts folder: the schema belongs to the SDK, not to the vendor's
project, and must be brought up to date by the SDK itself on any database it is pointed at, from
one host or many at once. Each migration is a function of Alembic's :class:`~alembic.operations.Operations`
(portable DDL for SQLite and PostgreSQL); the version reached is one row of ``dmp_outbox_version``.
On PostgreSQL the migration holds an advisory lock, so that hosts starting together migrate once.
Times are seconds since the epoch (``float``): the same on every database, ordered, no time zones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import (
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

__all__ = ["SCHEMA_VERSION", "attempts", "items", "metadata", "migrate", "schema_version", "version"]

metadata = MetaData()

items = Table(
    "dmp_outbox_items",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key", String(200), nullable=True, unique=True),
    Column("state", String(16), nullable=False),
    Column("reason", String(40), nullable=True),
    Column("detail", String(400), nullable=True),
    Column("document", LargeBinary, nullable=True),
    Column("patient", Text, nullable=True),
    Column("patient_pseudonym", String(64), nullable=False),
    Column("replaces", String(200), nullable=True),
    Column("submission_time", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("due_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_until", Float, nullable=True),
    Column("claim_token", String(32), nullable=True),
    Column("worker", String(100), nullable=True),
    Column("document_unique_id", String(200), nullable=True),
    Column("entry_uuid", String(100), nullable=True),
    Column("already_deposited", Integer, nullable=True),
    Index("dmp_outbox_items_due", "state", "due_at"),
)
"""One row per document to deposit. ``document`` and ``patient`` (the identity, JSON) are what the
worker needs; they are cleared once the item is deposited or cancelled (``purge``)."""

attempts = Table(
    "dmp_outbox_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(32), ForeignKey("dmp_outbox_items.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("seconds", Float, nullable=True),
    Column("worker", String(100), nullable=True),
    Column("outcome", String(24), nullable=False),
    Column("code", String(100), nullable=True),
    Column("detail", String(400), nullable=True),
    Column("next_due", Float, nullable=True),
)
"""An item's history: every attempt and every hand-made change, with its outcome (never an identity)."""

version = Table("dmp_outbox_version", metadata, Column("version", Integer, nullable=False))


def _v1(ops: Operations) -> None:
    """The first schema: items, attempts. Spelled out, never derived from the tables above: a migration
    stays what it was when it shipped; later ones alter the tables (``ops.add_column`` …)."""
    ops.create_table(
        "dmp_outbox_items",
        Column("id", String(32), primary_key=True),
        Column("key", String(200), nullable=True, unique=True),
        Column("state", String(16), nullable=False),
        Column("reason", String(40), nullable=True),
        Column("detail", String(400), nullable=True),
        Column("document", LargeBinary, nullable=True),
        Column("patient", Text, nullable=True),
        Column("patient_pseudonym", String(64), nullable=False),
        Column("replaces", String(200), nullable=True),
        Column("submission_time", Float, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Column("due_at", Float, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("lease_until", Float, nullable=True),
        Column("claim_token", String(32), nullable=True),
        Column("worker", String(100), nullable=True),
        Column("document_unique_id", String(200), nullable=True),
        Column("entry_uuid", String(100), nullable=True),
        Column("already_deposited", Integer, nullable=True),
    )
    ops.create_index("dmp_outbox_items_due", "dmp_outbox_items", ["state", "due_at"])
    ops.create_table(
        "dmp_outbox_attempts",
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("item_id", String(32), ForeignKey("dmp_outbox_items.id", ondelete="CASCADE"), nullable=False),
        Column("at", Float, nullable=False),
        Column("seconds", Float, nullable=True),
        Column("worker", String(100), nullable=True),
        Column("outcome", String(24), nullable=False),
        Column("code", String(100), nullable=True),
        Column("detail", String(400), nullable=True),
        Column("next_due", Float, nullable=True),
    )
    ops.create_index("ix_dmp_outbox_attempts_item_id", "dmp_outbox_attempts", ["item_id"])


MIGRATIONS: Final[tuple[Callable[[Operations], None], ...]] = (_v1,)
"""Migration ``n`` (1-based) brings the schema from version ``n - 1`` to ``n``; only ever appended to."""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The version this SDK writes and reads."""


def schema_version(connection: Connection) -> int:
    """The version the database is at (0: no queue yet)."""
    if not inspect(connection).has_table(version.name):
        return 0
    found = connection.execute(select(version.c.version)).scalar()
    return int(found or 0)


def migrate(connection: Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` inside the caller's transaction; the version reached.

    A database newer than this SDK is refused (an older SDK must not write rows it does not understand).
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(2207202601)"))
    current = schema_version(connection)
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the outbox schema is at version {current}, newer than this SDK's {SCHEMA_VERSION}: upgrade dmp-connector"
        )
    if current == SCHEMA_VERSION:
        return current
    ops = Operations(MigrationContext.configure(connection))
    if current == 0:
        ops.create_table(version.name, Column("version", Integer, nullable=False))
        connection.execute(version.insert().values(version=0))
    for number in range(current + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[number - 1](ops)
        connection.execute(version.update().values(version=number))
    return SCHEMA_VERSION
