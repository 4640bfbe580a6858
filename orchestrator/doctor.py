"""``sipagent doctor``: diagnose a live deployment and its trunks, each check pass / warn / fail / skip with the fix.

Checks follow the glossary's failure modes: ESL reachable and authenticated; SIP profiles running on the
configured ports; the certificate (chain, expiry, names); TLS with a peer (≥ 1.2 accepted, 1.0/1.1
refused, a modern cipher); outbound addresses per RFC 3263 (NAPTR → SRV → A/AAAA, dnspython); SIP
OPTIONS reachability; codec support (G.722 needs mod_spandsp); the fork module loaded and able to play
agent audio the configured way (streaming needs the jambonz mod_audio_fork); NAT (private bind without external
addresses → one-way audio); UDP (fragmentation). Network pieces (ESL client, resolver, connectors)
are parameters, so every check is tested without the internet.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from orchestrator.config.model import Deployment
from orchestrator.config.tls_material import TlsMaterialError
from orchestrator.config.tls_material import load as load_tls
from orchestrator.esl import replies
from orchestrator.esl.client import (
    AccessDenied,
    AuthenticationFailed,
    CommandTimeout,
    ConnectionLost,
    ConnectTimeout,
    Endpoint,
    EslClient,
    HandshakeTimeout,
    NotConnected,
)
from orchestrator.esl.protocol import CommandError, RemoteProtocolError
from orchestrator.media import dialects

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
_PRIVATE = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
]


def _is_private(address: str) -> bool:
    """RFC 1918 / CGNAT / ULA: addresses that need translation to reach the internet."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # stun:/host: forms
    return any(ip.version == n.version and ip in n for n in _PRIVATE)


@dataclass(frozen=True)
class Result:
    """One check's verdict; ``fix`` says what to do in plain words."""

    check: str
    target: str
    status: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        """For ``--json``."""
        return asdict(self)


# -- configuration checks (no network) ------------------------------------------------------------------
def check_nat(d: Deployment) -> list[Result]:
    """Private bind address without external addresses → one-way audio across NAT."""
    fs = d.freeswitch
    bind = ipaddress.ip_address(fs.bind_ip) if fs.bind_ip not in ("0.0.0.0", "::") else None
    private = bind is not None and _is_private(fs.bind_ip)
    if bind is not None and bind.is_loopback:
        return [Result("nat", fs.bind_ip, PASS, "bound to loopback (lab setup)")]
    if private and not (fs.ext_sip_ip and fs.ext_rtp_ip):
        return [
            Result(
                "nat",
                fs.bind_ip,
                WARN,
                "FreeSWITCH binds a private address and has no ext_sip_ip/ext_rtp_ip",
                "callers beyond NAT will get one-way or no audio: set freeswitch.ext_sip_ip and ext_rtp_ip to "
                "the public address (or stun:/host: forms), or run with host networking",
            )
        ]
    for name in ("ext_sip_ip", "ext_rtp_ip"):
        value = getattr(fs, name)
        if value and _is_private(value):
            return [Result("nat", value, WARN, f"{name} is a private address", f"set {name} to the public one")]
    return [Result("nat", fs.bind_ip, PASS, "addresses are consistent for NAT")]


def check_udp(d: Deployment) -> list[Result]:
    """UDP is opt-in: large SIP messages fragment."""
    if d.transports.udp is None:
        return [Result("udp", "transports", PASS, "UDP is off (TCP/TLS only)")]
    return [
        Result(
            "udp",
            f"udp:{d.transports.udp.port}",
            WARN,
            "UDP transport enabled",
            "SIP over UDP fragments large INVITEs (SRTP keys, many codecs, X- headers) beyond the MTU; prefer TCP/TLS",
        )
    ]


