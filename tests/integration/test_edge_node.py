"""A FreeSWITCH node rendered for an edge, on a real FreeSWITCH: SIP only from the edge, the trunk from its header.

One node of a deployment whose edge is at 127.0.0.1 is rendered (``render_nodes``) and started; sipp plays the
edge. An INVITE from 127.0.0.1 with ``X-Sipagent-Trunk`` is parked in that trunk's context with the trunk and
source set (read from the CHANNEL_PARK event over ESL); one without the header, or naming a trunk that takes no
calls, is refused by the ``edge`` context; one from 127.0.0.2 (not the edge) is refused by the profile's ACL.
A call placed on a gateway reaches the edge's internal port with the trunk header and the carrier in the
Request-URI and From. Needs FREESWITCH_BIN (or a Docker engine) and sipp; a running switch is not used (its
profiles would be replaced by a node's).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sipp_scenarios import uac
from switch import BIN, MODE, Esl, FreeSwitch, free_port, requires_switch, start_container, start_process, suite_env

from orchestrator.config import check_file
from orchestrator.render import render_nodes, write_tree

pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
    pytest.mark.skipif(MODE == "running", reason="renders a node's own configuration: needs a switch started here"),
]

NUMBER = "+15557650101"
CARRIER = "192.0.2.50"  # the carrier's address: only in the Request-URI and From the edge receives
SOURCE = "198.51.100.7:5060;transport=tcp"


class Node:
    def __init__(self, fs: FreeSwitch, ports: dict[str, int], work: Path) -> None:
        self.fs, self.ports, self.work = fs, ports, work


def _deployment(ports: dict[str, int], rtp: int) -> dict[str, Any]:
    return {
        "version": 1,
        "freeswitch": {
            "bind_ip": "127.0.0.1",
            "rtp_ports": {"start": rtp, "end": rtp + 100},
            "max_calls": 20,
            "handoff_timeout_seconds": 3,
            "event_socket": {"password": "${FREESWITCH_ESL_PASSWORD}"},
        },
        "transports": {"tcp": {"port": ports["public"]}},
        "edge": {
            "host": "sip.example.com",
            "addresses": ["127.0.0.1"],
            "internal_port": ports["internal"],
            "nodes": [
                {"name": "fs1", "sip_ip": "127.0.0.1", "sip_port": ports["sip"], "esl": {"port": ports["esl"]}},
            ],
        },
        "trunks": [
            {
                "name": "carrier",
                "inbound": {"transports": ["tcp"], "auth": {"acl": ["192.0.2.0/24"]}, "media_encryption": "disabled"},
                "outbound": {"address": CARRIER, "media_encryption": "disabled", "headers": {"X-Origin": "sipagent"}},
            },
            {"name": "out-only", "outbound": {"address": "192.0.2.60"}},
        ],
        "numbers": [{"number": NUMBER, "trunk": "carrier", "agent": "sales"}],
        "agents": [{"name": "sales", "protocol": "raw", "url": "ws://127.0.0.1:9/agent"}],
    }


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("edgenode")
    work = root / "deployment"
    work.mkdir()
    ports = {name: free_port() for name in ("public", "internal", "sip", "esl")}
    rtp = min(free_port(socket.SOCK_DGRAM) // 2 * 2, 64000)
    env = suite_env()
    (work / "deployment.yaml").write_text(yaml.safe_dump(_deployment(ports, rtp), sort_keys=False))
    result = check_file(work / "deployment.yaml", env)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    trees = render_nodes(result.deployment, result.base_dir)
    conf = root / "conf"
    write_tree(trees["fs1"], conf)
    password = env["FREESWITCH_ESL_PASSWORD"]
    if MODE == "container":
        fs = start_container(conf, root / "run", ports["esl"], password)
    else:
        fs = start_process(BIN, conf, root / "run", ports["esl"], password)
    try:
        yield Node(fs, ports, work)
    finally:
        fs.stop()


class Events:
    """CHANNEL_PARK and CHANNEL_HANGUP_COMPLETE events from the node's event socket (plain format)."""

    def __init__(self, fs: FreeSwitch) -> None:
        self.esl: Esl = fs.esl()
        self.esl.sock.sendall(b"event plain CHANNEL_PARK CHANNEL_HANGUP_COMPLETE\n\n")
        headers, _ = self.esl._read()
        assert headers.get("Reply-Text", "").startswith("+OK"), headers

    def next(self, name: str, timeout: float = 15) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.esl.sock.settimeout(max(0.1, deadline - time.monotonic()))
            headers, body = self.esl._read()
            if headers.get("Content-Type") != "text/event-plain":
                continue
            event = {}
            for line in body.splitlines():
                key, _, value = line.partition(": ")
                event[key] = urllib.parse.unquote(value)
            if event.get("Event-Name") == name:
                return event
        raise AssertionError(f"no {name} event within {timeout} s")

    def close(self) -> None:
        self.esl.close()


@pytest.fixture()
def events(node: Node) -> Iterator[Events]:
    e = Events(node.fs)
    try:
        yield e
    finally:
        e.close()


def scenario(node: Node, name: str, expect: int, headers: dict[str, str]) -> Path:
    """sipp's INVITE (the uac of sipp_scenarios) with the edge's headers, expecting ``expect``."""
    path = uac(node.work / name, expect)
    extra = "".join(f"      {k}: {v}\n" for k, v in headers.items())
    text = path.read_text().replace("      Max-Forwards: 70\n", extra + "      Max-Forwards: 70\n", 1)
    path.write_text(text)
    return path


