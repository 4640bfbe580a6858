"""The ``edge:`` section: a valid pool, and each way it cannot work (path, line and message checked together)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_validation import marker_line, run

from orchestrator.calls.nodes import node_endpoints

EDGE = """
    edge:
      host: sip.example.com
      addresses: [127.0.0.1]
      internal_port: 5070
      nodes:
        - {name: fs1, sip_ip: 127.0.0.1, sip_port: 5080, weight: 2, esl: {port: 8021}}
        - {name: fs2, sip_ip: 127.0.0.1, sip_port: 5090, rtp_ports: {start: 40000, end: 41000}, esl: {port: 8022, password: other}}
    """


def test_a_pool_behind_an_edge_is_valid_and_its_nodes_are_the_orchestrators(tls_dir: Path) -> None:
    _, result = run(tls_dir, edge=EDGE)
    assert result.errors == [], [str(d) for d in result.errors]
    d = result.deployment
    assert d is not None and d.edge is not None
    assert [(n.name, n.weight, n.rtp_address) for n in d.edge.nodes] == [
        ("fs1", 2, "127.0.0.1"),
        ("fs2", 1, "127.0.0.1"),
    ]
    assert d.public_transports is d.transports  # no edge.transports: the top-level ones are the edge's
    eps = node_endpoints(d)
    assert [(e.name, e.host, e.port, e.password) for e in eps] == [
        ("fs1", "127.0.0.1", 8021, "esl-pass"),
        ("fs2", "127.0.0.1", 8022, "other"),
    ]


def test_without_an_edge_nothing_changes(tls_dir: Path) -> None:
    _, result = run(tls_dir)
    assert result.deployment is not None and result.deployment.edge is None


def _edge(nodes: str, more: str = "") -> str:
    return f"edge:\n  host: sip.example.com\n  addresses: [127.0.0.1]\n{more}  nodes:\n{nodes}"


N1 = "    - {name: fs1, sip_ip: 127.0.0.1, sip_port: 5080}\n"

CASES: list[tuple[str, dict[str, str], str, str]] = [
    (
        "edge-tls-1.3-only",
        {
            "edge": _edge(N1),
            "transports": "transports:\n  tls:\n    certificate: TLS/sip.test.crt\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n    min_version: '1.3' #!\n",
        },
        "transports.tls.min_version",
        "cannot be limited to TLS 1.3",
    ),
    (
        "two-nodes-on-one-address-share-the-rtp-range",
        {"edge": _edge(N1 + "    - {name: fs2, sip_ip: 127.0.0.1, sip_port: 5090, esl: {port: 8022}} #!\n")},
        "edge.nodes[1].rtp_ports",
        "need their own rtp_ports",
    ),
    (
        "node-name-twice",
        {"edge": _edge(N1 + "    - {name: fs1, sip_ip: 127.0.0.2, sip_port: 5080} #!\n")},
        "edge.nodes[1].name",
        "node 'fs1' is listed twice",
    ),
    (
        "node-address-twice",
        {"edge": _edge(N1 + "    - {name: fs2, sip_ip: 127.0.0.1, sip_port: 5080} #!\n")},
        "edge.nodes[1].sip_port",
        "is node 'fs1' too",
    ),
    (
        "node-on-the-edge-sip-port",
        {"edge": _edge("    - {name: fs1, sip_ip: 127.0.0.1, sip_port: 5060} #!\n")},
        "edge.nodes[0].sip_port",
        "clashes with the edge's TCP port",
    ),
    (
        "node-on-the-edge-internal-port",
        {"edge": _edge("    - {name: fs1, sip_ip: 127.0.0.1, sip_port: 5070} #!\n")},
        "edge.nodes[0].sip_port",
        "is the edge's internal port",
    ),
    (
        "internal-port-is-a-public-port",
        {"edge": _edge(N1, "  internal_port: 5061 #!\n")},
        "edge.internal_port",
        "is the edge's TLS port on the same address",
    ),
    (
        "two-node-lists",
        {
            "edge": _edge(N1),
            "orchestrator": "orchestrator:\n  nodes: #!\n    - {name: a, host: 127.0.0.1}\n",
        },
        "orchestrator.nodes",
        "listed once, under edge.nodes",
    ),
    (
        "no-nodes",
        {"edge": "edge:\n  host: sip.example.com\n  addresses: [127.0.0.1]\n  nodes: [] #!\n"},
        "edge.nodes",
        "at least 1",
    ),
    (
        "no-address",
        {"edge": "edge:\n  host: sip.example.com\n  addresses: [] #!\n  nodes:\n" + N1},
        "edge.addresses",
        "at least 1",
    ),
    (
        "host-not-a-name",
        {"edge": "edge:\n  host: 'sip example' #!\n  addresses: [127.0.0.1]\n  nodes:\n" + N1},
        "edge.host",
        "",
    ),
    (
        "weight-zero",
        {"edge": _edge("    - {name: fs1, sip_ip: 127.0.0.1, weight: 0} #!\n")},
        "edge.nodes[0].weight",
        "must be at least 1",
    ),
    (
        "edge-tls-without-certificate",
        {
            "transports": "",
            "edge": _edge(N1, "  transports:\n    tcp: {port: 5060}\n    tls: {port: 5061} #!\n"),
            "trunks": "trunks:\n  - {name: pbx, inbound: {transports: [tcp], auth: {acl: [10.20.0.0/24]}}}\n",
            "numbers": 'numbers:\n  - {number: "+15550000002", trunk: pbx, agent: support}\n',
        },
        "edge.transports.tls.certificate",
        "TLS on the edge needs a certificate",
    ),
    (
        "trunk-transport-not-on-the-edge",
        {
            "transports": "",
            "edge": _edge(N1, "  transports:\n    tcp: {port: 5060}\n"),
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tls] #!\n      auth: {acl: [10.20.0.0/24]}\n",
            "numbers": 'numbers:\n  - {number: "+15550000002", trunk: pbx, agent: support}\n',
        },
        "trunks[0].inbound.transports[0]",
        "not enabled under edge.transports",
    ),
    (
        "edge-transports-and-top-level-transports",
        {
            "transports": "transports: #!\n  tcp: {port: 5060}\n",
            "edge": _edge(N1, "  transports:\n    tcp: {port: 5060}\n"),
            "trunks": "trunks:\n  - {name: pbx, inbound: {transports: [tcp], auth: {acl: [10.20.0.0/24]}}}\n",
            "numbers": 'numbers:\n  - {number: "+15550000002", trunk: pbx, agent: support}\n',
        },
        "transports",
        "leave out the top-level transports",
    ),
    (
        "remote-domains-without-a-ca-to-verify-them",
        {
            "transports": "transports:\n  tls:\n    certificate: TLS/sip.test.crt\n    private_key: TLS/sip.test.key\n",
            "edge": _edge(N1),
            "trunks": "trunks:\n  - name: carrier\n    inbound:\n      transports: [tls]\n      auth: {acl: [10.20.0.0/24]}\n      remote_domains: [sbc.carrier.example] #!\n",
            "numbers": 'numbers:\n  - {number: "+15550000002", trunk: carrier, agent: support}\n',
        },
        "trunks[0].inbound.remote_domains",
        "set transports.tls.ca_bundle",
    ),
    (
        "register-behind-an-edge",
        {
            "edge": _edge(N1),
            "trunks": "trunks:\n  - name: pbx\n    inbound: {transports: [tcp], auth: {acl: [10.20.0.0/24]}}\n"
            "    outbound:\n      address: sbc.carrier.example\n      auth: {username: u, password: p}\n"
            "      register: true #!\n",
            "numbers": 'numbers:\n  - {number: "+15550000002", trunk: pbx, agent: support}\n',
        },
        "trunks[0].outbound.register",
        "registering is not supported behind an edge",
    ),
    (
        "edge-header-to-an-agent",
        {
            "edge": _edge(N1),
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.20.0.0/24]}\n"
            "      headers: [X-Customer, X-Sipagent-Source] #!\n",
            "numbers": 'numbers:\n  - {number: "+15550000002", trunk: pbx, agent: support}\n',
        },
        "trunks[0].inbound.headers[1]",
        "set by the edge",
    ),
    (
        "edge-header-sent-to-a-carrier",
        {
            "edge": _edge(N1),
            "trunks": "trunks:\n  - name: pbx\n    outbound:\n      address: sbc.carrier.example\n"
            "      headers: {X-Origin: ai, X-SIPAGENT-Trunk: other} #!\n",
            "numbers": "",
        },
        "trunks[0].outbound.headers.X-SIPAGENT-Trunk",
        "are the edge's",
    ),
    (
        "two-nodes-one-event-socket",
        {"edge": _edge(N1 + "    - {name: fs2, sip_ip: 127.0.0.1, sip_port: 5090, esl: {port: 8021}} #!\n")},
        "edge.nodes[1].esl.port",
        "event socket 127.0.0.1:8021 is node 'fs1''s too",
    ),
    (
        "edge-unknown-key",
        {"edge": _edge(N1, "  nodez: 1 #!\n")},
        "edge.nodez",
        "",
    ),
]


@pytest.mark.parametrize(("sections", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_edge_that_cannot_work_is_refused(tls_dir: Path, sections: dict[str, str], path: str, message: str) -> None:
    text, result = run(tls_dir, **sections)
    assert result.deployment is None
    matching = [d for d in result.errors if message in d.message and d.dotted_path == path]
    assert matching, f"expected {path}: {message!r}, got: {[str(d) for d in result.errors]}"
    assert matching[0].line == marker_line(text)


def test_udp_on_the_edge_warns(tls_dir: Path) -> None:
    _, result = run(
        tls_dir,
        transports="",
        edge=_edge(N1, "  transports:\n    tcp: {port: 5060}\n    udp: {port: 5060}\n"),
        trunks="trunks:\n  - {name: pbx, inbound: {transports: [tcp], auth: {acl: [10.20.0.0/24]}}}\n",
        numbers='numbers:\n  - {number: "+15550000002", trunk: pbx, agent: support}\n',
    )
    assert result.errors == [], [str(d) for d in result.errors]
    assert any(w.dotted_path == "edge.transports.udp" and "testing only" in w.message for w in result.warnings)


def test_register_and_edge_headers_are_fine_without_an_edge(tls_dir: Path) -> None:
    """The edge's rules only bind behind an edge: a single node may register and pass any X- header on."""
    _, result = run(
        tls_dir,
        trunks="trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.20.0.0/24]}\n"
        "      headers: [X-Sipagent-Source]\n    outbound:\n      address: sbc.carrier.example\n"
        "      auth: {username: u, password: p}\n      register: true\n",
        numbers='numbers:\n  - {number: "+15550000002", trunk: pbx, agent: support}\n',
    )
    assert result.errors == [], [str(d) for d in result.errors]
