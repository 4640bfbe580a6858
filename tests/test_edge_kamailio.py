"""The Kamailio edge at work: a real Kamailio started from the render, sipp playing carriers and FreeSWITCH nodes.

Addresses (all loopback): the edge and the nodes on 127.0.0.1; carriers on trunk ``pbx`` (ACL) from 127.0.0.2,
on trunk ``carrier`` (digest and ACL) from 127.0.0.3; 127.0.0.4 is nobody's. TLS carriers use 127.0.0.5 (calling
in) and 127.0.0.6 (called). One Kamailio per fixture; the tests of a fixture run in order (they change the pool).
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from edge_support import (
    KAMAILIO,
    SIPP,
    Kamailio,
    SipMessage,
    SippNode,
    deployment,
    free_port,
    run_uac,
    sip_request,
    status_codes,
    tcp_connect,
    wait_until,
)

from orchestrator.config.selfsigned import generate

pytestmark = pytest.mark.skipif(
    KAMAILIO is None or SIPP is None,
    reason="needs kamailio (Debian: kamailio, kamailio-tls-modules) and sipp on PATH",
)

PBX, DIGEST, NOBODY, TLS_CALLER, TLS_CARRIER = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"
PASSWORD = "s3cret-Pa55"  # edge_support.ENV["CARRIER_PASSWORD"]
RETRY_AFTER = 7


@dataclass
class Pool:
    """An edge, its nodes and where things listen."""

    edge: Kamailio
    nodes: dict[str, SippNode]
    public: int
    internal: int
    carrier_port: int
    dir: Path

    @property
    def target(self) -> tuple[str, int]:
        return ("127.0.0.1", self.public)

    def all_active(self) -> None:
        for name in self.nodes:
            self.edge.wait_flags(name, "A")


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    d = tmp_path_factory.mktemp("edge")
    public, internal = free_port(), free_port()
    ports = {name: free_port() for name in ("fs1", "fs2", "fs3")}
    carrier_port = free_port(PBX)
    dep = deployment(
        d,
        f"""
        transports:
          tcp: {{port: {public}}}
        trunks:
          - name: pbx
            inbound: {{transports: [tcp], auth: {{acl: [{PBX}/32]}}}}
            outbound: {{address: {PBX}, port: {carrier_port}, transport: tcp}}
          - name: carrier
            inbound:
              transports: [tcp]
              auth: {{digest: {{username: carrier, password: "${{CARRIER_PASSWORD}}"}}, acl: [{DIGEST}/32]}}
        numbers:
          - {{number: "+15550000001", trunk: pbx, agent: support}}
        edge:
          host: sip.test
          addresses: [127.0.0.1]
          internal_port: {internal}
          rpc_socket: {d}/rpc.sock
          dispatch: {{probe_seconds: 1, down_after: 2, up_after: 1, node_timeout_seconds: 1,
                      retry_after_seconds: {RETRY_AFTER}}}
          nodes:
            - {{name: fs1, sip_ip: 127.0.0.1, sip_port: {ports["fs1"]}, weight: 3, esl: {{port: 19000}}, rtp_ports: {{start: 40000, end: 40200}}}}
            - {{name: fs2, sip_ip: 127.0.0.1, sip_port: {ports["fs2"]}, esl: {{port: 19001}}, rtp_ports: {{start: 20400, end: 20600}}}}
            - {{name: fs3, sip_ip: 127.0.0.1, sip_port: {ports["fs3"]}, esl: {{port: 19002}}, rtp_ports: {{start: 20800, end: 21000}}}}
        """,
    )
    nodes = {name: SippNode(name, port, d) for name, port in ports.items()}
    edge = Kamailio(d, dep, d)
    try:
        for node in nodes.values():
            node.start()
        edge.start(("127.0.0.1", public))
        p = Pool(edge, nodes, public, internal, carrier_port, d)
        p.all_active()
        yield p
    finally:
        edge.stop()
        for node in nodes.values():
            node.stop()


def _fail(result: object, edge: Kamailio) -> str:
    return f"{getattr(result, 'output', '')[-3000:]}\n--- kamailio ---\n{edge.log()[-3000:]}"


# -- dispatch ---------------------------------------------------------------------------------------------


def test_calls_spread_over_the_nodes_by_weight_and_each_dialog_stays_on_its_node(pool: Pool, tmp_path: Path) -> None:
    """Weights 3:1:1 are 60/20/20 %: dispatcher algorithm 9 deals any 100 consecutive calls exactly so. Every BYE
    (sent by the carrier along the Record-Route) reaches the node that took that call."""
    pool.all_active()
    marks = {name: n.mark() for name, n in pool.nodes.items()}
    result = run_uac("carrier.xml", pool.target, tmp_path, source_ip=PBX, calls=100, rate=100, limit=50)
    assert result.returncode == 0, _fail(result, pool.edge)
    invites = {name: n.call_ids("INVITE", marks[name]) for name, n in pool.nodes.items()}
    assert {name: len(ids) for name, ids in invites.items()} == {"fs1": 60, "fs2": 20, "fs3": 20}
    assert wait_until(lambda: all(n.call_ids("BYE", marks[k]) == invites[k] for k, n in pool.nodes.items()))
    assert set().union(*invites.values()) == {m.header("Call-ID") for m in result.sent("INVITE")}
    # the nodes are probed with OPTIONS from the edge
    probes = pool.nodes["fs2"].received("OPTIONS")
    assert probes and all((m.header("From") or "").startswith("<sip:edge@sip.test>") for m in probes)


def test_the_edge_sets_the_trunk_and_source_headers_and_drops_forged_ones(pool: Pool, tmp_path: Path) -> None:
    marks = {name: n.mark() for name, n in pool.nodes.items()}
    result = run_uac("carrier.xml", pool.target, tmp_path, source_ip=PBX)
    assert result.returncode == 0, _fail(result, pool.edge)
    [invite] = [m for name, n in pool.nodes.items() for m in n.received("INVITE", marks[name])]
    [sent] = result.sent("INVITE")
    carrier_port = re.search(r"SIP/2.0/TCP [0-9.]+:(\d+)", sent.header("Via") or "")
    assert carrier_port is not None
    assert invite.headers("X-Sipagent-Trunk") == ["pbx"]
    assert invite.headers("X-Sipagent-Source") == [f"{PBX}:{carrier_port[1]};transport=tcp"]
    assert invite.headers("X-Sipagent-Extra") == []
    assert invite.headers("X-Carrier-Ref") == ["kept"]
    # both Record-Routes: the internal socket (towards the node) on top, then the public one
    rr = invite.headers("Record-Route")
    assert rr == [
        f"<sip:127.0.0.1:{pool.internal};transport=tcp;r2=on;lr=on;tr=pbx>",
        f"<sip:127.0.0.1:{pool.public};transport=tcp;r2=on;lr=on;tr=pbx>",
    ]


def test_a_node_that_answers_503_is_skipped_for_the_next(pool: Pool, tmp_path: Path) -> None:
    fs1 = pool.nodes["fs1"]
    fs1.start("node_503.xml")
    try:
        pool.edge.wait_flags("fs1", "A")
        others = {k: n.mark() for k, n in pool.nodes.items() if k != "fs1"}
        result = run_uac("carrier.xml", pool.target, tmp_path, source_ip=PBX, calls=20, rate=20)
        assert result.returncode == 0, _fail(result, pool.edge)  # every call answered, by another node
        refused = fs1.call_ids("INVITE")
        assert refused, "fs1 (60 % of the calls) was never tried"
        taken = set().union(*(pool.nodes[k].call_ids("INVITE", m) for k, m in others.items()))
        assert refused <= taken and len(taken) == 20
        assert "answered 503 to call" in pool.edge.log()
    finally:
        fs1.start("node.xml")
    pool.edge.wait_flags("fs1", "A")


def test_a_node_over_its_share_of_a_trunk_limit_stays_up_and_the_call_goes_to_another(
    pool: Pool, tmp_path: Path
) -> None:
    fs1 = pool.nodes["fs1"]
    fs1.start("node_limit.xml")
    try:
        pool.edge.wait_flags("fs1", "A")
        seen = len(pool.edge.log())
        others = {k: n.mark() for k, n in pool.nodes.items() if k != "fs1"}
        result = run_uac("carrier.xml", pool.target, tmp_path, source_ip=PBX, calls=10, rate=10)
        assert result.returncode == 0, _fail(result, pool.edge)  # every call answered, by another node
        refused = fs1.call_ids("INVITE")
        assert refused, "fs1 (60 % of the calls) was never tried"
        taken = set().union(*(pool.nodes[k].call_ids("INVITE", m) for k, m in others.items()))
        assert refused <= taken and len(taken) == 10
        log = pool.edge.log()[seen:]
        assert "its share of the trunk's limit is taken" in log and "answered 503" not in log
        pool.edge.wait_flags("fs1", "A", timeout=0.5)  # a limit refusal is no failure: fs1 was never marked down
        # every node over its share: the carrier gets the nodes' 503 with their Retry-After, the nodes stay up
        for node in pool.nodes.values():
            node.start("node_limit.xml")
        pool.all_active()
        result = run_uac("carrier_503.xml", pool.target, tmp_path, source_ip=PBX)
        assert result.returncode == 0, _fail(result, pool.edge)
        [reply] = [m for m in result.responses() if m.first_line.startswith("SIP/2.0 503")]
        assert reply.headers("Retry-After") == ["17"] and reply.headers("X-Sipagent-Refused") == []
        assert "every node refused call" in pool.edge.log()
        for name in pool.nodes:
            pool.edge.wait_flags(name, "A", timeout=0.5)
    finally:
        for node in pool.nodes.values():
            node.start("node.xml")
    pool.all_active()


def test_a_node_that_does_not_answer_in_time_is_marked_down_and_skipped(pool: Pool, tmp_path: Path) -> None:
    fs1 = pool.nodes["fs1"]
    fs1.start("node_silent.xml")
    try:
        pool.edge.wait_flags("fs1", "A")
        started = time.monotonic()
        result = run_uac("carrier.xml", pool.target, tmp_path, source_ip=PBX, calls=10, rate=10)
        assert result.returncode == 0, _fail(result, pool.edge)
        assert fs1.call_ids("INVITE"), "fs1 was never tried"
        # a call fs1 took waited node_timeout (1 s) and went on; fs1, marked down, got no more until a probe
        # answered (it still answers OPTIONS)
        assert time.monotonic() - started < 5
        port = fs1.port
        assert f"node sip:127.0.0.1:{port};transport=tcp did not answer call" in pool.edge.log()
    finally:
        fs1.start("node.xml")
    pool.edge.wait_flags("fs1", "A")


def test_a_node_that_stops_answering_probes_is_marked_down_then_up_again(pool: Pool, tmp_path: Path) -> None:
    fs2 = pool.nodes["fs2"]
    fs2.stop()
    try:
        pool.edge.wait_flags("fs2", "I", timeout=10)  # two unanswered OPTIONS (1 s apart)
        log_before = len(pool.edge.log())
        result = run_uac("carrier.xml", pool.target, tmp_path, source_ip=PBX, calls=20, rate=20)
        assert result.returncode == 0, _fail(result, pool.edge)
        # no call even tried the node that is down
        assert f"to node sip:127.0.0.1:{fs2.port}" not in pool.edge.log()[log_before:]
        assert f"node sip:127.0.0.1:{fs2.port};transport=tcp is down" in pool.edge.log()
    finally:
        fs2.start("node.xml")
    pool.edge.wait_flags("fs2", "A", timeout=10)  # one answered OPTIONS
    assert f"node sip:127.0.0.1:{fs2.port};transport=tcp is up" in pool.edge.log()
    result = run_uac("carrier.xml", pool.target, tmp_path, source_ip=PBX, calls=50, rate=100, limit=50)
    assert result.returncode == 0, _fail(result, pool.edge)
    assert fs2.call_ids("INVITE"), "new calls go to the node again"


# -- dialogs --------------------------------------------------------------------------------------------


def test_a_bye_from_the_node_reaches_the_carrier(pool: Pool, tmp_path: Path) -> None:
    marks = {name: n.mark() for name, n in pool.nodes.items()}
    result = run_uac("carrier_wait_bye.xml", pool.target, tmp_path, source_ip=PBX, calls=3, rate=10)
    assert result.returncode == 0, _fail(result, pool.edge)
    byes = [m for m in result.messages if m.direction == "received" and m.method == "BYE"]
    assert len(byes) == 3
    senders = {name for name, n in pool.nodes.items() for m in n.messages()[marks[name] :] if m.method == "BYE"}
    assert senders  # sent by the nodes that took the calls
    for bye in byes:
        # routed by the edge (its Via on top) to the carrier's Contact, with the X-Sipagent headers gone
        assert (bye.headers("Via")[0]).startswith(f"SIP/2.0/TCP 127.0.0.1:{pool.public};")
        assert bye.first_line.startswith(f"BYE sip:carrier@{PBX}:")
        assert not [h for h in bye.text.split("\r\n") if h.lower().startswith("x-sipagent")]


def _body(message: SipMessage) -> str:
    return message.text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in message.text else ""


def _x_sipagent(message: SipMessage) -> list[str]:
    head = message.text.split("\r\n\r\n", 1)[0]
    return [h for h in head.split("\r\n") if h.lower().startswith("x-sipagent")]


def test_every_in_dialog_request_reaches_the_node_owning_the_dialog_and_the_nodes_reach_the_carrier(
    pool: Pool, tmp_path: Path
) -> None:
    """20 calls over three nodes, each using its dialog: the carrier's re-INVITE (SDP, 200, ACK), INFO (DTMF),
    REFER (202) and BYE reach only the node that took the call; that node's NOTIFY (Event: refer, sipfrag) and
    INFO reach the carrier along the Record-Route, sent by the edge, without the nodes' X-Sipagent headers."""
    for node in pool.nodes.values():
        node.start("node_dialog.xml")
    try:
        pool.all_active()
        result = run_uac("carrier_dialog.xml", pool.target, tmp_path, source_ip=PBX, calls=20, rate=20, limit=20)
        assert result.returncode == 0, _fail(result, pool.edge)
        call_ids = [m.header("Call-ID") or "" for m in result.sent("INVITE") if "1 INVITE" in (m.header("CSeq") or "")]
        assert len(set(call_ids)) == 20
        # the nodes trace what they received a moment after the carrier is done
        assert wait_until(lambda: sum(len(n.call_ids("BYE")) for n in pool.nodes.values()) == 20)
        by_node = {name: n.messages() for name, n in pool.nodes.items()}
        owners = set()
        for call_id in call_ids:
            seen = {name: [m for m in msgs if m.header("Call-ID") == call_id] for name, msgs in by_node.items()}
            [owner] = [name for name, msgs in seen.items() if msgs]  # no other node saw anything of this dialog
            owners.add(owner)
            node_port = pool.nodes[owner].port
            got = [m for m in seen[owner] if m.direction == "received" and m.method]
            assert [m.method for m in got] == ["INVITE", "ACK", "INVITE", "ACK", "INFO", "REFER", "BYE"]
            [invite, _, reinvite, _, info, refer, bye] = got
            assert reinvite.header("CSeq") == "2 INVITE" and reinvite.header("Content-Type") == "application/sdp"
            assert "m=audio 40002 RTP/AVP 0" in _body(reinvite) and "a=sendonly" in _body(reinvite)
            assert info.header("Content-Type") == "application/dtmf-relay" and "Signal=5" in _body(info)
            assert refer.header("Refer-To") == "<sip:+15550000002@carrier.invalid>"
            assert bye.header("CSeq") == "5 BYE"
            for request in (reinvite, info, refer, bye):  # forged by the carrier: dropped at the edge
                assert _x_sipagent(request) == [], request.text
            # what the carrier got of this dialog: the node's answers and requests, through the edge only
            carrier = [m for m in result.messages if m.direction == "received" and m.header("Call-ID") == call_id]
            for message in carrier:
                assert _x_sipagent(message) == [], message.text
            answers = {m.header("CSeq"): m.first_line for m in carrier if m.method is None}
            assert answers["2 INVITE"] == "SIP/2.0 200 OK" and answers["4 REFER"] == "SIP/2.0 202 Accepted"
            [ok] = [m for m in carrier if m.header("CSeq") == "2 INVITE" and m.first_line == "SIP/2.0 200 OK"]
            assert "a=recvonly" in _body(ok)
            requests = [m for m in carrier if m.method]
            assert [m.method for m in requests] == ["NOTIFY", "INFO"]
            notify, node_info = requests
            assert notify.header("Event") == "refer"
            assert notify.header("Content-Type") == "message/sipfrag;version=2.0"
            assert _body(notify).strip() == "SIP/2.0 200 OK"
            assert node_info.header("Content-Type") == "application/dtmf-relay" and "Signal=9" in _body(node_info)
            for request in requests:
                # to the carrier's Contact, both Routes (the edge's Record-Route) used up, sent by the edge's public
                # socket on behalf of the owning node
                assert request.first_line.startswith(f"{request.method} sip:carrier@{PBX}:")
                assert request.headers("Route") == []
                vias = request.headers("Via")
                assert vias[0].startswith(f"SIP/2.0/TCP 127.0.0.1:{pool.public};")
                assert vias[1].startswith(f"SIP/2.0/TCP 127.0.0.1:{node_port};")
            assert invite.headers("X-Sipagent-Trunk") == ["pbx"]
        # weights 3:1:1 (algorithm 9 deals a shuffled cycle of 100): 20 calls in a row on fs1 is about 1e-5
        assert len(owners) >= 2, owners
    finally:
        for node in pool.nodes.values():
            node.start("node.xml")
    pool.all_active()


