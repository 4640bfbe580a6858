"""The PostgreSQL backend: asyncpg, a small pool opened on first use and healed on every reconnection.

Several orchestrators may share one database: records are upserted by id, migrations run under an advisory lock
(each applied once), retention deletes in bounded steps. The URL's password (from ``${ENV}`` in the deployment file,
or ``PGPASSWORD``, which asyncpg reads like libpq) is never logged: :attr:`PostgresBackend.name` leaves it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from orchestrator.store import migrations as schema
from orchestrator.store.backend import StoreRejected, StoreUnavailable
from orchestrator.store.migrations import MIGRATIONS, Migration, SchemaTooNew
from orchestrator.store.sql import Dialect, Many, Statement

#: errors about the data itself (SQLSTATE classes 22, 23, 54) and values asyncpg cannot encode
_REJECTED = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,
    asyncpg.exceptions._base.DataError,
)


def display(url: str) -> str:
    """The URL without its password and parameters: ``postgresql://user@host:port/db``."""
    scheme, _, rest = url.partition("://")
    location = rest.split("?", 1)[0]
    netloc, slash, database = location.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user + '@' if at else ''}{hosts}{slash}{database}"


class PostgresBackend:
    """A call store in a PostgreSQL database."""

    dialect = Dialect.POSTGRES

    def __init__(
        self, url: str, *, connect_timeout: float = 5.0, command_timeout: float = 15.0, max_connections: int = 4
    ) -> None:
        self._url = url
        self.name = display(url)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.max_connections = max_connections
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def _get_pool(self) -> Any:
        async with self._opening:
            if self._pool is None:
                # min_size 0: nothing connects until used, so a database that is down at start delays nothing
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=0,
                    max_size=self.max_connections,
                    timeout=self.connect_timeout,
                    command_timeout=self.command_timeout,
                    max_inactive_connection_lifetime=60.0,
                )
            return self._pool

    def _failure(self, exc: BaseException) -> Exception:
        if isinstance(exc, _REJECTED):
            return StoreRejected(f"{self.name}: {type(exc).__name__}: {str(exc)[:500]}")
        if isinstance(exc, ValueError):  # the URL or a setting, as asyncpg read it: its text may quote the URL
            return StoreUnavailable(f"{self.name}: asyncpg refused the URL or its parameters ({type(exc).__name__})")
        text = str(exc).replace(self._url, self.name)[:500]
        return StoreUnavailable(f"{self.name}: {type(exc).__name__}" + (f": {text}" if text else ""))

    async def _with(self, fn: Any) -> Any:
        try:
            pool = await self._get_pool()
            async with pool.acquire(timeout=self.connect_timeout) as conn:
                return await fn(conn)
        except (SchemaTooNew, StoreRejected, StoreUnavailable):
            raise
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ValueError) as exc:
            raise self._failure(exc) from None

    async def migrate(self, now: float, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
        """Apply the missing migrations in one transaction under an advisory lock."""

        async def body(conn: Any) -> tuple[int, int]:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", schema.PG_LOCK_KEY)
                await conn.execute(schema.BOOTSTRAP[Dialect.POSTGRES])
                before = await conn.fetchval(schema.CURRENT) or 0
                for item in schema.plan(Dialect.POSTGRES, before, now, migrations):
                    await conn.execute(item.text, *item.params)
                after = await conn.fetchval(schema.CURRENT) or 0
            return int(before), int(after)

        result: tuple[int, int] = await self._with(body)
        return result

    async def schema_version(self) -> int | None:
        """The highest applied migration, None without a ``schema_version`` table."""

        async def body(conn: Any) -> int | None:
            if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
                return None
            value = await conn.fetchval(schema.CURRENT)
            return int(value) if value is not None else None

        version: int | None = await self._with(body)
        return version

    async def run(self, items: Sequence[Statement | Many]) -> list[int]:
        """Run ``items`` in one transaction."""

        async def body(conn: Any) -> list[int]:
            counts: list[int] = []
            async with conn.transaction():
                for item in items:
                    if isinstance(item, Many):
                        await conn.executemany(item.text, item.rows)
                        counts.append(len(item.rows))
                    else:
                        status = await conn.execute(item.text, *item.params)
                        tail = status.rsplit(" ", 1)[-1]
                        counts.append(int(tail) if tail.isdigit() else 0)
            return counts

        counts: list[int] = await self._with(body)
        return counts

    async def fetch(self, item: Statement) -> list[tuple[Any, ...]]:
        """The rows of a query."""

        async def body(conn: Any) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in await conn.fetch(item.text, *item.params)]

        rows: list[tuple[Any, ...]] = await self._with(body)
        return rows

    async def close(self) -> None:
        """Close the pool (bounded: connections that do not close in time are terminated)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.connect_timeout)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()
