"""What may be dialled and how it is written into FreeSWITCH commands: dialing, esl.commands, esl.quoting, dtmf."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from simulator import fsstrings

from orchestrator import channelvars, dtmf
from orchestrator.calls import dialing
from orchestrator.config import check_text
from orchestrator.config.model import Deployment
from orchestrator.esl import commands, quoting


# -- destinations -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("to", "dial"),
    [
        ("+15557654321", "+15557654321"),
        ("+442071234567", "+442071234567"),
        ("sip:+15557654321@pbx.example.com", "+15557654321@pbx.example.com"),
        ("SIP:alice@PBX.Example.COM:5080", "alice@pbx.example.com:5080"),
        ("sips:1000@[2001:db8::1]:5061;transport=tls", "1000@[2001:db8::1]:5061;transport=tls"),
        ("sip:1000@10.0.0.1;user=phone;transport=tcp", "1000@10.0.0.1;user=phone;transport=tcp"),
        ("sip:a%20b@host.example", "a%20b@host.example"),
    ],
)
def test_destinations_that_are_dialled(to: str, dial: str) -> None:
    assert dialing.destination(to) == dial


@pytest.mark.parametrize(
    ("to", "hint"),
    [
        ("0044123456789", "+44123456789"),
        ("0015557654321", "+15557654321"),
        ("15557654321", "+15557654321"),
        ("+0123456", ""),
        ("+1", ""),
        ("+1234567890123456", ""),
        ("+1555 765 4321", ""),
        ("+1555-765-4321", ""),
        ("+١٢٣٤٥٦٧", ""),  # Arabic-Indic digits: str.isdigit() says yes
        ("+15557654321,+15550000001", ""),
        ("+15557654321|+15550000001", ""),
        ("sip:a@b@c", ""),
        ("sip:a b@host", ""),
        ("sip:a@host,sofia/gateway/x/1", ""),
        ("sip:a@host|x", ""),
        ("sip:a@host?subject=x", ""),
        ("sip:'a'@host", ""),
        ("sip:a(b)@host", ""),
        ("sip:a{b}@host", ""),
        ("sip:a@host;x=${y}", ""),
        ("sip:a@host:99999", ""),
        ("sip:a@host:0", ""),
        ("sip:a@host:", ""),
        ("sip:a@999.1.1.1", ""),
        ("sip:a@1.2.3", ""),
        ("sip:a@-bad-.example", ""),
        ("sip:a@[::1", ""),
        ("sip:a@[zz::1]", ""),
        ("sip:@host", ""),
        ("sip:a@", ""),
        ("sip:a:secret@host", ""),
        ("sip:a@hôst.example", ""),
        ("sip:a@host\n", ""),
        ("tel:+15557654321", ""),
        ("http://x@host", ""),
        ("", ""),
        ("sip:" + "a" * 300 + "@host", ""),
    ],
)
def test_destinations_that_are_refused(to: str, hint: str) -> None:
    with pytest.raises(dialing.Invalid) as info:
        dialing.destination(to)
    assert info.value.code == "invalid_destination"
    assert hint in info.value.message


@pytest.mark.parametrize("bad", [None, 15557654321, ["+1555"], {"to": "+1"}])
def test_destination_types(bad: object) -> None:
    with pytest.raises(dialing.Invalid):
        dialing.destination(bad)


def test_caller_id_and_refer_targets() -> None:
    assert dialing.caller_id("+15550009999") == "+15550009999"
    for bad in ("0015550009999", "Alice", "+1555 000", "+15550009999\r\nX-Evil: 1"):
        with pytest.raises(dialing.Invalid) as info:
            dialing.caller_id(bad)
        assert info.value.code == "invalid_caller_id"
    assert dialing.refer_target("+4930123456", "sbc.example.com") == "sip:+4930123456@sbc.example.com"
    assert dialing.refer_target("sip:desk@pbx.example.com:5080", None) == "sip:desk@pbx.example.com:5080"
    with pytest.raises(dialing.Invalid, match="outbound address"):
        dialing.refer_target("+4930123456", None)
    for bad in ("sip:x@h x", "0049301234", "sip:x@h;a=b c", "sip:x@h^bridge:y"):
        with pytest.raises(dialing.Invalid) as info:
            dialing.refer_target(bad, "sbc.example.com")
        assert info.value.code == "invalid_target"


# -- headers and variables ----------------------------------------------------------------------------
def test_header_names_and_values() -> None:
    assert dialing.headers({"X-Campaign": "spring, 50%", "X-A-1": "{json: [1]}"}) == {
        "X-Campaign": "spring, 50%",
        "X-A-1": "{json: [1]}",
    }
    for name in ("Campaign", "X-", "X-a b", "X-a:b", "x-lower", "X-" + "a" * 127, "X-é", "sip_h_X-A", ""):
        with pytest.raises(dialing.Invalid) as info:
            dialing.headers({name: "v"})
        assert info.value.code == "invalid_header"
    for reserved in ("X-Sipagent-Trunk", "X-SIPAGENT-Source", "X-sipagent-x"):  # the edge's, any case
        with pytest.raises(dialing.Invalid, match="reserved for the edge") as info:
            dialing.headers({reserved: "other-trunk"})
        assert info.value.code == "invalid_header"
    for value in ("a}b", "{", "a:_:b", "${x}", "line\r\nX-Evil: 1", "nul\x00", "", "x" * 1025, 7):
        with pytest.raises(dialing.Invalid) as info:
            dialing.headers({"X-A": value})  # type: ignore[dict-item]
        assert info.value.code == "invalid_header"


def test_request_limits() -> None:
    many = {f"X-H{i}": "v" for i in range(dialing.MAX_ENTRIES + 1)}
    with pytest.raises(dialing.Invalid) as info:
        dialing.headers(many)
    assert info.value.code == "request_too_large"
    big = {f"X-H{i}": "v" * 1000 for i in range(17)}
    with pytest.raises(dialing.Invalid, match="16384 bytes"):
        dialing.headers(big)
    fine = {f"X-H{i}": "v" * 1000 for i in range(16)}
    assert len(dialing.headers(fine)) == 16
    with pytest.raises(dialing.Invalid, match="4096 bytes"):
        dialing.variables({f"v{i}": "x" * 1000 for i in range(5)})
    with pytest.raises(dialing.Invalid) as info:
        dialing.variables({"system__caller_id": "x"})
    assert "reserved" in info.value.message
    for name in ("Upper", "1st", "with-dash", "a" * 64):
        with pytest.raises(dialing.Invalid):
            dialing.variables({name: "x"})
    with pytest.raises(dialing.Invalid):
        dialing.headers(["X-A", "b"])


def test_agent_overrides() -> None:
    ok = {"first_message": "Hello, it's Anna {from} 'sales'", "language": "pt-br", "voice_id": "21m00Tcm4TlvDq8ikWAM"}
    assert dialing.agent_overrides(ok) == ok
    assert dialing.agent_overrides({"prompt": "Be brief."}) == {"prompt": "Be brief."}
    bad_ones = ({"unknown": "x"}, {"language": "english!"}, {"voice_id": "a b"}, {"first_message": "${x}"}, ["x"])
    for bad in (*bad_ones, {"first_message": "line\nbreak"}, {"prompt": "x" * 1025}):
        with pytest.raises(dialing.Invalid) as info:
            dialing.agent_overrides(bad)
        assert info.value.code == "invalid_overrides"


# -- commands -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("uuid", ["a b", "a;b", "", "-x", "a\n", "x" * 300, "uuid}{"])
def test_call_ids_are_plain_tokens(uuid: str) -> None:
    for build in (commands.uuid_kill, commands.uuid_park, commands.uuid_answer, commands.uuid_break):
        with pytest.raises(quoting.Refused):
            build(uuid, "NORMAL_CLEARING") if build is commands.uuid_kill else build(uuid)  # type: ignore[call-arg]


def test_command_arguments() -> None:
    u = "6f1c3d2a-0000-4000-8000-000000000001"
    assert commands.uuid_kill(u, "USER_BUSY") == f"uuid_kill {u} USER_BUSY"
    with pytest.raises(quoting.Refused):
        commands.uuid_kill(u, "NORMAL_CLEARING all")
    assert commands.uuid_send_dtmf(u, "1w2W#a", 120) == f"uuid_send_dtmf {u} 1w2W#A@120"
    for digits in ("1 2", "E", "12@100", "1+2", "~1", "", "1" * 65):
        with pytest.raises(quoting.Refused):
            commands.uuid_send_dtmf(u, digits, 100)
    with pytest.raises(quoting.Refused):
        commands.uuid_send_dtmf(u, "1", 20)
    # inband trunks: the same digits as tones; nothing else reaches file_string/tone_stream (! ; = would)
    assert commands.uuid_broadcast_dtmf_tones(u, "1w#", 80) == (
        f"uuid_broadcast {u} file_string://tone_stream://d=80;w=80;1!silence_stream://500!tone_stream://d=80;w=80;# aleg"
    )
    for digits in ("1 2", "1!2", "1;v=0", "E", "12@100", "", "1" * 65, "1::playback"):
        with pytest.raises(quoting.Refused):
            commands.uuid_broadcast_dtmf_tones(u, digits, 100)
    for duration in (0, 39, 2001):
        with pytest.raises(quoting.Refused):
            commands.uuid_broadcast_dtmf_tones(u, "1", duration)
    with pytest.raises(quoting.Refused):
        commands.uuid_broadcast(u, "/tmp/a b.wav")
    with pytest.raises(quoting.Refused):
        commands.uuid_broadcast(u, "/tmp/../etc/passwd")
    assert commands.uuid_deflect(u, "sip:a@b") == f"uuid_deflect {u} sip:a@b"
    for endpoint in (
        "sofia/gateway/x/1,sofia/gateway/y/2",
        "sofia/gateway/x/1|user/2",
        "loopback/1",
        "sofia/gateway/x/a b",
    ):
        with pytest.raises(quoting.Refused):
            commands.originate({"origination_uuid": u}, endpoint)


def test_inline_dialplan_keeps_each_application_whole() -> None:
    u = "6f1c3d2a-0000-4000-8000-000000000001"
    command = commands.uuid_transfer_inline(u, [("playback", "tone_stream://%(200,0,500)"), ("hangup", "")])
    argv = fsstrings.separate(command.split(" ", 1)[1], " ", 5)
    assert argv[0] == u and argv[2] == "inline"
    assert fsstrings.separate(argv[1][4:], "^", 128) == ["playback:tone_stream://%(200,0,500)", "hangup"]
    for app, data in (("play back", "x"), ("bridge", "a^hangup"), ("set", "x=${y}"), ("set", "a\nb")):
        with pytest.raises(quoting.Refused):
            commands.uuid_transfer_inline(u, [(app, data)])


def test_one_argument_survives_the_split() -> None:
    for value in ("a b", " edge ", "it's", "back\\slash", "\\s", "'q'", "x" * 1024):
        line = f"cmd {quoting.argument(value)} tail"
        assert fsstrings.separate(line, " ") == ["cmd", value, "tail"]


# -- DTMF ---------------------------------------------------------------------------------------------
def test_one_dtmf_grammar() -> None:
    assert [dtmf.key(k) for k in "0159*#ABCDabcd"] == list("0159*#ABCDABCD")
    assert [dtmf.key(k) for k in ("E", "w", "", "12", " ", None, 5)] == [None] * 7
    assert dtmf.sequence("1w2W3#") == "1w2W3#"
    assert dtmf.sequence("abc") == "ABC"
    assert [dtmf.sequence(s) for s in ("", "1 2", "12@100", "x", "1" * 65, "١", None)] == [None] * 7
    assert dtmf.valid_duration(40) and dtmf.valid_duration(2000)
    assert not any(dtmf.valid_duration(v) for v in (39, 2001, True, 100.0, "100"))


def test_every_adapter_speaks_the_same_dtmf_grammar() -> None:
    """What an agent may send, the controller sends (pauses included); what a caller presses, each agent hears."""
    import json

    from orchestrator.agents.base import CallInfo, SendDtmf
    from orchestrator.agents.elevenlabs import ElevenLabsProtocol
    from orchestrator.agents.raw import RawProtocol
    from orchestrator.agents.twilio import TwilioProtocol
    from orchestrator.config.model import ElevenLabsAgent, RawAgent, TwilioAgent

    call = CallInfo(
        "5f0c3f7e-2b1a-4c8e-9d3f-0123456789ab", "inbound", "+4915112345678", "+4930123456", "bot", "c", 8000
    )
    raw = RawProtocol(call, RawAgent(name="bot", protocol="raw", url="ws://127.0.0.1:9/a", audio_format="pcm_8000"))
    eleven = ElevenLabsProtocol(call, ElevenLabsAgent(name="bot", protocol="elevenlabs", agent_id="a"))
    twilio = TwilioProtocol(call, TwilioAgent(name="bot", protocol="twilio", url="ws://127.0.0.1:9/t"))
    for digits, expected in (("1w2W#", "1w2W#"), ("abc*", "ABC*")):
        assert raw.receive(json.dumps({"type": "dtmf", "digits": digits})) == [SendDtmf(expected, None)]
        tool = {
            "type": "client_tool_call",
            "client_tool_call": {"tool_name": "send_dtmf", "tool_call_id": "t", "parameters": {"digits": digits}},
        }
        assert eleven.receive(json.dumps(tool)) == [SendDtmf(expected, "t")]
        assert commands.uuid_send_dtmf("u1", expected, 100) == f"uuid_send_dtmf u1 {expected}@100"
    for bad in ("1 2", "12@100", "E", ""):
        assert raw.receive(json.dumps({"type": "dtmf", "digits": bad}))[0].__class__.__name__ == "ProtocolViolation"
    for adapter in (raw, eleven, twilio):
        assert adapter.dtmf("w") == [] and adapter.dtmf("E") == []
        assert "A" in adapter.dtmf("a")[0]  # FreeSWITCH may report a-d: every agent hears A-D


# -- outbound requests: one rule a function, and the channel variables they become --------------------------------
_OUTBOUND = """
freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: pw}}
transports: {tcp: {port: 5060}}
trunks:
  - name: carrier
    outbound: {address: sbc.carrier.example, caller_id: "+15550009999"}
  - name: inbound-only
    inbound: {transports: [tcp], auth: {acl: [192.0.2.0/24]}}
