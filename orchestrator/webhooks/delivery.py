"""Webhook delivery (asyncio): events → the store's outbox → signed POSTs, one dispatcher per endpoint.

:meth:`WebhookService.offer` is the broker's sink: it turns an event into outbox entries and hands them to the
store writer's queue (it never waits; the writer spools them with the records while the database is away). Once
written, the writer wakes the dispatchers. Each endpoint has its own :class:`Dispatcher`, HTTP client and
connection pool: it leases up to ``concurrency`` due deliveries (heads of their call only: one call's events go
out in order), POSTs them with a whole-attempt timeout, and records the outcome (delivered; due again after
backoff and jitter; dead-lettered after ``max_attempts``). A slow or dead receiver holds only its own
dispatcher's slots: calls never wait for webhooks, and other endpoints never wait for each other. A stop releases
the leases of attempts it cuts short; a crash leaves them to run out (``timeout + LEASE_MARGIN``), after which the
deliveries are attempted again — at least once, so receivers de-duplicate by ``Sipagent-Event-Id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from orchestrator import __version__
from orchestrator.config.model import Deployment
from orchestrator.events.model import Event
from orchestrator.metrics import Metrics
from orchestrator.store.backend import StoreError
from orchestrator.store.schedule import retention_cutoff
from orchestrator.store.store import Store
from orchestrator.store.writer import StoreWriter
from orchestrator.webhooks import policy, signing
from orchestrator.webhooks.policy import Endpoint

log = logging.getLogger("sipagent.webhooks")

#: longest wait between looks at the outbox (deliveries other orchestrators added, leases that ran out)
POLL = 5.0
#: a lease outlives its attempt's timeout by this much
LEASE_MARGIN = 30.0
#: bytes of a receiver's answer read (the rest is not wanted)
ANSWER_LIMIT = 1024
#: a stop waits this long for attempts in flight before cutting them short
STOP_GRACE = 2.0


def _short(exc: BaseException) -> str:
    """A failed attempt as a line for the outbox and the log: the kind of failure, never the URL."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "no answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the receiver broke the HTTP exchange"
    return type(exc).__name__


