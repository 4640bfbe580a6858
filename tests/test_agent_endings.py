"""How a call ends from the agent's side: a normal close is the agent hanging up, anything else a failure.

A Pipecat bot ending its pipeline and ElevenLabs ending a conversation close the WebSocket with 1000;
a Twilio-protocol agent has no other way to hang up. That ends the call as hung up by the agent —
after the caller heard what the agent had already sent — with outcome ``agent_hangup``, no prompt and
no media error. 1001, 1006 (no close frame), 1011, 4xxx … stay failures (the fallback prompt plays).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from audio_tools import tone
from fake_agents import FakeElevenLabs, FakeRawAgent, FakeTwilioAgent
from test_bridge import Harness, run_clocks, wait_until

from orchestrator.media import lifecycle
from orchestrator.media.websocket import Text, WebSocket

CID = "c0ffee00-0000-4000-8000-000000000001"
PROMPT = "/usr/share/sorry.wav"
FAIL = {"on_failure": "prompt", "fallback_prompt": PROMPT}


def metric(h: Harness, line: str) -> bool:
    return line in h.bridge.metrics.render().decode()


async def ended(h: Harness) -> dict[str, Any]:
    await wait_until(lambda: h.control.calls, timeout=5)
    h.notice("hangup", CID)
    return h.control.records[CID]


# -- normal closes -----------------------------------------------------------------------------------
async def test_raw_agent_closing_normally_hangs_up_without_prompt_or_error() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}, **FAIL) as h:
        await h.fork()
        await agent.wait_session()
        await agent.send_transcript("agent", "Goodbye.")
        await agent.close(1000, "bye")
        record = await ended(h)
    assert h.control.calls == [("hangup", CID, "completed", "agent")]
    assert record["outcome"] == "agent_hangup" and record["detail"] == "closed 1000 bye"
    assert not metric(h, 'kind="agent_closed"') and metric(
        h, 'sipagent_media_sessions_ended_total{outcome="agent_hangup"} 1.0'
    )


async def test_twilio_agent_ending_its_pipeline_hangs_up() -> None:
    """What a Pipecat bot does at the end: its last media, then the WebSocket closes with 1000."""
    async with FakeTwilioAgent() as agent, Harness({"protocol": "twilio", "url": agent.url}, **FAIL) as h:
        f = await h.fork(rate=8000)
        await agent.wait_for(lambda: agent.sessions and agent.session.of_type("start"))
        await agent.send_audio(tone(500, 8000, 200))
        await agent.close(1000)
        record = await ended(h)
        assert len(f.audio) >= 3200  # what it said was played before the hang-up
    assert h.control.calls == [("hangup", CID, "completed", "agent")] and record["outcome"] == "agent_hangup"


class NoStatusClose(asyncio.Protocol):
    """An agent that says one thing, then sends a close frame without a status code (1005)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: Any = transport
        self.ws = WebSocket.server()

    def data_received(self, data: bytes) -> None:
        for event in self.ws.receive_data(data):
            if type(event).__name__ == "Request":
                self.ws.accept()
            elif isinstance(event, Text) and json.loads(event.data).get("type") == "start":
                self.t.write(self.ws.data_to_send() + self.ws.text('{"type":"clear"}'))
                self.t.write(bytes((0x88, 0)))  # FIN + close, empty payload
        self.t.write(self.ws.data_to_send())


async def test_a_close_frame_without_a_code_is_a_normal_close() -> None:
    server = await asyncio.get_running_loop().create_server(NoStatusClose, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with Harness({"protocol": "raw", "url": f"ws://127.0.0.1:{port}/a"}, **FAIL) as h:
        await h.fork()
        record = await ended(h)
    server.close()
    assert h.control.calls == [("hangup", CID, "completed", "agent")] and record["detail"] == "closed 1005"


# -- abnormal closes -------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [1001, 1002, 1008, 1011, 1012, 3000, 4000, 4999])
async def test_other_close_codes_are_failures_with_the_prompt(code: int) -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}, **FAIL) as h:
        await h.fork()
        await agent.wait_session()
        await agent.send_transcript("agent", "Hello")
        await wait_until(lambda: h.bridge.sessions[CID].heard)
        await agent.close(code, "gone")
        record = await ended(h)
    assert h.control.calls[0] == ("prompt", CID, PROMPT, "agent_closed")
    assert record["outcome"] == "agent_closed" and f"({code} gone)" in record["detail"]
    assert metric(h, 'sipagent_media_errors_total{kind="agent_closed"} 1.0')


async def test_a_connection_dropped_without_a_close_frame_is_a_failure() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}, **FAIL) as h:
        await h.fork()
        await agent.wait_session()
        await agent.send_transcript("agent", "Hello")
        await wait_until(lambda: h.bridge.sessions[CID].heard)
        agent.session.ws.transport.abort()
        record = await ended(h)
    assert h.control.calls[0][3] == "agent_closed" and "1006" in record["detail"]


async def test_our_own_close_is_no_failure() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}, **FAIL) as h:
        await h.fork()
        await agent.wait_session()
        await agent.send_transcript("agent", "Hello")
        await wait_until(lambda: h.bridge.sessions[CID].heard)
        await h.bridge.stop()  # the orchestrator stops: it closes the agent (1001), the call is not ended
        await agent.wait_for(lambda: agent.session.closed.is_set())
        await asyncio.sleep(0.1)
        assert h.control.calls == [] and h.bridge.sessions[CID].state == "open"


