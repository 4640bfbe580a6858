"""HTTP API: place, inspect, transfer and hang up calls; call records from the store; the live event stream; health;
Prometheus metrics.

``/v1/*`` needs ``Authorization: Bearer <token>`` (the token comes from the environment through
the deployment file). Errors are JSON: ``{"error": {"code": "...", "message": "..."}}``.

Requests are bounded before they are parsed (:class:`BoundedBody`): a body over :data:`MAX_BODY`
answers 413, JSON nested deeper than :data:`MAX_DEPTH` answers 400; what passes is validated by the
models here and by the controller (``orchestrator.calls.dialing``), and every refusal is a 4xx with a
stable code — never a 500.
"""

from __future__ import annotations

import hmac
import logging
import pathlib
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orchestrator import __version__, dtmf, store
from orchestrator.api.console import Console
from orchestrator.api.console.auth import Kind
from orchestrator.api.events import event_routes
from orchestrator.calls.controller import CallError, Controller
from orchestrator.calls.dialing import MAX_ENTRIES, MAX_VALUE
from orchestrator.calls.tracker import CallState
from orchestrator.config.model import MachineDetection
from orchestrator.webhooks import WebhookService

log = logging.getLogger("sipagent.api")

MAX_BODY = 64 * 1024
MAX_DEPTH = 8
CallId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")]
Text = Annotated[str, StringConstraints(max_length=MAX_VALUE)]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def json_depth(body: bytes) -> int:
    """How deeply ``[``/``{`` nest in a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


class BoundedBody:
    """ASGI middleware: refuse a request body over ``limit`` bytes (413) or nested over ``depth`` (400) before
    anything parses it, whether or not it announced its length."""

    def __init__(self, app: Any, limit: int = MAX_BODY, depth: int = MAX_DEPTH) -> None:
        self.app, self.limit, self.depth = app, limit, depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _refuse(send, 413, "request_too_large", f"the request body is limited to {self.limit} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _refuse(send, 413, "request_too_large", f"the request body is limited to {self.limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if json_depth(body) > self.depth:
            await _refuse(send, 400, "invalid_request", f"JSON nested deeper than {self.depth} levels")
            return
        delivered = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    response = _error(status, code, message)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class CallRequest(BaseModel):
    """An outbound call."""

    model_config = ConfigDict(extra="forbid")

    trunk: str = Field(max_length=64, description="Outbound trunk name.")
    to: str = Field(max_length=256, description="E.164 number (+15551234567) or sip:/sips: URI.")
    agent: str = Field(max_length=64, description="Agent that talks to the callee.")
    caller_id: str | None = Field(None, max_length=16, description="E.164 caller ID (default: the trunk's).")
    headers: dict[str, Text] = Field(
        default_factory=dict, max_length=MAX_ENTRIES, description="X- headers for the INVITE (X-Name: value)."
    )
    variables: dict[str, Text] = Field(
        default_factory=dict, max_length=MAX_ENTRIES, description="Extra variables for the agent (lower_case names)."
    )
    agent_overrides: dict[str, Text] | None = Field(
        None,
        max_length=4,
        description="Per-call agent settings (ElevenLabs conversation_config_override): first_message, language, "
        "voice_id, prompt; each at most 1 KiB, no control characters.",
    )
    timeout_seconds: int | None = Field(None, ge=5, le=600, description="Ring time before giving up.")
    machine_detection: MachineDetection | None = Field(
        None,
        description="Answering-machine detection for this call: a mode (off, notify, hangup, wait_for_beep) or "
        "settings; each field given wins over the agent's, the trunk's and the orchestrator's "
        "(docs/call-flow.md#answering-machine-detection).",
    )


class TransferRequest(BaseModel):
    """A transfer of an answered call."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(max_length=256, description="E.164 number or sip: URI.")
    method: Literal["refer", "bridge", "attended"] | None = Field(
        None, description="refer (default) or bridge: blind transfers; attended: as mode attended."
    )
    mode: Literal["blind", "attended"] | None = Field(
        None,
        description="attended: dial the target while the caller stays with the agent, connect them once it answered.",
    )
    trunk: str | None = Field(
        None, max_length=64, description="For bridge and attended: the outbound trunk (default: the call's)."
    )
    brief: str | None = Field(
        None, max_length=4096, description="Attended: what the target should know (record; optional INVITE header)."
    )


