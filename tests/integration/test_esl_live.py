"""The ESL client against a running FreeSWITCH given by ``FREESWITCH_ESL=host:port:password``.

Only needs the event socket (no particular dialplan): auth, api, bgapi with BACKGROUND_JOB,
subscriptions, the resync queries, typed errors, and reconnecting after the link drops.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from orchestrator.esl.client import AuthenticationFailed, Backoff, Endpoint, EslClient
from orchestrator.esl.protocol import CommandError, Event

SPEC = os.environ.get("FREESWITCH_ESL", "")
pytestmark = pytest.mark.skipif(
    SPEC.count(":") < 2, reason="live ESL test: set FREESWITCH_ESL=host:port:password of a running FreeSWITCH"
)


@pytest.fixture()
def endpoint() -> Endpoint:
    return Endpoint.parse(SPEC, "live")


async def test_api_bgapi_and_events(endpoint: Endpoint) -> None:
    events: list[Event] = []
    client = EslClient(endpoint, events=["BACKGROUND_JOB", "HEARTBEAT", "API"], on_event=events.append)
    await client.start()
    try:
        await client.wait_connected(5)
        status = await client.api("status")
        assert "FreeSWITCH" in status and "is ready" in status
        assert (await client.bgapi("status", timeout=10)).startswith("UP ")
        with pytest.raises(CommandError, match="no_such_command"):
            await client.api("no_such_command")
        assert await client.api("uuid_exists 00000000-0000-0000-0000-000000000000") == "false"
        rows = json.loads(await client.api("show channels as json"))
        assert "row_count" in rows
        assert any(e.name == "BACKGROUND_JOB" for e in events)
    finally:
        await client.stop()


async def test_reconnects_after_the_link_drops(endpoint: Endpoint) -> None:
    connects = 0

    async def on_connect() -> None:
        nonlocal connects
        connects += 1

    client = EslClient(endpoint, events=["HEARTBEAT"], on_connect=on_connect, backoff=Backoff(0.05, 0.5))
    await client.start()
    try:
        await client.wait_connected(5)
        assert client._writer is not None
        client._writer.transport.abort()
        for _ in range(100):
            if client.connections >= 2 and client.connected:
                break
            await asyncio.sleep(0.05)
        assert client.connections >= 2 and connects >= 2
        assert "is ready" in await client.api("status")
    finally:
        await client.stop()


async def test_wrong_password_is_reported(endpoint: Endpoint) -> None:
    bad = Endpoint(endpoint.host, endpoint.port, endpoint.password + "-wrong", "bad")
    client = EslClient(bad, events=["HEARTBEAT"], backoff=Backoff(5, 5))
    await client.start()
    try:
        for _ in range(100):
            if client.last_error:
                break
            await asyncio.sleep(0.02)
        assert "authentication failed" in client.last_error and not client.connected
        assert isinstance(client.last_exception, AuthenticationFailed)  # the error type callers can catch
    finally:
        await client.stop()
