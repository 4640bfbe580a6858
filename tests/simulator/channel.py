"""A simulated FreeSWITCH channel: state, caller profile, variables and the header blocks of its events.

Header order, header names and the stage at which FreeSWITCH sets each variable follow the recordings
(fixtures 02, 03, 04, 06, 07 and tests/fixtures_esl 11-15). Values that depend on the network (ports,
tags, SSRCs, SDP) are plausible stand-ins.
"""

from __future__ import annotations

import random
import re
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .causes import q850
from .wire import Event

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch

STATE_NUMBERS = {
    "CS_NEW": 0,
    "CS_INIT": 1,
    "CS_ROUTING": 2,
    "CS_SOFT_EXECUTE": 3,
    "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5,
    "CS_PARK": 6,
    "CS_CONSUME_MEDIA": 7,
    "CS_HIBERNATE": 8,
    "CS_RESET": 9,
    "CS_HANGUP": 10,
    "CS_REPORTING": 11,
    "CS_DESTROY": 12,
    "CS_NONE": 13,
}
CALLSTATE_NUMBERS = {
    "DOWN": 0,
    "DIALING": 1,
    "RINGING": 2,
    "EARLY": 3,
    "ACTIVE": 4,
    "HELD": 5,
    "RING_WAIT": 6,
    "HANGUP": 7,
    "UNHELD": 8,
}
#: codec name -> (default rate, bit rate)
CODECS = {"PCMU": (8000, 64000), "PCMA": (8000, 64000), "G722": (16000, 64000), "OPUS": (48000, 0), "L16": (8000, 0)}
RTP_PT = {"PCMU": "0", "PCMA": "8", "G722": "9", "OPUS": "102", "L16": "100"}

#: (file, function, line) FreeSWITCH puts in Event-Calling-* for each event (recorded).
SOURCES: dict[str, tuple[str, str, int]] = {
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", 2408),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", 301),
    "CODEC_READ": ("switch_core_codec.c", "switch_core_session_set_real_read_codec", 168),
    "CODEC_WRITE": ("switch_core_codec.c", "switch_core_session_set_write_codec", 450),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626),
    "CHANNEL_ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", 632),
    "CHANNEL_OUTGOING": ("switch_core_session.c", "switch_core_session_outgoing_channel", 768),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3505),
    # not recorded (no 183 in the recordings); line number is a stand-in
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", 3680),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3846),
    "CALL_UPDATE": ("switch_channel.c", "switch_channel_flip_cid", 3277),
    "CALL_UPDATE_SEND": ("mod_sofia.c", "sofia_receive_message", 2100),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2944),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2967),
    "UUID_BRIDGE_A": ("switch_ivr_bridge.c", "uuid_bridge_on_soft_execute", 1236),
    "UUID_BRIDGE_B": ("switch_ivr_bridge.c", "uuid_bridge_on_soft_execute", 1243),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1002),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", 1213),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3445),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", 943),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1584),
    "DTMF": ("switch_channel.c", "switch_channel_dequeue_dtmf", 677),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1689),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1879),
    "MEDIA_BUG_START": ("switch_core_media_bug.c", "switch_core_media_bug_add", 1014),
    "MEDIA_BUG_STOP": ("switch_core_media_bug.c", "switch_core_media_bug_destroy", 84),
    # not recorded: file/function/line of switch_event_create in FreeSWITCH v1.10.12
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", 1646),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", 2020),
    # recorded in fixture 10
    "RECORD_START": ("switch_ivr_async.c", "record_callback", 1481),
    "RECORD_STOP": ("switch_ivr_async.c", "send_record_stop_event", 1240),
    "CHANNEL_DATA": ("mod_commands.c", "uuid_dump_function", 6468),
    "AUDIO_FORK": ("mod_audio_fork.c", "responseHandler", 22),
    "API": ("switch_loadable_module.c", "switch_api_execute", 2954),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1572),
    "NOTIFY_REFER": ("sofia.c", "sofia_handle_sip_i_notify", 630),
    # not recorded: where switch_event_create_subclass is called in FreeSWITCH v1.10.12
    "GATEWAY_STATE": ("sofia_reg.c", "sofia_reg_fire_custom_gateway_state_event", 156),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", 95),
    "RECV_RTCP_MESSAGE": ("switch_core_media.c", "switch_core_media_read_frame", 2945),
    "AVMD": ("mod_avmd.c", "avmd_fire_event", 700),
    "CUSTOM": ("mod_sofia.c", "sofia_event_callback", 1),
}

