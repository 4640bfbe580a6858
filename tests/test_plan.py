"""The FreeSWITCH plan: which parameters each glossary setting turns into."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchestrator.config import check_text
from orchestrator.render import build
from orchestrator.render.plan import Plan

HEAD = "freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: x}}\n"


def plan_for(text: str, tls_dir: Path) -> Plan:
    text = text.replace("TLS/", f"{tls_dir}/")
    result = check_text(HEAD + text, "t.yaml", {}, tls_dir)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    return build(result.deployment, tls_dir)


TLS = "  tls: {certificate: TLS/sip.test.crt, private_key: TLS/sip.test.key, ca_bundle: TLS/ca.crt}\n"


def test_acl_trunk_gets_pass_context_on_its_transports_only(tls_dir: Path) -> None:
    plan = plan_for(
        "transports:\n  tcp: {}\n"
        + TLS
        + "trunks:\n  - {name: pbx, inbound: {transports: [tcp], auth: {acl: [10.0.0.0/8]}}}\n",
        tls_dir,
    )
    tcp, tls = plan.profiles
    assert tcp.inbound_acls == (("trunk-pbx", "trunk-pbx"),)
    assert not tcp.auth_calls
    assert tls.inbound_acls == () and not tls.auth_calls  # nobody may call on TLS: deny-all
    assert any(a.name == "deny-all" and a.allow == () for a in plan.acls)
    assert any(a.name == "trunk-pbx" and a.allow == ("10.0.0.0/8",) and a.default == "deny" for a in plan.acls)


def test_digest_trunk_becomes_directory_user(tls_dir: Path) -> None:
    plan = plan_for(
        "transports:\n"
        + TLS
        + "trunks:\n  - {name: carrier, inbound: {transports: [tls], auth: {digest: {username: u1, password: pw}}}}\n",
        tls_dir,
    )
    [tls] = plan.profiles
    assert tls.auth_calls and tls.directory_domain == "trunks-tls"
    [domain] = plan.directory
    [user] = domain.users
    assert user.username == "u1" and user.context == "trunk-carrier" and user.auth_acl is None
    assert user.a1_hash.get_secret_value() == hashlib.md5(b"u1:127.0.0.1:pw").hexdigest()


def test_digest_and_acl_require_both(tls_dir: Path) -> None:
    """Both given: the user must authenticate AND come from the networks (auth-acl), not either."""
    plan = plan_for(
        "transports:\n  tcp: {}\ntrunks:\n"
        "  - {name: c, inbound: {transports: [tcp], auth: {digest: {username: u, password: p}, acl: [192.0.2.0/24]}}}\n",
        tls_dir,
    )
    [tcp] = plan.profiles
    assert tcp.inbound_acls == ()  # passing the ACL alone must not let a call in
    assert plan.directory[0].users[0].auth_acl == "trunk-c"


@pytest.mark.parametrize(
    ("setting", "srtp", "crypto_check"),
    [("required", "mandatory", True), ("allowed", "optional", False), ("disabled", "forbidden", False)],
)
def test_media_encryption(tls_dir: Path, setting: str, srtp: str, crypto_check: bool) -> None:
    plan = plan_for(
        "transports:\n" + TLS + "trunks:\n"
        f"  - name: c\n    inbound: {{transports: [tls], auth: {{acl: [192.0.2.1]}}, media_encryption: {setting}}}\n"
        f"    outbound: {{address: sbc.example.com, transport: tls, media_encryption: {setting}}}\n",
        tls_dir,
    )
    [ctx] = plan.contexts
    assert ("rtp_secure_media_inbound", srtp) in ctx.variables
    assert ctx.require_crypto is crypto_check
    [gw] = plan.profiles[0].gateways
    assert ("rtp_secure_media_outbound", srtp) in gw.variables


def test_codecs_headers_and_routes(tls_dir: Path) -> None:
    plan = plan_for(
        "transports: {tcp: {}}\ntrunks:\n"
        "  - name: c\n    inbound:\n      transports: [tcp]\n      auth: {acl: [192.0.2.1]}\n      codecs: [PCMA]\n"
        "      headers: [X-Customer-Id, {header: X-Campaign, variable: campaign}]\n"
        "    outbound: {address: 192.0.2.1, headers: {X-Source: ai}, caller_id: '+15550001111'}\n"
        "numbers: [{number: '+15550001234', trunk: c, agent: a}]\n"
        "agents: [{name: a, protocol: raw, url: 'ws://127.0.0.1/x'}]\n",
        tls_dir,
    )
    [ctx] = plan.contexts
    variables = dict(ctx.variables)
    assert variables["absolute_codec_string"] == "PCMA"
    assert not any(
        k.startswith("sipagent_var_") for k in variables
    )  # headers are read from sip_h_* by the orchestrator
    [route] = ctx.routes
    assert (route.number, route.pattern, route.agent) == ("+15550001234", r"^\+?15550001234$", "a")
    gw_vars = dict(plan.profiles[0].gateways[0].variables)
    assert gw_vars["sip_h_X-Source"] == "ai"
    assert gw_vars["absolute_codec_string"] == "G722,PCMU,PCMA"
    assert gw_vars["sipagent_default_caller_id"] == "+15550001111"


@pytest.mark.parametrize(
    ("verify", "domains", "policy", "subjects"),
    [
        ("outgoing", [], "out", ()),
        ("none", ["sbc.example.com"], "none", ()),
        ("incoming", ["sbc.example.com"], "subjects_in", ("sbc.example.com",)),
        ("all", ["sbc.example.com", "*.carrier.example"], "out|subjects_in", ("sbc.example.com", "*.carrier.example")),
        ("all", [], "all", ()),
    ],
)
def test_tls_verify_policy(tls_dir: Path, verify: str, domains: list[str], policy: str, subjects: tuple) -> None:
    plan = plan_for(
        "transports:\n  tls: {certificate: TLS/sip.test.crt, private_key: TLS/sip.test.key, ca_bundle: TLS/ca.crt, "
        f"verify_peer: {verify}}}\n"
        f"trunks:\n  - {{name: c, inbound: {{transports: [tls], auth: {{acl: [192.0.2.1]}}, remote_domains: {domains}}}}}\n",
        tls_dir,
    )
    tls = plan.profiles[0].tls
    assert tls is not None
    assert (tls.verify_policy, tls.verify_in_subjects) == (policy, subjects)


def test_tls_13_only(tls_dir: Path) -> None:
    plan = plan_for(
        "transports:\n  tls: {certificate: TLS/sip.test.crt, private_key: TLS/sip.test.key, ca_bundle: TLS/ca.crt, "
        "min_version: '1.3'}\n",
        tls_dir,
    )
    assert plan.profiles[0].tls is not None and plan.profiles[0].tls.version == "tlsv1.3"


def test_nat_and_handoff(tls_dir: Path) -> None:
    text = (
        "freeswitch: {bind_ip: 10.0.0.5, ext_sip_ip: 203.0.113.9, ext_rtp_ip: 'stun:stun.example.com',"
        " local_networks: [10.0.0.0/8], handoff_timeout_seconds: 0, event_socket: {password: x}}\n"
    )
    result = check_text(text, "t.yaml", {}, tls_dir)
    assert result.deployment is not None
    plan = build(result.deployment, tls_dir)
    assert plan.local_network_acl == "localnet"
    assert plan.sip_domain == "203.0.113.9"
    assert plan.handoff == ""