class Dispatcher:
    """Delivers one endpoint's outbox."""

    def __init__(
        self,
        endpoint: Endpoint,
        store: Store,
        metrics: Metrics,
        owner: str,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
        ready: asyncio.Event | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.ready = ready
        self.store = store
        self.metrics = metrics
        self.owner = owner
        self.clock = clock
        self.jitter = jitter
        self.client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=endpoint.concurrency, max_keepalive_connections=endpoint.concurrency),
            headers={"User-Agent": f"sipagent/{__version__}", "Content-Type": "application/json"},
        )
        self.inflight: dict[str, asyncio.Task[None]] = {}  # ordering key → attempt
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.delivered = self.failed = self.dead = 0

    def start(self) -> None:
        """Start delivering."""
        self._task = asyncio.create_task(self._run(), name=f"webhook-{self.endpoint.name}")

    def wake(self) -> None:
        """Look at the outbox now (new deliveries were written, or one was put back in line)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop: attempts in flight get :data:`STOP_GRACE` to finish, the rest are cut short (leases released)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.inflight:
            await asyncio.wait(list(self.inflight.values()), timeout=STOP_GRACE)
        for task in list(self.inflight.values()):
            task.cancel()
        await asyncio.gather(*self.inflight.values(), return_exceptions=True)
        await self.client.aclose()

    async def _run(self) -> None:
        if self.ready is not None:
            await self.ready.wait()  # the writer has migrated the schema: the outbox is there
        failures = 0
        while not self._stopping:
            self._wake.clear()
            free = self.endpoint.concurrency - len(self.inflight)
            delay = POLL
            try:
                if free > 0:
                    rows = await self.store.due_deliveries(
                        self.endpoint.name, self.owner, self.endpoint.timeout + LEASE_MARGIN, free, list(self.inflight)
                    )
                    for row in rows:
                        key = str(row["ordering"])
                        self.inflight[key] = asyncio.create_task(self._attempt(row), name=f"webhook-attempt-{key}")
                    if len(rows) == free:
                        continue  # there may be more: look again once a slot frees or at once
                nxt = await self.store.next_delivery_at(self.endpoint.name)
                if nxt is not None:
                    delay = min(POLL, max(0.0, nxt - self.clock()))
                failures = 0
            except StoreError as exc:
                failures += 1
                if failures == 1:
                    log.warning("webhooks %s: the outbox cannot be read (%s); trying again", self.endpoint.name, exc)
                delay = POLL
            except Exception:
                log.exception("webhooks %s: unexpected failure reading the outbox", self.endpoint.name)
                delay = POLL
            if self.inflight and len(self.inflight) >= self.endpoint.concurrency:
                delay = POLL  # every slot is taken: an attempt that ends wakes us
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(delay, 0.01))

    async def _attempt(self, row: dict[str, Any]) -> None:
        key = str(row["ordering"])
        n, attempts = int(row["n"]), int(row["attempts"]) + 1
        body = str(row["body"]).encode()
        e = self.endpoint
        loop = asyncio.get_running_loop()
        started = loop.time()
        status: int | None = None
        asked: float | None = None
        error = ""
        try:
            timestamp = int(self.clock())
            headers = {
                signing.HEADER: signing.header(e.secrets, timestamp, body),
                "Sipagent-Event-Id": str(row["event_id"]),
                "Sipagent-Event-Type": str(row["event_type"]),
                "Sipagent-Delivery-Id": str(row["id"]),
                "Sipagent-Attempt": str(attempts),
            }
            try:
                async with asyncio.timeout(e.timeout):
                    async with self.client.stream("POST", e.url, content=body, headers=headers, timeout=e.timeout) as r:
                        status = r.status_code
                        asked = policy.retry_after(r.headers.get("retry-after"), self.clock())
                        got = 0
                        async for chunk in r.aiter_raw():
                            got += len(chunk)
                            if got >= ANSWER_LIMIT:
                                break
            except (TimeoutError, httpx.HTTPError, OSError) as exc:
                error = _short(exc)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.release_delivery(n, self.owner))
                raise
            self.metrics.webhook_seconds.labels(e.name).observe(loop.time() - started)
            if status is not None and policy.success(status):
                await self.store.delivery_done(n, self.owner, attempts, status)
                self.delivered += 1
                self.metrics.webhook_deliveries.labels(e.name, "delivered").inc()
                return
            if status is not None:
                error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
            when = policy.next_attempt(e, attempts, self.clock(), self.jitter(), asked)
            await self.store.delivery_failed(n, self.owner, attempts, status, error, when)
            if when is None:
                self.dead += 1
                self.metrics.webhook_deliveries.labels(e.name, "dead").inc()
                log.warning(
                    "webhooks %s: delivery %s (%s of call %s) dead-lettered after %d attempts: %s",
                    e.name, row["id"], row["event_type"], row["call_id"], attempts, error,
                )  # fmt: skip
            else:
                self.failed += 1
                self.metrics.webhook_deliveries.labels(e.name, "failed").inc()
                log.info(
                    "webhooks %s: attempt %d of delivery %s failed (%s); next in %.1f s",
                    e.name, attempts, row["id"], error, when - self.clock(),
                )  # fmt: skip
        except StoreError as exc:  # the outcome is lost: the lease runs out and the delivery is attempted again
            log.warning("webhooks %s: cannot record an attempt's outcome (%s)", e.name, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhooks %s: unexpected failure delivering %s", e.name, row.get("id"))
        finally:
            self.inflight.pop(key, None)
            self._wake.set()


class WebhookService:
    """Every endpoint's dispatcher, the broker sink that fills the outbox, and the outbox's retention."""

    def __init__(
        self,
        deployment: Deployment,
        writer: StoreWriter,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
        retention_interval: float = 3600.0,
    ) -> None:
        self.endpoints = policy.endpoints(deployment)
        self.writer = writer
        self.store = writer.store
        self.metrics = metrics
        self.clock = clock
        self.retention_days = deployment.orchestrator.webhook_retention_days
        self.retention_interval = retention_interval
        #: who holds the leases this process takes (a new one per process: a crashed one's leases run out)
        self.owner = f"{uuid.uuid4()}"
        self.dispatchers = {
            e.name: Dispatcher(
                e, self.store, metrics, self.owner, clock=clock, jitter=jitter, transport=transport, ready=writer.opened
            )
            for e in self.endpoints
        }
        self._tasks: list[asyncio.Task[None]] = []
        writer.on_outbox = self.wake

    def offer(self, event: Event) -> None:
        """The broker's sink: the event's deliveries go to the store writer's queue (never waits)."""
        found = policy.entries(event, self.endpoints, self.clock())
        if found:
            self.writer.enqueue(found)

    def wake(self, endpoint: str | None = None) -> None:
        """Have the dispatchers (or one) look at the outbox now."""
        for name, d in self.dispatchers.items():
            if endpoint is None or name == endpoint:
                d.wake()

    def start(self) -> None:
        """Start every dispatcher, the outbox gauge and the retention rounds."""
        for d in self.dispatchers.values():
            d.start()
        self._tasks.append(asyncio.create_task(self._gauge(), name="webhook-outbox-gauge"))
        self._tasks.append(asyncio.create_task(self._retain(), name="webhook-outbox-retention"))

    async def stop(self) -> None:
        """Stop delivering (attempts in flight get a moment to finish)."""
        self.writer.on_outbox = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(d.stop() for d in self.dispatchers.values()))

    async def apply_retention(self) -> int:
        """Delete delivered and dead deliveries older than ``webhook_retention_days``; how many went."""
        gone = await self.store.purge_deliveries(retention_cutoff(self.clock(), self.retention_days))
        if gone:
            log.info("webhooks: %d delivered or dead deliveries older than %d days deleted", gone, self.retention_days)
        return gone

    async def update_gauge(self) -> None:
        """Set ``sipagent_webhook_outbox`` from the store."""
        counts = await self.store.delivery_counts()
        for e in self.endpoints:
            for status in ("pending", "delivered", "dead"):
                self.metrics.webhook_outbox.labels(e.name, status).set(counts.get((e.name, status), 0))

    async def _gauge(self) -> None:
        while True:
            with contextlib.suppress(StoreError):
                await self.update_gauge()
            await asyncio.sleep(15.0)

    async def _retain(self) -> None:
        delay = min(60.0, self.retention_interval)
        while True:
            await asyncio.sleep(delay)
            delay = self.retention_interval
            try:
                await self.apply_retention()
            except StoreError as exc:
                log.warning("webhooks: outbox retention skipped: %s", exc)
