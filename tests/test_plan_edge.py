"""Nodes behind an edge: each node's FreeSWITCH plan and rendered tree (profile, ACLs, contexts, gateways).

The edge (Kamailio) authenticates carriers and relays to a node with ``X-Sipagent-Trunk``; the node accepts
SIP only from the edge's internal address and sends its calls back through it.
"""

from __future__ import annotations

import dataclasses
import difflib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fsxml import assemble, params, profile_params

from orchestrator import channelvars
from orchestrator.config import check_text
from orchestrator.config.model import Deployment
from orchestrator.render import build, render_deployment, render_nodes, write_tree
from orchestrator.render.plan import Plan

HEAD = (
    "freeswitch: {bind_ip: 10.0.0.10, sip_domain: sip.example.com, event_socket: {password: '${ESL}'}}\n"
    "transports:\n  tcp: {port: 5060}\n"
    "  tls: {certificate: TLS/sip.test.crt, private_key: TLS/sip.test.key, ca_bundle: TLS/ca.crt}\n"
)
EDGE = (
    "edge:\n  host: sip.example.com\n  addresses: [203.0.113.10]\n  internal_ip: 10.0.0.2\n  internal_port: 5070\n"
    "  nodes:\n"
    "    - {name: fs1, sip_ip: 10.0.0.11, sip_port: 5080}\n"
    "    - {name: fs2, sip_ip: 10.0.0.12, sip_port: 5090, weight: 2, esl: {port: 8022, password: '${ESL2}'}}\n"
)
TRUNKS = (
    "trunks:\n"
    "  - name: carrier\n"
    "    inbound:\n      transports: [tls]\n      auth: {digest: {username: carrier, password: '${PW}'}}\n"
    "      media_encryption: required\n      headers: [X-Customer-Id]\n"
    "    outbound:\n      address: sbc.carrier.example\n      port: 5061\n      transport: tls\n"
    "      auth: {username: out, password: '${PW}'}\n      headers: {X-Origin: ai}\n"
    "      caller_id: '+15550001111'\n      ping_seconds: 30\n"
    "  - name: office-pbx\n"
    "    inbound: {transports: [tcp], auth: {acl: [192.0.2.0/24]}, media_encryption: disabled}\n"
    "    outbound: {address: 192.0.2.10, from_domain: pbx.example, media_encryption: disabled}\n"
    "  - name: out-only\n    outbound: {address: '2001:db8::5'}\n"
    "numbers:\n"
    "  - {number: '+15550000001', trunk: carrier, agent: a}\n"
    "  - {number: '+15550000002', trunk: office-pbx, agent: a}\n"
    "agents: [{name: a, protocol: raw, url: 'ws://127.0.0.1:9000/a'}]\n"
)
ENV = {"ESL": "esl-secret", "ESL2": "other-secret", "PW": "pw"}


def deployment(tls_dir: Path, text: str, env: dict[str, str] | None = None) -> Deployment:
    result = check_text(text.replace("TLS/", f"{tls_dir}/"), "t.yaml", env or ENV, tls_dir)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    return result.deployment


def node_plans(tls_dir: Path, text: str = HEAD + EDGE + TRUNKS) -> dict[str, Plan]:
    d = deployment(tls_dir, text)
    assert d.edge is not None
    return {n.name: build(d, tls_dir, n.name) for n in d.edge.nodes}


def test_a_node_has_one_tcp_profile_that_admits_only_the_edge(tls_dir: Path) -> None:
    plan = node_plans(tls_dir)["fs1"]
    [profile] = plan.profiles  # no tls or udp profile: TLS and UDP are the edge's
    assert (profile.name, profile.transport, profile.port) == ("edge", "tcp", 5080)
    assert profile.inbound_acls == (("edge", "edge"),)
    assert not profile.auth_calls and profile.directory_domain is None and plan.directory == ()
    assert profile.tls is None and plan.tls_material is None
    assert profile.nat_acl is None  # the edge is no NATed client
    assert (plan.sip_ip, plan.ext_sip_ip, plan.ext_rtp_ip) == ("10.0.0.11", None, None)
    acls = {a.name: a for a in plan.acls}
    assert set(acls) == {"esl", "edge", "nowhere-local"}  # no trunk lists: the edge checks the carriers
    assert (acls["edge"].allow, acls["edge"].default) == (("10.0.0.2/32",), "deny")
    assert acls["nowhere-local"].allow == () and plan.local_network_acl == "nowhere-local"


