"""Helpers shared by the adapters: parsing agent JSON without ever raising, field checks, call facts."""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrator.agents.base import CallInfo

DTMF_DIGITS = re.compile(r"[0-9*#A-D]")
#: digits an agent may ask to send; ``w``/``W`` are FreeSWITCH's 0.5 s / 1 s pauses
DTMF_SEQUENCE = re.compile(r"[0-9*#A-DwW]{1,64}")


class Malformed(Exception):
    """A message is not what its protocol says; becomes a :class:`ProtocolViolation`."""


def parse_object(message: str | bytes) -> dict[str, Any]:
    """A JSON object from a text frame, or :class:`Malformed`."""
    if isinstance(message, bytes):
        raise Malformed(f"unexpected binary frame ({len(message)} bytes)")
    try:
        data = json.loads(message)
    except ValueError as exc:
        raise Malformed(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Malformed(f"expected a JSON object, got {type(data).__name__}")
    return data


def get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], path: str = "") -> Any:
    """``obj[key]`` if present and of ``kind``; :class:`Malformed` otherwise (``path`` prefixes the name)."""
    value = obj.get(key)
    if value is None or not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        what = "missing" if value is None else f"not {_kind_name(kind)}"
        raise Malformed(f"'{path}{key}' is {what}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", str: "a string", int: "an integer", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def event_id(value: Any, name: str) -> int:
    """An integer event id (ElevenLabs sends numbers; accept digit strings too)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Malformed(f"'{name}' is {'missing' if value is None else 'not an integer'}")
    try:
        return int(value)
    except ValueError:
        raise Malformed(f"'{name}' is not an integer") from None


def call_facts(call: CallInfo) -> dict[str, str]:
    """Call variables plus the call's own facts (which win over variables of the same name)."""
    return {
        **call.variables,
        "caller_id": call.caller_id,
        "called_number": call.called_number,
        "call_id": call.call_id,
        "direction": call.direction,
    }


def valid_target(target: str) -> bool:
    """A plausible transfer target: non-empty, no blanks or control characters (the controller checks more)."""
    return 0 < len(target) <= 256 and not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target)
