"""The call store: call records in SQLite (one file, nothing to set up) or PostgreSQL (shared by orchestrators).

:func:`target` reads ``orchestrator.records``; :func:`writer` makes the background writer ``sipagent run`` feeds
(:mod:`~orchestrator.store.writer`: batched, spooled while the database is away, retention); :func:`open_store`
the :class:`~orchestrator.store.store.Store` the API and ``sipagent records export`` read. The SQL is built without
I/O in :mod:`~orchestrator.store.sql` and :mod:`~orchestrator.store.migrations`; :mod:`~orchestrator.store.sqlite`
and :mod:`~orchestrator.store.postgres` run it. See docs/operations.md.
"""

from __future__ import annotations

from typing import Any

from orchestrator.store.backend import StoreError, StoreRejected, StoreUnavailable
from orchestrator.store.migrations import SchemaTooNew
from orchestrator.store.outbox import DeliveryFilters, Entry
from orchestrator.store.sql import Filters, InvalidCursor, Page
from orchestrator.store.store import MAX_PAGE, Store, Target, backend, target
from orchestrator.store.writer import StoreWriter

__all__ = [
    "MAX_PAGE",
    "DeliveryFilters",
    "Entry",
    "Filters",
    "InvalidCursor",
    "Page",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "StoreWriter",
    "Target",
    "open_store",
    "target",
    "writer",
]


def open_store(t: Target, **options: Any) -> Store:
    """A :class:`Store` over the database ``t`` names (nothing connects until it is used)."""
    return Store(backend(t, **options))


def writer(
    t: Target, *, retention_days: int | None = None, backend_options: dict[str, Any] | None = None, **options: Any
) -> StoreWriter:
    """The background writer of records into ``t`` (spooling beside it), with its store for reads."""
    assert t.spool is not None, "a JSONL target has no store writer"
    return StoreWriter(open_store(t, **(backend_options or {})), t.spool, retention_days=retention_days, **options)