def check_certificate(d: Deployment, base_dir: Path, now: dt.datetime | None = None) -> list[Result]:
    """The TLS certificate: loads with its key and CA, expiry, names vs the deployment's domain."""
    tls = d.transports.tls
    if tls is None:
        return [Result("certificate", "transports.tls", SKIP, "no TLS transport configured")]
    now = now or dt.datetime.now(dt.UTC)
    try:
        material = load_tls(tls, base_dir, now)
    except TlsMaterialError as exc:
        return [Result("certificate", str(tls.certificate), FAIL, str(exc), "fix the TLS files named above")]
    out: list[Result] = []
    leaf = x509.load_pem_x509_certificates(material.certificate_pem)[0]
    left = material.not_after - now
    if left.total_seconds() <= 0:
        out.append(Result("certificate", "expiry", FAIL, f"expired on {material.not_after:%Y-%m-%d}", "renew it"))
    elif left < dt.timedelta(days=30):
        out.append(Result("certificate", "expiry", WARN, f"expires in {left.days} days", "renew it soon"))
    else:
        out.append(Result("certificate", "expiry", PASS, f"valid until {material.not_after:%Y-%m-%d}"))
    names = _names(leaf)
    domain = d.sip_domain
    if domain and not any(_matches(n, domain) for n in names):
        out.append(
            Result(
                "certificate",
                "names",
                WARN,
                f"{domain} is not among the certificate's names ({', '.join(sorted(names)) or 'none'})",
                "peers verifying our name will refuse the TLS connection: reissue with the SIP domain in the SAN",
            )
        )
    else:
        out.append(Result("certificate", "names", PASS, f"covers {domain}"))
    for setting, message in material.warnings:
        out.append(Result("certificate", setting, WARN, message))
    return out


def _names(cert: x509.Certificate) -> set[str]:
    names: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names |= set(san.get_values_for_type(x509.DNSName))
        names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        pass
    return names


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and name.count(".") == pattern.count(".")
    return pattern.lower() == name.lower()


def check_codecs(d: Deployment, modules: set[str] | None, why: str = "event socket not reachable") -> list[Result]:
    """G.722 needs mod_spandsp loaded; every trunk keeps a codec in common with FreeSWITCH."""
    out: list[Result] = []
    if "G722" in d.freeswitch.codecs:
        if modules is None:
            out.append(Result("codecs", "mod_spandsp", SKIP, why))
        elif "mod_spandsp" in modules:
            out.append(Result("codecs", "mod_spandsp", PASS, "G.722 available (mod_spandsp loaded)"))
        else:
            out.append(
                Result(
                    "codecs",
                    "mod_spandsp",
                    FAIL,
                    "G.722 configured but mod_spandsp is not loaded",
                    "install/load mod_spandsp (sipagent apply loads it) or drop G722",
                )
            )
    for t in d.trunks:
        for side in ("inbound", "outbound"):
            spec = getattr(t, side)
            if spec is None:
                continue
            common = [c for c in (spec.codecs or d.freeswitch.codecs) if c in d.freeswitch.codecs]
            status = PASS if common else FAIL
            out.append(Result("codecs", f"{t.name}.{side}", status, f"offers {', '.join(common) or 'nothing'}"))
    return out


# -- live checks ------------------------------------------------------------------------------------------