def call(node: Node, xml: Path, source: str = "127.0.0.1", number: str = NUMBER) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sipp", "-sf", str(xml), f"127.0.0.1:{node.ports['sip']}", "-s", number, "-m", "1", "-nostdin", "-t", "t1",
         "-i", source, "-p", str(free_port()), "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2), "-timeout", "20"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(node.work),
    )  # fmt: skip


def test_a_call_from_the_edge_is_parked_in_its_trunks_context(node: Node, events: Events) -> None:
    headers = {"X-Sipagent-Trunk": "carrier", "X-Sipagent-Source": SOURCE}
    sipp = call(node, scenario(node, "edge-call.xml", 503, headers))  # 503: nobody claimed it (hand-off time)
    try:
        parked = events.next("CHANNEL_PARK")
        assert parked["variable_sipagent_trunk"] == "carrier"
        assert parked["variable_sipagent_agent"] == "sales"
        assert parked["variable_sipagent_number"] == NUMBER
        assert parked["variable_sipagent_source"] == SOURCE
        assert parked["Caller-Context"] == "trunk-carrier"  # transferred from the edge context
        assert parked["variable_rtp_secure_media_inbound"] == "forbidden"  # the trunk's policy applied
        assert parked["variable_sip_network_ip"] == "127.0.0.1"
        # the edge's headers are gone from the call: a leg bridged from it (a transfer through another trunk)
        # would copy them and reach the edge naming this call's trunk instead of its gateway's
        assert not [k for k in parked if k.lower().startswith("variable_sip_h_x-sipagent")]
        ended = events.next("CHANNEL_HANGUP_COMPLETE")
        assert ended["Unique-ID"] == parked["Unique-ID"]
        assert ended["Hangup-Cause"] == "NORMAL_TEMPORARY_FAILURE"
    finally:
        assert sipp.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("name", "headers", "number", "status", "refused"),
    [
        ("no-header", {}, NUMBER, 403, "unknown_trunk"),
        ("outbound-only-trunk", {"X-Sipagent-Trunk": "out-only"}, NUMBER, 403, "unknown_trunk"),
        ("not-exact", {"X-Sipagent-Trunk": "carrier2"}, NUMBER, 403, "unknown_trunk"),
        ("odd-number", {"X-Sipagent-Trunk": "carrier"}, "1'2", 404, "unknown_number"),
    ],
)
def test_the_edge_context_refuses_what_names_no_trunk(
    node: Node, events: Events, name: str, headers: dict[str, str], number: str, status: int, refused: str
) -> None:
    sipp = call(node, scenario(node, f"{name}.xml", status, headers), number=number)
    assert sipp.wait(timeout=30) == 0  # the expected final response
    ended = events.next("CHANNEL_HANGUP_COMPLETE")
    assert ended["variable_sipagent_refused"] == refused
    assert ended["Caller-Context"] == "edge" and "variable_sipagent_agent" not in ended


def test_a_call_from_anywhere_but_the_edge_is_refused_by_the_acl(node: Node) -> None:
    headers = {"X-Sipagent-Trunk": "carrier", "X-Sipagent-Source": SOURCE}
    sipp = call(node, scenario(node, "not-the-edge.xml", 403, headers), source="127.0.0.2")
    assert sipp.wait(timeout=30) == 0
    assert node.fs.log_file is not None
    deadline = time.monotonic() + 5
    while 'IP 127.0.0.2 Rejected by acl "edge"' not in node.fs.log_file.read_text(errors="replace"):
        assert time.monotonic() < deadline, "no ACL rejection in the log"
        time.sleep(0.2)


UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="edge">
  <recv request="INVITE">
    <action>
      <ereg regexp="^INVITE sip:\\+15550009999@{carrier}:5060" search_in="msg" check_it="true" assign_to="ruri"/>
      <ereg regexp="^ *carrier$" search_in="hdr" header="X-Sipagent-Trunk:" check_it="true" assign_to="trunk"/>
      <ereg regexp="^ *sipagent$" search_in="hdr" header="X-Origin:" check_it="true" assign_to="origin"/>
      <ereg regexp="@{carrier}>" search_in="hdr" header="From:" check_it="true" assign_to="from"/>
      <ereg regexp="127\\.0\\.0\\.1:{sip}" search_in="hdr" header="Contact:" check_it="true" assign_to="contact"/>
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <Reference variables="ruri,trunk,origin,from,contact"/>
</scenario>
"""


def test_a_call_on_a_gateway_leaves_through_the_edge(node: Node) -> None:
    xml = node.work / "edge-uas.xml"
    xml.write_text(UAS.replace("{carrier}", CARRIER.replace(".", "\\.")).replace("{sip}", str(node.ports["sip"])))
    uas = subprocess.Popen(
        ["sipp", "-sf", str(xml), "-t", "t1", "-i", "127.0.0.1", "-p", str(node.ports["internal"]), "-m", "1",
         "-nostdin", "-timeout", "20", "-trace_msg", "-trace_err"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(node.work),
    )  # fmt: skip
    try:
        time.sleep(0.5)  # sipp listening
        reply = node.fs.api("originate {originate_timeout=10}sofia/gateway/carrier/+15550009999 &park")
        assert "USER_BUSY" in reply, reply  # the edge's 486: the INVITE reached it
    finally:
        assert uas.wait(timeout=30) == 0  # and carried what the edge needs (sipp checked each header)


OPTIONS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="probe">
  <send>
    <![CDATA[

      OPTIONS sip:[remote_ip]:[remote_port];transport=tcp SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:edge@[local_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


def test_the_node_answers_the_edges_probes(node: Node) -> None:
    """The edge's dispatcher probes each node with OPTIONS: 200 while it takes calls (503 when busy)."""
    xml = node.work / "probe.xml"
    xml.write_text(OPTIONS)
    assert call(node, xml).wait(timeout=30) == 0
