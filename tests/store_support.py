"""What the call store's tests share: a backend fixture (SQLite, and a real PostgreSQL), records, outages.

Import the fixtures into a test module (``from store_support import backend_kind, pg, target``) and mark it with
``pytestmark = STORE_GROUP`` so that one xdist worker runs every PostgreSQL test (one cluster per module).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pg_cluster
import pytest

from orchestrator.store import Target

STORE_GROUP = pytest.mark.xdist_group("call-store")
DAY = 86_400.0
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def record(n: int, **over: Any) -> dict[str, Any]:
    """A call record as calls.records.build makes it (the fields the store indexes, and some others)."""
    started = over.pop("started", T0 + n * 60)
    base: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "node": "fs1",
        "direction": "inbound" if n % 2 else "outbound",
        "from": f"+1555000{n % 7:04d}",
        "to": "+15550000001",
        "trunk": "carrier" if n % 3 else "backup",
        "agent": "support" if n % 4 else "sales",
        "result": "completed" if n % 5 else "busy",
        "hangup": {"cause": "NORMAL_CLEARING", "sip_status": 200 if n % 5 else 486},
        "timings": {"created": started, "answered": started + 2, "ended": started + 30},
        "media": {"transcript": [{"role": "agent", "text": f"hello {n} — ünïcode"}]},
        "lost": False,
    }
    base.update(over)
    return base


@pytest.fixture(scope="module")
def pg() -> Iterator[pg_cluster.Cluster]:
    cluster = pg_cluster.start()
    if isinstance(cluster, str):
        pytest.skip(f"PostgreSQL tests skipped: {cluster}")
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(params=["sqlite", "postgres"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
async def target(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Target:
    """An empty database of the parametrized kind."""
    if backend_kind == "sqlite":
        db = tmp_path / "calls.db"
        return Target("sqlite", str(db), tmp_path / "calls.db.spool.jsonl")
    cluster: pg_cluster.Cluster = request.getfixturevalue("pg")
    name = await cluster.new_database()
    return Target("postgres", cluster.url(name), tmp_path / "records.spool.jsonl")


@contextlib.asynccontextmanager
async def outage(t: Target, request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """The database cannot be written meanwhile: PostgreSQL stopped, or SQLite locked by another process's
    exclusive transaction (as root, file modes would not stop the writer)."""
    if t.kind == "postgres":
        cluster: pg_cluster.Cluster = request.getfixturevalue("pg")
        await asyncio.to_thread(cluster.stop)
        try:
            yield
        finally:
            await asyncio.to_thread(cluster.start)
    else:
        holder = sqlite3.connect(t.location, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()


async def until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Wait for ``predicate()`` (polled)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
