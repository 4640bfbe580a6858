"""The deployment model: one YAML file describing FreeSWITCH, transports, trunks, numbers and agents.

Each class checks its own values; checks that span sections (references, duplicates, port
overlaps, transport/encryption combinations) live in :mod:`orchestrator.config.checks`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from orchestrator.config import numbering
from orchestrator.config.text import describe, first_unsafe, quote
from orchestrator.config.types import (
    E164,
    AgentId,
    Cidr,
    CipherName,
    Codec,
    CodecName,
    Description,
    Domain,
    EslPassword,
    ExternalAddress,
    FilePath,
    HeaderValue,
    Host,
    HttpHeaderName,
    IpAddress,
    MediaEncryption,
    Name,
    Port,
    Prompt,
    Realm,
    SipDomain,
    SipUser,
    Transport,
    Variable,
    WebhookUrl,
    WsUrl,
    XHeader,
    file_path,
    is_hostname,
    is_ip_address,
    secret_rule,
)

#: Mozilla "intermediate" TLS 1.2 suites: ECDHE key exchange with AEAD ciphers only.
MODERN_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)


#: call recording per trunk, number or agent (docs/operations.md#call-recording): the most specific one set wins
RecordingPolicy = Literal["off", "always", "on_demand"]
_RECORDING_POLICY_HELP = (
    "Call recording: off, always (from the answer), on_demand (API or agent tool); "
    "the number's setting wins over the agent's, the agent's over the trunk's, the trunk's over "
    "orchestrator.recording.policy."
)

#: Secrets and what each may hold (the limits are what the peer that reads them accepts).
DigestPassword = Annotated[SecretStr, AfterValidator(secret_rule("the password", 256))]
#: FreeSWITCH answers a challenge with ``scheme:realm:user:password`` in a 256-byte buffer.
OutboundPassword = Annotated[SecretStr, AfterValidator(secret_rule("the password", 128))]
Passphrase = Annotated[SecretStr, AfterValidator(secret_rule("the passphrase", 1024))]
ApiKey = Annotated[SecretStr, AfterValidator(secret_rule("the API key", 1024, blanks=False))]
ApiToken = Annotated[SecretStr, AfterValidator(secret_rule("the API token", 1024, blanks=False, ascii_only=True))]
MediaSecret = Annotated[SecretStr, AfterValidator(secret_rule("the media secret", 1024))]
AgentHeaderValue = Annotated[SecretStr, AfterValidator(secret_rule("a header value", 8192, empty=True))]


def _webhook_key(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 16:
        raise ValueError("the webhook secret needs at least 16 characters (e.g. openssl rand -hex 32)")
    return value


WebhookSecret = Annotated[
    SecretStr, AfterValidator(secret_rule("the webhook secret", 1024)), AfterValidator(_webhook_key)
]


#: FreeSWITCH's codec preference when the file names none.
_DEFAULT_CODECS: tuple[Codec, ...] = ("G722", "PCMU", "PCMA")

#: FreeSWITCH nodes one orchestrator drives.
MAX_NODES = 64


def _zone_name(value: str) -> str:
    numbering.zone(value)
    return value


def _day_item(value: str) -> str:
    numbering.days(value)
    return value.strip().lower()


def _time_of_day(value: str) -> str:
    numbering.minutes(value)
    return value


class Model(BaseModel):
    """Base for every section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_H = TypeVar("_H", bound=Hashable)


def _unique(values: list[_H], what: str) -> list[_H]:
    seen: set[_H] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what} '{v}' is listed twice")
        seen.add(v)
    return values


class EventSocket(Model):
    """FreeSWITCH's event socket (ESL), which the orchestrator connects to."""

    listen_ip: IpAddress = Field("127.0.0.1", description="Address mod_event_socket listens on.")
    port: Port = Field(8021, description="ESL port.")
    password: EslPassword = Field(description="ESL password; use ${ENV_VAR}.")
    allow: list[Cidr] = Field(
        default_factory=list,
        max_length=100,
        description="Networks allowed to connect besides loopback (default: loopback only).",
    )


class RtpPorts(Model):
    """UDP port range FreeSWITCH allocates RTP/RTCP ports from."""

    start: Port = 16384
    end: Port = 32768

    @model_validator(mode="after")
    def _order(self) -> RtpPorts:
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be below end ({self.end})")
        if self.start < 1024:
            raise ValueError(f"start ({self.start}) is a privileged port; RTP ranges start at 1024 or above")
        return self


DtmfMode = Literal["rfc2833", "info", "inband"]
_DTMF_MODE_HELP = (
    "How keypad digits travel: rfc2833 (RFC 2833/4733 telephone-events in RTP; FreeSWITCH falls back to SIP INFO "
    "when the far end's SDP has none), info (SIP INFO application/dtmf-relay both ways), inband (tones in the audio: "
    "detected in what the far end sends, generated into what it hears)."
)


class Dtmf(Model):
    """How keypad digits are carried: RFC 2833/4733 telephone-events in RTP, SIP INFO, or tones in the audio."""

    mode: DtmfMode = Field("rfc2833", description=_DTMF_MODE_HELP)
    payload_type: int = Field(101, ge=96, le=127, description="Dynamic RTP payload type for telephone-event.")
    duration_ms: int = Field(100, ge=40, le=5000, description="Duration of digits FreeSWITCH sends.")