def esl_failure(target: str, ep: Endpoint, exc: BaseException, timeout: float) -> Result:
    """Why a node's event socket could not be used, told apart: DNS, refused, timeout, unreachable, ACL,
    password, not an event socket, dropped; each with what to do about it."""
    where = f"{ep.host}:{ep.port}"
    where_set = "orchestrator.nodes[].host/port (or freeswitch.event_socket)"
    if isinstance(exc, socket.gaierror):
        return Result(
            "esl", target, FAIL, f"cannot resolve {ep.host}: {exc.strerror or exc}",
            f"fix the node's host name in {where_set}, or its DNS record",
        )  # fmt: skip
    if isinstance(exc, ConnectionRefusedError):
        return Result(
            "esl", target, FAIL, f"connection refused at {where}: nothing listens there",
            "start FreeSWITCH (with mod_event_socket loaded), or fix the port/address in " + where_set,
        )  # fmt: skip
    if isinstance(exc, ConnectTimeout):
        return Result(
            "esl", target, FAIL, f"no TCP connection to {where} within {timeout:g} s (timed out)",
            "the host is down or a firewall drops the packets: check the address, the host and its firewall",
        )  # fmt: skip
    if isinstance(exc, AccessDenied):
        return Result(
            "esl", target, FAIL, f"{where} refused this host by its ACL (text/rude-rejection, before any password)",
            "allow this host's address in freeswitch.event_socket.allow (apply-inbound-acl), then sipagent apply",
        )  # fmt: skip
    if isinstance(exc, AuthenticationFailed):
        return Result(
            "esl", target, FAIL, f"wrong password: {where} answered the password with -ERR invalid",
            "use the event socket's password: freeswitch.event_socket.password (or the node's password) must match"
            " event_socket.conf.xml; re-render and apply after changing it",
        )  # fmt: skip
    if isinstance(exc, HandshakeTimeout):
        return Result(
            "esl", target, FAIL, f"{where} accepted the connection but sent no event-socket greeting or answer"
            f" within {timeout:g} s",
            "check that this port is FreeSWITCH's event socket (not another service) and that FreeSWITCH is not hung",
        )  # fmt: skip
    if isinstance(exc, RemoteProtocolError):
        return Result(
            "esl", target, FAIL, f"{where} does not speak the event socket protocol: {exc}",
            "this port belongs to another service: fix the port in " + where_set,
        )  # fmt: skip
    if isinstance(exc, ConnectionLost | EOFError | ConnectionError):
        return Result(
            "esl", target, FAIL, f"{where} closed the connection before authentication: {exc}",
            "FreeSWITCH may be restarting or out of connections; check its log and run doctor again",
        )  # fmt: skip
    if isinstance(exc, OSError):
        return Result(
            "esl", target, FAIL, f"cannot reach {where}: {exc.strerror or exc}",
            "check the address, the route to it and the firewall",
        )  # fmt: skip
    if isinstance(exc, TimeoutError):
        return Result(
            "esl", target, FAIL, f"no authenticated event socket within {timeout:g} s",
            "check that FreeSWITCH runs, the address/port, the event socket ACL and the password",
        )  # fmt: skip
    return Result("esl", target, FAIL, f"unexpected error: {type(exc).__name__}: {exc}", "report this as a bug")


def _command_failure(target: str, exc: BaseException, timeout: float) -> Result:
    """A check that had connected and then failed: a command timed out, the link dropped, a command was refused."""
    if isinstance(exc, CommandTimeout):
        return Result(
            "esl", f"{target} commands", FAIL, f"connected, but a command got no answer within {timeout:g} s: {exc}",
            "FreeSWITCH is overloaded or hung: check `fs_cli -x status`, its CPU and its log; or raise --timeout",
        )  # fmt: skip
    if isinstance(exc, NotConnected | ConnectionLost):
        return Result(
            "esl", f"{target} commands", FAIL, f"the connection dropped during the checks: {exc}",
            "FreeSWITCH restarted or closed the event socket; check its log and run doctor again",
        )  # fmt: skip
    if isinstance(exc, CommandError):
        return Result(
            "esl", f"{target} commands", FAIL, f"a command was refused: {exc}",
            "the event socket user may not run this command (event_socket.conf.xml); check the FreeSWITCH log",
        )  # fmt: skip
    return Result(
        "esl", f"{target} commands", FAIL, f"unexpected error: {type(exc).__name__}: {exc}", "report this as a bug"
    )


