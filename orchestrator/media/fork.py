"""mod_audio_fork control, sans-I/O: the ``uuid_audio_fork`` command and per-call URL tokens.

FreeSWITCH splits API arguments on blanks; inside an argument a backslash escapes the next
character and single quotes group (see ``../shared/reference/media-protocols.md``). The metadata
JSON is therefore written compact, with ``\\`` doubled, blanks as ``\\s`` and ``'`` as ``\\'``, so it
reaches the WebSocket server byte for byte (checked against a real FreeSWITCH in
tests/integration).

Every fork URL carries a token, ``HMAC-SHA256(secret, call uuid)``: the media bridge accepts a
connection for a call only with that call's token, so nobody else can attach to a call's audio,
and the token can be recomputed after a restart without storing it anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import quote

SUBPROTOCOL = "audio.drachtio.org"
BUG_NAME = "sipagent"
MAX_METADATA = 8192
TOKEN_BYTES = 16


def escape_argument(text: str) -> str:
    """Escape one argument for FreeSWITCH's API argument splitting."""
    if any(ord(c) < 32 for c in text):
        raise ValueError("control characters cannot be passed as an API argument")
    return text.replace("\\", "\\\\").replace("'", "\\'").replace(" ", "\\s")


class Tokens:
    """Per-call tokens derived from one secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def token(self, call_uuid: str) -> str:
        """The token for a call."""
        mac = hmac.new(self.secret, call_uuid.encode(), hashlib.sha256).hexdigest()
        return mac[: TOKEN_BYTES * 2]

    def verify(self, call_uuid: str, token: str) -> bool:
        """Constant-time check of a presented token."""
        return hmac.compare_digest(self.token(call_uuid), token)


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
        raise ValueError(f"fork metadata exceeds {MAX_METADATA} bytes")
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