class FreeSwitch(Model):
    """The FreeSWITCH node: addresses, NAT, RTP, codecs, DTMF and the event socket."""

    bind_ip: IpAddress = Field(description="Local IP the SIP profiles and RTP bind to (sip-ip / rtp-ip).")
    ext_sip_ip: ExternalAddress | None = Field(None, description="Public address put in SIP headers behind NAT.")
    ext_rtp_ip: ExternalAddress | None = Field(None, description="Public address put in SDP behind NAT.")
    local_networks: list[Cidr] = Field(
        default_factory=list,
        max_length=1000,
        description="Networks reached without NAT (no external address used); default: FreeSWITCH's localnet.auto.",
    )
    sip_domain: SipDomain | None = Field(
        None, description="Digest realm and directory domain; default: ext_sip_ip or bind_ip."
    )
    rtp_ports: RtpPorts = Field(default_factory=RtpPorts)
    codecs: list[CodecName] = Field(
        default_factory=lambda: list(_DEFAULT_CODECS), min_length=1, description="Codec preference order."
    )
    dtmf: Dtmf = Field(default_factory=Dtmf)
    max_calls: int = Field(1000, ge=1, le=100000, description="Concurrent call limit (max-sessions).")
    calls_per_second: int = Field(30, ge=1, le=10000, description="New call rate limit (sessions-per-second).")
    media_timeout_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description="Hang up a call after this long without RTP (0 = never): the default of each trunk's "
        "media_timeout_seconds (recorded as media_timeout).",
    )
    rtcp_interval_ms: int = Field(
        5000,
        ge=0,
        le=60000,
        description="RTCP reports FreeSWITCH sends every this many ms (sofia rtcp-audio-interval-msec), and the "
        "far end's reports read for live quality (1000 to 60000; 0: off).",
    )
    handoff_timeout_seconds: int = Field(
        10, ge=0, le=300, description="Reject (503) an inbound call the orchestrator has not claimed in time."
    )
    log_level: Literal["debug", "info", "notice", "warning", "err", "crit"] = "info"
    event_socket: EventSocket

    @field_validator("codecs")
    @classmethod
    def _codecs(cls, v: list[str]) -> list[str]:
        return _unique(v, "codec")

    @field_validator("rtcp_interval_ms")
    @classmethod
    def _rtcp(cls, v: int) -> int:
        if 0 < v < 1000:
            raise ValueError("rtcp_interval_ms is 0 (off) or 1000 to 60000")
        return v


class TcpTransport(Model):
    """SIP over TCP."""

    port: Port = 5060


class UdpTransport(Model):
    """SIP over UDP: opt-in, for testing (large messages fragment at the MTU)."""

    port: Port = 5060


class TlsTransport(Model):
    """SIP over TLS, with the certificate this server presents and the policy for peers."""

    port: Port = 5061
    certificate: FilePath | None = Field(None, description="PEM certificate chain (leaf first); relative to this file.")
    private_key: FilePath | None = Field(None, description="PEM private key of the certificate.")
    private_key_passphrase: Passphrase | None = None
    ca_bundle: FilePath | None = Field(None, description="PEM CA certificates trusted when verifying peers.")
    min_version: str = Field("1.2", description="Lowest TLS version accepted: 1.2 or 1.3.")
    ciphers: list[CipherName] = Field(default_factory=lambda: list(MODERN_CIPHERS), min_length=1, max_length=64)
    verify_peer: Literal["none", "outgoing", "incoming", "all"] = Field(
        "outgoing",
        description="Verify peer certificates on connections we open (outgoing), accept (incoming), or both.",
    )
    verify_depth: int = Field(3, ge=1, le=10)

    @field_validator("min_version", mode="before")
    @classmethod
    def _min_version(cls, v: object) -> str:
        text = str(v).strip().lower().removeprefix("tlsv").removeprefix("tls").strip()
        if text in ("1", "1.0", "1.1"):
            raise ValueError(f"TLS {text} is not allowed: TLS 1.2 is the floor")
        if text not in ("1.2", "1.3"):
            raise ValueError(f"{quote(v)} is not a TLS version: use 1.2 or 1.3")
        return text

    @field_validator("ciphers")
    @classmethod
    def _ciphers(cls, v: list[str]) -> list[str]:
        return _unique(v, "cipher suite")


class Transports(Model):
    """Enabled SIP transports; a transport is on when its section is present."""

    tcp: TcpTransport | None = None
    tls: TlsTransport | None = None
    udp: UdpTransport | None = None

    def enabled(self) -> list[Transport]:
        """The enabled transports, in a fixed order."""
        return [t for t in ("tcp", "tls", "udp") if getattr(self, t) is not None]

    def port(self, transport: Transport) -> int:
        """Listening port of an enabled transport."""
        section: TcpTransport | TlsTransport | UdpTransport | None = getattr(self, transport)
        assert section is not None
        return section.port


class DigestCredentials(Model):
    """A user name and password for SIP digest authentication."""

    username: SipUser
    password: DigestPassword


class OutboundCredentials(DigestCredentials):
    """Credentials answering the trunk's 401/407 challenges."""

    password: OutboundPassword
    realm: Realm | None = Field(None, description="Only answer challenges for this realm (default: any).")


class CallLimits(Model):
    """How many calls a trunk carries at once and how fast new ones may come, in one direction
    (docs/configuration.md#call-limits). Inbound: FreeSWITCH's ``limit`` (mod_hash) refuses a call over a
    limit with 503 and Retry-After; outbound: the API answers 429 with Retry-After."""

    max_calls: int | None = Field(None, ge=1, le=100000, description="Calls up at once on this trunk (none: no limit).")
    calls_per_second: int | None = Field(
        None, ge=1, le=10000, description="New calls per second on this trunk (none: no limit)."
    )
    retry_after_seconds: int = Field(
        5, ge=1, le=3600, description="Retry-After on a refusal (seconds): the 503 inbound, the 429 outbound."
    )

    @model_validator(mode="after")
    def _some(self) -> CallLimits:
        if self.max_calls is None and self.calls_per_second is None:
            raise ValueError("limits needs max_calls, calls_per_second or both (leave the section out for none)")
        return self


class InboundAuth(Model):
    """Who may send calls on a trunk: digest credentials, source networks, or both (then both must match)."""

    digest: DigestCredentials | None = None
    acl: list[Cidr] = Field(
        default_factory=list, max_length=1000, description="Source networks allowed; everything else is denied."
    )

    @model_validator(mode="after")
    def _some(self) -> InboundAuth:
        if self.digest is None and not self.acl:
            raise ValueError("inbound calls are denied by default: give digest credentials, an acl, or both")
        _unique(self.acl, "network")
        return self


class InboundHeader(Model):
    """An inbound X- header passed to the agent as a variable."""

    header: XHeader
    variable: Variable | None = Field(None, description="Variable name; default: header name in snake_case.")

    @property
    def variable_name(self) -> str:
        """The agent variable name this header fills."""
        return self.variable or self.header[2:].lower().replace("-", "_")


