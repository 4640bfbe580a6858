"""What FreeSWITCH needs, derived from a deployment: profiles, ACL lists, gateways, users, contexts.

Templates only print this plan; every decision about FreeSWITCH parameters is made here, so it can
be tested without rendering. Names used in FreeSWITCH:

* SIP profile per enabled transport: ``tcp``, ``tls``, ``udp``.
* ACL list per trunk with networks: ``trunk-<name>``; ``esl`` for the event socket; ``localnet``.
* Gateway per outbound trunk: ``<trunk name>`` (dial ``sofia/gateway/<trunk>/<number>``).
* Dialplan context per inbound trunk: ``trunk-<name>``; ``reject`` catches everything else.
* Directory domain per profile with digest trunks: ``trunks-<transport>``.

Behind an edge (``deployment.edge``) each node gets its own plan (:func:`build` with ``node``): one SIP
profile ``edge`` (TCP on the node's ``sip_ip:sip_port``) that admits only the edge's internal address, into
the context ``edge``; that context trusts the edge's ``X-Sipagent-Trunk`` header (the edge authenticated the
carrier and strips the header from outside input) and transfers the call to ``trunk-<name>``, unchanged from
a single node. No digest users on nodes (the edge challenges). Gateways send through the edge (sofia's
``outbound-proxy``) with ``X-Sipagent-Trunk: <name>``; the Request-URI names the carrier.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from orchestrator import channelvars
from orchestrator.config import routing, tls_material
from orchestrator.config.model import Deployment, Edge, EdgeNode, FreeSwitch, Number, RtpPorts, Trunk
from orchestrator.config.types import Transport

#: ``rtp_secure_media`` value for each media encryption setting.
SRTP_MODES = {"required": "mandatory", "allowed": "optional", "disabled": "forbidden"}
#: Channel variable that lets FreeSWITCH take SDES keys (a=crypto) in an RTP/AVP media line
#: (switch_core_media.c refuses them otherwise: "a=crypto in RTP/AVP, refer to rfc3711").
CRYPTO_IN_AVP = "rtp_allow_crypto_in_avp"
#: ``tls-verify-policy`` for each ``verify_peer`` setting (subject checks added when names are given).
VERIFY_POLICY = {"none": "none", "outgoing": "out", "incoming": "in", "all": "all"}
HANDOFF_CAUSE = "NORMAL_TEMPORARY_FAILURE"  # 503: the carrier may try another route
REJECT_CONTEXT = "reject"
#: Behind an edge: the node's one SIP profile, the ACL list holding the edge's address, the context it feeds.
EDGE_PROFILE = "edge"
EDGE_ACL = "edge"
EDGE_CONTEXT = "edge"
#: the empty list a node's ``local-network-acl`` names: its only SIP peer (the edge) is never "local", so an
#: ext-rtp-ip always goes into its SDP (switch_core_media_check_nat decides by the signalling peer)
NO_LOCAL_NETWORK = "nowhere-local"
#: headers the edge adds to what it relays to a node (and strips from outside input)
TRUNK_HEADER = channelvars.TRUNK_HEADER
SOURCE_HEADER = channelvars.SOURCE_HEADER
#: destination numbers the edge context hands on (``transfer`` splits its argument at blanks and quotes;
#: anything else is no number a route could match, refused as unknown)
EDGE_NUMBER_PATTERN = "^([0-9A-Za-z+*#._-]{1,64})$"
LOG_LEVELS = ["debug", "info", "notice", "warning", "err", "crit", "alert"]
#: mod_hash ``limit`` realms: calls up at once, and new calls in a one-second window, per trunk (the key is
#: ``<realm>_<trunk>``: one count per trunk on a node)
LIMIT_CALLS_REALM = "sipagent_calls"
LIMIT_RATE_REALM = "sipagent_cps"
#: the cause ``limit`` hangs a call over a limit up with (its ``!CAUSE`` form): mod_sofia answers the INVITE 503,
#: with the ``sip_rh_*`` variables as headers (sofia_on_hangup)
LIMIT_CAUSE = "NORMAL_TEMPORARY_FAILURE"
RETRY_AFTER_VARIABLE = "sip_rh_Retry-After"
#: behind an edge, a limit refusal says so to the edge (kamailio.cfg.j2 keeps the node up and tries the next)
EDGE_REFUSED_VARIABLE = "sip_rh_X-Sipagent-Refused"


@dataclass(frozen=True)
class AclList:
    """A network list in acl.conf."""

    name: str
    allow: tuple[str, ...]
    comment: str = ""
    default: str = "deny"


@dataclass(frozen=True)
class Gateway:
    """An outbound trunk as a sofia gateway."""

    name: str
    proxy: str
    transport: str
    register: bool
    username: str
    password: SecretStr | None
    realm: str | None
    from_domain: str | None
    ping_seconds: int
    variables: tuple[tuple[str, str], ...]
    #: next hop for every request (sofia ``outbound-proxy``): behind an edge, the edge's internal address
    outbound_proxy: str | None = None


@dataclass(frozen=True)
class TlsSettings:
    """TLS parameters of the ``tls`` profile."""

    version: str
    ciphers: str
    verify_policy: str
    verify_depth: int
    verify_in_subjects: tuple[str, ...]
    passphrase: SecretStr | None


@dataclass(frozen=True)
class Profile:
    """A sofia SIP profile: one transport on one address and port."""

    name: str
    transport: str
    port: int
    inbound_acls: tuple[tuple[str, str], ...]
    auth_calls: bool
    directory_domain: str | None
    gateways: tuple[Gateway, ...]
    tls: TlsSettings | None
    #: ``apply-nat-acl`` (None on a node behind an edge: the edge is no NATed client)
    nat_acl: str | None = "nat.auto"


@dataclass(frozen=True)
class DirectoryUser:
    """A digest-authenticated inbound trunk: its credentials and where its calls go."""

    username: str
    a1_hash: SecretStr
    auth_acl: str | None
    context: str
    trunk: str


@dataclass(frozen=True)
class DirectoryDomain:
    """Users allowed to authenticate on one profile."""

    name: str
    users: tuple[DirectoryUser, ...]


@dataclass(frozen=True)
class Route:
    """A number or block in a trunk's context (in precedence order: :meth:`routing.Table.ordered`)."""

    #: the ``numbers[]`` entry as validated (``+15557650042``, ``+1555765xxxx``): extension name, ``sipagent_route``
    number: str
    #: the ``destination_number`` regex (built from digit sets only: numbering.NumberPattern.regex)
    pattern: str
    agent: str
    #: what ``sipagent_number`` is set to: the number itself, or for a block ``+$1`` (the digits the regex captured)
    called: str


