"""SQL of the webhook outbox, built without I/O (the table is migration 2; :mod:`orchestrator.webhooks` drives it).

One row per (event, endpoint): a *delivery*. Rows are numbered in insertion order (``n``), which is the order
the events were made in, so one call's events on one endpoint go out in order: only the *head* of each
``ordering`` key (the call, or the trunk) — its oldest pending row — may be attempted, and the next waits until it
is delivered or dead-lettered. A row is attempted by whoever holds its lease (``lease_owner`` until
``lease_until``): orchestrators sharing one PostgreSQL never send the same delivery at once, and a lease a
crashed process left runs out, so its deliveries are taken up again (at least once). Statuses: ``pending``
(waiting or being attempted), ``delivered``, ``dead`` (gave up after ``max_attempts``).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.store.sql import Dialect, InvalidCursor, Many, Statement, render, statement

Status = Literal["pending", "delivered", "dead"]
STATUSES: tuple[Status, ...] = ("pending", "delivered", "dead")
_ERROR_LIMIT = 300
#: deliveries get stable ids: the same event for the same endpoint is the same delivery (a replay inserts nothing)
_NAMESPACE = uuid.UUID("5b1d2f3e-7a4c-4f0e-9d8b-6c2a1e0f9b7d")


def _table(dialect: Dialect) -> str:
    real = "REAL" if dialect is Dialect.SQLITE else "DOUBLE PRECISION"
    n = (
        "INTEGER PRIMARY KEY AUTOINCREMENT"
        if dialect is Dialect.SQLITE
        else "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    )
    return f"""CREATE TABLE webhook_outbox (
    n {n},
    id TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    call_id TEXT,
    ordering TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at {real} NOT NULL,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    lease_owner TEXT,
    lease_until {real},
    last_status INTEGER,
    last_error TEXT,
    delivered_at {real},
    UNIQUE (endpoint, event_id)
)"""


def migration(dialect: Dialect) -> tuple[str, ...]:
    """The statements of migration 2 (the outbox and its indexes) for ``dialect``."""
    return (
        _table(dialect),
        "CREATE INDEX webhook_outbox_due ON webhook_outbox (endpoint, status, next_at)",
        "CREATE INDEX webhook_outbox_order ON webhook_outbox (endpoint, ordering, status, n)",
        "CREATE INDEX webhook_outbox_call ON webhook_outbox (call_id)",
        "CREATE INDEX webhook_outbox_updated ON webhook_outbox (status, updated_at)",
    )


def delivery_id(event_id: str, endpoint: str) -> str:
    """The delivery's id: the same for the same event and endpoint, whoever computes it."""
    return str(uuid.uuid5(_NAMESPACE, f"{endpoint}\n{event_id}"))


