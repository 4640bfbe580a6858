"""JSON-RPC 2.0 requests and responses as bytes, no I/O (https://www.jsonrpc.org/specification).

What Kamailio's jsonrpcs module speaks: positional ``params`` only (it ignores names), one request per
datagram, the response carrying the request's ``id``. :mod:`orchestrator.edge.rpc` moves these bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: an RPC method name as Kamailio names them (``dispatcher.reload``); nothing else is sent
METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
MAX_METHOD = 64


class ProtocolError(Exception):
    """Bytes that are not a JSON-RPC 2.0 response."""


@dataclass(frozen=True)
class Fault:
    """The error member of a response: code, message and optional data, as the server sent them."""

    code: int
    message: str
    data: Any = None


@dataclass(frozen=True)
class Response:
    """A parsed response: ``result`` or ``fault``, for the request ``id``."""

    id: int | str | None
    result: Any = None
    fault: Fault | None = None


def encode_request(method: str, params: Sequence[Any], request_id: int) -> bytes:
    """A request with positional params. Refuses (ValueError) a method name Kamailio would not have and params
    that are not plain JSON values."""
    if len(method) > MAX_METHOD or not METHOD.fullmatch(method):
        raise ValueError(f"{method[:MAX_METHOD]!r} is not an RPC method name (e.g. dispatcher.reload)")
    doc: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params:
        doc["params"] = list(params)
    try:
        return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params of {method} are not plain JSON values: {exc}") from None


def decode_response(data: bytes) -> Response:
    """Parse one response document; anything else raises :class:`ProtocolError` (its text quotes at most a
    little of what came)."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(f"not JSON: {data[:80]!r}") from None
    if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0":
        raise ProtocolError(f"not a JSON-RPC 2.0 response: {data[:80]!r}")
    rid = doc.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, int | str)):
        raise ProtocolError(f"response id {rid!r} is neither a number nor a string")
    if "error" in doc:
        error = doc["error"]
        if not isinstance(error, dict):
            raise ProtocolError(f"error member is not an object: {error!r:.80}")
        code, message = error.get("code"), error.get("message")
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
            raise ProtocolError(f"error member without an integer code and a message: {error!r:.80}")
        return Response(rid, fault=Fault(code, message, error.get("data")))
    if "result" not in doc:
        raise ProtocolError(f"response with neither result nor error: {data[:80]!r}")
    return Response(rid, result=doc["result"])
