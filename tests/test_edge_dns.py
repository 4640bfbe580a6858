"""The records carriers need to find the edge (RFC 3263), ``sipagent dns`` and the allowlist ``sipagent show`` prints."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone
import pytest
from test_validation import ENV, document, run
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config.model import Deployment
from orchestrator.edge.dns import rrsets, zone_text

EDGE = """
    edge:
      host: sip.example.com
      addresses: [203.0.113.10, "2001:db8::10", 203.0.113.11]
      nodes:
        - {name: fs1, sip_ip: 10.0.0.11, rtp_ip: 198.51.100.11, weight: 3, esl: {port: 8021, password: node-secret}}
        - {name: fs2, sip_ip: "fd00::12", sip_port: 5090}
    """

runner = CliRunner()


def _deployment(tls_dir: Path, **sections: str) -> Deployment:
    _, result = run(tls_dir, **sections)
    assert result.errors == [], [str(e) for e in result.errors]
    assert result.deployment is not None
    return result.deployment


def test_records_per_transport_tls_first_then_addresses(tls_dir: Path) -> None:
    text = zone_text(_deployment(tls_dir, edge=EDGE))
    assert text.splitlines()[1:] == [
        'sip.example.com. 3600 IN NAPTR 10 10 "s" "SIPS+D2T" "" _sips._tcp.sip.example.com.',
        'sip.example.com. 3600 IN NAPTR 20 10 "s" "SIP+D2T" "" _sip._tcp.sip.example.com.',
        "_sips._tcp.sip.example.com. 3600 IN SRV 10 10 5061 sip.example.com.",
        "_sip._tcp.sip.example.com. 3600 IN SRV 10 10 5060 sip.example.com.",
        "sip.example.com. 3600 IN A 203.0.113.10",
        "sip.example.com. 3600 IN A 203.0.113.11",
        "sip.example.com. 3600 IN AAAA 2001:db8::10",
    ]
    assert text.startswith(";")


def test_the_edges_own_transports_and_ports_with_udp(tls_dir: Path) -> None:
    edge = (
        textwrap.dedent(EDGE) + "  transports:\n    udp: {port: 5080}\n    tcp: {port: 5070}\n  internal_port: 5071\n"
    )
    trunks = "trunks:\n  - {name: pbx, inbound: {transports: [tcp], auth: {acl: [10.20.0.0/24]}}}\n"
    numbers = 'numbers:\n  - {number: "+15550000002", trunk: pbx, agent: support}\n'
    d = _deployment(tls_dir, edge=edge, transports="", trunks=trunks, numbers=numbers)
    lines = zone_text(d, ttl=60).splitlines()[1:]
    assert lines[:4] == [
        'sip.example.com. 60 IN NAPTR 20 10 "s" "SIP+D2T" "" _sip._tcp.sip.example.com.',
        'sip.example.com. 60 IN NAPTR 30 10 "s" "SIP+D2U" "" _sip._udp.sip.example.com.',
        "_sip._tcp.sip.example.com. 60 IN SRV 10 10 5070 sip.example.com.",
        "_sip._udp.sip.example.com. 60 IN SRV 10 10 5080 sip.example.com.",
    ]
    assert not any("_sips" in line for line in lines)


def test_the_text_is_a_valid_zone_holding_the_same_records(tls_dir: Path) -> None:
    d = _deployment(tls_dir, edge=EDGE)
    soa = (
        "@ 3600 IN SOA ns.example.com. hostmaster.example.com. 1 7200 3600 1209600 300\n@ 3600 IN NS ns.example.com.\n"
    )
    zone = dns.zone.from_text(soa + zone_text(d, ttl=120), origin="example.com.", relativize=False)
    for expected in rrsets(d, ttl=120):
        found = zone.find_rdataset(expected.name, expected.rdtype)
        assert found.ttl == 120
        assert set(found) == set(expected), expected.name
    naptr = zone.find_rdataset("sip.example.com.", dns.rdatatype.NAPTR)
    assert sorted((r.order, r.service, r.flags, r.replacement.to_text()) for r in naptr) == [
        (10, b"SIPS+D2T", b"s", "_sips._tcp.sip.example.com."),
        (20, b"SIP+D2T", b"s", "_sip._tcp.sip.example.com."),
    ]
    srv = zone.find_rdataset("_sips._tcp.sip.example.com.", dns.rdatatype.SRV)
    assert [(r.port, r.target) for r in srv] == [(5061, dns.name.from_text("sip.example.com."))]


def test_a_bad_ttl_or_no_edge_is_refused(tls_dir: Path) -> None:
    with pytest.raises(ValueError, match="TTL"):
        rrsets(_deployment(tls_dir, edge=EDGE), ttl=-1)
    with pytest.raises(ValueError, match="no edge"):
        rrsets(_deployment(tls_dir))


def _file(tmp_path: Path, tls_dir: Path, **sections: str) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(document(tls_dir, **sections))
    return path


def _invoke(*args: str):
    return runner.invoke(app, list(args), env={**ENV, "COLUMNS": "200"}, catch_exceptions=False)


def test_sipagent_dns_prints_the_records(tmp_path: Path, tls_dir: Path) -> None:
    f = _file(tmp_path, tls_dir, edge=EDGE)
    result = _invoke("dns", str(f), "--ttl", "300")
    assert result.exit_code == 0, result.output
    assert result.stdout == zone_text(_deployment(tls_dir, edge=EDGE), ttl=300)
    assert _invoke("dns", str(f), "--ttl", "-5").exit_code == 2


def test_sipagent_dns_without_an_edge_or_with_errors(tmp_path: Path, tls_dir: Path) -> None:
    result = _invoke("dns", str(_file(tmp_path, tls_dir)))
    assert result.exit_code == 2
    assert "has no edge section" in result.output and "NAPTR" not in result.output
    bad = _file(tmp_path, tls_dir, edge=EDGE.replace("sip.example.com", "not a name"))
    result = _invoke("dns", str(bad))
    assert result.exit_code == 2
    assert "error: edge.host:" in result.output and "1 error(s)" in result.output
    assert "IN NAPTR" not in result.output


def test_show_lists_the_allowlist_and_the_pool_without_passwords(tmp_path: Path, tls_dir: Path) -> None:
    result = _invoke("show", str(_file(tmp_path, tls_dir, edge=EDGE)))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Allowlist (static addresses for carriers)" in out
    rows = [" ".join(r.replace("│", " ").split()) for r in out.splitlines()]
    for row in (
        "203.0.113.10 SIP TLS 5061 edge sip.example.com",
        "203.0.113.10 SIP TCP 5060 edge sip.example.com",
        "2001:db8::10 SIP TLS 5061 edge sip.example.com",
        "203.0.113.11 SIP TCP 5060 edge sip.example.com",
        "198.51.100.11 RTP UDP 16384-32768 node fs1",
        "fs1 10.0.0.11:5080 3 10.0.0.11:8021",
        "fs2 [fd00::12]:5090 1 [fd00::12]:8021",
    ):
        assert row in rows, row
    assert any(r.startswith("fd00::12 RTP UDP 16384-32768 node fs2 (a private address") for r in rows)
    assert "not anchored at the edge" in out
    for secret in (*ENV.values(), "node-secret"):
        assert secret not in result.output


def test_show_without_an_edge_has_no_allowlist(tmp_path: Path, tls_dir: Path) -> None:
    result = _invoke("show", str(_file(tmp_path, tls_dir)))
    assert result.exit_code == 0, result.output
    assert "Allowlist" not in result.output and "Pool" not in result.output


def test_a_wildcard_edge_host_is_refused(tls_dir: Path) -> None:
    _, result = run(tls_dir, edge=EDGE.replace("host: sip.example.com", "host: '*.example.com'"))
    assert [(e.dotted_path, "not a wildcard" in e.message) for e in result.errors] == [("edge.host", True)]


def test_dns_has_help() -> None:
    result = _invoke("dns", "--help")
    assert result.exit_code == 0 and "--ttl" in result.output