def test_the_edge_context_hands_each_inbound_trunk_to_its_context(tls_dir: Path) -> None:
    d = deployment(tls_dir, HEAD + EDGE + TRUNKS)
    plan = build(d, tls_dir, "fs1")
    edge = plan.edge_context
    assert edge is not None and edge.name == "edge"
    assert edge.trunk_variable == "${sip_h_X-Sipagent-Trunk}"
    assert [(r.trunk, r.pattern, r.context) for r in edge.routes] == [
        ("carrier", "^carrier$", "trunk-carrier"),
        ("office-pbx", "^office\\-pbx$", "trunk-office-pbx"),
    ]  # the outbound-only trunk takes no calls
    assert edge.variables == ((channelvars.SOURCE, "${sip_h_X-Sipagent-Source}"),)
    assert edge.cleared == ("sip_h_X-Sipagent-Trunk", "sip_h_X-Sipagent-Source")
    # the trunk contexts (policy, SRTP, routes, variables) are the single node's
    single = build(d.model_copy(update={"edge": None}), tls_dir)
    assert plan.contexts == single.contexts
    assert [c.name for c in plan.contexts] == ["trunk-carrier", "trunk-office-pbx"]
    assert plan.contexts[0].require_crypto


def test_gateways_reach_the_carrier_through_the_edge(tls_dir: Path) -> None:
    d = deployment(tls_dir, HEAD + EDGE + TRUNKS)
    plan = build(d, tls_dir, "fs1")
    single = build(d.model_copy(update={"edge": None}), tls_dir)
    single_gws = {g.name: g for p in single.profiles for g in p.gateways}
    gws = {g.name: g for g in plan.profiles[0].gateways}
    assert list(gws) == ["carrier", "office-pbx", "out-only"]  # every outbound trunk, whatever its transport
    for name, gw in gws.items():
        assert gw.outbound_proxy == "10.0.0.2:5070;transport=tcp"
        assert (gw.transport, gw.register, gw.ping_seconds) == ("tcp", False, 0)  # the edge answers OPTIONS
        assert gw.variables == (*single_gws[name].variables, ("sip_h_X-Sipagent-Trunk", name))
        assert (gw.username, gw.password, gw.realm) == (
            single_gws[name].username,
            single_gws[name].password,
            single_gws[name].realm,
        )  # the carrier's challenges are still answered by the node
    # the request URI names the carrier (sofia builds it from proxy), without the node's transport
    assert gws["carrier"].proxy == "sbc.carrier.example:5061" and single_gws["carrier"].proxy.endswith("tls")
    assert gws["office-pbx"].proxy == "192.0.2.10:5060"
    assert gws["out-only"].proxy == "[2001:db8::5]:5060"
    # and so does the From (the node's own address would leak otherwise)
    assert [g.from_domain for g in gws.values()] == ["sbc.carrier.example", "pbx.example", "2001:db8::5"]
    assert single_gws["carrier"].from_domain is None  # a single node: as before


def test_two_nodes_differ_only_in_their_addresses_ports_and_event_socket(tls_dir: Path) -> None:
    plans = node_plans(tls_dir)
    fs1, fs2 = plans["fs1"], plans["fs2"]
    assert (fs2.sip_ip, fs2.profiles[0].port) == ("10.0.0.12", 5090)
    assert (fs1.event_socket.port, fs1.event_socket.password.get_secret_value()) == (8021, "esl-secret")
    assert (fs2.event_socket.port, fs2.event_socket.password.get_secret_value()) == (8022, "other-secret")
    esl1, esl2 = (next(a for a in p.acls if a.name == "esl") for p in (fs1, fs2))
    assert (esl1.allow[-1], esl2.allow[-1]) == ("10.0.0.11/32", "10.0.0.12/32")
    same = dataclasses.replace(
        fs2,
        sip_ip=fs1.sip_ip,
        profiles=(dataclasses.replace(fs2.profiles[0], port=fs1.profiles[0].port),),
        event_socket=fs1.event_socket,
        acls=fs1.acls,
        node=fs1.node,
    )
    assert same == fs1