def test_a_request_for_an_unknown_dialog_gets_481(pool: Pool) -> None:
    with tcp_connect(pool.target, PBX) as s:
        assert status_codes(sip_request(s, "BYE", to_tag="nosuchdialog")) == [481]
    # a Route to the edge does not make it relay to anything but a node
    route = f"<sip:127.0.0.1:{pool.public};transport=tcp;r2=on;lr=on;tr=pbx>"
    with tcp_connect(pool.target, PBX) as s:
        codes = status_codes(
            sip_request(s, "BYE", ruri="sip:victim@127.0.0.9:5060", to_tag="x", headers={"Route": route})
        )
        assert codes == [481]


# -- access ---------------------------------------------------------------------------------------------


def test_acl_allows_the_trunks_networks_and_denies_everything_else(pool: Pool) -> None:
    with tcp_connect(pool.target, NOBODY) as s:
        assert status_codes(sip_request(s))[-1:] == [403]  # no trunk has 127.0.0.4: not even a challenge
    # the internal port serves the nodes only
    with tcp_connect(("127.0.0.1", pool.internal), NOBODY) as s:
        assert status_codes(sip_request(s, headers={"X-Sipagent-Trunk": "pbx"})) == [403]
    # keepalives are answered by the edge itself, to anyone
    with tcp_connect(pool.target, NOBODY) as s:
        assert status_codes(sip_request(s, "OPTIONS", ruri="sip:127.0.0.1")) == [200]


