"""The call store: records in SQLite or PostgreSQL behind one async API (put, page, get, export, retention)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestrator.config.model import records_kind
from orchestrator.store import sql
from orchestrator.store.backend import Backend, StoreRejected
from orchestrator.store.sql import Filters, Page

#: most records one page may hold (the API's ``limit``)
MAX_PAGE = 500


@dataclass(frozen=True)
class Target:
    """Where ``orchestrator.records`` sends records: a JSONL file, an SQLite file, or a PostgreSQL URL."""

    kind: Literal["jsonl", "postgres", "sqlite"]
    location: str  # an absolute path, or the URL (which may hold a password: show :attr:`name`)
    #: where records wait while the database is unreachable (beside the SQLite file; for PostgreSQL, beside the
    #: deployment file); None for JSONL
    spool: Path | None = None

    @property
    def name(self) -> str:
        """What logs and errors may show."""
        if self.kind == "postgres":
            from orchestrator.store.postgres import display

            return display(self.location)
        return self.location


def target(value: str, base_dir: Path) -> Target:
    """The target ``orchestrator.records`` names (files relative to the deployment file's directory)."""
    kind = records_kind(value)
    if kind == "postgres":
        return Target(kind, value, (base_dir / "records.spool.jsonl").resolve())
    path = (base_dir / value).resolve()
    return Target(kind, str(path), None if kind == "jsonl" else path.with_name(path.name + ".spool.jsonl"))


def backend(t: Target, **options: Any) -> Backend:
    """The backend for a database target (asyncpg is imported only for PostgreSQL)."""
    if t.kind == "sqlite":
        from orchestrator.store.sqlite import SqliteBackend

        return SqliteBackend(Path(t.location), **options)
    if t.kind == "postgres":
        from orchestrator.store.postgres import PostgresBackend

        return PostgresBackend(t.location, **options)
    raise ValueError("a JSONL file is not a database")


class Store:
    """Call records in a database: upserted by id, listed newest first by keyset pages, deleted by age."""

    def __init__(self, db: Backend, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.dialect = db.dialect

    @property
    def name(self) -> str:
        """The database, as logs show it."""
        return self.db.name

    async def open(self) -> tuple[int, int]:
        """Run the migrations; returns (schema version before, after)."""
        return await self.db.migrate(self.clock())

    async def put(self, records: Iterable[dict[str, Any]]) -> int:
        """Store records (one transaction); a record already there (same id) is replaced."""
        try:
            batch = sql.upsert(self.dialect, records, self.clock())
        except ValueError as exc:
            raise StoreRejected(f"{self.name}: {exc}") from None
        if not batch.rows:
            return 0
        await self.db.run([batch])
        return len(batch.rows)

    async def page(self, filters: Filters, cursor: str | None = None, limit: int = 50) -> Page:
        """One page of records, newest first; ``cursor`` from the previous page (:class:`sql.InvalidCursor`)."""
        limit = max(1, min(limit, MAX_PAGE))
        after = sql.decode_cursor(cursor) if cursor is not None else None
        rows = await self.db.fetch(sql.select(self.dialect, filters, after=after, limit=limit))
        return sql.page(rows, limit)

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """The record with this id, or None."""
        rows = await self.db.fetch(sql.get(self.dialect, record_id))
        return sql.decode(rows[0][2]) if rows else None

    async def export(self, filters: Filters, chunk: int = MAX_PAGE) -> AsyncIterator[dict[str, Any]]:
        """Every record the filters keep, oldest first, read a page at a time."""
        after: sql.Cursor | None = None
        while True:
            rows = await self.db.fetch(sql.select(self.dialect, filters, after=after, limit=chunk, ascending=True))
            for row in rows[:chunk]:
                yield sql.decode(row[2])
            if len(rows) <= chunk:
                return
            last = rows[chunk - 1]
            after = sql.Cursor(float(last[0]), str(last[1]))

    async def delete_before(self, cutoff: float, step: int = 1000) -> int:
        """Delete the records that started before ``cutoff``, ``step`` at a time; how many went."""
        total = 0
        while True:
            (count,) = await self.db.run([sql.delete_before(self.dialect, cutoff, step)])
            total += count
            if count < step:
                return total

    async def close(self) -> None:
        """Close the database."""
        await self.db.close()
