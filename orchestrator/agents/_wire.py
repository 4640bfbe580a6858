"""Helpers shared by the adapters: parsing agent JSON without ever raising, field checks, call facts."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from orchestrator.agents.base import MAX_BRIEF, TRANSFER_MODES, Action, CallInfo, Message, ProtocolViolation

#: the largest integer an event id may be (JSON numbers beyond it are not ids)
MAX_EVENT_ID = (1 << 63) - 1
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class Malformed(Exception):
    """A message is not what its protocol says; becomes a :class:`ProtocolViolation`."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]}… is out of range")
    return value


_decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def parse_object(message: str | bytes) -> dict[str, Any]:
    """A JSON object from a text frame (or a binary frame holding UTF-8 JSON), or :class:`Malformed`.

    Whatever the input — invalid UTF-8, nesting deep enough to exhaust the recursion limit, ``NaN``,
    ``Infinity`` or numbers beyond a float's range, integers too long to convert — the only exception
    is :class:`Malformed`.
    """
    frame = ""
    if isinstance(message, bytes | bytearray | memoryview):
        frame = f"binary frame of {len(message)} bytes: "
        try:
            message = bytes(message).decode()
        except UnicodeDecodeError as exc:
            raise Malformed(f"{frame}not UTF-8 text ({exc.reason})") from None
    try:
        data = _decoder.decode(message)
    except RecursionError:
        raise Malformed(f"{frame}invalid JSON: nested too deeply") from None
    except (ValueError, OverflowError) as exc:
        raise Malformed(f"{frame}invalid JSON: {clean(str(exc), 200)}") from None
    if not isinstance(data, dict):
        raise Malformed(f"{frame}expected a JSON object, got {type(data).__name__}")
    return data


def receive_json(
    message: Message, key: str, number: int, handle: Callable[[str, dict[str, Any]], list[Action]]
) -> list[Action]:
    """An agent's JSON message naming its kind in ``key``: ``handle(kind, data)``'s actions.

    Whatever is malformed — not a JSON object, no ``key``, or what ``handle`` raises as :class:`Malformed`
    (or ``ValueError``) — is one :class:`ProtocolViolation` naming the message's ``number`` and its kind.
    """
    kind = None
    try:
        data = parse_object(message)
        kind = data.get(key)
        if not isinstance(kind, str):
            raise Malformed(f"no '{key}'")
        return handle(kind, data)
    except (Malformed, ValueError) as exc:
        shown = f" ({key} '{clean(kind, 40)}')" if isinstance(kind, str) else ""
        return [ProtocolViolation(where=f"agent message #{number}{shown}", detail=str(exc))]


def clean(text: str, limit: int, keep_newlines: bool = False) -> str:
    """``text`` for a record or a log line: control characters and lone surrogates replaced, at most ``limit``."""
    if len(text) > limit:
        text = text[:limit] + "…"
    if keep_newlines:
        return _UNPRINTABLE.sub("\ufffd", text)
    return _UNPRINTABLE.sub("\ufffd", text.replace("\n", " ").replace("\t", " "))


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
        number = int(value)
    except ValueError:
        raise Malformed(f"'{name}' is not an integer") from None
    if not -MAX_EVENT_ID <= number <= MAX_EVENT_ID:
        raise Malformed(f"'{name}' is out of range")
    return number


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


#: words agents (and the LLMs behind them) use for the two transfer modes
_MODE_WORDS = {"blind": "blind", "cold": "blind", "attended": "attended", "warm": "attended"}


def transfer_mode(mode: object, brief: object) -> tuple[str, str]:
    """A transfer request's (mode, brief): ``mode`` blind (default; also ``cold``) or attended (also ``warm``), and
    the brief for the target (attended only; text, at most :data:`~orchestrator.agents.base.MAX_BRIEF`
    characters, control characters replaced), or :class:`Malformed`."""
    if mode is None or mode == "":
        word = "blind"
    elif isinstance(mode, str) and mode.strip().lower() in _MODE_WORDS:
        word = _MODE_WORDS[mode.strip().lower()]
    else:
        shown = clean(mode, 20) if isinstance(mode, str) else type(mode).__name__
        raise Malformed(f"'mode' '{shown}' is not one of {', '.join(TRANSFER_MODES)}")
    if brief is None:
        return word, ""
    if not isinstance(brief, str):
        raise Malformed("'brief' is not a string")
    if len(brief) > MAX_BRIEF:
        raise Malformed(f"'brief' is longer than {MAX_BRIEF} characters")
    if word != "attended":
        return word, ""  # a blind transfer briefs nobody
    return word, clean(brief.strip(), MAX_BRIEF)