def test_digest_challenges_then_refuses_a_wrong_password_and_admits_the_right_one(pool: Pool, tmp_path: Path) -> None:
    wrong = run_uac("carrier_auth.xml", pool.target, tmp_path, source_ip=DIGEST, extra=["-au", "carrier", "-ap", "x"])
    assert [m.first_line for m in wrong.responses()][:2] == ["SIP/2.0 401 Unauthorized", "SIP/2.0 403 Forbidden"]
    assert (wrong.responses()[0].header("WWW-Authenticate") or "").startswith('Digest realm="sip.test"')
    right = run_uac(
        "carrier_auth.xml", pool.target, tmp_path, source_ip=DIGEST, extra=["-au", "carrier", "-ap", PASSWORD]
    )
    assert right.returncode == 0, _fail(right, pool.edge)
    assert [m.first_line for m in right.responses()][-1] == "SIP/2.0 200 OK"
    # the right user with the right password from outside the trunk's ACL: refused before any challenge
    with tcp_connect(pool.target, NOBODY) as s:
        auth = (
            'Digest username="carrier", realm="sip.test", nonce="0123", uri="sip:+15550000001@127.0.0.1", '
            'response="0123456789abcdef0123456789abcdef"'
        )
        assert status_codes(sip_request(s, headers={"Authorization": auth}))[-1:] == [403]