class Inbound(Model):
    """Calls from the trunk to us."""

    transports: list[Transport] = Field(min_length=1, description="Transports the trunk may use to reach us.")
    auth: InboundAuth
    media_encryption: MediaEncryption = "allowed"
    codecs: list[CodecName] | None = Field(None, description="Subset of freeswitch.codecs; default: all.")
    remote_domains: list[Domain] = Field(
        default_factory=list,
        max_length=100,
        description="Certificate names accepted from this peer on TLS connections.",
    )
    headers: list[XHeader | InboundHeader] = Field(
        default_factory=list, max_length=64, description="Inbound X- headers exposed to the agent as variables."
    )
    accept_crypto_in_avp: bool = Field(
        False,
        description="Accept SDES keys (a=crypto) in an RTP/AVP offer, as some carriers send them "
        "(FreeSWITCH's rtp_allow_crypto_in_avp); needs media_encryption allowed or required.",
    )
    limits: CallLimits | None = Field(
        None, description="Concurrent calls and calls per second accepted from the trunk (over: 503 + Retry-After)."
    )

    @field_validator("transports")
    @classmethod
    def _transports(cls, v: list[str]) -> list[str]:
        return _unique(v, "transport")

    @field_validator("codecs")
    @classmethod
    def _codecs(cls, v: list[str] | None) -> list[str] | None:
        return _unique(v, "codec") if v is not None else v

    def header_mappings(self) -> list[InboundHeader]:
        """Every exposed header as an :class:`InboundHeader`."""
        return [h if isinstance(h, InboundHeader) else InboundHeader(header=h) for h in self.headers]


#: answering-machine detection on outbound calls (docs/call-flow.md#answering-machine-detection)
MachineMode = Literal["off", "notify", "hangup", "wait_for_beep"]


class MachineDetection(Model):
    """Answering-machine and voicemail detection for outbound calls (docs/call-flow.md#answering-machine-detection).

    Set on a trunk's outbound section, an agent, orchestrator.machine_detection, or per call in POST /v1/calls;
    each field comes from the most specific level that sets it (call, agent, trunk, orchestrator, these defaults).
    A bare mode (``machine_detection: hangup``) is short for ``{mode: hangup}``.
    """

    mode: MachineMode = Field(
        "off",
        description="off; notify (the agent is told human, machine or unknown); hangup (a machine is hung up on, "
        "recorded machine_detected); wait_for_beep (on a machine the agent is held silent until the beep or the "
        "greeting's end, then told to leave its message).",
    )
    beep: bool = Field(
        True, description="Listen for the voicemail beep with FreeSWITCH's mod_avmd (loaded when this is used)."
    )
    speech_threshold_dbfs: float = Field(
        -40.0, ge=-70, le=-10, description="A 20 ms frame of the callee's audio this loud (RMS, dBFS) is speech."
    )
    min_speech_ms: int = Field(
        120, ge=20, le=1000, description="Less speech than this before a silence is noise, not a greeting."
    )
    human_speech_max_ms: int = Field(
        1500,
        ge=200,
        le=10000,
        description="A greeting this short followed by silence_after_speech_ms of silence is a person (hello?).",
    )
    silence_after_speech_ms: int = Field(
        800, ge=200, le=5000, description="The silence that ends a greeting (shorter pauses are part of it)."
    )
    machine_speech_ms: int = Field(
        3000,
        ge=500,
        le=20000,
        description="A greeting longer than this (pauses shorter than silence_after_speech_ms included) is a "
        "machine; one between human_speech_max_ms and this, then silence, is unknown.",
    )
    no_speech_seconds: float = Field(5.0, gt=0, le=60, description="No speech this long after the answer: unknown.")
    greeting_end_silence_ms: int = Field(
        1500,
        ge=200,
        le=10000,
        description="wait_for_beep: a machine's greeting followed by this much silence has ended even without a beep.",
    )
    beep_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=120,
        description="wait_for_beep: the agent speaks at the latest this long after the answer; mod_avmd listens "
        "no longer than this.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        return {"mode": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _order(self) -> MachineDetection:
        # a level setting only one of the two is checked once merged with the others (calls/machine.py resolve)
        if {"human_speech_max_ms", "machine_speech_ms"} <= self.model_fields_set:
            self.check_order()
        return self

    def check_order(self) -> None:
        """A short greeting must be shorter than a long one."""
        if self.human_speech_max_ms >= self.machine_speech_ms:
            raise ValueError(
                f"human_speech_max_ms ({self.human_speech_max_ms}) must be below machine_speech_ms "
                f"({self.machine_speech_ms})"
            )

    def given(self) -> dict[str, object]:
        """The fields this level sets (the others come from a less specific level)."""
        return {k: getattr(self, k) for k in self.model_fields_set}


_MACHINE_HELP = (
    "Answering-machine detection on outbound calls: a mode (off, notify, hangup, wait_for_beep) or the whole "
    "section (docs/call-flow.md#answering-machine-detection)."
)


class Outbound(Model):
    """Calls from us to the trunk."""

    address: Host = Field(description="Host name or IP of the trunk, without 'sip:'.")
    port: Port | None = Field(None, description="Default: 5061 for TLS, 5060 otherwise.")
    transport: Transport = "tcp"
    auth: OutboundCredentials | None = None
    media_encryption: MediaEncryption = "allowed"
    codecs: list[CodecName] | None = None
    headers: dict[XHeader, HeaderValue] = Field(
        default_factory=dict, max_length=64, description="X- headers added to every call."
    )
    caller_id: E164 | None = Field(None, description="Default caller ID for calls on this trunk.")
    from_domain: Host | None = Field(None, description="Host part of the From header (default: the address).")
    register_: bool = Field(False, alias="register", description="Register to the trunk (needs auth).")
    ping_seconds: int = Field(
        0, ge=0, le=3600, description="Send SIP OPTIONS this often and mark the trunk down on failure."
    )
    accept_crypto_in_avp: bool = Field(
        False,
        description="Accept SDES keys (a=crypto) in the trunk's RTP/AVP answer (FreeSWITCH's "
        "rtp_allow_crypto_in_avp); needs media_encryption allowed or required.",
    )
    limits: CallLimits | None = Field(
        None, description="Concurrent calls and calls per second placed through the API (over: 429 + Retry-After)."
    )
    machine_detection: MachineDetection | None = Field(None, description=_MACHINE_HELP)

    @field_validator("codecs")
    @classmethod
    def _codecs(cls, v: list[str] | None) -> list[str] | None:
        return _unique(v, "codec") if v is not None else v

    @property
    def effective_port(self) -> int:
        """The port calls are sent to."""
        return self.port or (5061 if self.transport == "tls" else 5060)


class TrunkDtmf(Model):
    """A trunk's DTMF: for carriers without RFC 2833 (SIP INFO, or tones in the audio)."""

    mode: DtmfMode = Field(description=_DTMF_MODE_HELP)


