"""`sipagent doctor` on the edge's DNS records, against a small authoritative DNS server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest
from test_validation import run

from orchestrator import doctor
from orchestrator.config.model import Deployment
from orchestrator.edge.dns import zone_text

EDGE = """
    edge:
      host: sip.example.com
      addresses: [127.0.0.1, "::1"]
      nodes:
        - {name: fs1, sip_ip: 127.0.0.2, sip_port: 5080}
    """
SOA = "@ 3600 IN SOA ns.example.com. hostmaster.example.com. 1 7200 3600 1209600 300\n@ 3600 IN NS ns.example.com.\n"


class Authority(asyncio.DatagramProtocol):
    """Answers queries from one zone, authoritatively (NXDOMAIN for unknown names); ``silent`` drops them."""

    def __init__(self, zone: dns.zone.Zone, silent: bool = False) -> None:
        self.zone, self.silent = zone, silent
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a DatagramTransport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        if self.silent:
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        node = self.zone.get_node(question.name)
        if node is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            rdataset = node.get_rdataset(question.rdclass, question.rdtype)
            if rdataset is not None:
                name, rdclass, rdtype = question.name, question.rdclass, question.rdtype
                response.find_rrset(response.answer, name, rdclass, rdtype, create=True).update(rdataset)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@contextlib.asynccontextmanager
async def authority(zone_file: str, silent: bool = False) -> AsyncIterator[tuple[Authority, doctor.Resolver]]:
    """The server on 127.0.0.1:<free port> and a resolver asking only it."""
    zone = dns.zone.from_text(SOA + zone_file, origin="example.com.", relativize=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(lambda: Authority(zone, silent), sock=sock)
    try:
        yield server, doctor.make_resolver(["127.0.0.1"], port=port, timeout=0.5)
    finally:
        transport.close()


def _deployment(tls_dir: Path, edge: str = EDGE) -> Deployment:
    _, result = run(tls_dir, edge=edge)
    assert result.errors == [], [str(e) for e in result.errors]
    assert result.deployment is not None
    return result.deployment


def _by_target(results: list[doctor.Result]) -> dict[str, tuple[str, str]]:
    assert all(r.check == "edge dns" for r in results)
    return {r.target: (r.status, r.detail) for r in results}


async def test_the_records_sipagent_dns_prints_pass(tls_dir: Path) -> None:
    d = _deployment(tls_dir)
    async with authority(zone_text(d)) as (server, resolver):
        results = _by_target(await doctor.check_edge_dns(d, resolver))
    assert {t: s for t, (s, _) in results.items()} == {
        "sip.example.com NAPTR": "pass",
        "_sips._tcp.sip.example.com SRV": "pass",
        "_sip._tcp.sip.example.com SRV": "pass",
        "sip.example.com A": "pass",
        "sip.example.com AAAA": "pass",
    }
    assert results["_sips._tcp.sip.example.com SRV"][1] == "sip.example.com.:5061"
    assert results["sip.example.com AAAA"][1] == "::1"
    assert sorted(server.queries) == sorted(
        [
            ("sip.example.com.", "NAPTR"),
            ("_sips._tcp.sip.example.com.", "SRV"),
            ("_sip._tcp.sip.example.com.", "SRV"),
            ("sip.example.com.", "A"),
            ("sip.example.com.", "AAAA"),
        ]
    )


async def test_missing_wrong_and_foreign_records_are_named(tls_dir: Path) -> None:
    d = _deployment(tls_dir)
    published = "\n".join(
        [
            'sip.example.com. 60 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.sip.example.com.',  # TCP before TLS
            'sip.example.com. 60 IN NAPTR 20 10 "s" "SIPS+D2T" "" _sips._tcp.sip.example.com.',
            # no _sips._tcp SRV at all
            "_sip._tcp.sip.example.com. 60 IN SRV 10 10 5070 sip.example.com.",  # wrong port
            "sip.example.com. 60 IN A 127.0.0.1",
            "sip.example.com. 60 IN A 192.0.2.99",  # an old address
            # no AAAA
        ]
    )
    async with authority(published + "\n") as (_, resolver):
        results = _by_target(await doctor.check_edge_dns(d, resolver))
    assert results["sip.example.com NAPTR"] == (
        "warn",
        "clients try SIP+D2T then SIPS+D2T; the edge's records put SIPS+D2T then SIP+D2T",
    )
    assert results["_sips._tcp.sip.example.com SRV"] == ("fail", "missing: sip.example.com.:5061")
    assert results["_sip._tcp.sip.example.com SRV"] == (
        "fail",
        "missing: sip.example.com.:5060; published instead: sip.example.com.:5070",
    )
    status, detail = results["sip.example.com A"]
    assert status == "fail" and "192.0.2.99" in detail and "not an address of the edge" in detail
    assert results["sip.example.com AAAA"] == ("fail", "missing: ::1")


async def test_a_second_edges_records_warn_and_an_address_not_expected_fails(tls_dir: Path) -> None:
    d = _deployment(tls_dir, EDGE.replace('[127.0.0.1, "::1"]', "[127.0.0.1]"))
    extra = (
        "_sip._tcp.sip.example.com. 60 IN SRV 10 10 5060 sip2.example.com.\n"
        "sip.example.com. 60 IN AAAA 2001:db8::5\n"
        'sip.example.com. 60 IN NAPTR 30 10 "s" "SIP+D2U" "" _sip._udp.sip.example.com.\n'
    )
    async with authority(zone_text(d) + extra) as (_, resolver):
        results = _by_target(await doctor.check_edge_dns(d, resolver))
    assert results["_sip._tcp.sip.example.com SRV"][0] == "warn"
    assert "sip2.example.com.:5060" in results["_sip._tcp.sip.example.com SRV"][1]
    status, detail = results["sip.example.com NAPTR"]
    assert status == "warn" and '"SIP+D2U" "" _sip._udp.sip.example.com.' in detail
    assert results["sip.example.com AAAA"][0] == "fail" and "2001:db8::5" in results["sip.example.com AAAA"][1]
    assert results["sip.example.com A"][0] == "pass"


async def test_nothing_published_fails_every_record(tls_dir: Path) -> None:
    d = _deployment(tls_dir)
    async with authority("") as (_, resolver):
        results = await doctor.check_edge_dns(d, resolver)
    assert [r.status for r in results] == ["fail"] * 5
    assert all("sipagent dns" in r.fix for r in results)


async def test_a_dns_server_that_does_not_answer_warns_within_the_timeout(tls_dir: Path) -> None:
    d = _deployment(tls_dir)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with authority(zone_text(d), silent=True) as (server, resolver):
        results = await doctor.check_edge_dns(d, resolver)
    assert loop.time() - started < 2.0  # the lookups run together, each bounded
    assert {r.status for r in results} == {"warn"}
    assert all(r.detail == "lookup failed: no answer from DNS within 0.5 s" for r in results)
    assert server.queries


async def test_run_all_checks_the_edge_with_the_given_resolver(tls_dir: Path) -> None:
    d = _deployment(tls_dir)
    async with authority(zone_text(d)) as (_, resolver):
        results = await doctor.run_all(d, tls_dir, [], resolver=resolver, timeout=0.5, trunks=False)
    edge = [r for r in results if r.check == "edge dns"]
    assert len(edge) == 5 and {r.status for r in edge} == {"pass"}


async def test_no_edge_no_edge_checks(tls_dir: Path) -> None:
    _, result = run(tls_dir)
    assert result.deployment is not None

    async def resolver(name: str, rdtype: str) -> list[object]:
        pytest.fail("no lookup without an edge")

    assert await doctor.check_edge_dns(result.deployment, resolver) == []
