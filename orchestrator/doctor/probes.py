"""The doctor's probes: they gather facts over the network (event socket, DNS, SIP OPTIONS, TLS) and from the
deployment's TLS files, and hand them to :mod:`orchestrator.doctor.verdicts`.

The network pieces (the resolver, the endpoints, the peers) are parameters, so the probes are tested against
local servers and fakes, never the internet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
import socket
import ssl
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.rdatatype

from orchestrator.config.model import Deployment
from orchestrator.config.tls_material import TlsMaterial, TlsMaterialError
from orchestrator.config.tls_material import load as load_tls
from orchestrator.doctor import verdicts
from orchestrator.doctor.verdicts import NodeFacts, Result, TrunkFacts
from orchestrator.edge import dns as edge_dns
from orchestrator.esl import replies
from orchestrator.esl.client import Endpoint, EslClient
from orchestrator.media import dialects


def check_certificate(d: Deployment, base_dir: Path, now: dt.datetime | None = None) -> list[Result]:
    """The TLS certificate: loads with its key and CA, expiry, names vs the deployment's domain."""
    tls = d.transports.tls
    if tls is None:
        return verdicts.no_certificate()
    now = now or dt.datetime.now(dt.UTC)
    material: TlsMaterial | TlsMaterialError
    try:
        material = load_tls(tls, base_dir, now)
    except TlsMaterialError as exc:
        material = exc
    return verdicts.certificate(d, material, now)


