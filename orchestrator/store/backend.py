"""What every store backend offers (one async interface over SQLite and PostgreSQL), and how it fails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from orchestrator.store.migrations import MIGRATIONS, Migration
from orchestrator.store.sql import Dialect, Many, Statement


class StoreError(Exception):
    """The call store could not do what was asked (the message names the store, never a password)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or written right now (down, locked, full, read-only): try again later."""


class StoreRejected(StoreError):
    """The database refused the data itself (trying again will not help)."""


class Backend(Protocol):
    """A database the store runs statements on. Every method may raise :class:`StoreUnavailable`,
    :class:`StoreRejected` or :class:`~orchestrator.store.migrations.SchemaTooNew`."""

    dialect: Dialect
    #: what logs and errors call it: the file, or ``postgresql://user@host:port/db`` (never the password)
    name: str

    async def migrate(self, now: float, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[int, int]:
        """Bring the schema to the latest version (under a lock); returns (version before, version after)."""
        ...

    async def schema_version(self) -> int | None:
        """The schema's version; None when the database has no schema yet."""
        ...

    async def run(self, items: Sequence[Statement | Many]) -> list[int]:
        """Run ``items`` in one transaction; the rows each touched."""
        ...

    async def fetch(self, item: Statement) -> list[tuple[Any, ...]]:
        """The rows of a query."""
        ...

    async def close(self) -> None:
        """Close the connection(s)."""
        ...
