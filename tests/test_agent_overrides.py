"""Per-call agent overrides (first message, language, voice, prompt): validated, merged agent < number < call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_agents import FakeElevenLabs
from pydantic import ValidationError
from test_bridge import TOKENS, Harness, wait_until

from orchestrator.agents import overrides
from orchestrator.config import check_text
from orchestrator.config.model import AgentOverrides, Deployment
from orchestrator.media.bridge import MediaBridge

CID = "c0ffee00-0000-4000-8000-000000000001"


# -- validation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        {"first_message": "Hallo!\nWie kann ich helfen?"},
        {"first_message": ""},  # empty: the agent waits for the caller
        {"language": "en"},
        {"language": "pt-br"},
        {"language": "yue"},
        {"voice_id": "21m00Tcm4TlvDq8ikWAM"},
        {"prompt": "You are a helpful agent.\tBe brief." * 10},
        {},
    ],
)
def test_valid_overrides(value: dict[str, str]) -> None:
    assert AgentOverrides.model_validate(value).values() == value


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"language": "EN"}, "language"),
        ({"language": "english"}, "language"),
        ({"language": "en_US"}, "language"),
        ({"language": ""}, "language"),
        ({"language": "en\n"}, "language"),
        ({"voice_id": "a voice"}, "voice_id"),
        ({"voice_id": "v" * 65}, "voice_id"),
        ({"voice_id": ""}, "voice_id"),
        ({"voice_id": "../x"}, "voice_id"),
        ({"first_message": "x" * 1001}, "first_message"),
        ({"first_message": "bell \x07"}, "first_message"),
        ({"first_message": "escape \x1b[31m"}, "first_message"),
        ({"first_message": "c1 \x85"}, "first_message"),
        ({"first_message": "cr \r"}, "first_message"),
        ({"first_message": "surrogate \ud800"}, "first_message"),
        ({"prompt": "p" * 20001}, "prompt"),
        ({"prompt": "nul \x00"}, "prompt"),
        ({"first_message": 5}, "first_message"),
        ({"language": ["en"]}, "language"),
        ({"temperature": 0.5}, "temperature"),  # unknown keys are errors
    ],
)
def test_invalid_overrides(value: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        AgentOverrides.model_validate(value)
    assert err.value.errors()[0]["loc"][0] == field


def test_deployment_file_points_at_the_bad_value(tmp_path: Path) -> None:
    text = """
freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: x}}
trunks:
  - name: carrier
    inbound: {transports: [tcp], auth: {acl: [192.0.2.0/24]}}
numbers:
  - number: "+15550000001"
    trunk: carrier
    agent: bot
    agent_overrides:
      language: German
agents:
  - name: bot
    protocol: elevenlabs
    agent_id: a1
    overrides: {first_message: "Hi!", voice_id: "not a voice"}
"""
    result = check_text(text, "d.yaml", {}, tmp_path)
    found = {(d.dotted_path, d.line) for d in result.errors}
    assert ("numbers[0].agent_overrides.language", 11) in found
    assert ("agents[0].overrides.voice_id", 16) in found


# -- merging ------------------------------------------------------------------------------------------------
def deployment(number_overrides: dict[str, str] | None = None, agent: str = "bot") -> Deployment:
    return Deployment.model_validate(
        {
            "freeswitch": {"bind_ip": "127.0.0.1", "event_socket": {"password": "x"}},
            "numbers": [
                {"number": "+15557650001", "trunk": "carrier", "agent": agent, "agent_overrides": number_overrides},
                {"number": "+15557650002", "trunk": "carrier", "agent": "bot", "agent_overrides": {"language": "fr"}},
            ],
            "agents": [
                {
                    "name": "bot",
                    "protocol": "elevenlabs",
                    "agent_id": "a",
                    "url": "ws://127.0.0.1:9/x",
                    "overrides": {"first_message": "Hello!", "language": "en", "voice_id": "agent_voice"},
                }
            ],
        }
    )


def meta(**more: Any) -> dict[str, Any]:
    return {"direction": "inbound", "called_number": "+15557650001", "agent": "bot", **more}


def test_merge_order_agent_number_call() -> None:
    dep = deployment({"language": "de", "first_message": "Hallo!"})
    merged, problem = overrides.for_call(dep, dep.agents[0], meta(agent_overrides={"first_message": "Guten Tag!"}))
    assert problem is None
    assert merged == {"first_message": "Guten Tag!", "language": "de", "voice_id": "agent_voice"}


def test_the_number_counts_only_for_inbound_calls_to_it_answered_by_its_agent() -> None:
    dep = deployment({"language": "de"})
    agent = dep.agents[0]
    assert overrides.for_call(dep, agent, meta(direction="outbound"))[0]["language"] == "en"
    assert overrides.for_call(dep, agent, meta(called_number="+15557659999"))[0]["language"] == "en"
    assert overrides.for_call(dep, agent, meta(called_number="+15557650002"))[0]["language"] == "fr"
    other = deployment({"language": "de"}, agent="someone-else")
    assert overrides.for_call(other, other.agents[0], meta())[0]["language"] == "en"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("first_message", "not an object"),
        (["x"], "not an object"),
        ({"language": "Klingon!"}, "agent_overrides.language"),
        ({"voice": "x"}, "agent_overrides.voice"),
        ({"first_message": "x" * 40_000}, "larger than"),
        ({"first_message": "\x00"}, "agent_overrides.first_message"),
    ],
)
def test_invalid_call_overrides_are_dropped_whole(given: Any, why: str) -> None:
    dep = deployment({"language": "de"})
    merged, problem = overrides.for_call(dep, dep.agents[0], meta(agent_overrides=given))
    assert problem is not None and why in problem
    assert merged == {"first_message": "Hello!", "language": "de", "voice_id": "agent_voice"}


# -- through the bridge -----------------------------------------------------------------------------------
async def test_the_agent_gets_the_merged_overrides() -> None:
    async with FakeElevenLabs() as agent:
        dep = deployment({"language": "de"}).model_copy(deep=True)
        data = dep.model_dump(mode="python")
        data["agents"][0]["url"] = agent.url
        dep = Deployment.model_validate(data)
        h = Harness({"protocol": "elevenlabs", "agent_id": "a", "url": agent.url})
        h.bridge = MediaBridge(dep, TOKENS, h.control, port=0)
        async with h:
            await h.fork(agent_overrides={"voice_id": "call_voice", "first_message": ""})
            await agent.wait_for(
                lambda: agent.sessions and agent.session.of_type("conversation_initiation_client_data")
            )
            (init,) = agent.session.of_type("conversation_initiation_client_data")
            assert init["conversation_config_override"] == {
                "agent": {"first_message": "", "language": "de"},
                "tts": {"voice_id": "call_voice"},
            }
            await wait_until(lambda: h.bridge.sessions[CID].state == "open")


async def test_invalid_call_overrides_do_not_stop_the_call(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeElevenLabs() as agent, Harness({"protocol": "elevenlabs", "agent_id": "a", "url": agent.url}) as h:
        await h.fork(agent_overrides={"language": "x" * 100})
        await agent.wait_for(lambda: agent.sessions and agent.session.of_type("conversation_initiation_client_data"))
        (init,) = agent.session.of_type("conversation_initiation_client_data")
        assert "conversation_config_override" not in init and h.control.calls == []
    assert any("agent_overrides.language" in r.getMessage() for r in caplog.records)
