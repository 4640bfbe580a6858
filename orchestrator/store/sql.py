"""SQL for the call store, built without I/O: statements and their parameters for SQLite and PostgreSQL.

Every value travels as a parameter (``?`` for SQLite, ``$n`` for PostgreSQL); the text of a statement is made only
of this module's constants. A record is kept whole (its JSON) next to the columns the API filters on
(:data:`COLUMNS`); pages are keyset pages over ``(started_at, id)``, newest first, with an opaque cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Dialect(StrEnum):
    """The two databases the store speaks to."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class Statement:
    """One statement and its parameters."""

    text: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Many:
    """One statement run once per row (``executemany``)."""

    text: str
    rows: tuple[tuple[Any, ...], ...]


class InvalidCursor(ValueError):
    """A cursor this store did not hand out (or one that was altered)."""


def render(dialect: Dialect, text: str) -> str:
    """``text`` with its ``?`` placeholders as the dialect writes them (``$1``, ``$2`` … for PostgreSQL)."""
    if dialect is Dialect.SQLITE:
        return text
    parts = text.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))


def statement(dialect: Dialect, text: str, *params: Any) -> Statement:
    """A :class:`Statement` in the dialect's placeholders."""
    return Statement(render(dialect, text), params)


# -- records -------------------------------------------------------------------------------------
#: the indexed columns beside the record's JSON (``from``/``to`` are SQL words: the columns say what they hold)
COLUMNS = (
    "id",
    "started_at",
    "ended_at",
    "direction",
    "trunk",
    "from_number",
    "to_number",
    "agent",
    "result",
    "sip_status",
    "node",
)
_TEXT_LIMIT = 256  # a column value is for filtering; the record keeps the whole value


def _clean(value: Any) -> Any:
    """``value`` as both databases store JSON: no NaN or infinity (JSON has none), no NUL (PostgreSQL refuses it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {str(k).replace("\x00", "\ufffd"): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def encode(record: dict[str, Any]) -> str:
    """The record's JSON text, as stored (and as the spool and the export write it)."""
    try:
        text = json.dumps(record, sort_keys=True, allow_nan=False, default=str)
    except ValueError:  # NaN or infinity somewhere
        return json.dumps(_clean(record), sort_keys=True, default=str)
    return json.dumps(_clean(record), sort_keys=True, default=str) if "\\u0000" in text else text


def _text(value: Any) -> str | None:
    return value[:_TEXT_LIMIT] if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def columns(record: dict[str, Any], now: float) -> tuple[Any, ...]:
    """The indexed columns of a record (:data:`COLUMNS`, in order); ``now`` stands in for a missing start time."""
    timings = record.get("timings") if isinstance(record.get("timings"), dict) else {}
    hangup = record.get("hangup") if isinstance(record.get("hangup"), dict) else {}
    assert isinstance(timings, dict) and isinstance(hangup, dict)
    ended = _number(timings.get("ended"))
    started = _number(timings.get("created"))
    if started is None:
        started = ended if ended is not None else now
    status = hangup.get("sip_status")
    record_id = record.get("id")
    if not isinstance(record_id, str) or not 0 < len(record_id) <= _TEXT_LIMIT:
        raise ValueError("a record needs an id (text of 1 to 256 characters)")
    return (
        record_id,
        started,
        ended,
        _text(record.get("direction")),
        _text(record.get("trunk")),
        _text(record.get("from")),
        _text(record.get("to")),
        _text(record.get("agent")),
        _text(record.get("result")),
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        _text(record.get("node")),
    )


def upsert(dialect: Dialect, records: Iterable[dict[str, Any]], now: float) -> Many:
    """Insert or replace records by id: writing a record twice (a replay, two orchestrators) keeps one row."""
    names = (*COLUMNS, "record", "stored_at")
    json_value = "?" if dialect is Dialect.SQLITE else "?::jsonb"
    values = ", ".join(["?"] * len(COLUMNS) + [json_value, "?"])
    updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
    text = f"INSERT INTO records ({', '.join(names)}) VALUES ({values}) ON CONFLICT (id) DO UPDATE SET {updates}"
    rows = tuple((*columns(r, now), encode(r), now) for r in records)
    return Many(render(dialect, text), rows)


