"""The simulator's pure pieces, tested directly: fork command arguments, caller-profile order, mod_sofia's variables,
dial-string variables and ``switch_true``. (cJSON and the streaming playout: tests/test_simulator_fork.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from simulator import fsstrings
from simulator.callerprofile import insert_after, ordered
from simulator.channel import SimChannel
from simulator.dialing import dial_variables
from simulator.forkargs import (
    FAILED,
    STREAM_BUG,
    ForkSpec,
    fs_separate,
    name_or_text,
    parse_start,
    parse_stream_start,
    sampling_rate,
)
from simulator.sofiavars import InboundDialog, reply_vars

UUID = "0f0c2b9e-1111-2222-3333-444455556666"


def start(line: str, attached: tuple[str, ...] = ()) -> Any:
    arg = f"{UUID} start {line}"
    return parse_start(arg, fs_separate(arg, 10), attached)


def channel(**kw: Any) -> SimChannel:
    args: dict[str, Any] = dict(
        sim=None,
        uuid=UUID,
        direction="inbound",
        name="sofia/tcp/+15550001234@127.0.0.1:5062",
        destination="+15557650001",
        caller_id="+15550001234",
        caller_name="+15550001234",
        context="trunk-x",
        sofia_profile="tcp",
    )
    args.update(kw)
    return SimChannel(**args)


# -- fork command arguments -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([UUID, "stop"], (None, None)),
        ([UUID, "stop", "mybug"], ("mybug", None)),
        ([UUID, "stop", '{"bye":1}'], (None, '{"bye":1}')),
        ([UUID, "stop", "[1]"], (None, "[1]")),
        ([UUID, "stop", "mybug", "text"], ("mybug", "text")),
        ([UUID, "stop", "", "text"], ("", "text")),
    ],
)
def test_bug_name_or_text_after_the_subcommand(argv: list[str], expected: tuple[str | None, str | None]) -> None:
    assert name_or_text(argv, 2) == expected


def test_sampling_rate_tokens() -> None:
    assert [sampling_rate(t) for t in ("8k", "16k", "24000", "x", "0")] == [8000, 16000, 24000, 0, 0]


def test_drachtio_start_keeps_the_rest_of_the_line_as_metadata() -> None:
    parsed = start('ws://h/x mono 16k mybug {"a":1, "b":2}')
    assert not isinstance(parsed, str)
    spec, args = parsed
    assert (spec.url, spec.mix, spec.sampling, spec.bug, spec.bugname) == ("ws://h/x", "mono", 16000, "mybug", "mybug")
    assert spec.metadata == '{"a":1, "b":2}' and not spec.jambonz and not spec.streaming
    assert args[1:] == ["start", "ws://h/x", "mono", "16k", "mybug", '{"a":1, "b":2}']
    assert spec.play_audio_events and spec.channels == 1


def test_drachtio_start_with_metadata_and_no_bug_name_uses_the_default_bug() -> None:
    spec, _ = start('ws://h/x stereo 8k {"a":1}')  # type: ignore[misc]
    assert (spec.bug, spec.bugname, spec.metadata, spec.channels) == ("audio_fork", None, '{"a":1}', 2)


def test_jambonz_start_is_exactly_ten_tokens() -> None:
    spec, args = start("ws://h/x mono 8k b1 {} true true 16000")  # type: ignore[misc]
    assert spec.jambonz and spec.streaming and spec.stream_rate == 16000 and not spec.play_audio_events
    assert spec.as_dict(args[1:])["stream_rate"] == "16000"
    spec, _ = start("ws://h/x mono 8k b1 {} true false 0")  # type: ignore[misc]
    assert not spec.streaming and spec.play_audio_events


@pytest.mark.parametrize(
    ("line", "attached", "reply"),
    [
        ("ws://h/x mono", (), FAILED),  # no rate: the module would crash, the simulator refuses
        ("ws://h/x quad 8k", (), ""),  # invalid mix: only logged
        ("ws://h/x mono 0", (), FAILED),
        ("ws://h/x mono 8k", ("audio_fork",), FAILED),  # bug already attached
    ],
)
def test_start_refusals(line: str, attached: tuple[str, ...], reply: str) -> None:
    assert start(line, attached) == reply


def test_stream_start_defaults_to_8k_and_one_bug() -> None:
    argv = fs_separate(f"{UUID} start ws://h/s mixed", 6)
    spec = parse_stream_start(argv, ())
    assert isinstance(spec, ForkSpec)
    assert (spec.bug, spec.sampling, spec.module, spec.play_audio_events) == (
        STREAM_BUG,
        8000,
        "mod_audio_stream",
        False,
    )
    assert parse_stream_start(argv, (STREAM_BUG,)) == FAILED
    assert parse_stream_start(fs_separate(f"{UUID} start ws://h/s mono 0", 6), ()) == FAILED


# -- caller profile --------------------------------------------------------------------------------
def test_profile_fields_in_freeswitch_order_unknown_last() -> None:
    prof = {"Context": "c", "X-Own": "1", "Direction": "inbound", "Caller-ID-Number": "1"}
    assert list(ordered(prof)) == ["Direction", "Caller-ID-Number", "Context", "X-Own"]


def test_insert_after_sets_in_place_or_after_the_anchor() -> None:
    prof = {"Direction": "outbound", "Callee-ID-Number": "2", "ANI": "1"}
    assert list(insert_after(dict(prof), "Callee-ID-Number", "Network-Addr", "10.0.0.1")) == [
        "Direction",
        "Callee-ID-Number",
        "Network-Addr",
        "ANI",
    ]
    assert insert_after(dict(prof), "Callee-ID-Number", "ANI", "9")["ANI"] == "9"


# -- mod_sofia's variables -------------------------------------------------------------------------
def test_inbound_dialog_from_display_and_transport() -> None:
    d = InboundDialog.of(channel(caller_name="Alice"), "10.0.0.9", 5070)
    assert d.display == "Alice" and d.transport == "tcp" and d.call_id.endswith("@10.0.0.9")
    assert d.full_from.startswith('"Alice" <sip:+15550001234@10.0.0.9:5070>;tag=')
    assert d.via.startswith("SIP/2.0/TCP 10.0.0.9:5070;branch=z9hG4bK-")
    plain = InboundDialog.of(channel(sofia_profile="external"), "10.0.0.9", 5070)
    assert plain.display is None and plain.transport == "udp" and plain.full_from.startswith("<sip:")


def test_reply_vars_default_port() -> None:
    leg = channel(direction="outbound")
    got = dict(reply_vars(leg, "203.0.113.5"))
    assert (got["sip_reply_host"], got["sip_reply_port"], got["sip_network_port"]) == ("203.0.113.5", "5060", "5060")
    assert dict(reply_vars(leg, "203.0.113.5:5080"))["sip_reply_port"] == "5080"


# -- dial strings ----------------------------------------------------------------------------------
def test_dial_variables_refuse_unexpanded_values_unless_nested() -> None:
    dial = "{a=1,b=${x}}[c=2]sofia/gateway/g/+1555"
    assert dial_variables(fsstrings.parse_dial_string(dial), dial) == [("a", "1"), ("c", "2")]
    nested = "{origination_nested_vars=true,b=${x}}sofia/gateway/g/+1555"
    assert ("b", "${x}") in dial_variables(fsstrings.parse_dial_string(nested), nested)


def test_switch_true_words() -> None:
    assert all(fsstrings.switch_true(w) for w in ("true", " YES ", "on", "1", "enabled", "active", "allow"))
    assert not any(fsstrings.switch_true(w) for w in (None, "", "false", "no", "2", "y"))


# -- RTCP reports (simulator/rtcp.py: switch_rtp.c process_rtcp_report, switch_core_media.c read_frame) ------------
def test_rtcp_frame_reads_reports_as_process_rtcp_report() -> None:
    from simulator.rtcp import Block, RtcpFrame, Sender, lsr_of

    now = 1_700_000_000_250_000  # µs
    lsr_now = lsr_of(now)
    # the middle 32 bits of the NTP time: the low 16 bits of its seconds, then 1/65536 s
    assert lsr_now >> 16 == (1_700_000_000 + 2208988800) & 0xFFFF and lsr_now & 0xFFFF == int(250_000 * 0.065536)
    frame = RtcpFrame()
    # an RR first: the sender fields stay 0; a negative cumulative loss (duplicates) reads as %u of an int32_t
    frame.receive([Block(ssrc=0xABCDEF01, fraction=64, lost=-3, highest_seq=70_000, jitter=80)], None, now)
    h = dict(frame.headers("u-1", 8000, 1234, now))
    assert h["SSRC"] == "00000000" and h["Sender-Packet-Count"] == "0"
    assert h["Source0-SSRC"] == "abcdef01" and h["Source0-Fraction"] == "64"
    assert h["Source0-Lost"] == str((1 << 32) - 3) and h["Source0-Loss-Avg"] == "25"  # 64·100/255
    assert h["Source0-Highest-Sequence-Number-Received"] == "70000" and h["Source0-Jitter"] == "80"
    assert h["Rtt0-Avg"] == "0.000000"  # no LSR echoed: no RTT
    assert [k for k, _ in frame.headers("u-1", 8000, 1234, now)][:10] == [
        "Unique-ID", "SSRC", "NTP-Most-Significant-Word", "NTP-Least-Significant-Word", "RTP-Timestamp",
        "Sender-Packet-Count", "Octect-Packet-Count", "Last-RTP-Timestamp", "RTP-Rate", "Capture-Time",
    ]  # fmt: skip
    # an SR with an echoed LSR 40 ms ago (DLSR 10 ms of it): RTT 30 ms, then smoothed 0.7/0.3; loss_avg too
    rr = 65536 * 40 // 1000
    frame.receive([Block(fraction=0, lsr=lsr_now - rr, dlsr=65536 * 10 // 1000)], Sender(0x1234, packet_count=9), now)
    h = dict(frame.headers("u-1", 8000, 0, now))
    assert h["SSRC"] == "00001234" and h["Sender-Packet-Count"] == "9"
    assert abs(float(h["Rtt0-Avg"]) - 0.030) < 0.001 and h["Source0-Loss-Avg"] == "17"  # 25·0.7 + 0
    frame.receive([Block(lsr=lsr_now - 65536 * 130 // 1000, dlsr=0)], None, now)  # 130 ms
    assert abs(float(dict(frame.headers("u", 8000, 0, now))["Rtt0-Avg"]) - (0.7 * 0.030 + 0.3 * 0.130)) < 0.001
    # an LSR from the future is not taken (lsr_now > dlsr + lsr fails), the average stays
    before = dict(frame.headers("u", 8000, 0, now))["Rtt0-Avg"]
    frame.receive([Block(lsr=lsr_now + 1000)], None, now)
    assert dict(frame.headers("u", 8000, 0, now))["Rtt0-Avg"] == before
    # at most 5 blocks; a report without blocks has no Source headers
    frame.receive([Block()] * 7, None, now)
    assert frame.report_count == 5 and "Source4-SSRC" in dict(frame.headers("u", 8000, 0, now))
    frame.receive([], None, now)
    assert not any(k.startswith("Source") for k, _ in frame.headers("u", 8000, 0, now))
