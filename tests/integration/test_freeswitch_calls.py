"""Call control against a real FreeSWITCH: inbound to an agent, outbound with SIP causes, REFER, restart.

Runs on the switch under test (see switch.py: a running one, a process or a container) when ``sipp``
is installed; skips otherwise, saying why. FreeSWITCH runs the rendered example moved to 127.0.0.1; sipp
plays the carrier (the recorded fixture scenarios), an in-process WebSocket server plays the
media bridge, and the real :class:`Controller` drives the calls.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import websockets
from deployments import loopback_example, render_and_start
from switch import FreeSwitch, free_port, requires_switch, suite_env, suite_ports

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_file

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "freeswitch-1.10.12"
pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
]
CAMPAIGN = 'O\'Brien \\ "spring" {sale}, 50%'


class Env:
    """The running FreeSWITCH, ports and deployment."""

    def __init__(self, fs: FreeSwitch, ports: dict[str, int], deployment_file: Path, work: Path) -> None:
        self.fs, self.ports, self.deployment_file, self.work = fs, ports, deployment_file, work


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("fscalls")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("uas", "bridge")
    doc = loopback_example(work, ports, max_calls=100)
    pbx = doc["trunks"][1]
    pbx["inbound"]["headers"] = ["X-Campaign", {"header": "X-Customer-Id", "variable": "customer"}]
    pbx["outbound"] = {
        "address": "127.0.0.1",
        "port": ports["uas"],
        "transport": "tcp",
        "media_encryption": "disabled",
        "caller_id": "+15557650100",
        "headers": {"X-Origin": "sipagent"},
    }
    fs = render_and_start(doc, root, work)
    try:
        yield Env(fs, ports, work / "deployment.yaml", work)
    finally:
        fs.stop()


class Bridge:
    """A stand-in media bridge: checks each fork's token, records metadata and audio frames."""

    def __init__(self, controller_ref: list[Controller]) -> None:
        self.controller_ref = controller_ref
        self.metadata: dict[str, list[dict[str, Any]]] = {}
        self.frames: dict[str, int] = {}
        self.rejected = 0

    async def handler(self, ws: Any) -> None:
        url = urlparse(ws.request.path)
        call = url.path.rsplit("/", 1)[-1]
        token = parse_qs(url.query).get("token", [""])[0]
        if not self.controller_ref[0].tokens.verify(call, token):
            self.rejected += 1
            await ws.close(4001, "bad token")
            return
        self.metadata.setdefault(call, []).append(json.loads(await ws.recv()))
        async for message in ws:
            if isinstance(message, bytes):
                self.frames[call] = self.frames.get(call, 0) + 1


@pytest.fixture()
async def bridge(env: Env) -> AsyncIterator[tuple[Bridge, list[Controller]]]:
    ref: list[Controller] = []
    b = Bridge(ref)
    server = await websockets.serve(b.handler, "127.0.0.1", env.ports["bridge"], subprotocols=["audio.drachtio.org"])
    try:
        yield b, ref
    finally:
        server.close()
        await server.wait_closed()


async def new_controller(env: Env, notices: list[Notice]) -> Controller:
    result = check_file(env.deployment_file, suite_env())
    assert result.deployment is not None
    from orchestrator.media.fork import Tokens

    controller = Controller(result.deployment, result.base_dir, tokens=Tokens(b"integration-test-secret"))
    controller.add_listener(notices.append)
    await controller.start()
    await controller.nodes["fs1"].client.wait_connected(10)
    return controller


async def wait_for(notices: list[Notice], kind: str, timeout: float = 20, call: str = "", **data: Any) -> Notice:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for n in notices:
            if (
                n.kind == kind
                and (not call or n.call.uuid == call)
                and all(n.data.get(k) == v for k, v in data.items())
            ):
                return n
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} notice; got {[n.kind for n in notices]}")


def scenario(env: Env, source: Path, name: str, edits: dict[str, str] | None = None) -> Path:
    text = source.read_text()
    for old, new in (edits or {}).items():
        text = text.replace(old, new)
    path = env.work / name
    path.write_text(text)
    return path


async def sipp(env: Env, xml: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), "-m", "1", "-nostdin", "-t", "t1", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip


def uac(env: Env, name: str = "uac.xml", pause_ms: int = 2500) -> Path:
    return scenario(
        env,
        FIXTURES / "02-inbound-call" / "uac.xml",
        name,
        {
            '<pause milliseconds="7600"/>': f'<pause milliseconds="{pause_ms}"/>',
            "X-Campaign: spring sale": f"X-Campaign: {CAMPAIGN}",
        },
    )


async def call_in(env: Env, xml: Path, number: str = "+15557650101") -> asyncio.subprocess.Process:
    return await sipp(
        env, xml, f"127.0.0.1:{env.ports['tcp']}", "-s", number, "-i", "127.0.0.2", "-p", str(free_port())
    )


async def test_inbound_call_reaches_the_agent(env: Env, bridge: tuple[Bridge, list[Controller]]) -> None:
    b, ref = bridge
    notices: list[Notice] = []
    controller = await new_controller(env, notices)
    ref.append(controller)
    try:
        proc = await call_in(env, uac(env))
        answered = await wait_for(notices, "answered")
        call = answered.call
        assert (call.agent, call.trunk, call.number, call.remote) == (
            "sales",
            "office-pbx",
            "+15557650101",
            "+15550001234",
        )
        assert (call.codec, call.rate) == ("PCMA", 8000)
        await wait_for(notices, "fork_connected")
        digits = []
        for _ in range(2):
            digits.append((await wait_for(notices, "dtmf", digit="1" if not digits else "#")).data["digit"])
        ended = await wait_for(notices, "ended")
        assert await proc.wait() == 0
        [meta] = b.metadata[call.uuid]
        assert meta["variables"]["campaign"] == CAMPAIGN  # special characters survive FreeSWITCH's argument parsing
        assert meta["variables"]["customer"] == "42"
        assert meta["variables"]["caller_id"] == "+15550001234" and meta["rate"] == 8000
        assert b.frames.get(call.uuid, 0) > 50  # ~20 ms frames of caller audio
        assert digits == ["1", "#"]
        h = ended.call.hangup
        assert h is not None and (h.cause, h.sip_status, h.result) == ("NORMAL_CLEARING", 200, "completed")
        assert ended.call.hangup_by == "remote"
    finally:
        await controller.stop()
    lines = (env.work / "calls.jsonl").read_text().splitlines()
    record = next(json.loads(line) for line in lines if json.loads(line)["id"] == call.uuid)
    assert record["dtmf"]["received"] == "1#" and record["quality"]["mos"] > 0
    assert record["timings"]["setup_seconds"] is not None


@pytest.mark.parametrize(
    ("folder", "status", "result"),
    [("486", 486, "busy"), ("404", 404, "not_found"), ("503", 503, "unavailable"), ("603", 603, "rejected")],
)
async def test_outbound_failures_report_the_sip_status(
    env: Env, bridge: tuple[Bridge, list[Controller]], folder: str, status: int, result: str
) -> None:
    notices: list[Notice] = []
    controller = await new_controller(env, notices)
    bridge[1].append(controller)
    try:
        uas = await sipp(
            env, FIXTURES / "04-originate-failures" / folder / "uas.xml", "-i", "127.0.0.1", "-p", str(env.ports["uas"])
        )
        await asyncio.sleep(0.3)
        call = await controller.originate(trunk="office-pbx", to="+15557654321", agent="sales")
        ended = await wait_for(notices, "ended")
        assert ended.call.uuid == call.uuid
        h = ended.call.hangup
        assert h is not None and (h.sip_status, h.result) == (status, result)
        assert ended.call.progress == [180]
        await asyncio.wait_for(uas.wait(), 10)
    finally:
        await controller.stop()