def test_the_address_and_node_lists_reload_live_over_rpc(pool: Pool) -> None:
    """What ``apply`` relies on: a changed address.list takes effect on permissions.addressReload, and
    dispatcher.reload re-reads the nodes, without a restart."""
    path = pool.edge.conf / "address.list"
    original = path.read_text()
    try:
        path.write_text(original + f"1 {NOBODY} 32 0 pbx\n")
        pool.edge.rpc("permissions.addressReload")
        with tcp_connect(pool.target, NOBODY) as s:
            assert status_codes(sip_request(s))[-1:] == [200]  # now a pbx address: the call reaches a node
    finally:
        path.write_text(original)
        time.sleep(1.1)  # permissions' reload_delta: at most one reload a second
        pool.edge.rpc("permissions.addressReload")
    with tcp_connect(pool.target, NOBODY) as s:
        assert status_codes(sip_request(s))[-1:] == [403]
    pool.edge.rpc("dispatcher.reload")
    assert sorted(pool.edge.node_flags()) == ["fs1", "fs2", "fs3"]
    pool.all_active()


# -- calls the pool places ------------------------------------------------------------------------------


def test_a_call_from_a_node_leaves_through_the_edge_to_the_trunk(pool: Pool, tmp_path: Path) -> None:
    carrier = SippNode("carrier", pool.carrier_port, pool.dir, ip=PBX)
    carrier.start("carrier_uas.xml")
    try:
        result = run_uac("node_call.xml", ("127.0.0.1", pool.internal), tmp_path, extra=["-key", "trunk", "pbx"])
        assert result.returncode == 0, _fail(result, pool.edge)
        [invite] = carrier.received("INVITE")
        assert invite.first_line == f"INVITE sip:+15550000001@{PBX}:{pool.carrier_port};transport=tcp SIP/2.0"
        assert invite.headers("Via")[0].startswith(f"SIP/2.0/TCP 127.0.0.1:{pool.public};")  # the edge's address
        assert not [h for h in invite.text.split("\r\n") if h.lower().startswith("x-sipagent")]
        assert invite.headers("Record-Route")[0] == f"<sip:127.0.0.1:{pool.public};transport=tcp;r2=on;lr=on;tr=pbx>"
        assert len(carrier.received("BYE")) == 1  # the node's BYE, along the route set
        ok = [
            m for m in result.responses() if m.first_line == "SIP/2.0 200 OK" and "INVITE" in (m.header("CSeq") or "")
        ]
        assert ok and ok[0].headers("X-Sipagent-Trunk") == []  # what the carrier put there never reaches a node
    finally:
        carrier.stop()
    with tcp_connect(("127.0.0.1", pool.internal)) as s:
        assert status_codes(sip_request(s, headers={"X-Sipagent-Trunk": "nosuchtrunk"}))[-1:] == [404]
    with tcp_connect(("127.0.0.1", pool.internal)) as s:
        assert status_codes(sip_request(s))[-1:] == [403]