@dataclass(frozen=True)
class TrunkContext:
    """The dialplan context an inbound trunk's calls enter."""

    name: str
    trunk: str
    require_crypto: bool
    variables: tuple[tuple[str, str], ...]
    routes: tuple[Route, ...]
    #: ``(application, data)`` run in each route before ``park``: the trunk's inbound limits (mod_hash ``limit``)
    limits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class EventSocketSettings:
    """mod_event_socket: where it listens, with which password."""

    listen_ip: str
    port: int
    password: SecretStr


@dataclass(frozen=True)
class EdgeRoute:
    """An extension of the ``edge`` context: calls the edge says are a trunk's go to that trunk's context."""

    trunk: str
    pattern: str
    context: str


@dataclass(frozen=True)
class EdgeContext:
    """The context calls from the edge enter (the ``edge`` profile's ACL pass context)."""

    name: str
    trunk_variable: str
    number_pattern: str
    variables: tuple[tuple[str, str], ...]
    #: the edge's header variables, unset before the transfer: sofia copies every ``sip_h_*`` of a call onto
    #: the legs it bridges to (mod_sofia.c, sip_copy_custom_headers), where the A leg's trunk header would
    #: override the gateway's and send a bridged transfer to the wrong carrier
    cleared: tuple[str, ...]
    routes: tuple[EdgeRoute, ...]