# -- the event socket ------------------------------------------------------------------------------------
async def probe_node(ep: Endpoint, fork_module: str, timeout: float, gather: bool) -> NodeFacts:
    """Connect to one node and ask ``status``; with ``gather``, also the facts the later checks need."""
    facts = NodeFacts(ep)
    client = EslClient(ep, events=[], connect_timeout=timeout, command_timeout=timeout)
    try:
        await client.start()
        try:  # an attempt takes at most the connect and two handshake timeouts; its failure comes at once
            await client.wait_connected(3 * timeout + 1, fail_fast=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            facts.connect_error = exc
            return facts
        try:
            facts.status = await client.api("status", check=False)
            if gather:
                live: dict[str, Any] = {"sofia": await client.api("sofia status", check=False)}
                spandsp = await client.api("module_exists mod_spandsp", check=False)
                live["modules"] = {"mod_spandsp"} if spandsp.strip() == "true" else set()
                live["fork"] = await _fork_facts(client, fork_module)
                facts.live = live
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            facts.command_error = exc
        return facts
    finally:
        await client.stop()


async def check_esl(d: Deployment, endpoints: list[Endpoint], timeout: float = 5.0) -> tuple[list[Result], Any]:
    """ESL reachable and authenticated, core ready; then profiles, gateways and modules of the first node.

    A node that cannot be used gets one ``fail`` saying why (see :func:`~orchestrator.doctor.verdicts.esl_failure`);
    ``live`` then holds ``unavailable``: the reason the checks that need it are skipped."""
    nodes: list[NodeFacts] = []
    for ep in endpoints:
        gather = not any(n.live is not None for n in nodes)
        nodes.append(await probe_node(ep, d.orchestrator.media.fork_module, timeout, gather))
    return verdicts.esl(nodes, timeout)


async def _fork_facts(client: EslClient, module: str) -> tuple[bool, str]:
    """``module_exists`` (in memory) and ``show api <its api>`` (the core database, filled in the background
    after a start: retried briefly while the loaded module's row is missing)."""
    api = dialects.dialect(module).api
    loaded = (await client.api(f"module_exists {module}", check=False)).strip() == "true"
    show = ""
    for _ in range(10):
        show = await client.api(f"show api {api}", check=False)
        if not loaded or replies.api_row(show, api) is not None:
            break
        await asyncio.sleep(0.3)
    return loaded, show


# -- trunks and TLS peers -----------------------------------------------------------------------------------
Resolver = Callable[[str, str], Awaitable[list[Any]]]  # (name, rdtype) -> answers


async def dns_resolver(name: str, rdtype: str) -> list[Any]:
    """dnspython's resolver (empty list when the name has no such record)."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    try:
        return list(await dns.asyncresolver.resolve(name, rdtype, lifetime=5))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers, dns.exception.Timeout):
        return []


class DnsUnavailable(Exception):
    """No answer from DNS at all (timeout, no server answered): not the same as a name without records."""


def make_resolver(nameservers: list[str] | None = None, port: int = 53, timeout: float = 3.0) -> Resolver:
    """A resolver over dnspython's asynchronous one: the system's servers, or ``nameservers`` on ``port``; each
    lookup gives up after ``timeout`` seconds. A name without such records → ``[]``; no answer → DnsUnavailable."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
    if nameservers is not None:
        resolver.nameservers, resolver.port = list(nameservers), port
    resolver.timeout = resolver.lifetime = timeout

    async def resolve(name: str, rdtype: str) -> list[Any]:
        try:
            return list(await resolver.resolve(name, rdtype, lifetime=timeout, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise DnsUnavailable(f"no answer from DNS within {timeout:g} s") from None
        except dns.resolver.NoNameservers as exc:
            raise DnsUnavailable(f"no DNS server answered ({exc})") from None

    return resolve


async def resolve_sip(host: str, transport: str, port: int | None, resolver: Resolver) -> list[tuple[str, int]]:
    """RFC 3263 server location for a transport: NAPTR → SRV → A/AAAA (IP or explicit port: A/AAAA only)."""
    default = 5061 if transport == "tls" else 5060
    try:
        ipaddress.ip_address(host)
        return [(host, port or default)]
    except ValueError:
        pass
    targets: list[tuple[str, int]] = []
    if port is None:
        service = {"tls": "SIPS+D2T", "tcp": "SIP+D2T", "udp": "SIP+D2U"}[transport]
        naptr = sorted(await resolver(host, "NAPTR"), key=lambda r: (r.order, r.preference))
        srv_names = [str(r.replacement).rstrip(".") for r in naptr if r.service.decode().upper() == service]
        if not srv_names:
            srv_names = [{"tls": "_sips._tcp.", "tcp": "_sip._tcp.", "udp": "_sip._udp."}[transport] + host]
        for srv_name in srv_names:
            for srv in sorted(await resolver(srv_name, "SRV"), key=lambda r: (r.priority, -r.weight)):
                targets.append((str(srv.target).rstrip("."), srv.port))
            if targets:
                break
    if not targets:
        targets = [(host, port or default)]
    out: list[tuple[str, int]] = []
    for name, p in targets:
        for rdtype in ("A", "AAAA"):
            out += [(str(a), p) for a in await resolver(name, rdtype)]
    return out


async def options_ping(host: str, port: int, transport: str, timeout: float = 3.0) -> str | None:
    """Send SIP OPTIONS; the status line of the answer, or None (timeout / refused)."""
    branch, tag, call_id = (secrets.token_hex(8) for _ in range(3))
    proto = transport.upper()
    request = (
        f"OPTIONS sip:{host}:{port};transport={transport} SIP/2.0\r\n"
        f"Via: SIP/2.0/{proto} 0.0.0.0:5060;branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:doctor@sipagent.invalid>;tag={tag}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {call_id}@sipagent\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Contact: <sip:doctor@0.0.0.0:5060>\r\n"
        "Accept: application/sdp\r\n"
        "User-Agent: sipagent-doctor\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    try:
        if transport == "udp":
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                await loop.sock_connect(s, (host, port))
                await loop.sock_sendall(s, request)
                data = await asyncio.wait_for(loop.sock_recv(s, 65535), timeout)
        else:
            ctx = ssl.create_default_context() if transport == "tls" else None
            if ctx is not None:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # reachability, not trust (see tls check)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), timeout)
            writer.write(request)
            data = await asyncio.wait_for(reader.readline(), timeout)
            writer.close()
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return line if line.startswith("SIP/2.0 ") else None


async def probe_trunk(
    name: str, address: str, transport: str, port: int | None, resolver: Resolver, timeout: float = 3.0
) -> TrunkFacts:
    """Resolve a trunk's address and send OPTIONS to its first targets until one answers."""
    facts = TrunkFacts(name, address, transport, await resolve_sip(address, transport, port, resolver))
    if facts.targets:
        for host, p in facts.targets[:3]:
            answered = await options_ping(host, p, transport, timeout)
            if answered:
                facts.answered = (host, p, answered)
                break
    return facts


async def check_trunks(d: Deployment, resolver: Resolver, timeout: float = 3.0) -> list[Result]:
    """Each outbound trunk: its address resolves (RFC 3263) and a target answers OPTIONS."""
    out: list[Result] = []
    for t in d.trunks:
        ob = t.outbound
        if ob is None:
            continue
        out += verdicts.trunk(await probe_trunk(t.name, ob.address, ob.transport, ob.port, resolver, timeout))
    return out


def tls_probe(host: str, port: int, version: ssl.TLSVersion, timeout: float = 5.0) -> tuple[bool, str]:
    """Try one TLS version only; (handshake ok, detail)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():  # probing the deprecated versions is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    try:
        with socket.create_connection((host, port), timeout) as raw, ctx.wrap_socket(raw) as s:
            cipher = s.cipher()
            return True, f"{s.version()} {cipher[0] if cipher else ''}".strip()
    except (OSError, ssl.SSLError) as exc:
        return False, str(exc) or type(exc).__name__


async def check_tls_peer(host: str, port: int) -> list[Result]:
    """TLS ≥ 1.2 with a modern (ECDHE + AEAD) cipher accepted; TLS 1.0/1.1 refused."""
    handshakes: dict[ssl.TLSVersion, tuple[bool, str]] = {}
    for version in verdicts.MODERN_TLS:
        handshakes[version] = await asyncio.to_thread(tls_probe, host, port, version)
    if any(ok for ok, _ in handshakes.values()):
        for version in verdicts.OLD_TLS:
            handshakes[version] = await asyncio.to_thread(tls_probe, host, port, version)
    return verdicts.tls_peer(f"{host}:{port}", handshakes)


# -- the edge's DNS records ---------------------------------------------------------------------------------
async def check_edge_dns(d: Deployment, resolver: Resolver) -> list[Result]:
    """The edge's name resolves to what ``sipagent dns`` publishes: NAPTR, the SRV records, A and AAAA."""
    if d.edge is None:
        return []
    wanted = {(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)): list(rrset) for rrset in edge_dns.rrsets(d)}
    host = edge_dns.host_name(d).to_text()
    for rdtype in ("A", "AAAA"):  # both, so an address that is not the edge's shows up too
        wanted.setdefault((host, rdtype), [])
    facts = verdicts.EdgeDnsFacts(d.edge.host, [(name, rdtype, records) for (name, rdtype), records in wanted.items()])

    async def lookup(name: str, rdtype: str) -> None:
        try:
            facts.found[(name, rdtype)] = await resolver(name, rdtype)
        except DnsUnavailable as exc:
            facts.found[(name, rdtype)] = str(exc)

    await asyncio.gather(*(lookup(name, rdtype) for name, rdtype in wanted))
    return verdicts.edge_dns(facts)