class DtmfRequest(BaseModel):
    """Digits to send into a call."""

    model_config = ConfigDict(extra="forbid")

    # the grammar is orchestrator.dtmf's (checked by the controller, which says why a sequence is refused)
    digits: str = Field(max_length=dtmf.MAX_SEQUENCE, description=dtmf.SEQUENCE_RULE)
    duration_ms: int = Field(100, ge=dtmf.MIN_DURATION_MS, le=dtmf.MAX_DURATION_MS)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(
    controller: Controller,
    token: str | None,
    *,
    read_token: str | None = None,
    console_token: str | None = None,
    base_dir: pathlib.Path | None = None,
    webhooks: WebhookService | None = None,
) -> FastAPI:
    """The ASGI app serving ``controller``. Without a token, ``/v1`` answers 503; ``read_token`` opens its GET
    endpoints only. The web console (``/console``) opens with ``console_token``, ``read_token`` or ``token``."""
    app = FastAPI(title="sipagent", version=__version__, docs_url="/docs", redoc_url=None)
    app.add_middleware(BoundedBody)
    _error_handlers(app)
    v1 = [Depends(_bearer(token, read_token))]
    _call_routes(app, controller, v1)
    _record_routes(app, controller, v1)
    _webhook_routes(app, controller, v1, webhooks)
    event_routes(app, controller, v1)
    _service_routes(app, controller)
    given: list[tuple[Kind, str | None]] = [("write", token), ("read", read_token), ("console", console_token)]
    tokens: dict[Kind, str] = {kind: value for kind, value in given if value is not None}
    Console(controller, tokens, base_dir=base_dir).mount(app)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every refusal as ``{"error": {"code", "message"}}``: call errors, invalid and unparsable requests."""

    @app.exception_handler(CallError)
    async def _call_error(_request: Request, exc: CallError) -> JSONResponse:
        response = _error(exc.status, exc.code, exc.message)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p)[:64] for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()[:8]
        )
        return _error(400, "invalid_request", problems[:1000])

    @app.exception_handler(RecursionError)
    @app.exception_handler(ValueError)
    async def _unparsable(_request: Request, exc: Exception) -> JSONResponse:
        log.info("api: refused an unparsable request (%s)", type(exc).__name__)
        return _error(400, "invalid_request", "the request could not be parsed")


#: what a read-only token may ask (``orchestrator.api.read_token``)
READ_METHODS = frozenset({"GET", "HEAD"})


def _bearer(token: str | None, read_token: str | None = None) -> Callable[[Request], Awaitable[None]]:
    """The ``/v1`` dependency: ``Authorization: Bearer <token>``, or ``<read_token>`` for a GET (each compared in
    constant time; a read token on a write endpoint is 403 ``read_only``)."""

    async def authorized(request: Request) -> None:
        if token is None and read_token is None:
            raise CallError("api_disabled", "no API token configured (orchestrator.api.token)", 503)
        header = request.headers.get("authorization", "")
        scheme, _, text = header.partition(" ")
        presented = text.encode("utf-8", "replace")
        write = token is not None and hmac.compare_digest(presented, token.encode())
        read = read_token is not None and hmac.compare_digest(presented, read_token.encode())
        if scheme.lower() != "bearer" or not (write or read):
            raise CallError("unauthorized", "missing or wrong bearer token", 401)
        if not write and request.method not in READ_METHODS:
            if token is None:
                raise CallError("api_disabled", "no API token configured (orchestrator.api.token)", 503)
            raise CallError("read_only", "this token may only read (GET): use the API token to change calls", 403)

    return authorized


def _call_routes(app: FastAPI, controller: Controller, v1: list[Any]) -> None:
    """``/v1/calls``: place, list, inspect, hang up, transfer, send DTMF, record."""

    @app.post("/v1/calls", status_code=201, dependencies=v1)
    async def place_call(req: CallRequest) -> dict[str, Any]:
        call = await controller.originate(
            trunk=req.trunk,
            to=req.to,
            agent=req.agent,
            caller_id=req.caller_id,
            headers=req.headers,
            variables=req.variables,
            agent_overrides=req.agent_overrides,
            timeout=req.timeout_seconds,
            machine_detection=req.machine_detection,
        )
        return call.summary()

    @app.get("/v1/calls", dependencies=v1)
    async def list_calls() -> dict[str, Any]:
        return {"calls": [c.summary() for c in controller.tracker.calls.values()]}

    @app.get("/v1/calls/{call_id}", dependencies=v1)
    async def get_call(call_id: CallId) -> dict[str, Any]:
        found = controller.describe(call_id)
        if found is None:
            raise CallError("unknown_call", f"no call {call_id}", 404)
        return found

    @app.delete("/v1/calls/{call_id}", status_code=202, dependencies=v1)
    async def hang_up(call_id: CallId, reason: Annotated[str, Query(max_length=32)] = "completed") -> dict[str, Any]:
        await controller.hangup(call_id, reason, by="api")
        return {"id": call_id, "status": "hanging_up"}

    @app.post("/v1/calls/{call_id}/transfer", status_code=202, dependencies=v1)
    async def transfer(call_id: CallId, req: TransferRequest) -> dict[str, Any]:
        await controller.transfer(
            call_id, req.target, method=req.method, trunk=req.trunk, mode=req.mode, brief=req.brief
        )
        return {"id": call_id, "status": CallState.TRANSFERRING}

    @app.post("/v1/calls/{call_id}/recording/{action}", dependencies=v1)
    async def recording(call_id: CallId, action: Literal["start", "stop", "pause", "resume"]) -> dict[str, Any]:
        """Start, stop, pause or resume the call's recording (its policy says which: docs/operations.md)."""
        return {"id": call_id, "recording": await controller.record(call_id, action)}

    @app.post("/v1/calls/{call_id}/dtmf", status_code=202, dependencies=v1)
    async def dtmf(call_id: CallId, req: DtmfRequest) -> dict[str, Any]:
        await controller.send_dtmf(call_id, req.digits, req.duration_ms)
        return {"id": call_id, "status": "sent"}


