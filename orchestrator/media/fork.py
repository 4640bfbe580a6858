"""A call's fork, sans-I/O: per-call URL tokens and the metadata the bridge checks on arrival.

The fork modules' commands and events are :mod:`orchestrator.media.dialects`.

Every fork URL carries a token minted for that one fork start: a random nonce and
``HMAC-SHA256(secret, nonce + call uuid)``. The media bridge checks the MAC itself (a forged token
costs nothing), then asks the call controller to *claim* it: the controller accepts each nonce once,
only for a live call whose fork it has just started (:meth:`CallTracker.claim_fork`). A token
replayed after the call ended, used twice, or made for a call that does not exist is refused; a
re-fork (after a restart, a failed transfer) mints a new one.

The first text frame of a fork is its metadata, checked by :func:`parse_metadata` against
:class:`ForkMetadata` (size, JSON depth, every field's type and bounds).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.logs import escaped
from orchestrator.media.dialects import MAX_METADATA

MAX_METADATA_FRAME = 2 * MAX_METADATA  # what the bridge reads (FreeSWITCH may re-print the JSON)
MAX_VARIABLES = 128
TOKEN_BYTES = 16
NONCE_BYTES = 8
TOKEN_LENGTH = 2 * (NONCE_BYTES + TOKEN_BYTES)
_HEX = re.compile(r"[0-9a-f]+")


def new_nonce() -> str:
    """A fresh per-fork-start nonce (hex)."""
    return secrets.token_hex(NONCE_BYTES)


class Tokens:
    """Fork tokens: ``<nonce><mac>`` in hex, the MAC over the nonce and the call's UUID under one secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def _mac(self, call_uuid: str, nonce: str) -> str:
        message = f"fork:{nonce}:{call_uuid}".encode("utf-8", "surrogatepass")
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[: TOKEN_BYTES * 2]

    def token(self, call_uuid: str, nonce: str | None = None) -> str:
        """A token for one fork start of a call (a fresh nonce unless given)."""
        nonce = nonce or new_nonce()
        if len(nonce) != 2 * NONCE_BYTES or not _HEX.fullmatch(nonce):
            raise ValueError("a fork nonce is 16 lowercase hex digits")
        return nonce + self._mac(call_uuid, nonce)

    def verify(self, call_uuid: str, token: str) -> str | None:
        """The token's nonce when its MAC is right for this call (constant time), else None.

        Only the MAC is checked here: whether the call is waiting for this fork is the controller's to say.
        """
        if len(token) != TOKEN_LENGTH or not _HEX.fullmatch(token):
            return None
        nonce, mac = token[: 2 * NONCE_BYTES], token[2 * NONCE_BYTES :]
        return nonce if hmac.compare_digest(self._mac(call_uuid, nonce), mac) else None


# -- the request target (``/calls/<uuid>?token=…``) ------------------------------------------------------
_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class TargetError(ValueError):
    """A fork's request target that names no call: ``status`` (400, 404) and ``text`` to answer with."""

    def __init__(self, status: int, text: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.text = text
        self.detail = detail  # for a log line: escaped, without the query (it holds the token)


def parse_target(target: str) -> tuple[str, str]:
    """``/calls/<uuid>?token=<token>`` → (call id, token: "" when absent); :class:`TargetError` otherwise."""
    path = target.split("?", 1)[0][:200]
    try:
        parts = urlsplit(target)
        segments = parts.path.strip("/").split("/")
        call_id = unquote(segments[1], errors="strict") if len(segments) == 2 and segments[0] == "calls" else ""
        tokens = parse_qs(parts.query, max_num_fields=16, errors="strict").get("token") or [""]
    except (ValueError, UnicodeError) as exc:  # "//[x" (an unclosed IPv6 host), too many fields, bad escapes
        raise TargetError(400, "bad request target", _clean(f"request target {path!r} refused: {exc}")) from None
    if not _CALL_ID.fullmatch(call_id):
        raise TargetError(404, "unknown path", _clean(f"unknown path {path!r}"))
    if len(tokens) != 1:
        raise TargetError(403, "bad token", f"call {call_id}: more than one token")
    return call_id, tokens[0]


# -- metadata (the fork's first text frame) ----------------------------------------------------------
class MetadataError(ValueError):
    """Fork metadata the bridge cannot use; ``code`` is the WebSocket close code to answer with."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class ForkMetadata(BaseModel):
    """What :meth:`dialects.Dialect.start` sends (the controller's ``_fork_command``), checked on arrival.

    Unknown keys are ignored; every known one must have its type. ``rate`` is the codec's rate
    (0 when FreeSWITCH did not say); the fork itself runs at 16 kHz from 16 kHz up, else 8 kHz.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    call_id: str = Field("", max_length=128)
    direction: Literal["inbound", "outbound", ""] = ""
    agent: str = Field(min_length=1, max_length=128)
    trunk: str = Field("", max_length=128)
    caller_id: str = Field("", max_length=256)
    called_number: str = Field("", max_length=256)
    codec: str = Field("", max_length=64)
    rate: Literal[0, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000] = 8000
    variables: dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=4096)]] = (
        Field(default_factory=dict, max_length=MAX_VARIABLES)
    )
    #: per-call agent settings, checked by orchestrator.agents.overrides (an invalid object is dropped, not fatal)
    agent_overrides: Any = None
    #: inbound: the index of the routing rule that chose the agent (its agent overrides apply); none: the number's
    route_rule: int | None = Field(None, ge=0, le=1000)
    #: outbound answering-machine detection settings, checked by the session (orchestrator.media.amd)
    machine_detection: Any = None

    @property
    def fork_rate(self) -> int:
        """The rate of the fork's audio (what ``uuid_audio_fork … 8k|16k`` was given)."""
        return 16000 if self.rate >= 16000 else 8000


def parse_metadata(text: str) -> ForkMetadata:
    """The fork's metadata frame, validated; :class:`MetadataError` (with a close code) when it cannot be used."""
    if len(text) > MAX_METADATA_FRAME:
        raise MetadataError(1009, f"metadata of {len(text)} characters exceeds {MAX_METADATA_FRAME}")
    try:
        return ForkMetadata.model_validate_json(text)
    except ValidationError as exc:
        raise MetadataError(1008, _describe(exc)) from None
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:  # pydantic reports all as above; belt
        raise MetadataError(1008, f"metadata cannot be read: {type(exc).__name__}") from None


def _describe(exc: ValidationError) -> str:
    """A short account of what was wrong, with the peer's keys escaped (it goes to a log)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "metadata"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return _clean("; ".join(parts) + (f" (+{more} more)" if more > 0 else ""))


def _clean(text: str) -> str:
    """Outside text for a log line: escaped, at most 300 characters."""
    return escaped(text, 300)[:300]


def fork_url(media_url: str, call_uuid: str, token: str) -> str:
    """The WebSocket URL FreeSWITCH connects to for one call."""
    return f"{media_url.rstrip('/')}/calls/{quote(call_uuid)}?token={token}"