async def check_esl(d: Deployment, endpoints: list[Endpoint], timeout: float = 5.0) -> tuple[list[Result], Any]:
    """ESL reachable and authenticated, core ready; then profiles, gateways and modules of the first node.

    A node that cannot be used gets one ``fail`` saying why (see :func:`esl_failure`); ``live`` then holds
    ``unavailable``: the reason the checks that need it are skipped."""
    out: list[Result] = []
    live: dict[str, Any] = {}
    reasons: list[str] = []
    for ep in endpoints:
        target = f"{ep.name} ({ep.host}:{ep.port})"
        client = EslClient(ep, events=[], connect_timeout=timeout, command_timeout=timeout)
        try:
            await client.start()
            try:  # an attempt takes at most the connect and two handshake timeouts; its failure comes at once
                await client.wait_connected(3 * timeout + 1, fail_fast=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result = esl_failure(target, ep, exc, timeout)
                out.append(result)
                reasons.append(f"{ep.name}: {result.detail}")
                continue
            try:
                status = await client.api("status", check=False)
                ready = "is ready" in status
                out.append(
                    Result(
                        "esl",
                        target,
                        PASS if ready else WARN,
                        "authenticated; core " + ("ready" if ready else "not ready yet"),
                    )
                )
                if "sofia" not in live:
                    facts: dict[str, Any] = {"sofia": await client.api("sofia status", check=False)}
                    spandsp = await client.api("module_exists mod_spandsp", check=False)
                    facts["modules"] = {"mod_spandsp"} if spandsp.strip() == "true" else set()
                    facts["fork"] = await _fork_facts(client, d.orchestrator.media.fork_module)
                    live.update(facts)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result = _command_failure(target, exc, timeout)
                out.append(result)
                reasons.append(f"{ep.name}: {result.detail}")
        finally:
            await client.stop()
    if "sofia" not in live:
        live["unavailable"] = "; ".join(reasons) or "no event socket configured"
    return out, live


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


def check_fork(d: Deployment, facts: tuple[bool, str] | None, why: str = "event socket not reachable") -> list[Result]:
    """The fork module is loaded and can play agent audio the configured way (``show api`` shows its syntax)."""
    media = d.orchestrator.media
    module, api = media.fork_module, dialects.dialect(media.fork_module).api
    if facts is None:
        return [Result("fork", module, SKIP, why)]
    loaded, show_api = facts
    if not loaded:
        return [
            Result(
                "fork",
                module,
                FAIL,
                f"{module} is not loaded: calls cannot reach their agents",
                f"install {module} in FreeSWITCH's module directory; sipagent apply loads it",
            )
        ]
    row = replies.api_row(show_api, api)
    if row is None:
        return [Result("fork", module, WARN, f"loaded, but {api} is not listed by `show api` yet: playback unknown")]
    modes = dialects.playback_modes(row)
    if media.playback not in modes:
        return [
            Result(
                "fork",
                module,
                FAIL,
                f"playback: {media.playback} configured, but this {module} does {' and '.join(modes)} playback only:"
                " callers would not hear the agent",
                "set orchestrator.media.playback: file, or load the jambonz mod_audio_fork (streams audio back)",
            )
        ]
    return [Result("fork", module, PASS, f"loaded; plays agent audio by {' or '.join(modes)} ({media.playback} set)")]


def check_profiles(d: Deployment, sofia_status: str) -> list[Result]:
    """Every transport's SIP profile RUNNING on its port; outbound gateways listed with their state."""
    running = replies.sofia_profiles(sofia_status)
    out: list[Result] = []
    for name in ("tcp", "tls", "udp"):
        transport = getattr(d.transports, name)
        if transport is None:
            continue
        row = running.get(name)
        if row is None:
            out.append(Result("profile", name, FAIL, "not loaded", f"sofia profile {name} start; check the log"))
            continue
        url, state = row
        port = url.rsplit(":", 1)[-1]
        if state != "RUNNING":
            out.append(Result("profile", name, FAIL, f"state {state}", f"sofia profile {name} restart"))
        elif port.isdigit() and int(port) != transport.port:
            out.append(
                Result(
                    "profile",
                    name,
                    FAIL,
                    f"listening on {port}, configured {transport.port}",
                    "sipagent apply --restart-profiles (drops that profile's calls)",
                )
            )
        else:
            out.append(Result("profile", name, PASS, f"RUNNING on {url}"))
    gateways = replies.sofia_gateways(sofia_status)
    for t in d.trunks:
        if t.outbound is None:
            continue
        state = gateways.get(t.name)
        if state is None:
            out.append(Result("gateway", t.name, FAIL, "not loaded", "sipagent apply (rescan), check the log"))
        elif t.outbound.register_ and state != "REGED":
            out.append(Result("gateway", t.name, FAIL, f"registration state {state}", "check credentials/realm"))
        else:
            out.append(Result("gateway", t.name, PASS, f"loaded ({state})"))
    return out


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


async def check_trunks(d: Deployment, resolver: Resolver, timeout: float = 3.0) -> list[Result]:
    """Each outbound trunk: its address resolves (RFC 3263) and a target answers OPTIONS."""
    out: list[Result] = []
    for t in d.trunks:
        ob = t.outbound
        if ob is None:
            continue
        targets = await resolve_sip(ob.address, ob.transport, ob.port, resolver)
        if not targets:
            out.append(
                Result(
                    "dns",
                    t.name,
                    FAIL,
                    f"{ob.address} does not resolve (NAPTR/SRV/A/AAAA)",
                    "fix the trunk address or its DNS records",
                )
            )
            continue
        out.append(Result("dns", t.name, PASS, ", ".join(f"{h}:{p}" for h, p in targets[:4])))
        answered = None
        for host, port in targets[:3]:
            answered = await options_ping(host, port, ob.transport, timeout)
            if answered:
                out.append(Result("options", t.name, PASS, f"{host}:{port} answered {answered[8:]}"))
                break
        if not answered:
            out.append(
                Result(
                    "options",
                    t.name,
                    FAIL,
                    f"no answer to OPTIONS over {ob.transport}",
                    "check firewall / the trunk's IP allowlist for our address, and the transport",
                )
            )
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
            return True, f"{s.version()} {s.cipher()[0] if s.cipher() else ''}".strip()
    except (OSError, ssl.SSLError) as exc:
        return False, str(exc) or type(exc).__name__


async def check_tls_peer(host: str, port: int) -> list[Result]:
    """TLS ≥ 1.2 with a modern (ECDHE + AEAD) cipher accepted; TLS 1.0/1.1 refused."""
    target = f"{host}:{port}"
    ok, detail = await asyncio.to_thread(tls_probe, host, port, ssl.TLSVersion.TLSv1_2)
    ok13, detail13 = await asyncio.to_thread(tls_probe, host, port, ssl.TLSVersion.TLSv1_3)
    out: list[Result] = []
    if not (ok or ok13):
        out.append(Result("tls", target, FAIL, f"no TLS 1.2/1.3 handshake: {detail}", "check the port and certificate"))
        return out
    best = detail13 if ok13 else detail
    modern = ok13 or ("ECDHE" in detail and ("GCM" in detail or "CHACHA20" in detail))
    out.append(
        Result(
            "tls",
            target,
            PASS if modern else WARN,
            best,
            "" if modern else "negotiate an ECDHE + AEAD cipher (tls ciphers)",
        )
    )
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        accepted, _ = await asyncio.to_thread(tls_probe, host, port, version)
        name = version.name.replace("TLSv", "TLS ").replace("_", ".")
        out.append(
            Result(
                "tls",
                f"{target} {name}",
                WARN if accepted else PASS,
                f"{name} {'accepted' if accepted else 'refused'}",
                "disable TLS 1.0/1.1 (min_version 1.2)" if accepted else "",
            )
        )
    return out


async def run_all(
    d: Deployment,
    base_dir: Path,
    endpoints: list[Endpoint],
    *,
    peers: list[tuple[str, int]] | None = None,
    resolver: Resolver = dns_resolver,
    timeout: float = 3.0,
    trunks: bool = True,
) -> list[Result]:
    """Every check, in the order an operator reads them."""
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
        results += await check_trunks(d, resolver, timeout)
    return results