#: events that carry the channel variables (switch_channel_event_set_extended_data)
VAR_EVENTS = frozenset(
    {
        "CHANNEL_CREATE",
        "CHANNEL_ORIGINATE",
        "CHANNEL_PROGRESS",
        "CHANNEL_PROGRESS_MEDIA",
        "CHANNEL_ANSWER",
        "CALL_UPDATE",
        "CHANNEL_EXECUTE",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_PARK",
        "CHANNEL_UNPARK",
        "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE",
        "CHANNEL_DESTROY",
        "CHANNEL_BRIDGE",
        "CHANNEL_UNBRIDGE",
        "CHANNEL_DATA",
        "CUSTOM",
        "MEDIA_BUG_START",
        "MEDIA_BUG_STOP",
        "PLAYBACK_START",
        "PLAYBACK_STOP",
        "RECORD_START",
        "RECORD_STOP",
    }
)

#: columns of ``show channels`` (fixture 07)
SHOW_CHANNEL_FIELDS = [
    "uuid",
    "direction",
    "created",
    "created_epoch",
    "name",
    "state",
    "cid_name",
    "cid_num",
    "ip_addr",
    "dest",
    "application",
    "application_data",
    "dialplan",
    "context",
    "read_codec",
    "read_rate",
    "read_bit_rate",
    "write_codec",
    "write_rate",
    "write_bit_rate",
    "secure",
    "hostname",
    "presence_id",
    "presence_data",
    "accountcode",
    "callstate",
    "callee_name",
    "callee_num",
    "callee_direction",
    "call_uuid",
    "sent_callee_name",
    "sent_callee_num",
    "initial_cid_name",
    "initial_cid_num",
    "initial_ip_addr",
    "initial_dest",
    "initial_dialplan",
    "initial_context",
]

PROFILE_FIELDS = (
    "Direction",
    "Logical-Direction",
    "Username",
    "Dialplan",
    "Caller-ID-Name",
    "Caller-ID-Number",
    "Orig-Caller-ID-Name",
    "Orig-Caller-ID-Number",
    "Callee-ID-Name",
    "Callee-ID-Number",
    "Network-Addr",
    "ANI",
    "Destination-Number",
    "Unique-ID",
    "Source",
    "Transfer-Source",
    "Context",
    "RDNIS",
    "Channel-Name",
    "Profile-Index",
)
TIME_FIELDS = (
    ("Profile-Created-Time", "profile_created"),
    ("Channel-Created-Time", "created"),
    ("Channel-Answered-Time", "answered"),
    ("Channel-Progress-Time", "progress"),
    ("Channel-Progress-Media-Time", "progress_media"),
    ("Channel-Hangup-Time", "hangup"),
    ("Channel-Transfer-Time", "transfer"),
    ("Channel-Resurrect-Time", "resurrect"),
    ("Channel-Bridged-Time", "bridged"),
    ("Channel-Last-Hold", "last_hold"),
    ("Channel-Hold-Accum", "hold_accum"),
)

#: RTP statistics FreeSWITCH adds to CHANNEL_HANGUP_COMPLETE of a channel that had media (fixture 02 names).
DEFAULT_RTP_STATS: dict[str, str] = {
    "rtp_audio_in_raw_bytes": "59792",
    "rtp_audio_in_media_bytes": "59220",
    "rtp_audio_in_packet_count": "256",
    "rtp_audio_in_media_packet_count": "235",
    "rtp_audio_in_skip_packet_count": "0",
    "rtp_audio_in_jitter_packet_count": "0",
    "rtp_audio_in_dtmf_packet_count": "0",
    "rtp_audio_in_cng_packet_count": "0",
    "rtp_audio_in_flush_packet_count": "1",
    "rtp_audio_in_largest_jb_size": "0",
    "rtp_audio_in_jitter_min_variance": "0.00",
    "rtp_audio_in_jitter_max_variance": "0.00",
    "rtp_audio_in_jitter_loss_rate": "0.00",
    "rtp_audio_in_jitter_burst_rate": "0.00",
    "rtp_audio_in_mean_interval": "20.00",
    "rtp_audio_in_flaw_total": "0",
    "rtp_audio_in_quality_percentage": "100.00",
    "rtp_audio_in_mos": "4.50",
    "rtp_audio_out_raw_bytes": "0",
    "rtp_audio_out_media_bytes": "0",
    "rtp_audio_out_packet_count": "0",
    "rtp_audio_out_media_packet_count": "0",
    "rtp_audio_out_skip_packet_count": "0",
    "rtp_audio_out_dtmf_packet_count": "0",
    "rtp_audio_out_cng_packet_count": "0",
    "rtp_audio_rtcp_packet_count": "0",
    "rtp_audio_rtcp_octet_count": "0",
}