async def test_outbound_answered_with_caller_id_and_headers(env: Env, bridge: tuple[Bridge, list[Controller]]) -> None:
    b, ref = bridge
    notices: list[Notice] = []
    controller = await new_controller(env, notices)
    ref.append(controller)
    log = env.work / "uas_messages.log"
    log.unlink(missing_ok=True)
    try:
        uas = await sipp(
            env,
            FIXTURES / "03-originate-answered" / "uas.xml",
            "-i", "127.0.0.1", "-p", str(env.ports["uas"]), "-trace_msg", "-message_file", str(log),
        )  # fmt: skip
        await asyncio.sleep(0.3)
        call = await controller.originate(
            trunk="office-pbx", to="+15557654321", agent="sales", headers={"X-Call-Purpose": "demo, test"}
        )
        await wait_for(notices, "answered")
        await wait_for(notices, "fork_connected")
        await controller.send_dtmf(call.uuid, "12#")
        await controller.hangup(call.uuid, "completed", by="agent")
        ended = await wait_for(notices, "ended")
        assert ended.call.hangup_by == "agent" and ended.call.hangup is not None
        assert ended.call.hangup.result == "completed" and ended.call.dtmf_out == "12#"
        await asyncio.wait_for(uas.wait(), 10)
        invite = log.read_text().split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
        assert re.search(r"^From: .*<sip:\+15557650100@", invite, re.M)
        assert "\nX-Origin: sipagent" in invite and "\nX-Call-Purpose: demo, test" in invite
        assert b.metadata[call.uuid][0]["direction"] == "outbound"
    finally:
        await controller.stop()


@pytest.mark.parametrize(
    ("notify", "substate", "stays"),
    [
        ("603 Declined", "active;expires=60", True),
        ("603 Declined", "terminated", False),
        ("200 OK", "terminated", False),
    ],
)
async def test_refer_outcome(
    env: Env, bridge: tuple[Bridge, list[Controller]], notify: str, substate: str, stays: bool
) -> None:
    notices: list[Notice] = []
    controller = await new_controller(env, notices)
    bridge[1].append(controller)
    xml = scenario(
        env,
        FIXTURES / "06-refer" / "notify-603" / "uac.xml",
        f"refer-{notify[:3]}-{substate[:6]}.xml",
        {
            "SIP/2.0 603 Declined": f"SIP/2.0 {notify}",
            "Subscription-State: terminated;reason=noresource": f"Subscription-State: {substate}",
        },
    )
    try:
        proc = await call_in(env, xml)
        answered = await wait_for(notices, "answered")
        await wait_for(notices, "fork_connected")
        await controller.transfer(answered.call.uuid, "sip:+15559998888@127.0.0.1:5071")
        result = await wait_for(notices, "transfer")
        assert result.data["sip_status"] == int(notify[:3])
        assert result.data["succeeded"] is notify.startswith("200")
        if stays:
            await asyncio.sleep(1.0)
            assert controller.call(answered.call.uuid) is not None, "a failed transfer leaves the call with the agent"
        ended = await wait_for(notices, "ended", timeout=15)
        assert ended.call.hangup_by == ("remote" if stays else "transfer")
        assert ended.call.transfer is not None
        assert ended.call.transfer.status == ("succeeded" if notify.startswith("200") else "failed")
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        await controller.stop()


async def test_calls_survive_an_orchestrator_restart_and_an_esl_drop(
    env: Env, bridge: tuple[Bridge, list[Controller]]
) -> None:
    b, ref = bridge
    notices: list[Notice] = []
    controller = await new_controller(env, notices)
    ref.append(controller)
    proc = await call_in(env, uac(env, "long.xml", pause_ms=9000))
    answered = await wait_for(notices, "answered")
    uuid = answered.call.uuid
    await wait_for(notices, "fork_connected")

    # the ESL link drops: the client reconnects, resyncs, and the call is still ours
    writer = controller.nodes["fs1"].client._writer
    assert writer is not None
    writer.transport.abort()
    await asyncio.sleep(1.5)
    assert controller.nodes["fs1"].client.connections >= 2
    assert controller.call(uuid) is not None and controller.call(uuid).state == "answered"

    # the orchestrator restarts: a new controller re-attaches the live call and restarts its fork
    await controller.stop()
    notices2: list[Notice] = []
    controller2 = await new_controller(env, notices2)
    ref[0] = controller2
    try:
        again = await wait_for(notices2, "answered", call=uuid)
        assert again.call.uuid == uuid and again.data.get("reattached") and again.call.reattached
        await wait_for(notices2, "fork_connected", call=uuid)
        assert len(b.metadata[uuid]) == 2  # a second fork for the same call
        ended = await wait_for(notices2, "ended", timeout=20, call=uuid)
        assert ended.call.uuid == uuid and ended.call.hangup_by == "remote"
        assert await proc.wait() == 0
    finally:
        await controller2.stop()
