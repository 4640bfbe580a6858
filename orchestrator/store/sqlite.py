"""The SQLite backend: the standard library's ``sqlite3``, run in one dedicated thread off the event loop.

The database is one file (mode 0600, in WAL mode so that readers never wait for the writer); every call goes to
the same worker thread, which owns the one connection, so the event loop never waits on the disk. A locked, full
or unwritable database is :class:`~orchestrator.store.backend.StoreUnavailable` (the writer spools meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.store import migrations as schema
from orchestrator.store.backend import StoreRejected, StoreUnavailable
from orchestrator.store.migrations import MIGRATIONS, Migration
from orchestrator.store.sql import Dialect, Many, Statement

T = TypeVar("T")


class SqliteBackend:
    """A call store in an SQLite file."""

    dialect = Dialect.SQLITE

    def __init__(self, path: Path, *, busy_timeout: float = 2.0, create: bool = True) -> None:
        self.path = path
        self.name = f"SQLite {path}"
        self.busy_timeout = busy_timeout
        self.create = create
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sipagent-sqlite")
        self._conn: sqlite3.Connection | None = None  # used only in the executor's thread

    # -- the async interface --------------------------------------------------------------------
    async def migrate(self, now: float, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
        """Apply the missing migrations in one ``BEGIN IMMEDIATE`` transaction."""
        return await self._call(self._migrate, now, migrations)

    async def schema_version(self) -> int | None:
        """The highest applied migration, None without a ``schema_version`` table."""
        return await self._call(self._version)

    async def run(self, items: Sequence[Statement | Many]) -> list[int]:
        """Run ``items`` in one transaction."""
        return await self._call(self._run, items)

    async def fetch(self, item: Statement) -> list[tuple[Any, ...]]:
        """The rows of a query."""
        return await self._call(self._fetch, item)

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        finally:
            self._executor.shutdown(wait=False)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(self._guarded, fn, *args))
        except RuntimeError as exc:  # the executor was shut down
            raise StoreUnavailable(f"{self.name}: closed") from exc

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError, sqlite3.InterfaceError) as exc:
            raise StoreRejected(f"{self.name}: {exc}") from None
        except (sqlite3.Error, OSError) as exc:  # locked, busy, read-only, full, I/O error, cannot open
            self._close()
            raise StoreUnavailable(f"{self.name}: {exc}") from None

    # -- in the thread --------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.exists():
                if not self.create:
                    raise StoreUnavailable(f"{self.name}: no such database file")
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # call records are personal data
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            try:
                # WAL is a property of the file: a connection that finds it locked (another process is setting
                # it up right now) goes on without setting it again
                with contextlib.suppress(sqlite3.OperationalError):
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if conn.in_transaction:
                    conn.rollback()
            except sqlite3.Error:
                pass
            conn.close()

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")  # the write lock now (waits up to busy_timeout), not halfway through
        try:
            out = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return out

    def _migrate(self, now: float, migrations: Sequence[Migration]) -> tuple[int, int]:
        def body(conn: sqlite3.Connection) -> tuple[int, int]:
            conn.execute(schema.BOOTSTRAP[Dialect.SQLITE])
            before = conn.execute(schema.CURRENT).fetchone()[0] or 0
            for item in schema.plan(Dialect.SQLITE, before, now, migrations):
                conn.execute(item.text, item.params)
            return before, conn.execute(schema.CURRENT).fetchone()[0] or 0

        return self._transaction(body)

    def _version(self) -> int | None:
        conn = self._connection()
        found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        if found.fetchone() is None:
            return None
        value = conn.execute(schema.CURRENT).fetchone()[0]
        return int(value) if value is not None else None

    def _run(self, items: Sequence[Statement | Many]) -> list[int]:
        def body(conn: sqlite3.Connection) -> list[int]:
            counts = []
            for item in items:
                if isinstance(item, Many):
                    counts.append(conn.executemany(item.text, item.rows).rowcount)
                else:
                    counts.append(conn.execute(item.text, item.params).rowcount)
            return counts

        return self._transaction(body)

    def _fetch(self, item: Statement) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._connection().execute(item.text, item.params).fetchall()]
