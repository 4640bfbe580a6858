"""The Kamailio edge configuration rendered from a deployment: files, modes, escaping, determinism, and
``kamailio -c`` on what comes out (skipped without Kamailio)."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from edge_support import ENV, KAMAILIO, deployment

from orchestrator.config.selfsigned import generate
from orchestrator.render.kamailio import (
    EdgeRenderError,
    ScriptRegex,
    build,
    node_shares,
    render,
    script_value,
)
from orchestrator.render.output import write_tree
from orchestrator.render.renderer import PUBLIC_MODE, SECRET_MODE

NODES = """\
  nodes:
    - {name: fs1, sip_ip: 10.0.0.11, sip_port: 5080, weight: 3}
    - {name: fs2, sip_ip: 10.0.0.12, sip_port: 5080, weight: 1}
    - {name: fs3, sip_ip: 10.0.0.13, sip_port: 5090, weight: 1}
"""

TRUNKS = """\
trunks:
  - name: pbx
    inbound: {transports: [tcp], auth: {acl: [192.0.2.0/24, 198.51.100.7/32]}}
    outbound: {address: 192.0.2.10, transport: tcp}
  - name: carrier
    inbound:
      transports: [tcp]
      auth: {digest: {username: carrier, password: "${CARRIER_PASSWORD}"}, acl: [203.0.113.0/28]}
    outbound: {address: sbc.carrier.example, transport: tcp}
  - name: sip-user
    inbound: {transports: [tcp], auth: {digest: {username: roamer, password: "${CARRIER_PASSWORD}"}}}
numbers:
  - {number: "+15550000001", trunk: pbx, agent: support}
"""

TLS_TRUNKS = """\
trunks:
  - name: secure
    inbound:
      transports: [tls]
      auth: {acl: [192.0.2.0/24]}
      remote_domains: [sbc.carrier.example, "*.carrier.example"]
    outbound: {address: 192.0.2.10, port: 5061, transport: tls}
  - name: plain
    inbound: {transports: [tcp], auth: {acl: [198.51.100.0/24]}}
numbers:
  - {number: "+15550000001", trunk: secure, agent: support}
