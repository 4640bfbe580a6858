"""mod_audio_fork control, sans-I/O: the ``uuid_audio_fork`` command and per-call URL tokens.

FreeSWITCH splits API arguments on blanks; inside an argument a backslash escapes the next
character and single quotes group (see ``../shared/reference/media-protocols.md``). The metadata
JSON is therefore written compact, with ``\\`` doubled, blanks as ``\\s`` and ``'`` as ``\\'``, so it
reaches the WebSocket server byte for byte (checked against a real FreeSWITCH in
tests/integration).

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
import json
import re
import secrets
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SUBPROTOCOL = "audio.drachtio.org"
BUG_NAME = "sipagent"
MAX_METADATA = 8192
MAX_METADATA_FRAME = 2 * MAX_METADATA  # what the bridge reads (FreeSWITCH may re-print the JSON)
MAX_VARIABLES = 128
TOKEN_BYTES = 16
NONCE_BYTES = 8
TOKEN_LENGTH = 2 * (NONCE_BYTES + TOKEN_BYTES)
_HEX = re.compile(r"[0-9a-f]+")


class MetadataTooLarge(ValueError):
    """The metadata would exceed what mod_audio_fork takes (:data:`MAX_METADATA`)."""


def escape_argument(text: str) -> str:
    """Escape one argument for FreeSWITCH's API argument splitting."""
    if any(ord(c) < 32 for c in text):
        raise ValueError("control characters cannot be passed as an API argument")
    return text.replace("\\", "\\\\").replace("'", "\\'").replace(" ", "\\s")


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
    """What :func:`start_command` sends (the controller's ``_fork_command``), checked on arrival.

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
    """Outside text for a log line: escaped, bounded."""
    return ascii(text)[1:-1][:300]


def fork_url(media_url: str, call_uuid: str, token: str) -> str:
    """The WebSocket URL FreeSWITCH connects to for one call."""
    return f"{media_url.rstrip('/')}/calls/{quote(call_uuid)}?token={token}"


def start_command(
    call_uuid: str,
    url: str,
    rate: str,
    metadata: dict[str, Any],
    mix: str = "mono",
    stream_rate: int | None = None,
    module: str = "mod_audio_fork",
) -> str:
    """``uuid_audio_fork <uuid> start <url> <mix> <rate> <bug> <metadata>`` (api arguments).

    With ``stream_rate`` the jambonz form: ``… <metadata> true true <stream_rate>`` turns on
    bidirectional streaming (the bridge sends L16 at ``stream_rate`` back and it is played at once).
    With ``module="mod_audio_stream"``: ``uuid_audio_stream <uuid> start <url> <mix> <rate> <metadata>``
    (its bug name is fixed; the metadata is the rest of the line, split and unescaped the same way).
    """
    if rate not in ("8k", "16k"):
        raise ValueError("fork rate must be 8k or 16k")
    text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_METADATA:
        raise MetadataTooLarge(f"fork metadata exceeds {MAX_METADATA} bytes")
    if any(c in url for c in " '\\\n"):
        raise ValueError("fork URL cannot contain blanks, quotes or backslashes")
    if module == "mod_audio_stream":
        if stream_rate is not None:
            raise ValueError("mod_audio_stream cannot stream audio back")
        return f"uuid_audio_stream {call_uuid} start {url} {mix} {rate} {escape_argument(text)}"
    command = f"uuid_audio_fork {call_uuid} start {url} {mix} {rate} {BUG_NAME} {escape_argument(text)}"
    if stream_rate is not None:
        if stream_rate not in (8000, 16000, 24000, 48000):
            raise ValueError("stream rate must be 8000, 16000, 24000 or 48000")
        command += f" true true {stream_rate}"
    return command


def stop_command(call_uuid: str, module: str = "mod_audio_fork") -> str:
    """Stop the call's fork."""
    if module == "mod_audio_stream":
        return f"uuid_audio_stream {call_uuid} stop"
    return f"uuid_audio_fork {call_uuid} stop {BUG_NAME}"
