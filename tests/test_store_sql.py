"""The call store's sans-I/O parts: SQL building, cursors, record columns, migrations' plan, schedules, and what
``orchestrator.records`` accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from store_support import T0, record

from orchestrator.config import check_text
from orchestrator.config.model import records_kind
from orchestrator.store import migrations, sql, target
from orchestrator.store.postgres import display
from orchestrator.store.schedule import retention_cutoff, retry_delay
from orchestrator.store.sql import Cursor, Dialect, Filters, InvalidCursor


def test_placeholders_per_dialect() -> None:
    s = sql.select(Dialect.POSTGRES, Filters(trunk="carrier", number="+1555"), limit=10)
    assert "trunk = $1" in s.text and "(from_number = $2 OR to_number = $3)" in s.text and "LIMIT $4" in s.text
    assert s.params == ("carrier", "+1555", "+1555", 11)  # one more than a page: is there a next one?
    lite = sql.select(Dialect.SQLITE, Filters(trunk="carrier"), limit=10)
    assert "trunk = ?" in lite.text and "$" not in lite.text


def test_every_value_is_a_parameter_never_text() -> None:
    hostile = "x'; DROP TABLE records; --"
    f = Filters(direction=hostile, trunk=hostile, number=hostile, agent=hostile, result=hostile, since=1.0, until=2.0)
    s = sql.select(Dialect.SQLITE, f, after=Cursor(1.5, hostile))
    assert hostile not in s.text and s.params.count(hostile) == 7
    assert hostile not in sql.get(Dialect.POSTGRES, hostile).text


def test_keyset_order_and_direction() -> None:
    down = sql.select(Dialect.SQLITE, Filters(), after=Cursor(5.0, "b"))
    assert "(started_at, id) < (?, ?)" in down.text and down.text.endswith("ORDER BY started_at DESC, id DESC LIMIT ?")
    up = sql.select(Dialect.SQLITE, Filters(), after=Cursor(5.0, "b"), ascending=True)
    assert "(started_at, id) > (?, ?)" in up.text and "ASC" in up.text


def test_cursor_round_trip_and_refusals() -> None:
    c = Cursor(1700000000.123456, "00000000-0000-4000-8000-000000000001")
    assert sql.decode_cursor(sql.encode_cursor(c)) == c
    for bad in ("", "!!!", "a" * 600, "bnVsbA", "WzEsMl0", "WyJ4IiwiYSJd", "W251bGwsImEiXQ", "WzEuMCwiIl0"):
        with pytest.raises(InvalidCursor):
            sql.decode_cursor(bad)


def test_page_hands_out_a_cursor_only_when_more_follow() -> None:
    rows = [(float(10 - i), f"id{i}", json.dumps({"id": f"id{i}"})) for i in range(4)]
    full = sql.page(rows, 3)
    assert [r["id"] for r in full.records] == ["id0", "id1", "id2"]
    assert full.next_cursor is not None and sql.decode_cursor(full.next_cursor) == Cursor(8.0, "id2")
    assert sql.page(rows[:3], 3).next_cursor is None


def test_columns_of_a_record() -> None:
    r = record(5)
    assert sql.columns(r, now=0) == (
        r["id"], r["timings"]["created"], r["timings"]["ended"], "inbound", "carrier", "+15550000005", "+15550000001",
        "support", "busy", 486, "fs1",
    )  # fmt: skip
    # a call refused before it was ever created still gets a start time; odd values are not indexed
    odd = {"id": "x", "timings": {"created": None, "ended": 12.5}, "hangup": {"sip_status": "486"}, "trunk": 7}
    assert sql.columns(odd, now=99.0)[1:3] == (12.5, 12.5) and sql.columns(odd, now=1)[4] is None
    assert sql.columns({"id": "y"}, now=99.0)[1] == 99.0 and sql.columns(odd, now=0)[9] is None
    with pytest.raises(ValueError, match="id"):
        sql.columns({"id": None}, now=0)


def test_encoding_keeps_json_valid_for_both_databases() -> None:
    assert json.loads(sql.encode({"id": "a", "mos": float("inf"), "t": "a\x00b"})) == {
        "id": "a",
        "mos": None,
        "t": "a\ufffdb",
    }
    literal = {"id": "a", "t": "\\u0000 stays as written"}  # a backslash, not a NUL
    assert json.loads(sql.encode(literal)) == literal


def test_upsert_statement() -> None:
    many = sql.upsert(Dialect.POSTGRES, [record(1), record(2)], now=T0)
    assert many.text.startswith("INSERT INTO records (id, started_at") and "ON CONFLICT (id) DO UPDATE" in many.text
    assert "$12::jsonb" in many.text and len(many.rows) == 2 and many.rows[0][-1] == T0
    assert json.loads(many.rows[0][-2]) == record(1)


def test_retention_statement_is_bounded() -> None:
    s = sql.delete_before(Dialect.POSTGRES, 123.0, limit=500)
    assert "started_at < $1" in s.text and "LIMIT $2" in s.text and s.params == (123.0, 500)


def test_migration_plan() -> None:
    first = migrations.plan(Dialect.SQLITE, None, now=T0)
    assert first[0].text.startswith("CREATE TABLE records")
    bookkeeping = [s.params for s in first if s.text.startswith("INSERT INTO schema_version")]
    assert bookkeeping == [(1, "records", T0), (2, "webhook_outbox", T0)]
    assert migrations.plan(Dialect.SQLITE, 1, now=T0)[0].text.startswith("CREATE TABLE webhook_outbox")
    assert migrations.plan(Dialect.POSTGRES, migrations.LATEST, now=T0) == []
    with pytest.raises(migrations.SchemaTooNew, match="upgrade sipagent"):
        migrations.pending(migrations.LATEST + 1)
    with pytest.raises(ValueError, match=r"1\.\.n"):
        migrations.check([migrations.MIGRATIONS[0], migrations.MIGRATIONS[0]])
    assert "JSONB" in migrations.MIGRATIONS[0].postgres[0] and "JSONB" not in migrations.MIGRATIONS[0].sqlite[0]


def test_retry_schedule_and_retention_cutoff() -> None:
    delays = [retry_delay(n, 0.5, initial=1, maximum=60) for n in range(1, 10)]
    assert delays[:4] == [1, 2, 4, 8] and max(delays) == 60
    assert retry_delay(1, 0.0) == pytest.approx(0.8) and retry_delay(1, 0.999) == pytest.approx(1.2, abs=0.01)
    assert retry_delay(10_000, 0.5) == 60
    assert retention_cutoff(T0, 30) == T0 - 30 * 86400


# -- orchestrator.records -------------------------------------------------------------------------

BASE = """
freeswitch:
  bind_ip: 127.0.0.1
  event_socket: {password: secretpw}
