"""The doctor's verdicts, pure: facts in, :class:`Result` list out (no I/O, no event loop).

Every check of ``sipagent doctor`` is decided here from what :mod:`orchestrator.doctor.probes` found out
(replies of the event socket, DNS answers, OPTIONS answers, TLS handshakes, the loaded TLS files) or from the
deployment alone (NAT, UDP, codecs), so each verdict is tested as a plain function on facts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509

from orchestrator.config.model import Deployment
from orchestrator.config.tls_material import TlsMaterial, TlsMaterialError
from orchestrator.esl import replies
from orchestrator.esl.client import (
    AccessDenied,
    AuthenticationFailed,
    CommandTimeout,
    ConnectionLost,
    ConnectTimeout,
    Endpoint,
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


# -- the deployment and its files ------------------------------------------------------------------
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


def certificate(d: Deployment, material: TlsMaterial | TlsMaterialError, now: dt.datetime) -> list[Result]:
    """The loaded TLS certificate (or why it did not load): expiry, names vs the deployment's domain."""
    tls = d.transports.tls
    assert tls is not None
    if isinstance(material, TlsMaterialError):
        return [Result("certificate", str(tls.certificate), FAIL, str(material), "fix the TLS files named above")]
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


def no_certificate() -> list[Result]:
    """No TLS transport: nothing to check."""
    return [Result("certificate", "transports.tls", SKIP, "no TLS transport configured")]


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


# -- the event socket ------------------------------------------------------------------------------------
@dataclass
class NodeFacts:
    """What probing one node's event socket found: why it could not connect, or the ``status`` reply; the
    facts the later checks need (``sofia``, ``modules``, ``fork``: gathered from one node only); why a
    command failed after connecting."""

    endpoint: Endpoint
    connect_error: BaseException | None = None
    status: str | None = None
    live: dict[str, Any] | None = None
    command_error: BaseException | None = None

    @property
    def target(self) -> str:
        """The node as the results name it."""
        return f"{self.endpoint.name} ({self.endpoint.host}:{self.endpoint.port})"


def esl(nodes: list[NodeFacts], timeout: float) -> tuple[list[Result], dict[str, Any]]:
    """Each node reachable and authenticated, its core ready; ``live`` holds the first usable node's facts or
    ``unavailable``: the reason the checks that need them are skipped."""
    out: list[Result] = []
    live: dict[str, Any] = {}
    reasons: list[str] = []
    for node in nodes:
        target = node.target
        if node.connect_error is not None:
            result = esl_failure(target, node.endpoint, node.connect_error, timeout)
            out.append(result)
            reasons.append(f"{node.endpoint.name}: {result.detail}")
            continue
        if node.status is not None:
            ready = "is ready" in node.status
            detail = "authenticated; core " + ("ready" if ready else "not ready yet")
            out.append(Result("esl", target, PASS if ready else WARN, detail))
        if node.live is not None and "sofia" not in live:
            live.update(node.live)
        if node.command_error is not None:
            result = command_failure(target, node.command_error, timeout)
            out.append(result)
            reasons.append(f"{node.endpoint.name}: {result.detail}")
    if "sofia" not in live:
        live["unavailable"] = "; ".join(reasons) or "no event socket configured"
    return out, live


#: (what the exception is, what went wrong, what to do): the first that matches is the verdict
_Failure = tuple[type[BaseException] | tuple[type[BaseException], ...], Callable[[Any], str], str]


def esl_failure(target: str, ep: Endpoint, exc: BaseException, timeout: float) -> Result:
    """Why a node's event socket could not be used, told apart: DNS, refused, timeout, unreachable, ACL,
    password, not an event socket, dropped; each with what to do about it."""
    where = f"{ep.host}:{ep.port}"
    where_set = "orchestrator.nodes[].host/port (or freeswitch.event_socket)"
    failures: list[_Failure] = [
        (socket.gaierror, lambda e: f"cannot resolve {ep.host}: {e.strerror or e}",
         f"fix the node's host name in {where_set}, or its DNS record"),
        (ConnectionRefusedError, lambda e: f"connection refused at {where}: nothing listens there",
         "start FreeSWITCH (with mod_event_socket loaded), or fix the port/address in " + where_set),
        (ConnectTimeout, lambda e: f"no TCP connection to {where} within {timeout:g} s (timed out)",
         "the host is down or a firewall drops the packets: check the address, the host and its firewall"),
        (AccessDenied, lambda e: f"{where} refused this host by its ACL (text/rude-rejection, before any password)",
         "allow this host's address in freeswitch.event_socket.allow (apply-inbound-acl), then sipagent apply"),
        (AuthenticationFailed, lambda e: f"wrong password: {where} answered the password with -ERR invalid",
         "use the event socket's password: freeswitch.event_socket.password (or the node's password) must match"
         " event_socket.conf.xml; re-render and apply after changing it"),
        (HandshakeTimeout, lambda e: f"{where} accepted the connection but sent no event-socket greeting or answer"
         f" within {timeout:g} s",
         "check that this port is FreeSWITCH's event socket (not another service) and that FreeSWITCH is not hung"),
        (RemoteProtocolError, lambda e: f"{where} does not speak the event socket protocol: {e}",
         "this port belongs to another service: fix the port in " + where_set),
        ((ConnectionLost, EOFError, ConnectionError),
         lambda e: f"{where} closed the connection before authentication: {e}",
         "FreeSWITCH may be restarting or out of connections; check its log and run doctor again"),
        (OSError, lambda e: f"cannot reach {where}: {e.strerror or e}",
         "check the address, the route to it and the firewall"),
        (TimeoutError, lambda e: f"no authenticated event socket within {timeout:g} s",
         "check that FreeSWITCH runs, the address/port, the event socket ACL and the password"),
    ]  # fmt: skip
    return _first_failure(target, exc, failures)


