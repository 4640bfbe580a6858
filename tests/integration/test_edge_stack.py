"""The whole pool on real software: Kamailio in front of two FreeSWITCH processes, the orchestrator driving both.

Rendered from one deployment file (``render_all``): the edge at 127.0.0.1 (public TCP, internal TCP), node fs1 at
127.0.0.1 and fs2 at 127.0.0.2 (own SIP ports, RTP ranges and event sockets), round-robin dispatch so the spread
is exact. sipp plays the carrier from 127.0.0.3 (a 440 Hz PCMU caller that hangs up itself, so its BYE must find
the node that owns the dialog through the edge's Record-Route); a raw agent echoes the caller's audio.

1. four calls through the edge are spread over both nodes, each reaches the agent with its trunk and number, audio
   flows both ways, the carrier's BYE ends each call on its own node;
2. fs1 stops: the edge marks it down (OPTIONS), new calls all go to fs2;
3. an outbound call the orchestrator places leaves through the edge: the carrier sees the INVITE from the edge's
   public address, not from a node.

Needs FREESWITCH_BIN (a switch started here), Kamailio and sipp; skips saying which is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_agents import FakeRawAgent
from switch import BIN, MODE, FreeSwitch, free_port, requires_switch, start_process, suite_env

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_file
from orchestrator.media.bridge import MediaBridge
from orchestrator.media.fork import Tokens
from orchestrator.render import render_all, write_tree

KAMAILIO = shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)
STREAMING_FORK = os.environ.get("FREESWITCH_STREAMING_FORK", "")
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "freeswitch-1.10.12"
NUMBER = "+15557650101"
CARRIER_IP = "127.0.0.3"

pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
    pytest.mark.skipif(KAMAILIO is None, reason="needs Kamailio 5.6 (Debian packages kamailio, kamailio-tls-modules)"),
    pytest.mark.skipif(MODE != "process", reason="starts two FreeSWITCH processes of its own: needs FREESWITCH_BIN"),
]

CALLER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier caller that hangs up">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Carrier" <sip:+15550001234@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:+15550001234@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
X-Sipagent-Trunk: forged
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=ptime:20
a=sendrecv
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true" rtd="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Carrier" <sip:+15550001234@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
[routes]
Max-Forwards: 70
Content-Length: 0
]]></send>
  <nop><action><exec rtp_stream="TONE,-1,0"/></action></nop>
  <pause milliseconds="4000"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Carrier" <sip:+15550001234@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
[routes]
Max-Forwards: 70
Content-Length: 0
]]></send>
  <recv response="200"/>
</scenario>
"""