# -- no node at all -------------------------------------------------------------------------------------


def test_no_node_left_gives_503_with_retry_after(tmp_path: Path) -> None:
    public = free_port()
    dep = deployment(
        tmp_path,
        f"""
        transports:
          tcp: {{port: {public}}}
        trunks:
          - name: pbx
            inbound: {{transports: [tcp], auth: {{acl: [{PBX}/32]}}}}
        numbers:
          - {{number: "+15550000001", trunk: pbx, agent: support}}
        edge:
          host: sip.test
          addresses: [127.0.0.1]
          internal_port: {free_port()}
          rpc_socket: {tmp_path}/rpc.sock
          dispatch: {{algorithm: round_robin, probe_seconds: 1, down_after: 1, node_timeout_seconds: 1,
                      retry_after_seconds: {RETRY_AFTER}}}
          nodes:
            - {{name: fs1, sip_ip: 127.0.0.1, sip_port: {free_port()}, esl: {{port: 19003}}, rtp_ports: {{start: 21200, end: 21400}}}}
            - {{name: fs2, sip_ip: 127.0.0.1, sip_port: {free_port()}, esl: {{port: 19004}}, rtp_ports: {{start: 21600, end: 21800}}}}
        """,
    )
    edge = Kamailio(tmp_path, dep, tmp_path)
    edge.start(("127.0.0.1", public))
    try:
        # first while the nodes still count as up (nothing listens: each is tried and skipped), then once the
        # probes have marked them down
        for _ in range(2):
            result = run_uac("carrier_503.xml", ("127.0.0.1", public), tmp_path, source_ip=PBX)
            assert result.returncode == 0, _fail(result, edge)
            [reply] = [m for m in result.responses() if m.first_line.startswith("SIP/2.0 503")]
            assert reply.headers("Retry-After") == [str(RETRY_AFTER)]
            edge.wait_flags("fs1", "I")
            edge.wait_flags("fs2", "I")
    finally:
        edge.stop()


