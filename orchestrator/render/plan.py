"""What FreeSWITCH needs, derived from a deployment: profiles, ACL lists, gateways, users, contexts.

Templates only print this plan; every decision about FreeSWITCH parameters is made here, so it can
be tested without rendering. Names used in FreeSWITCH:

* SIP profile per enabled transport: ``tcp``, ``tls``, ``udp``.
* ACL list per trunk with networks: ``trunk-<name>``; ``esl`` for the event socket; ``localnet``.
* Gateway per outbound trunk: ``<trunk name>`` (dial ``sofia/gateway/<trunk>/<number>``).
* Dialplan context per inbound trunk: ``trunk-<name>``; ``reject`` catches everything else.
* Directory domain per profile with digest trunks: ``trunks-<transport>``.
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
from orchestrator.config import tls_material
from orchestrator.config.model import Deployment, FreeSwitch, Number, Trunk
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
LOG_LEVELS = ["debug", "info", "notice", "warning", "err", "crit", "alert"]


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
    """A number in a trunk's context."""

    number: str
    pattern: str
    agent: str


@dataclass(frozen=True)
class TrunkContext:
    """The dialplan context an inbound trunk's calls enter."""

    name: str
    trunk: str
    require_crypto: bool
    variables: tuple[tuple[str, str], ...]
    routes: tuple[Route, ...]


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

    reject_context: str = REJECT_CONTEXT

    @property
    def fs(self) -> FreeSwitch:
        """The deployment's freeswitch section."""
        return self.deployment.freeswitch

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


def _gateway(trunk: Trunk, deployment: Deployment) -> Gateway:
    out = trunk.outbound
    assert out is not None
    try:
        is_ip = bool(ipaddress.ip_address(out.address))
    except ValueError:
        is_ip = False
    host = f"[{out.address}]" if ":" in out.address else out.address
    # a host name without a port leaves room for DNS SRV (RFC 3263); an IP always gets one
    port = out.port or (out.effective_port if is_ip else None)
    proxy = f"{host}:{port}" if port else host
    proxy += f";transport={out.transport}"
    variables: list[tuple[str, str]] = [
        (channelvars.TRUNK, trunk.name),
        ("rtp_secure_media_outbound", SRTP_MODES[out.media_encryption]),
        ("absolute_codec_string", _codec_string(out.codecs or deployment.freeswitch.codecs)),
    ]
    if deployment.freeswitch.media_timeout_seconds:
        variables.append(("media_timeout", str(deployment.freeswitch.media_timeout_seconds * 1000)))
    if out.accept_crypto_in_avp:
        variables.append((CRYPTO_IN_AVP, "true"))
    if out.caller_id:
        variables.append((channelvars.DEFAULT_CALLER_ID, out.caller_id))
    variables += [(f"sip_h_{name}", value) for name, value in out.headers.items()]
    return Gateway(
        name=trunk.name,
        proxy=proxy,
        transport=out.transport,
        register=out.register_,
        username=out.auth.username if out.auth else "sipagent",
        password=out.auth.password if out.auth else None,
        realm=out.auth.realm if out.auth else None,
        from_domain=out.from_domain,
        ping_seconds=out.ping_seconds,
        variables=tuple(variables),
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


def _contexts(deployment: Deployment) -> list[TrunkContext]:
    """Each inbound trunk's dialplan context: its media policy and a route per number."""
    fs = deployment.freeswitch
    numbers_by_trunk: dict[str, list[Number]] = {}
    for n in deployment.numbers:
        numbers_by_trunk.setdefault(n.trunk, []).append(n)
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
        if fs.media_timeout_seconds:
            variables.append(("media_timeout", str(fs.media_timeout_seconds * 1000)))
        if inbound.accept_crypto_in_avp:
            variables.append((CRYPTO_IN_AVP, "true"))
        routes = tuple(
            Route(number=n.number, pattern="^\\+?" + re.escape(n.number[1:]) + "$", agent=n.agent)
            for n in numbers_by_trunk.get(trunk.name, [])
        )
        contexts.append(
            TrunkContext(
                name=context_name(trunk.name),
                trunk=trunk.name,
                require_crypto=inbound.media_encryption == "required",
                variables=tuple(variables),
                routes=routes,
            )
        )
    return contexts


def build(deployment: Deployment, base_dir: Path) -> Plan:
    """Derive the FreeSWITCH plan. Reads the TLS files (they are copied into the rendered tree)."""
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
    handoff = f"{fs.handoff_timeout_seconds}:{HANDOFF_CAUSE}" if fs.handoff_timeout_seconds else ""
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
        handoff=handoff,
    )
