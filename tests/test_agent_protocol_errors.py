"""Malformed input from an agent is counted and logged (rate-limited), never raised; the call goes on.

Deep nesting, huge numbers, NaN/Infinity, invalid UTF-8 in binary frames, wrong types: each is a
protocol violation (``sipagent_media_errors_total{kind="agent_protocol"}``, one log line, at most 20 per
call and a bounded rate per process). A message over the WebSocket size limit closes the connection
(1009), which ends the call as a failure.
"""

from __future__ import annotations

import contextlib
import logging

import pytest
from fake_agents import FakeElevenLabs, FakeRawAgent
from test_bridge import Harness, wait_until
from websockets.exceptions import ConnectionClosed

from orchestrator.logs import LogThrottle
from orchestrator.media import agent_connection

CID = "c0ffee00-0000-4000-8000-000000000001"

HOSTILE = [
    '{"type":"audio","audio_event":' + "[" * 100_000,
    '{"type":"ping","ping_event":{"event_id":1e400}}',
    '{"type":"ping","ping_event":{"event_id":NaN}}',
    '{"type":"ping","ping_event":{"event_id":-Infinity}}',
    '{"type":"ping","ping_event":{"event_id":' + "9" * 5000 + "}}",
    '{"type":"ping","ping_event":{"event_id":"' + "9" * 5000 + '"}}',
    '{"type":"ping","ping_event":{"event_id":99999999999999999999999}}',
    '{"type":"agent_response","agent_response_event":{"agent_response":["x"]}}',
    '{"type":"client_tool_call","client_tool_call":{"tool_name":"transfer_call","tool_call_id":"t","parameters":{"number":{"a":1}}}}',
    '{"type":"audio","audio_event":{"event_id":1,"audio_base_64":"***"}}',
    '{"type":' + "1" * 5000 + "}",
    "[]",
    "null",
    '"\\ud800"',
    b"\xff\xfe not utf-8",
    b'{"type":"ping","ping_event":{"event_id":3}}',  # JSON in a binary frame: understood
]


def test_log_throttle_allows_a_burst_per_window_then_counts_what_it_held_back() -> None:
    now = [0.0]
    t = LogThrottle(burst=3, window=10.0, clock=lambda: now[0])
    assert [t.allow("agent") for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 9.9
    assert t.allow("agent") is None
    now[0] = 10.0  # a new window: the first line says three were held back
    assert t.allow("agent") == 3 and t.allow("agent") == 0


async def test_hostile_messages_are_violations_and_the_call_goes_on() -> None:
    async with FakeElevenLabs() as agent, Harness({"protocol": "elevenlabs", "agent_id": "a", "url": agent.url}) as h:
        await h.fork()
        await agent.wait_for(lambda: agent.sessions and agent.session.of_type("conversation_initiation_client_data"))
        for message in HOSTILE:
            await (agent.send_bytes(message) if isinstance(message, bytes) else agent.send_text(message))
        await agent.wait_for(lambda: agent.session.of_type("pong"))
        session = h.bridge.sessions[CID]
        await wait_until(lambda: session.stats.violations == len(HOSTILE) - 2)  # all but the pong and a tool error
        assert h.control.calls == [] and session.state == "open"
        assert agent.session.of_type("pong")[0]["event_id"] == 3
        (tool,) = agent.session.of_type("client_tool_result")
        assert tool["is_error"] is True
    text = h.bridge.metrics.render().decode()
    assert f'sipagent_media_errors_total{{kind="agent_protocol"}} {len(HOSTILE) - 2}.0' in text


async def test_a_spamming_agent_cannot_flood_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_connection, "AGENT_LOG", LogThrottle(burst=20, window=10.0))
    caplog.set_level(logging.INFO, "sipagent.media")
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        await h.fork("c0ffee00-0000-4000-8000-000000000001")
        await h.fork("c0ffee00-0000-4000-8000-000000000002")
        await agent.wait_session(2)
        for session in agent.sessions:
            for i in range(500):
                await agent.send_text(f'{{"type":"nonsense","n":{i}}}', session=session)
        await wait_until(lambda: sum(s.stats.violations for s in h.bridge.sessions.values()) == 1000, timeout=10)
    lines = [r for r in caplog.records if "nonsense" in r.getMessage()]
    assert 1 <= len(lines) <= 40  # 20 per call at most, and the process-wide rate
    assert all(len(r.getMessage()) < 400 for r in lines)


async def test_an_oversized_message_closes_the_connection_and_fails_the_call() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        await h.fork()
        await agent.wait_session()
        await agent.send_transcript("agent", "hi")
        await wait_until(lambda: h.bridge.sessions[CID].heard)
        with contextlib.suppress(ConnectionClosed):  # the bridge closes while this is on its way
            await agent.send_text('{"type":"transcript","role":"agent","text":"' + "x" * (5 << 20) + '"}')
        await wait_until(lambda: h.control.calls, timeout=5)
        await agent.wait_for(lambda: agent.session.closed.is_set())
        assert agent.session.close_code == 1009
    session = h.bridge.sessions[CID]
    assert session.outcome == "agent_closed" and "byte limit" in session.detail