def test_two_rendered_nodes_differ_only_where_they_must(tls_dir: Path) -> None:
    d = deployment(tls_dir, HEAD + EDGE + TRUNKS)
    trees = render_nodes(d, tls_dir)
    assert list(trees) == ["fs1", "fs2"]
    fs1, fs2 = trees["fs1"], trees["fs2"]
    assert set(fs1) == set(fs2)
    changed = {}
    for rel in fs1:
        a, b = fs1[rel].content.decode().splitlines(), fs2[rel].content.decode().splitlines()
        diff = [line for line in difflib.unified_diff(a, b, lineterm="", n=0) if line[:1] in "+-"]
        if diff:  # removed lines first, then added ones
            lines = [line for line in diff if not line.startswith(("---", "+++"))]
            changed[rel] = [x for x in lines if x[0] == "-"] + [x for x in lines if x[0] == "+"]
    assert changed.pop("sip_profiles/edge.xml") == [
        "-  <!-- SIP over TCP on 10.0.0.11:5080 -->",
        '-    <param name="sip-ip" value="10.0.0.11"/>',
        '-    <param name="rtp-ip" value="10.0.0.11"/>',
        '-    <param name="sip-port" value="5080"/>',
        "+  <!-- SIP over TCP on 10.0.0.12:5090 -->",
        '+    <param name="sip-ip" value="10.0.0.12"/>',
        '+    <param name="rtp-ip" value="10.0.0.12"/>',
        '+    <param name="sip-port" value="5090"/>',
    ]
    assert changed.pop("autoload_configs/event_socket.conf.xml") == [
        '-    <param name="listen-ip" value="10.0.0.11"/>',
        '-    <param name="listen-port" value="8021"/>',
        '-    <param name="password" value="esl-secret"/>',
        '+    <param name="listen-ip" value="10.0.0.12"/>',
        '+    <param name="listen-port" value="8022"/>',
        '+    <param name="password" value="other-secret"/>',
    ]
    assert changed.pop("autoload_configs/acl.conf.xml") == [
        '-      <node type="allow" cidr="10.0.0.11/32"/>',
        '+      <node type="allow" cidr="10.0.0.12/32"/>',
    ]
    assert set(changed) == {"vars.xml", ".sipagent-render.json"}  # the digest of the rest


def test_a_node_with_its_own_rtp_address_puts_it_in_sdp(tls_dir: Path) -> None:
    """sofia writes ext-rtp-ip into SDP only with an ext-sip-ip set and a peer outside local-network-acl
    (switch_core_media_check_nat): the node's own address keeps SIP naming the node, and no network is local."""
    text = (HEAD + EDGE + TRUNKS).replace("sip_port: 5080}", "sip_port: 5080, rtp_ip: 198.51.100.11}")
    plans = node_plans(tls_dir, text)
    fs1, fs2 = plans["fs1"], plans["fs2"]
    assert (fs1.sip_ip, fs1.ext_sip_ip, fs1.ext_rtp_ip) == ("10.0.0.11", "10.0.0.11", "198.51.100.11")
    assert fs1.local_network_acl == "nowhere-local"
    assert (fs2.ext_sip_ip, fs2.ext_rtp_ip) == (None, None)


@pytest.mark.parametrize(
    ("listen_ip", "esl", "expected", "extra_acl"),
    [
        ("127.0.0.1", "{}", "10.0.0.11", "10.0.0.11/32"),  # reached at its sip_ip (the default host)
        ("127.0.0.1", "{host: 127.0.0.1}", "127.0.0.1", None),  # reached on loopback: as configured
        ("127.0.0.1", "{host: localhost}", "127.0.0.1", None),
        ("127.0.0.1", "{host: 10.0.0.99}", "10.0.0.99", "10.0.0.99/32"),  # another address of the node
        ("127.0.0.1", "{host: fs1.internal.example}", "10.0.0.11", "10.0.0.11/32"),  # a name: the node's sip_ip
        ("0.0.0.0", "{}", "0.0.0.0", None),  # already on every interface
    ],
)
def test_where_a_nodes_event_socket_listens(
    tls_dir: Path, listen_ip: str, esl: str, expected: str, extra_acl: str | None
) -> None:
    text = (
        f"freeswitch: {{bind_ip: 10.0.0.10, event_socket: {{listen_ip: {listen_ip}, password: x, allow: [10.9.0.0/16]}}}}\n"
        "edge:\n  host: sip.example.com\n  addresses: [203.0.113.10]\n"
        f"  nodes:\n    - {{name: fs1, sip_ip: 10.0.0.11, esl: {esl}}}\n"
    )
    plan = build(deployment(tls_dir, text), tls_dir, "fs1")
    assert plan.event_socket.listen_ip == expected
    [esl_acl] = [a for a in plan.acls if a.name == "esl"]
    assert esl_acl.allow == ("127.0.0.0/8", "::1/128", "10.9.0.0/16", *([extra_acl] if extra_acl else []))
    assert plan.esl_acl == "esl"