class Trunk(Model):
    """A SIP trunk: a peer (carrier, SBC, PBX) that sends and/or receives calls."""

    name: Name
    description: Description = ""
    inbound: Inbound | None = None
    outbound: Outbound | None = None
    media_timeout_seconds: int | None = Field(
        None,
        ge=0,
        le=3600,
        description="Hang up a call on this trunk after this long without RTP from the far end (recorded as "
        "media_timeout; 0: never); default: freeswitch.media_timeout_seconds. A far end that holds the call and "
        "sends no RTP meanwhile is subject to it too (FreeSWITCH 1.10.12: docs/call-flow.md#dead-media-and-hold).",
    )
    recording: RecordingPolicy | None = Field(None, description=_RECORDING_POLICY_HELP)
    dtmf: TrunkDtmf | None = Field(
        None, description="How this trunk's carrier carries keypad digits; default: freeswitch.dtmf.mode."
    )

    @model_validator(mode="after")
    def _direction(self) -> Trunk:
        if self.inbound is None and self.outbound is None:
            raise ValueError("a trunk needs an inbound section, an outbound section, or both")
        return self


_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z]{2,4})?")
_VOICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class AgentOverrides(Model):
    """Per-conversation settings for the agent (ElevenLabs: ``conversation_config_override``)."""

    first_message: str | None = Field(
        None, max_length=1000, description="What the agent says first (empty string: wait for the caller)."
    )
    language: str | None = Field(None, description="Language code, e.g. en, de, pt-br.")
    voice_id: str | None = Field(None, description="Voice of the agent's speech (ElevenLabs voice id).")
    prompt: str | None = Field(None, max_length=20000, description="System prompt replacing the agent's.")

    @field_validator("first_message", "prompt")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        bad = first_unsafe(v.replace("\n", "").replace("\t", "")) if v is not None else None
        if bad is not None:
            raise ValueError(f"cannot contain {describe(bad)} (line breaks and tabs are fine)")
        return v

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        if v is not None and not _LANGUAGE.fullmatch(v):
            raise ValueError(f"{quote(v)} is not a language code (lower case, e.g. en, de, pt-br)")
        return v

    @field_validator("voice_id")
    @classmethod
    def _voice(cls, v: str | None) -> str | None:
        if v is not None and not _VOICE_ID.fullmatch(v):
            raise ValueError("a voice id is 1 to 64 letters, digits, '_' or '-'")
        return v

    def values(self) -> dict[str, str]:
        """The fields that are set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


def _day_list(value: object) -> object:
    """``days: mon-fri`` or ``days: "mon,wed"`` as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    return value


class TimeWindow(Model):
    """Days and hours in a time zone (docs/configuration.md#number-ranges-and-routing-rules)."""

    time_zone: Annotated[str, AfterValidator(_zone_name)] = Field(
        description="IANA time zone the days and hours are in, e.g. Europe/Berlin, America/New_York, UTC."
    )
    days: Annotated[list[Annotated[str, AfterValidator(_day_item)]], BeforeValidator(_day_list)] = Field(
        default_factory=lambda: ["mon-sun"],
        min_length=1,
        max_length=7,
        description="Days (mon … sun) or ranges of days (mon-fri); default: every day.",
    )
    start: Annotated[str, AfterValidator(_time_of_day)] = Field("00:00", description="HH:MM, 24-hour clock.")
    end: Annotated[str, AfterValidator(_time_of_day)] = Field(
        "24:00", description="HH:MM (24:00 = midnight); before start: the window runs past midnight."
    )

    @model_validator(mode="after")
    def _span(self) -> TimeWindow:
        if self.start == "24:00":
            raise ValueError("start cannot be 24:00: a window starts at 00:00 to 23:59")
        if numbering.minutes(self.start) == numbering.minutes(self.end):
            raise ValueError(
                f"start and end are both {self.start}: the window would be empty or the whole day "
                "(for the whole day leave start and end out)"
            )
        window = self.window()
        if len(window.days) == 7 and window.start == 0 and window.end == 24 * 60:
            raise ValueError("the window is every day, all day: give days, start or end (or leave time out)")
        return self

    def window(self) -> numbering.Window:
        """The window as :mod:`~orchestrator.config.numbering` checks instants against it."""
        selected = frozenset(d for item in self.days for d in numbering.days(item))
        return numbering.Window(
            self.time_zone, selected, numbering.minutes(self.start), numbering.minutes(self.end) % (24 * 60) or 1440
        )


class RoutingRule(Model):
    """A different agent for some calls to a number or block: by caller ID prefix, by time, or both."""

    caller_prefix: Annotated[str, AfterValidator(numbering.caller_prefix)] | None = Field(
        None, description="Calls whose caller ID (E.164) starts with this, e.g. '+44'."
    )
    time: TimeWindow | None = Field(None, description="Calls that arrive in this window.")
    agent: Name
    agent_overrides: AgentOverrides | None = Field(
        None, description="Conversation settings for the calls this rule answers (over the agent's own)."
    )

    @model_validator(mode="after")
    def _condition(self) -> RoutingRule:
        if self.caller_prefix is None and self.time is None:
            raise ValueError(
                "a rule needs caller_prefix, time or both (without a condition it would always answer: "
                "set the number's agent instead)"
            )
        return self


MAX_RULES = 32


class Number(Model):
    """A phone number or a block of numbers: which trunk it arrives on and which agent answers it."""

    number: Annotated[str, AfterValidator(numbering.number_text)] = Field(
        description="E.164 (+15557650042) or a block: 'x' is any digit, [0-4] a digit set (+1555765xxxx). "
        "An exact number wins over a block holding it, a smaller block over a larger."
    )
    trunk: Name
    agent: Name
    agent_overrides: AgentOverrides | None = Field(
        None, description="Conversation settings for calls to this number (over the agent's own overrides)."
    )
    recording: RecordingPolicy | None = Field(None, description=_RECORDING_POLICY_HELP)
    rules: list[RoutingRule] = Field(
        default_factory=list,
        max_length=MAX_RULES,
        description="Other agents by caller ID prefix or time; the first rule that matches answers, else agent.",
    )

    @property
    def pattern(self) -> numbering.NumberPattern:
        """The number or block as digit sets."""
        return numbering.pattern(self.number)


