"""``sipagent doctor``: diagnose a live deployment and its trunks, each check pass / warn / fail / skip with the fix.

Checks follow the glossary's failure modes: ESL reachable and authenticated; SIP profiles running on the
configured ports; the certificate (chain, expiry, names); TLS with a peer (≥ 1.2 accepted, 1.0/1.1
refused, a modern cipher); outbound addresses per RFC 3263 (NAPTR → SRV → A/AAAA, dnspython); SIP
OPTIONS reachability; codec support (G.722 needs mod_spandsp); the fork module loaded and able to play
agent audio the configured way (streaming needs the jambonz mod_audio_fork); NAT (private bind without external
addresses → one-way audio); UDP (fragmentation); with an edge, its name's NAPTR, SRV and A/AAAA records as
``sipagent dns`` prints them.

Two halves: :mod:`~orchestrator.doctor.probes` gathers facts (network probes with the ESL client, resolver and
connectors as parameters, so every check is tested without the internet) and :mod:`~orchestrator.doctor.verdicts`
turns facts into results (pure functions). :func:`run_all` runs them in the order an operator reads them.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.config.model import Deployment
from orchestrator.doctor.probes import (
    DnsUnavailable,
    Resolver,
    check_certificate,
    check_edge_dns,
    check_esl,
    check_tls_peer,
    check_trunks,
    dns_resolver,
    make_resolver,
    options_ping,
    resolve_sip,
    tls_probe,
)
from orchestrator.doctor.verdicts import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    Result,
    check_codecs,
    check_fork,
    check_nat,
    check_profiles,
    check_udp,
    esl_failure,
)
from orchestrator.esl.client import Endpoint

__all__ = [
    "FAIL",
    "PASS",
    "SKIP",
    "WARN",
    "DnsUnavailable",
    "Resolver",
    "Result",
    "check_certificate",
    "check_codecs",
    "check_edge_dns",
    "check_esl",
    "check_fork",
    "check_nat",
    "check_profiles",
    "check_tls_peer",
    "check_trunks",
    "check_udp",
    "dns_resolver",
    "esl_failure",
    "make_resolver",
    "options_ping",
    "resolve_sip",
    "run_all",
    "tls_probe",
]


async def run_all(
    d: Deployment,
    base_dir: Path,
    endpoints: list[Endpoint],
    *,
    peers: list[tuple[str, int]] | None = None,
    resolver: Resolver | None = None,
    timeout: float = 3.0,
    trunks: bool = True,
) -> list[Result]:
    """Every check, in the order an operator reads them. ``resolver``: for the trunks and the edge's records
    (default: the system's DNS, each lookup bounded by ``timeout``)."""
    results: list[Result] = []
    esl, live = await check_esl(d, endpoints, timeout)
    results += esl
    why = f"event socket not usable ({live['unavailable']})" if "unavailable" in live else ""
    if "sofia" in live:
        results += check_profiles(d, live["sofia"])
    else:
        results.append(Result("profile", "sofia", SKIP, why))
    results += check_certificate(d, base_dir)
    results += check_codecs(d, live.get("modules"), why)
    results += check_fork(d, live.get("fork"), why)
    results += check_nat(d)
    results += check_udp(d)
    for host, port in peers or []:
        results += await check_tls_peer(host, port)
    if trunks:
        results += await check_trunks(d, resolver or dns_resolver, timeout)
    results += await check_edge_dns(d, resolver or make_resolver(timeout=timeout))
    return results
