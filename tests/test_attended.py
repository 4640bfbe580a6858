"""Attended (warm) transfers: the attempt's state machine, the tracker fed with events shaped like FreeSWITCH's,
and the whole flow through the controller against the simulator (originate of the target, its progress and
answer / busy / no answer, the announcement, ``uuid_bridge``, the caller hanging up), the API and the agent side."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from simulator import SimulatedFreeSwitch, fsstrings, split_args
from test_controller import API_TOKEN, Harness, make_controller
from test_controller import deployment_text as base_deployment
from test_tracker import INBOUND_UUID, INBOUND_VARS, feed, ours, recorded, tracker

from orchestrator.api.http import create_app
from orchestrator.calls import attended as att
from orchestrator.calls import dialing, outcome, records
from orchestrator.calls.controller import CallError
from orchestrator.calls.tracker import CallState, TransferStatus
from orchestrator.config import check_text
from orchestrator.esl import commands
from orchestrator.esl.protocol import Event

LEG = "9b0c8a52-1f00-4d7e-9a51-0c1d2e3f4a5b"
TARGET = "+15559998888"
PROMPT = "tone_stream://%(200,0,800)"


# -- the attempt alone ----------------------------------------------------------------------------
def attempt(announcement: str = "") -> att.Attempt:
    return att.Attempt(LEG, TARGET, "carrier", "VIP caller", announcement, 30, started_at=100.0, due=150.0)


def hangup(cause: str, status: int | None, phrase: str = "", answered: bool = False) -> outcome.Hangup:
    values = {
        "hangup_cause": cause,
        "sip_invite_failure_status": str(status or ""),
        "sip_invite_failure_phrase": phrase,
    }
    return outcome.from_variables(lambda k: values.get(k, ""), answered)


def test_attempt_rings_answers_is_briefed_and_bridged() -> None:
    a = attempt(PROMPT)
    a.leg_created()
    a.progress(101.0)
    assert a.stage is att.Stage.RINGING and a.ringing_at == 101.0
    a.answered(104.5)
    assert a.stage is att.Stage.ANSWERED and a.ring_seconds == 4.5
    assert a.parked() is att.Step.BRIEF and a.stage is att.Stage.BRIEFING
    assert a.parked() is att.Step.NOTHING  # the park goes on after the announcement: nothing new
    assert a.brief_done(106.0) is att.Step.BRIDGE and a.stage is att.Stage.BRIDGING and a.fork_stopped
    assert a.bridged(106.1) and not a.bridged(106.2)
    assert a.stage is att.Stage.BRIDGED and not a.active
    assert a.caller_gone(200.0) is att.Step.NOTHING and a.expire(1e9) is att.Step.NOTHING
    d = a.to_dict()
    assert d["answered"] is True and d["bridged_at"] == 106.1 and d["ring_seconds"] == 4.5 and d["reason"] is None


def test_attempt_without_announcement_bridges_once_the_target_is_parked() -> None:
    a = attempt()
    a.answered(103.0)
    assert a.parked() is att.Step.BRIDGE and a.briefed_at is None


@pytest.mark.parametrize(
    ("cause", "status", "phrase", "reason", "sip", "said"),
    [
        ("USER_BUSY", 486, "Busy Here", "busy", 486, "Busy Here: the target is busy"),
        ("CALL_REJECTED", 603, "Decline", "rejected", 603, "Decline: the target declined"),
        ("NO_ANSWER", 487, "CANCEL", "no_answer", None, "the target did not answer within 30 s"),
        ("UNALLOCATED_NUMBER", 404, "Not Found", "not_found", 404, "Not Found: the target does not exist"),
    ],
)
def test_attempt_fails_as_the_target_answered_the_invite(
    cause: str, status: int, phrase: str, reason: str, sip: int | None, said: str
) -> None:
    a = attempt()
    a.progress(101.0)
    assert a.leg_ended(hangup(cause, status, phrase), 131.0) is att.Step.FAILED
    assert (a.stage, a.reason, a.sip_status, a.detail()) == (att.Stage.FAILED, reason, sip, said)
    assert a.ring_seconds == 31.0 and a.to_dict()["answered"] is False


def test_attempt_target_hanging_up_during_the_brief_fails() -> None:
    a = attempt(PROMPT)
    a.answered(102.0)
    a.parked()
    assert a.leg_ended(hangup("NORMAL_CLEARING", None, answered=True), 103.0) is att.Step.FAILED
    assert a.reason == "target_hung_up" and a.answered_at == 102.0


def test_caller_hanging_up_cancels_and_a_late_bridge_failure_reforks() -> None:
    a = attempt()
    assert a.caller_gone(101.0) is att.Step.CANCEL and a.reason == "caller_hung_up"
    assert a.leg_ended(hangup("ORIGINATOR_CANCEL", 487), 101.1) is att.Step.NOTHING  # over already
    b = attempt()
    b.answered(102.0)
    assert b.parked() is att.Step.BRIDGE
    assert b.bridge_failed(102.1) is att.Step.REFORK and b.reason == "bridge_failed"
    c = attempt()
    c.answered(102.0)
    c.parked()
    assert c.leg_ended(hangup("NORMAL_CLEARING", None, answered=True), 102.2) is att.Step.REFORK  # fork was stopped


def test_originate_errors_count_only_without_a_leg_and_the_deadline_fails_the_rest() -> None:
    a = attempt()
    assert a.originate_failed("GATEWAY_DOWN", 100.1) is att.Step.FAILED and a.reason == "unavailable"
    b = attempt()
    b.leg_created()
    assert b.originate_failed("USER_BUSY", 101.0) is att.Step.NOTHING  # its HANGUP_COMPLETE says more
    assert b.expire(149.0) is att.Step.NOTHING
    assert b.expire(150.0) is att.Step.CANCEL and b.reason == "timeout"


def test_briefs_are_kept_as_plain_bounded_text() -> None:
    assert att.clean_brief("  VIP\ncaller,\tangry  ") == "VIP caller, angry"
    assert len(att.clean_brief("x" * 5000)) == att.MAX_BRIEF and att.clean_brief(None) == ""


# -- the tracker ----------------------------------------------------------------------------------
def leg_event(name: str, **headers: str) -> Event:
    return Event({"Event-Name": name, "Unique-ID": LEG, **headers})


def answered_call() -> Any:
    t = tracker()
    evs = [ours(e, **INBOUND_VARS) for e in recorded("02-inbound-call/esl.bin")]
    feed(t, [next(e for e in evs if e.name == "CHANNEL_PARK"), next(e for e in evs if e.name == "CHANNEL_ANSWER")])
    return t, evs


def start(t: Any, announcement: str = "") -> None:
    call = t.start_attended(
        INBOUND_UUID,
        LEG,
        target=TARGET,
        trunk="carrier",
        brief="VIP",
        announcement=announcement,
        ring_timeout=30,
        brief_timeout=20,
    )
    assert call is not None and call.state is CallState.TRANSFERRING and t.legs == {LEG: INBOUND_UUID}


def test_tracker_brief_then_bridge_then_success() -> None:
    t, _ = answered_call()
    start(t, PROMPT)
    assert feed(t, [leg_event("CHANNEL_CREATE"), leg_event("CHANNEL_PROGRESS")]) == ([], [])
    assert feed(t, [leg_event("CHANNEL_ANSWER")]) == ([], [])  # the leg parks next: nothing sent yet
    actions, _ = feed(t, [leg_event("CHANNEL_PARK")])
    assert [a.command for a in actions] == [f"uuid_broadcast {LEG} {PROMPT} aleg"]
    other = leg_event("CHANNEL_EXECUTE_COMPLETE", **{"Application": "playback", "Application-Data": "/other.wav"})
    assert feed(t, [other]) == ([], [])
    done = leg_event("CHANNEL_EXECUTE_COMPLETE", **{"Application": "playback", "Application-Data": PROMPT})
    actions, _ = feed(t, [done])
    assert actions[0].command.startswith(f"uuid_audio_fork {INBOUND_UUID} stop")
    assert actions[1].command == f"uuid_bridge {INBOUND_UUID} {LEG}"
    assert actions[0].optional and not actions[1].optional and {a.call for a in actions} == {INBOUND_UUID}
    bridge = Event(
        {
            "Event-Name": "CHANNEL_BRIDGE",
            "Unique-ID": INBOUND_UUID,
            "Bridge-A-Unique-ID": INBOUND_UUID,
            "Bridge-B-Unique-ID": LEG,
        }
    )
    _, notices = feed(t, [bridge])
    assert [(n.kind, n.data["succeeded"], n.data["mode"]) for n in notices] == [("transfer", True, "attended")]
    call = t.calls[INBOUND_UUID]
    assert call.state is CallState.BRIDGED and call.transfer.status is TransferStatus.SUCCEEDED
    record = json.loads(json.dumps(records.build(call)))
    assert record["transfer"]["method"] == "attended" and record["transfer"]["mode"] == "attended"
    assert record["transfer"]["attended"]["stage"] == "bridged" and record["transfer"]["attended"]["brief"] == "VIP"


def test_tracker_busy_target_is_reported_and_the_call_stays() -> None:
    t, _ = answered_call()
    start(t)
    variables = {
        "variable_hangup_cause": "USER_BUSY",
        "variable_sip_invite_failure_status": "486",
        "variable_sip_invite_failure_phrase": "Busy Here",
    }
    actions, notices = feed(t, [leg_event("CHANNEL_CREATE"), leg_event("CHANNEL_HANGUP_COMPLETE", **variables)])
    assert actions == [] and t.legs == {}
    [n] = notices
    assert n.data == {
        "succeeded": False,
        "detail": "Busy Here: the target is busy",
        "call_continues": True,
        "mode": "attended",
        "reason": "busy",
        "sip_status": 486,
    }
    call = t.calls[INBOUND_UUID]
    assert call.state is CallState.ANSWERED and call.transfer.sip_status == 486


def test_tracker_caller_hangup_cancels_the_target_leg() -> None:
    t, evs = answered_call()
    start(t)
    feed(t, [leg_event("CHANNEL_CREATE"), leg_event("CHANNEL_PROGRESS")])
    actions, notices = feed(t, [e for e in evs if e.name == "CHANNEL_HANGUP"])
    assert [a.command for a in actions] == [f"uuid_kill {LEG} ORIGINATOR_CANCEL"]
    assert [n.kind for n in notices] == ["transfer", "hangup"]
    assert notices[0].data["call_continues"] is False and notices[0].data["reason"] == "caller_hung_up"
    feed(t, [e for e in evs if e.name == "CHANNEL_HANGUP_COMPLETE"])
    assert t.legs == {}  # the ended call forgets its leg


def test_tracker_refused_bridge_and_deadline_send_the_caller_back_to_the_agent() -> None:
    t, _ = answered_call()
    start(t)
    feed(t, [leg_event("CHANNEL_ANSWER"), leg_event("CHANNEL_PARK")])
    actions, notices = t.attended_bridge_failed(INBOUND_UUID)
    assert actions[0].command == f"uuid_kill {LEG} NORMAL_CLEARING"
    assert actions[1].command.startswith(f"uuid_audio_fork {INBOUND_UUID} start")
    assert notices[0].data["reason"] == "bridge_failed" and t.calls[INBOUND_UUID].state is CallState.ANSWERED
    start(t)
    assert t.attended_expired(INBOUND_UUID) == ([], [])  # not due yet
    t.clock = lambda: 1e9
    actions, notices = t.attended_expired(INBOUND_UUID)
    assert [a.command for a in actions] == [f"uuid_kill {LEG} ORIGINATOR_CANCEL"]
    assert notices[0].data["reason"] == "timeout"


def test_tracker_originate_error_without_a_leg() -> None:
    t, _ = answered_call()
    start(t)
    assert t.attended_originate_result(LEG, f"+OK {LEG}\n") == ([], [])
    actions, notices = t.attended_originate_result(LEG, "-ERR GATEWAY_DOWN\n")
    assert actions == [] and notices[0].data["reason"] == "unavailable" and t.legs == {}


def test_resync_hangs_up_an_orphaned_target_leg_but_not_a_bridged_one() -> None:
    t = tracker()
    ringing = Event({"Unique-ID": LEG, "variable_sipagent_transfer_of": INBOUND_UUID, "Answer-State": "ringing"})
    actions, _ = t.resync("fs1", {LEG: ringing})
    assert [a.command for a in actions] == [f"uuid_kill {LEG} NORMAL_CLEARING"]
    bridged = Event({**ringing.headers, "variable_bridge_uuid": INBOUND_UUID})
    assert t.resync("fs1", {LEG: bridged}) == ([], [])


# -- dialing rules --------------------------------------------------------------------------------
def test_transfer_method_and_mode() -> None:
    assert dialing.transfer_method(None, None) == "refer"
    assert dialing.transfer_method("bridge", "blind") == "bridge"
    assert dialing.transfer_method(None, "attended") == dialing.transfer_method("attended", None) == "attended"
    for method, mode in (("refer", "attended"), ("attended", "blind"), ("x", None), (None, "warmish")):
        with pytest.raises(dialing.Invalid):
            dialing.transfer_method(method, mode)


# -- the controller against the simulator ---------------------------------------------------------
SETTINGS = """
  transfers:
    attended:
      ring_timeout_seconds: 5
      brief_timeout_seconds: 5
      brief_header: X-Transfer-Brief
      caller_id: caller
