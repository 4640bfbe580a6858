"""The DNS records that let carriers find the edge (RFC 3263 §4.1), built with dnspython, no I/O.

For the edge's host name: one NAPTR per public transport (TLS ``SIPS+D2T`` first, then TCP ``SIP+D2T``, then
UDP ``SIP+D2U``; flag ``s``: go on with SRV), the SRV record each one points at (``_sips._tcp``, ``_sip._tcp``,
``_sip._udp`` → the host and the transport's port) and an A or AAAA record per edge address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.NAPTR
import dns.rdtypes.IN.SRV
import dns.rrset

from orchestrator.config.model import Deployment, Edge
from orchestrator.config.types import Transport

DEFAULT_TTL = 3600
MAX_TTL = 2**31 - 1  # RFC 2181 §8

SRV_PRIORITY = 10
SRV_WEIGHT = 10  # a second edge (HA pair) published with the same priority and weight gets half the calls


@dataclass(frozen=True)
class Service:
    """One transport as RFC 3263 names it: the NAPTR service field, the SRV owner prefix, its NAPTR order."""

    transport: Transport
    naptr_service: str
    srv_prefix: str
    order: int


#: in the order clients should try them: TLS first, then TCP, then UDP
SERVICES = (
    Service("tls", "SIPS+D2T", "_sips._tcp", 10),
    Service("tcp", "SIP+D2T", "_sip._tcp", 20),
    Service("udp", "SIP+D2U", "_sip._udp", 30),
)


def _edge(d: Deployment) -> Edge:
    if d.edge is None:
        raise ValueError("the deployment has no edge section")
    return d.edge


def host_name(d: Deployment) -> dns.name.Name:
    """The edge's public host name, absolute."""
    return dns.name.from_text(_edge(d).host)


def services(d: Deployment) -> list[tuple[Service, int]]:
    """The transports carriers reach on the edge with their ports, in NAPTR order."""
    transports = d.public_transports
    enabled = transports.enabled()
    return [(s, transports.port(s.transport)) for s in SERVICES if s.transport in enabled]


def rrsets(d: Deployment, ttl: int = DEFAULT_TTL) -> list[dns.rrset.RRset]:
    """The record sets to publish for the edge: NAPTR, then one SRV per transport, then A, then AAAA.

    Raises ``ValueError`` without an edge section or with a TTL outside 0..2^31-1.
    """
    if not 0 <= ttl <= MAX_TTL:
        raise ValueError(f"TTL {ttl} is outside 0..{MAX_TTL}")
    edge = _edge(d)
    host = host_name(d)
    IN, rdtype = dns.rdataclass.IN, dns.rdatatype
    offered = services(d)
    # dnspython's rdata constructors carry no annotations: hence the no-untyped-call ignores
    naptrs = [
        dns.rdtypes.IN.NAPTR.NAPTR(  # type: ignore[no-untyped-call]
            IN, rdtype.NAPTR, s.order, 10, "s", s.naptr_service, "", srv_name(s, host)
        )
        for s, _ in offered
    ]
    out = [dns.rrset.from_rdata_list(host, ttl, naptrs)] if naptrs else []
    for s, port in offered:
        srv = dns.rdtypes.IN.SRV.SRV(IN, rdtype.SRV, SRV_PRIORITY, SRV_WEIGHT, port, host)  # type: ignore[no-untyped-call]
        out.append(dns.rrset.from_rdata(srv_name(s, host), ttl, srv))
    v4 = [a for a in edge.addresses if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in edge.addresses if ipaddress.ip_address(a).version == 6]
    if v4:
        a_records = [dns.rdtypes.IN.A.A(IN, rdtype.A, a) for a in v4]  # type: ignore[no-untyped-call]
        out.append(dns.rrset.from_rdata_list(host, ttl, a_records))
    if v6:
        aaaa = [dns.rdtypes.IN.AAAA.AAAA(IN, rdtype.AAAA, a) for a in v6]  # type: ignore[no-untyped-call]
        out.append(dns.rrset.from_rdata_list(host, ttl, aaaa))
    return out


def srv_name(service: Service, host: dns.name.Name) -> dns.name.Name:
    """The SRV owner name of a transport, e.g. ``_sips._tcp.sip.example.com.``."""
    return dns.name.from_text(service.srv_prefix, origin=host)


def zone_text(d: Deployment, ttl: int = DEFAULT_TTL) -> str:
    """The records as zone-file lines (absolute names, dnspython's presentation format), after a comment."""
    lines = [f"; RFC 3263 records for the SIP edge {host_name(d).to_text()} (sipagent dns)"]
    for rrset in rrsets(d, ttl):
        lines.append(rrset.to_text())
    return "\n".join(lines) + "\n"
