"""What an API caller sends reaches FreeSWITCH's INVITE byte for byte, and nothing else is dialled (real switch).

A sipp UAS plays the far end and logs every INVITE. The same command lines are taken apart by the
simulator's model of FreeSWITCH's parsing (tests/simulator/fsstrings.py), which must agree with what the real
switch did: that is what keeps the simulator-based tests of the controller honest.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import test_freeswitch_calls as calls
from simulator import fsstrings
from switch import suite_env
from test_freeswitch_calls import FIXTURES, Env, new_controller, sipp, wait_for

from orchestrator.calls.controller import CallError
from orchestrator.calls.tracker import Notice
from orchestrator.esl import commands
from orchestrator.esl.client import Endpoint, EslClient
from orchestrator.esl.protocol import Event

pytestmark = calls.pytestmark
env = calls.env
bridge = calls.bridge

#: values an API caller may send; each must arrive exactly (header and channel variable)
VALUES = [
    "demo, test",
    "back\\slash",
    "two\\\\backslashes and \\\\\\three",
    "ends with a backslash\\",
    "\\s \\n \\t \\r \\' \\\" are text, not escapes",
    "it's 'quoted' and \"double\" ''",
    "{balanced} {nested {deeper}} x={y}",
    "^^,caret ^^: a^b ^^|",
    "semi;colon=eq pipe|bar [brackets] <angle> a,b=c",
    "percent %41 %s dollar $x $$y $ {not a variable} {$}",
    "héllo 日本語 😀",
    ":_ and _: apart",
    "=starts with equals",
    "x" * 1000,
]
#: what must be refused before anything is sent (FreeSWITCH cannot carry it, or it would change the command)
REFUSED = [
    "closes}sofia/gateway/office-pbx/+15550000001,x={",
    "opens{",
    "}{",
    "a:_:b",
    "${uuid}",
    "$\\{uuid}",
    "line\nbreak",
    "nul\x00byte",
    "tab\tcharacter",
    "del\x7f",
    "x" * 1025,
]


def _invites(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [m.split("\n\n", 1)[0] for m in text.split("INVITE sip:")[1:]]


async def _originate_and_capture(env: Env, command_headers: dict[str, str], name: str) -> tuple[list[str], Event]:
    """Run an originate built by commands.originate through a raw client; the far end answers 486."""
    log = env.work / f"{name}.log"
    log.unlink(missing_ok=True)
    uas = await sipp(
        env, FIXTURES / "04-originate-failures" / "486" / "uas.xml",
        "-i", "127.0.0.1", "-p", str(env.ports["uas"]), "-trace_msg", "-message_file", str(log),
    )  # fmt: skip
    await asyncio.sleep(0.3)
    events: list[Event] = []
    password = suite_env()["FREESWITCH_ESL_PASSWORD"]
    client = EslClient(
        Endpoint("127.0.0.1", env.ports["esl"], password, "raw"),
        events=["CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB"],
        event_format="json",
        on_event=events.append,
    )
    await client.start()
    try:
        await client.wait_connected(10)
        uuid = "5a1c0de0-0000-4000-8000-" + name.encode().hex()[:12].ljust(12, "0")
        variables = {"origination_uuid": uuid, **{f"sip_h_{k}": v for k, v in command_headers.items()}}
        command = commands.originate(variables, "sofia/gateway/office-pbx/+15557654321")
        body = await client.bgapi(command, check=False, timeout=20)
        assert body.startswith("-ERR USER_BUSY"), body
        for _ in range(100):
            done = [e for e in events if e.uuid == uuid]
            if done:
                break
            await asyncio.sleep(0.05)
        assert done, "no CHANNEL_HANGUP_COMPLETE"
        await asyncio.wait_for(uas.wait(), 10)
        return _invites(log), done[0]
    finally:
        await client.stop()


async def test_header_values_arrive_byte_for_byte_and_the_simulator_agrees(env: Env) -> None:
    headers = {f"X-Probe-{i}": value for i, value in enumerate(VALUES)}
    invites, hangup = await _originate_and_capture(env, headers, "probe")
    assert len(invites) == 1, "exactly one INVITE: nothing else was dialled"
    invite = invites[0]
    assert invite.startswith("+15557654321@"), invite.split("\n", 1)[0]
    for name, value in headers.items():
        assert hangup.variable(f"sip_h_{name}") == value, name  # the channel variable, exactly
        line = next((x for x in invite.split("\n") if x.startswith(f"{name}:")), None)
        assert line is not None, f"{name} missing from the INVITE"
        assert line == f"{name}: {value}", (name, line)  # the header on the wire, exactly

    # the simulator's model of FreeSWITCH's parsing finds the same variables and the same endpoint
    variables = {f"sip_h_{k}": v for k, v in headers.items()}
    command = commands.originate({"origination_uuid": "u", **variables}, "sofia/gateway/office-pbx/+15557654321")
    argv = fsstrings.separate(command.split(" ", 1)[1], " ", 10)
    parsed = fsstrings.parse_dial_string(argv[0])
    assert dict(parsed.variables) == {"origination_uuid": "u", **variables}
    assert [[leg.endpoint for leg in g] for g in parsed.groups] == [["sofia/gateway/office-pbx/+15557654321"]]


async def test_values_freeswitch_cannot_carry_are_refused_before_sending(env: Env, bridge) -> None:  # type: ignore[no-untyped-def]
    notices: list[Notice] = []
    controller = await new_controller(env, notices)
    bridge[1].append(controller)
    try:
        for value in REFUSED:
            for kind in ("headers", "variables"):
                key = "X-Evil" if kind == "headers" else "evil"
                with pytest.raises(CallError) as info:
                    await controller.originate(
                        trunk="office-pbx", to="+15557654321", agent="sales", **{kind: {key: value}}
                    )
                assert info.value.status == 400 and info.value.code in ("invalid_header", "invalid_variable")
        for to in (
            "0044123456789",
            "+0123",
            "15557654321",
            "+1555765432100000",
            "sip:+1@evil.example/x",
            "tel:+15551234567",
        ):
            with pytest.raises(CallError) as info:
                await controller.originate(trunk="office-pbx", to=to, agent="sales")
            assert info.value.code == "invalid_destination"
        await asyncio.sleep(0.5)
        assert not notices, "nothing was sent to FreeSWITCH"
    finally:
        await controller.stop()


async def test_the_api_path_delivers_headers_and_variables(env: Env, bridge) -> None:  # type: ignore[no-untyped-def]
    b, ref = bridge
    notices: list[Notice] = []
    controller = await new_controller(env, notices)
    ref.append(controller)
    log = env.work / "api-path.log"
    log.unlink(missing_ok=True)
    uas = await sipp(
        env, FIXTURES / "03-originate-answered" / "uas.xml",
        "-i", "127.0.0.1", "-p", str(env.ports["uas"]), "-trace_msg", "-message_file", str(log),
    )  # fmt: skip
    await asyncio.sleep(0.3)
    try:
        value = VALUES[5] + " " + VALUES[6]
        call = await controller.originate(
            trunk="office-pbx", to=f"sip:+15557654321@127.0.0.1:{env.ports['uas']};transport=tcp", agent="sales",
            headers={"X-Tricky": value}, variables={"tricky": value},
        )  # fmt: skip
        await wait_for(notices, "fork_connected", call=call.uuid)
        await controller.hangup(call.uuid)
        await wait_for(notices, "ended", call=call.uuid)
        await asyncio.wait_for(uas.wait(), 10)
        [invite] = _invites(log)
        assert re.search(r"^X-Tricky: (.*)$", invite, re.M).group(1) == value  # type: ignore[union-attr]
        assert b.metadata[call.uuid][0]["variables"]["tricky"] == value  # the agent gets it too
    finally:
        await controller.stop()