CALLEE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier answering an outbound call">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
]]></send>
</scenario>
"""


class Stack:
    def __init__(
        self, root: Path, ports: dict[str, int], nodes: dict[str, FreeSwitch], kamailio: subprocess.Popen[bytes]
    ):
        self.root, self.ports, self.nodes, self.kamailio = root, ports, nodes, kamailio


def _deployment(root: Path, p: dict[str, int]) -> dict[str, Any]:
    return {
        "version": 1,
        "freeswitch": {
            "bind_ip": "127.0.0.1",
            "codecs": ["PCMU"],
            "max_calls": 50,
            "handoff_timeout_seconds": 5,
            "event_socket": {"password": "${FREESWITCH_ESL_PASSWORD}"},
        },
        "transports": {"tcp": {"port": p["public"]}},
        "edge": {
            "host": "sip.test",
            "addresses": ["127.0.0.1"],
            "internal_port": p["internal"],
            "rpc_socket": str(root / "kamailio-rpc.sock"),
            "dispatch": {"algorithm": "round_robin", "probe_seconds": 1, "down_after": 1, "node_timeout_seconds": 2},
            "nodes": [
                {"name": "fs1", "sip_ip": "127.0.0.1", "sip_port": p["sip1"],
                 "rtp_ports": {"start": 21000, "end": 21200}, "esl": {"port": p["esl1"]}},
                {"name": "fs2", "sip_ip": "127.0.0.2", "sip_port": p["sip2"],
                 "rtp_ports": {"start": 21400, "end": 21600}, "esl": {"host": "127.0.0.1", "port": p["esl2"]}},
            ],
        },
        "trunks": [
            {
                "name": "carrier",
                "inbound": {"transports": ["tcp"], "auth": {"acl": [f"{CARRIER_IP}/32"]}, "media_encryption": "disabled"},
                "outbound": {"address": CARRIER_IP, "port": p["callee"], "transport": "tcp",
                             "media_encryption": "disabled", "caller_id": "+15557650000"},
            }
        ],
        "numbers": [{"number": NUMBER, "trunk": "carrier", "agent": "sales"}],
        "agents": [
            {"name": "sales", "protocol": "raw", "url": f"ws://127.0.0.1:{p['agent']}/agent", "audio_format": "pcm_8000"}
        ],
        "orchestrator": {
            "media_url": f"ws://127.0.0.1:{p['bridge']}",
            "media": {"port": p["bridge"], "playback": "streaming"},
            "records": str(root / "calls.jsonl"),
            "node_lost_seconds": 0,
        },
    }  # fmt: skip


def _mod_dir(root: Path) -> Path | None:
    if not STREAMING_FORK:
        return None
    installed = Path(os.environ.get("FREESWITCH_MOD_DIR") or Path(BIN).resolve().parents[1] / "lib/freeswitch/mod")
    mods = root / "mod"
    mods.mkdir(exist_ok=True)
    for entry in installed.iterdir():
        if entry.name != "mod_audio_fork.so":
            (mods / entry.name).symlink_to(entry)
    (mods / "mod_audio_fork.so").symlink_to(Path(STREAMING_FORK).resolve())
    return mods


def _rpc(sock: Path, method: str) -> Any:
    me = sock.parent / f"rpc-client-{os.getpid()}.sock"
    me.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(me))
        s.settimeout(3)
        s.sendto(json.dumps({"jsonrpc": "2.0", "method": method, "id": 1}).encode(), str(sock))
        answer = json.loads(s.recv(1 << 20))
    me.unlink(missing_ok=True)
    return answer.get("result")


def _node_states(sock: Path) -> dict[str, str]:
    result = _rpc(sock, "dispatcher.list")
    return {t["DEST"]["ATTRS"]["DUID"]: t["DEST"]["FLAGS"] for r in result["RECORDS"] for t in r["SET"]["TARGETS"]}


def _wait_states(sock: Path, want: dict[str, str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = _node_states(sock)
        if all(states.get(n, "").startswith(f) for n, f in want.items()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"dispatcher states {states}, wanted {want}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("edge-stack")
    names = ("public", "internal", "sip1", "sip2", "esl1", "esl2", "bridge", "agent", "callee")
    ports = {name: free_port() for name in names}
    env = suite_env()
    (root / "deployment.yaml").write_text(yaml.safe_dump(_deployment(root, ports), sort_keys=False))
    result = check_file(root / "deployment.yaml", env)
    assert result.deployment is not None, [str(d) for d in result.errors]
    out = root / "out"
    write_tree(render_all(result.deployment, root, out / "kamailio"), out)
    mods = _mod_dir(root)
    nodes: dict[str, FreeSwitch] = {}
    kamailio = None
    try:
        for name in ("fs1", "fs2"):
            (root / name).mkdir()
            esl = ports["esl1" if name == "fs1" else "esl2"]
            nodes[name] = start_process(
                BIN, out / "nodes" / name, root / name, esl, env["FREESWITCH_ESL_PASSWORD"], mod_dir=mods
            )
        log = (root / "kamailio.log").open("ab")
        kamailio = subprocess.Popen(
            [KAMAILIO, "-f", str(out / "kamailio" / "kamailio.cfg"), "-DD", "-E", "-w", str(root), "-m", "64", "-M", "8"],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()
        _wait_rpc(root / "kamailio-rpc.sock", kamailio, root)
        _wait_states(root / "kamailio-rpc.sock", {"fs1": "A", "fs2": "A"})
        yield Stack(root, ports, nodes, kamailio)
    finally:
        if kamailio is not None and kamailio.poll() is None:
            os.killpg(kamailio.pid, 15)
            kamailio.wait(10)
        for fs in nodes.values():
            fs.stop()


def _wait_rpc(sock: Path, proc: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"kamailio exited: {(root / 'kamailio.log').read_text()[-3000:]}")
        try:
            if sock.exists() and _rpc(sock, "core.version"):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"kamailio RPC not up: {(root / 'kamailio.log').read_text()[-3000:]}")
        time.sleep(0.2)


class Orchestrator:
    def __init__(self, controller: Controller, bridge: MediaBridge, agent: FakeRawAgent, notices: list[Notice]):
        self.controller, self.bridge, self.agent, self.notices = controller, bridge, agent, notices


@pytest.fixture()
async def orch(stack: Stack) -> AsyncIterator[Orchestrator]:
    result = check_file(stack.root / "deployment.yaml", suite_env())
    assert result.deployment is not None
    notices: list[Notice] = []
    controller = Controller(result.deployment, result.base_dir, tokens=Tokens(b"edge-stack"))
    bridge = MediaBridge(result.deployment, controller.tokens, controller, controller.metrics)
    controller.add_listener(bridge.on_notice)
    controller.add_listener(notices.append)
    async with FakeRawAgent(rate=8000, port=stack.ports["agent"], echo=True) as agent:
        await bridge.start()
        await controller.start()
        for name, state in controller.nodes.items():
            if name in stack.nodes and stack.nodes[name].proc is not None and stack.nodes[name].proc.poll() is None:
                await state.client.wait_connected(15)
        try:
            yield Orchestrator(controller, bridge, agent, notices)
        finally:
            await controller.stop()
            await bridge.stop()


async def _callers(stack: Stack, count: int) -> int:
    """``count`` carrier calls at once from 127.0.0.3 through the edge; sipp's exit code."""
    xml = stack.root / "caller.xml"
    xml.write_text(CALLER.replace("TONE", str(FIXTURES / "05-audio-fork" / "tone440-pcmu.wav")))
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), f"127.0.0.1:{stack.ports['public']}", "-s", NUMBER, "-m", str(count),
        "-l", str(count), "-r", "10", "-nostdin", "-t", "t1", "-i", CARRIER_IP, "-p", str(free_port()),
        "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2), "-timeout", "40s", "-timeout_error",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(stack.root),
    )  # fmt: skip
    return await proc.wait()