"""


def edge_text(dispatch: str = "", more: str = "", nodes: str = NODES) -> str:
    return (
        "edge:\n  host: sip.example.com\n  addresses: [203.0.113.10]\n  internal_ip: 10.0.0.2\n"
        f"  rpc_socket: /run/kamailio/kamailio_rpc.sock\n{dispatch}{more}{nodes}"
    )


def tls_transports(tls_dir: Path, verify: str = "outgoing", extra: str = "") -> str:
    return (
        "transports:\n  tcp: {port: 5060}\n  tls:\n    port: 5061\n"
        f"    certificate: {tls_dir}/sip.test.crt\n    private_key: {tls_dir}/sip.test.key\n"
        f"    ca_bundle: {tls_dir}/ca.crt\n    verify_peer: {verify}\n{extra}"
    )


CASES = {
    "tcp-weighted": lambda d: TRUNKS + edge_text(),
    "round-robin": lambda d: TRUNKS + edge_text("  dispatch: {algorithm: round_robin, probe_seconds: 2}\n"),
    "udp": lambda d: (
        "transports:\n  tcp: {port: 5060}\n  udp: {port: 5060}\n"
        + TRUNKS.replace("transports: [tcp]", "transports: [tcp, udp]")
        + edge_text()
    ),
    "tls": lambda d: tls_transports(d, "all") + TLS_TRUNKS + edge_text(),
    "nat": lambda d: (
        TRUNKS
        + edge_text(more="  listen_ip: 10.0.0.2\n").replace(
            "addresses: [203.0.113.10]", "addresses: [203.0.113.10, 203.0.113.11]"
        )
    ),
    "ipv6": lambda d: (
        TRUNKS
        + edge_text(
            nodes="  nodes:\n    - {name: fs1, sip_ip: '2001:db8::11', sip_port: 5080}\n"
            "    - {name: fs2, sip_ip: '2001:db8::12', weight: 7}\n",
        )
        .replace("addresses: [203.0.113.10]", "addresses: ['2001:db8::10']")
        .replace("internal_ip: 10.0.0.2", "internal_ip: '2001:db8::2'")
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, tls_dir: Path) -> tuple[str, str]:
    return request.param, CASES[request.param](tls_dir)


def test_the_files_and_their_modes(tls_dir: Path, tmp_path: Path) -> None:
    dep = deployment(tmp_path, tls_transports(tls_dir) + TLS_TRUNKS + edge_text())
    files = render(dep, tmp_path, "/etc/kamailio/edge")
    assert sorted(files) == [
        "address.list",
        "dispatcher.list",
        "kamailio.cfg",
        "tls.cfg",
        "tls/ca.crt",
        "tls/edge.crt",
        "tls/edge.key",
        "trunks.cfg",
    ]
    secret = {p for p, f in files.items() if f.mode == SECRET_MODE}
    assert secret == {"trunks.cfg", "tls/edge.key"}
    assert all(f.mode == PUBLIC_MODE for p, f in files.items() if p not in secret)
    write_tree(files, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out/trunks.cfg").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out/tls/edge.key").stat().st_mode) == 0o600
    assert files["tls/edge.key"].content == (tls_dir / "sip.test.key").read_bytes()
    # every path Kamailio reads is absolute, under the conf_dir
    cfg = files["kamailio.cfg"].content.decode() + files["tls.cfg"].content.decode()
    paths = set(re.findall(r'"(/[^"]*)"', cfg))
    assert paths == {
        "/etc/kamailio/edge/address.list",
        "/etc/kamailio/edge/dispatcher.list",
        "/etc/kamailio/edge/trunks.cfg",
        "/etc/kamailio/edge/tls.cfg",
        "/etc/kamailio/edge/tls/edge.crt",
        "/etc/kamailio/edge/tls/edge.key",
        "/etc/kamailio/edge/tls/ca.crt",
        "/run/kamailio/kamailio_rpc.sock",
    }
    assert 'include_file "/etc/kamailio/edge/trunks.cfg"' in cfg


def test_same_input_same_bytes(tls_dir: Path, tmp_path: Path, case: tuple[str, str]) -> None:
    dep = deployment(tmp_path, case[1])
    first = render(dep, tmp_path, "/srv/edge")
    again = render(deployment(tmp_path, case[1]), tmp_path, PurePosixPath("/srv/edge/"))
    assert {p: (f.content, f.mode) for p, f in first.items()} == {p: (f.content, f.mode) for p, f in again.items()}
    elsewhere = render(dep, tmp_path, "/tmp/other")
    for path, f in first.items():
        assert elsewhere[path].content.replace(b"/tmp/other", b"/srv/edge") == f.content, path


def test_digest_trunks_get_ha1_never_the_password(tmp_path: Path) -> None:
    dep = deployment(tmp_path, TRUNKS + edge_text())
    files = render(dep, tmp_path)
    everything = b"".join(f.content for f in files.values())
    assert ENV["CARRIER_PASSWORD"].encode() not in everything
    import hashlib

    ha1 = hashlib.md5(f"carrier:sip.test:{ENV['CARRIER_PASSWORD']}".encode()).hexdigest()
    trunks = files["trunks.cfg"]
    assert trunks.mode == SECRET_MODE and ha1.encode() in trunks.content
    assert ha1.encode() not in files["kamailio.cfg"].content
    # a digest trunk with an ACL needs both; one without is challenged from anywhere
    text = trunks.content.decode()
    assert 'if ($au == "carrier" && ($proto == "tcp")) {' in text
    assert "$var(acl_group) = 2;" in text  # pbx is group 1, carrier group 2
    assert '($proto == "tcp") && allow_source_address("2")' in text
    assert 'if ($au == "roamer"' in text and "$var(acl_group) = 0;" in text
    assert 'www_challenge("sip.test", "1")' in files["kamailio.cfg"].content.decode()


def test_address_list_has_a_group_per_trunk_tagged_with_its_name(tmp_path: Path) -> None:
    files = render(deployment(tmp_path, TRUNKS + edge_text()), tmp_path)
    lines = [x for x in files["address.list"].content.decode().splitlines() if x and not x.startswith("#")]
    assert lines == ["1 192.0.2.0 24 0 pbx", "1 198.51.100.7 32 0 pbx", "2 203.0.113.0 28 0 carrier"]


def test_dispatcher_list_weights_are_percentages(tmp_path: Path) -> None:
    files = render(deployment(tmp_path, TRUNKS + edge_text()), tmp_path)
    lines = [x for x in files["dispatcher.list"].content.decode().splitlines() if x and not x.startswith("#")]
    assert lines == [
        "1 sip:10.0.0.11:5080;transport=tcp 8 0 duid=fs1;sockname=internal;weight=60",
        "1 sip:10.0.0.12:5080;transport=tcp 8 0 duid=fs2;sockname=internal;weight=20",
        "1 sip:10.0.0.13:5090;transport=tcp 8 0 duid=fs3;sockname=internal;weight=20",
    ]
    cfg = files["kamailio.cfg"].content.decode()
    assert 'ds_select_dst("1", "9")' in cfg
    rr = render(deployment(tmp_path, TRUNKS + edge_text("  dispatch: {algorithm: round_robin}\n")), tmp_path)
    assert 'ds_select_dst("1", "4")' in rr["kamailio.cfg"].content.decode()
    assert b"weight=" not in rr["dispatcher.list"].content


@pytest.mark.parametrize(
    ("weights", "shares"),
    [
        ([1], [100]),
        ([3, 1, 1], [60, 20, 20]),
        ([1, 1, 1], [34, 33, 33]),
        ([2, 1], [67, 33]),
        ([100, 1], [99, 1]),
        ([100] * 63 + [1], None),
    ],
)
def test_node_shares_sum_to_100_and_keep_every_node(weights: list[int], shares: list[int] | None) -> None:
    got = node_shares(weights)
    assert sum(got) == 100 and min(got) >= 1 and len(got) == len(weights)
    if shares is not None:
        assert got == shares


def test_dispatch_settings_reach_the_modules(tmp_path: Path) -> None:
    dispatch = (
        "  dispatch: {probe_seconds: 7, down_after: 3, up_after: 2, node_timeout_seconds: 4, retry_after_seconds: 45}\n"
    )
    cfg = render(deployment(tmp_path, TRUNKS + edge_text(dispatch)), tmp_path)["kamailio.cfg"].content.decode()
    for line in (
        'modparam("dispatcher", "ds_ping_interval", 7)',
        'modparam("dispatcher", "ds_probing_threshold", 3)',
        'modparam("dispatcher", "ds_inactive_threshold", 2)',
        'modparam("dispatcher", "ds_probing_mode", 1)',
        'modparam("dispatcher", "ds_ping_from", "sip:edge@sip.example.com")',
        'modparam("tm", "fr_timer", 4000)',
        'append_to_reply("Retry-After: 45\\r\\n");',
        'listen=tcp:203.0.113.10:5060 name "public-tcp-0"',
        'listen=tcp:10.0.0.2:5070 name "internal"',
        'modparam("jsonrpcs", "transport", 4)',
    ):
        assert line in cfg, line


def test_outbound_trunks_rewrite_to_the_carrier(tmp_path: Path) -> None:
    text = render(deployment(tmp_path, TRUNKS + edge_text()), tmp_path)["trunks.cfg"].content.decode()
    assert '$du = "sip:192.0.2.10:5060;transport=tcp";' in text
    assert '$ru = "sip:" + $rU + "@192.0.2.10:5060;transport=tcp";' in text
    # a host name without a port is left to DNS SRV
    assert '$du = "sip:sbc.carrier.example;transport=tcp";' in text
    assert '$fsn = "public-tcp-0";' in text


def test_tls_profiles(tls_dir: Path, tmp_path: Path) -> None:
    files = render(deployment(tmp_path, tls_transports(tls_dir) + TLS_TRUNKS + edge_text()), tmp_path, "/c")
    tls = files["tls.cfg"].content.decode()
    server, client = tls.split("[server:default]")[1].split("[client:default]")
    for part in (server, client):
        assert "method = TLSv1.2+" in part
        assert 'cipher_list = "ECDHE-ECDSA-AES128-GCM-SHA256:' in part
        assert 'certificate = "/c/tls/edge.crt"' in part  # the client presents it too: mTLS
        assert 'ca_list = "/c/tls/ca.crt"' in part
    assert "verify_certificate = no" in server  # verify_peer: outgoing
    assert "verify_certificate = yes" in client and "require_certificate = yes" in client
    both = render(deployment(tmp_path, tls_transports(tls_dir, "all") + TLS_TRUNKS + edge_text()), tmp_path)
    assert both["tls.cfg"].content.decode().count("verify_certificate = yes") == 2


def test_remote_domains_match_by_rfc_6125(tls_dir: Path, tmp_path: Path) -> None:
    plan = build(deployment(tmp_path, tls_transports(tls_dir) + TLS_TRUNKS + edge_text()), tmp_path)
    [rules] = plan.remote_domains
    assert rules.trunk == "secure"
    # Kamailio's =~ is a case-insensitive POSIX extended regex; Python's re agrees on these patterns
    pattern = re.compile(rules.pattern, re.I)
    for name in ("sbc.carrier.example", "SBC.Carrier.Example", "edge1.carrier.example", "*.carrier.example"):
        assert pattern.search(name), name
    for name in ("carrier.example", "a.b.carrier.example", "sbc.carrier.example.evil", "evilcarrier.example", ""):
        assert not pattern.search(name), name
    route = re.compile(rules.route_pattern, re.I)
    assert route.search("<sip:203.0.113.10:5061;transport=tls;r2=on;lr=on;tr=secure>")
    assert not route.search("<sip:203.0.113.10:5061;transport=tls;r2=on;lr=on;tr=secure2>")
    # without TLS on the edge there is nothing to check (and no tls pseudo-variables in the script)
    plain = build(deployment(tmp_path, TRUNKS + edge_text()), tmp_path)
    assert plain.remote_domains == () and plain.tls is None


def test_an_encrypted_key_is_written_decrypted_and_0600(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    d = tmp_path / "tls"
    generate(d, ["sip.test"])
    key = serialization.load_pem_private_key((d / "sip.test.key").read_bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"open sesame"),
    )
    (d / "enc.key").write_bytes(encrypted)
    (d / "enc.key").chmod(0o600)
    text = tls_transports(d).replace("sip.test.key", "enc.key") + TLS_TRUNKS + edge_text()
    text = text.replace(
        "    verify_peer: outgoing\n", "    verify_peer: outgoing\n    private_key_passphrase: ${PASS}\n"
    )
    dep = deployment(tmp_path, text, {**ENV, "PASS": "open sesame"})
    out = render(dep, tmp_path)["tls/edge.key"]
    assert out.mode == SECRET_MODE and b"ENCRYPTED" not in out.content
    assert serialization.load_pem_private_key(out.content, None).public_key().public_numbers() == (
        key.public_key().public_numbers()
    )


@pytest.mark.parametrize(
    "bad",
    ['a"b', "a\\b", "$var(x)", "a b", "a\nb", "a#b", "a\x00b", "a\tb", "é", "a'b", "a{b", "a}b", "a<b"],
)
def test_values_that_could_change_the_script_are_refused(bad: str) -> None:
    with pytest.raises(EdgeRenderError):
        script_value(bad)


def test_safe_values_pass_unchanged() -> None:
    for good in ("sip:[2001:db8::1]:5080;transport=tcp", "/run/kamailio/rpc.sock", "duid=fs1;weight=60", "a-b_c.d"):
        assert script_value(good) == good


@pytest.mark.parametrize(
    ("conf_dir", "rpc_socket"),
    [
        ("relative/dir", "/run/k.sock"),
        ('/etc/"kamailio', "/run/k.sock"),
        ("/etc/kamailio $x", "/run/k.sock"),
        ("/etc/kamailio", '/run/k.sock"); exit; #'),
        ("/etc/kamailio", "/run/$(rm -rf)/k.sock"),
        ("/etc/kamailio", "/run/with space/k.sock"),
    ],
)
def test_hostile_paths_are_refused(tmp_path: Path, conf_dir: str, rpc_socket: str) -> None:
    text = TRUNKS + edge_text().replace("/run/kamailio/kamailio_rpc.sock", f"'{rpc_socket}'")
    dep = deployment(tmp_path, text)
    with pytest.raises(EdgeRenderError):
        render(dep, tmp_path, conf_dir)


def test_a_pattern_not_built_here_is_refused(tmp_path: Path) -> None:
    from orchestrator.render.kamailio import _finalize

    with pytest.raises(EdgeRenderError):
        _finalize(ScriptRegex('^x" + $var(x) + "$'))


def test_hostile_names_never_get_this_far(tmp_path: Path) -> None:
    """Validation refuses names and hosts that are not plain tokens, so the renderer never sees them."""
    from orchestrator.config import check_text

    for hostile in ('pbx"; exit; #', "pbx$var", "PBX"):
        text = TRUNKS.replace("name: pbx", f"name: '{hostile}'")
        assert check_text(text, "t.yaml", ENV, tmp_path).deployment is None


def test_listen_lines_behind_nat_and_over_ipv6(tmp_path: Path) -> None:
    nat = render(deployment(tmp_path, CASES["nat"](tmp_path)), tmp_path)["kamailio.cfg"].content.decode()
    assert [x for x in nat.splitlines() if x.startswith("listen=")] == [
        'listen=tcp:10.0.0.2:5060 advertise 203.0.113.10:5060 name "public-tcp-0"',
        'listen=tcp:10.0.0.2:5070 name "internal"',
    ]
    v6 = render(deployment(tmp_path, CASES["ipv6"](tmp_path)), tmp_path)
    assert [x for x in v6["kamailio.cfg"].content.decode().splitlines() if x.startswith("listen=")] == [
        'listen=tcp:[2001:db8::10]:5060 name "public-tcp-0"',
        'listen=tcp:[2001:db8::2]:5070 name "internal"',
    ]
    assert b"1 sip:[2001:db8::11]:5080;transport=tcp 8 0 duid=fs1" in v6["dispatcher.list"].content
    mixed = CASES["ipv6"](tmp_path).replace("internal_ip: '2001:db8::2'", "internal_ip: 10.0.0.2")
    with pytest.raises(EdgeRenderError, match="same address family"):
        render(deployment(tmp_path, mixed), tmp_path)


def test_what_kamailio_56_cannot_do_is_refused(tls_dir: Path, tmp_path: Path) -> None:
    only13 = tls_transports(tls_dir, extra="    min_version: '1.3'\n") + TLS_TRUNKS + edge_text()
    with pytest.raises(AssertionError, match=r"TLS 1\.3 alone"):  # validation says so before any render
        deployment(tmp_path, only13)
    with pytest.raises(EdgeRenderError, match="no edge section"):
        render(deployment(tmp_path, TRUNKS), tmp_path)


@pytest.mark.skipif(KAMAILIO is None, reason="kamailio is not installed (Debian: kamailio, kamailio-tls-modules)")
def test_kamailio_accepts_the_rendered_configuration(tmp_path: Path, case: tuple[str, str]) -> None:
    dep = deployment(tmp_path, case[1])
    out = tmp_path / "conf"
    write_tree(render(dep, tmp_path, out), out)
    assert KAMAILIO is not None
    proc = subprocess.run(
        [KAMAILIO, "-c", "-f", str(out / "kamailio.cfg")], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config file ok" in proc.stdout + proc.stderr