# -- hanging up after the caller heard the rest ----------------------------------------------------------
@pytest.mark.parametrize("how", ["close", "hangup-message"])
async def test_the_agent_hangs_up_after_its_last_words_are_heard(how: str) -> None:
    async with (
        FakeRawAgent(rate=8000) as agent,
        Harness({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}) as h,
    ):
        f = await h.fork(rate=8000)
        await agent.wait_for(lambda: agent.sessions and agent.session.of_type("start"))
        goodbye = tone(700, 8000, 1000)
        t0 = time.monotonic()
        await agent.send_audio(goodbye)  # a second of audio, sent at once
        if how == "close":
            await agent.close(1000)
        else:
            await agent.send_hangup("done \x07 " + "x" * 200)
        await wait_until(lambda: h.control.calls, timeout=4)
        waited = time.monotonic() - t0
        assert len(f.audio) >= len(goodbye)  # all of it went to FreeSWITCH before the hang-up
        assert 0.75 < waited < 1.6  # and had time to be played
        record = await ended(h)
    assert h.control.calls == [("hangup", CID, "completed", "agent")] and record["outcome"] == "agent_hangup"
    if how == "hangup-message":
        assert record["detail"].startswith("done \ufffd x") and len(record["detail"]) <= 64


# -- ElevenLabs -----------------------------------------------------------------------------------------
def eleven(agent: FakeElevenLabs) -> dict[str, Any]:
    return {"protocol": "elevenlabs", "agent_id": "a", "url": agent.url}


async def eleven_session(h: Harness, agent: FakeElevenLabs) -> None:
    await h.fork()
    await agent.wait_for(lambda: agent.sessions and agent.session.of_type("conversation_initiation_client_data"))
    await wait_until(lambda: h.bridge.sessions[CID].heard)


@pytest.mark.parametrize("code", [1000, 1002, 1011])
async def test_elevenlabs_end_call_then_any_close_is_a_hangup(code: int) -> None:
    async with FakeElevenLabs() as agent, Harness(eleven(agent), **FAIL) as h:
        await eleven_session(h, agent)
        event = {"tool_name": "end_call", "tool_call_id": "e1", "tool_type": "system", "is_error": False}
        await agent.send_json({"type": "agent_tool_response", "agent_tool_response": event})
        await agent.close(code)
        record = await ended(h)
    assert h.control.calls == [("hangup", CID, "completed", "agent")]
    assert record["outcome"] == "agent_hangup" and record["detail"].startswith(f"end_call; closed {code}")
    assert record["agent_events"][0]["tool"] == "end_call"


async def test_elevenlabs_end_call_without_a_close_hangs_up_after_a_grace() -> None:
    async with FakeElevenLabs() as agent, Harness(eleven(agent), **FAIL) as h:
        await eleven_session(h, agent)
        event = {"tool_name": "end_call", "tool_call_id": "e1", "tool_type": "system", "is_error": False}
        await agent.send_json({"type": "agent_tool_response", "agent_tool_response": event})
        sess = h.bridge.sessions[CID]
        await wait_until(lambda: sess.life.ending is not None)
        run_clocks(sess, lifecycle.ENDING_GRACE - 0.5)
        assert sess.state == "open"  # still waiting for the close
        run_clocks(sess, lifecycle.ENDING_GRACE)
        record = await ended(h)
    assert h.control.calls == [("hangup", CID, "completed", "agent")] and "no close followed" in record["detail"]


async def test_elevenlabs_error_then_close_is_a_failure_that_says_why() -> None:
    async with FakeElevenLabs() as agent, Harness(eleven(agent), **FAIL) as h:
        await eleven_session(h, agent)
        error = {
            "code": 1008,
            "message": "Override for field 'first_message' is not allowed",
            "error_type": "override_error",
        }
        await agent.send_json({"type": "error", "error_event": error})
        await agent.send_json({"type": "client_error", "message": "second"})
        await agent.close(1008, "Override not allowed")
        record = await ended(h)
    assert h.control.calls[0] == ("prompt", CID, PROMPT, "agent_closed")
    assert "1008 Override not allowed" in record["detail"] and "second" in record["detail"]
    assert [e["kind"] for e in record["agent_events"]] == ["error", "error"]
    assert record["agent_events"][0]["error_type"] == "override_error"
    assert metric(h, 'sipagent_media_errors_total{kind="agent_error"} 2.0')


async def test_elevenlabs_correction_replaces_the_agent_line_in_the_record() -> None:
    async with FakeElevenLabs() as agent, Harness(eleven(agent)) as h:
        await eleven_session(h, agent)
        await agent.send_agent_response("Let me tell you about the complete history of")
        await agent.send_user_transcript("Stop.")
        correction = {
            "original_agent_response": "Let me tell you about…",
            "corrected_agent_response": "Let me tell you",
        }
        await agent.send_json({"type": "agent_response_correction", "agent_response_correction_event": correction})
        await agent.send_agent_response("Sure.")
        await wait_until(lambda: len(h.bridge.sessions[CID].stats.transcript) == 3)
        h.notice("hangup", CID)
    lines = [(line["role"], line["text"]) for line in h.control.records[CID]["transcript"]]
    assert lines == [("agent", "Let me tell you"), ("user", "Stop."), ("agent", "Sure.")]
    assert h.control.records[CID]["transcript"][0]["corrected"] is True


async def test_a_server_side_transfer_is_recorded() -> None:
    async with FakeElevenLabs() as agent, Harness(eleven(agent)) as h:
        await eleven_session(h, agent)
        event = {"tool_name": "transfer_to_number", "tool_call_id": "x1", "tool_type": "system", "is_error": False}
        await agent.send_json({"type": "agent_tool_response", "agent_tool_response": event})
        await wait_until(lambda: h.bridge.sessions[CID].events)
        h.notice("hangup", CID)
    (recorded,) = h.control.records[CID]["agent_events"]
    assert recorded["tool"] == "transfer_to_number" and "note" in recorded and h.control.calls == []
