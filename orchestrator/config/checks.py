"""Checks that span sections of a deployment: references, duplicates, ports, transports, TLS files.

They run on whatever parts validated on their own, so one bad trunk does not hide the problems
of the others; names declared by invalid entries still count as declared.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, TypeAlias

from pydantic import BaseModel, SecretStr

from orchestrator import channelvars
from orchestrator.config import routing, tls_material
from orchestrator.config.diagnostics import Diagnostic, Path, Severity, format_path
from orchestrator.config.model import Edge, FreeSwitch, Number, Orchestrator, Transports, Trunk, records_kind
from orchestrator.config.source import Source
from orchestrator.config.text import quote

W = Severity.WARNING
_CRYPTO_IN_AVP = (
    "accept_crypto_in_avp accepts SRTP keys, but media_encryption is 'disabled': "
    "set media_encryption to allowed or required, or remove accept_crypto_in_avp"
)

IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IpAddr:
    """A listening address, IPv4-mapped IPv6 addresses as the IPv4 address they are."""
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True)
class _Listener:
    """A socket the deployment binds: who, where in the file, protocol, address and port range."""

    label: str
    path: Path
    proto: str
    address: IpAddr
    first: int
    last: int = 0

    @property
    def end(self) -> int:
        return self.last or self.first

    def describe(self) -> str:
        ports = f"port {self.first}" if not self.last else f"ports {self.first}-{self.last}"
        return f"{self.proto.upper()} {ports} on {self.address}"

    def clashes(self, other: _Listener) -> bool:
        """Same protocol, overlapping addresses (0.0.0.0 / :: overlap their whole family), overlapping ports."""
        if self.proto != other.proto or self.address.version != other.address.version:
            return False
        if not (self.address == other.address or self.address.is_unspecified or other.address.is_unspecified):
            return False
        return self.first <= other.end and other.first <= self.end


@dataclass
class Parts:
    """The sections of a deployment that validated, by position in the file."""

    freeswitch: FreeSwitch | None = None
    transports: Transports | None = None
    trunks: dict[int, Trunk] = field(default_factory=dict)
    numbers: dict[int, Number] = field(default_factory=dict)
    agents: dict[int, Any] = field(default_factory=dict)
    orchestrator: Orchestrator | None = None
    edge: Edge | None = None
    declared_trunks: set[str] = field(default_factory=set)
    declared_agents: set[str] = field(default_factory=set)


#: One ACL network for the overlap sweep: IP version, first and last address, trunk and entry index, the network.
_AclEntry: TypeAlias = tuple[int, int, int, int, int, ipaddress.IPv4Network | ipaddress.IPv6Network]


class _Checker:
    def __init__(self, parts: Parts, source: Source, base_dir: FsPath):
        self.p = parts
        self.src = source
        self.base_dir = base_dir
        self.out: list[Diagnostic] = []

    def error(self, path: Path, message: str) -> None:
        self.out.append(self.src.diagnostic(path, message))

    def warn(self, path: Path, message: str) -> None:
        self.out.append(self.src.diagnostic(path, message, W))

    def run(self) -> list[Diagnostic]:
        self.duplicates()
        self.references()
        self.number_blocks()
        self.transports()
        self.trunk_rules()
        self.acl_overlaps()
        self.ports()
        self.network()
        self.tls()
        self.edge()
        self.webhooks()
        self.recording()
        self.transfers()
        self.literal_secrets()
        return self.out

    # -- names and references -------------------------------------------------------------------
    def _first_seen(self, items: dict[int, Any], section: str, key: str, label: str) -> None:
        first: dict[str, int] = {}
        for i, item in items.items():
            value = getattr(item, key)
            if value in first:
                line = self.src.locate((section, first[value], key))[0]
                self.error((section, i, key), f"duplicate {label} '{value}' (first defined on line {line})")
            else:
                first[value] = i

    def duplicates(self) -> None:
        self._first_seen(self.p.trunks, "trunks", "name", "trunk name")
        self._first_seen(self.p.numbers, "numbers", "number", "number")
        self._first_seen(self.p.agents, "agents", "name", "agent name")
        users: dict[str, int] = {}
        for i, trunk in self.p.trunks.items():
            digest = trunk.inbound.auth.digest if trunk.inbound else None
            if digest is None:
                continue
            if digest.username in users:
                other = self.p.trunks[users[digest.username]].name
                self.error(
                    ("trunks", i, "inbound", "auth", "digest", "username"),
                    f"digest user name '{digest.username}' is already used by trunk '{other}': "
                    "calls could not be told apart",
                )
            else:
                users[digest.username] = i

    def references(self) -> None:
        valid_trunks = {t.name: t for t in self.p.trunks.values()}
        known_trunks, known_agents = _known(self.p.declared_trunks), _known(self.p.declared_agents)
        for i, number in self.p.numbers.items():
            if number.trunk not in self.p.declared_trunks:
                self.error(("numbers", i, "trunk"), f"unknown trunk '{number.trunk}' (known trunks: {known_trunks})")
            elif number.trunk in valid_trunks and valid_trunks[number.trunk].inbound is None:
                self.error(
                    ("numbers", i, "trunk"),
                    f"trunk '{number.trunk}' has no inbound section, so no call can arrive for this number",
                )
            if number.agent not in self.p.declared_agents:
                self.error(("numbers", i, "agent"), f"unknown agent '{number.agent}' (known agents: {known_agents})")
            for k, rule in enumerate(number.rules):
                if rule.agent not in self.p.declared_agents:
                    self.error(
                        ("numbers", i, "rules", k, "agent"),
                        f"unknown agent '{rule.agent}' (known agents: {known_agents})",
                    )

    def number_blocks(self) -> None:
        """Blocks of numbers on one trunk that overlap with neither holding the other: which answers is unclear."""
        count = routing.blocks(self.p.numbers)
        if count > routing.MAX_BLOCKS:
            self.error(
                ("numbers",),
                f"{count:,} blocks of numbers (with x or digit sets): at most {routing.MAX_BLOCKS:,} are supported "
                "(exact numbers have their own, larger limit)",
            )
            return
        for i, j, shared in routing.ambiguous(self.p.numbers):
            later, earlier = self.p.numbers[i], self.p.numbers[j]
            line = self.src.locate(("numbers", j, "number"))[0]
            self.error(
                ("numbers", i, "number"),
                f"'{later.number}' overlaps '{earlier.number}' (numbers[{j}], line {line}) on trunk "
                f"'{later.trunk}': both hold {shared.text} and neither holds the other, so which one answers "
                "those calls is ambiguous; split the blocks so they do not overlap, or make one hold the other "
                "(the smaller block then wins)",
            )

    # -- transports -----------------------------------------------------------------------------
    def _public(self) -> tuple[Transports | None, Path]:
        """The transports carriers reach and their YAML path: the edge's when it has its own, else the top-level."""
        e = self.p.edge
        if e is not None and e.transports is not None:
            return e.transports, ("edge", "transports")
        return self.p.transports, ("transports",)

    def transports(self) -> None:
        t, where = self._public()
        if t is None:
            return
        if not t.enabled():
            self.error(where, "no SIP transport is enabled: add tcp, tls or udp")
        if t.udp is not None:
            self.warn(
                (*where, "udp"),
                "UDP signaling is for testing only: SIP messages larger than the MTU fragment or get dropped; "
                "use TCP or TLS in production",
            )
        if t.tls is not None:
            for i, message in tls_material.check_ciphers(t.tls.ciphers):
                self.error((*where, "tls", "ciphers", i), message)

    def trunk_rules(self) -> None:
        t, where = self._public()
        under = " under " + format_path(where)
        enabled = set(t.enabled()) if t else None
        fs_codecs = set(self.p.freeswitch.codecs) if self.p.freeswitch else None
        for i, trunk in self.p.trunks.items():
            base: Path = ("trunks", i)
            if trunk.inbound:
                inbound = trunk.inbound
                ib = (*base, "inbound")
                if enabled is not None:
                    for j, tr in enumerate(inbound.transports):
                        if tr not in enabled:
                            self.error((*ib, "transports", j), f"transport '{tr}' is not enabled{under}")
                if inbound.media_encryption == "required":
                    if inbound.transports == ["udp"]:
                        self.error(
                            (*ib, "media_encryption"),
                            "media encryption 'required' on a trunk that only allows UDP: SRTP keys would travel "
                            "in clear text SDP; allow tls",
                        )
                    elif "tls" not in inbound.transports:
                        self.warn(
                            (*ib, "media_encryption"),
                            "SRTP without TLS signaling: the SRTP keys travel in clear text SDP; allow tls",
                        )
                if inbound.accept_crypto_in_avp and inbound.media_encryption == "disabled":
                    self.error((*ib, "accept_crypto_in_avp"), _CRYPTO_IN_AVP)
                if inbound.remote_domains and "tls" not in inbound.transports:
                    self.error(
                        (*ib, "remote_domains"),
                        "remote_domains apply to TLS connections, but this trunk does not allow tls",
                    )
                if fs_codecs is not None and inbound.codecs is not None:
                    self._codec_subset((*ib, "codecs"), inbound.codecs, fs_codecs)
                seen: dict[str, int] = {}
                for j, mapping in enumerate(inbound.header_mappings()):
                    if mapping.variable_name in seen:
                        self.error(
                            (*ib, "headers", j),
                            f"variable '{mapping.variable_name}' is already filled by another header of this trunk",
                        )
                    seen.setdefault(mapping.variable_name, j)
            if trunk.outbound:
                ob = (*base, "outbound")
                out = trunk.outbound
                if enabled is not None and out.transport not in enabled:
                    self.error((*ob, "transport"), f"transport '{out.transport}' is not enabled{under}")
                if out.register_ and out.auth is None:
                    self.error((*ob, "register"), "registering needs credentials: add outbound.auth")
                if out.media_encryption == "required" and out.transport == "udp":
                    self.error(
                        (*ob, "media_encryption"),
                        "media encryption 'required' over UDP signaling sends SRTP keys in clear text; use tls",
                    )
                elif out.media_encryption == "required" and out.transport == "tcp":
                    self.warn(
                        (*ob, "media_encryption"), "SRTP over TCP signaling: keys travel in clear text SDP; use tls"
                    )
                if out.accept_crypto_in_avp and out.media_encryption == "disabled":
                    self.error((*ob, "accept_crypto_in_avp"), _CRYPTO_IN_AVP)
                if fs_codecs is not None and out.codecs is not None:
                    self._codec_subset((*ob, "codecs"), out.codecs, fs_codecs)

    def _edge_limits(self, nodes: int) -> None:
        """Behind an edge each node enforces ceil(limit / nodes) of a trunk's inbound limits: say when that is not
        the limit the file gives for the pool (docs/configuration.md#call-limits)."""
        for i, trunk in self.p.trunks.items():
            limits = trunk.inbound.limits if trunk.inbound is not None else None
            if limits is None:
                continue
            for key in ("max_calls", "calls_per_second"):
                value = getattr(limits, key)
                if value is not None and value % nodes:
                    share = -(-value // nodes)
                    self.warn(
                        ("trunks", i, "inbound", "limits", key),
                        f"{key} {value} over {nodes} nodes: each node admits {share} (FreeSWITCH counts per node), "
                        f"so the pool may take up to {share * nodes}; use a multiple of {nodes} to be exact",
                    )

    def _codec_subset(self, path: Path, codecs: Sequence[str], allowed: Collection[str]) -> None:
        for j, codec in enumerate(codecs):
            if codec not in allowed:
                self.error((*path, j), f"codec '{codec}' is not in freeswitch.codecs ({', '.join(sorted(allowed))})")

    def acl_overlaps(self) -> None:
        """Two trunks whose networks overlap on a shared transport could not be told apart.

        A sweep over networks sorted by first address, per transport: O(n log n), so thousands of
        trunks stay fast. Each offending entry is reported once, against an earlier overlapping one.
        """
        reported: set[tuple[int, int]] = set()
        for transport in ("tcp", "tls", "udp"):
            nets: list[_AclEntry] = []
            for i, trunk in self.p.trunks.items():
                if trunk.inbound and transport in trunk.inbound.transports:
                    for j, cidr in enumerate(trunk.inbound.auth.acl):
                        net = ipaddress.ip_network(cidr)
                        nets.append((net.version, int(net.network_address), int(net.broadcast_address), i, j, net))
            nets.sort(key=lambda n: (n[0], n[1], -n[2], n[3], n[4]))
            widest: _AclEntry | None = None  # the earlier network reaching furthest, per IP version
            for version, start, end, i, j, net in nets:
                # the earlier network this one overlaps, if any
                overlapping = widest if widest is not None and widest[0] == version and start <= widest[2] else None
                if overlapping is not None and overlapping[3] != i and (i, j) not in reported:
                    reported.add((i, j))
                    other = self.p.trunks[overlapping[3]].name
                    self.error(
                        ("trunks", i, "inbound", "auth", "acl", j),
                        f"{net} overlaps {overlapping[5]} of trunk '{other}' on {transport}: "
                        "calls from there could not be told apart",
                    )
                if widest is None or widest[0] != version or end > widest[2]:
                    widest = (version, start, end, i, j, net)

    # -- ports and addresses ----------------------------------------------------------------------
    def _listeners(self) -> list[_Listener]:
        """Every socket the deployment opens, in a fixed order (a clash is reported on the later one)."""
        fs, t, o = self.p.freeswitch, self.p.transports, self.p.orchestrator
        found: list[_Listener] = []
        if fs is not None and t is not None and self.p.edge is None:  # behind an edge: edge.nodes' ports
            bind = _ip(fs.bind_ip)
            for name, label in (("tcp", "SIP over TCP"), ("tls", "SIP over TLS"), ("udp", "SIP over UDP")):
                section = getattr(t, name)
                if section is not None:
                    proto = "udp" if name == "udp" else "tcp"
                    found.append(_Listener(label, ("transports", name, "port"), proto, bind, section.port))
            rtp = fs.rtp_ports
            found.append(_Listener("the RTP range", ("freeswitch", "rtp_ports"), "udp", bind, rtp.start, rtp.end))
        if fs is not None:
            esl = fs.event_socket
            found.append(
                _Listener(
                    "the event socket", ("freeswitch", "event_socket", "port"), "tcp", _ip(esl.listen_ip), esl.port
                )
            )
        if o is not None:
            api, media = o.api, o.media
            found.append(
                _Listener("the HTTP API", ("orchestrator", "api", "port"), "tcp", _ip(api.listen_ip), api.port)
            )
            found.append(
                _Listener(
                    "the media bridge", ("orchestrator", "media", "port"), "tcp", _ip(media.listen_ip), media.port
                )
            )
        return found

    def _where(self, listener: _Listener) -> str:
        dotted = format_path(listener.path)
        if listener.path in self.src.positions:
            return f"{dotted}, line {self.src.locate(listener.path)[0]}"
        return f"{dotted}, default"

    def ports(self) -> None:
        """Two sockets on the same protocol, overlapping addresses and overlapping ports cannot both bind."""
        listeners = self._listeners()
        written = self.src.positions
        for i, later in enumerate(listeners):
            earlier = next((e for e in listeners[:i] if later.clashes(e)), None)
            if earlier is None:
                continue
            # point at a setting that is written in the file when only one of them is
            this, other = (
                (earlier, later) if later.path not in written and earlier.path in written else (later, earlier)
            )
            self.error(
                this.path,
                f"{this.label}: {this.describe()} {'overlap' if this.last else 'is already taken by'} "
                f"{other.label}, {other.describe()} ({self._where(other)})",
            )
        fs = self.p.freeswitch
        if fs is not None:
            rtp = fs.rtp_ports
            calls = (rtp.end - rtp.start + 1) // 2
            if calls < fs.max_calls:
                self.warn(
                    ("freeswitch", "rtp_ports"),
                    f"RTP range {rtp.start}-{rtp.end} has room for {calls} calls, "
                    f"fewer than max_calls ({fs.max_calls})",
                )

    def network(self) -> None:
        fs = self.p.freeswitch
        if fs is None:
            return
        if self.p.edge is not None:
            self._edge_network(fs, self.p.edge)
            return
        bind = ipaddress.ip_address(fs.bind_ip)
        if bind.is_unspecified:
            self.error(("freeswitch", "bind_ip"), "bind to a specific address, not 0.0.0.0 / ::")
        if bind.is_private and not bind.is_loopback and not (fs.ext_sip_ip or fs.ext_rtp_ip):
            self.warn(
                ("freeswitch", "bind_ip"),
                f"{fs.bind_ip} is a private address and no ext_sip_ip/ext_rtp_ip is set: peers outside this "
                "network will get this address in SIP and SDP (one-way or no audio behind NAT)",
            )
        if bool(fs.ext_sip_ip) != bool(fs.ext_rtp_ip):
            missing = "ext_rtp_ip" if fs.ext_sip_ip else "ext_sip_ip"
            self.warn(("freeswitch", missing), f"{missing} is not set while the other external address is")
        esl = ipaddress.ip_address(fs.event_socket.listen_ip)
        if not esl.is_loopback:
            self.warn(
                ("freeswitch", "event_socket", "listen_ip"),
                "the event socket listens beyond loopback: whoever reaches it with the password controls every call",
            )

    def _edge_network(self, fs: FreeSwitch, e: Edge) -> None:
        """Behind an edge each node has its own addresses: freeswitch's external ones are not used."""
        for key in ("ext_sip_ip", "ext_rtp_ip"):
            if getattr(fs, key):
                self.warn(
                    ("freeswitch", key),
                    "not used behind an edge: each node's SDP carries its edge.nodes[].rtp_ip (or sip_ip)",
                )
        for i, node in enumerate(e.nodes):
            rtp = ipaddress.ip_address(node.rtp_address)
            if rtp.is_private and not rtp.is_loopback:
                self.warn(
                    ("edge", "nodes", i, "rtp_ip" if node.rtp_ip else "sip_ip"),
                    f"node '{node.name}' puts the private address {node.rtp_address} in its SDP: carriers outside "
                    "that network cannot send it RTP (set rtp_ip to the address they reach)",
                )

    # -- TLS ------------------------------------------------------------------------------------
    def tls(self) -> None:
        t, where = self._public()
        if t is None or t.tls is None:
            return
        if self.p.edge is not None and t.tls.min_version == "1.3":
            self.error(
                (*where, "tls", "min_version"),
                "Kamailio 5.6 (the edge) cannot be limited to TLS 1.3 alone: use 1.2 (TLS 1.2 and 1.3 are offered, "
                "with modern ciphers only)",
            )
        if self.p.edge is not None and (t.tls.certificate is None or t.tls.private_key is None):
            missing = "certificate" if t.tls.certificate is None else "private_key"
            self.error((*where, "tls", missing), f"TLS on the edge needs a {missing} (the edge presents it)")
            return
        try:
            material = tls_material.load(t.tls, self.base_dir)
        except tls_material.TlsMaterialError as exc:
            self.error((*where, "tls", exc.setting), exc.message)
            return
        for setting, message in material.warnings:
            self.warn((*where, "tls", setting), message)

    # -- the edge (docs/scaling.md) ---------------------------------------------------------------
    def edge(self) -> None:
        """What an edge in front of the nodes cannot do: nodes twice, clashing ports, TLS without a certificate,
        remote domains it cannot verify, a second list of nodes."""
        e = self.p.edge
        if e is None:
            return
        o = self.p.orchestrator
        if o is not None and o.nodes:
            self.error(
                ("orchestrator", "nodes"),
                "with an edge, the nodes are listed once, under edge.nodes (SIP address, weight and event socket)",
            )
        names: dict[str, int] = {}
        for i, node in enumerate(e.nodes):
            if node.name in names:
                line = self.src.locate(("edge", "nodes", names[node.name], "name"))[0]
                self.error(("edge", "nodes", i, "name"), f"node '{node.name}' is listed twice (first on line {line})")
            names.setdefault(node.name, i)
        self._edge_nodes(e)
        self._edge_trunks()
        if len(e.nodes) > 1:
            self._edge_limits(len(e.nodes))
        if e.transports is not None and ("transports",) in self.src.positions:
            self.error(
                ("transports",),
                "with edge.transports, leave out the top-level transports: the nodes listen only for the edge "
                "(edge.nodes[].sip_port)",
            )
        t, where = self._public()
        for i, trunk in self.p.trunks.items():
            ib = trunk.inbound
            if ib is None or not ib.remote_domains or t is None:
                continue
            if t.tls is not None and t.tls.ca_bundle is None:
                self.error(
                    ("trunks", i, "inbound", "remote_domains"),
                    "the edge checks remote domains on certificates it verified: set "
                    f"{format_path((*where, 'tls', 'ca_bundle'))} (the CAs that sign this trunk's certificates)",
                )

    def _edge_trunks(self) -> None:
        """What a node behind the edge cannot do for a trunk: register (the REGISTER would leave from the node,
        through the edge, with the node's Contact), or use the X-Sipagent- headers the edge sets and strips."""
        prefix = channelvars.EDGE_HEADER_PREFIX
        for i, trunk in self.p.trunks.items():
            if trunk.outbound is not None:
                ob = trunk.outbound
                if ob.register_:
                    self.error(
                        ("trunks", i, "outbound", "register"),
                        "registering is not supported behind an edge: the registration would come from a node "
                        "(its Contact, through the edge), not from the edge's address; ask the carrier for an "
                        "IP trunk to the edge's addresses",
                    )
                for name in ob.headers:
                    if channelvars.is_edge_header(name):
                        self.error(
                            ("trunks", i, "outbound", "headers", name),
                            f"{name}: headers starting with {prefix} are the edge's (the node names the trunk in "
                            f"{channelvars.TRUNK_HEADER}; the edge removes them before the carrier)",
                        )
            if trunk.inbound is not None:
                for j, mapping in enumerate(trunk.inbound.header_mappings()):
                    if channelvars.is_edge_header(mapping.header):
                        self.error(
                            ("trunks", i, "inbound", "headers", j),
                            f"{mapping.header}: headers starting with {prefix} are set by the edge (trunk, source), "
                            "never taken from a carrier, and not passed to agents",
                        )

    def _edge_nodes(self, e: Edge) -> None:
        sockets: dict[tuple[str, int], int] = {}
        for i, node in enumerate(e.nodes):
            esl = (node.esl_host.lower(), node.esl.port)
            if esl in sockets:
                self.error(
                    ("edge", "nodes", i, "esl", "port"),
                    f"node '{node.name}': event socket {node.esl_host}:{node.esl.port} is node "
                    f"'{e.nodes[sockets[esl]].name}''s too (give each node its own port)",
                )
            sockets.setdefault(esl, i)
        seen: dict[tuple[IpAddr, int], int] = {}
        public = [_ip(a) for a in e.addresses] + ([_ip(e.listen_ip)] if e.listen_ip else [])
        internal = _ip(e.internal_address)
        t = self._public()[0]
        edge_ports = [(t.port(tr), tr) for tr in t.enabled()] if t is not None else []
        for i, node in enumerate(e.nodes):
            key = (_ip(node.sip_ip), node.sip_port)
            if key in seen:
                self.error(
                    ("edge", "nodes", i, "sip_port"),
                    f"node '{node.name}': {node.sip_ip}:{node.sip_port} is node '{e.nodes[seen[key]].name}' too",
                )
            seen.setdefault(key, i)
            addr = key[0]
            if (addr == internal or addr.is_unspecified) and node.sip_port == e.internal_port:
                self.error(
                    ("edge", "nodes", i, "sip_port"),
                    f"node '{node.name}': {node.sip_ip}:{node.sip_port} is the edge's internal port "
                    f"(edge.internal_port {e.internal_port} on {e.internal_address})",
                )
            for port, tr in edge_ports:
                if port == node.sip_port and (addr in public or addr.is_unspecified):
                    self.error(
                        ("edge", "nodes", i, "sip_port"),
                        f"node '{node.name}': {node.sip_ip}:{node.sip_port} clashes with the edge's {tr.upper()} "
                        f"port on the same address",
                    )
        fs = self.p.freeswitch
        if fs is not None:
            ranges: list[tuple[IpAddr, int, int, int]] = []
            for i, node in enumerate(e.nodes):
                rtp = node.rtp_ports or fs.rtp_ports
                addr = _ip(node.sip_ip)
                other = next((r for r in ranges if r[0] == addr and rtp.start <= r[2] and r[1] <= rtp.end), None)
                if other is not None:
                    self.error(
                        ("edge", "nodes", i, "rtp_ports"),
                        f"node '{node.name}': RTP ports {rtp.start}-{rtp.end} on {node.sip_ip} overlap node "
                        f"'{e.nodes[other[3]].name}''s: nodes on one address need their own rtp_ports",
                    )
                ranges.append((addr, rtp.start, rtp.end, i))
        for port, tr in edge_ports:
            if port == e.internal_port and internal in public and tr != "udp":
                self.error(
                    ("edge", "internal_port"),
                    f"edge.internal_port {e.internal_port} is the edge's {tr.upper()} port on the same address: "
                    "carriers and nodes would share one socket (give the nodes their own port)",
                )

    # -- webhooks -------------------------------------------------------------------------------
    def webhooks(self) -> None:
        o = self.p.orchestrator
        if o is None or not o.webhooks:
            return
        if not o.records or records_kind(o.records) == "jsonl":
            self.error(
                ("orchestrator", "webhooks"),
                "webhooks are delivered from an outbox in the call store: set orchestrator.records to an SQLite "
                "file (calls.db) or a postgresql:// URL",
            )
        known = _known(self.p.declared_agents)
        for i, hook in enumerate(o.webhooks):
            for j, agent in enumerate(hook.agents or ()):
                if agent not in self.p.declared_agents:
                    self.error(
                        ("orchestrator", "webhooks", i, "agents", j), f"unknown agent '{agent}' (known agents: {known})"
                    )

    # -- call recording -------------------------------------------------------------------------
    def recording(self) -> None:
        """A recording policy other than off needs the directory; what the orchestrator can see, it checks."""
        o = self.p.orchestrator
        settings = o.recording if o is not None else None
        wanted: list[tuple[Path, str]] = []
        if settings is not None and settings.policy != "off":
            wanted.append((("orchestrator", "recording", "policy"), settings.policy))
        for section, items in (("trunks", self.p.trunks), ("numbers", self.p.numbers), ("agents", self.p.agents)):
            for i, item in items.items():
                policy = getattr(item, "recording", None)
                if policy is not None and policy != "off":
                    wanted.append(((section, i, "recording"), policy))
        if settings is None:
            return
        if settings.directory is None:
            for path, policy in wanted:
                self.error(path, f"recording '{policy}' needs orchestrator.recording.directory (where the files go)")
            return
        if not settings.local_files:
            return
        self._recording_directory(settings.directory)
        prompt = settings.announcement
        if prompt is not None and prompt.startswith("/"):
            where: Path = ("orchestrator", "recording", "announcement")
            try:
                info = os.stat(prompt)
            except OSError as exc:
                self.error(where, f"the announcement {quote(prompt)} cannot be read: {exc.strerror or exc}")
                return
            if not stat.S_ISREG(info.st_mode):
                self.error(where, f"the announcement {quote(prompt)} is not a regular file")
            elif not os.access(prompt, os.R_OK):
                self.error(where, f"the announcement {quote(prompt)} is not readable")

    def _recording_directory(self, directory: str) -> None:
        where: Path = ("orchestrator", "recording", "directory")
        try:
            info = os.stat(directory)
        except FileNotFoundError:
            parent = os.path.dirname(directory) or "/"
            if not os.path.isdir(parent):
                self.error(where, f"neither {quote(directory)} nor its parent directory exists")
            return  # the orchestrator creates it (0700) when it starts
        except OSError as exc:
            self.error(where, f"{quote(directory)} cannot be read: {exc.strerror or exc}")
            return
        if not stat.S_ISDIR(info.st_mode):
            self.error(where, f"{quote(directory)} is not a directory")
        elif info.st_mode & 0o077:
            self.warn(
                where,
                f"{quote(directory)} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}): "
                f"chmod 700 it, so nobody can open a recording before it is made 0600",
            )

    # -- transfers ------------------------------------------------------------------------------
    def transfers(self) -> None:
        """An attended transfer's header is not the edge's; its longest attempt fits every agent's transfer time."""
        o = self.p.orchestrator
        if o is None:
            return
        attended = o.transfers.attended
        where: Path = ("orchestrator", "transfers", "attended")
        if attended.brief_header is not None and channelvars.is_edge_header(attended.brief_header):
            self.error(
                (*where, "brief_header"),
                f"{quote(attended.brief_header)}: {channelvars.EDGE_HEADER_PREFIX}* headers are reserved for the edge",
            )
        longest = attended.ring_timeout_seconds + (attended.brief_timeout_seconds if attended.announcement else 0)
        for i, agent in self.p.agents.items():
            if agent.transfer_timeout_seconds <= longest:
                self.warn(
                    ("agents", i, "transfer_timeout_seconds"),
                    f"an attended transfer may take {longest} s (orchestrator.transfers.attended: ring and brief "
                    f"time-outs) but agent '{agent.name}' gives transfers {agent.transfer_timeout_seconds:g} s: it "
                    "would be told 'no outcome' while the target still rings",
                )

    # -- secrets --------------------------------------------------------------------------------
    def literal_secrets(self) -> None:
        sections: list[tuple[Path, Any]] = [(("freeswitch",), self.p.freeswitch), (("transports",), self.p.transports)]
        sections += [(("trunks", i), t) for i, t in self.p.trunks.items()]
        sections += [(("agents", i), a) for i, a in self.p.agents.items()]
        sections.append((("orchestrator",), self.p.orchestrator))
        sections.append((("edge",), self.p.edge))
        for base, model in sections:
            if model is None:
                continue
            for path, _ in secrets(model, base):
                if path not in self.src.from_env and path in self.src.positions:
                    self.warn(path, "secret written in the file: take it from the environment with ${VAR}")


def _known(names: set[str], shown: int = 10) -> str:
    """Up to ``shown`` names for a message (names of invalid entries may be anything: quoted, shortened)."""
    if not names:
        return "none defined"
    first = sorted(names)[:shown]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(quote(n, 40) for n in first) + more


def secrets(model: Any, base: Path = ()) -> Iterator[tuple[Path, SecretStr]]:
    """Every secret value in a validated model, with its YAML path."""
    if isinstance(model, SecretStr):
        yield base, model
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            yield from secrets(getattr(model, name), (*base, name))
    elif isinstance(model, dict):
        for k, v in model.items():
            yield from secrets(v, (*base, k))
    elif isinstance(model, (list, tuple)):
        for i, v in enumerate(model):
            yield from secrets(v, (*base, i))


def check(parts: Parts, source: Source, base_dir: FsPath) -> list[Diagnostic]:
    """All cross-section findings for ``parts``."""
    return _Checker(parts, source, base_dir).run()