ElevenLabsFormat = Literal["pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000", "ulaw_8000"]
RawFormat = Literal["pcm_8000", "pcm_16000", "pcm_24000", "pcm_48000"]


class _AgentBase(Model):
    name: Name
    headers: dict[HttpHeaderName, AgentHeaderValue] = Field(
        default_factory=dict,
        max_length=64,
        description="HTTP headers sent when connecting (e.g. Authorization); use ${ENV_VAR}.",
    )
    connect_timeout_seconds: float = Field(5.0, gt=0, le=60)
    first_message_timeout_seconds: float | None = Field(
        None,
        gt=0,
        le=120,
        description="After connecting, the agent's first message must arrive within this; none = no limit.",
    )
    transfer_timeout_seconds: float = Field(
        60.0, gt=0, le=600, description="A transfer the agent asked for with no outcome by then is reported failed."
    )
    recording: RecordingPolicy | None = Field(None, description=_RECORDING_POLICY_HELP)
    machine_detection: MachineDetection | None = Field(None, description=_MACHINE_HELP)


class ElevenLabsAgent(_AgentBase):
    """An ElevenLabs Agents conversation (signed URL when an API key is given)."""

    protocol: Literal["elevenlabs"]
    agent_id: AgentId
    api_key: ApiKey | None = Field(None, description="xi-api-key for private agents (signed URL).")
    url: WsUrl = "wss://api.elevenlabs.io/v1/convai/conversation"
    audio_format: ElevenLabsFormat = Field("pcm_16000", description="Must match the agent's configured audio format.")
    first_message_timeout_seconds: float | None = Field(
        5.0,
        gt=0,
        le=120,
        description="ElevenLabs answers conversation_initiation_client_data at once; none = no limit.",
    )
    overrides: AgentOverrides | None = Field(
        None, description="Conversation settings for every call (numbers and calls may override them)."
    )


class TwilioAgent(_AgentBase):
    """An agent speaking Twilio Media Streams (Pipecat and similar)."""

    protocol: Literal["twilio"]
    url: WsUrl
    audio_format: Literal["ulaw_8000"] = "ulaw_8000"


class RawAgent(_AgentBase):
    """An agent taking raw L16 audio and JSON control messages."""

    protocol: Literal["raw"]
    url: WsUrl
    audio_format: RawFormat = "pcm_16000"


Agent = Annotated[ElevenLabsAgent | TwilioAgent | RawAgent, Field(discriminator="protocol")]


class Node(Model):
    """A FreeSWITCH event socket this orchestrator drives."""

    name: Name
    host: Host = Field("127.0.0.1", description="Host name or IP of the node's event socket.")
    port: Port = 8021
    password: EslPassword | None = Field(None, description="Default: freeswitch.event_socket.password.")


class EdgeEsl(Model):
    """How the orchestrator reaches a node's event socket."""

    host: Host | None = Field(None, description="Host name or IP of the event socket; default: the node's sip_ip.")
    port: Port = 8021
    password: EslPassword | None = Field(None, description="Default: freeswitch.event_socket.password.")


class EdgeNode(Model):
    """A FreeSWITCH node behind the edge: where the edge sends its calls, its share, its RTP and event socket."""

    name: Name
    sip_ip: IpAddress = Field(description="Address the node's SIP profile binds to; the edge sends calls here.")
    sip_port: Port = Field(5080, description="The node's SIP port (TCP) for traffic from the edge.")
    rtp_ip: IpAddress | None = Field(
        None, description="Address in the node's SDP (what carriers send RTP to); default: sip_ip."
    )
    weight: int = Field(1, ge=1, le=100, description="Share of new calls, relative to the other nodes' weights.")
    rtp_ports: RtpPorts | None = Field(
        None,
        description="This node's RTP range (nodes sharing one host need their own); default: freeswitch.rtp_ports.",
    )
    esl: EdgeEsl = Field(default_factory=EdgeEsl)

    @property
    def esl_host(self) -> str:
        """The event socket's host."""
        return self.esl.host or self.sip_ip

    @property
    def rtp_address(self) -> str:
        """The address carriers send this node's RTP to."""
        return self.rtp_ip or self.sip_ip


class EdgeDispatch(Model):
    """How the edge spreads new calls and watches the nodes."""

    algorithm: Literal["weighted", "round_robin"] = Field(
        "weighted",
        description="weighted: each new call to a node drawn by weight (dispatcher 9); round_robin: in turn, "
        "weights ignored (dispatcher 4).",
    )
    probe_seconds: int = Field(5, ge=1, le=300, description="SIP OPTIONS to every node this often.")
    down_after: int = Field(2, ge=1, le=10, description="Unanswered OPTIONS in a row before a node is marked down.")
    up_after: int = Field(1, ge=1, le=10, description="Answered OPTIONS in a row before a down node is used again.")
    node_timeout_seconds: int = Field(
        3, ge=1, le=30, description="An INVITE a node has not answered (not even 100) in this time goes to the next."
    )
    retry_after_seconds: int = Field(
        30, ge=1, le=3600, description="Retry-After of the 503 sent when no node can take a call."
    )


class Edge(Model):
    """A Kamailio SIP edge in front of the nodes: one public address for carriers, calls spread over the pool."""

    host: SipDomain = Field(description="Public host name of the edge (SRV/NAPTR target, its TLS certificate's name).")
    addresses: list[IpAddress] = Field(
        min_length=1, max_length=16, description="Public addresses carriers send to (static: they allowlist them)."
    )
    listen_ip: IpAddress | None = Field(
        None, description="Local address the public transports bind to (behind 1:1 NAT); default: the addresses."
    )
    internal_ip: IpAddress | None = Field(
        None, description="Address the nodes see the edge from; default: listen_ip, else the first address."
    )
    internal_port: Port = Field(5070, description="TCP port on internal_ip for traffic to and from the nodes.")
    transports: Transports | None = Field(
        None,
        description="What carriers reach on the edge (TCP, TLS with its certificate and policy, UDP opt-in); "
        "default: the top-level transports, which then describe the edge (the nodes listen only for it).",
    )
    dispatch: EdgeDispatch = Field(default_factory=EdgeDispatch)
    nodes: list[EdgeNode] = Field(min_length=1, max_length=MAX_NODES)
    rpc_socket: FilePath = Field(
        "/run/kamailio/kamailio_rpc.sock",
        description="Kamailio's JSON-RPC datagram socket (jsonrpcs), which apply uses to reload it live.",
    )

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        return _unique(v, "address")

    @property
    def internal_address(self) -> str:
        """The address nodes send to and accept SIP from (the edge's internal socket binds to it)."""
        return self.internal_ip or self.listen_ip or self.addresses[0]


