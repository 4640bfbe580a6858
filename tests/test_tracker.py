"""The sans-I/O call tracker, fed with events shaped like the recorded ones (fixtures 02, 03, 04, 06)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from orchestrator.calls import records
from orchestrator.calls.tracker import (
    Api,
    CallState,
    CallTracker,
    ForkState,
    Notice,
    NoticeKind,
    Policy,
    TransferAttempt,
    TransferStatus,
)
from orchestrator.config.model import Number
from orchestrator.config.routing import Table
from orchestrator.esl.protocol import Event, Parser
from orchestrator.media import dialects

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "freeswitch-1.10.12"
INBOUND_UUID = "683ea5eb-7702-47cc-86c5-b0b295e3b615"  # the call recorded in fixture 02


def recorded(name: str) -> list[Event]:
    return [m for m in Parser().feed((FIXTURES / name).read_bytes()) if isinstance(m, Event)]


def ours(event: Event, uuid: str | None = None, **variables: str) -> Event:
    """A recorded event as if our rendered dialplan had handled the call (sipagent_* variables set)."""
    headers = dict(event.headers)
    if uuid:
        headers["Unique-ID"] = uuid
    for k, v in variables.items():
        headers[f"variable_{k}"] = v
    return Event(headers, event.body)


INBOUND_VARS = {
    "sipagent_trunk": "carrier",
    "sipagent_agent": "support",
    "sipagent_number": "+15551234567",
}


def tracker() -> CallTracker:
    def fork_cmd(call):
        rate = "16k" if call.rate >= 16000 else "8k"
        return dialects.MOD_AUDIO_FORK.start(
            call.uuid, f"ws://bridge/calls/{call.uuid}?token=t", rate, {"v": call.variables}
        )

    return CallTracker(
        Policy(
            agents={"support": "elevenlabs", "sales": "twilio"},
            routing=Table(
                [
                    Number(number="+15551234567", trunk="carrier", agent="support"),
                    Number(number="+15550000009", trunk="carrier", agent="sales"),
                ]
            ),
            fork_command=fork_cmd,
            headers={"carrier": [("X-Customer-Id", "customer_id"), ("X-Campaign", "campaign")]},
        ),
        clock=iter(range(1000, 100000)).__next__,
    )


def feed(t: CallTracker, events: list[Event], node: str = "fs1") -> tuple[list[Api], list[Notice]]:
    actions: list[Api] = []
    notices: list[Notice] = []
    for e in events:
        a, n = t.handle(node, e)
        actions += a
        notices += n
    return actions, notices


def test_inbound_call_lifecycle() -> None:
    t = tracker()
    evs = [ours(e, **INBOUND_VARS) for e in recorded("02-inbound-call/esl.bin")]
    park = next(e for e in evs if e.name == "CHANNEL_PARK")
    actions, _ = feed(t, [park])
    assert [a.command for a in actions] == [
        f"uuid_park {INBOUND_UUID}",
        f"uuid_setvar_multi {INBOUND_UUID} send_silence_when_idle=-1;sip_refer_continue_after_reply=true;"
        "sipagent_routed_agent=support;sipagent_rule=none",
        f"uuid_answer {INBOUND_UUID}",
    ]
    call = t.calls[INBOUND_UUID]
    assert (call.state, call.agent, call.trunk, call.number, call.remote) == (
        "claimed",
        "support",
        "carrier",
        "+15551234567",
        "+15550001234",
    )
    assert call.variables["caller_id"] == "+15550001234"
    assert call.variables["called_number"] == "+15551234567"
    # the trunk's configured X- headers (recorded as sip_h_X-*), under their variable names
    assert call.variables["customer_id"] == "42" and call.variables["campaign"] == "spring sale"
    assert call.variables["sip_call_id"] == "1-28185@127.0.0.1"

    assert feed(t, [park]) == ([], [])  # our own uuid_park re-parks: nothing new
    answer = next(e for e in evs if e.name == "CHANNEL_ANSWER")
    actions, notices = feed(t, [answer])
    [start] = actions
    assert start.command.startswith(
        f"uuid_audio_fork {INBOUND_UUID} start ws://bridge/calls/{INBOUND_UUID}?token=t mono 8k "
    )
    assert (call.codec, call.rate, call.state) == ("PCMA", 8000, "answered")
    assert call.state is CallState.ANSWERED and call.fork is ForkState.STARTING
    assert [n.kind for n in notices] == ["answered"] and notices[0].kind is NoticeKind.ANSWERED

    actions, notices = feed(t, [e for e in evs if e.name == "DTMF"])
    assert [(n.kind, n.data["digit"]) for n in notices] == [("dtmf", "1"), ("dtmf", "#")]

    actions, notices = feed(t, [e for e in evs if e.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")])
    assert [n.kind for n in notices] == ["hangup", "ended"]
    assert call.hangup is not None
    assert (call.hangup.cause, call.hangup.sip_status, call.hangup.result) == ("NORMAL_CLEARING", 200, "completed")
    assert call.hangup_by == "remote"  # sip_hangup_disposition recv_bye
    assert call.quality["mos"] == 1.57 and call.quality["packets_in"] == 256
    assert INBOUND_UUID not in t.calls


@pytest.mark.parametrize(
    ("variables", "why"),
    [
        ({**INBOUND_VARS, "sipagent_agent": "ghost"}, "agent not in this deployment"),
        ({**INBOUND_VARS, "sipagent_number": "+15559999999"}, "number not in this deployment"),
        ({**INBOUND_VARS, "sipagent_agent": "sales"}, "number belongs to another agent"),
    ],
)
def test_inbound_mismatch_is_refused_with_404(variables: dict[str, str], why: str) -> None:
    t = tracker()
    park = next(ours(e, **variables) for e in recorded("02-inbound-call/esl.bin") if e.name == "CHANNEL_PARK")
    actions, _ = feed(t, [park])
    assert [a.command for a in actions] == [f"uuid_kill {INBOUND_UUID} UNALLOCATED_NUMBER"], why


def test_parked_channel_without_agent_is_not_ours() -> None:
    t = tracker()
    park = next(e for e in recorded("02-inbound-call/esl.bin") if e.name == "CHANNEL_PARK")
    assert feed(t, [park]) == ([], [])


def test_g722_forks_at_16k() -> None:
    t = tracker()
    evs = [ours(e, **INBOUND_VARS) for e in recorded("02-inbound-call/esl.bin")]
    feed(t, [next(e for e in evs if e.name == "CHANNEL_PARK")])
    answer = next(e for e in evs if e.name == "CHANNEL_ANSWER")
    headers = dict(answer.headers, **{"Channel-Read-Codec-Name": "G722", "Channel-Read-Codec-Rate": "16000"})
    [start], _ = feed(t, [Event(headers)])
    assert " mono 16k sipagent " in start.command


def _outbound(t: CallTracker, folder: str) -> tuple[str, list[Event]]:
    evs = recorded(f"{folder}/esl.bin")
    uuid = next(e.uuid for e in evs if e.name == "CHANNEL_CREATE")
    t.expect_outbound(uuid, "fs1", trunk="carrier", agent="sales", destination="+15557654321", caller_id="+15550001111")
    return uuid, evs


def test_outbound_answered() -> None:
    t = tracker()
    uuid, evs = _outbound(t, "03-originate-answered")
    actions, notices = feed(t, evs)
    kinds = [n.kind for n in notices]
    assert kinds[:2] == ["progress", "answered"]
    assert notices[0].data["status"] == 180
    assert any(a.command.startswith(f"uuid_audio_fork {uuid} start") and " 8k " in a.command for a in actions)
    ended = notices[-1]
    assert ended.kind == "ended" and ended.call.hangup is not None
    assert ended.call.hangup.result == "completed" and ended.call.progress == [180]


@pytest.mark.parametrize(
    ("folder", "status", "cause", "result"),
    [
        ("486", 486, "USER_BUSY", "busy"),
        ("404", 404, "UNALLOCATED_NUMBER", "not_found"),
        ("480", 480, "NO_USER_RESPONSE", "no_answer"),
        ("403", 403, "CALL_REJECTED", "rejected"),
        ("488", 488, "INCOMPATIBLE_DESTINATION", "incompatible"),
        ("503", 503, "NORMAL_TEMPORARY_FAILURE", "unavailable"),
        ("603", 603, "CALL_REJECTED", "rejected"),
        ("ring-timeout", 487, "NO_ANSWER", "no_answer"),
    ],
)
def test_outbound_failures_keep_the_real_sip_status(folder: str, status: int, cause: str, result: str) -> None:
    t = tracker()
    uuid, evs = _outbound(t, f"04-originate-failures/{folder}")
    _, notices = feed(t, evs)
    job = next(e for e in evs if e.name == "BACKGROUND_JOB")
    assert t.originate_result(uuid, job.body) == []  # the channel existed: HANGUP_COMPLETE told the story
    [ended] = [n for n in notices if n.kind == "ended"]
    h = ended.call.hangup
    assert h is not None
    assert (h.sip_status, h.cause, h.result) == (status, cause, result)
    assert 180 in ended.call.progress
    assert ended.call.answered_at is None


def test_originate_error_without_a_channel() -> None:
    t = tracker()
    t.expect_outbound("u-1", "fs1", trunk="carrier", agent="sales", destination="+1555", caller_id="")
    [ended] = t.originate_result("u-1", "-ERR GATEWAY_DOWN\n")
    assert ended.kind == "ended" and ended.call.hangup is not None
    assert (ended.call.hangup.cause, ended.call.hangup.result) == ("GATEWAY_DOWN", "unavailable")


def _answered_inbound(t: CallTracker) -> list[Event]:
    evs = [ours(e, **INBOUND_VARS) for e in recorded("02-inbound-call/esl.bin")]
    feed(t, [next(e for e in evs if e.name == "CHANNEL_PARK"), next(e for e in evs if e.name == "CHANNEL_ANSWER")])
    return evs


def _notify(status_line: str, substate: str = "active") -> Event:
    event = next(e for e in recorded("06-refer/notify-603/esl.bin") if e.subclass == "sofia::notify_refer")
    assert "Unique-ID" not in event.headers  # FreeSWITCH names the channel "UniqueID" in this event
    assert event.get("subscription-substate") == "terminated"
    headers = dict(event.headers, UniqueID=INBOUND_UUID, **{"subscription-substate": substate})
    return Event(headers, status_line + "\r\n")


def test_refer_failure_keeps_the_call_with_the_agent() -> None:
    t = tracker()
    _answered_inbound(t)
    t.start_transfer(INBOUND_UUID, "refer", "sip:+15559998888@sbc.example")
    assert feed(t, [_notify("SIP/2.0 100 Trying")]) == ([], [])
    actions, notices = feed(t, [_notify("SIP/2.0 603 Declined")])
    assert actions == []
    [n] = notices
    assert n.kind == "transfer"
    assert n.data == {"succeeded": False, "sip_status": 603, "detail": "Declined", "call_continues": True}
    assert t.calls[INBOUND_UUID].state == "answered"


def test_refer_failure_with_terminated_subscription_ends_the_orphaned_channel() -> None:
    """sofia-sip BYEs the peer when the final NOTIFY terminates the subscription; the channel must go too."""
    t = tracker()
    _answered_inbound(t)
    t.start_transfer(INBOUND_UUID, "refer", "sip:+15559998888@sbc.example")
    actions, notices = feed(t, [_notify("SIP/2.0 603 Declined", "terminated")])
    assert [a.command for a in actions] == [f"uuid_kill {INBOUND_UUID} NORMAL_CLEARING"]
    assert notices[0].data["call_continues"] is False and notices[0].data["succeeded"] is False


def test_refer_success_ends_our_leg() -> None:
    t = tracker()
    evs = _answered_inbound(t)
    t.start_transfer(INBOUND_UUID, "refer", "sip:+15559998888@sbc.example")
    actions, notices = feed(t, [_notify("SIP/2.0 200 OK", "terminated")])
    assert [a.command for a in actions] == [f"uuid_kill {INBOUND_UUID} BLIND_TRANSFER"]
    assert notices[0].data["succeeded"] is True
    _, notices = feed(t, [e for e in evs if e.name == "CHANNEL_HANGUP_COMPLETE"])
    assert notices[0].call.transfer.status == "succeeded" and notices[0].call.hangup_by == "transfer"


def test_bridge_transfer_success_and_failure() -> None:
    t = tracker()
    evs = _answered_inbound(t)
    t.start_transfer(INBOUND_UUID, "bridge", "+15559998888")
    park = next(e for e in evs if e.name == "CHANNEL_PARK")
    actions, notices = feed(t, [park])  # the inline dialplan parked again: the bridge failed
    assert actions[0].command.startswith(f"uuid_audio_fork {INBOUND_UUID} start")
    assert notices[0].data == {"succeeded": False, "detail": "bridge failed"}
    t.start_transfer(INBOUND_UUID, "bridge", "+15559998888")
    bridge = Event(dict(park.headers, **{"Event-Name": "CHANNEL_BRIDGE"}))
    _, notices = feed(t, [bridge])
    assert notices[0].data == {"succeeded": True, "bridged": True}
    assert t.calls[INBOUND_UUID].state == "bridged"
    transfer = t.calls[INBOUND_UUID].transfer
    assert isinstance(transfer, TransferAttempt) and transfer.status is TransferStatus.SUCCEEDED


def test_states_read_as_the_words_they_always_were() -> None:
    """StrEnum states: records, API summaries, metric labels and log lines are byte-identical to plain strings."""
    t = tracker()
    _answered_inbound(t)
    call = t.calls[INBOUND_UUID]
    t.start_transfer(INBOUND_UUID, "refer", "sip:desk@pbx.example.com")
    assert call.state is CallState.TRANSFERRING and call.transfer is not None
    summary = call.summary()
    assert json.dumps(summary) == json.dumps(
        {
            **summary,
            "state": "transferring",
            "fork": "starting",
            "transfer": {**vars(call.transfer), "status": "pending"},
        }
    )
    assert f"{call.state} {call.fork} {NoticeKind.FORK_BUFFER_OVERRUN}" == "transferring starting fork_buffer_overrun"
    line = logging.LogRecord("t", logging.INFO, "", 0, "%s/%s", (call.transfer.status, call.state), None)
    assert line.getMessage() == "pending/transferring"
    record = json.dumps(records.build(call), sort_keys=True)
    assert '"fork": "starting"' in record and '"status": "pending"' in record
    assert {k.value for k in NoticeKind} >= {"answered", "dtmf", "transfer", "hangup", "ended", "fork_failed"}


def test_fork_events() -> None:
    t = tracker()
    _answered_inbound(t)
    base = {"Event-Name": "CUSTOM", "Unique-ID": INBOUND_UUID}
    _, n = feed(t, [Event(dict(base, **{"Event-Subclass": "mod_audio_fork::connect"}))])
    assert n[0].kind == "fork_connected" and t.calls[INBOUND_UUID].fork == "connected"
    for subclass, kind in (
        ("mod_audio_fork::buffer_overrun", "fork_buffer_overrun"),
        ("mod_audio_fork::error", "fork_error"),
    ):
        _, n = feed(t, [Event(dict(base, **{"Event-Subclass": subclass}), "x")])
        assert [(m.kind, m.data) for m in n] == [(kind, {"body": "x"})] and n[0].kind is NoticeKind(kind)
    failed = Event(dict(base, **{"Event-Subclass": "mod_audio_fork::connect_failed"}), '{"reason":"Unable to connect"}')
    _, n = feed(t, [failed])
    assert n[0].kind == "fork_failed" and "Unable to connect" in n[0].data["reason"]


def test_resync_reattaches_and_marks_lost_calls() -> None:
    t = tracker()
    _answered_inbound(t)  # a call we knew before the link dropped …
    dump = json.loads(
        json.dumps(
            {
                "Event-Name": "CHANNEL_DATA",
                "Unique-ID": "11111111-1111-1111-1111-111111111111",
                "Call-Direction": "inbound",
                "Answer-State": "answered",
                "Channel-Read-Codec-Name": "G722",
                "Channel-Read-Codec-Rate": "16000",
                "Caller-Caller-ID-Number": "+15550002222",
                "Caller-Destination-Number": "+15550000009",
                "variable_sipagent_agent": "sales",
                "variable_sipagent_trunk": "carrier",
                "variable_sipagent_number": "+15550000009",
            }
        )
    )
    parked = dict(
        dump,
        **{
            "Unique-ID": "22222222-2222-2222-2222-222222222222",
            "Answer-State": "ringing",
            "Channel-Call-State": "RINGING",
        },
    )
    actions, notices = t.resync("fs1", {dump["Unique-ID"]: Event(dump), parked["Unique-ID"]: Event(parked)})
    # … is gone after the outage: its record says it was lost
    assert [(n.kind, n.call.uuid, n.data.get("lost")) for n in notices if n.kind == "ended"] == [
        ("ended", INBOUND_UUID, True)
    ]
    commands = [a.command for a in actions]
    assert commands[0] == "uuid_audio_fork 11111111-1111-1111-1111-111111111111 stop sipagent"
    assert (
        commands[1].startswith("uuid_audio_fork 11111111-1111-1111-1111-111111111111 start") and " 16k " in commands[1]
    )
    assert "uuid_park 22222222-2222-2222-2222-222222222222" in commands
    assert t.calls["11111111-1111-1111-1111-111111111111"].reattached


def test_timings_come_from_freeswitch_even_when_the_local_clock_disagrees() -> None:
    """The orchestrator's clock an hour ahead of FreeSWITCH's: setup and duration still come out right."""
    t = tracker()
    t.clock = lambda: 1795463945.0 + 3600  # fixture 03 was recorded at 1795463945.58
    _uuid, evs = _outbound(t, "03-originate-answered")
    _, notices = feed(t, evs)
    call = notices[-1].call
    from orchestrator.calls import records

    timings = records.build(call)["timings"]
    assert timings["created"] == 1795463945.578  # Caller-Channel-Created-Time, not when we asked
    assert timings["setup_seconds"] == pytest.approx(0.3, abs=0.001)  # answered 300 ms after the INVITE
    assert timings["duration_seconds"] == pytest.approx(2.06, abs=0.01)
    assert timings["ringing"] == 1795463945.578 and timings["ended"] == pytest.approx(1795463947.938, abs=0.001)


def test_outbound_records_carry_the_sip_call_id() -> None:
    """FreeSWITCH sets sip_call_id when the INVITE goes out: after CHANNEL_CREATE (fixture 03)."""
    t = tracker()
    _uuid, evs = _outbound(t, "03-originate-answered")
    create = next(e for e in evs if e.name == "CHANNEL_CREATE")
    assert not create.variable("sip_call_id")
    _, notices = feed(t, evs)
    assert notices[-1].call.sip_call_id == "2db4b28f-621b-1240-1999-3ab913dc6655"


def test_api_variables_survive_a_reattach() -> None:
    """An outbound call's variables travel as sipagent_var_*: a restarted orchestrator gives them to the agent."""
    evs = recorded("03-originate-answered/esl.bin")
    answer = next(e for e in evs if e.name == "CHANNEL_ANSWER")
    dump = ours(
        answer,
        sipagent_agent="sales",
        sipagent_direction="outbound",
        sipagent_trunk="carrier",
        sipagent_destination="+15557654321",
        sipagent_var_lead="7",
        sipagent_var_note="it's {fine}",
        sipagent_override_language="de",
    )
    t = tracker()
    _actions, _notices = t.resync("fs1", {dump.uuid: dump})
    call = t.calls[dump.uuid]
    assert call.reattached and call.variables["lead"] == "7" and call.variables["note"] == "it's {fine}"
    assert call.agent_overrides == {"language": "de"}
    assert call.variables["called_number"] == "+15557654321"  # the call's own facts win over variables


