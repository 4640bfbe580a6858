"""The call store: records in SQLite or PostgreSQL behind one async API (put, page, get, export, retention)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestrator.config.model import records_kind
from orchestrator.store import outbox, sql
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

    async def put(self, items: Iterable[dict[str, Any] | outbox.Entry]) -> int:
        """Store records and webhook deliveries (one transaction); a record already there (same id) is replaced, a
        delivery already there is kept as it is."""
        records: list[dict[str, Any]] = []
        entries: list[outbox.Entry] = []
        for item in items:
            (entries if isinstance(item, outbox.Entry) else records).append(item)  # type: ignore[arg-type]
        now = self.clock()
        try:
            batches = [sql.upsert(self.dialect, records, now)] if records else []
        except ValueError as exc:
            raise StoreRejected(f"{self.name}: {exc}") from None
        if entries:
            batches.append(outbox.insert(self.dialect, entries))
        if not batches:
            return 0
        await self.db.run(batches)
        return len(records) + len(entries)

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

    # -- the webhook outbox (orchestrator.webhooks drives it; store/outbox.py has the SQL) -----------
    async def due_deliveries(
        self, endpoint: str, owner: str, lease_seconds: float, limit: int, busy: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` deliveries of ``endpoint`` to attempt now, leased to ``owner`` (heads of their call only)."""
        now = self.clock()
        rows = await self.db.fetch(outbox.due(self.dialect, endpoint, now, limit, busy))
        if not rows:
            return []
        until = now + lease_seconds
        claimed = await self.db.run([outbox.claim(self.dialect, int(r[0]), owner, now, until) for r in rows])
        return [dict(zip(outbox.DUE_COLUMNS, r, strict=True)) for r, got in zip(rows, claimed, strict=True) if got]

    async def next_delivery_at(self, endpoint: str) -> float | None:
        """When the endpoint's next pending delivery is due (epoch seconds), None when none is pending."""
        rows = await self.db.fetch(outbox.next_due(self.dialect, endpoint))
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def delivery_done(self, n: int, owner: str, attempts: int, http_status: int) -> bool:
        """Delivery ``n`` succeeded; False when its lease was no longer ours."""
        (count,) = await self.db.run([outbox.delivered(self.dialect, n, owner, attempts, http_status, self.clock())])
        return count == 1

    async def delivery_failed(
        self, n: int, owner: str, attempts: int, http_status: int | None, error: str, next_at: float | None
    ) -> bool:
        """Delivery ``n`` failed: due again at ``next_at``, or dead-lettered (None)."""
        st = outbox.failed(self.dialect, n, owner, attempts, http_status, error, self.clock(), next_at)
        (count,) = await self.db.run([st])
        return count == 1

    async def release_delivery(self, n: int, owner: str) -> None:
        """Give back the lease of delivery ``n`` (its attempt did not happen or was cut short by a stop)."""
        await self.db.run([outbox.release(self.dialect, n, owner)])

    async def retry_delivery(self, delivery: str) -> bool:
        """Put a dead-lettered delivery back in line; False when there is no such dead delivery."""
        (count,) = await self.db.run([outbox.retry(self.dialect, delivery, self.clock())])
        return count == 1

    async def deliveries(
        self, filters: outbox.DeliveryFilters, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of deliveries, newest first, and the cursor of the next page."""
        limit = max(1, min(limit, MAX_PAGE))
        after = outbox.decode_cursor(cursor) if cursor is not None else None
        rows = await self.db.fetch(outbox.listing(self.dialect, filters, after, limit))
        kept = rows[:limit]
        nxt = outbox.encode_cursor(int(kept[-1][0])) if len(rows) > limit and kept else None
        return [outbox.row_dict(r) for r in kept], nxt

    async def delivery(self, delivery: str) -> dict[str, Any] | None:
        """One delivery with its event, or None."""
        rows = await self.db.fetch(outbox.one(self.dialect, delivery))
        return outbox.row_dict(rows[0]) if rows else None

    async def delivery_counts(self) -> dict[tuple[str, str], int]:
        """Deliveries per (endpoint, status)."""
        return {(str(e), str(s)): int(c) for e, s, c in await self.db.fetch(outbox.counts(self.dialect))}

    async def purge_deliveries(self, cutoff: float, step: int = 1000) -> int:
        """Delete delivered and dead deliveries last changed before ``cutoff``; how many went."""
        total = 0
        while True:
            (count,) = await self.db.run([outbox.purge(self.dialect, cutoff, step)])
            total += count
            if count < step:
                return total

    async def close(self) -> None:
        """Close the database."""
        await self.db.close()
