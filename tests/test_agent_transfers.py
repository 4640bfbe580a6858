"""A transfer's final outcome reaches the agent that asked for it, once.

The controller's ``transfer`` notice (the REFER's final NOTIFY, a bridged leg, a refused command) answers
the agent's pending tool call: ElevenLabs ``client_tool_result`` (``is_error`` when it failed, the SIP
status in the text), raw ``result`` (``ok``, ``detail``); Twilio has no tool results. A command refused at
once is answered at once; no outcome within ``transfer_timeout_seconds`` is answered as an error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fake_agents import FakeElevenLabs, FakeRawAgent, FakeTwilioAgent
from test_bridge import Control, Harness, run_clocks, wait_until

CID = "c0ffee00-0000-4000-8000-000000000001"


def eleven(agent: FakeElevenLabs, **more: Any) -> dict[str, Any]:
    return {"protocol": "elevenlabs", "agent_id": "a", "url": agent.url, **more}


async def started(h: Harness, agent: Any) -> None:
    await h.fork()
    await agent.wait_session()
    await wait_until(lambda: CID in h.bridge.sessions and h.bridge.sessions[CID].state == "open")


@pytest.mark.parametrize(
    ("notice", "is_error", "words"),
    [
        (
            {"succeeded": False, "sip_status": 603, "detail": "Decline", "call_continues": True},
            True,
            ["failed (SIP 603 Decline)", "still on the line"],
        ),
        (
            {"succeeded": False, "sip_status": 486, "detail": "Busy Here", "call_continues": False},
            True,
            ["failed (SIP 486 Busy Here)", "call has ended"],
        ),
        ({"succeeded": True, "sip_status": 200}, False, ["succeeded (SIP 200)"]),
        ({"succeeded": False, "detail": "bridge failed"}, True, ["failed (bridge failed)", "still on the line"]),
    ],
)
async def test_elevenlabs_gets_the_outcome_after_the_notify(
    notice: dict[str, Any], is_error: bool, words: list[str]
) -> None:
    async with FakeElevenLabs() as agent, Harness(eleven(agent)) as h:
        await started(h, agent)
        await agent.send_tool_call("transfer_call", {"number": "+15550001111"}, tool_call_id="t1")
        await wait_until(lambda: ("transfer", CID, "+15550001111") in h.control.calls)
        await asyncio.sleep(0.1)
        assert agent.session.of_type("client_tool_result") == []  # not "started": the outcome is not known yet
        h.notice("transfer", CID, **notice)
        await agent.wait_for(lambda: agent.session.of_type("client_tool_result"))
        (result,) = agent.session.of_type("client_tool_result")
        assert result["tool_call_id"] == "t1" and result["is_error"] is is_error
        assert all(w in result["result"] for w in words), result["result"]
        h.notice("transfer", CID, **notice)  # a repeated notice answers nothing more
        await asyncio.sleep(0.1)
        assert len(agent.session.of_type("client_tool_result")) == 1
        h.notice("hangup", CID)
    (event,) = h.control.records[CID]["agent_events"]
    assert event["kind"] == "transfer" and event["ok"] is not is_error and event["target"] == "+15550001111"


@pytest.mark.parametrize("succeeded", [True, False])
async def test_raw_result_carries_the_outcome(succeeded: bool) -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        await started(h, agent)
        await agent.send_transfer("sip:desk@pbx.example", request_id="r1")
        await wait_until(lambda: h.control.calls)
        h.notice("transfer", CID, succeeded=succeeded, sip_status=200 if succeeded else 480, call_continues=True)
        await agent.wait_for(lambda: agent.session.of_type("result"))
        (result,) = agent.session.of_type("result")
    assert result["id"] == "r1" and result["ok"] is succeeded
    assert ("SIP 200" if succeeded else "SIP 480") in result["detail"]


class RefusingControl(Control):
    """Like the controller: a refused command emits a failed transfer notice, then raises."""

    bridge: Any = None

    async def transfer(self, uuid: str, target: str, **kw: Any) -> None:
        self.calls.append(("transfer", uuid, target))
        notice = type("N", (), {"kind": "transfer", "call": type("C", (), {"uuid": uuid})(), "data": {}})()
        notice.data = {"succeeded": False, "detail": "-ERR Cannot deflect a channel that is not answered"}
        self.bridge.on_notice(notice)
        raise RuntimeError("-ERR Cannot deflect a channel that is not answered")


@pytest.mark.parametrize("notice_too", [False, True])
async def test_a_refused_command_is_answered_at_once_and_once(notice_too: bool) -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        if notice_too:
            h.control = h.bridge.control = RefusingControl()  # type: ignore[assignment]
            h.control.bridge = h.bridge  # type: ignore[attr-defined]
        else:
            h.control.transfer_error = RuntimeError("call is new, transfers need an answered call")
        await started(h, agent)
        await agent.send_transfer("+15550001111", request_id="r1")
        await agent.wait_for(lambda: agent.session.of_type("result"))
        await asyncio.sleep(0.1)
        (result,) = agent.session.of_type("result")
    assert result["ok"] is False and ("answered" in result["detail"])
    assert h.bridge.sessions.get(CID) is None or h.bridge.sessions[CID].life.transfer is None


async def test_no_outcome_in_time_is_an_error_and_a_late_notice_changes_nothing() -> None:
    async with FakeElevenLabs() as agent, Harness(eleven(agent, transfer_timeout_seconds=30)) as h:
        await started(h, agent)
        await agent.send_tool_call("transfer_call", {"number": "+15550001111"}, tool_call_id="t1")
        await wait_until(lambda: h.control.calls)
        run_clocks(h.bridge.sessions[CID], 30)
        await agent.wait_for(lambda: agent.session.of_type("client_tool_result"), timeout=2)
        (result,) = agent.session.of_type("client_tool_result")
        assert result["is_error"] is True and "no outcome within 30 s" in result["result"]
        h.notice("transfer", CID, succeeded=False, sip_status=603, call_continues=True)
        await asyncio.sleep(0.1)
        assert len(agent.session.of_type("client_tool_result")) == 1


async def test_one_transfer_at_a_time() -> None:
    async with FakeElevenLabs() as agent, Harness(eleven(agent)) as h:
        await started(h, agent)
        await agent.send_tool_call("transfer_call", {"number": "+15550001111"}, tool_call_id="t1")
        await agent.send_tool_call("transfer_call", {"number": "+15550002222"}, tool_call_id="t2")
        await agent.wait_for(lambda: agent.session.of_type("client_tool_result"))
        (busy,) = agent.session.of_type("client_tool_result")
        assert busy["tool_call_id"] == "t2" and busy["is_error"] and "in progress" in busy["result"]
        assert [c for c in h.control.calls if c[0] == "transfer"] == [("transfer", CID, "+15550001111")]
        h.notice("transfer", CID, succeeded=True, sip_status=200)
        await agent.wait_for(lambda: len(agent.session.of_type("client_tool_result")) == 2)


async def test_notices_without_a_pending_request_send_nothing() -> None:
    async with FakeTwilioAgent() as agent, Harness({"protocol": "twilio", "url": agent.url}) as h:
        await started(h, agent)
        await agent.wait_for(lambda: agent.session.of_type("start"))
        h.notice("transfer", CID, succeeded=False, sip_status=603, call_continues=True)  # e.g. one the API asked for
        h.notice("transfer", "c0ffee00-0000-4000-8000-00000000ffff", succeeded=True)  # another call
        await asyncio.sleep(0.1)
        assert {m.get("event") for m in agent.session.messages} == {"connected", "start"}


async def test_after_a_successful_transfer_the_agent_closing_is_no_failure() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        await started(h, agent)
        await agent.send_transfer("+15550001111", request_id="r1")
        await wait_until(lambda: h.control.calls)
        h.notice("transfer", CID, succeeded=True, sip_status=200)
        await agent.wait_for(lambda: agent.session.of_type("result"))
        await agent.close(1011, "bye")
        await asyncio.sleep(0.2)
        assert h.control.calls == [("transfer", CID, "+15550001111")]  # no hang-up, no prompt: the call left


async def test_an_attended_transfer_asks_the_controller_for_one_and_answers_with_its_outcome() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        await started(h, agent)
        await agent.send_json(
            {"type": "transfer", "target": "+15550001111", "mode": "attended", "brief": "VIP", "id": "r1"}
        )
        await wait_until(lambda: h.control.calls)
        assert h.control.transfer_kwargs == [{"method": "attended", "brief": "VIP"}]
        h.notice(
            "transfer",
            CID,
            succeeded=False,
            sip_status=486,
            detail="Busy Here: the target is busy",
            call_continues=True,
            mode="attended",
            reason="busy",
        )
        await agent.wait_for(lambda: agent.session.of_type("result"))
        (result,) = agent.session.of_type("result")
    assert result["ok"] is False and "SIP 486 Busy Here: the target is busy" in result["detail"]
    assert "still on the line with you" in result["detail"]


async def test_a_blind_transfer_asks_for_the_default_method() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        await started(h, agent)
        await agent.send_transfer("+15550001111", request_id="r1")
        await wait_until(lambda: h.control.calls)
        assert h.control.transfer_kwargs == [{}]


async def test_once_bridged_to_a_person_the_agent_is_told_and_let_go_without_hanging_up() -> None:
    """An attended (or bridge) transfer stops the fork before the bridge: that close is no media loss, and once the
    caller talks to the person the agent hears the outcome and its connection is closed; the call goes on."""
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        f = await h.fork()
        await agent.wait_session()
        await wait_until(lambda: CID in h.bridge.sessions and h.bridge.sessions[CID].state == "open")
        session = h.bridge.sessions[CID]
        await agent.send_json({"type": "transfer", "target": "+15550001111", "mode": "attended", "id": "r1"})
        await wait_until(lambda: h.control.calls)
        await f.ws.close()  # the controller stopped the fork for the bridge
        await wait_until(lambda: session.fork is None)
        h.notice("transfer", CID, succeeded=True, bridged=True, mode="attended", ring_seconds=2.5)
        run_clocks(session, 30)  # well past the fork grace time
        await agent.wait_for(lambda: agent.session.of_type("stop"))
        (result,) = agent.session.of_type("result")
        assert result["ok"] is True and "succeeded" in result["detail"]
        assert agent.session.of_type("stop") == [{"type": "stop", "reason": "transferred"}]
        await wait_until(lambda: CID not in h.bridge.sessions)
    assert [c[0] for c in h.control.calls] == ["transfer"]  # no hang-up, no prompt
    assert h.control.records[CID]["outcome"] == "completed"