# -- TLS ------------------------------------------------------------------------------------------------


@dataclass
class TlsCarrier:
    """A carrier's TLS server (127.0.0.6) answering INVITEs 100 then 486; asks for the client's certificate."""

    cert: Path
    key: Path
    client_ca: Path
    port: int = field(default_factory=lambda: free_port(TLS_CARRIER))
    peer_names: list[str] = field(default_factory=list)
    invites: int = 0
    closed_by_peer: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.cert, self.key)
        self.ctx.load_verify_locations(self.client_ca)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.create_server((TLS_CARRIER, self.port))
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._connection, args=(raw,), daemon=True).start()

    def _connection(self, raw: socket.socket) -> None:
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        dns = [value for kind, value in conn.getpeercert().get("subjectAltName", ()) if kind == "DNS"]
        self.peer_names.append(str(dns[0]) if dns else "")
        conn.settimeout(10)
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    self.closed_by_peer += 1
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    lines = head.decode().split("\r\n")
                    if not lines[0].startswith("INVITE"):
                        continue
                    self.invites += 1
                    keep = [x for x in lines[1:] if x.split(":")[0].lower() in ("via", "from", "call-id", "cseq")]
                    to = next(x for x in lines if x.lower().startswith("to:"))
                    for code in ("100 Trying", "486 Busy Here"):
                        tag = ";tag=carrier" if code.startswith("486") else ""
                        reply = [f"SIP/2.0 {code}", *keep, to + tag, "Content-Length: 0"]
                        conn.sendall(("\r\n".join(reply) + "\r\n\r\n").encode())
                        time.sleep(0.05)
        except (OSError, ssl.SSLError):
            self.closed_by_peer += 1
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@dataclass
class TlsEdge:
    """An edge with TLS (verify_peer: all) and one node answering 486; certificates from three test CAs."""

    edge: Kamailio
    node: SippNode
    tls_port: int
    internal: int
    edge_dir: Path
    listed: Path
    unlisted: Path
    carriers: dict[str, TlsCarrier]

    def client(self, cert_dir: Path | None, name: str = "", **versions: ssl.TLSVersion) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.edge_dir / "ca.crt")
        ctx.check_hostname = False
        if cert_dir is not None:
            ctx.load_cert_chain(cert_dir / f"{name}.crt", cert_dir / f"{name}.key")
        if "minimum" in versions:
            ctx.minimum_version = versions["minimum"]
        if "maximum" in versions:
            ctx.maximum_version = versions["maximum"]
        return ctx

    def connect(self, ctx: ssl.SSLContext) -> ssl.SSLSocket:
        raw = socket.socket()
        raw.bind((TLS_CALLER, 0))
        raw.settimeout(5)
        raw.connect(("127.0.0.1", self.tls_port))
        return ctx.wrap_socket(raw)


