"""Where and how to open an agent's WebSocket: URL (ElevenLabs signed URL over HTTPS), headers, TLS."""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import Any

import httpx

from orchestrator.agents import elevenlabs


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """Verified TLS 1.2+ to agents (system CA store)."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def resolve(
    agent: Any, http: httpx.AsyncClient | None = None
) -> tuple[str, dict[str, str], ssl.SSLContext | None]:
    """``(url, headers, tls context or None)`` for one call's agent connection.

    ElevenLabs agents with an API key first get a signed URL (the key never goes to the WebSocket);
    public ElevenLabs agents connect with ``?agent_id=``. Configured headers (e.g. ``Authorization``)
    are sent on the upgrade request.
    """
    headers = {name: value.get_secret_value() for name, value in agent.headers.items()}
    if agent.protocol == "elevenlabs":
        request = elevenlabs.signed_url_request(agent)
        if request is not None:
            url, get_headers = request
            client = http or httpx.AsyncClient()
            try:
                response = await client.get(url, headers=get_headers, timeout=agent.connect_timeout_seconds)
            finally:
                if http is None:
                    await client.aclose()
            if response.status_code != 200:
                raise ConnectionError(f"signed URL request answered HTTP {response.status_code}")
            ws_url = elevenlabs.parse_signed_url(response.content)
        else:
            ws_url = elevenlabs.public_url(agent)
    else:
        ws_url = str(agent.url)
    return ws_url, headers, _tls_context() if ws_url.startswith("wss:") else None