class HttpApi(Model):
    """The orchestrator's HTTP API (calls, health, Prometheus metrics)."""

    listen_ip: IpAddress = "127.0.0.1"
    port: Port = 8080
    token: ApiToken | None = Field(None, description="Bearer token required on /v1 (use ${ENV_VAR}); none = no API.")
    read_token: ApiToken | None = Field(
        None, description="Bearer token for the GET endpoints of /v1 only (use ${ENV_VAR}); also opens the console."
    )
    console_token: ApiToken | None = Field(
        None, description="Token that opens the read-only web console at /console (use ${ENV_VAR}; docs/operations.md)."
    )

    @model_validator(mode="after")
    def _distinct_tokens(self) -> HttpApi:
        given = [t.get_secret_value() for t in (self.token, self.read_token, self.console_token) if t is not None]
        if len(set(given)) != len(given):
            raise ValueError("token, read_token and console_token must all differ (each says what a client may do)")
        return self


class MediaSettings(Model):
    """The media bridge: where FreeSWITCH's audio forks connect, how agent audio is played, what failures do."""

    listen_ip: IpAddress = Field("127.0.0.1", description="Address the bridge listens on for audio forks.")
    port: Port = Field(8090, description="Port of the bridge (orchestrator.media_url must lead here).")
    workers: int = Field(
        1, ge=1, le=64, description="Bridge processes sharing the port (SO_REUSEPORT); one per core for large hosts."
    )
    fork_module: Literal["mod_audio_fork", "mod_audio_stream"] = Field(
        "mod_audio_fork",
        description="FreeSWITCH module that forks call audio: mod_audio_fork (drachtio or jambonz) or "
        "mod_audio_stream (amigniter, open-source edition: file playback only).",
    )
    playback: Literal["streaming", "file"] = Field(
        "streaming",
        description="streaming: jambonz mod_audio_fork plays L16 sent back at once (lowest latency); "
        "file: drachtio mod_audio_fork writes each segment to a file that is played over ESL.",
    )
    lead_ms: int = Field(
        40, ge=0, le=1000, description="Agent audio kept in FreeSWITCH beyond what its playback needs (barge-in)."
    )
    file_segment_ms: int = Field(
        1000, ge=100, le=10000, description="file playback: audio per file (FreeSWITCH pauses 100 ms between files)."
    )
    max_playback_seconds: float = Field(
        60.0, gt=0, le=600, description="Agent audio held for pacing per call; more is dropped and counted."
    )
    agent_queue_ms: int = Field(
        1000, ge=0, le=10000, description="Caller audio kept while the agent connects (older is dropped)."
    )
    agent_chunk_ms: int = Field(
        60,
        ge=20,
        le=200,
        multiple_of=20,
        description="Caller audio per message to the agent (ms, a multiple of 20): 20 sends each frame as it "
        "arrives; 40 or 60 halve or third the messages (and the bridge's and the agent's socket work) and add up "
        "to 20 or 40 ms before the agent hears the caller (docs/media.md).",
    )
    agent_buffer_kb: int = Field(
        64, ge=8, le=4096, description="Unsent data to a slow agent before caller audio is dropped."
    )
    agent_stall_seconds: float = Field(
        5.0, gt=0, le=120, description="An agent not reading for this long is treated as failed."
    )
    fork_grace_seconds: float = Field(
        1.0, gt=0, le=30, description="Wait for the hang-up event after a fork closes before calling it media loss."
    )
    on_failure: Literal["hangup", "prompt"] = Field(
        "hangup", description="When the agent cannot be reached or goes away: hang up, or play fallback_prompt first."
    )
    fallback_prompt: Prompt | None = Field(
        None, description="What FreeSWITCH plays before hanging up (a file on its host or e.g. tone_stream://…)."
    )
    handshake_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="A fork connection must finish its WebSocket handshake within this time."
    )
    metadata_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="An accepted fork must send its metadata (first text frame) within this time."
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Connections on the media port per bridge process; default: from freeswitch.max_calls "
        "(per worker) and the descriptor limit.",
    )
    max_pending_connections: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Connections still in their handshake per bridge process (the oldest beyond it is closed); "
        "default: a quarter of the call limit, 32 to 1024.",
    )

    @model_validator(mode="after")
    def _prompt(self) -> MediaSettings:
        if self.fork_module == "mod_audio_stream" and self.playback != "file":
            raise ValueError("fork_module mod_audio_stream plays agent audio from files: set playback: file")
        if self.on_failure == "prompt" and not self.fallback_prompt:
            raise ValueError("on_failure: prompt needs fallback_prompt")
        pending, total = self.max_pending_connections, self.max_connections
        if pending and total and pending > total:
            raise ValueError("max_pending_connections cannot exceed max_connections")
        return self


#: ``orchestrator.records``: a ``.jsonl`` file, a ``postgresql://`` URL, or an SQLite database file
RECORDS_SCHEMES = ("postgresql://", "postgres://")
#: the libpq URL parameters a store URL may carry (asyncpg reads them); the password never goes here
_PG_PARAMS = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "target_session_attrs", "application_name", "passfile"}
)
_PG_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_PG_DATABASE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_$.-]{0,62}")
_PG_USER = re.compile(r"[A-Za-z0-9_.%-]{1,63}")
_PG_PARAM_VALUE = re.compile(r"[A-Za-z0-9_./%:@+-]{1,1024}")


def records_kind(value: str) -> Literal["jsonl", "postgres", "sqlite"]:
    """What ``orchestrator.records`` names: a JSONL file, a PostgreSQL database, or an SQLite file."""
    if value.lower().startswith(RECORDS_SCHEMES):
        return "postgres"
    return "jsonl" if value.lower().endswith(".jsonl") else "sqlite"


def _pg_host(item: str) -> bool:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    host, port = item, ""
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        if rest and not rest.startswith(":"):
            return False
        port = rest[1:]
        ok = ":" in host and is_ip_address(host)
    else:
        host, _, port = item.partition(":")
        ok = is_hostname(host) or is_ip_address(host)
    return ok and (not port or (port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535))