def _records(stack: Stack) -> list[dict[str, Any]]:
    path = stack.root / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def _wait_records(stack: Stack, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = _records(stack)
        if len(records) >= count:
            return records
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(_records(stack))} records, wanted {count}")


async def test_calls_spread_over_both_nodes_reach_the_agent_and_end_on_their_node(
    stack: Stack, orch: Orchestrator
) -> None:
    before = len(_records(stack))
    assert await _callers(stack, 4) == 0, (stack.root / "kamailio.log").read_text()[-3000:]
    records = (await _wait_records(stack, before + 4))[before:]
    assert sorted(r["node"] for r in records) == ["fs1", "fs1", "fs2", "fs2"]  # round robin over both
    for r in records:
        assert r["trunk"] == "carrier" and r["to"] == NUMBER and r["agent"] == "sales", r
        assert r["source"].startswith(f"{CARRIER_IP}:"), r  # the real source, from the edge (not the forged header)
        assert r["result"] == "completed" and r["hangup_by"] in ("caller", "remote"), r  # the carrier's BYE
        frames = r["media"]["frames"]
        assert frames["to_agent"] > 50 and frames["to_caller"] > 20, frames  # audio both ways
    assert len(orch.agent.sessions) >= 4
    assert all(len(s.audio) > 8000 for s in orch.agent.sessions[-4:])  # >0.5 s of caller audio each


async def test_a_stopped_node_gets_no_new_calls(stack: Stack, orch: Orchestrator) -> None:
    stack.nodes["fs1"].stop()
    _wait_states(stack.root / "kamailio-rpc.sock", {"fs1": "I", "fs2": "A"})
    before = len(_records(stack))
    assert await _callers(stack, 2) == 0, (stack.root / "kamailio.log").read_text()[-3000:]
    records = (await _wait_records(stack, before + 2))[before:]
    assert [r["node"] for r in records] == ["fs2", "fs2"]
    assert all(r["result"] == "completed" for r in records), records


async def test_an_outbound_call_leaves_through_the_edge(stack: Stack, orch: Orchestrator) -> None:
    xml = stack.root / "callee.xml"
    xml.write_text(CALLEE)
    trace = stack.root / "callee_messages.log"
    callee = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), "-m", "1", "-nostdin", "-t", "t1", "-i", CARRIER_IP, "-p", str(stack.ports["callee"]),
        "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2), "-trace_msg", "-message_file", str(trace),
        "-timeout", "30s", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(stack.root),
    )  # fmt: skip
    await asyncio.sleep(0.5)
    call = await orch.controller.originate(trunk="carrier", to="+15550009999", agent="sales")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(
        n.kind == "answered" and n.call.uuid == call.uuid for n in orch.notices
    ):
        await asyncio.sleep(0.1)
    assert any(n.kind == "answered" and n.call.uuid == call.uuid for n in orch.notices), [n.kind for n in orch.notices]
    await asyncio.sleep(1)
    await orch.controller.hangup(call.uuid)
    assert await asyncio.wait_for(callee.wait(), 20) == 0
    text = trace.read_text()
    invite = text[text.index("INVITE sip:") :]
    via = next(line for line in invite.splitlines() if line.lower().startswith("via:"))
    assert f"127.0.0.1:{stack.ports['public']}" in via, via  # the first Via is the edge's public socket
    assert "x-sipagent" not in invite.split("\n\n")[0].lower()  # the edge's header does not leave it


def test_apply_reweights_the_live_edge_over_its_rpc(stack: Stack) -> None:
    """`sipagent apply` after a weight change: the node trees are unchanged (no ESL step), the edge's dispatcher
    list is rewritten and reloaded live — Kamailio's own dispatcher.list shows the new shares."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    doc = yaml.safe_load((stack.root / "deployment.yaml").read_text())
    doc["edge"]["dispatch"]["algorithm"] = "weighted"
    doc["edge"]["nodes"][1]["weight"] = 3
    (stack.root / "deployment.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    env_file = stack.root / "suite.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in suite_env().items()))
    env_file.chmod(0o600)
    time.sleep(5)  # dispatcher refuses a reload within reload_delta of the last one (at start)
    result = CliRunner().invoke(
        app,
        [
            "apply",
            str(stack.root / "deployment.yaml"),
            "--env-file",
            str(env_file),
            "--conf-dir",
            str(stack.root / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "edge: ok dispatcher.reload" in result.output and "node fs" not in result.output
    body = {
        t["DEST"]["ATTRS"]["DUID"]: t["DEST"]["ATTRS"]["BODY"]
        for r in _rpc(stack.root / "kamailio-rpc.sock", "dispatcher.list")["RECORDS"]
        for t in r["SET"]["TARGETS"]
    }
    assert "weight=75" in body["fs2"] and "weight=25" in body["fs1"], body