#: the query parameters ``GET /v1/records`` knows (anything else is refused: a misspelt filter must not be ignored)
RECORD_FILTERS = frozenset(
    {"since", "until", "direction", "trunk", "number", "agent", "result", "sip_status", "limit", "cursor"}
)
RecordName = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


def _known_parameters(request: Request, known: frozenset[str]) -> None:
    """Refuse a query parameter the endpoint does not know (a misspelt filter must not be ignored)."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise CallError("invalid_request", f"unknown parameter {unknown[0][:64]!r}: use {', '.join(sorted(known))}")


def _epoch(value: datetime | None) -> float | None:
    """An ISO 8601 time as epoch seconds (a time without an offset is UTC)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _records_store(controller: Controller) -> store.Store:
    found = controller.store
    if found is None:
        raise CallError(
            "records_not_stored",
            "call records go to a JSONL file here (orchestrator.records ends in .jsonl): the records API needs "
            "the call store — set orchestrator.records to an SQLite file (calls.db) or a postgresql:// URL",
            501,
        )
    return found


async def _from_store(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except store.StoreError as exc:
        log.warning("api: call store unavailable: %s", exc)
        raise CallError("store_unavailable", "the call store cannot be reached right now; try again", 503) from None


def _record_routes(app: FastAPI, controller: Controller, v1: list[Any]) -> None:
    """``/v1/records``: ended calls from the call store, filtered and paged; one record by id."""

    @app.get("/v1/records", dependencies=v1)
    async def list_records(
        request: Request,
        since: Annotated[datetime | None, Query(description="Calls that started at or after (ISO 8601).")] = None,
        until: Annotated[datetime | None, Query(description="Calls that started before (ISO 8601).")] = None,
        direction: Literal["inbound", "outbound"] | None = None,
        trunk: RecordName = None,
        number: Annotated[str | None, Query(max_length=256, description="The caller or the callee.")] = None,
        agent: RecordName = None,
        result: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
        sip_status: Annotated[int | None, Query(ge=100, le=699)] = None,
        limit: Annotated[int, Query(ge=1, le=store.MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page.")] = None,
    ) -> dict[str, Any]:
        _known_parameters(request, RECORD_FILTERS)
        start, end = _epoch(since), _epoch(until)
        if start is not None and end is not None and start > end:
            raise CallError("invalid_request", "since is after until")
        filters = store.Filters(start, end, direction, trunk, number, agent, result, sip_status)
        found = _records_store(controller)
        try:
            page = await _from_store(found.page(filters, cursor, limit))
        except store.InvalidCursor as exc:
            raise CallError("invalid_cursor", str(exc)) from None
        return {"records": page.records, "next_cursor": page.next_cursor}

    @app.get("/v1/records/{record_id}", dependencies=v1)
    async def get_record(record_id: CallId) -> dict[str, Any]:
        record: dict[str, Any] | None = await _from_store(_records_store(controller).get(record_id))
        if record is None:
            raise CallError("unknown_record", f"no record {record_id}", 404)
        return record


#: the query parameters ``GET /v1/webhooks/deliveries`` knows
DELIVERY_FILTERS = frozenset({"endpoint", "status", "call_id", "event_type", "limit", "cursor"})
DeliveryId = Annotated[str, Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]


def _webhook_routes(app: FastAPI, controller: Controller, v1: list[Any], webhooks: WebhookService | None) -> None:
    """``/v1/webhooks/deliveries``: the outbox, newest first (dead letters with ``status=dead``); one delivery
    with its event; ``POST …/{id}/retry`` puts a dead-lettered delivery back in line (write token)."""

    @app.get("/v1/webhooks/deliveries", dependencies=v1)
    async def list_deliveries(
        request: Request,
        endpoint: RecordName = None,
        status: Literal["pending", "delivered", "dead"] | None = None,
        call_id: Annotated[str | None, Query(max_length=256)] = None,
        event_type: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z]+\.[a-z]+$")] = None,
        limit: Annotated[int, Query(ge=1, le=store.MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=128, description="next_cursor of the previous page.")] = None,
    ) -> dict[str, Any]:
        _known_parameters(request, DELIVERY_FILTERS)
        filters = store.DeliveryFilters(endpoint, status, call_id, event_type)
        found = _records_store(controller)
        try:
            rows, nxt = await _from_store(found.deliveries(filters, cursor, limit))
        except store.InvalidCursor as exc:
            raise CallError("invalid_cursor", str(exc)) from None
        return {"deliveries": rows, "next_cursor": nxt}

    @app.get("/v1/webhooks/deliveries/{delivery_id}", dependencies=v1)
    async def get_delivery(delivery_id: DeliveryId) -> dict[str, Any]:
        row: dict[str, Any] | None = await _from_store(_records_store(controller).delivery(delivery_id))
        if row is None:
            raise CallError("unknown_delivery", f"no webhook delivery {delivery_id}", 404)
        return row

    @app.post("/v1/webhooks/deliveries/{delivery_id}/retry", dependencies=v1)
    async def retry_delivery(delivery_id: DeliveryId) -> dict[str, Any]:
        found = _records_store(controller)
        if not await _from_store(found.retry_delivery(delivery_id)):
            row = await _from_store(found.delivery(delivery_id))
            if row is None:
                raise CallError("unknown_delivery", f"no webhook delivery {delivery_id}", 404)
            raise CallError(
                "not_dead", f"delivery {delivery_id} is {row['status']}: only dead letters are retried", 409
            )
        row = await _from_store(found.delivery(delivery_id))
        if webhooks is not None and row is not None:
            webhooks.wake(row["endpoint"])
        return row or {}


def _service_routes(app: FastAPI, controller: Controller) -> None:
    """``/healthz`` (503 while no node is connected) and ``/metrics`` (Prometheus), without a token."""

    @app.get("/healthz")
    async def health() -> JSONResponse:
        nodes = {name: node.client.connected for name, node in controller.nodes.items()}
        ok = any(nodes.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "nodes": nodes, "calls": len(controller.tracker.calls)},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(controller.metrics.render(), media_type="text/plain; version=0.0.4")