def test_building_needs_a_node_exactly_when_there_is_an_edge(tls_dir: Path) -> None:
    d = deployment(tls_dir, HEAD + EDGE + TRUNKS)
    with pytest.raises(ValueError, match="name the node"):
        build(d, tls_dir)
    with pytest.raises(ValueError, match="name the node"):
        render_deployment(d, tls_dir)
    with pytest.raises(ValueError, match="no node 'fs9'"):
        build(d, tls_dir, "fs9")
    assert d.edge is not None
    assert build(d, tls_dir, d.edge.nodes[1]).node == d.edge.nodes[1]
    single = d.model_copy(update={"edge": None})
    with pytest.raises(ValueError, match="no edge"):
        build(single, tls_dir, "fs1")
    with pytest.raises(ValueError, match="no edge"):
        render_nodes(single, tls_dir)


# -- the rendered tree, as FreeSWITCH reads it -------------------------------------------------------------


def test_node_tree_is_well_formed_and_reads_as_planned(tls_dir: Path, tmp_path: Path) -> None:
    d = deployment(tls_dir, HEAD + EDGE + TRUNKS)
    tree = render_nodes(d, tls_dir)["fs1"]
    assert sorted(rel for rel in tree if not rel.startswith("autoload_configs/")) == [
        ".sipagent-render.json",
        "dialplan/sipagent.xml",
        "freeswitch.xml",
        "sip_profiles/edge.xml",
        "vars.xml",
    ]  # no directory (digest is the edge's), no TLS files
    for rel, f in tree.items():
        if rel.endswith(".xml"):
            ET.fromstring(f.content)
    assert tree["autoload_configs/event_socket.conf.xml"].sensitive  # the ESL password
    assert tree["sip_profiles/edge.xml"].sensitive  # the carrier's outbound password
    assert "pw" not in tree["dialplan/sipagent.xml"].content.decode()
    write_tree(tree, tmp_path / "conf")
    doc = assemble(tmp_path / "conf")
    assert [s.get("name") for s in doc.findall("section")] == ["configuration", "dialplan"]
    [profile] = doc.findall(".//configuration[@name='sofia.conf']/profiles/profile")
    assert profile.get("name") == "edge"
    settings = profile_params(doc, "edge")
    names = [n for n, _ in settings]
    assert ("apply-inbound-acl", "edge:edge") in settings and names.count("apply-inbound-acl") == 1
    s = dict(settings)
    assert (s["sip-ip"], s["rtp-ip"], s["sip-port"], s["bind-params"]) == (
        "10.0.0.11",
        "10.0.0.11",
        "5080",
        "transport=tcp",
    )
    assert (s["auth-calls"], s["tls"], s["context"], s["local-network-acl"]) == (
        "false",
        "false",
        "reject",
        "nowhere-local",
    )
    assert "apply-nat-acl" not in s and "ext-sip-ip" not in s and "challenge-realm" not in s
    gw = doc.find(".//gateway[@name='carrier']")
    assert gw is not None
    g = params(gw)
    assert (g["proxy"], g["outbound-proxy"], g["register-transport"], g["ping"]) == (
        "sbc.carrier.example:5061",
        "10.0.0.2:5070;transport=tcp",
        "tcp",
        "0",
    )
    variables = {v.get("name"): (v.get("value"), v.get("direction")) for v in gw.iter("variable")}
    assert variables["sip_h_X-Sipagent-Trunk"] == ("carrier", "outbound")
    acl = {lst.get("name"): [n.get("cidr") for n in lst] for lst in doc.iter("list")}
    assert acl["edge"] == ["10.0.0.2/32"] and acl["nowhere-local"] == []
    esl = params(doc.find(".//configuration[@name='event_socket.conf']"))
    assert (esl["listen-ip"], esl["listen-port"], esl["password"]) == ("10.0.0.11", "8021", "esl-secret")
    contexts = [c.get("name") for c in doc.findall("section[@name='dialplan']/context")]
    assert contexts == ["reject", "edge", "trunk-carrier", "trunk-office-pbx"]
    edge = doc.find("section[@name='dialplan']/context[@name='edge']")
    assert edge is not None
    extensions = edge.findall("extension")
    assert [e.get("name") for e in extensions] == ["trunk-carrier", "trunk-office-pbx", "unknown-trunk"]
    first = extensions[1].findall("condition")
    assert [(c.get("field"), c.get("expression")) for c in first] == [
        ("${sip_h_X-Sipagent-Trunk}", "^office\\-pbx$"),  # the preprocessor leaves a single $ alone
        ("destination_number", "^([0-9A-Za-z+*#._-]{1,64})$"),
    ]
    steps = [(a.tag, a.get("application"), a.get("data")) for a in first[1]]
    assert steps == [
        ("action", "set", "sipagent_source=${sip_h_X-Sipagent-Source}"),
        ("action", "unset", "sip_h_X-Sipagent-Trunk"),  # never copied onto a bridged leg
        ("action", "unset", "sip_h_X-Sipagent-Source"),
        ("action", "transfer", "$1 XML trunk-office-pbx"),
        ("anti-action", "set", "sipagent_trunk=office-pbx"),
        ("anti-action", "set", "sipagent_refused=unknown_number"),
        ("anti-action", "hangup", "UNALLOCATED_NUMBER"),
    ]
    last = [(a.get("application"), a.get("data")) for a in extensions[2].iter("action")]
    assert last == [("set", "sipagent_refused=unknown_trunk"), ("hangup", "INCOMING_CALL_BARRED")]


