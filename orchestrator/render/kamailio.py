"""The Kamailio edge in front of a pool of FreeSWITCH nodes: plan (every decision) and render (templates print).

:func:`build` derives an :class:`EdgePlan` from a deployment with an ``edge:`` section; :func:`render` prints it
with the templates under ``templates/kamailio/`` into the files Kamailio 5.6 reads:

* ``kamailio.cfg`` — listeners, modules, routing; includes ``trunks.cfg``;
* ``trunks.cfg`` (0600) — per-trunk script: digest HA1 (never the password), ACL groups, outbound destinations,
  remote-domain patterns;
* ``dispatcher.list`` — the nodes (set 1) with their share of calls; reloadable live (``dispatcher.reload``);
* ``address.list`` — one permissions group per trunk with networks, tag = trunk name (``permissions.addressReload``);
* ``tls.cfg`` and ``tls/edge.crt``, ``tls/edge.key`` (0600), ``tls/ca.crt`` — with TLS (``tls.reload``).

Paths: Kamailio resolves relative paths differently per module (dispatcher against its working directory,
``include_file`` against the working directory first), so every path written is absolute, under ``conf_dir``
— the directory the rendered files will be read from (default :data:`DEFAULT_CONF_DIR`). Render into a
temporary directory with ``conf_dir`` set to it and ``kamailio -f <dir>/kamailio.cfg`` runs from there.

Remote domains: Kamailio 5.6 checks no host names, so the script compares the name of a *verified* peer
certificate with the trunk's ``remote_domains`` (exact, or ``*.`` for one label; a presented ``*.`` wildcard
covers the first label): on requests over TLS (initial INVITEs and requests routed by the ``tr=`` parameter of
the edge's Record-Route) and on every reply over TLS, in the core ``reply_route`` (tm's ``onreply_route`` cannot
drop a final reply), the trunk taken from the transaction's request (the node's ``X-Sipagent-Trunk`` or Route).
A mismatch drops the message (a request gets 403, a call the edge placed 502 at once) and closes the connection.
Kamailio 5.6 shows only the first DNS subjectAltName (``$tls_peer_san_hostname``; the subject CN when there is
none): a certificate listing the domain further down is refused, never wrongly accepted.

Escaping: every value reaches a file through :func:`script_value` (a strict character set that cannot end a
Kamailio string, start a pseudo-variable, a comment or a preprocessor directive, nor split a list-file line;
anything else is refused), regular expressions built here through :class:`ScriptRegex` (printed only where
Kamailio compiles them and never expands variables), and HA1 hashes through the ``secret`` filter (which marks
the file 0600). The same input gives the same bytes.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
from cryptography.hazmat.primitives import serialization
from markupsafe import Markup
from pydantic import SecretStr

from orchestrator.config import tls_material
from orchestrator.config.model import Deployment, Edge, TlsTransport
from orchestrator.render.plan import a1_hash
from orchestrator.render.renderer import HEADER, PUBLIC_MODE, SECRET_MODE, RenderedFile, templates_dir

#: Where the rendered files are read from unless told otherwise (Debian's Kamailio configuration directory).
DEFAULT_CONF_DIR = PurePosixPath("/etc/kamailio")
#: Dispatcher set holding the nodes.
NODE_SET = 1
#: Dispatcher algorithm per ``edge.dispatch.algorithm`` (dispatcher README 4.1).
ALGORITHMS = {"weighted": 9, "round_robin": 4}
#: Name of the listener nodes talk to (``$Rn``, dispatcher ``sockname``).
INTERNAL_SOCKET = "internal"
#: How long a carrier may take to send any reply to a request (RFC 3261 timer B/F: 64 × T1).
CARRIER_REPLY_MS = 32_000
#: How long a node may ring before the edge gives up (after its first provisional reply).
NODE_RING_MS = 120_000
#: Ring time added to the orchestrator's originate timeout for calls to carriers (the node cancels first).
CARRIER_RING_MARGIN_MS = 10_000
#: tls.cfg tokens are at most this long (core/cfg_parser.h MAX_TOKEN_LEN is 512, with room for the NUL).
TLS_CFG_TOKEN_LIMIT = 511

_SAFE = re.compile(r"[A-Za-z0-9._:/@;=+!*,\[\]-]*")
_REGEX_SAFE = re.compile(r"[a-z0-9.*+|()^$\[\];=,>_-]*")
_HEX = re.compile(r"[0-9a-f]{32}")


class EdgeRenderError(ValueError):
    """The deployment asks for something the Kamailio edge cannot express safely."""


class ScriptRegex(str):
    """A regular expression built by this module (only ``[a-z0-9.*+|()^$[];=,>_-]``), printed where Kamailio
    compiles it as a regex and never expands pseudo-variables (``=~`` on a literal, ``check_route_param``)."""


def script_value(value: str) -> str:
    """A value for a Kamailio file: inside a ``"…"`` string of kamailio.cfg, a token of tls.cfg, a field of
    dispatcher.list / address.list, or a listen address. Only ``A-Z a-z 0-9 . _ : / @ ; = + ! * , [ ] -`` pass:
    nothing that ends a string (``"``, ``\\``), starts a pseudo-variable (``$``), a comment (``#``) or a new
    line or field (blanks). Anything else raises :class:`EdgeRenderError`."""
    if not _SAFE.fullmatch(value):
        bad = next(c for c in value if not _SAFE.fullmatch(c))
        raise EdgeRenderError(f"{value!r} cannot be written into the Kamailio configuration (character {bad!r})")
    return value


def _regex_value(value: ScriptRegex) -> str:
    if not _REGEX_SAFE.fullmatch(value):
        raise EdgeRenderError(f"{value!r} is not a pattern this module builds")
    return value


def _finalize(value: Any) -> Any:
    if value is None:
        raise ValueError("template printed None: a plan value is missing")
    if isinstance(value, SecretStr):
        raise ValueError("template printed a secret without the 'secret' filter")
    if isinstance(value, ScriptRegex):
        return Markup(_regex_value(value))
    if isinstance(value, bool):
        value = "yes" if value else "no"
    return Markup(script_value(str(value)))


class _FileState:
    def __init__(self) -> None:
        self.sensitive = False


@jinja2.pass_context
def _secret(ctx: jinja2.runtime.Context, value: SecretStr) -> Markup:
    """An HA1 hash: 32 lower-case hex digits; marks the file 0600."""
    ctx["_file"].sensitive = True
    raw = value.get_secret_value()
    if not _HEX.fullmatch(raw):
        raise EdgeRenderError("a digest HA1 is 32 hex digits")
    return Markup(raw)


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.filters["secret"] = _secret
    return env


# -- the plan -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """A ``listen=`` socket: ``proto:address:port [advertise host:port] name "name"``."""

    proto: str
    address: str
    port: int
    name: str
    advertise: str | None = None


@dataclass(frozen=True)
class NodeDestination:
    """A node in dispatcher.list: set, SIP URI, flags, priority, attributes."""

    name: str
    uri: str
    attrs: str
    share: int


@dataclass(frozen=True)
class AddressRecord:
    """A line of address.list: group, network, prefix length, port (0 = any), tag."""

    group: int
    network: str
    prefix: int
    tag: str


@dataclass(frozen=True)
class InboundTrunk:
    """How the edge recognises a trunk's calls: transports, ACL group (0: none), digest user and HA1."""

    name: str
    transports: tuple[str, ...]
    acl_group: int
    username: str | None
    ha1: SecretStr | None


@dataclass(frozen=True)
class RemoteDomains:
    """Certificate names a trunk's TLS peer may have, and the pattern that matches them (lower case)."""

    trunk: str
    domains: tuple[str, ...]
    pattern: ScriptRegex
    route_pattern: ScriptRegex


@dataclass(frozen=True)
class OutboundTrunk:
    """Where calls a node places on a trunk go: next hop, R-URI host part, the public socket to send from."""

    name: str
    dst_uri: str
    ruri_tail: str
    socket: str


@dataclass(frozen=True)
class TlsProfile:
    """A ``[server:default]`` or ``[client:default]`` section of tls.cfg."""

    role: str
    method: str
    verify_certificate: bool
    require_certificate: bool
    verify_depth: int
    certificate: str
    private_key: str
    ca_list: str | None
    cipher_list: str


@dataclass(frozen=True)
class EdgeTls:
    """TLS of the public side: tls.cfg profiles and the files copied next to it."""

    config: str
    profiles: tuple[TlsProfile, ...]
    certificate_pem: bytes
    private_key_pem: bytes
    ca_pem: bytes | None


@dataclass(frozen=True)
class EdgePlan:
    """Everything the Kamailio templates print."""

    conf_dir: str
    host: str
    realm: str
    ping_from: str
    listeners: tuple[Listener, ...]
    internal: Listener
    nodes: tuple[NodeDestination, ...]
    algorithm: int
    probe_seconds: int
    down_after: int
    up_after: int
    node_timeout_ms: int
    node_ring_ms: int
    carrier_reply_ms: int
    carrier_ring_ms: int
    retry_after_seconds: int
    addresses: tuple[AddressRecord, ...]
    inbound: tuple[InboundTrunk, ...]
    outbound: tuple[OutboundTrunk, ...]
    remote_domains: tuple[RemoteDomains, ...]
    tls: EdgeTls | None
    rpc_socket: str
    node_set: int = NODE_SET
    internal_socket: str = INTERNAL_SOCKET

    def path(self, name: str) -> str:
        """Absolute path of a rendered file as Kamailio reads it."""
        return f"{self.conf_dir}/{name}"

    @property
    def acl_trunks(self) -> tuple[InboundTrunk, ...]:
        """Trunks recognised by source address alone."""
        return tuple(t for t in self.inbound if t.username is None)

    @property
    def digest_trunks(self) -> tuple[InboundTrunk, ...]:
        """Trunks that authenticate with digest (and their ACL group, when they have one too)."""
        return tuple(t for t in self.inbound if t.username is not None)


def _uri_host(address: str) -> str:
    """A host for a SIP URI or a listen line: IPv6 addresses in brackets."""
    return f"[{address}]" if ":" in address else address


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def node_shares(weights: Sequence[int]) -> list[int]:
    """Weights as the percentages dispatcher algorithm 9 wants: each at least 1, summing to exactly 100
    (largest remainder; ties go to the earlier node). Kamailio ignores a weight pushing the sum over 100 and
    gives a shortfall to the last destination, so the relative weights of the deployment are normalised here."""
    if not weights or len(weights) > 100:
        raise EdgeRenderError("weighted dispatching needs between 1 and 100 nodes")
    total = sum(weights)
    exact = [100 * w / total for w in weights]
    shares = [max(1, int(x)) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    i = 0
    while sum(shares) < 100:
        shares[order[i % len(order)]] += 1
        i += 1
    while sum(shares) > 100:
        j = max((k for k in range(len(shares)) if shares[k] > 1), key=lambda k: (shares[k] - exact[k], k))
        shares[j] -= 1
    return shares


def _domain_pattern(domain: str) -> str:
    """RFC 6125 matching of a presented name against one remote domain: exact, a ``*.`` reference matching one
    label, or a presented ``*.`` wildcard covering the reference's first label."""
    if domain.startswith("*."):
        rest = domain[2:]
        first = "[a-z0-9-]+|[*]"
    else:
        label, _, rest = domain.partition(".")
        first = f"{label}|[*]"
    return f"({first})[.]" + rest.replace(".", "[.]")


def _remote_domains(name: str, domains: Sequence[str]) -> RemoteDomains:
    for d in domains:
        bare = d[2:] if d.startswith("*.") else d
        if not re.fullmatch(r"[a-z0-9.-]+", bare) or "." not in bare:
            raise EdgeRenderError(f"trunk {name}: {d!r} is not a domain the edge can match")
    pattern = "^(" + "|".join(_domain_pattern(d) for d in domains) + ")$"
    return RemoteDomains(
        trunk=name,
        domains=tuple(domains),
        pattern=ScriptRegex(pattern),
        route_pattern=ScriptRegex(f"[;]tr={name}([;>,]|$)"),
    )


def _listeners(edge: Edge, deployment: Deployment) -> tuple[tuple[Listener, ...], Listener, str]:
    transports = deployment.public_transports
    binds = [edge.listen_ip] if edge.listen_ip else list(edge.addresses)
    public: list[Listener] = []
    for proto in transports.enabled():
        port = transports.port(proto)
        for i, address in enumerate(binds):
            advertise = f"{_uri_host(edge.addresses[0])}:{port}" if edge.listen_ip else None
            public.append(Listener(proto, _uri_host(address), port, f"public-{proto}-{i}", advertise))
    if edge.internal_ip:
        internal_bind = edge.internal_ip
    elif edge.listen_ip:  # behind 1:1 NAT the first public address is not a local one
        internal_bind = edge.listen_ip
    else:
        internal_bind = edge.addresses[0]
    internal = Listener("tcp", _uri_host(internal_bind), edge.internal_port, INTERNAL_SOCKET)
    return tuple(public), internal, internal_bind


def _nodes(edge: Edge, internal: str) -> tuple[NodeDestination, ...]:
    family = ipaddress.ip_address(internal).version
    for node in edge.nodes:
        if ipaddress.ip_address(node.sip_ip).version != family:
            raise EdgeRenderError(
                f"node {node.name} ({node.sip_ip}) cannot be reached from the edge's internal address {internal}: "
                "give the edge an internal_ip of the same address family"
            )
    weighted = edge.dispatch.algorithm == "weighted"
    shares = node_shares([n.weight for n in edge.nodes]) if weighted else [0] * len(edge.nodes)
    out = []
    for node, share in zip(edge.nodes, shares, strict=True):
        attrs = f"duid={node.name};sockname={INTERNAL_SOCKET}"
        if weighted:
            attrs += f";weight={share}"
        uri = f"sip:{_uri_host(node.sip_ip)}:{node.sip_port};transport=tcp"
        out.append(NodeDestination(node.name, uri, attrs, share))
    return tuple(out)


def _inbound(deployment: Deployment) -> tuple[tuple[InboundTrunk, ...], tuple[AddressRecord, ...]]:
    public = set(deployment.public_transports.enabled())
    trunks: list[InboundTrunk] = []
    records: list[AddressRecord] = []
    group = 0
    for trunk in deployment.trunks:
        inbound = trunk.inbound
        if inbound is None:
            continue
        transports = tuple(t for t in inbound.transports if t in public)
        if not transports:
            raise EdgeRenderError(f"trunk {trunk.name}: none of its inbound transports is enabled on the edge")
        acl_group = 0
        if inbound.auth.acl:
            group += 1
            acl_group = group
            for cidr in inbound.auth.acl:
                net = ipaddress.ip_network(cidr)
                records.append(AddressRecord(group, str(net.network_address), net.prefixlen, trunk.name))
        digest = inbound.auth.digest
        trunks.append(
            InboundTrunk(
                name=trunk.name,
                transports=transports,
                acl_group=acl_group,
                username=digest.username if digest else None,
                ha1=a1_hash(digest.username, deployment.sip_domain, digest.password) if digest else None,
            )
        )
    return tuple(trunks), tuple(records)


def _outbound(deployment: Deployment) -> tuple[OutboundTrunk, ...]:
    public = set(deployment.public_transports.enabled())
    out = []
    for trunk in deployment.trunks:
        ob = trunk.outbound
        if ob is None:
            continue
        if ob.transport not in public:
            raise EdgeRenderError(
                f"trunk {trunk.name} sends calls over {ob.transport.upper()}, which the edge does not listen on"
            )
        # a host name without a port leaves room for DNS SRV (RFC 3263); an IP always gets one
        port = ob.port or (ob.effective_port if _is_ip(ob.address) else None)
        hostport = _uri_host(ob.address) + (f":{port}" if port else "")
        out.append(
            OutboundTrunk(
                name=trunk.name,
                dst_uri=f"sip:{hostport};transport={ob.transport}",
                ruri_tail=hostport + ("" if ob.transport == "udp" else f";transport={ob.transport}"),
                socket=f"public-{ob.transport}-0",
            )
        )
    return tuple(out)


def _key_pem(tls: TlsTransport, material: tls_material.TlsMaterial) -> bytes:
    """The private key as Kamailio can read it: Kamailio 5.6 takes no passphrase, so an encrypted key is written
    decrypted (into a 0600 file)."""
    if tls.private_key_passphrase is None:
        return material.private_key_pem
    key = serialization.load_pem_private_key(
        material.private_key_pem, password=tls.private_key_passphrase.get_secret_value().encode()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _tls(deployment: Deployment, base_dir: Path, conf_dir: str, checks_names: bool) -> EdgeTls | None:
    tls = deployment.public_transports.tls
    if tls is None:
        return None
    if tls.min_version == "1.3":
        raise EdgeRenderError(
            "Kamailio 5.6 cannot accept TLS 1.3 only (its tls module knows no TLSv1.3 method): "
            "set min_version 1.2 for the edge"
        )
    try:
        material = tls_material.load(tls, base_dir)
    except tls_material.TlsMaterialError as exc:
        raise EdgeRenderError(f"TLS {exc.setting}: {exc.message}") from None
    ciphers = ":".join(tls.ciphers)
    ca = f"{conf_dir}/tls/ca.crt" if material.ca_pem is not None else None
    for value in (ciphers, f"{conf_dir}/tls/edge.key"):
        if len(value) > TLS_CFG_TOKEN_LIMIT:
            raise EdgeRenderError(f"{value[:40]}…: tls.cfg values are limited to {TLS_CFG_TOKEN_LIMIT} characters")
    verify_in = tls.verify_peer in ("incoming", "all")
    # remote domains are checked on certificates Kamailio verified: then connections it opens always verify
    verify_out = tls.verify_peer in ("outgoing", "all") or checks_names
    if verify_out and ca is None:
        raise EdgeRenderError("verifying carriers' certificates needs a ca_bundle")

    def profile(role: str, verify: bool) -> TlsProfile:
        return TlsProfile(
            role=role,
            method="TLSv1.2+",
            verify_certificate=verify,
            require_certificate=verify,
            verify_depth=tls.verify_depth,
            certificate=f"{conf_dir}/tls/edge.crt",
            private_key=f"{conf_dir}/tls/edge.key",
            ca_list=ca,
            cipher_list=ciphers,
        )

    profiles = (profile("server", verify_in), profile("client", verify_out))
    return EdgeTls(
        config=f"{conf_dir}/tls.cfg",
        profiles=profiles,
        certificate_pem=material.certificate_pem,
        private_key_pem=_key_pem(tls, material),
        ca_pem=material.ca_pem,
    )


def _conf_dir(conf_dir: PurePosixPath | Path | str) -> str:
    text = str(conf_dir).rstrip("/") or "/"
    if not text.startswith("/"):
        raise EdgeRenderError(f"conf_dir {text!r} must be an absolute path (Kamailio reads every file from it)")
    return script_value(text)


def build(deployment: Deployment, base_dir: Path, conf_dir: PurePosixPath | Path | str = DEFAULT_CONF_DIR) -> EdgePlan:
    """Derive the edge plan (reads the TLS files). ``conf_dir``: the absolute directory Kamailio reads the
    rendered files from. Raises :class:`EdgeRenderError` for what cannot be expressed."""
    edge = deployment.edge
    if edge is None:
        raise EdgeRenderError("the deployment has no edge section")
    directory = _conf_dir(conf_dir)
    listeners, internal, internal_address = _listeners(edge, deployment)
    inbound, addresses = _inbound(deployment)
    tls_enabled = deployment.public_transports.tls is not None
    remote = (
        tuple(
            _remote_domains(t.name, t.inbound.remote_domains)
            for t in deployment.trunks
            if t.inbound is not None and t.inbound.remote_domains
        )
        if tls_enabled
        else ()
    )
    d = edge.dispatch
    return EdgePlan(
        conf_dir=directory,
        host=edge.host,
        realm=script_value(deployment.sip_domain),
        ping_from=f"sip:edge@{edge.host}",
        listeners=listeners,
        internal=internal,
        nodes=_nodes(edge, internal_address),
        algorithm=ALGORITHMS[d.algorithm],
        probe_seconds=d.probe_seconds,
        down_after=d.down_after,
        up_after=d.up_after,
        node_timeout_ms=d.node_timeout_seconds * 1000,
        node_ring_ms=NODE_RING_MS,
        carrier_reply_ms=CARRIER_REPLY_MS,
        carrier_ring_ms=deployment.orchestrator.originate_timeout_seconds * 1000 + CARRIER_RING_MARGIN_MS,
        retry_after_seconds=d.retry_after_seconds,
        addresses=addresses,
        inbound=inbound,
        outbound=_outbound(deployment),
        remote_domains=remote,
        tls=_tls(deployment, base_dir, directory, bool(remote)),
        rpc_socket=script_value(edge.rpc_socket),
    )


def _render(template: str, **context: Any) -> RenderedFile:
    state = _FileState()
    text = _environment().get_template(template).render(header=HEADER, _file=state, **context)
    return RenderedFile(text.encode("utf-8"), SECRET_MODE if state.sensitive else PUBLIC_MODE)


def render_plan(plan: EdgePlan) -> dict[str, RenderedFile]:
    """The files of an edge plan, keyed by path relative to ``plan.conf_dir``."""
    files = {
        "kamailio.cfg": _render("kamailio/kamailio.cfg.j2", plan=plan),
        "dispatcher.list": _render("kamailio/dispatcher.list.j2", plan=plan),
        "address.list": _render("kamailio/address.list.j2", plan=plan),
    }
    trunks = _render("kamailio/trunks.cfg.j2", plan=plan)
    files["trunks.cfg"] = RenderedFile(trunks.content, SECRET_MODE)  # destinations and HA1: never world-readable
    if plan.tls is not None:
        files["tls.cfg"] = _render("kamailio/tls.cfg.j2", plan=plan, tls=plan.tls)
        files["tls/edge.crt"] = RenderedFile(_newline(plan.tls.certificate_pem), PUBLIC_MODE)
        files["tls/edge.key"] = RenderedFile(_newline(plan.tls.private_key_pem), SECRET_MODE)
        if plan.tls.ca_pem is not None:
            files["tls/ca.crt"] = RenderedFile(_newline(plan.tls.ca_pem), PUBLIC_MODE)
    return dict(sorted(files.items()))


def _newline(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


def render(
    deployment: Deployment, base_dir: Path, conf_dir: PurePosixPath | Path | str = DEFAULT_CONF_DIR
) -> dict[str, RenderedFile]:
    """Every file of the Kamailio edge for ``deployment`` (TLS files relative to ``base_dir``), keyed by path
    relative to ``conf_dir``, the absolute directory Kamailio will read them from."""
    return render_plan(build(deployment, base_dir, conf_dir))