@dataclass(frozen=True)
class Filters:
    """What a listing keeps: start time in ``[since, until)`` (epoch seconds), and exact values."""

    since: float | None = None
    until: float | None = None
    direction: str | None = None
    trunk: str | None = None
    number: str | None = None  # the caller or the callee
    agent: str | None = None
    result: str | None = None
    sip_status: int | None = None


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last record's start time and id."""

    started_at: float
    id: str


def encode_cursor(cursor: Cursor) -> str:
    """An opaque cursor (URL-safe base64 of the position)."""
    raw = json.dumps([cursor.started_at, cursor.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The position in a cursor from :func:`encode_cursor`; :class:`InvalidCursor` for anything else."""
    if not text or len(text) > 512:
        raise InvalidCursor("the cursor is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("the cursor is not one this API handed out") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or isinstance(value[0], bool)
        or not isinstance(value[0], (int, float))
        or not math.isfinite(value[0])
        or not isinstance(value[1], str)
        or not 0 < len(value[1]) <= 256
    ):
        raise InvalidCursor("the cursor is not one this API handed out")
    return Cursor(float(value[0]), value[1])


def _where(filters: Filters, after: Cursor | None, ascending: bool) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if filters.since is not None:
        clauses.append("started_at >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("started_at < ?")
        params.append(filters.until)
    for name in ("direction", "trunk", "agent", "result", "sip_status"):
        value = getattr(filters, name)
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value)
    if filters.number is not None:
        clauses.append("(from_number = ? OR to_number = ?)")
        params += [filters.number, filters.number]
    if after is not None:
        clauses.append(f"(started_at, id) {'>' if ascending else '<'} (?, ?)")
        params += [after.started_at, after.id]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def select(
    dialect: Dialect, filters: Filters, *, after: Cursor | None = None, limit: int = 50, ascending: bool = False
) -> Statement:
    """One page of records (one more than ``limit``, to know whether another page follows): rows of
    ``(started_at, id, record)``, newest first (oldest first with ``ascending``)."""
    where, params = _where(filters, after, ascending)
    order = "ASC" if ascending else "DESC"
    text = f"SELECT started_at, id, record FROM records{where} ORDER BY started_at {order}, id {order} LIMIT ?"
    return statement(dialect, text, *params, limit + 1)


def get(dialect: Dialect, record_id: str) -> Statement:
    """The record with this id: zero or one row of ``(started_at, id, record)``."""
    return statement(dialect, "SELECT started_at, id, record FROM records WHERE id = ?", record_id)


def delete_before(dialect: Dialect, cutoff: float, limit: int = 1000) -> Statement:
    """Delete up to ``limit`` records that started before ``cutoff`` (retention works in bounded steps)."""
    text = "DELETE FROM records WHERE id IN (SELECT id FROM records WHERE started_at < ? ORDER BY started_at LIMIT ?)"
    return statement(dialect, text, cutoff, limit)


def decode(value: Any) -> dict[str, Any]:
    """A stored record's JSON (text from SQLite, text of ``jsonb`` from asyncpg) as a dict."""
    record = json.loads(value) if isinstance(value, (str, bytes)) else value
    if not isinstance(record, dict):
        raise ValueError("a stored record is not a JSON object")
    return record


@dataclass(frozen=True)
class Page:
    """Records of one page and the cursor of the next (None on the last page)."""

    records: list[dict[str, Any]]
    next_cursor: str | None


def page(rows: Sequence[Sequence[Any]], limit: int) -> Page:
    """The page :func:`select` rows make: at most ``limit`` records, and a cursor when more rows were there."""
    kept = rows[:limit]
    more = len(rows) > limit and bool(kept)
    nxt = encode_cursor(Cursor(float(kept[-1][0]), str(kept[-1][1]))) if more else None
    return Page([decode(r[2]) for r in kept], nxt)