def command_failure(target: str, exc: BaseException, timeout: float) -> Result:
    """A check that had connected and then failed: a command timed out, the link dropped, a command was refused."""
    failures: list[_Failure] = [
        (CommandTimeout, lambda e: f"connected, but a command got no answer within {timeout:g} s: {e}",
         "FreeSWITCH is overloaded or hung: check `fs_cli -x status`, its CPU and its log; or raise --timeout"),
        ((NotConnected, ConnectionLost), lambda e: f"the connection dropped during the checks: {e}",
         "FreeSWITCH restarted or closed the event socket; check its log and run doctor again"),
        (CommandError, lambda e: f"a command was refused: {e}",
         "the event socket user may not run this command (event_socket.conf.xml); check the FreeSWITCH log"),
    ]  # fmt: skip
    return _first_failure(f"{target} commands", exc, failures)


def _first_failure(target: str, exc: BaseException, failures: list[_Failure]) -> Result:
    for kind, detail, fix in failures:
        if isinstance(exc, kind):
            return Result("esl", target, FAIL, detail(exc), fix)
    return Result("esl", target, FAIL, f"unexpected error: {type(exc).__name__}: {exc}", "report this as a bug")


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
        gateway = gateways.get(t.name)
        if gateway is None:
            out.append(Result("gateway", t.name, FAIL, "not loaded", "sipagent apply (rescan), check the log"))
        elif t.outbound.register_ and gateway != "REGED":
            out.append(Result("gateway", t.name, FAIL, f"registration state {gateway}", "check credentials/realm"))
        else:
            out.append(Result("gateway", t.name, PASS, f"loaded ({gateway})"))
    return out


# -- trunks and TLS peers -----------------------------------------------------------------------------------
@dataclass
class TrunkFacts:
    """What probing an outbound trunk found: the targets its address resolves to (RFC 3263) and the first
    of them that answered OPTIONS (host, port, status line), if any."""

    name: str
    address: str
    transport: str
    targets: list[tuple[str, int]] = field(default_factory=list)
    answered: tuple[str, int, str] | None = None


def trunk(facts: TrunkFacts) -> list[Result]:
    """The trunk's address resolves and a target answers OPTIONS."""
    if not facts.targets:
        return [
            Result(
                "dns",
                facts.name,
                FAIL,
                f"{facts.address} does not resolve (NAPTR/SRV/A/AAAA)",
                "fix the trunk address or its DNS records",
            )
        ]
    out = [Result("dns", facts.name, PASS, ", ".join(f"{h}:{p}" for h, p in facts.targets[:4]))]
    if facts.answered is not None:
        host, port, line = facts.answered
        out.append(Result("options", facts.name, PASS, f"{host}:{port} answered {line[8:]}"))
    else:
        out.append(
            Result(
                "options",
                facts.name,
                FAIL,
                f"no answer to OPTIONS over {facts.transport}",
                "check firewall / the trunk's IP allowlist for our address, and the transport",
            )
        )
    return out


#: the TLS versions a peer is probed with: those it should accept, then those it should refuse
MODERN_TLS = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
OLD_TLS = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)


