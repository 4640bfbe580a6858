"""The call store against SQLite and a real PostgreSQL: the same behaviour from both (migrations, writes, filters,
pages, outage and replay, retention, two orchestrators on one database)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from store_support import DAY, STORE_GROUP, T0, backend_kind, outage, pg, record, target, until

from orchestrator import store
from orchestrator.store import Filters, SchemaTooNew, Store, StoreWriter, Target
from orchestrator.store.migrations import LATEST, MIGRATIONS, Migration
from orchestrator.store.sql import Statement

pytestmark = STORE_GROUP
__all__ = ["backend_kind", "pg", "target"]  # fixtures

NEXT = Migration(
    LATEST + 1,
    "next",
    sqlite=("CREATE TABLE next_table (id INTEGER PRIMARY KEY, record_id TEXT NOT NULL REFERENCES records (id))",),
    postgres=("CREATE TABLE next_table (id BIGSERIAL PRIMARY KEY, record_id TEXT NOT NULL REFERENCES records (id))",),
)


def open_store(t: Target, clock: Any = time.time) -> Store:
    options = {"busy_timeout": 0.2} if t.kind == "sqlite" else {"connect_timeout": 2.0}
    return Store(store.backend(t, **options), clock=clock)


def make_writer(t: Target, s: Store | None = None, **kw: Any) -> StoreWriter:
    assert t.spool is not None
    opts: dict[str, Any] = {"batch_size": 5, "linger": 0.01, "retry_initial": 0.05, "retry_maximum": 0.2}
    return StoreWriter(s or open_store(t), t.spool, **(opts | kw))


async def tables(s: Store) -> set[str]:
    if s.dialect == "sqlite":
        rows = await s.db.fetch(Statement("SELECT name FROM sqlite_master WHERE type = 'table'"))
    else:
        rows = await s.db.fetch(Statement("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    return {r[0] for r in rows}


async def all_ids(s: Store) -> list[str]:
    return [r[0] for r in await s.db.fetch(Statement("SELECT id FROM records ORDER BY id"))]


# -- migrations -----------------------------------------------------------------------------------


async def test_migrations_from_empty_and_again(target: Target) -> None:
    s = open_store(target)
    try:
        assert await s.db.schema_version() is None
        assert await s.open() == (0, LATEST)
        assert {"schema_version", "records"} <= await tables(s)
        rows = await s.db.fetch(Statement("SELECT version, name FROM schema_version ORDER BY version"))
        assert rows == [(m.version, m.name) for m in MIGRATIONS]
        assert await s.open() == (LATEST, LATEST)  # idempotent: nothing runs twice
        assert await s.db.schema_version() == LATEST
    finally:
        await s.close()


async def test_migration_from_version_1_to_current_keeps_the_records(target: Target) -> None:
    s = open_store(target)
    try:
        assert await s.db.migrate(T0, MIGRATIONS[:1]) == (0, 1)
        await s.put([record(1)])
        assert await s.open() == (1, LATEST)  # the shipped migrations from version 1 (2: the webhook outbox)
        assert "webhook_outbox" in await tables(s)
        # and a next migration applies on top, once, keeping what is there
        assert await s.db.migrate(T0, (*MIGRATIONS, NEXT)) == (LATEST, LATEST + 1)
        assert await s.db.migrate(T0, (*MIGRATIONS, NEXT)) == (LATEST + 1, LATEST + 1)
        assert "next_table" in await tables(s)
        assert await s.get(record(1)["id"]) == record(1)
        # a database newer than this program is refused, not written to blindly
        with pytest.raises(SchemaTooNew, match=f"version {LATEST + 1}"):
            await s.open()
    finally:
        await s.close()


async def test_two_orchestrators_migrating_at_once_apply_each_migration_once(target: Target) -> None:
    a, b = open_store(target), open_store(target)
    if target.kind == "sqlite":  # the second waits for the first's write lock
        a.db.busy_timeout = b.db.busy_timeout = 5.0  # type: ignore[attr-defined]
    try:
        both = (*MIGRATIONS, NEXT)
        results = await asyncio.gather(a.db.migrate(T0, both), b.db.migrate(T0, both))
        assert sorted(results) == [(0, LATEST + 1), (LATEST + 1, LATEST + 1)]
        rows = await a.db.fetch(Statement("SELECT version FROM schema_version ORDER BY version"))
        assert rows == [(v,) for v in range(1, LATEST + 2)]
    finally:
        await a.close()
        await b.close()


# -- write, read, filter, page ---------------------------------------------------------------------


async def test_write_read_and_filter(target: Target) -> None:
    s = open_store(target)
    try:
        await s.open()
        records = [record(n) for n in range(1, 21)]
        assert await s.put(records) == 20
        assert await s.get(records[3]["id"]) == records[3]  # the whole record comes back as written
        assert await s.get("no-such-call") is None

        async def ids(**filters: Any) -> set[str]:
            page = await s.page(Filters(**filters), limit=500)
            return {r["id"] for r in page.records}

        def where(pred: Any) -> set[str]:
            return {r["id"] for r in records if pred(r)}

        assert await ids() == where(lambda r: True)
        assert await ids(direction="inbound") == where(lambda r: r["direction"] == "inbound")
        assert await ids(trunk="backup") == where(lambda r: r["trunk"] == "backup")
        assert await ids(agent="sales") == where(lambda r: r["agent"] == "sales")
        assert await ids(result="busy") == where(lambda r: r["result"] == "busy")
        assert await ids(sip_status=486) == where(lambda r: r["hangup"]["sip_status"] == 486)
        assert await ids(number="+15550000003") == where(lambda r: r["from"] == "+15550000003")
        assert await ids(number="+15550000001") == where(lambda r: True)  # the callee of every call
        since, until_ = T0 + 5 * 60, T0 + 10 * 60
        assert await ids(since=since, until=until_) == where(lambda r: since <= r["timings"]["created"] < until_)
        assert await ids(direction="outbound", trunk="backup", result="completed") == where(
            lambda r: r["direction"] == "outbound" and r["trunk"] == "backup" and r["result"] == "completed"
        )
        assert await ids(trunk="nope") == set()
        # upsert: the same id again replaces the record, it does not add one
        await s.put([record(4, result="transferred")])
        assert (await s.get(records[3]["id"]) or {})["result"] == "transferred"
        assert len(await all_ids(s)) == 20
    finally:
        await s.close()


async def test_pages_newest_first_and_stable_under_concurrent_inserts(target: Target) -> None:
    s = open_store(target)
    try:
        await s.open()
        original = [record(n) for n in range(1, 26)]
        original.append(record(26, started=T0 + 10 * 60))  # same start time as record 10: the id breaks the tie
        await s.put(original)
        first = await s.page(Filters(), limit=10)
        assert len(first.records) == 10 and first.next_cursor
        # while a client pages, calls end: newer ones, and a long call that started long ago
        await s.put([record(n) for n in range(100, 110)] + [record(200, started=T0 - DAY)])
        seen = [r["id"] for r in first.records]
        cursor = first.next_cursor
        while cursor:
            page = await s.page(Filters(), cursor=cursor, limit=10)
            seen += [r["id"] for r in page.records]
            cursor = page.next_cursor
        expected = sorted(original, key=lambda r: (r["timings"]["created"], r["id"]), reverse=True)
        kept = [i for i in seen if i in {r["id"] for r in original}]
        assert kept == [r["id"] for r in expected]  # each once, in order: none skipped, none repeated
        assert len(seen) == len(set(seen))
        assert not {record(n)["id"] for n in range(100, 110)} & set(seen)  # newer than the first page: not in it
        assert seen[-1] == record(200)["id"]  # older than the cursor: on a later page
        with pytest.raises(store.InvalidCursor):
            await s.page(Filters(), cursor="not-a-cursor")
    finally:
        await s.close()


# -- the writer: batches, outage, replay ----------------------------------------------------------


async def test_writer_batches_records_into_the_store(target: Target) -> None:
    w = make_writer(target)
    w.start()
    for n in range(1, 13):
        w.write(record(n))
    await w.close()
    s = open_store(target)
    try:
        assert await all_ids(s) == sorted(record(n)["id"] for n in range(1, 13))
        assert w.written == 12 and w.spooled == 0 and w.dropped == 0
    finally:
        await s.close()


async def test_outage_spools_records_and_replays_them_in_order(target: Target, request: pytest.FixtureRequest) -> None:
    ticks = itertools.count(1)
    s = open_store(target, clock=lambda: T0 + next(ticks))  # each write a later stored_at: the order they went in
    w = make_writer(target, s)
    w.start()
    try:
        for n in range(1, 11):
            w.write(record(n))
        await until(lambda: w.written == 10, what="the first records")
        async with outage(target, request):
            started = time.perf_counter()
            for n in range(11, 41):
                w.write(record(n))  # the call path: never waits on the database
                if n % 10 == 0:
                    await asyncio.sleep(0.05)
            assert time.perf_counter() - started < 1.0
            await until(lambda: w.spooled == 30, what="records spooled")
            assert not w.healthy
            assert target.spool is not None and stat.S_IMODE(os.stat(target.spool).st_mode) == 0o600
            spooled = [json.loads(line)["id"] for line in target.spool.read_text().splitlines()]
            assert spooled == [record(n)["id"] for n in range(11, 41)]  # in the order they came
            await asyncio.sleep(0.3)  # retries fail meanwhile
        await until(lambda: w.healthy and w.replayed == 30, timeout=15, what="the replay")
        for n in range(41, 46):
            w.write(record(n))
    finally:
        await w.close()
    s2 = open_store(target)
    try:
        assert await all_ids(s2) == sorted(record(n)["id"] for n in range(1, 46))  # none lost, none twice
        rows = await s2.db.fetch(Statement("SELECT id, stored_at FROM records"))
        order = [i for i, _ in sorted(rows, key=lambda r: (r[1], r[0]))]
        assert order == [record(n)["id"] for n in range(1, 46)]  # replayed in order, then the new ones
        assert target.spool.read_text() == ""
        assert w.dropped == 0 and w.rejected == 0
    finally:
        await s2.close()


async def test_a_spool_left_by_a_previous_run_is_replayed_at_start_without_duplicates(target: Target) -> None:
    s = open_store(target)
    await s.open()
    await s.put([record(1), record(2)])
    await s.close()
    assert target.spool is not None
    # a crash after records 1 and 2 were stored but before the spool was emptied, and a torn last line
    lines = [json.dumps(record(n)) for n in (1, 2, 3, 4)]
    target.spool.write_text("\n".join(lines) + "\n" + '{"id": "torn-', encoding="utf-8")
    w = make_writer(target)
    w.start()
    w.write(record(5))
    await w.close()
    s = open_store(target)
    try:
        assert await all_ids(s) == sorted(record(n)["id"] for n in range(1, 6))
        # record 5 came while the spool was replayed: it went behind it, so it was replayed too (in order)
        assert w.replayed == 5 and target.spool.read_text() == ""
    finally:
        await s.close()


async def test_a_record_the_store_refuses_is_kept_aside_and_holds_up_nothing(target: Target) -> None:
    w = make_writer(target)
    w.start()
    bad = record(2)
    bad["id"] = None  # nothing to key it by
    w.write(record(1))
    w.write(bad)
    w.write(record(3, media={"text": "nul\x00 and nan", "mos": float("nan")}))  # what JSONB and JSON refuse
    await w.close()
    s = open_store(target)
    try:
        assert await all_ids(s) == sorted([record(1)["id"], record(3)["id"]])
        assert w.rejected == 1 and w.spooled == 0
        assert target.spool is not None
        kept_aside = Path(str(target.spool).removesuffix(".jsonl") + ".rejected.jsonl")
        assert [json.loads(line)["id"] for line in kept_aside.read_text().splitlines()] == [None]
        kept = await s.get(record(3)["id"])
        assert kept is not None and kept["media"] == {"text": "nul\ufffd and nan", "mos": None}
    finally:
        await s.close()


# -- retention ----------------------------------------------------------------------------------------


async def test_retention_deletes_only_older_records(target: Target) -> None:
    now = T0 + 100 * DAY
    s = open_store(target, clock=lambda: now)
    await s.open()
    ages = {1: 40, 2: 31, 3: 30.5, 4: 29.9, 5: 1, 6: 0}
    await s.put([record(n, started=now - days * DAY) for n, days in ages.items()])
    w = make_writer(target, s, retention_days=30)
    assert await w.apply_retention() == 3
    assert await all_ids(s) == sorted(record(n)["id"] for n in (4, 5, 6))
    assert await w.apply_retention() == 0
    await s.close()


async def test_retention_runs_in_the_background(target: Target) -> None:
    now = T0 + 100 * DAY
    s = open_store(target, clock=lambda: now)
    await s.open()
    await s.put([record(1, started=now - 10 * DAY), record(2, started=now - 2 * DAY)])
    w = make_writer(target, s, retention_days=7, retention_interval=0.05)
    w.start()
    try:
        await until(lambda: w.deleted == 1, what="the retention round")
        assert await all_ids(s) == [record(2)["id"]]
    finally:
        await w.close()


# -- several orchestrators --------------------------------------------------------------------------


async def test_two_writers_into_one_database_do_not_conflict(target: Target, tmp_path: Path) -> None:
    first = make_writer(target, batch_size=20)
    second_target = Target(target.kind, target.location, tmp_path / "second.spool.jsonl")
    second_store = open_store(target)
    if target.kind == "sqlite":
        second_store.db.busy_timeout = first.store.db.busy_timeout = 5.0  # type: ignore[attr-defined]
    second = make_writer(second_target, second_store, batch_size=20)
    first.start()
    second.start()
    for n in range(200):
        first.write(record(n))
        second.write(record(n + 150, node="fs2"))  # 150..199 written by both (active/standby seeing the same call)
        if n % 50 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(first.close(), second.close())
    s = open_store(target)
    try:
        assert len(await all_ids(s)) == 350
        assert first.rejected == second.rejected == 0 and first.spooled == second.spooled == 0
    finally:
        await s.close()