@dataclass(frozen=True)
class Entry:
    """A delivery to add: one event for one endpoint."""

    endpoint: str
    event_id: str
    event_type: str
    call_id: str | None
    ordering: str
    body: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """The entry as the writer's spool keeps it."""
        return {
            "endpoint": self.endpoint,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "call_id": self.call_id,
            "ordering": self.ordering,
            "body": self.body,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        """An entry read back from the spool (``ValueError`` when it is not one)."""
        try:
            entry = cls(
                str(d["endpoint"]),
                str(d["event_id"]),
                str(d["event_type"]),
                None if d.get("call_id") is None else str(d["call_id"]),
                str(d["ordering"]),
                str(d["body"]),
                float(d["created_at"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError("not an outbox entry") from None
        return entry


def insert(dialect: Dialect, entries: Iterable[Entry]) -> Many:
    """Add deliveries, due at once; one already there (a replay) is left as it is."""
    text = (
        "INSERT INTO webhook_outbox (id, endpoint, event_id, event_type, call_id, ordering, body, status, attempts, "
        "next_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) "
        "ON CONFLICT (id) DO NOTHING"
    )
    rows = tuple(
        (delivery_id(e.event_id, e.endpoint), e.endpoint, e.event_id, e.event_type, e.call_id, e.ordering, e.body,
         e.created_at, e.created_at, e.created_at)
        for e in entries
    )  # fmt: skip
    return Many(render(dialect, text), rows)


#: the columns :func:`due` returns, in order
DUE_COLUMNS = ("n", "id", "event_id", "event_type", "call_id", "ordering", "body", "attempts")


def due(dialect: Dialect, endpoint: str, now: float, limit: int, busy: Sequence[str] = ()) -> Statement:
    """Up to ``limit`` deliveries of ``endpoint`` that may be attempted now: heads of their ordering key (no older
    pending row of the same key), due, not leased by anyone (or the lease ran out), key not in ``busy``."""
    skip = ""
    if busy:
        skip = f" AND o.ordering NOT IN ({', '.join('?' * len(busy))})"
    text = (
        f"SELECT {', '.join('o.' + c for c in DUE_COLUMNS)} FROM webhook_outbox o "
        "WHERE o.endpoint = ? AND o.status = 'pending' AND o.next_at <= ? "
        "AND (o.lease_until IS NULL OR o.lease_until < ?)" + skip + " AND NOT EXISTS (SELECT 1 FROM webhook_outbox p "
        "WHERE p.endpoint = o.endpoint AND p.ordering = o.ordering AND p.status = 'pending' AND p.n < o.n) "
        "ORDER BY o.n LIMIT ?"
    )
    return statement(dialect, text, endpoint, now, now, *busy, limit)


def next_due(dialect: Dialect, endpoint: str) -> Statement:
    """When the next head of the endpoint may be attempted (due, and its lease run out): one row, NULL when none."""
    text = (
        "SELECT MIN(CASE WHEN o.lease_until IS NOT NULL AND o.lease_until > o.next_at THEN o.lease_until "
        "ELSE o.next_at END) FROM webhook_outbox o WHERE o.endpoint = ? AND o.status = 'pending' "
        "AND NOT EXISTS (SELECT 1 FROM webhook_outbox p WHERE p.endpoint = o.endpoint AND p.ordering = o.ordering "
        "AND p.status = 'pending' AND p.n < o.n)"
    )
    return statement(dialect, text, endpoint)


def release(dialect: Dialect, n: int, owner: str) -> Statement:
    """Give back the lease of delivery ``n`` without an attempt counted (a stop in the middle of it)."""
    text = "UPDATE webhook_outbox SET lease_owner = NULL, lease_until = NULL WHERE n = ? AND lease_owner = ?"
    return statement(dialect, text, n, owner)


def claim(dialect: Dialect, n: int, owner: str, now: float, until: float) -> Statement:
    """Take the lease of delivery ``n`` (touches one row when it is ours now, none when someone was first)."""
    text = (
        "UPDATE webhook_outbox SET lease_owner = ?, lease_until = ? "
        "WHERE n = ? AND status = 'pending' AND (lease_until IS NULL OR lease_until < ?)"
    )
    return statement(dialect, text, owner, until, n, now)


def _error(text: str | None) -> str | None:
    return None if text is None else text[:_ERROR_LIMIT]


def delivered(dialect: Dialect, n: int, owner: str, attempts: int, http_status: int, now: float) -> Statement:
    """The attempt succeeded."""
    text = (
        "UPDATE webhook_outbox SET status = 'delivered', attempts = ?, last_status = ?, last_error = NULL, "
        "delivered_at = ?, updated_at = ?, lease_owner = NULL, lease_until = NULL WHERE n = ? AND lease_owner = ?"
    )
    return statement(dialect, text, attempts, http_status, now, now, n, owner)


def failed(
    dialect: Dialect,
    n: int,
    owner: str,
    attempts: int,
    http_status: int | None,
    error: str,
    now: float,
    next_at: float | None,
) -> Statement:
    """The attempt failed: try again at ``next_at``, or dead-letter the delivery (``next_at`` None)."""
    status = "pending" if next_at is not None else "dead"
    text = (
        "UPDATE webhook_outbox SET status = ?, attempts = ?, last_status = ?, last_error = ?, next_at = ?, "
        "updated_at = ?, lease_owner = NULL, lease_until = NULL WHERE n = ? AND lease_owner = ?"
    )
    return statement(dialect, text, status, attempts, http_status, _error(error), next_at or now, now, n, owner)


def retry(dialect: Dialect, delivery: str, now: float) -> Statement:
    """Put a dead-lettered delivery back in line (attempts start again); touches no row unless it is dead."""
    text = (
        "UPDATE webhook_outbox SET status = 'pending', attempts = 0, next_at = ?, updated_at = ?, "
        "lease_owner = NULL, lease_until = NULL WHERE id = ? AND status = 'dead'"
    )
    return statement(dialect, text, now, now, delivery)


def purge(dialect: Dialect, cutoff: float, limit: int = 1000) -> Statement:
    """Delete up to ``limit`` delivered or dead deliveries last changed before ``cutoff``."""
    text = (
        "DELETE FROM webhook_outbox WHERE n IN (SELECT n FROM webhook_outbox "
        "WHERE status IN ('delivered', 'dead') AND updated_at < ? ORDER BY n LIMIT ?)"
    )
    return statement(dialect, text, cutoff, limit)


def counts(dialect: Dialect) -> Statement:
    """Deliveries per endpoint and status: rows of ``(endpoint, status, count)``."""
    return statement(dialect, "SELECT endpoint, status, COUNT(*) FROM webhook_outbox GROUP BY endpoint, status")


# -- listing ---------------------------------------------------------------------------------------
#: the columns a listing shows, in order
LIST_COLUMNS = (
    "n", "id", "endpoint", "event_id", "event_type", "call_id", "status", "attempts", "next_at", "created_at",
    "updated_at", "last_status", "last_error", "delivered_at",
)  # fmt: skip


@dataclass(frozen=True)
class DeliveryFilters:
    """What a listing of deliveries keeps (exact values; None: any)."""

    endpoint: str | None = None
    status: Status | None = None
    call_id: str | None = None
    event_type: str | None = None


def encode_cursor(n: int) -> str:
    """An opaque cursor after delivery ``n``."""
    return base64.urlsafe_b64encode(json.dumps(["d", n]).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    """The position in a cursor from :func:`encode_cursor`; :class:`InvalidCursor` for anything else."""
    if not text or len(text) > 128:
        raise InvalidCursor("the cursor is empty or too long")
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("the cursor is not one this API handed out") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or value[0] != "d"
        or not isinstance(value[1], int)
        or isinstance(value[1], bool)
        or not 0 < value[1] < 2**63
    ):
        raise InvalidCursor("the cursor is not one this API handed out")
    return value[1]


def listing(
    dialect: Dialect, filters: DeliveryFilters, after: int | None, limit: int, with_body: bool = False
) -> Statement:
    """One page of deliveries, newest first (one more row than ``limit``, to know whether more follow)."""
    clauses: list[str] = []
    params: list[Any] = []
    for name in ("endpoint", "status", "call_id", "event_type"):
        value = getattr(filters, name)
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value)
    if after is not None:
        clauses.append("n < ?")
        params.append(after)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    columns = ", ".join(LIST_COLUMNS + (("body",) if with_body else ()))
    return statement(
        dialect, f"SELECT {columns} FROM webhook_outbox{where} ORDER BY n DESC LIMIT ?", *params, limit + 1
    )


def one(dialect: Dialect, delivery: str) -> Statement:
    """One delivery by id, with its body."""
    columns = ", ".join((*LIST_COLUMNS, "body"))
    return statement(dialect, f"SELECT {columns} FROM webhook_outbox WHERE id = ?", delivery)


def row_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A listing row as the API shows it (``event``: the body, parsed, when the row has it)."""
    d = dict(zip(LIST_COLUMNS, row, strict=False))
    out: dict[str, Any] = {
        "id": d["id"],
        "endpoint": d["endpoint"],
        "event_id": d["event_id"],
        "event_type": d["event_type"],
        "call_id": d["call_id"],
        "status": d["status"],
        "attempts": int(d["attempts"]),
        "next_attempt_at": float(d["next_at"]) if d["status"] == "pending" else None,
        "created_at": float(d["created_at"]),
        "updated_at": float(d["updated_at"]),
        "last_http_status": d["last_status"],
        "last_error": d["last_error"],
        "delivered_at": None if d["delivered_at"] is None else float(d["delivered_at"]),
    }
    if len(row) > len(LIST_COLUMNS):
        try:
            out["event"] = json.loads(row[len(LIST_COLUMNS)])
        except ValueError:
            out["event"] = None
    return out