def tls_peer(target: str, handshakes: dict[ssl.TLSVersion, tuple[bool, str]]) -> list[Result]:
    """TLS ≥ 1.2 with a modern (ECDHE + AEAD) cipher accepted; TLS 1.0/1.1 refused. ``handshakes``: each
    version tried, (handshake ok, detail); the old versions are not tried when no modern one works."""
    ok, detail = handshakes[ssl.TLSVersion.TLSv1_2]
    ok13, detail13 = handshakes[ssl.TLSVersion.TLSv1_3]
    if not (ok or ok13):
        return [Result("tls", target, FAIL, f"no TLS 1.2/1.3 handshake: {detail}", "check the port and certificate")]
    best = detail13 if ok13 else detail
    modern = ok13 or ("ECDHE" in detail and ("GCM" in detail or "CHACHA20" in detail))
    out = [
        Result(
            "tls",
            target,
            PASS if modern else WARN,
            best,
            "" if modern else "negotiate an ECDHE + AEAD cipher (tls ciphers)",
        )
    ]
    for version in OLD_TLS:
        accepted, _ = handshakes[version]
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


# -- the edge's DNS records ---------------------------------------------------------------------------------
@dataclass
class EdgeDnsFacts:
    """What DNS says about the edge's name next to what ``sipagent dns`` publishes.

    ``expected``: each lookup in order, (owner name, record type, the records that should be there — empty when
    none should); ``found``: the answers per (owner, type), or why the lookup failed (a string).
    """

    host: str
    expected: list[tuple[str, str, list[Any]]]
    found: dict[tuple[str, str], list[Any] | str] = field(default_factory=dict)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _dns_name(value: Any) -> str:
    return _text(value).rstrip(".").lower()


def _record(rdtype: str, r: Any) -> tuple[Any, ...]:
    """What identifies a record for the comparison (order, preference, priority and weight aside)."""
    if rdtype == "NAPTR":
        return (_text(r.flags).lower(), _text(r.service).upper(), _text(r.regexp), _dns_name(r.replacement))
    if rdtype == "SRV":
        return (int(r.port), _dns_name(r.target))
    return (ipaddress.ip_address(_text(r)).compressed,)


def _shown(rdtype: str, key: tuple[Any, ...]) -> str:
    if rdtype == "NAPTR":
        flags, service, regexp, replacement = key
        return f'"{flags}" "{service}" "{regexp}" {replacement}.'
    if rdtype == "SRV":
        return f"{key[1]}.:{key[0]}"
    return str(key[0])


def edge_dns(facts: EdgeDnsFacts) -> list[Result]:
    """Each of the edge's records resolves as ``sipagent dns`` prints it: one result per owner name and type.

    Missing or wrong records fail, as do addresses that are not the edge's (carriers would send there); other
    NAPTR/SRV targets besides the edge's (a second edge?) and a NAPTR order that does not put TLS first warn.
    """
    fix = "publish the records `sipagent dns` prints for this deployment (and wait for the old TTL to expire)"
    out: list[Result] = []
    for owner, rdtype, records in facts.expected:
        target = f"{owner.rstrip('.')} {rdtype}"
        answer = facts.found.get((owner, rdtype), [])
        if isinstance(answer, str):
            out.append(
                Result("edge dns", target, WARN, f"lookup failed: {answer}", "check this machine's DNS resolver")
            )
            continue
        want = [_record(rdtype, r) for r in records]
        got = [_record(rdtype, r) for r in answer]
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        if not want and not got:
            continue
        address = rdtype in ("A", "AAAA")
        if missing:
            detail = "missing: " + ", ".join(_shown(rdtype, k) for k in missing)
            if extra:
                detail += "; published instead: " + ", ".join(_shown(rdtype, k) for k in extra)
            out.append(Result("edge dns", target, FAIL, detail, fix))
        elif extra and (address or not want):
            shown = ", ".join(_shown(rdtype, k) for k in extra)
            detail = f"also resolves to {shown}: not an address of the edge, carriers would send there"
            out.append(Result("edge dns", target, FAIL, detail, fix))
        elif extra:
            shown = ", ".join(_shown(rdtype, k) for k in extra)
            detail = f"as published by sipagent dns, and also {shown} (not this edge: a second edge?)"
            out.append(Result("edge dns", target, WARN, detail, "remove them unless another edge serves them"))
        elif rdtype == "NAPTR" and (order := _naptr_order(want, answer)) is not None:
            out.append(Result("edge dns", target, WARN, order, "give the NAPTR records the order sipagent dns prints"))
        else:
            out.append(Result("edge dns", target, PASS, ", ".join(_shown(rdtype, k) for k in want)))
    return out


def _naptr_order(want: list[tuple[Any, ...]], answer: list[Any]) -> str | None:
    """None when clients try the published NAPTR records in the edge's order (TLS, TCP, UDP), else what differs."""
    ranked = sorted(answer, key=lambda r: (int(r.order), int(r.preference)))
    services = [_record("NAPTR", r)[1] for r in ranked if _record("NAPTR", r) in want]
    expected = [k[1] for k in want]
    if services == expected:
        return None
    return f"clients try {' then '.join(services)}; the edge's records put {' then '.join(expected)}"