orchestrator:
  records: "%s"
"""


def records_errors(value: str, env: dict[str, str] | None = None) -> list[str]:
    result = check_text(BASE % value, "d.yaml", env or {}, Path("/srv/sipagent"))
    return [d.message for d in result.errors if d.dotted_path == "orchestrator.records"]


@pytest.mark.parametrize(
    "value",
    [
        "calls.jsonl",
        "/data/calls.jsonl",
        "calls.db",
        "/var/lib/sipagent/calls.sqlite",
        "postgresql://sipagent@db.example/calls",
        "postgres://sipagent:${PGPASS}@10.0.0.5:5433/calls?sslmode=verify-full&application_name=site-a",
        "postgresql://u@[2001:db8::1]:5432/calls",
        "postgresql://u@db1:5432,db2:5432/calls?target_session_attrs=read-write",
    ],
)
def test_records_values_accepted(value: str) -> None:
    assert records_errors(value, {"PGPASS": "s3cr3t-Passw0rd"}) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("postgresql://u:hunter2pass@/calls", "needs a host"),
        ("postgresql://u:hunter2pass@db.example", "needs a database name"),
        ("postgresql://u:hunter2pass@db.example/", "needs a database name"),
        ("postgresql://u:hunter2pass@db.example:99999/calls", "needs a host"),
        ("postgresql://u:hunter2pass@db_example/calls", "needs a host"),
        ("postgresql://u@db.example/calls?password=hunter2pass", "PGPASSWORD"),
        ("postgresql://u@db.example/calls?options=-c%20x", "unknown PostgreSQL URL parameter"),
        ("postgresql://u@db.example/calls?sslmode=hunter2pass", "sslmode must be one of"),
        ("postgresql://u:hunter2pass@db.example/calls#x", "#fragment"),
        ("postgresql://u:hunter 2pass@db.example/calls", "blanks"),
        ("mysql://u:hunter2pass@db.example/calls", "postgresql://"),
    ],
)
def test_records_values_refused_without_echoing_the_password(value: str, message: str) -> None:
    errors = records_errors(value)
    assert len(errors) == 1 and message in errors[0], errors
    assert "hunter" not in errors[0]


def test_records_kinds_and_targets() -> None:
    assert [records_kind(v) for v in ("a.jsonl", "A.JSONL", "a.db", "postgres://u@h/d")] == [
        "jsonl",
        "jsonl",
        "sqlite",
        "postgres",
    ]
    base = Path("/srv/sipagent")
    t = target("calls.db", base)
    assert t.kind == "sqlite" and t.location == "/srv/sipagent/calls.db"
    assert t.spool == Path("/srv/sipagent/calls.db.spool.jsonl")
    pg = target("postgresql://u:pw-secret@db:5432/calls?sslmode=require", base)
    assert pg.name == "postgresql://u@db:5432/calls" and pg.spool == Path("/srv/sipagent/records.spool.jsonl")
    assert display("postgres://db/calls") == "postgres://db/calls"
    assert target("calls.jsonl", base).spool is None