"""


def deployment(announcement: str | None = None, port: int = 8021) -> str:
    extra = SETTINGS + (f'      announcement: "{announcement}"\n' if announcement else "")
    return base_deployment([port]).replace("orchestrator:\n", "orchestrator:\n" + extra.lstrip("\n"), 1)


async def harness(tmp: Path, sim: SimulatedFreeSwitch, announcement: str | None = None) -> Harness:
    text = deployment(announcement, sim.port)
    notices: list[Any] = []
    controller = await make_controller(text, tmp, notices)
    return Harness([sim], controller, notices, tmp)


@pytest.fixture()
async def sim() -> AsyncIterator[SimulatedFreeSwitch]:
    s = SimulatedFreeSwitch("sim-pass")
    s.ring_time_scale = 0.01  # a 5 s ring time-out rings 50 ms
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def originate_of(sim: SimulatedFreeSwitch) -> str:
    return next(c for c in sim.received_commands if "originate" in c and "sipagent_transfer_of" in c)


async def test_target_answers_is_briefed_and_bridged(tmp_path: Path, sim: SimulatedFreeSwitch) -> None:
    h = await harness(tmp_path, sim, PROMPT)
    try:
        sim.set_originate_outcome(TARGET, "answer")
        uuid = await h.inbound()
        await h.wait("fork_connected", uuid)
        await h.controller.transfer(uuid, TARGET, mode="attended", brief="Ms Lee, billing dispute; angry")
        assert h.controller.call(uuid).state is CallState.TRANSFERRING
        result = await h.wait("transfer", uuid)
        assert result.data["succeeded"] is True and result.data["mode"] == "attended"
        call = h.controller.call(uuid)
        a = call.transfer.attended
        leg = a.leg
        # the target was dialled with the leg UUID we chose, the ring time-out, the caller's number and the brief
        vars_ = dict(v.split("=", 1) for v in originate_of(sim).split("{^^\x1f", 1)[1].split("}", 1)[0].split("\x1f"))
        assert vars_["origination_uuid"] == leg and vars_["originate_timeout"] == "5"
        assert vars_["sipagent_transfer_of"] == uuid and vars_["origination_caller_id_number"] == "+15551230000"
        assert sim.channels[leg].variables["sip_h_X-Transfer-Brief"] == "Ms Lee, billing dispute; angry"
        assert "sipagent_agent" not in vars_
        # the announcement played to the target, then the caller's fork stopped, then the bridge
        cmds = [c.removeprefix("api ") for c in sim.received_commands]
        order = [
            cmds.index(f"uuid_broadcast {leg} {PROMPT} aleg"),
            next(i for i, c in enumerate(cmds) if c.startswith(f"uuid_audio_fork {uuid} stop")),
            cmds.index(f"uuid_bridge {uuid} {leg}"),
        ]
        assert order == sorted(order)
        assert sim.channels[uuid].bridged_to == leg and call.state is CallState.BRIDGED
        assert a.stage is att.Stage.BRIDGED and a.briefed_at is not None and a.bridged_at is not None
        assert a.ring_seconds is not None and a.ring_seconds > 0
        assert h.controller.metrics.transfers.labels("attended", "succeeded")._value.get() == 1
        await sim.remote_hangup(leg)  # the person hangs up: FreeSWITCH hangs the caller up too
        ended = await h.wait("ended", uuid)
        record = records.build(ended.call)
        assert record["transfer"]["status"] == "succeeded" and record["transfer"]["attended"]["answered"] is True
        assert record["transfer"]["attended"]["brief"] == "Ms Lee, billing dispute; angry"
        json.dumps(record)
    finally:
        await h.controller.stop()


@pytest.mark.parametrize(
    ("outcome_", "reason", "sip"), [("486", "busy", 486), ("603", "rejected", 603), ("no-answer", "no_answer", None)]
)
async def test_busy_declined_or_unanswered_target_leaves_the_caller_with_the_agent(
    tmp_path: Path, sim: SimulatedFreeSwitch, outcome_: str, reason: str, sip: int | None
) -> None:
    h = await harness(tmp_path, sim)
    try:
        sim.set_originate_outcome(TARGET, outcome_)
        uuid = await h.inbound()
        await h.wait("fork_connected", uuid)
        await h.controller.transfer(uuid, TARGET, method="attended")
        result = await h.wait("transfer", uuid)
        assert result.data["succeeded"] is False and result.data["call_continues"] is True
        assert result.data["reason"] == reason and result.data.get("sip_status") == sip
        call = h.controller.call(uuid)
        assert call is not None and call.state is CallState.ANSWERED and call.fork == "connected"
        assert not any(f"uuid_audio_fork {uuid} stop" in c or "uuid_bridge" in c for c in sim.received_commands)
        assert call.transfer.attended.leg not in sim.channels  # hung up and gone
        assert h.controller.metrics.transfers.labels("attended", "failed")._value.get() == 1
        await h.controller.transfer(uuid, "+15557776666", mode="attended")  # the agent may try again
        assert h.controller.call(uuid).state is CallState.TRANSFERRING
    finally:
        await h.controller.stop()


async def test_caller_hanging_up_cancels_the_ringing_target(tmp_path: Path, sim: SimulatedFreeSwitch) -> None:
    h = await harness(tmp_path, sim)
    try:
        sim.set_originate_outcome(TARGET, "no-answer")
        sim.ring_time_scale = 1.0  # rings its 5 s: the caller hangs up first
        uuid = await h.inbound()
        await h.wait("fork_connected", uuid)
        await h.controller.transfer(uuid, TARGET, mode="attended")
        leg = h.controller.call(uuid).transfer.attended.leg
        while leg not in sim.channels:
            await asyncio.sleep(0.01)
        await sim.remote_hangup(uuid)
        result = await h.wait("transfer", uuid)
        assert result.data["reason"] == "caller_hung_up" and result.data["call_continues"] is False
        while leg in sim.channels:
            await asyncio.sleep(0.01)
        assert any(f"uuid_kill {leg} ORIGINATOR_CANCEL" in c for c in sim.received_commands)
        ended = await h.wait("ended", uuid)
        assert ended.call.transfer.attended.reason == "caller_hung_up"
    finally:
        await h.controller.stop()


async def test_target_hanging_up_during_the_brief_is_a_failure(tmp_path: Path, sim: SimulatedFreeSwitch) -> None:
    prompt = "/sounds/brief.wav"
    sim.files[prompt] = b"\x00\x00" * 8000 * 30  # 30 s: the person hangs up before it ends
    h = await harness(tmp_path, sim, prompt)
    try:
        sim.set_originate_outcome(TARGET, "answer")
        uuid = await h.inbound()
        await h.wait("fork_connected", uuid)
        await h.controller.transfer(uuid, TARGET, mode="attended")
        leg = h.controller.call(uuid).transfer.attended.leg
        while not any(f"uuid_broadcast {leg} " in c for c in sim.received_commands):
            await asyncio.sleep(0.01)
        await sim.remote_hangup(leg)
        result = await h.wait("transfer", uuid)
        assert result.data["reason"] == "target_hung_up" and result.data["call_continues"] is True
        assert h.controller.call(uuid).state is CallState.ANSWERED
        assert not any("uuid_bridge" in c for c in sim.received_commands)
    finally:
        await h.controller.stop()


async def test_refusals_before_anything_is_dialled(tmp_path: Path, sim: SimulatedFreeSwitch) -> None:
    h = await harness(tmp_path, sim)
    try:
        uuid = await h.inbound()
        await h.wait("fork_connected", uuid)
        for kwargs, code in (
            ({"target": "sip:desk@pbx.example.com}x"}, "invalid_target"),
            ({"target": TARGET, "trunk": "nope"}, "unknown_trunk"),
            ({"target": TARGET, "brief": "a ${evil} brief"}, "invalid_brief"),
            ({"target": TARGET, "method": "refer"}, "invalid_method"),
        ):
            target = kwargs.pop("target")
            with pytest.raises(CallError) as exc:
                await h.controller.transfer(uuid, target, mode="attended", **kwargs)
            assert exc.value.code == code
        assert not any("originate" in c for c in sim.received_commands)
        assert h.controller.call(uuid).state is CallState.ANSWERED
    finally:
        await h.controller.stop()


async def test_api_attended_transfer(tmp_path: Path, sim: SimulatedFreeSwitch) -> None:
    h = await harness(tmp_path, sim)
    app = create_app(h.controller, API_TOKEN)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    try:
        sim.set_originate_outcome(TARGET, "486")
        uuid = await h.inbound()
        await h.wait("fork_connected", uuid)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            bad = await client.post(
                f"/v1/calls/{uuid}/transfer", json={"target": TARGET, "mode": "warmish"}, headers=headers
            )
            assert bad.status_code == 400
            r = await client.post(
                f"/v1/calls/{uuid}/transfer",
                json={"target": TARGET, "mode": "attended", "brief": "wants a refund"},
                headers=headers,
            )
            assert r.status_code == 202 and r.json()["status"] == "transferring"
            await h.wait("transfer", uuid)
            shown = (await client.get(f"/v1/calls/{uuid}", headers=headers)).json()
        t = shown["transfer"]
        assert (t["method"], t["mode"], t["status"], t["sip_status"]) == ("attended", "attended", "failed", 486)
        assert t["attended"]["reason"] == "busy" and t["attended"]["brief"] == "wants a refund"
        assert shown["state"] == "answered"
    finally:
        await h.controller.stop()


def test_settings_are_validated_and_checked_against_the_agents(tmp_path: Path) -> None:
    text = deployment().replace("brief_header: X-Transfer-Brief", "brief_header: X-Sipagent-Trunk")
    result = check_text(text, "d.yaml", {}, tmp_path)
    assert any("reserved for the edge" in str(d) for d in result.errors)
    text = deployment().replace("ring_timeout_seconds: 5", "ring_timeout_seconds: 90")
    result = check_text(text, "d.yaml", {}, tmp_path)
    assert result.errors == [] and any("transfer_timeout_seconds" in str(d) for d in result.warnings)
    text = deployment("/x::y")
    assert check_text(text, "d.yaml", {}, tmp_path).errors


def test_split_args_sees_one_originate_argument_for_a_hostile_brief() -> None:
    d = dialing.attended(
        check_text(deployment(), "d.yaml", {}, Path("/tmp")).deployment,  # type: ignore[arg-type]
        trunk="carrier",
        target=TARGET,
        brief="it's 'quoted' \\ {braced} a,b",
        caller="",
        brief_header="X-Transfer-Brief",
    )
    variables = dialing.attended_variables(d, LEG, INBOUND_UUID, 5)
    command = commands.originate(variables, d.dial_string)
    args = split_args(command.removeprefix("originate "))
    assert len(args) == 2 and args[1] == "&park()"
    parsed = fsstrings.parse_dial_string(args[0])  # as FreeSWITCH takes the dial string apart
    assert dict(parsed.variables)["sip_h_X-Transfer-Brief"] == "it's 'quoted' \\ {braced} a,b"
    assert parsed.groups[0][0].endpoint == f"sofia/gateway/carrier/{TARGET}"


def test_resync_re_attaches_a_bridged_caller_as_bridged_without_forking_it() -> None:
    t = tracker()
    evs = [ours(e, **INBOUND_VARS) for e in recorded("02-inbound-call/esl.bin")]
    answer = next(e for e in evs if e.name == "CHANNEL_ANSWER")
    dump = Event({**answer.headers, "Answer-State": "answered", "variable_bridge_uuid": LEG})
    actions, notices = t.resync("fs1", {INBOUND_UUID: dump})
    assert actions == [] and [n.data for n in notices] == [{"reattached": True}]
    assert t.calls[INBOUND_UUID].state is CallState.BRIDGED
