"""HTTP API: place, inspect, transfer and hang up calls; health; Prometheus metrics.

``/v1/*`` needs ``Authorization: Bearer <token>`` (the token comes from the environment through
the deployment file). Errors are JSON: ``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

import hmac
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import __version__
from orchestrator.calls.controller import CallError, Controller


class CallRequest(BaseModel):
    """An outbound call."""

    model_config = ConfigDict(extra="forbid")

    trunk: str = Field(description="Outbound trunk name.")
    to: str = Field(description="E.164 number or sip: URI.")
    agent: str = Field(description="Agent that talks to the callee.")
    caller_id: str | None = Field(None, description="E.164 caller ID (default: the trunk's).")
    headers: dict[str, str] = Field(default_factory=dict, description="X- headers for the INVITE.")
    variables: dict[str, str] = Field(default_factory=dict, description="Extra variables for the agent.")
    timeout_seconds: int | None = Field(None, ge=5, le=600, description="Ring time before giving up.")


class TransferRequest(BaseModel):
    """A transfer of an answered call."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="E.164 number or sip: URI.")
    method: Literal["refer", "bridge"] = "refer"
    trunk: str | None = Field(None, description="For bridge: the outbound trunk (default: the call's).")


class DtmfRequest(BaseModel):
    """Digits to send into a call."""

    model_config = ConfigDict(extra="forbid")

    digits: str
    duration_ms: int = Field(100, ge=40, le=2000)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(controller: Controller, token: str | None) -> FastAPI:
    """The ASGI app serving ``controller``. Without a token, ``/v1`` answers 503."""
    app = FastAPI(title="sipagent", version=__version__, docs_url="/docs", redoc_url=None)

    @app.exception_handler(CallError)
    async def _call_error(_request: Request, exc: CallError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return _error(400, "invalid_request", problems)

    async def authorized(request: Request) -> None:
        if token is None:
            raise CallError("api_disabled", "no API token configured (orchestrator.api.token)", 503)
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token.encode()):
            raise CallError("unauthorized", "missing or wrong bearer token", 401)

    v1: list[Any] = [Depends(authorized)]

    @app.post("/v1/calls", status_code=201, dependencies=v1)
    async def place_call(req: CallRequest) -> dict[str, Any]:
        call = await controller.originate(
            trunk=req.trunk,
            to=req.to,
            agent=req.agent,
            caller_id=req.caller_id,
            headers=req.headers,
            variables=req.variables,
            timeout=req.timeout_seconds,
        )
        return call.summary()

    @app.get("/v1/calls", dependencies=v1)
    async def list_calls() -> dict[str, Any]:
        return {"calls": [c.summary() for c in controller.tracker.calls.values()]}

    @app.get("/v1/calls/{call_id}", dependencies=v1)
    async def get_call(call_id: str) -> dict[str, Any]:
        found = controller.describe(call_id)
        if found is None:
            raise CallError("unknown_call", f"no call {call_id}", 404)
        return found

    @app.delete("/v1/calls/{call_id}", status_code=202, dependencies=v1)
    async def hang_up(call_id: str, reason: str = "completed") -> dict[str, Any]:
        await controller.hangup(call_id, reason, by="api")
        return {"id": call_id, "status": "hanging_up"}

    @app.post("/v1/calls/{call_id}/transfer", status_code=202, dependencies=v1)
    async def transfer(call_id: str, req: TransferRequest) -> dict[str, Any]:
        await controller.transfer(call_id, req.target, method=req.method, trunk=req.trunk)
        return {"id": call_id, "status": "transferring"}

    @app.post("/v1/calls/{call_id}/dtmf", status_code=202, dependencies=v1)
    async def dtmf(call_id: str, req: DtmfRequest) -> dict[str, Any]:
        await controller.send_dtmf(call_id, req.digits, req.duration_ms)
        return {"id": call_id, "status": "sent"}

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

    return app