NASTY = "p<a&s\"s'w>o$${domain}r$d x-PRE-process -- ]]>"


def test_values_in_a_node_tree_read_back_unchanged(tls_dir: Path, tmp_path: Path) -> None:
    """What a node prints from the deployment (ESL password, outbound credentials and header values) is
    escaped for the preprocessor and XML, and reaches FreeSWITCH unchanged."""
    text = (HEAD + EDGE + TRUNKS).replace("headers: {X-Origin: ai}", "headers: {X-Origin: '${NASTY}'}")
    esl = NASTY.replace(" ", "")  # an ESL password has no blanks
    d = deployment(tls_dir, text, {**ENV, "ESL": esl, "PW": NASTY, "NASTY": NASTY})
    tree = render_nodes(d, tls_dir)["fs1"]
    assert "$${domain}" not in b"".join(f.content for f in tree.values()).decode()
    write_tree(tree, tmp_path / "conf")
    doc = assemble(tmp_path / "conf")
    assert params(doc.find(".//configuration[@name='event_socket.conf']"))["password"] == esl
    gw = doc.find(".//gateway[@name='carrier']")
    assert gw is not None and params(gw)["password"] == NASTY
    variables = {v.get("name"): v.get("value") for v in gw.iter("variable")}
    assert variables["sip_h_X-Origin"] == NASTY


def test_ipv6_edge_and_node(tls_dir: Path) -> None:
    text = (
        "freeswitch: {bind_ip: '2001:db8::10', event_socket: {password: x}}\n"
        "edge:\n  host: sip.example.com\n  addresses: ['2001:db8::2']\n"
        "  nodes:\n    - {name: fs1, sip_ip: '2001:db8::11', esl: {host: '::1'}}\n"
        "trunks:\n  - {name: c, outbound: {address: sbc.example.com}}\n"
    )
    plan = build(deployment(tls_dir, text), tls_dir, "fs1")
    [gw] = plan.profiles[0].gateways
    assert gw.outbound_proxy == "[2001:db8::2]:5070;transport=tcp"
    assert next(a for a in plan.acls if a.name == "edge").allow == ("2001:db8::2/128",)
    assert plan.event_socket.listen_ip == "127.0.0.1" and plan.sip_ip == "2001:db8::11"


def test_a_node_with_its_own_rtp_range_renders_it_and_the_others_keep_the_shared_one(tls_dir: Path) -> None:
    text = HEAD + EDGE.replace("sip_port: 5090,", "sip_port: 5090, rtp_ports: {start: 30000, end: 30999},") + TRUNKS
    trees = render_nodes(deployment(tls_dir, text), tls_dir)

    def ports(tree: dict) -> tuple[str, str]:
        root = ET.fromstring(tree["autoload_configs/switch.conf.xml"].content)
        found = {p.get("name"): p.get("value") for p in root.iter("param")}
        return found["rtp-start-port"], found["rtp-end-port"]

    assert ports(trees["fs2"]) == ("30000", "30999")
    assert ports(trees["fs1"]) == ("16384", "32768")  # freeswitch.rtp_ports' defaults
