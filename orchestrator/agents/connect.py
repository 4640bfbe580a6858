"""Where and how to open an agent's WebSocket (URL, signed URL, headers, TLS), and what a failure was.

Every way setting up an agent connection can fail ends as one :class:`SetupError`: ``outcome`` is the
word the call record gets (``agent_unreachable``, ``agent_tls_failed``, ``agent_signed_url_failed``,
``agent_handshake_failed``, ``agent_connect_timeout``, ``agent_connect_failed``) and ``detail`` says
what happened, without URLs' query strings (a signed URL carries a token) or secrets.
"""

from __future__ import annotations

import socket
import ssl
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import h11
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from orchestrator.agents import _wire, elevenlabs
from orchestrator.agents.http_client import HttpClient, HttpError

#: the signed-URL answer is a small JSON object; more is refused unread
MAX_SIGNED_URL_ANSWER = 64 * 1024

UNREACHABLE = "agent_unreachable"  # DNS, TCP (refused, unreachable, reset)
TLS_FAILED = "agent_tls_failed"  # certificate, host name, TLS protocol
SIGNED_URL_FAILED = "agent_signed_url_failed"  # HTTP status, not JSON, no ws(s) signed_url, HTTP protocol error
HANDSHAKE_FAILED = "agent_handshake_failed"  # WebSocket upgrade refused, bad accept, closed mid-handshake
CONNECT_TIMEOUT = "agent_connect_timeout"  # connect_timeout_seconds passed during setup
CONNECT_FAILED = "agent_connect_failed"  # anything else (an unusable URL, an unexpected error)


class SetupError(Exception):
    """The agent connection could not be set up."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class HandshakeError(Exception):
    """The WebSocket opening handshake failed (raised by the bridge's agent connection)."""


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """Verified TLS 1.2+ to agents (system CA store)."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_context() -> ssl.SSLContext:
    """The TLS context for agents, WebSocket and signed-URL requests alike."""
    return _tls_context()


def agent_http_client() -> HttpClient:
    """The HTTP client a media bridge shares between its calls' signed-URL requests (verified TLS, kept-alive
    connections, no cap on connections: a burst of calls never waits for another call's request; each request
    carries its agent's timeout)."""
    return HttpClient(tls_context, max_idle_per_origin=20)


def endpoint(url: str) -> tuple[str, int, bool]:
    """``(host, port, secure)`` of a ``ws://`` / ``wss://`` URL; :class:`SetupError` when it is not one."""
    try:
        uri = parse_uri(url)
    except (InvalidURI, ValueError) as exc:
        raise SetupError(CONNECT_FAILED, f"unusable agent URL: {_clip(str(exc))}") from None
    if not uri.host:
        raise SetupError(CONNECT_FAILED, "unusable agent URL: no host")
    return uri.host, uri.port, uri.secure


async def resolve(agent: Any, http: HttpClient | None = None) -> tuple[str, dict[str, str], ssl.SSLContext | None]:
    """``(url, headers, tls context or None)`` for one call's agent connection, or :class:`SetupError`.

    ElevenLabs agents with an API key first get a signed URL (the key never goes to the WebSocket);
    public ElevenLabs agents connect with ``?agent_id=``. Configured headers (e.g. ``Authorization``)
    are sent on the upgrade request.
    """
    headers = {name: value.get_secret_value() for name, value in agent.headers.items()}
    if agent.protocol == "elevenlabs":
        request = elevenlabs.signed_url_request(agent)
        if request is not None:
            ws_url = await _signed_url(agent, *request, http)
        else:
            ws_url = elevenlabs.public_url(agent)
    else:
        ws_url = str(agent.url)
    _, _, secure = endpoint(ws_url)
    return ws_url, headers, tls_context() if secure else None


async def _signed_url(agent: Any, url: str, get_headers: dict[str, str], http: HttpClient | None) -> str:
    where = f"signed URL request to {urlsplit(url).netloc}"
    client = http or agent_http_client()
    try:
        # identity: the answer is read raw and bounded, so no decompression can blow it up
        headers = {**get_headers, "Accept-Encoding": "identity"}
        response = await client.get(url, headers, timeout=agent.connect_timeout_seconds, max_body=MAX_SIGNED_URL_ANSWER)
    except Exception as exc:
        raise classify(exc, where) from None
    finally:
        if http is None:
            await client.aclose()
    if not 200 <= response.status < 300:
        raise SetupError(SIGNED_URL_FAILED, f"{where}: answered HTTP {response.status}")
    body = response.body
    try:
        ws_url = elevenlabs.parse_signed_url(bytes(body))
        _, _, secure = endpoint(ws_url)
    except (ValueError, SetupError) as exc:
        raise SetupError(SIGNED_URL_FAILED, f"{where}: {exc}") from None
    if agent.url.startswith("wss:") and not secure:
        raise SetupError(SIGNED_URL_FAILED, f"{where}: the signed URL is ws://, not wss:// as configured")
    return ws_url


def classify(exc: BaseException, where: str) -> SetupError:
    """The :class:`SetupError` for an exception raised while setting up the connection to ``where``."""
    if isinstance(exc, SetupError):
        return exc
    if isinstance(exc, HttpError | h11.ProtocolError):
        return SetupError(SIGNED_URL_FAILED, f"{where}: {_describe(exc)}")
    if isinstance(exc, HandshakeError):
        return SetupError(HANDSHAKE_FAILED, f"{where}: {_clip(str(exc))}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return SetupError(TLS_FAILED, f"{where}: certificate not accepted ({_clip(str(reason))})")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return SetupError(TLS_FAILED, f"{where}: TLS failed ({_describe(exc)})")
    if isinstance(exc, socket.gaierror):
        return SetupError(UNREACHABLE, f"{where}: host name not resolved ({_describe(exc)})")
    if isinstance(exc, TimeoutError):
        return SetupError(CONNECT_TIMEOUT, f"{where}: no answer in time")
    if isinstance(exc, OSError):  # ConnectionRefusedError, ConnectionResetError, unreachable networks …
        return SetupError(UNREACHABLE, f"{where}: {_describe(exc)}")
    if isinstance(exc, InvalidURI | UnicodeError):
        return SetupError(CONNECT_FAILED, f"{where}: unusable address ({_describe(exc)})")
    return SetupError(CONNECT_FAILED, f"{where}: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return _clip(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _clip(text: str) -> str:
    """Bounded, printable, and without a URL's query (signed URLs carry a token)."""
    words = [w.split("?", 1)[0] + "?…" if "://" in w and "?" in w else w for w in text.split(" ")]
    return _wire.clean(" ".join(words), 300)