def postgres_url(value: str) -> str:
    """A ``postgresql://[user[:password]@]host[:port][,host2…]/database[?param=value…]`` URL.

    Never quotes the value in an error (it may hold a password: take it from ``${ENV}`` or ``PGPASSWORD``)."""
    if len(value) > 4096:
        raise ValueError("a PostgreSQL URL is limited to 4096 characters")
    if first_unsafe(value) is not None or any(c.isspace() for c in value):
        raise ValueError("a PostgreSQL URL cannot contain blanks, line breaks or control characters")
    rest = value.split("://", 1)[1]
    if "#" in rest:
        raise ValueError("a PostgreSQL URL has no #fragment")
    location, _, query = rest.partition("?")
    netloc, slash, database = location.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, _, _password = userinfo.partition(":")
        if not _PG_USER.fullmatch(user):
            raise ValueError("the PostgreSQL URL's user name is missing or not a plain name (letters, digits, _ . -)")
    if not hosts or not all(_pg_host(h) for h in hosts.split(",")):
        raise ValueError(
            "the PostgreSQL URL needs a host: postgresql://user@host[:port]/database (host name or IP address)"
        )
    if not slash or not _PG_DATABASE.fullmatch(database):
        raise ValueError("the PostgreSQL URL needs a database name: postgresql://user@host[:port]/database")
    for pair in query.split("&") if query else ():
        key, eq, param = pair.partition("=")
        if key in ("password", "sslpassword"):
            raise ValueError(
                "put the password in the URL's user part from the environment (user:${PGPASS}@host) or in PGPASSWORD"
            )
        if key not in _PG_PARAMS:
            raise ValueError(f"unknown PostgreSQL URL parameter {quote(key[:64])}: use {', '.join(sorted(_PG_PARAMS))}")
        if not eq or not _PG_PARAM_VALUE.fullmatch(param):
            raise ValueError(f"the PostgreSQL URL parameter {quote(key)} needs a plain value")
        if key == "sslmode" and param not in _PG_SSLMODES:
            raise ValueError(f"sslmode must be one of {', '.join(sorted(_PG_SSLMODES))}")
    return value


def records_location(value: str) -> str:
    """``orchestrator.records``: a file path (``.jsonl``: JSON lines; else an SQLite database) or a PostgreSQL URL."""
    if records_kind(value) == "postgres":
        return postgres_url(value)
    if "://" in value:
        raise ValueError("a database URL starts with postgresql:// (any other value is a file: .jsonl or SQLite)")
    return file_path(value)


class QualitySettings(Model):
    """Live RTP quality: each answered call's statistics sampled over ESL while it is up (docs/runtime.md)."""

    sample_seconds: float = Field(
        5.0, ge=0, le=60, description="Seconds between samples of each answered call (1 to 60; 0: no sampling)."
    )
    min_mos: float = Field(
        3.5, ge=1, le=4.5, description="A call whose MOS stays below this raises quality_low (quality_ok on recovery)."
    )
    series_length: int = Field(120, ge=1, le=1000, description="Samples kept per call (the most recent).")

    @field_validator("sample_seconds")
    @classmethod
    def _interval(cls, v: float) -> float:
        if 0 < v < 1:
            raise ValueError("sample_seconds is 0 (off) or 1 to 60")
        return v


#: the event types a webhook may ask for (orchestrator.events.EventType: tests/test_webhooks.py keeps them equal)
WebhookEvent = Literal[
    "call.started", "call.ringing", "call.answered", "call.transferred", "call.ended", "agent.failed", "trunk.down",
    "trunk.up",
]  # fmt: skip


class Webhook(Model):
    """One receiver of call and trunk events: signed HTTP POSTs from a durable outbox (docs/operations.md#webhooks)."""

    name: Name = Field(description="What logs, metrics and GET /v1/webhooks/deliveries call it (keep it stable).")
    url: WebhookUrl = Field(description="https:// URL to POST events to (http:// only to a loopback address).")
    secret: WebhookSecret = Field(description="HMAC-SHA256 key of the Sipagent-Signature header (use ${ENV_VAR}).")
    previous_secret: WebhookSecret | None = Field(
        None, description="While rotating: requests carry a second signature with this key."
    )
    events: list[WebhookEvent] | None = Field(
        None, min_length=1, description="Event types to send (default: all of them)."
    )
    agents: list[Name] | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Only the call events of these agents (and no trunk events); default: every call.",
    )
    timeout_seconds: float = Field(10.0, gt=0, le=60, description="One attempt's whole time (connect to response).")
    max_attempts: int = Field(12, ge=1, le=100, description="Attempts before a delivery is dead-lettered.")
    retry_initial_seconds: float = Field(5.0, ge=0.01, le=3600, description="Delay before the second attempt.")
    retry_max_seconds: float = Field(3600.0, ge=0.01, le=86400, description="Longest delay between attempts.")
    concurrency: int = Field(
        4, ge=1, le=64, description="Deliveries in flight at once (different calls; one call's events stay in order)."
    )

    @field_validator("events", "agents")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        return _unique(v, "value") if v is not None else v

    @model_validator(mode="after")
    def _delays(self) -> Webhook:
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds cannot be shorter than retry_initial_seconds")
        return self


_RECORDING_DIR = re.compile(r"/[A-Za-z0-9_./-]{0,511}")


