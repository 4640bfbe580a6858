"""The store's schema, as numbered forward-only migrations (no I/O here: the backends run them).

``schema_version`` holds one row per applied migration. At start the backend takes a lock (PostgreSQL: an
advisory lock; SQLite: ``BEGIN IMMEDIATE``), reads the highest version, and applies the missing migrations in
order, each with its row in ``schema_version``, all in one transaction: two orchestrators starting together on one
database apply each migration once, and a failure leaves the schema as it was. Running it again changes nothing.
A database newer than this program (another orchestrator was upgraded first) is refused: :class:`SchemaTooNew`.

To add a table (as migration 2 added the webhook outbox), append a :class:`Migration` with the next
version and its statements for both dialects; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.store import outbox
from orchestrator.store.sql import Dialect, Statement, statement


class SchemaTooNew(Exception):
    """The database's schema is newer than the migrations this program knows."""


@dataclass(frozen=True)
class Migration:
    """One step of the schema: its version, a name, and its statements per dialect."""

    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        """The statements for ``dialect``."""
        return self.sqlite if dialect is Dialect.SQLITE else self.postgres


def _indexes() -> tuple[str, ...]:
    """The records table's indexes: the listing order, and each filter with the start time after it."""
    out = [
        "CREATE INDEX records_started ON records (started_at, id)",
        "CREATE INDEX records_ended ON records (ended_at)",
    ]
    for column in ("trunk", "agent", "from_number", "to_number", "result", "sip_status", "direction", "node"):
        out.append(f"CREATE INDEX records_{column} ON records ({column}, started_at)")
    return tuple(out)


def _records(real: str, json_type: str) -> str:
    return f"""CREATE TABLE records (
    id TEXT PRIMARY KEY,
    started_at {real} NOT NULL,
    ended_at {real},
    direction TEXT,
    trunk TEXT,
    from_number TEXT,
    to_number TEXT,
    agent TEXT,
    result TEXT,
    sip_status INTEGER,
    node TEXT,
    record {json_type} NOT NULL,
    stored_at {real} NOT NULL
)"""


#: every migration, in order (versions 1, 2, 3 … without gaps)
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records",
        sqlite=(_records("REAL", "TEXT"), *_indexes()),
        postgres=(_records("DOUBLE PRECISION", "JSONB"), *_indexes()),
    ),
    Migration(
        2,
        "webhook_outbox",
        sqlite=outbox.migration(Dialect.SQLITE),
        postgres=outbox.migration(Dialect.POSTGRES),
    ),
)

#: the schema version this program writes
LATEST = MIGRATIONS[-1].version

#: the bookkeeping table, made before anything else (idempotent)
BOOTSTRAP = {
    Dialect.SQLITE: "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)",
    Dialect.POSTGRES: "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)",
}
#: the schema's version (NULL on an empty database)
CURRENT = "SELECT MAX(version) FROM schema_version"
#: the key of PostgreSQL's advisory lock held while migrating ("sipagent" in ASCII, as a 64-bit integer)
PG_LOCK_KEY = int.from_bytes(b"sipagent", "big") & 0x7FFF_FFFF_FFFF_FFFF


def check(migrations: Sequence[Migration]) -> None:
    """Versions must run 1, 2, 3 … (a gap or a repeat is a programming error)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1..n in order, got {versions}")


def pending(current: int | None, migrations: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
    """The migrations a database at ``current`` (None: empty) still needs, in order."""
    check(migrations)
    have = current or 0
    latest = migrations[-1].version if migrations else 0
    if have > latest:
        raise SchemaTooNew(
            f"the store's schema is version {have}, this sipagent knows up to {latest}: upgrade sipagent "
            "(migrations only go forward)"
        )
    return [m for m in migrations if m.version > have]


def plan(
    dialect: Dialect, current: int | None, now: float, migrations: Sequence[Migration] = MIGRATIONS
) -> list[Statement]:
    """Every statement that brings a database at ``current`` to the latest version, with its bookkeeping rows."""
    out: list[Statement] = []
    for m in pending(current, migrations):
        out += [Statement(text) for text in m.statements(dialect)]
        out.append(
            statement(
                dialect,
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                m.version,
                m.name,
                now,
            )
        )
    return out
