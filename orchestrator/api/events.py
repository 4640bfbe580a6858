"""``GET /v1/events``: call and trunk events live, as Server-Sent Events (docs/operations.md#events).

The stream is one :class:`~orchestrator.events.broker.Subscription` written out by :class:`EventStream`: events
as they are published (queued events go out together in one write), a keep-alive comment after
:data:`KEEPALIVE_SECONDS` without one, ``event: overflow`` before the end when the client read too slowly and
was cut off, ``event: gap`` first when a ``Last-Event-ID`` could not be resumed exactly. The subscription ends
when the client disconnects (watched all along, not only when a write fails), when a single write waits longer
than :data:`SEND_TIMEOUT` (a client that stopped reading), or at shutdown (:meth:`Broker.close`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from orchestrator.calls.controller import CallError, Controller
from orchestrator.events import sse
from orchestrator.events.broker import Subscription

log = logging.getLogger("sipagent.api")

#: a comment after this many seconds without an event (proxies and clients see the stream is alive)
KEEPALIVE_SECONDS = 15.0
#: a client whose socket accepts nothing for this long has stopped reading: its stream ends
SEND_TIMEOUT = 60.0
#: events written in one go when several are queued
BATCH = 100
_PARAMETERS = frozenset({"types", "call_id"})


class _Stalled(Exception):
    """A write waited longer than :data:`SEND_TIMEOUT`."""


class EventStream(StreamingResponse):
    """The ``text/event-stream`` response of one subscription; the subscription ends with the response."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self._body = self._events()
        super().__init__(
            self._body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _events(self) -> AsyncIterator[bytes]:
        sub = self.subscription
        head = sse.opening()
        if sub.resumed is False:
            head += sse.format_notice("gap", {"reason": "Last-Event-ID not in the recent events: some may be missed"})
        yield head
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    event = await sub.next()
            except TimeoutError:
                yield sse.KEEPALIVE
                continue
            if event is None:
                if sub.overflowed:
                    yield sse.format_notice("overflow", {"reason": f"more than {sub.limit} events behind"})
                return
            yield b"".join([sse.format_event(event), *(sse.format_event(e) for e in sub.drain(BATCH - 1))])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def bounded(message: Message) -> None:
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await send(message)
            except TimeoutError:
                raise _Stalled from None

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        stream = asyncio.ensure_future(self.stream_response(bounded))
        watch = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({stream, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.subscription.close()
            for task in (stream, watch):
                task.cancel()
            await asyncio.gather(stream, watch, return_exceptions=True)
            await self._body.aclose()  # type: ignore[attr-defined]  # an async generator
        if stream.done() and not stream.cancelled() and isinstance(stream.exception(), _Stalled):
            log.info("events: a client read nothing for %gs; its stream is closed", SEND_TIMEOUT)


def event_routes(app: FastAPI, controller: Controller, v1: list[Any]) -> None:
    """``GET /v1/events`` (the ``v1`` dependencies: the bearer token)."""

    @app.get("/v1/events", dependencies=v1, response_class=StreamingResponse)
    async def events(
        request: Request,
        types: Annotated[
            str | None, Query(max_length=512, description="Comma-separated event types (default: all).")
        ] = None,
        call_id: Annotated[
            str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$", description="One call's events.")
        ] = None,
        last_event_id: Annotated[
            str | None, Header(max_length=128, description="Resume after this event (an id the stream sent).")
        ] = None,
    ) -> StreamingResponse:
        names = [k for k, _ in request.query_params.multi_items()]
        unknown = sorted(set(names) - _PARAMETERS)
        if unknown:
            shown = unknown[0][:40]
            raise CallError("invalid_parameter", f"unknown query parameter {shown!r}; known: types, call_id", 422)
        if len(names) != len(set(names)):
            raise CallError("invalid_parameter", "each query parameter at most once", 422)
        try:
            wanted = sse.parse_types(types)
            after = sse.parse_last_event_id(last_event_id)
        except sse.InvalidParameter as exc:
            raise CallError(exc.code, exc.message, exc.status) from None
        return EventStream(controller.events.subscribe(wanted, call_id, after))