numbers: [{number: "+15550000001", trunk: inbound-only, agent: support}]
agents: [{name: support, protocol: raw, url: "ws://127.0.0.1:9000/a"}]
orchestrator: {media_url: "ws://127.0.0.1:8090"}
"""


@pytest.fixture()
def deployment(tmp_path: Path) -> Deployment:
    result = check_text(_OUTBOUND, "d.yaml", {}, tmp_path)
    assert result.deployment is not None, [str(e) for e in result.errors]
    return result.deployment


def _refused(call: Callable[[], object]) -> tuple[str, int]:
    with pytest.raises(dialing.Invalid) as info:
        call()
    return info.value.code, info.value.status


def test_names_the_deployment_must_know(deployment: Deployment) -> None:
    assert dialing.outbound_trunk(deployment, "carrier").name == "carrier"
    assert _refused(lambda: dialing.outbound_trunk(deployment, "inbound-only")) == ("unknown_trunk", 404)
    assert _refused(lambda: dialing.outbound_trunk(deployment, ["carrier"])) == ("unknown_trunk", 404)
    assert dialing.agent(deployment, "support") == "support"
    assert _refused(lambda: dialing.agent(deployment, "nobody")) == ("unknown_agent", 404)
    assert dialing.trunk_address(deployment, "carrier") == "sbc.carrier.example"
    assert dialing.trunk_address(deployment, "inbound-only") is None
    assert dialing.shown("x" * 100) == repr("x" * 64) and dialing.shown(3) == "int"


@pytest.mark.parametrize("bad", [4, 601, 5.5, True, "30"])
def test_timeouts(bad: object) -> None:
    assert dialing.timeout(None) is None and dialing.timeout(5) == 5 and dialing.timeout(600) == 600
    assert _refused(lambda: dialing.timeout(bad)) == ("invalid_timeout", 400)


def test_errors_come_in_request_order(deployment: Deployment) -> None:
    def outbound(**kw: object) -> dialing.Dial:
        args: dict[str, object] = {"trunk": "carrier", "to": "+15557654321", "agent_name": "support", **kw}
        return dialing.outbound(deployment, **args)  # type: ignore[arg-type]

    assert _refused(lambda: outbound(trunk="x", agent_name="x", seconds=1))[0] == "unknown_trunk"
    assert _refused(lambda: outbound(agent_name="x", seconds=1, to="bad"))[0] == "unknown_agent"
    assert _refused(lambda: outbound(seconds=1, to="bad"))[0] == "invalid_timeout"
    assert _refused(lambda: outbound(to="bad", caller="bad"))[0] == "invalid_destination"
    assert _refused(lambda: outbound(caller="bad", extra_headers={"bad": "x"}))[0] == "invalid_caller_id"
    assert _refused(lambda: outbound(extra_headers={"bad": "x"}, agent_variables={"Bad": "x"}))[0] == "invalid_header"
    assert _refused(lambda: outbound(agent_variables={"Bad": "x"}, overrides=3))[0] == "invalid_variable"
    assert _refused(lambda: outbound(overrides=3))[0] == "invalid_overrides"
    dial = outbound()
    assert (dial.destination, dial.caller_id, dial.timeout) == ("+15557654321", "+15550009999", None)
    assert dial.dial_string == "sofia/gateway/carrier/+15557654321"


def test_channel_variables_of_an_outbound_call(deployment: Deployment) -> None:
    dial = dialing.outbound(
        deployment,
        trunk="carrier",
        to="sip:alice@pbx.example.com",
        agent_name="support",
        caller="+15550001111",
        extra_headers={"X-Campaign": "spring"},
        agent_variables={"customer_id": "42"},
        overrides={"language": "de"},
        seconds=30,
    )
    assert list(dialing.channel_variables(dial, "u-1", 60).items()) == [
        ("origination_uuid", "u-1"),
        ("sipagent_direction", "outbound"),
        ("sipagent_agent", "support"),
        ("sipagent_trunk", "carrier"),
        ("sipagent_destination", "sip:alice@pbx.example.com"),
        ("originate_timeout", "30"),
        ("ignore_early_media", "true"),
        ("sip_refer_continue_after_reply", "true"),
        ("send_silence_when_idle", "-1"),
        ("origination_caller_id_number", "+15550001111"),
        ("origination_caller_id_name", "+15550001111"),
        ("sip_h_X-Campaign", "spring"),
        ("sipagent_var_customer_id", "42"),
        ("sipagent_override_language", "de"),
    ]
    assert dialing.channel_variables(dataclasses.replace(dial, timeout=None), "u-1", 60)["originate_timeout"] == "60"
    # what the call is answered with inbound is what it is placed with outbound
    for name, value in channelvars.ANSWER_VARIABLES.items():
        assert dialing.channel_variables(dial, "u-1", 60)[name] == value