class RecordingSettings(Model):
    """Call recording (docs/operations.md#call-recording): stereo files FreeSWITCH writes, one per call."""

    policy: RecordingPolicy = Field(
        "off", description="For calls whose number, agent and trunk set no recording policy."
    )
    directory: str | None = Field(
        None,
        description="Absolute directory on the FreeSWITCH host the files go to, named <call id>.<format>; "
        "letters, digits and _ . / - only.",
    )
    format: Literal["wav", "flac", "ogg"] = Field(
        "wav",
        description="wav (16-bit PCM), flac (lossless, about half the size) or ogg (Vorbis, lossy, about a tenth): "
        "all written by FreeSWITCH's mod_sndfile.",
    )
    announcement: Prompt | None = Field(
        None,
        description="Played to the caller before each recording starts: a sound file on the FreeSWITCH host or "
        "tone_stream://…; the recording starts when it has played.",
    )
    pause_mode: Literal["silence", "cut"] = Field(
        "silence",
        description="Paused parts become silence in the file (uuid_record mask: the file keeps the call's "
        "timeline) or are left out (uuid_record pause).",
    )
    retention_days: int | None = Field(
        None, ge=1, le=36500, description="Delete recordings older than this many days (none: keep all)."
    )
    local_files: bool = Field(
        True,
        description="The orchestrator sees the directory at the same path (same host or shared volume): it "
        "creates it 0700, sets each file to 0600, reads sizes and applies retention. false: FreeSWITCH's "
        "host does (docs/operations.md#call-recording).",
    )

    @field_validator("directory")
    @classmethod
    def _directory(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _RECORDING_DIR.fullmatch(v) or any(part in (".", "..") for part in v.split("/")):
            raise ValueError(
                f"{quote(v)} is not an absolute directory of letters, digits and _ . / - (no '..', at most "
                "512 characters): FreeSWITCH is given the path in its commands"
            )
        return v.rstrip("/") or "/"

    @field_validator("announcement")
    @classmethod
    def _announcement(cls, v: str | None) -> str | None:
        if v is not None and "::" in v:
            raise ValueError(f"{quote(v)}: an announcement cannot contain '::' (FreeSWITCH runs app::args)")
        return v


class AttendedTransferSettings(Model):
    """Attended (warm) transfers (docs/call-flow.md#attended-transfers): the target is dialled through a trunk
    while the caller stays with the agent, and bridged to the caller only once it has answered."""

    ring_timeout_seconds: int = Field(
        30, ge=5, le=300, description="The target must answer within this (FreeSWITCH's originate_timeout)."
    )
    brief_timeout_seconds: int = Field(
        30,
        ge=1,
        le=300,
        description="After the answer, the announcement must have played within this, else the attempt fails.",
    )
    announcement: Prompt | None = Field(
        None,
        description="Played to the target when it answers, before the caller is connected: a sound file on the "
        "FreeSWITCH host or tone_stream://… (none: the caller is connected at once).",
    )
    brief_header: XHeader | None = Field(
        None,
        description="Send the agent's brief to the target in this X- header of the INVITE (e.g. X-Transfer-Brief), "
        "for phones and PBXs that show it; none: the brief is only in the record.",
    )
    caller_id: Literal["trunk", "caller"] = Field(
        "trunk",
        description="The caller ID the target sees: the trunk's outbound caller_id, or the caller's own number "
        "(when it is E.164; else the trunk's).",
    )

    @field_validator("announcement")
    @classmethod
    def _announcement(cls, v: str | None) -> str | None:
        if v is not None and "::" in v:
            raise ValueError(f"{quote(v)}: an announcement cannot contain '::' (FreeSWITCH runs app::args)")
        return v


class TransferSettings(Model):
    """How the orchestrator transfers calls."""

    attended: AttendedTransferSettings = Field(default_factory=AttendedTransferSettings)


class Orchestrator(Model):
    """The runtime: which FreeSWITCH nodes to drive, where the media bridge is, the API, call records."""

    nodes: list[Node] = Field(
        default_factory=list,
        max_length=MAX_NODES,
        description="FreeSWITCH nodes; default: one node at freeswitch.event_socket (127.0.0.1 if it listens on all).",
    )
    media_url: WsUrl = Field(
        "ws://127.0.0.1:8090", description="Media bridge URL as FreeSWITCH's mod_audio_fork reaches it."
    )
    media_secret: MediaSecret | None = Field(
        None, description="Key for the per-call tokens in fork URLs (use ${ENV_VAR}); default: random per process."
    )
    media: MediaSettings = Field(default_factory=MediaSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    transfers: TransferSettings = Field(default_factory=TransferSettings)
    machine_detection: MachineDetection | None = Field(
        None, description=_MACHINE_HELP + " Here: for every outbound call whose agent and trunk set less."
    )
    api: HttpApi = Field(default_factory=HttpApi)
    records: Annotated[str, AfterValidator(records_location)] | None = Field(
        "calls.db",
        description="Where call records go (docs/operations.md): a file ending in .jsonl (JSON lines), a "
        "postgresql:// URL (PostgreSQL; the password from ${ENV} or PGPASSWORD), or else an SQLite database file; "
        "files are relative to this file.",
    )
    records_retention_days: int | None = Field(
        None,
        ge=1,
        le=36500,
        description="Delete stored call records older than this many days (SQLite and PostgreSQL; none: keep all).",
    )
    webhooks: list[Webhook] = Field(
        default_factory=list,
        max_length=16,
        description="Receivers of call and trunk events (docs/operations.md#webhooks); they need the call store.",
    )
    webhook_retention_days: int = Field(
        7, ge=1, le=3650, description="Keep delivered and dead-lettered webhook deliveries this many days."
    )
    originate_timeout_seconds: int = Field(60, ge=5, le=600, description="Ring time before an outbound call gives up.")
    command_timeout_seconds: float = Field(10.0, gt=0, le=120)
    node_lost_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="A node whose event socket stays unreachable this long is gone: its calls are recorded as lost "
        "(0: wait for it to come back).",
    )

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v: list[Node]) -> list[Node]:
        _unique([n.name for n in v], "node")
        return v

    @field_validator("webhooks")
    @classmethod
    def _webhooks(cls, v: list[Webhook]) -> list[Webhook]:
        _unique([w.name for w in v], "webhook")
        return v


class Deployment(Model):
    """A whole deployment. Build it with :func:`orchestrator.config.load_deployment` to get cross-checks."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="sipagent deployment")

    version: Literal[1] = 1
    freeswitch: FreeSwitch
    transports: Transports = Field(default_factory=lambda: Transports(tcp=TcpTransport()))
    trunks: list[Trunk] = Field(default_factory=list)
    numbers: list[Number] = Field(default_factory=list)
    agents: list[Agent] = Field(default_factory=list)
    orchestrator: Orchestrator = Field(default_factory=Orchestrator)
    edge: Edge | None = Field(
        None, description="A Kamailio edge in front of a pool of FreeSWITCH nodes (docs/scaling.md); none: one node."
    )

    @property
    def public_transports(self) -> Transports:
        """What carriers reach: the edge's transports with an edge, else the node's."""
        if self.edge is not None and self.edge.transports is not None:
            return self.edge.transports
        return self.transports

    @property
    def sip_domain(self) -> str:
        """Digest realm / directory domain actually used."""
        fs = self.freeswitch
        if fs.sip_domain:
            return fs.sip_domain
        if fs.ext_sip_ip and not fs.ext_sip_ip.startswith(("stun:", "host:")):
            return fs.ext_sip_ip
        return fs.bind_ip