@dataclass(frozen=True)
class Plan:
    """Everything the templates print."""

    deployment: Deployment
    sip_domain: str
    codec_prefs: str
    local_network_acl: str
    acls: tuple[AclList, ...]
    profiles: tuple[Profile, ...]
    directory: tuple[DirectoryDomain, ...]
    contexts: tuple[TrunkContext, ...]
    tls_material: tls_material.TlsMaterial | None
    esl_acl: str
    handoff: str
    #: sip-ip / rtp-ip of every profile, and the external addresses (None: not written)
    sip_ip: str
    ext_sip_ip: str | None
    ext_rtp_ip: str | None
    event_socket: EventSocketSettings

    reject_context: str = REJECT_CONTEXT
    #: behind an edge: the node this plan is for, and the context the edge's calls enter
    node: EdgeNode | None = None
    edge_context: EdgeContext | None = None

    @property
    def rtp_ports(self) -> RtpPorts:
        """The RTP range this node allocates from (a node behind the edge may have its own)."""
        if self.node is not None and self.node.rtp_ports is not None:
            return self.node.rtp_ports
        return self.deployment.freeswitch.rtp_ports

    @property
    def fs(self) -> FreeSwitch:
        """The deployment's freeswitch section."""
        return self.deployment.freeswitch

    @property
    def dtmf_type(self) -> str:
        """The profiles' ``dtmf-type``: ``freeswitch.dtmf.mode`` in sofia's words (inband: ``none``)."""
        return DTMF_TYPES[self.fs.dtmf.mode]

    @property
    def needs_hash(self) -> bool:
        """mod_hash is loaded when some trunk's inbound calls are limited (its ``limit hash`` backend counts them)."""
        return any(c.limits for c in self.contexts)

    @property
    def needs_avmd(self) -> bool:
        """mod_avmd is loaded when some trunk, agent or the orchestrator sets answering-machine detection that
        listens for beeps (the orchestrator starts it only on nodes where ``module_exists mod_avmd``)."""
        d = self.deployment
        levels = [d.orchestrator.machine_detection]
        levels += [t.outbound.machine_detection for t in d.trunks if t.outbound is not None]
        levels += [a.machine_detection for a in d.agents]
        return any(level is not None and level.beep for level in levels)

    @property
    def log_levels(self) -> list[str]:
        """Levels the log file records: the configured one and everything more severe."""
        return LOG_LEVELS[LOG_LEVELS.index(self.fs.log_level) :]


def context_name(trunk: str) -> str:
    """Dialplan context of an inbound trunk."""
    return f"trunk-{trunk}"


def acl_name(trunk: str) -> str:
    """ACL list of a trunk's networks."""
    return f"trunk-{trunk}"


def a1_hash(username: str, realm: str, password: SecretStr) -> SecretStr:
    """HA1 of RFC 2617 digest (``md5(user:realm:password)``), so the password itself is never written."""
    digest = hashlib.md5(f"{username}:{realm}:{password.get_secret_value()}".encode(), usedforsecurity=False)
    return SecretStr(digest.hexdigest())


def _codec_string(codecs: Sequence[str]) -> str:
    return ",".join(codecs)