@pytest.fixture(scope="module")
def tls_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEdge]:
    d = tmp_path_factory.mktemp("edge-tls")
    generate(d / "edge", ["sip.test"], ["127.0.0.1"])
    generate(d / "listed", ["sbc.listed.test"])
    generate(d / "unlisted", ["sbc.unlisted.test"])
    bundle = d / "cas.pem"
    bundle.write_bytes(b"".join((d / x / "ca.crt").read_bytes() for x in ("edge", "listed", "unlisted")))
    # two trunks that both accept only sbc.listed.test; the second one's carrier presents another (valid) name
    carriers = {
        "secure": TlsCarrier(d / "listed/sbc.listed.test.crt", d / "listed/sbc.listed.test.key", d / "edge/ca.crt"),
        "spoofed": TlsCarrier(
            d / "unlisted/sbc.unlisted.test.crt", d / "unlisted/sbc.unlisted.test.key", d / "edge/ca.crt"
        ),
    }
    tls_port, internal, node_port = free_port(), free_port(), free_port()
    dep = deployment(
        d,
        f"""
        transports:
          tls:
            port: {tls_port}
            certificate: {d}/edge/sip.test.crt
            private_key: {d}/edge/sip.test.key
            ca_bundle: {bundle}
            verify_peer: all
        trunks:
          - name: secure
            inbound:
              transports: [tls]
              auth: {{acl: [{TLS_CALLER}/32]}}
              remote_domains: [sbc.listed.test]
            outbound: {{address: {TLS_CARRIER}, port: {carriers["secure"].port}, transport: tls}}
          - name: spoofed
            inbound:
              transports: [tls]
              auth: {{acl: [127.0.0.7/32]}}
              remote_domains: [sbc.listed.test]
            outbound: {{address: {TLS_CARRIER}, port: {carriers["spoofed"].port}, transport: tls}}
        numbers:
          - {{number: "+15550000001", trunk: secure, agent: support}}
        edge:
          host: sip.test
          addresses: [127.0.0.1]
          internal_port: {internal}
          rpc_socket: {d}/rpc.sock
          dispatch: {{probe_seconds: 1, node_timeout_seconds: 1}}
          nodes:
            - {{name: fs1, sip_ip: 127.0.0.1, sip_port: {node_port}, esl: {{port: 19005}}, rtp_ports: {{start: 22000, end: 22200}}}}
        """,
    )
    node = SippNode("fs1", node_port, d)
    edge = Kamailio(d, dep, d)
    try:
        node.start("node_busy.xml")
        edge.start(("127.0.0.1", tls_port))
        edge.wait_flags("fs1", "A")
        yield TlsEdge(edge, node, tls_port, internal, d / "edge", d / "listed", d / "unlisted", carriers)
    finally:
        edge.stop()
        node.stop()
        for carrier in carriers.values():
            carrier.close()


def _handshake(tls: TlsEdge, ctx: ssl.SSLContext) -> str | None:
    """The negotiated version, or None when the edge refused (during or right after the handshake)."""
    try:
        with tls.connect(ctx) as s:
            version = s.version()
            # TLS 1.3 reports a refused client certificate after the handshake: make the edge answer something
            codes = status_codes(sip_request(s, "OPTIONS", ruri="sip:127.0.0.1", transport="TLS", timeout=3))
            return version if codes == [200] else None
    except (ssl.SSLError, OSError):
        return None