def now_us() -> int:
    """Wall clock in microseconds (Event-Date-Timestamp resolution)."""
    return int(time.time() * 1_000_000)


def new_uuid() -> str:
    """A random channel / job / application uuid."""
    return str(uuidlib.uuid4())


def _stamp(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us / 1_000_000))


def _epoch(us: int) -> int:
    """Whole seconds of a microsecond timestamp (0 stays 0)."""
    return us // 1_000_000 if us else 0


def atoi(text: str | None) -> int:
    """C ``atoi``: leading blanks, sign and digits; 0 when there are none."""
    m = re.match(r"\s*([+-]?\d+)", text or "")
    return int(m.group(1)) if m else 0


def _rand_tag(n: int = 13) -> str:
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return "".join(random.choice(alphabet) for _ in range(n))


@dataclass
class SimChannel:
    """One channel inside the simulated FreeSWITCH.

    The attributes tests usually look at: ``uuid``, ``direction``, ``state``, ``callstate``, ``answered``,
    ``parked``, ``variables`` (name -> value, insertion ordered like FreeSWITCH's), ``destination``,
    ``dialog_ended`` (True while ``alive`` = an orphaned channel, e.g. after a continue-after-reply REFER),
    ``caller_id``, ``events`` (every event fired for this channel), ``dtmf_sent`` (digit strings given to
    ``uuid_send_dtmf``), ``dtmf_received`` (digits the far end sent), ``fork`` (args of the running
    ``uuid_audio_fork``; ``fork["client"]`` is its :class:`~simulator.forkclient.ForkClient` when
    ``sim.fork_websocket`` is on), ``forks`` (every start), ``bugs`` (attached fork media bugs by bug name),
    ``fork_client``, ``audio`` (:class:`~simulator.media.ChannelAudio`: ``heard_frames``, ``heard_pcm()``; None until
    audio is used), ``hangup_cause``, ``bridged_to`` and ``alive``.
    """

    sim: SimulatedFreeSwitch = field(repr=False)
    uuid: str
    direction: str
    name: str
    destination: str
    caller_id: str
    caller_name: str
    context: str
    sofia_profile: str
    codec: str = "PCMU"
    rate: int = 8000
    variables: dict[str, str] = field(default_factory=dict)
    state: str = "CS_NEW"
    state_number: int = 0
    callstate: str = "DOWN"
    answer_state: str = "ringing"
    answered: bool = False
    parked: bool = False
    hangup_cause: str | None = None
    alive: bool = True
    events: list[Event] = field(default_factory=list, repr=False)
    dtmf_sent: list[str] = field(default_factory=list)
    dtmf_received: list[str] = field(default_factory=list)
    fork: dict[str, Any] | None = None
    forks: list[dict[str, Any]] = field(default_factory=list)
    bugs: dict[str, dict[str, Any]] = field(default_factory=dict)
    recordings: list[Any] = field(default_factory=list)  # uuid_record media bugs (simulator.recording)
    avmd: Any = None  # mod_avmd's media bug (simulator.avmd)
    audio: Any = field(default=None, repr=False)
    bridged_to: str | None = None
    rtp_stats: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RTP_STATS))
    #: the live RTP counters (:mod:`simulator.rtpstats`), from the first ``mediaStats`` or ``sim.set_rtp``;
    #: once there, the hang-up's ``rtp_audio_*`` variables come from it instead of ``rtp_stats``
    rtp: Any = field(default=None, repr=False)
    #: the RTP session's last RTCP report read (:class:`simulator.rtcp.RtcpFrame`), from the first one received
    rtcp_frame: Any = field(default=None, repr=False)
    #: a raw ``json`` API reply to give instead of the real one (tests of what FreeSWITCH could send)
    media_stats_reply: str | None = field(default=None, repr=False)
    # -- internals -------------------------------------------------------------------------------
    profile: dict[str, str] = field(default_factory=dict, repr=False)
    times: dict[str, int] = field(default_factory=dict, repr=False)
    has_profile: bool = True
    has_codec: bool = False
    hit_dialplan: bool = True
    call_uuid: str = ""
    other: SimChannel | None = field(default=None, repr=False)
    other_type: str | None = None
    other_snapshot: list[tuple[str, str]] = field(default_factory=list, repr=False)
    app_uuid: str | None = None
    application: str = ""
    application_data: str = ""
    media: bool = False
    early_media: bool = False
    session_id: int = 0
    refer_notify: str | None = "200"
    refers: list[str] = field(default_factory=list)
    refer_notified: bool = False  # recorded: after a REFER NOTIFY, sip_hangup_disposition is never set
    dialog_ended: bool = False  # the SIP dialog is over (BYE/CANCEL/final response, or BYE after a REFER NOTIFY)
    running_app: tuple[str, str, str] | None = field(default=None, repr=False)
    park_timer: Any = field(default=None, repr=False)
    bridge_kind: str | None = field(default=None, repr=False)
    bridge_done: Any = field(default=None, repr=False)
    gone: Any = field(default=None, repr=False)
    # the dialog as sofia keeps it (inbound: set from the INVITE; to_tag once answered)
    sip_call_id: str = field(default="", repr=False)
    sip_via: str = field(default="", repr=False)
    sip_full_from: str = field(default="", repr=False)
    sip_display: str | None = field(default=None, repr=False)
    sip_port: int = field(default=0, repr=False)
    to_tag: str = field(default="", repr=False)
    # an outbound leg: how the far end answers (simulator.dialing.Outcome) and its originate_timeout variable
    outcome: Any = field(default=None, repr=False)
    originate_timeout: str | None = field(default=None, repr=False)
    park_gen: int = 0  # switch_ivr_park invocations (one per CHANNEL_PARK)
    park_seen: int = -1  # the park invocation that has seen media (and read send_silence_when_idle)
    park_sval: int = 0  # atoi(send_silence_when_idle) as that park loop read it
    #: an unanswered inbound call the dialplan hung up: (status, phrase, headers) sofia answered the INVITE with
    sip_response: tuple[int, str, dict[str, str]] | None = None
    #: the far end's hold (:mod:`simulator.deadmedia`): None, or the SDP direction it re-INVITEd with
    hold_mode: str | None = None
    rtp_flowing: bool = True  # the far end sends RTP
    media_timer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        t = now_us()
        self.times = {k: 0 for _, k in TIME_FIELDS}
        self.times["created"] = self.times["profile_created"] = t
        self.call_uuid = self.call_uuid or self.uuid
        self.tag = _rand_tag()
        self.ssrc = str(random.randint(10**8, 4 * 10**9))
        self.local_media_port = random.randint(16384, 32767)
        self.remote_media_port = random.randint(6000, 6999)
        self.initial: dict[str, Any] = {}

    # -- variables -------------------------------------------------------------------------------
    def setvar(self, name: str, value: str | None) -> None:
        """Set (moving it to the end, like FreeSWITCH) or, with ``None``/empty, unset a channel variable."""
        self.variables.pop(name, None)
        if value is not None and value != "":
            self.variables[name] = value

    def setvars(self, pairs: list[tuple[str, str]] | dict[str, str]) -> None:
        """Set several variables in order."""
        items = pairs.items() if isinstance(pairs, dict) else pairs
        for k, v in items:
            self.setvar(k, v)

    def getvar(self, name: str) -> str | None:
        """A channel variable, or a few pseudo-variables FreeSWITCH resolves (uuid, state, ...)."""
        if name in self.variables:
            return self.variables[name]
        pseudo = {
            "uuid": self.uuid,
            "channel_name": self.name,
            "state": self.state,
            "caller_id_number": self.profile.get("Caller-ID-Number"),
            "caller_id_name": self.profile.get("Caller-ID-Name"),
            "destination_number": self.profile.get("Destination-Number"),
            "context": self.profile.get("Context"),
        }
        return pseudo.get(name)

    # -- header blocks ----------------------------------------------------------------------------
    def set_state(self, state: str, number: int | None = None) -> None:
        """Set the running state (Channel-State) and its number (Channel-State-Number)."""
        self.state = state
        self.state_number = STATE_NUMBERS[state] if number is None else number

    def profile_headers(self, prefix: str, with_index: bool = True) -> list[tuple[str, str]]:
        """``Caller-*`` (or ``Other-Leg-*``) headers of this channel's caller profile."""
        out: list[tuple[str, str]] = []
        for key in PROFILE_FIELDS:
            if not with_index and key in ("Profile-Index", "Transfer-Source", "RDNIS"):
                continue
            v = self.profile.get(key)
            if v is not None:
                out.append((prefix + key, v))
        for key, t in TIME_FIELDS:
            out.append((prefix + key, str(self.times.get(t, 0))))
        out += [(prefix + "Screen-Bit", "true"), (prefix + "Privacy-Hide-Name", "false")]
        out.append((prefix + "Privacy-Hide-Number", "false"))
        return out

    def channel_headers(self, *, hangup_first: bool = False) -> list[tuple[str, str]]:
        """The channel block: state, names, codec, caller profile and other leg (no variables)."""
        h = [
            ("Channel-State", self.state),
            ("Channel-Call-State", self.callstate),
            ("Channel-State-Number", str(self.state_number)),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
        ]
        if not self.has_profile:
            h += [
                ("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false"),
                ("Channel-Call-UUID", self.call_uuid),
                ("Answer-State", self.answer_state),
            ]
            return h
        h += [
            ("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false"),
            ("Channel-Call-UUID", self.call_uuid),
            ("Answer-State", self.answer_state),
        ]
        if self.hangup_cause:
            h.append(("Hangup-Cause", self.hangup_cause))
        if self.has_codec:
            bit = str(CODECS.get(self.codec, (self.rate, 0))[1])
            h += [
                ("Channel-Read-Codec-Name", self.codec),
                ("Channel-Read-Codec-Rate", str(self.rate)),
                ("Channel-Read-Codec-Bit-Rate", bit),
                ("Channel-Write-Codec-Name", self.codec),
                ("Channel-Write-Codec-Rate", str(self.rate)),
                ("Channel-Write-Codec-Bit-Rate", bit),
            ]
        h += self.profile_headers("Caller-")
        if self.other is not None and self.other_type:
            h.append(("Other-Type", self.other_type))
            h += self.other_snapshot
        return h

    def set_other(self, other: SimChannel, other_type: str) -> None:
        """Remember the other leg; FreeSWITCH copies its caller profile at this moment (Other-Leg-* headers)."""
        self.other, self.other_type = other, other_type
        self.other_snapshot = other.profile_headers("Other-Leg-", with_index=False)

    def variable_headers(self) -> list[tuple[str, str]]:
        """``variable_*`` headers."""
        return [(f"variable_{k}", v) for k, v in self.variables.items()]

    def build(
        self,
        name: str,
        *,
        source: str | None = None,
        pre: list[tuple[str, str]] | None = None,
        post: list[tuple[str, str]] | None = None,
        with_vars: bool | None = None,
        body: str | None = None,
        subclass: str | None = None,
    ) -> Event:
        """A complete channel event (core headers, event-specific headers, channel block, variables)."""
        ev = self.sim.core_event(name, source or name, subclass=subclass)
        ev.headers += pre or []
        ev.headers += self.channel_headers()
        if with_vars if with_vars is not None else name in VAR_EVENTS:
            ev.headers += self.variable_headers()
        ev.headers += post or []
        ev.body = body
        return ev

    def fire(self, name: str, **kw: Any) -> Event:
        """Build and deliver a channel event."""
        ev = self.build(name, **kw)
        self.events.append(ev)
        self.sim.deliver(ev)
        if name in ("CHANNEL_PARK", "CHANNEL_ANSWER"):
            self._park_media_check(new_park=name == "CHANNEL_PARK")
        return ev

    def _park_media_check(self, *, new_park: bool) -> None:
        """``switch_ivr_park`` reads ``send_silence_when_idle`` once, when its loop first has media (v1.10.12)."""
        if new_park:
            self.park_gen += 1
            self.park_sval = 0
        if self.park_seen == self.park_gen or not self.media or (not new_park and not self.parked):
            return
        self.park_seen = self.park_gen
        self.park_sval = atoi(self.variables.get("send_silence_when_idle"))
        if self.audio is not None:
            self.audio.kick()

    @property
    def fork_client(self) -> Any:
        """The :class:`~simulator.forkclient.ForkClient` of the latest attached fork (None without a socket)."""
        return self.fork.get("client") if self.fork is not None else None

    # -- common event helpers -----------------------------------------------------------------------
    def fire_state(self, state: str, number: int | None = None) -> None:
        """Change the running state and fire CHANNEL_STATE."""
        self.set_state(state, number)
        self.fire("CHANNEL_STATE")

    def fire_callstate(self, callstate: str) -> None:
        """Change the call state and fire CHANNEL_CALLSTATE."""
        orig = self.callstate
        self.callstate = callstate
        self.fire(
            "CHANNEL_CALLSTATE",
            pre=[
                ("Original-Channel-Call-State", orig),
                ("Channel-Call-State-Number", str(CALLSTATE_NUMBERS[callstate])),
            ],
        )

    def fire_codec(self) -> None:
        """The two CODEC events sofia fires when the codec is set (read, then write)."""
        self.has_codec = True
        bit = str(CODECS.get(self.codec, (self.rate, 0))[1])
        self.fire(
            "CODEC",
            source="CODEC_READ",
            post=[
                ("channel-read-codec-name", self.codec),
                ("channel-read-codec-rate", str(self.rate)),
                ("channel-read-codec-bit-rate", bit),
            ],
        )
        self.fire(
            "CODEC",
            source="CODEC_WRITE",
            post=[
                ("Channel-Write-Codec-Name", self.codec),
                ("Channel-Write-Codec-Rate", str(self.rate)),
                ("Channel-Write-codec-bit-rate", bit),
            ],
        )

    def execute(self, app: str, data: str = "") -> str:
        """Fire CHANNEL_EXECUTE for ``app``; returns the Application-UUID for the matching complete."""
        self.app_uuid = new_uuid()
        self.application, self.application_data = app, data
        self.setvar("current_application", app)
        if data:
            self.setvar("current_application_data", data)
        post = [("Application", app)]
        if data:
            post.append(("Application-Data", data))
        post.append(("Application-UUID", self.app_uuid))
        self.fire("CHANNEL_EXECUTE", post=post)
        self.setvar("current_application_data", None)
        return self.app_uuid

    def execute_complete(self, app: str, data: str = "", response: str = "_none_", app_uuid: str | None = None) -> None:
        """Fire CHANNEL_EXECUTE_COMPLETE."""
        post = [("Application", app)]
        if data:
            post.append(("Application-Data", data))
        post += [("Application-Response", response), ("Application-UUID", app_uuid or self.app_uuid or new_uuid())]
        self.fire("CHANNEL_EXECUTE_COMPLETE", post=post)
        self.last_app = app
        self.last_arg = data

    def finish_app(self) -> None:
        """The running application returns (``switch_core_session_exec``): its CHANNEL_EXECUTE_COMPLETE."""
        if self.running_app:
            app, data, app_uuid = self.running_app
            self.running_app = None
            self.execute_complete(app, data, app_uuid=app_uuid)

    def unpark(self) -> None:
        """``switch_ivr_park``'s loop ends (a parked channel is taken elsewhere): CHANNEL_UNPARK."""
        if self.parked:
            self.fire("CHANNEL_UNPARK")
            self.parked = False

    def enter_park(self) -> None:
        """``switch_ivr_park`` starts: CHANNEL_PARK."""
        self.fire("CHANNEL_PARK")
        self.parked = True

    # -- variable sets by call stage (order as recorded) -------------------------------------------
    def sdp(self, ip: str, port: int, origin: str = "FreeSWITCH") -> str:
        """A small SDP offer/answer for this channel's codec."""
        pt = RTP_PT.get(self.codec, "0")
        lines = [
            "v=0",
            f"o={origin} 1795432480 1795432481 IN IP4 {ip}",
            f"s={origin}",
            f"c=IN IP4 {ip}",
            "t=0 0",
            f"m=audio {port} RTP/AVP {pt} 101",
            f"a=rtpmap:{pt} {self.codec}/{self.rate}",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
        ]
        return "\r\n".join(lines) + "\r\n"

    def answer_media_vars(self) -> list[tuple[str, str]]:
        """Variables set when media is negotiated (in CHANNEL_ANSWER of a uuid_answer'ed inbound call)."""
        local = self.sim.local_ip
        return [
            ("rtp_local_sdp_str", self.sdp(local, self.local_media_port) + "a=sendrecv\r\n"),
            ("local_media_ip", local),
            ("local_media_port", str(self.local_media_port)),
            ("advertised_media_ip", local),
            ("rtp_use_timer_name", "soft"),
            ("rtp_use_pt", RTP_PT.get(self.codec, "0")),
            ("rtp_use_ssrc", self.ssrc),
            ("rtp_2833_send_payload", "101"),
            ("rtp_2833_recv_payload", "101"),
            ("remote_media_ip", self.sim.peer_ip),
            ("remote_media_port", str(self.remote_media_port)),
        ]

    def cdr_vars(self) -> list[tuple[str, str]]:
        """The timing variables FreeSWITCH adds in the reporting state (CHANNEL_HANGUP_COMPLETE), in the order of
        ``switch_channel_set_timestamps`` (``src/switch_channel.c``): stamps, epochs, caller id, durations."""
        end = self.times["hangup"] or now_us()
        out: list[tuple[str, str]] = [("digits_dialed", "".join(self.dtmf_received) or "none")]
        out += self._cdr_stamps(end)
        out += self._cdr_epochs(end)
        if getattr(self, "last_app", None):
            out.append(("last_app", self.last_app))
            if getattr(self, "last_arg", ""):
                out.append(("last_arg", self.last_arg))
        name, num = self.profile.get("Caller-ID-Name"), self.profile.get("Caller-ID-Number", "")
        out.append(("caller_id", f'"{name}" <{num}>' if name and name != num else num))
        return out + self._cdr_durations(end)

    def _cdr_stamps(self, end: int) -> list[tuple[str, str]]:
        t = self.times
        out = [("start_stamp", _stamp(t["created"])), ("profile_start_stamp", _stamp(t["profile_created"]))]
        for name, key in (("answer", "answered"), ("progress", "progress"), ("progress_media", "progress_media"),
                          ("bridge", "bridged")):  # fmt: skip
            if t[key]:
                out.append((f"{name}_stamp", _stamp(t[key])))
        out.append(("end_stamp", _stamp(end)))
        return out

    def _cdr_epochs(self, end: int) -> list[tuple[str, str]]:
        t = self.times
        out: list[tuple[str, str]] = []
        for name, us in (
            ("start", t["created"]),
            ("profile_start", t["profile_created"]),
            ("answer", t["answered"]),
            ("bridge", t["bridged"]),
            ("last_hold", 0),
        ):
            out += [(f"{name}_epoch", str(_epoch(us))), (f"{name}_uepoch", str(us))]
        out += [("hold_accum_seconds", "0"), ("hold_accum_usec", "0"), ("hold_accum_ms", "0")]
        for name, us in (("resurrect", 0), ("progress", t["progress"]), ("progress_media", t["progress_media"]),
                         ("end", end)):  # fmt: skip
            out += [(f"{name}_epoch", str(_epoch(us))), (f"{name}_uepoch", str(us))]
        return out

    def _cdr_durations(self, end: int) -> list[tuple[str, str]]:
        """``duration``, ``billsec``, ... in seconds, then all in ms (``mduration``, ...), then in us."""
        t = self.times
        start, ans, prog, pmed, bridge = t["created"], t["answered"], t["progress"], t["progress_media"], t["bridged"]

        def diff_s(a: int, b: int) -> int:
            return _epoch(a) - _epoch(b) if a and b else 0

        def diff_us(a: int, b: int) -> int:
            return a - b if a and b else 0

        secs = [  # (seconds name, ms name, us name), whole seconds, microseconds
            (("duration", "mduration", "uduration"), diff_s(end, start), end - start),
            (("billsec", "billmsec", "billusec"), diff_s(end, ans), diff_us(end, ans)),
            (("progresssec", "progressmsec", "progressusec"), diff_s(prog, start), diff_us(prog, start)),
            (("answersec", "answermsec", "answerusec"), diff_s(ans, start), diff_us(ans, start)),
            (("waitsec", "waitmsec", "waitusec"), diff_s(bridge, start), diff_us(bridge, start)),
            (("progress_mediasec", "progress_mediamsec", "progress_mediausec"), diff_s(pmed, start),
             diff_us(pmed, start)),
            (("flow_billsec", "flow_billmsec", "flow_billusec"), diff_s(end, start) if ans else 0,
             (end - start) if ans else 0),
        ]  # fmt: skip
        out: list[tuple[str, str]] = []
        for i in range(3):
            for labels, s, us in secs:
                value = s if i == 0 else (us // 1000 if i == 1 else us)
                out.append((labels[i], str(value)))
        return out

    def hangup_cause_vars(self, cause: str) -> list[tuple[str, str]]:
        """``hangup_cause`` and ``hangup_cause_q850``."""
        return [("hangup_cause", cause), ("hangup_cause_q850", str(q850(cause)))]

    # -- show channels / calls rows ------------------------------------------------------------------
    def show_row(self) -> dict[str, str]:
        """The row ``show channels`` prints for this channel (38 columns, all strings)."""
        created_us = self.times["created"]
        init = self.initial
        other = self.other if self.bridged_to else None
        return {
            "uuid": self.uuid,
            "direction": self.direction,
            "created": _stamp(created_us),
            "created_epoch": str(created_us // 1_000_000),
            "name": self.name,
            "state": self.state,
            "cid_name": self.profile.get("Caller-ID-Name", ""),
            "cid_num": self.profile.get("Caller-ID-Number", ""),
            "ip_addr": self.profile.get("Network-Addr", ""),
            "dest": self.profile.get("Destination-Number", ""),
            "application": self.application if self.alive and self.application else "",
            "application_data": self.application_data if self.application else "",
            "dialplan": self.profile.get("Dialplan", "XML"),
            "context": self.profile.get("Context", ""),
            "read_codec": self.codec if self.has_codec else "",
            "read_rate": str(self.rate) if self.has_codec else "",
            "read_bit_rate": str(CODECS.get(self.codec, (0, 0))[1]) if self.has_codec else "",
            "write_codec": self.codec if self.has_codec else "",
            "write_rate": str(self.rate) if self.has_codec else "",
            "write_bit_rate": str(CODECS.get(self.codec, (0, 0))[1]) if self.has_codec else "",
            "secure": "",
            "hostname": self.sim.hostname,
            "presence_id": "",
            "presence_data": "",
            "accountcode": "",
            "callstate": self.callstate,
            "callee_name": self.profile.get("Callee-ID-Name", "") if other else "",
            "callee_num": self.profile.get("Callee-ID-Number", "") if other else "",
            "callee_direction": "SEND" if other else "",
            "call_uuid": self.call_uuid if other else "",
            "sent_callee_name": (other.profile.get("Caller-ID-Name", "") if other else ""),
            "sent_callee_num": (other.profile.get("Caller-ID-Number", "") if other else ""),
            "initial_cid_name": init.get("cid_name", ""),
            "initial_cid_num": init.get("cid_num", ""),
            "initial_ip_addr": init.get("ip_addr", ""),
            "initial_dest": init.get("dest", ""),
            "initial_dialplan": init.get("dialplan", ""),
            "initial_context": init.get("context", ""),
        }

    def remember_initial(self) -> None:
        """Freeze the ``initial_*`` columns of ``show channels``."""
        self.initial = {
            "cid_name": self.profile.get("Caller-ID-Name", ""),
            "cid_num": self.profile.get("Caller-ID-Number", ""),
            "ip_addr": self.profile.get("Network-Addr", ""),
            "dest": self.profile.get("Destination-Number", ""),
            "dialplan": self.profile.get("Dialplan", ""),
            "context": self.profile.get("Context", ""),
        }

    def event_names(self) -> list[str]:
        """Names of the events fired for this channel so far (CUSTOM shown as its subclass)."""
        return [e.subclass or e.name for e in self.events]


def runs_on_answer(ch: SimChannel, app: str) -> bool:
    """The channel ran ``app`` at its answer (an ``execute_on_answer*`` variable: switch_channel_execute_on)."""
    return ch.answered and any(
        name.startswith("execute_on_answer") and value.split(" ", 1)[0] == app.split(" ", 1)[0]
        and value.partition(" ")[2] == app.partition(" ")[2]
        for name, value in ch.variables.items()
    )  # fmt: skip