def test_resync_keeps_calls_whose_dump_could_not_be_read() -> None:
    t = tracker()
    _answered_inbound(t)
    assert INBOUND_UUID in t.calls
    _, notices = t.resync("fs1", {}, keep={INBOUND_UUID})
    assert notices == [] and INBOUND_UUID in t.calls
    _, notices = t.resync("fs1", {})
    assert [n.kind for n in notices] == ["ended"] and notices[0].data["lost"]


@pytest.mark.parametrize("value", ["²", "١٢٠", "-5", "1e3", "99999999999999999999999"])
def test_numbers_from_freeswitch_are_ascii_decimal(value: str) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: such a value is ignored, never an exception."""
    t = tracker()
    evs = _answered_inbound(t)
    dtmf = Event({**next(e for e in evs if e.name == "CHANNEL_ANSWER").headers, "Event-Name": "DTMF"})
    dtmf.headers.update({"DTMF-Digit": "5", "DTMF-Duration": value})
    _, [notice] = t.handle("fs1", dtmf)
    assert notice.data == {"digit": "5", "duration": 0}
    answer = Event({**next(e for e in evs if e.name == "CHANNEL_ANSWER").headers, "Channel-Read-Codec-Rate": value})
    t._codec(t.calls[INBOUND_UUID], answer)  # no exception, rate unchanged
    assert t.calls[INBOUND_UUID].rate in (8000, 16000)


@pytest.mark.parametrize("uuid", ["a b", "x;uuid_kill all", "-1", "x" * 65])
def test_channels_with_odd_ids_are_not_adopted(uuid: str) -> None:
    t = tracker()
    evs = [ours(e, uuid, **INBOUND_VARS) for e in recorded("02-inbound-call/esl.bin")]
    actions, notices = feed(t, [next(e for e in evs if e.name == "CHANNEL_PARK")])
    assert actions == [] and notices == [] and t.calls == {}


@pytest.mark.parametrize(
    ("reason", "cause", "status", "result"),
    [
        ("srtp_required", "INCOMPATIBLE_DESTINATION", "488", "incompatible"),
        ("unknown_number", "UNALLOCATED_NUMBER", "404", "not_found"),
    ],
)
def test_calls_the_dialplan_refused_get_a_record(reason: str, cause: str, status: str, result: str) -> None:
    evs = recorded("02-inbound-call/esl.bin")
    done = next(e for e in evs if e.name == "CHANNEL_HANGUP_COMPLETE")
    headers = {
        k: v
        for k, v in done.headers.items()
        if not k.startswith("variable_sip_term") and k != "Caller-Channel-Answered-Time"
    }
    headers.update(
        {
            "variable_sipagent_trunk": "carrier",
            "variable_sipagent_refused": reason,
            "variable_hangup_cause": cause,
            "variable_sip_hangup_disposition": "send_refuse",  # FreeSWITCH sets no status variable for a refusal
            "Caller-Channel-Answered-Time": "0",
        }
    )
    t = tracker()
    _, [ended] = t.handle("fs1", Event(headers))
    from orchestrator.calls import records

    record = records.build(ended.call)
    assert (record["direction"], record["trunk"], record["refused"], record["result"]) == (
        "inbound",
        "carrier",
        reason,
        result,
    )
    assert record["hangup"]["sip_status"] == int(status) and record["hangup_by"] == "freeswitch"
    assert record["timings"]["answered"] is None and record["sip_call_id"]
    assert t.calls == {}
    # a hang-up of a channel that is not ours and was not refused by our dialplan is nobody's business
    headers.pop("variable_sipagent_refused")
    assert t.handle("fs1", Event(headers)) == ([], [])


def _codec_event(rate: str, name: str) -> Event:
    return Event({"Event-Name": "CODEC", "Unique-ID": INBOUND_UUID, "Channel-Read-Codec-Name": name,
                  "Channel-Read-Codec-Rate": rate})  # fmt: skip


def test_codec_change_restarts_the_fork_at_the_new_rate() -> None:
    """A re-INVITE to G.722 (CODEC, read rate 16000) under an 8 kHz fork: stop it, start it again at 16k."""
    t = tracker()
    _answered_inbound(t)
    call = t.calls[INBOUND_UUID]
    assert call.rate == 8000 and call.fork == "starting"
    feed(t, [Event({"Event-Name": "CUSTOM", "Unique-ID": INBOUND_UUID, "Event-Subclass": "mod_audio_fork::connect"})])
    assert feed(t, [_codec_event("8000", "PCMA")]) == ([], [])  # same rate (PCMU → PCMA): the fork goes on
    actions, notices = feed(t, [_codec_event("16000", "G722")])
    assert [a.command.split()[:2] for a in actions] == [["uuid_audio_fork", INBOUND_UUID]] * 2
    assert " stop " in actions[0].command and " mono 16k sipagent " in actions[1].command
    assert [(n.kind, n.data) for n in notices] == [
        ("codec", {"codec": "G722", "rate": 16000, "previous_rate": 8000, "fork_restarted": True})
    ]
    assert call.fork == "starting" and call.codec_changes == 1
    # the stopped fork's disconnect is not the new fork's
    stopped = Event({"Event-Name": "CUSTOM", "Unique-ID": INBOUND_UUID, "Event-Subclass": "mod_audio_fork::disconnect"})
    assert feed(t, [stopped]) == ([], []) and call.fork == "starting"
    assert feed(t, [_codec_event("16000", "G722")]) == ([], [])  # the write codec's CODEC event: nothing new


def test_an_answer_without_a_codec_forks_at_the_codec_event() -> None:
    """Late offer: CHANNEL_ANSWER before the ACK's SDP set a codec -- no fork yet (mod_audio_fork would crash
    FreeSWITCH on the missing read codec); the CODEC event starts it."""
    t = tracker()
    evs = [ours(e, **INBOUND_VARS) for e in recorded("02-inbound-call/esl.bin")]
    feed(t, [next(e for e in evs if e.name == "CHANNEL_PARK")])
    answer = next(e for e in evs if e.name == "CHANNEL_ANSWER")
    headers = {k: v for k, v in answer.headers.items() if "Codec" not in k and k not in ("variable_read_rate",)}
    actions, notices = feed(t, [Event(headers)])
    assert actions == [] and [n.kind for n in notices] == ["answered"]
    assert t.calls[INBOUND_UUID].fork == "none"
    actions, notices = feed(t, [_codec_event("8000", "PCMU")])
    assert [a.command.split()[0] for a in actions] == ["uuid_audio_fork"] and " mono 8k sipagent " in actions[0].command
    assert notices == []


def test_digits_the_inband_generator_sends_are_not_received() -> None:
    """generate_on_dtmf fires a DTMF event (DTMF-Source APP) for each digit it turns into tones: not the caller's."""
    t = tracker()
    _answered_inbound(t)
    dtmf = {"Event-Name": "DTMF", "Unique-ID": INBOUND_UUID, "DTMF-Digit": "5", "DTMF-Duration": "800"}
    assert feed(t, [Event(dict(dtmf, **{"DTMF-Source": "APP", "DTMF-Conversion": "native:inband"}))]) == ([], [])
    _, notices = feed(t, [Event(dict(dtmf, **{"DTMF-Source": "INBAND_AUDIO"}))])
    assert [(n.kind, n.data["digit"]) for n in notices] == [("dtmf", "5")]
    assert t.calls[INBOUND_UUID].dtmf_in == "5"