def _host(address: str) -> str:
    """An address as the host part of a SIP URI (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


def _gateway(trunk: Trunk, deployment: Deployment, edge: Edge | None = None) -> Gateway:
    """A trunk's gateway; behind ``edge``, one that reaches the carrier through the edge.

    sofia (mod_sofia.c sofia_outgoing_channel) builds the Request-URI from ``proxy`` and sends to
    ``outbound-proxy`` when given (``sip_route_uri``, the next hop, no Route header): so behind an edge,
    ``proxy`` stays the carrier (the R-URI names it; sofia adds ``;transport=tcp``, which the edge replaces
    with the trunk's transport) and the edge is the outbound proxy. ``from-domain`` names the carrier too
    (the From would otherwise carry the node's address). No OPTIONS through the edge: it answers them itself.
    """
    out = trunk.outbound
    assert out is not None
    try:
        is_ip = bool(ipaddress.ip_address(out.address))
    except ValueError:
        is_ip = False
    host = _host(out.address)
    # a host name without a port leaves room for DNS SRV (RFC 3263); an IP always gets one
    port = out.port or (out.effective_port if is_ip else None)
    proxy = f"{host}:{port}" if port else host
    if edge is None:
        proxy += f";transport={out.transport}"
    variables: list[tuple[str, str]] = [
        (channelvars.TRUNK, trunk.name),
        ("rtp_secure_media_outbound", SRTP_MODES[out.media_encryption]),
        ("absolute_codec_string", _codec_string(out.codecs or deployment.freeswitch.codecs)),
    ]
    variables += media_timeouts(trunk, deployment)
    variables += dtmf_variables(trunk, deployment.freeswitch)
    if out.accept_crypto_in_avp:
        variables.append((CRYPTO_IN_AVP, "true"))
    if out.caller_id:
        variables.append((channelvars.DEFAULT_CALLER_ID, out.caller_id))
    variables += [(f"sip_h_{name}", value) for name, value in out.headers.items()]
    if edge is not None:
        variables.append((f"sip_h_{TRUNK_HEADER}", trunk.name))
    return Gateway(
        name=trunk.name,
        proxy=proxy,
        transport=out.transport if edge is None else "tcp",
        register=out.register_ if edge is None else False,
        username=out.auth.username if out.auth else "sipagent",
        password=out.auth.password if out.auth else None,
        realm=out.auth.realm if out.auth else None,
        from_domain=out.from_domain if edge is None else out.from_domain or out.address,
        ping_seconds=out.ping_seconds if edge is None else 0,
        variables=tuple(variables),
        outbound_proxy=None if edge is None else f"{_host(edge.internal_address)}:{edge.internal_port};transport=tcp",
    )


def _tls_settings(deployment: Deployment, subjects: tuple[str, ...]) -> TlsSettings:
    tls = deployment.transports.tls
    assert tls is not None
    versions = "tlsv1.2,tlsv1.3" if tls.min_version == "1.2" else "tlsv1.3"
    policy = VERIFY_POLICY[tls.verify_peer]
    if subjects and tls.verify_peer in ("incoming", "all"):
        policy = "subjects_in" if tls.verify_peer == "incoming" else "out|subjects_in"
    return TlsSettings(
        version=versions,
        ciphers=":".join(tls.ciphers),
        verify_policy=policy,
        verify_depth=tls.verify_depth,
        verify_in_subjects=subjects if "subjects_in" in policy else (),
        passphrase=tls.private_key_passphrase,
    )


def _acls(deployment: Deployment) -> list[AclList]:
    """The event socket's list, the local networks (if given) and each inbound trunk's networks."""
    fs = deployment.freeswitch
    acls: list[AclList] = [
        AclList("esl", tuple(["127.0.0.0/8", "::1/128", *fs.event_socket.allow]), "event socket clients"),
    ]
    if fs.local_networks:
        acls.append(AclList("localnet", tuple(fs.local_networks), "reached without the external address"))
    for trunk in deployment.trunks:
        if trunk.inbound and trunk.inbound.auth.acl:
            acls.append(AclList(acl_name(trunk.name), tuple(trunk.inbound.auth.acl), f"trunk {trunk.name}"))
    return acls


def _profile(deployment: Deployment, transport: Transport) -> tuple[Profile, DirectoryDomain | None]:
    """A transport's SIP profile: the inbound trunks it admits (by ACL, or as digest users of its directory
    domain), its gateways and TLS settings; and that directory domain if it has users."""
    sip_domain = deployment.sip_domain
    inbound_acls: list[tuple[str, str]] = []
    users: list[DirectoryUser] = []
    subjects: list[str] = []
    domain = f"trunks-{transport}"
    for trunk in deployment.trunks:
        inbound = trunk.inbound
        if inbound is None or transport not in inbound.transports:
            continue
        auth = inbound.auth
        if auth.digest is not None:
            users.append(
                DirectoryUser(
                    username=auth.digest.username,
                    a1_hash=a1_hash(auth.digest.username, sip_domain, auth.digest.password),
                    auth_acl=acl_name(trunk.name) if auth.acl else None,
                    context=context_name(trunk.name),
                    trunk=trunk.name,
                )
            )
        elif auth.acl:
            inbound_acls.append((acl_name(trunk.name), context_name(trunk.name)))
        subjects += [d for d in inbound.remote_domains if d not in subjects]
    gateways = tuple(
        _gateway(t, deployment) for t in deployment.trunks if t.outbound and t.outbound.transport == transport
    )
    profile = Profile(
        name=transport,
        transport=transport,
        port=deployment.transports.port(transport),
        inbound_acls=tuple(inbound_acls),
        auth_calls=bool(users),
        directory_domain=domain if users else None,
        gateways=gateways,
        tls=_tls_settings(deployment, tuple(subjects)) if transport == "tls" else None,
    )
    return profile, DirectoryDomain(domain, tuple(users)) if users else None


#: FreeSWITCH's own dead-media timeout, as a multiple of the trunk's, while the orchestrator applies it
#: (calls/deadmedia.py; check_media_timeout_params: a media_hold_timeout left unset is 10 x media_timeout)
BACKSTOP_FACTOR = 10


def media_timeouts(trunk: Trunk, deployment: Deployment) -> list[tuple[str, str]]:
    """The channel variable of a trunk's dead-media timeout: ``media_timeout`` in milliseconds (switch_core_media.c
    check_media_timeout_params reads it whenever the RTP session is (re)activated); none when it is off.

    No ``media_hold_timeout``: FreeSWITCH 1.10.12 switches to it in switch_core_media_toggle_hold, but the same
    re-INVITE then runs switch_core_media_activate_rtp, whose check_media_timeout_params sets ``media_timeout``
    again -- measured on the real switch (tests/integration/test_limits_live.py): a held call without RTP times out
    after ``media_timeout``, whatever the hold timeout says. So while live quality sampling runs, the orchestrator
    applies the timeout outside holds (calls/deadmedia.py) and FreeSWITCH keeps only a backstop of
    ``BACKSTOP_FACTOR`` times it."""
    fs = deployment.freeswitch
    seconds = fs.media_timeout_seconds if trunk.media_timeout_seconds is None else trunk.media_timeout_seconds
    if not seconds:
        return []
    if deployment.orchestrator.quality.sample_seconds:
        seconds *= BACKSTOP_FACTOR
    return [("media_timeout", str(seconds * 1000))]


#: sofia's ``dtmf-type`` (profile parameter and ``dtmf_type`` channel variable) for each ``dtmf.mode``
DTMF_TYPES = {"rfc2833": "rfc2833", "info": "info", "inband": "none"}
#: inband DTMF: the tone detector (mod_dptools start_dtmf: switch_ivr_inband_dtmf_session, a read bug) and the tone
#: generator (``start_dtmf_generate write``: a write bug whose send-DTMF hook turns uuid_send_dtmf digits into tones;
#: without ``write`` it hooks the *received* digits and swallows them), run at the answer by ``execute_on_answer*``
#: (switch_channel_execute_on matches the prefix): both pre-answer a channel they run on earlier, and the generator
#: needs the codec
INBAND_APPS = (("execute_on_answer_sipagent_dtmf_detect", "start_dtmf"),
               ("execute_on_answer_sipagent_dtmf_generate", "start_dtmf_generate write"))  # fmt: skip


def dtmf_variables(trunk: Trunk, fs: FreeSwitch) -> list[tuple[str, str]]:
    """The channel variables of a trunk's DTMF mode, when it differs from the profile's (``freeswitch.dtmf.mode``).

    ``dtmf_type`` is read at each SDP negotiation (switch_core_media_negotiate_sdp → check_dtmf_type), which keeps a
    set ``info``/``none`` even when the far end offers telephone-events (only ``rfc2833``/auto adopt them, and our
    SDP then offers none: switch_core_media_gen_local_sdp). An SDP without telephone-events otherwise turns a
    channel to SIP INFO (``rtp_info_when_no_2833``, default on): inband keeps ``none`` with it off. Received SIP INFO
    digits are taken on every trunk (the profile's ``liberal-dtmf``: sofia_handle_sip_i_info)."""
    mode = trunk.dtmf.mode if trunk.dtmf is not None else fs.dtmf.mode
    variables: list[tuple[str, str]] = []
    if mode != fs.dtmf.mode:
        variables.append(("dtmf_type", DTMF_TYPES[mode]))
    if mode == "inband":
        variables.append(("rtp_info_when_no_2833", "false"))
        variables += INBAND_APPS
    return variables


def node_share(total: int, nodes: int) -> int:
    """A pool-wide limit as each node enforces it: ``ceil(total / nodes)`` (mod_hash counts per node)."""
    return -(-total // max(nodes, 1))


def limit_actions(trunk: Trunk, nodes: int = 1, edge: bool = False) -> tuple[tuple[str, str], ...]:
    """The dialplan steps that enforce a trunk's inbound limits with FreeSWITCH's ``limit`` (mod_hash backend).

    ``limit hash <realm> <trunk> <max>[/1] !CAUSE`` counts the call (a concurrent count is released when the call
    hangs up) and, over the limit, hangs it up with CAUSE: mod_sofia answers 503 with every ``sip_rh_*`` variable
    as a header, hence Retry-After. ``sipagent_refused``/``sipagent_limit`` say why for the record; all three are
    unset once the call is through, so no later response carries them. Behind an edge each of ``nodes`` enforces
    its share (:func:`node_share`), and the 503 also carries ``X-Sipagent-Refused: limit``
    (:data:`EDGE_REFUSED_VARIABLE`): the edge then knows the node is healthy, tries another node and, when every
    node refuses, relays the 503 with the node's Retry-After (templates/kamailio/kamailio.cfg.j2).
    """
    inbound = trunk.inbound
    limits = inbound.limits if inbound is not None else None
    if limits is None:
        return ()
    refused, which = channelvars.REFUSED, channelvars.LIMIT
    steps: list[tuple[str, str]] = [
        ("set", f"{refused}=limit_exceeded"),
        ("set", f"{RETRY_AFTER_VARIABLE}={limits.retry_after_seconds}"),
    ]
    if edge:
        steps.append(("set", f"{EDGE_REFUSED_VARIABLE}=limit"))
    if limits.max_calls is not None:
        steps += [
            ("set", f"{which}=max_calls"),
            ("limit", f"hash {LIMIT_CALLS_REALM} {trunk.name} {node_share(limits.max_calls, nodes)} !{LIMIT_CAUSE}"),
        ]
    if limits.calls_per_second is not None:
        rate = node_share(limits.calls_per_second, nodes)
        steps += [
            ("set", f"{which}=calls_per_second"),
            ("limit", f"hash {LIMIT_RATE_REALM} {trunk.name} {rate}/1 !{LIMIT_CAUSE}"),
        ]
    steps += [("unset", which), ("unset", RETRY_AFTER_VARIABLE), ("unset", refused)]
    if edge:
        steps.append(("unset", EDGE_REFUSED_VARIABLE))
    return tuple(steps)


def _route(number: Number) -> Route:
    """A number's route: exact numbers match their digits; a block its regex, the number's digits captured.

    Only the entry's own agent is written: routing rules (caller ID, time of day) are decided by the call tracker
    when it claims the parked call, with the same function ``sipagent route`` explains (config/routing.py)."""
    pattern = number.pattern
    if pattern.exact:
        return Route(number.number, "^\\+?" + re.escape(number.number[1:]) + "$", number.agent, number.number)
    return Route(number.number, pattern.regex(), number.agent, "+$1")


def _contexts(deployment: Deployment) -> list[TrunkContext]:
    """Each inbound trunk's dialplan context: its media policy and a route per number or block, the most
    specific first (FreeSWITCH runs the first extension that matches)."""
    fs = deployment.freeswitch
    nodes = len(deployment.edge.nodes) if deployment.edge is not None else 1
    table = routing.table(deployment)
    contexts: list[TrunkContext] = []
    for trunk in deployment.trunks:
        inbound = trunk.inbound
        if inbound is None:
            continue
        variables: list[tuple[str, str]] = [
            (channelvars.TRUNK, trunk.name),
            ("rtp_secure_media_inbound", SRTP_MODES[inbound.media_encryption]),
            ("absolute_codec_string", _codec_string(inbound.codecs or fs.codecs)),
        ]
        variables += media_timeouts(trunk, deployment)
        variables += dtmf_variables(trunk, fs)
        if inbound.accept_crypto_in_avp:
            variables.append((CRYPTO_IN_AVP, "true"))
        routes = tuple(_route(entry.number) for entry in table.ordered(trunk.name))
        contexts.append(
            TrunkContext(
                name=context_name(trunk.name),
                trunk=trunk.name,
                require_crypto=inbound.media_encryption == "required",
                variables=tuple(variables),
                routes=routes,
                limits=limit_actions(trunk, nodes, edge=deployment.edge is not None),
            )
        )
    return contexts


def build(deployment: Deployment, base_dir: Path, node: EdgeNode | str | None = None) -> Plan:
    """Derive the FreeSWITCH plan. Reads the TLS files (they are copied into the rendered tree).

    Behind an edge, ``node`` (an entry of ``edge.nodes`` or its name) picks the node the plan is for;
    without an edge there is one node and ``node`` must be None.
    """
    if deployment.edge is not None:
        if node is None:
            raise ValueError("behind an edge every node has its own configuration: name the node")
        return _node_plan(deployment, deployment.edge, _find_node(deployment.edge, node))
    if node is not None:
        raise ValueError("a node was named, but the deployment has no edge")
    fs = deployment.freeswitch
    acls = _acls(deployment)
    profiles: list[Profile] = []
    directory: list[DirectoryDomain] = []
    for transport in deployment.transports.enabled():
        profile, domain = _profile(deployment, transport)
        profiles.append(profile)
        if domain is not None:
            directory.append(domain)
    if any(not p.inbound_acls and not p.auth_calls for p in profiles):
        acls.append(AclList("deny-all", (), "profiles no inbound trunk may use"))
    material = None
    if deployment.transports.tls is not None:
        material = tls_material.load(deployment.transports.tls, base_dir)
    esl = fs.event_socket
    return Plan(
        deployment=deployment,
        sip_domain=deployment.sip_domain,
        codec_prefs=_codec_string(fs.codecs),
        local_network_acl="localnet" if fs.local_networks else "localnet.auto",
        acls=tuple(acls),
        profiles=tuple(profiles),
        directory=tuple(directory),
        contexts=tuple(_contexts(deployment)),
        tls_material=material,
        esl_acl="esl",
        handoff=_handoff(fs),
        sip_ip=fs.bind_ip,
        ext_sip_ip=fs.ext_sip_ip,
        ext_rtp_ip=fs.ext_rtp_ip,
        event_socket=EventSocketSettings(esl.listen_ip, esl.port, esl.password),
    )


def _handoff(fs: FreeSwitch) -> str:
    return f"{fs.handoff_timeout_seconds}:{HANDOFF_CAUSE}" if fs.handoff_timeout_seconds else ""


def _find_node(edge: Edge, node: EdgeNode | str) -> EdgeNode:
    name = node if isinstance(node, str) else node.name
    for candidate in edge.nodes:
        if candidate.name == name:
            return candidate
    raise ValueError(f"no node {name!r} under edge.nodes")


def _single_host(address: str) -> str:
    """An address as a one-host ACL network."""
    return f"{address}/{128 if ':' in address else 32}"


def esl_listen_ip(deployment: Deployment, node: EdgeNode) -> str:
    """Where a node's event socket listens: freeswitch.event_socket.listen_ip while the orchestrator reaches
    the node on loopback (or that address listens on every interface); else the node's ESL host when it is
    an IP address, else (a host name, assumed to name the node) the node's sip_ip."""
    configured = deployment.freeswitch.event_socket.listen_ip
    host = node.esl_host
    if host == "localhost" or ipaddress.ip_address(configured).is_unspecified:
        return configured
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return node.sip_ip
    return configured if address.is_loopback else host


def _edge_context(deployment: Deployment) -> EdgeContext:
    routes = tuple(
        EdgeRoute(trunk=t.name, pattern=f"^{re.escape(t.name)}$", context=context_name(t.name))
        for t in deployment.trunks
        if t.inbound is not None
    )
    return EdgeContext(
        name=EDGE_CONTEXT,
        trunk_variable=f"${{sip_h_{TRUNK_HEADER}}}",
        number_pattern=EDGE_NUMBER_PATTERN,
        variables=((channelvars.SOURCE, f"${{sip_h_{SOURCE_HEADER}}}"),),
        cleared=(f"sip_h_{TRUNK_HEADER}", f"sip_h_{SOURCE_HEADER}"),
        routes=routes,
    )


def _node_plan(deployment: Deployment, edge: Edge, node: EdgeNode) -> Plan:
    """A node behind the edge: SIP only from the edge (TCP), the trunk contexts as on a single node, gateways
    through the edge, its own addresses and event socket. No TLS, UDP or digest users: those are the edge's."""
    fs = deployment.freeswitch
    listen = esl_listen_ip(deployment, node)
    esl_allow = ["127.0.0.0/8", "::1/128", *fs.event_socket.allow]
    address = ipaddress.ip_address(listen)
    if not address.is_loopback and not address.is_unspecified:
        esl_allow.append(_single_host(listen))  # an orchestrator on the node's own host connects from there
    acls = [
        AclList("esl", tuple(esl_allow), "event socket clients"),
        AclList(EDGE_ACL, (_single_host(edge.internal_address),), "the edge: the only SIP peer of this node"),
        AclList(NO_LOCAL_NETWORK, (), "the edge is no local peer: SDP carries the node's RTP address"),
    ]
    gateways = tuple(_gateway(t, deployment, edge) for t in deployment.trunks if t.outbound is not None)
    profile = Profile(
        name=EDGE_PROFILE,
        transport="tcp",
        port=node.sip_port,
        inbound_acls=((EDGE_ACL, EDGE_CONTEXT),),
        auth_calls=False,
        directory_domain=None,
        gateways=gateways,
        tls=None,
        nat_acl=None,
    )
    # sofia uses ext-rtp-ip only with an ext-sip-ip (switch_core_media_check_nat): the node's own address
    # keeps SIP headers naming the node, where the edge reaches it
    rtp = node.rtp_address
    external = rtp != node.sip_ip
    password = node.esl.password or fs.event_socket.password
    return Plan(
        deployment=deployment,
        sip_domain=deployment.sip_domain,
        codec_prefs=_codec_string(fs.codecs),
        local_network_acl=NO_LOCAL_NETWORK,
        acls=tuple(acls),
        profiles=(profile,),
        directory=(),
        contexts=tuple(_contexts(deployment)),
        tls_material=None,
        esl_acl="esl",
        handoff=_handoff(fs),
        sip_ip=node.sip_ip,
        ext_sip_ip=node.sip_ip if external else None,
        ext_rtp_ip=rtp if external else None,
        event_socket=EventSocketSettings(listen, node.esl.port, password),
        node=node,
        edge_context=_edge_context(deployment),
    )