def _permissive_server(tls: TlsEdge, ctx_setup: object) -> int:
    """A local server accepting anything ``ctx_setup`` allows: proves a client *can* speak what the edge refuses."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls.edge_dir / "sip.test.crt", tls.edge_dir / "sip.test.key")
    assert callable(ctx_setup)
    ctx_setup(ctx)
    srv = socket.create_server(("127.0.0.1", 0))
    port = int(srv.getsockname()[1])

    def serve() -> None:
        with srv:
            srv.settimeout(5)
            try:
                raw, _ = srv.accept()
                with ctx.wrap_socket(raw, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return port


def _client_can(tls: TlsEdge, client: ssl.SSLContext, server_setup: object) -> bool:
    port = _permissive_server(tls, server_setup)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, client.wrap_socket(raw):
            return True
    except (ssl.SSLError, OSError):
        return False


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_before_1_2_is_refused(tls_edge: TlsEdge, version: str) -> None:
    old = getattr(ssl.TLSVersion, version)
    ctx = tls_edge.client(tls_edge.listed, "sbc.listed.test", minimum=old, maximum=old)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")

    def permissive(server: ssl.SSLContext) -> None:
        server.minimum_version = old
        server.set_ciphers("DEFAULT:@SECLEVEL=0")

    if not _client_can(tls_edge, ctx, permissive):
        pytest.skip(f"this OpenSSL cannot speak {version} at all (nothing to refuse)")
    assert _handshake(tls_edge, ctx) is None


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_1_2_and_1_3_are_accepted(tls_edge: TlsEdge, version: str) -> None:
    v = getattr(ssl.TLSVersion, version)
    ctx = tls_edge.client(tls_edge.listed, "sbc.listed.test", minimum=v, maximum=v)
    assert _handshake(tls_edge, ctx) == version.replace("_", ".")


def test_a_weak_cipher_is_refused(tls_edge: TlsEdge) -> None:
    weak = tls_edge.client(tls_edge.listed, "sbc.listed.test", maximum=ssl.TLSVersion.TLSv1_2)
    weak.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # forward secret, but CBC with SHA-1 MAC: not AEAD

    def permissive(server: ssl.SSLContext) -> None:
        server.set_ciphers("ALL:@SECLEVEL=0")

    assert _client_can(tls_edge, weak, permissive), "the client could not offer the weak suite at all"
    assert _handshake(tls_edge, weak) is None
    strong = tls_edge.client(tls_edge.listed, "sbc.listed.test", maximum=ssl.TLSVersion.TLSv1_2)
    strong.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert _handshake(tls_edge, strong) == "TLSv1.2"


def test_tls_configuration_reloads_live(tls_edge: TlsEdge) -> None:
    tls_edge.edge.rpc("tls.reload")
    ctx = tls_edge.client(tls_edge.listed, "sbc.listed.test")
    assert _handshake(tls_edge, ctx) in ("TLSv1.2", "TLSv1.3")


def test_incoming_tls_needs_a_client_certificate_of_a_remote_domain(tls_edge: TlsEdge) -> None:
    """verify_peer: all — no certificate: no connection; a valid certificate for another domain: 403; one of the
    trunk's remote domains: the call reaches the node (which answers 486), marked as arriving over TLS."""
    assert _handshake(tls_edge, tls_edge.client(None)) is None
    with tls_edge.connect(tls_edge.client(tls_edge.unlisted, "sbc.unlisted.test")) as s:
        assert status_codes(sip_request(s, transport="TLS"))[-1:] == [403]
    mark = tls_edge.node.mark()
    with tls_edge.connect(tls_edge.client(tls_edge.listed, "sbc.listed.test")) as s:
        assert status_codes(sip_request(s, transport="TLS"))[-1:] == [486]
    [invite] = tls_edge.node.received("INVITE", mark)
    assert invite.headers("X-Sipagent-Trunk") == ["secure"]
    source = invite.header("X-Sipagent-Source") or ""
    assert source.startswith(f"{TLS_CALLER}:") and source.endswith(";transport=tls")


@pytest.mark.parametrize(("trunk", "expected"), [("secure", 486), ("spoofed", 502)])
def test_a_carrier_the_edge_calls_must_present_one_of_the_remote_domains(
    tls_edge: TlsEdge, trunk: str, expected: int
) -> None:
    """The edge verifies the carrier's chain (every test CA is trusted) and then its name: the carrier of trunk
    spoofed presents sbc.unlisted.test, so the call fails at once (502, not after the carrier timer) and the
    connection is closed. The edge presents its own certificate when the carrier asks (mutual TLS)."""
    carrier = tls_edge.carriers[trunk]
    started = time.monotonic()
    with tcp_connect(("127.0.0.1", tls_edge.internal)) as s:
        codes = status_codes(sip_request(s, headers={"X-Sipagent-Trunk": trunk}))
    assert codes[-1:] == [expected], tls_edge.edge.log()[-3000:]
    assert carrier.invites == 1
    assert carrier.peer_names == ["sip.test"]  # mutual TLS: the edge's own certificate
    if expected == 502:
        assert time.monotonic() - started < 5
        assert wait_until(lambda: carrier.closed_by_peer == 1, 5)
        assert "presents sbc.unlisted.test, not a remote domain" in tls_edge.edge.log()
