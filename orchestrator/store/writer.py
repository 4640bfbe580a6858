"""The store's writer: call records go to the database in batches from one background task, never on a call's path.

:meth:`StoreWriter.write` only appends to a bounded in-memory queue (it never waits and never raises). The task
takes up to ``batch_size`` records at a time (waiting ``linger`` seconds for a burst to gather) and upserts them in
one transaction. When the database cannot be reached or written (down, locked, full, a standby), the batch goes to
the spool — a JSONL file (mode 0600) — and so does everything after it, in arrival order, while the task retries
with a growing delay (:func:`~orchestrator.store.schedule.retry_delay`). Once the database answers, it runs the
migrations, replays the spool in order (records arriving meanwhile queue up behind it in the spool), empties it, and
writes directly again. A replay after a crash or a stop replays from the start: records are keyed by id, so a
record written twice is stored once. A record the database refuses as such (not an outage) goes to
``<spool>.rejected.jsonl`` and is logged: it cannot hold up the others. Only a queue that stays full (the disk
cannot keep up with ``queue_size`` records) drops records, each counted and logged.

With ``retention_days``, records older than that are deleted in the background (hourly; the clock is the store's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from orchestrator.store import sql
from orchestrator.store.backend import StoreError, StoreRejected
from orchestrator.store.migrations import SchemaTooNew
from orchestrator.store.outbox import Entry
from orchestrator.store.schedule import retention_cutoff, retry_delay
from orchestrator.store.store import Store

log = logging.getLogger("sipagent.records")

#: longest spool line read back (a record with a long transcript is well under this)
MAX_SPOOL_LINE = 16 * 1024 * 1024


#: what the writer stores: a call record, or a webhook delivery for the outbox
Item = dict[str, Any] | Entry


def _line(item: Item) -> str:
    """One spool line: a record's JSON, or a delivery's under ``_outbox``."""
    return sql.encode({"_outbox": item.to_dict()} if isinstance(item, Entry) else item) + "\n"


def _item(obj: dict[str, Any]) -> Item:
    """What a spool line held (``ValueError`` when it is neither a record nor a delivery)."""
    if "_outbox" in obj:
        value = obj["_outbox"]
        if not isinstance(value, dict):
            raise ValueError("not an outbox entry")
        return Entry.from_dict(value)
    if "id" not in obj:
        raise ValueError("no id")
    return obj


def _label(item: Item) -> str:
    return (
        f"webhook delivery of event {item.event_id[:64]}"
        if isinstance(item, Entry)
        else f"record {str(item.get('id'))[:64]}"
    )


class Spool:
    """Records waiting for the database, in order: a JSONL file appended by one writer task, replayed from
    :attr:`offset` (the bytes already stored), emptied when all is stored. Its methods block: call them in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = False
        self.skipped = 0  # lines that were not records (a torn write after a crash)

    @property
    def rejected_path(self) -> Path:
        """Where records the database refused are kept."""
        return self.path.with_name(self.path.name.removesuffix(".jsonl") + ".rejected.jsonl")

    def prepare(self) -> None:
        """Look at what a previous run left; end a torn last line so the next append starts a line of its own."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self.pending = False
            return
        self.pending = size > 0
        if size:
            with self.path.open("rb") as fh:
                fh.seek(size - 1)
                torn = fh.read(1) != b"\n"
            if torn:
                self._append_text(self.path, "\n")

    def append(self, records: Sequence[Item]) -> None:
        """Add records (and webhook deliveries) at the end (and to disk before returning)."""
        self._append_text(self.path, "".join(_line(r) for r in records))
        self.pending = True

    def reject(self, record: Item) -> None:
        """Keep a record the database refused."""
        self._append_text(self.rejected_path, _line(record))

    @staticmethod
    def _append_text(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            data = text.encode()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, limit: int) -> tuple[list[Item], int]:
        """Up to ``limit`` records (and deliveries) from :attr:`offset`, and the offset after them."""
        out: list[Item] = []
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return out, self.offset
        with fh:
            fh.seek(self.offset)
            end = self.offset
            while len(out) < limit:
                line = fh.readline(MAX_SPOOL_LINE + 1)
                if not line:
                    break
                if not line.endswith(b"\n") and len(line) <= MAX_SPOOL_LINE:
                    break  # still being written? (only this task appends: a torn line from a crash, ended at start)
                end += len(line)
                try:
                    out.append(_item(sql.decode(line)))
                except ValueError:
                    self.skipped += 1
            return out, end

    def clear(self) -> None:
        """Everything is stored: empty the file."""
        if self.path.exists():
            os.truncate(self.path, 0)
        self.offset = 0
        self.pending = False


class StoreWriter:
    """Writes records to a :class:`Store` in batches off the call path, spooling while the database is away."""

    def __init__(
        self,
        store: Store,
        spool: Path,
        *,
        batch_size: int = 200,
        linger: float = 0.2,
        queue_size: int = 10_000,
        retry_initial: float = 1.0,
        retry_maximum: float = 60.0,
        retention_days: int | None = None,
        retention_interval: float = 3600.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.spool = Spool(spool)
        self.batch_size = batch_size
        self.linger = linger
        self.queue_size = queue_size
        self.retry_initial, self.retry_maximum = retry_initial, retry_maximum
        self.retention_days = retention_days
        self.retention_interval = retention_interval
        self._jitter = jitter
        self._queue: deque[Item] = deque()
        #: called after webhook deliveries reached the database (the dispatchers wake up)
        self.on_outbox: Callable[[], None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        #: the database took the last batch (False until the first success: records go to the spool meanwhile)
        self.healthy = False
        #: set once the schema is migrated (what reads the store's newer tables waits for it)
        self.opened = asyncio.Event()
        self._attempt = 0
        self._retry_at = 0.0
        self.written = self.spooled = self.replayed = self.rejected = self.dropped = self.deleted = 0
        #: webhook deliveries stored, and those dropped because the queue was full
        self.outbox_written = self.outbox_dropped = 0

    # -- the call path ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer task (it runs the migrations first, then replays what a previous run spooled)."""
        self._task = asyncio.create_task(self._run(), name="call-records-store")
        if self.retention_days:
            self._retention = asyncio.create_task(self._retain(), name="call-records-retention")

    def write(self, record: dict[str, Any]) -> None:
        """Queue a record; never blocks, never raises."""
        if len(self._queue) >= self.queue_size:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "call records: the store's queue is full (%d waiting): %d record(s) dropped so far",
                    len(self._queue),
                    self.dropped,
                )
            return
        self._queue.append(record)
        self._wake.set()

    def enqueue(self, entries: Sequence[Entry]) -> None:
        """Queue webhook deliveries for the outbox, behind what is queued; never blocks, never raises."""
        room = max(0, self.queue_size - len(self._queue))
        if room < len(entries):
            self.outbox_dropped += len(entries) - room
            if self.outbox_dropped == len(entries) - room or self.outbox_dropped % 1000 == 0:
                log.error(
                    "webhooks: the store's queue is full (%d waiting): %d delivery(ies) dropped so far",
                    len(self._queue),
                    self.outbox_dropped,
                )
        if room:
            self._queue.extend(entries[:room])
            self._wake.set()

    @property
    def queued(self) -> int:
        """Records and deliveries waiting in memory."""
        return len(self._queue)

    async def close(self) -> None:
        """Write what is queued (to the database, or to the spool if it is away), then stop."""
        self._closing = True
        self._stopping.set()
        self._wake.set()
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
            self._retention = None
        if self._task is not None:
            await self._task
            self._task = None
        await self.store.close()

    # -- the task ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self.spool.prepare)
        except OSError as exc:  # an unreadable spool: what it holds waits; new records still go to the database
            log.error("call records: cannot read the spool %s: %s", self.spool.path, exc)
        await self._recover()
        while True:
            if not self._queue:
                if self._closing:
                    break
                timeout = None if self.healthy else max(0.0, self._retry_at - loop.time())
                self._wake.clear()
                if not self._queue:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
            if self._queue and self.linger > 0 and len(self._queue) < self.batch_size and not self._closing:
                await asyncio.sleep(self.linger)  # let a burst gather: one transaction for it
            batch = self._take(self.batch_size)
            if batch:
                await self._deliver(batch)
            if not self.healthy and loop.time() >= self._retry_at:
                await self._recover()
        if not self.healthy and self.spool.pending and loop.time() >= self._retry_at:
            await self._recover()  # one last try; else the spool waits for the next start
        if self.spool.pending:
            log.warning("call records: the spool %s is replayed at the next start", self.spool.path)

    def _take(self, limit: int) -> list[Item]:
        out: list[Item] = []
        while self._queue and len(out) < limit:
            out.append(self._queue.popleft())
        return out

    async def _put(self, items: Sequence[Item]) -> None:
        """Store ``items`` and count them (records and deliveries apart)."""
        await self.store.put(items)
        deliveries = sum(1 for i in items if isinstance(i, Entry))
        self.written += len(items) - deliveries
        if deliveries:
            self.outbox_written += deliveries
            if self.on_outbox is not None:
                try:
                    self.on_outbox()
                except Exception:
                    log.exception("webhooks: waking the dispatchers failed")

    async def _deliver(self, batch: list[Item]) -> None:
        if not self.healthy or self.spool.pending:
            await self._to_spool(batch)
            return
        try:
            await self._put(batch)
        except StoreRejected:
            done = await self._each(batch)
            if done < len(batch):
                await self._to_spool(batch[done:])
        except Exception as exc:  # StoreUnavailable, SchemaTooNew, or a bug: the records are kept all the same
            self._down(exc)
            await self._to_spool(batch)

    async def _each(self, records: Sequence[Item]) -> int:
        """Store records one by one, keeping those refused aside; how many were handled before an outage."""
        for i, record in enumerate(records):
            try:
                await self._put([record])
            except StoreRejected as exc:
                self.rejected += 1
                log.error(
                    "call records: %s refused %s (%s); kept in %s",
                    self.store.name,
                    _label(record),
                    exc,
                    self.spool.rejected_path,
                )
                await asyncio.to_thread(self.spool.reject, record)
            except Exception as exc:
                self._down(exc)
                return i
        return len(records)

    async def _to_spool(self, records: list[Item]) -> None:
        try:
            await asyncio.to_thread(self.spool.append, records)
            self.spooled += len(records)
        except OSError as exc:  # the disk too: keep them in memory, in front of the queue, within its bound
            log.error("call records: cannot write the spool %s: %s", self.spool.path, exc)
            if self._closing:
                self.dropped += len(records)
                log.error("call records: stopping with %d record(s) neither stored nor spooled", len(records))
                return
            room = max(0, self.queue_size - len(self._queue))
            self.dropped += max(0, len(records) - room)
            self._queue.extendleft(reversed(records[:room]))
            self._down(exc)
            # wait for the next try (or the stop) instead of turning round on a broken disk
            delay = max(0.0, self._retry_at - asyncio.get_running_loop().time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _down(self, exc: BaseException) -> None:
        loop = asyncio.get_running_loop()
        self._attempt += 1
        delay = retry_delay(self._attempt, self._jitter(), initial=self.retry_initial, maximum=self.retry_maximum)
        self._retry_at = loop.time() + delay
        if self.healthy or self._attempt == 1:
            level = logging.ERROR if isinstance(exc, SchemaTooNew) else logging.WARNING
            if isinstance(exc, (StoreError, SchemaTooNew, OSError)):
                log.log(level, "call records: %s; spooling to %s and retrying", exc, self.spool.path)
            else:
                log.error("call records: unexpected failure; spooling to %s", self.spool.path, exc_info=exc)
        else:
            log.debug("call records: still unavailable (retry in %.1f s): %s", delay, exc)
        self.healthy = False

    async def _recover(self) -> None:
        """Migrate, replay the spool in order, and write directly again; or wait for the next try."""
        was_down = self._attempt > 0
        try:
            before, after = await self.store.open()
            self.opened.set()
            if after != before:
                log.info("call records: %s schema migrated from version %d to %d", self.store.name, before, after)
            replayed = 0
            while self.spool.pending:
                chunk, end = await asyncio.to_thread(self.spool.read, self.batch_size)
                if not chunk:
                    if end == self.spool.offset:
                        await asyncio.to_thread(self.spool.clear)
                    else:
                        self.spool.offset = end  # only lines that were not records
                    continue
                try:
                    await self._put(chunk)
                except StoreRejected:
                    if await self._each(chunk) < len(chunk):
                        return  # the database went away again: the rest of the chunk is replayed next time
                self.spool.offset = end
                replayed += len(chunk)
                self.replayed += len(chunk)
                if self._queue:  # what came meanwhile goes behind what waits, in order
                    await self._to_spool(self._take(len(self._queue)))
        except Exception as exc:
            self._down(exc)
            return
        if self.spool.skipped:
            log.warning("call records: %d line(s) of %s were not records", self.spool.skipped, self.spool.path)
            self.spool.skipped = 0
        self.healthy = True
        self._attempt = 0
        if was_down or replayed:
            log.info("call records: %s is back; %d spooled record(s) replayed", self.store.name, replayed)

    # -- retention --------------------------------------------------------------------------------
    async def apply_retention(self) -> int:
        """Delete the records older than ``retention_days`` (by the store's clock); how many went."""
        if not self.retention_days:
            return 0
        deleted = await self.store.delete_before(retention_cutoff(self.store.clock(), self.retention_days))
        self.deleted += deleted
        if deleted:
            log.info("call records: %d record(s) older than %d days deleted", deleted, self.retention_days)
        return deleted

    async def _retain(self) -> None:
        delay = min(60.0, self.retention_interval)
        while True:
            await asyncio.sleep(delay)
            delay = self.retention_interval
            if not self.healthy:
                continue
            try:
                await self.apply_retention()
            except Exception as exc:  # the next round tries again
                log.warning("call records: retention skipped: %s", exc)
