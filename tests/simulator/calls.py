"""Call flows of the simulator: inbound calls, park / answer / hangup, originate, bridge, transfer, REFER, fork.

Event sequences follow the recordings:

* inbound (dialplan ``set`` ... ``park``, like sipagent's rendered dialplan): tests/fixtures_esl/11-park-claim;
  with ``answered=True`` (``answer`` then ``park``): fixture 02;
* ``uuid_park`` of a channel in the dialplan's park: CHANNEL_UNPARK, CHANNEL_EXECUTE_COMPLETE(park),
  CHANNEL_STATE(CS_PARK), CHANNEL_PARK -- and the dialplan's ``park_timeout`` no longer applies (11);
  ``uuid_park`` again on a channel parked by ``uuid_park`` only fires CHANNEL_UNPARK (11, quirk);
* unclaimed park: ``park_timeout=N:CAUSE`` hangs up with CAUSE (503 to the caller; 12);
* originate success / failure: fixtures 03 / 04; ``uuid_transfer ... 'bridge:...' inline`` and ``uuid_bridge``:
  tests/fixtures_esl/14-bridge; REFER: fixture 06 (blocking) and tests/fixtures_esl/13-refer-continue.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import fsstrings
from .audiofork import ForkClient, ForkSpec
from .causes import SIP_FAILURES, normalize_cause, q850
from .channel import SimChannel, new_uuid, now_us
from .media import ChannelAudio

if TYPE_CHECKING:  # pragma: no cover
    from .api import Job
    from .server import SimulatedFreeSwitch

SIPFRAG_PHRASES = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    202: "Accepted",
    403: "Forbidden",
    404: "Not Found",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    500: "Server Internal Error",
    503: "Service Unavailable",
    603: "Declined",
}


class DialError(Exception):
    """An originate that fails before any channel exists (INVALID_GATEWAY, CHAN_NOT_IMPLEMENTED, ...)."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


@dataclass
class Outcome:
    """How the far end answers an outbound leg."""

    kind: str  # "answer", "no-answer" or a SIP status ("486", ...)
    ring_ms: int = 50
    answer_ms: int = 100
    early: str | None = "180"


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "yes", "on", "1", "enabled", "active", "allow")


def parse_dial_string(dial: str) -> tuple[list[tuple[str, str]], str]:
    """``{a=b,c=d}[e=f]sofia/...`` -> ([("a","b"), ...], "sofia/..."): the variables and endpoint of the first leg
    as FreeSWITCH takes the dial string apart (:func:`.fsstrings.parse_dial_string` has every leg)."""
    parsed = fsstrings.parse_dial_string(dial)
    leg = parsed.groups[0][0]
    return parsed.variables + leg.variables, leg.endpoint


def _codec_vars(codec: str, rate: int) -> list[tuple[str, str]]:
    """The negotiated-codec variables FreeSWITCH sets on a channel (recorded order)."""
    return [
        ("rtp_use_codec_name", codec),
        ("rtp_use_codec_rate", str(rate)),
        ("rtp_use_codec_ptime", "20"),
        ("rtp_use_codec_channels", "1"),
        ("rtp_last_audio_codec_string", f"{codec}@{rate}h@20i@1c"),
        ("read_codec", codec),
        ("original_read_codec", codec),
        ("read_rate", str(rate)),
        ("original_read_rate", str(rate)),
        ("write_codec", codec),
        ("write_rate", str(rate)),
        ("dtmf_type", "rfc2833"),
    ]


class CallFlows:
    """Mixin with the telephone-network side of :class:`~simulator.server.SimulatedFreeSwitch`."""

    channels: dict[str, SimChannel]

    def _init_calls(self: SimulatedFreeSwitch) -> None:
        self._outcomes: list[tuple[str, Outcome]] = []
        self._refer_outcomes: dict[str, str | None] = {}
        self._peer_port = 5061
        self.auto_gateways = True
        self._gone: dict[str, SimChannel] = {}  # ended channels that had forks (fork_client lookups)
        self.files: dict[str, bytes] = {}  # files written by the simulated modules (playAudio temp files)
        self.play_count = 0  # mod_audio_fork's global playAudio file counter
        self.dial_strings: list[fsstrings.DialString] = []  # every dial string taken apart (originate, bridge)

    # ================================================================================================
    # scripting the outside world
    # ================================================================================================
    def add_gateway(self: SimulatedFreeSwitch, name: str, *, profile: str = "tcp", proxy: str = "127.0.0.1",
                    username: str = "sipagent", state: str = "NOREG") -> None:  # fmt: skip
        """Declare a sofia gateway (``sofia/gateway/<name>/...``) on ``profile``."""
        self.profiles.setdefault(profile, "sip:mod_sofia@127.0.0.1:5060")
        self.gateways[name] = {
            "profile": profile,
            "proxy": proxy,
            "username": username,
            "to": f"sip:{username}@{proxy}",
            "state": state,
        }

    def set_originate_outcome(self: SimulatedFreeSwitch, destination_pattern: str, outcome: str, *,
                              ring_ms: int = 50, answer_ms: int = 100, early: str | None = "180") -> None:  # fmt: skip
        """How calls to numbers/URIs matching ``destination_pattern`` (fnmatch, e.g. ``+1555*``) end.

        ``outcome``: ``"answer"``, a SIP final status (``"486"``, ``"404"``, ``"480"``, ``"403"``, ``"488"``,
        ``"503"``, ``"603"``, ...) or ``"no-answer"`` (rings until ``originate_timeout``, default 60 s).
        ``early``: ``"180"`` (CHANNEL_PROGRESS), ``"183"`` (CHANNEL_PROGRESS_MEDIA) or ``None``; it comes
        ``ring_ms`` after the INVITE, the final answer ``answer_ms`` after that. Latest setting wins.
        """
        if outcome not in ("answer", "no-answer") and not outcome.isdigit():
            raise ValueError(f"unknown outcome {outcome!r}")
        self._outcomes.insert(0, (destination_pattern, Outcome(outcome, ring_ms, answer_ms, early)))

    def set_refer_outcome(self: SimulatedFreeSwitch, uuid_or_star: str, notify: str | None) -> None:
        """What the caller's phone does with our REFER: 202 and then NOTIFY ``"200"``/``"603"``/..., or
        ``None``: 202 but never a NOTIFY. ``"*"`` sets the default (``"200"``)."""
        self._refer_outcomes[uuid_or_star] = notify

    def set_fork_outcome(self: SimulatedFreeSwitch, url_pattern: str, outcome: str = "connect",
                         reason: str | None = None) -> None:  # fmt: skip
        """Whether ``uuid_audio_fork start`` to URLs matching ``url_pattern`` connects (``"connect"``) or fires
        ``mod_audio_fork::connect_failed`` (``"connect_failed"``, body ``{"reason":"Unable to connect"}``)."""
        self.fork_outcomes.insert(0, (url_pattern, outcome, reason))

    async def inbound_call(self: SimulatedFreeSwitch, *, destination: str, caller_id: str = "+15551230000",
                           context: str = "trunk-x", variables: dict[str, str] | None = None,
                           sip_headers: dict[str, str] | None = None, codec: str = "PCMU", rate: int = 8000,
                           profile: str = "tcp", park_timeout: str | None = None, answered: bool = False,
                           caller_name: str | None = None, uuid: str | None = None) -> SimChannel:  # fmt: skip
        """An INVITE arrives and the dialplan runs ``set`` for each of ``variables`` (then ``park_timeout``),
        optionally ``answer``, then ``park``: the recorded event sequence up to CHANNEL_PARK.

        ``sip_headers`` become ``variable_sip_h_<name>`` (already on CHANNEL_CREATE); ``park_timeout`` is
        ``"<seconds>:<CAUSE>"`` (fractions allowed here) and ends an unclaimed call with that cause.
        """
        self.profiles.setdefault(profile, "sip:mod_sofia@127.0.0.1:5060")
        self._peer_port += 1
        port = self._peer_port
        peer = self.peer_ip
        name = f"sofia/{profile}/{caller_id}@{peer}:{port}"
        ch = SimChannel(
            sim=self,
            uuid=uuid or new_uuid(),
            direction="inbound",
            name=name,
            destination=destination,
            caller_id=caller_id,
            caller_name=caller_name or caller_id,
            context=context,
            sofia_profile=profile,
            codec=codec.upper(),
            rate=rate,
        )
        self._register(ch)
        ch.profile = {
            "Direction": "inbound",
            "Logical-Direction": "inbound",
            "Username": caller_id,
            "Dialplan": "XML",
            "Caller-ID-Name": ch.caller_name,
            "Caller-ID-Number": caller_id,
            "Orig-Caller-ID-Name": ch.caller_name,
            "Orig-Caller-ID-Number": caller_id,
            "Network-Addr": peer,
            "ANI": caller_id,
            "Destination-Number": destination,
            "Unique-ID": ch.uuid,
            "Source": "mod_sofia",
            "Context": context,
            "Channel-Name": name,
            "Profile-Index": "1",
        }
        ch.remember_initial()
        # CS_NEW: the very first event has no codec and no caller profile
        ch.has_profile = False
        ch.set_state("CS_NEW")
        ch.fire("CHANNEL_STATE")
        ch.has_profile = True
        ch.fire_codec()
        ch.fire_state("CS_INIT")
        ch.setvars(self._inbound_vars(ch, port, sip_headers or {}))
        ch.set_state("CS_INIT", 2)
        ch.fire("CHANNEL_CREATE")
        ch.set_state("CS_ROUTING")
        ch.fire_callstate("RINGING")
        ch.fire_state("CS_ROUTING")
        self.sequence += 1  # recorded: one event of the routing step never reaches a listener
        ch.setvar("call_uuid", ch.uuid)
        ch.fire_state("CS_EXECUTE")
        sets = list((variables or {}).items())
        if park_timeout:
            sets.append(("park_timeout", park_timeout))
        for k, v in sets:
            app_uuid = ch.execute("set", f"{k}={v}")
            ch.setvar(k, v)
            ch.execute_complete("set", f"{k}={v}", app_uuid=app_uuid)
        if answered:
            app_uuid = ch.execute("answer")
            self.answer(ch)
            ch.execute_complete("answer", app_uuid=app_uuid)
        self._dialplan_park(ch)
        await asyncio.sleep(0)
        return ch

    async def remote_hangup(self: SimulatedFreeSwitch, uuid: str, cause: str = "NORMAL_CLEARING",
                            sip_status: int | None = None) -> None:  # fmt: skip
        """The far end hangs up: BYE on an answered call (``sip_term_status`` = ``sip_status`` or 200), CANCEL
        from an inbound caller before answer, or a final error response on a ringing outbound leg."""
        ch = self.channels.get(uuid)
        if ch is None or not ch.alive:
            raise KeyError(f"no live channel {uuid}")
        cause = normalize_cause(cause)
        if ch.answered:
            status = sip_status or 200
            pre = [
                ("sip_term_status", str(status)),
                ("proto_specific_hangup_cause", f"sip:{status}"),
                ("sip_term_cause", str(q850(cause))),
            ]
            self.hangup(ch, cause, disposition="recv_bye", pre_vars=pre)
        elif ch.direction == "inbound":
            self.hangup(ch, cause, disposition="recv_cancel")
        else:
            self._reject(ch, sip_status or 480)
        await asyncio.sleep(0)

    async def remote_dtmf(self: SimulatedFreeSwitch, uuid: str, digits: str, duration: int = 2000) -> None:
        """The far end sends RFC 2833 digits: one DTMF event each (``DTMF-Source: RTP``, duration in samples)."""
        ch = self.channels[uuid]
        for d in digits:
            ch.dtmf_received.append(d)
            ch.fire("DTMF", post=[("DTMF-Digit", d), ("DTMF-Duration", str(duration)), ("DTMF-Source", "RTP")])
        await asyncio.sleep(0)

    async def fire_custom(self: SimulatedFreeSwitch, uuid: str, subclass: str, body: str | None = None) -> None:
        """A CUSTOM event for a channel (e.g. ``mod_audio_fork::transcription`` with a JSON body)."""
        ch = self.channels[uuid]
        source = "AUDIO_FORK" if subclass.startswith("mod_audio_fork::") else "CUSTOM"
        ch.fire("CUSTOM", subclass=subclass, body=body, source=source)
        if subclass in ("mod_audio_fork::connect_failed", "mod_audio_fork::disconnect") and ch.fork is not None:
            self._detach_fork(ch, ch.fork)  # scripted: the fork is dropped
            ch.fork = None
        await asyncio.sleep(0)

    async def wait_for(self, predicate: Any, timeout: float = 2.0, interval: float = 0.005) -> None:
        """Wait until ``predicate()`` is true (raises ``TimeoutError``)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("simulator: condition not reached")
            await asyncio.sleep(interval)

    # ================================================================================================
    # channel primitives
    # ================================================================================================
    def _register(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        self.channels[ch.uuid] = ch
        self.sessions_since_startup += 1
        ch.session_id = self.sessions_since_startup
        self.peak_sessions = max(self.peak_sessions, len(self.channels))
        ch.gone = asyncio.Event()

    def _inbound_vars(self: SimulatedFreeSwitch, ch: SimChannel, port: int, sip_headers: dict[str, str]) -> list:
        peer, local = self.peer_ip, self.local_ip
        prof_url = self.profiles[ch.sofia_profile]
        prof_port = prof_url.rsplit(":", 1)[-1]
        transport = ch.sofia_profile if ch.sofia_profile in ("tcp", "tls", "udp") else "udp"
        caller, dest = ch.caller_id, ch.destination
        call_id = f"{new_uuid()}@{peer}"
        via = f"SIP/2.0/{transport.upper()} {peer}:{port};branch=z9hG4bK-{ch.tag}"
        display = ch.caller_name if ch.caller_name != caller else None
        full_from = (f'"{display}" ' if display else "") + f"<sip:{caller}@{peer}:{port}>;tag={ch.tag}"
        v: list[tuple[str, str]] = [
            ("direction", "inbound"),
            ("uuid", ch.uuid),
            ("call_uuid", ch.uuid),
            ("session_id", str(ch.session_id)),
            ("sip_from_user", caller),
            ("sip_from_port", str(port)),
            ("sip_from_uri", f"{caller}@{peer}:{port}"),
            ("sip_from_host", peer),
            ("video_media_flow", "disabled"),
            ("text_media_flow", "disabled"),
            ("channel_name", ch.name),
            ("sip_call_id", call_id),
            ("sip_local_network_addr", local),
            ("sip_network_ip", peer),
            ("sip_network_port", str(port)),
            ("sip_invite_stamp", str(ch.times["created"])),
            ("sip_received_ip", peer),
            ("sip_received_port", str(port)),
            ("sip_via_protocol", transport),
            ("sip_from_user_stripped", caller.lstrip("+")),
            ("sip_from_tag", ch.tag),
            ("sofia_profile_name", ch.sofia_profile),
            ("sofia_profile_url", prof_url),
            ("recovery_profile_name", ch.sofia_profile),
            ("sip_full_via", via),
        ]
        if transport != "udp":
            v.append(("sip_recover_via", via))
        if display:
            v.append(("sip_from_display", display))
        v += [
            ("sip_full_from", full_from),
            ("sip_full_to", f"<sip:{dest}@{local}:{prof_port}>"),
            ("sip_req_user", dest),
            ("sip_req_port", prof_port),
            ("sip_req_uri", f"{dest}@{local}:{prof_port}"),
            ("sip_req_host", local),
            ("sip_to_user", dest),
            ("sip_to_port", prof_port),
            ("sip_to_uri", f"{dest}@{local}:{prof_port}"),
            ("sip_to_host", local),
            ("sip_contact_params", f"transport={transport.upper()}"),
            ("sip_contact_user", caller),
            ("sip_contact_port", str(port)),
            ("sip_contact_uri", f"{caller}@{peer}:{port}"),
            ("sip_contact_host", peer),
            ("sip_user_agent", "simulated-carrier"),
            ("sip_via_host", peer),
            ("sip_via_port", str(port)),
        ]
        if transport != "udp":
            v.append(("sip_via_rport", str(port)))
        v.append(("max_forwards", "70"))
        v += [(f"sip_h_{k}", val) for k, val in sip_headers.items()]
        codec, rate = ch.codec, ch.rate
        v += [
            ("switch_r_sdp", ch.sdp(peer, ch.remote_media_port, origin="carrier")),
            ("ep_codec_string", f"CORE_PCM_MODULE.{codec}@{rate}h@20i@64000b"),
            ("rtp_use_codec_string", "PCMA,PCMU"),
            ("remote_video_media_flow", "inactive"),
            ("remote_text_media_flow", "inactive"),
            ("remote_audio_media_flow", "sendrecv"),
            ("audio_media_flow", "sendrecv"),
            ("remote_media_ip", peer),
            ("remote_media_port", str(ch.remote_media_port)),
            ("rtp_audio_recv_pt", "0" if codec == "PCMU" else "8"),
            *_codec_vars(codec, rate),
            ("endpoint_disposition", "RECEIVED"),
        ]
        ch.sip_call_id = call_id
        ch.sip_via = via
        ch.sip_full_from = full_from
        ch.sip_display = display
        ch.sip_port = port
        return v

    def answer(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """Answer an inbound channel: CHANNEL_ANSWER, CHANNEL_CALLSTATE(ACTIVE) (recorded for uuid_answer)."""
        ch.setvars(ch.answer_media_vars())
        ch.answered = True
        ch.media = True
        ch.answer_state = "answered"
        ch.times["answered"] = now_us()
        ch.fire("CHANNEL_ANSWER")
        ch.fire_callstate("ACTIVE")
        if ch.direction == "inbound":
            prof_port = self.profiles[ch.sofia_profile].rsplit(":", 1)[-1]
            to_tag = getattr(ch, "to_tag", None) or new_uuid()[:13].replace("-", "")
            ch.to_tag = to_tag
            post: list[tuple[str, str]] = [
                ("endpoint_disposition", "ANSWER"),
                ("sip_to_tag", to_tag),
                ("sip_from_tag", ch.tag),
                ("sip_cseq", "1"),
                ("sip_call_id", ch.sip_call_id),
                ("sip_full_via", ch.sip_via),
            ]
            if ch.sip_display:
                post.append(("sip_from_display", ch.sip_display))
            post += [
                ("sip_full_from", ch.sip_full_from),
                ("sip_full_to", f"<sip:{ch.destination}@{self.local_ip}:{prof_port}>;tag={to_tag}"),
            ]
            ch.setvars(post)

    def _dialplan_park(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """The dialplan's ``park`` application (reads and clears ``park_timeout``)."""
        app_uuid = ch.execute("park")
        ch.running_app = ("park", "", app_uuid)
        timeout = ch.variables.get("park_timeout")
        ch.setvar("park_timeout", None)
        ch.fire("CHANNEL_PARK")
        ch.parked = True
        if timeout:
            secs, _, cause = timeout.partition(":")
            try:
                seconds = float(secs)
            except ValueError:
                seconds = 0
            if seconds > 0:
                ch.park_timer = self.spawn(self._park_timeout(ch, seconds, normalize_cause(cause or "NORMAL_CLEARING")))

    async def _park_timeout(self: SimulatedFreeSwitch, ch: SimChannel, seconds: float, cause: str) -> None:
        await asyncio.sleep(seconds)
        ch.park_timer = None
        if ch.alive and ch.parked:
            self.hangup(ch, cause)

    def _cancel_park_timer(self, ch: SimChannel) -> None:
        timer = ch.park_timer
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        ch.park_timer = None

    def park(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """``uuid_park`` (recorded in tests/fixtures_esl/11-park-claim)."""
        self._cancel_park_timer(ch)
        if ch.parked and ch.running_app and ch.running_app[0] == "park":
            ch.state_number = 6
            ch.fire("CHANNEL_UNPARK")
            ch.parked = False
            _, data, app_uuid = ch.running_app
            ch.running_app = None
            ch.execute_complete("park", app_uuid=app_uuid)
            ch.fire_state("CS_PARK")
            ch.fire("CHANNEL_PARK")
            ch.parked = True
        elif ch.parked:
            ch.fire("CHANNEL_UNPARK")  # recorded quirk: no new CHANNEL_PARK, the state is already CS_PARK
            ch.parked = False
        elif ch.state == "CS_PARK":
            pass
        else:
            if ch.bridged_to:
                peer = self.channels.get(ch.bridged_to)
                if peer is not None:
                    self._peer_gone(peer, ch)
            if ch.running_app:
                app, data, app_uuid = ch.running_app
                ch.running_app = None
                ch.execute_complete(app, data, app_uuid=app_uuid)
            ch.fire_state("CS_PARK")
            ch.fire("CHANNEL_PARK")
            ch.parked = True

    def hangup(self: SimulatedFreeSwitch, ch: SimChannel, cause: str, *, disposition: str | None = None,
               pre_vars: list[tuple[str, str]] | None = None, post_vars: list[tuple[str, str]] | None = None,
               result_hook: Any = None) -> None:  # fmt: skip
        """Hang a channel up and run the recorded teardown sequence up to CHANNEL_STATE(CS_DESTROY).

        ``result_hook`` (an originate's BACKGROUND_JOB) runs after CHANNEL_HANGUP when
        ``bgjob_before_hangup_complete`` is set, else after CHANNEL_HANGUP_COMPLETE.
        """
        if not ch.alive or ch.hangup_cause:
            return
        self._cancel_park_timer(ch)
        if disposition is None:
            if ch.answered:
                disposition = "send_bye"
            elif ch.direction == "inbound":
                disposition = "send_refuse"
            else:
                disposition = "send_cancel"
        ch.setvars(pre_vars or [])
        ch.dialog_ended = True
        ch.hangup_cause = cause
        ch.answer_state = "hangup"
        ch.times["hangup"] = now_us()
        ch.state_number = 10
        ch.fire("CHANNEL_HANGUP")
        if disposition in ("recv_bye", "recv_cancel"):
            ch.setvar("sip_hangup_disposition", disposition)
        ch.setvars(ch.hangup_cause_vars(cause))
        if result_hook is not None and self.bgjob_before_hangup_complete:
            result_hook()
        if ch.parked:
            ch.fire("CHANNEL_UNPARK")
            ch.parked = False
        if ch.running_app:
            app, data, app_uuid = ch.running_app
            ch.running_app = None
            ch.execute_complete(app, data, app_uuid=app_uuid)
        ch.fire_state("CS_HANGUP")
        for fork in list(ch.bugs.values()):  # the client closes 1000 "" (after CHANNEL_HANGUP), no ::disconnect
            self._detach_fork(ch, fork)
            ch.fire("MEDIA_BUG_STOP", pre=[("Media-Bug-Function", "audio_fork"), ("Media-Bug-Target", "N/A")])
        ch.fork = None
        ch.fire_callstate("HANGUP")
        ch.fire_state("CS_REPORTING")
        ch.setvars(ch.cdr_vars())
        if disposition not in ("recv_bye", "recv_cancel", "recv_refuse") and not ch.refer_notified:
            ch.setvar("sip_hangup_disposition", disposition)
        ch.setvars(post_vars or [])
        if ch.media:
            ch.setvars(ch.rtp_stats)
        ch.fire("CHANNEL_HANGUP_COMPLETE", pre=[("Hangup-Cause", cause)])
        if result_hook is not None and not self.bgjob_before_hangup_complete:
            result_hook()
        peer = self.channels.get(ch.bridged_to or "")
        if peer is not None and peer.alive:
            self._peer_gone(peer, ch)
        if ch.bridge_done is not None and not ch.bridge_done.done():
            ch.bridge_done.set_result(None)
        ch.state_number = 12
        ch.fire("CHANNEL_DESTROY")
        ch.fire_state("CS_DESTROY")
        ch.alive = False
        self.channels.pop(ch.uuid, None)
        if any(f.get("client") is not None for f in ch.forks):
            self._gone[ch.uuid] = ch
        ch.gone.set()

    def _reject(self: SimulatedFreeSwitch, ch: SimChannel, status: int, result_hook: Any = None) -> str:
        """A ringing outbound leg gets a SIP error (fixture 04 variables)."""
        cause, phrase = SIP_FAILURES.get(status, ("NORMAL_TEMPORARY_FAILURE", "Service Unavailable"))
        pre = [
            ("sip_hangup_disposition", "recv_refuse"),
            ("sip_invite_failure_status", str(status)),
            ("sip_invite_failure_phrase", phrase),
            ("sip_term_status", str(status)),
            ("proto_specific_hangup_cause", f"sip:{status}"),
            ("sip_term_cause", str(q850(cause))),
        ]
        self.hangup(ch, cause, disposition="recv_refuse", pre_vars=pre, result_hook=result_hook)
        return cause

    # ================================================================================================
    # bridging
    # ================================================================================================
    def _link(self, a: SimChannel, b: SimChannel, kind: str) -> None:
        """``a`` (originator) and ``b`` (originatee) are bridged."""
        t = now_us()
        a.bridged_to, b.bridged_to = b.uuid, a.uuid
        a.bridge_kind = kind
        b.bridge_kind = kind if kind == "uuid_bridge" else "originatee"
        a.set_other(b, "originatee")
        if b.other is not a:
            b.set_other(a, "originator")
        _copy_callee(a, b)
        for x, y, role in ((a, b, "originator"), (b, a, "originatee")):
            x.times["bridged"] = t
            x.setvars(
                [
                    ("last_bridge_to", y.uuid),
                    ("bridge_channel", y.name),
                    ("bridge_uuid", y.uuid),
                    ("signal_bond", y.uuid),
                    ("last_sent_callee_id_name", y.profile.get("Caller-ID-Name", "")),
                    ("last_sent_callee_id_number", y.profile.get("Caller-ID-Number", "")),
                    ("last_bridge_role", role),
                ]
            )
        a.bridge_done = asyncio.get_event_loop().create_future()

    def _call_update_send(self, ch: SimChannel) -> None:
        other = ch.other
        ch.fire(
            "CALL_UPDATE",
            source="CALL_UPDATE_SEND",
            pre=[
                ("Direction", "SEND"),
                ("Sent-Callee-ID-Name", other.profile.get("Caller-ID-Name", "") if other else ""),
                ("Sent-Callee-ID-Number", other.profile.get("Caller-ID-Number", "") if other else ""),
                ("Bridged-To", other.uuid if other else ""),
            ],
        )

    def _peer_gone(self: SimulatedFreeSwitch, survivor: SimChannel, gone: SimChannel) -> None:
        """``gone`` left the bridge: CHANNEL_UNBRIDGE on ``survivor``, then what its application does next."""
        a, b = (survivor, gone) if survivor.other_type == "originatee" else (gone, survivor)
        survivor.bridged_to = None
        gone.bridged_to = None
        survivor.fire("CHANNEL_UNBRIDGE", pre=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])
        kind = survivor.bridge_kind
        survivor.bridge_kind = None
        if kind == "bridge_app":
            if survivor.running_app and survivor.running_app[0] == "bridge":
                app, data, app_uuid = survivor.running_app
                survivor.running_app = None
                survivor.execute_complete(app, data, app_uuid=app_uuid)
            if survivor.bridge_done is not None and not survivor.bridge_done.done():
                survivor.bridge_done.set_result(None)
        elif kind == "uuid_bridge":

            async def after() -> None:
                if survivor.alive:
                    survivor.fire_state("CS_EXECUTE")
                    self.hangup(survivor, "NORMAL_CLEARING")

            self.spawn(after())
        else:

            async def hang() -> None:
                self.hangup(survivor, "NORMAL_CLEARING")

            self.spawn(hang())

    def uuid_bridge(self: SimulatedFreeSwitch, a: SimChannel, b: SimChannel) -> None:
        """``uuid_bridge a b`` (recorded in tests/fixtures_esl/14-bridge/uuid-bridge)."""
        for x in (a, b):
            self._cancel_park_timer(x)
        for x, y in ((a, b), (b, a)):
            source = f"{int(time.time())}:{new_uuid()}:uuid_br:{y.uuid}"
            index = int(x.profile.get("Profile-Index", "1")) + 1
            x.profile.update({"Transfer-Source": source, "Profile-Index": str(index)})
            x.profile = {k: x.profile[k] for k in _profile_order(x.profile)}
            x.setvars([("transfer_history", source), ("transfer_source", source)])
        self._link(a, b, "uuid_bridge")
        for x in (b, a):
            x.state_number = 8
            if x.parked:
                x.fire("CHANNEL_UNPARK")
                x.parked = False
            if x.running_app:
                app, data, app_uuid = x.running_app
                x.running_app = None
                x.execute_complete(app, data, app_uuid=app_uuid)
            x.fire_state("CS_HIBERNATE")
            x.fire_state("CS_RESET")
            if x is a:
                a.fire_state("CS_SOFT_EXECUTE")
        b.fire_state("CS_SOFT_EXECUTE")
        for x, y, src in ((a, b, "UUID_BRIDGE_A"), (b, a, "UUID_BRIDGE_B")):
            x.application, x.application_data = "uuid_bridge", y.uuid
            x.setvar("current_application", "uuid_bridge")
            x.fire("CHANNEL_EXECUTE", source=src, post=[("Application", "uuid_bridge"), ("Application-Data", y.uuid)])
        a.fire("CHANNEL_BRIDGE", pre=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])
        b.fire_state("CS_EXCHANGE_MEDIA")
        self._call_update_send(a)
        self._call_update_send(b)

    # ================================================================================================
    # transfer / inline dialplan
    # ================================================================================================
    def transfer(self: SimulatedFreeSwitch, ch: SimChannel, dest: str, dialplan: str, context: str | None) -> None:
        """``uuid_transfer``; only the ``inline`` dialplan runs applications here (XML: no route)."""
        self.spawn(self._transfer(ch, dest, dialplan, context))

    async def _transfer(self: SimulatedFreeSwitch, ch: SimChannel, dest: str, dialplan: str,
                        context: str | None) -> None:  # fmt: skip
        if not ch.alive:
            return
        self._cancel_park_timer(ch)
        orig_dest = ch.profile.get("Destination-Number", "")
        ctx = context or ch.profile.get("Context", "default")
        index = int(ch.profile.get("Profile-Index", "1")) + 1
        source = f"{int(time.time())}:{new_uuid()}:bl_xfer:{dest}/{ctx}/{dialplan}"
        ch.profile.update(
            {
                "Dialplan": dialplan,
                "Context": ctx,
                "Destination-Number": dest,
                "Transfer-Source": source,
                "RDNIS": orig_dest,
                "Profile-Index": str(index),
            }
        )
        ch.times["profile_created"] = now_us()
        ch.setvar("transfer_history", source)
        ch.setvar("transfer_source", source)
        if ch.parked:
            ch.state_number = 2
            ch.fire("CHANNEL_UNPARK")
            ch.parked = False
        if ch.running_app:
            app, data, app_uuid = ch.running_app
            ch.running_app = None
            ch.execute_complete(app, data, app_uuid=app_uuid)
        ch.set_state("CS_ROUTING")
        if ch.answered:
            ch.fire_callstate("RINGING")
        ch.fire_state("CS_ROUTING")
        if dialplan.lower() != "inline":
            self.hangup(ch, "NO_ROUTE_DESTINATION")
            return
        ch.profile["Destination-Number"] = orig_dest
        ch.profile.pop("RDNIS", None)
        ch.set_state("CS_EXECUTE")
        if ch.answered:
            ch.fire_callstate("ACTIVE")
        ch.fire_state("CS_EXECUTE")
        ch.application = ""
        await self._run_inline(ch, dest)

    async def _run_inline(self: SimulatedFreeSwitch, ch: SimChannel, spec: str) -> None:
        # mod_dptools' inline dialplan: m:<sep>: picks the separator, each item is app[:data]
        sep = ","
        if spec.startswith("m:") and len(spec) > 3 and spec[3] == ":":
            sep, spec = spec[2], spec[4:]
        for item in fsstrings.separate(spec, sep, 128):
            app, _, data = item.lstrip(" ").partition(":")
            if not app:
                continue
            if not ch.alive:
                return
            await self._exec_app(ch, app, data)
            if not ch.alive or ch.parked:
                return
        if ch.alive:
            self.hangup(ch, "NORMAL_CLEARING")

    async def _exec_app(self: SimulatedFreeSwitch, ch: SimChannel, app: str, data: str) -> None:
        if app == "park":
            self._dialplan_park(ch)
            return
        if app == "bridge":
            await self._bridge_app(ch, data)
            return
        app_uuid = ch.execute(app, data)
        ch.running_app = (app, data, app_uuid)
        if app == "answer" and not ch.answered:
            self.answer(ch)
        elif app in ("set", "export"):
            k, _, v = data.partition("=")
            ch.setvar(k, v)
        elif app == "hangup":
            self.hangup(ch, normalize_cause(data or "NORMAL_CLEARING"))
            return
        elif app == "sleep":
            await asyncio.sleep(int(data or "0") / 1000)
        if ch.alive and ch.running_app:
            ch.running_app = None
            ch.execute_complete(app, data, app_uuid=app_uuid)

    async def _bridge_app(self: SimulatedFreeSwitch, a: SimChannel, data: str) -> None:
        app_uuid = a.execute("bridge", data)
        a.running_app = ("bridge", data, app_uuid)
        a.fire_callstate("RING_WAIT")
        try:
            leg = self._create_outbound(data, originator=a)
        except DialError as e:
            a.fire_callstate("ACTIVE")
            self.hangup(a, e.cause)
            return
        ok = await self._progress_outbound(leg, flip_cid=False, originator=a)
        if not a.alive:
            return
        if not ok:
            _copy_callee(a, leg)
            a.fire_callstate("ACTIVE")
            if _true(a.variables.get("continue_on_fail")):  # the inline dialplan goes on (e.g. to park)
                a.running_app = None
                a.execute_complete("bridge", data, app_uuid=app_uuid)
                return
            self.hangup(a, leg.hangup_cause or "NORMAL_TEMPORARY_FAILURE")
            return
        self._link(a, leg, "bridge_app")
        a.fire_callstate("ACTIVE")
        a.fire("CHANNEL_BRIDGE", pre=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", leg.uuid)])
        leg.fire_state("CS_EXCHANGE_MEDIA")
        self._call_update_send(leg)
        self._call_update_send(a)
        if a.bridge_done is not None:
            await a.bridge_done
        if a.alive and _true(a.variables.get("hangup_after_bridge")):
            self.hangup(a, "NORMAL_CLEARING")

    # ================================================================================================
    # originate
    # ================================================================================================
    def _outcome_for(self, number: str, uri: str, endpoint: str) -> Outcome:
        for pattern, outcome in self._outcomes:
            if any(fnmatch.fnmatchcase(x, pattern) for x in (number, uri, endpoint)):
                return outcome
        return Outcome("answer")

    def _create_outbound(self: SimulatedFreeSwitch, dial: str, originator: SimChannel | None = None,
                         cid: tuple[str | None, str | None] = (None, None)) -> SimChannel:  # fmt: skip
        """Create the outbound leg for a dial string and fire CHANNEL_OUTGOING ... CHANNEL_STATE(CS_CONSUME_MEDIA)."""
        try:
            parsed = fsstrings.parse_dial_string(dial)
        except fsstrings.ParseError:
            raise DialError("DESTINATION_OUT_OF_ORDER") from None
        self.dial_strings.append(parsed)
        first = parsed.groups[0][0]
        endpoint = first.endpoint
        nested = any(k == "origination_nested_vars" for k, _ in parsed.variables) or (
            "origination_nested_vars=true" in dial.lower()
        )
        # FreeSWITCH refuses to set a variable whose value looks like ${...} (switch_string_var_check_const)
        variables = [(k, v) for k, v in parsed.variables + first.variables if nested or not fsstrings.var_check(v)]
        vmap = dict(variables)
        gateway = None
        if endpoint.startswith("sofia/gateway/"):
            gateway, _, number = endpoint[len("sofia/gateway/") :].partition("/")
            if gateway not in self.gateways:
                if not self.auto_gateways:
                    raise DialError("INVALID_GATEWAY")
                self.add_gateway(gateway)
            info = self.gateways[gateway]
            profile, host = info["profile"], info["proxy"]
            number = number.removeprefix("sip:")
            uri = number if "@" in number else f"{number}@{host}"
            number = number.split("@")[0]
            name = f"sofia/{profile}/{number}"
        elif endpoint.startswith("sofia/"):
            profile, _, uri = endpoint[len("sofia/") :].partition("/")
            if profile not in self.profiles:
                raise DialError("INVALID_PROFILE")
            uri = uri.removeprefix("sip:")
            number = uri.split("@")[0]
            name = f"sofia/{profile}/{uri}"
        elif endpoint.startswith("error/"):
            raise DialError(normalize_cause(endpoint[len("error/") :]))
        else:
            raise DialError("CHAN_NOT_IMPLEMENTED")
        if not number:
            raise DialError("INVALID_URL")
        cid_num = vmap.get("origination_caller_id_number") or cid[1]
        cid_name = vmap.get("origination_caller_id_name") or cid[0]
        if originator is not None:
            cid_num = cid_num or originator.profile.get("Caller-ID-Number")
            cid_name = cid_name or originator.profile.get("Caller-ID-Name")
        cid_num = cid_num or "0000000000"
        leg = SimChannel(
            sim=self,
            uuid=vmap.get("origination_uuid") or new_uuid(),
            direction="outbound",
            name=name,
            destination=number,
            caller_id=cid_num,
            caller_name=cid_name or "",
            context=originator.profile.get("Context", "default") if originator else "default",
            sofia_profile=profile,
            codec=(vmap.get("absolute_codec_string") or "PCMU").split(",")[0].split("@")[0].upper(),
        )
        leg.rate = 16000 if leg.codec == "G722" else 8000
        self._register(leg)
        leg.hit_dialplan = False
        leg.outcome = self._outcome_for(number, uri, endpoint)
        leg.originate_timeout = vmap.get("originate_timeout") or vmap.get("leg_timeout")
        prof: dict[str, str] = {"Direction": "outbound", "Logical-Direction": "outbound"}
        if originator is not None:
            prof["Username"] = originator.profile.get("Username", cid_num)
            prof["Dialplan"] = originator.profile.get("Dialplan", "XML")
        if cid_name:
            prof["Caller-ID-Name"] = cid_name
        prof["Caller-ID-Number"] = cid_num
        if cid_name:
            prof["Orig-Caller-ID-Name"] = cid_name
        prof.update(
            {
                "Orig-Caller-ID-Number": cid_num,
                "Callee-ID-Name": "Outbound Call",
                "Callee-ID-Number": number,
                "Network-Addr": originator.profile.get("Network-Addr") if originator is not None else None,
                "ANI": cid_num,
                "Destination-Number": number,
                "Unique-ID": leg.uuid,
                "Source": "mod_sofia" if originator is not None else "src/switch_ivr_originate.c",
                "Context": leg.context,
                "Channel-Name": name,
                "Profile-Index": "1",
            }
        )
        leg.profile = {k: v for k, v in prof.items() if v is not None}
        leg.remember_initial()
        if originator is not None:
            leg.set_other(originator, "originator")
        leg.set_state("CS_NONE", 1)
        leg.fire("CHANNEL_OUTGOING")
        leg.fire_state("CS_INIT", 1)
        local = self.local_ip
        prof_url = self.profiles[profile]
        v: list[tuple[str, str]] = [
            ("direction", "outbound"),
            ("is_outbound", "true"),
            ("uuid", leg.uuid),
            ("call_uuid", leg.uuid),
            ("session_id", str(leg.session_id)),
        ]
        if gateway:
            v.append(("sip_gateway_name", gateway))
        v += [
            ("sip_local_network_addr", local),
            ("sip_profile_name", "gateway" if gateway else profile),
            ("video_media_flow", "disabled"),
            ("text_media_flow", "disabled"),
            ("channel_name", name),
            ("sip_destination_url", f"sip:{uri}"),
        ]
        v += variables
        v += [
            ("originate_early_media", "true"),
            ("originate_endpoint", "sofia"),
            ("rtp_use_codec_string", vmap.get("absolute_codec_string") or "PCMA,PCMU"),
            ("local_media_ip", local),
            ("local_media_port", str(leg.local_media_port)),
            ("advertised_media_ip", local),
            ("audio_media_flow", "sendrecv"),
            ("rtp_local_sdp_str", leg.sdp(local, leg.local_media_port) + "a=sendrecv\r\n"),
            ("sip_outgoing_contact_uri", f"<sip:mod_sofia@{local}:{prof_url.rsplit(':', 1)[-1]}>"),
            ("sip_req_uri", uri),
            ("sip_to_host", uri.split("@")[-1]),
            ("sip_from_host", local),
            ("sofia_profile_name", profile),
            ("recovery_profile_name", profile),
            ("sofia_profile_url", prof_url),
        ]
        leg.setvars(v)
        leg.set_state("CS_INIT", 2)
        leg.fire("CHANNEL_CREATE")
        leg.fire("CHANNEL_ORIGINATE")
        leg.fire_state("CS_ROUTING", 2)
        leg.fire_state("CS_CONSUME_MEDIA")
        return leg

    async def _sleep_or_gone(self, leg: SimChannel, seconds: float, also: SimChannel | None = None) -> bool:
        """Sleep; stop early (returning False) when ``leg`` -- or ``also`` -- goes away."""
        if seconds > 0:
            waits = [asyncio.ensure_future(x.gone.wait()) for x in (leg, also) if x is not None]
            try:
                await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        return leg.alive and (also is None or also.alive)

    async def _progress_outbound(self: SimulatedFreeSwitch, leg: SimChannel, *, flip_cid: bool,
                                 originator: SimChannel | None = None, hook: Any = None,
                                 timeout: float | None = None) -> bool:  # fmt: skip
        """Ring and answer (True) or fail (False) an outbound leg according to its outcome."""
        out: Outcome = leg.outcome
        host = leg.variables.get("sip_req_uri", "").split("@")[-1]
        started = time.monotonic()

        def abandoned() -> bool:
            return originator is not None and not originator.alive

        if not await self._sleep_or_gone(leg, out.ring_ms / 1000, originator) or abandoned():
            return self._abandon(leg, hook, originator)
        leg.profile = _insert_after(leg.profile, "Callee-ID-Number", "Network-Addr", host.split(":")[0])
        leg.setvars(
            [
                ("sip_reply_host", host.split(":")[0]),
                ("sip_reply_port", host.split(":")[1] if ":" in host else "5060"),
                ("sip_network_ip", host.split(":")[0]),
                ("sip_network_port", host.split(":")[1] if ":" in host else "5060"),
                ("sip_from_user", leg.caller_id),
                ("sip_to_user", leg.destination),
                ("sip_to_tag", new_uuid()[:13].replace("-", "")),
                ("sip_from_tag", leg.tag),
                ("sip_cseq", "1"),
                ("sip_call_id", new_uuid()),
            ]
        )
        if out.early == "183":
            leg.times["progress_media"] = now_us()
            leg.media = True
            leg.fire("CHANNEL_PROGRESS_MEDIA")
            leg.fire_callstate("EARLY")
        elif out.early:
            leg.times["progress"] = now_us()
            leg.fire("CHANNEL_PROGRESS")
            leg.fire_callstate("RINGING")
        if out.kind == "no-answer":
            limit = timeout
            if leg.originate_timeout:
                try:
                    limit = float(leg.originate_timeout)
                except ValueError:
                    limit = None
            limit = self.default_originate_timeout if limit is None else limit
            left = max(0.0, limit - (time.monotonic() - started))
            if not await self._sleep_or_gone(leg, left, originator) or abandoned():
                return self._abandon(leg, hook, originator)
            self.hangup(
                leg,
                "NO_ANSWER",
                disposition="send_cancel",
                post_vars=[("sip_invite_failure_status", "487"), ("sip_invite_failure_phrase", "CANCEL")],
                result_hook=hook,
            )
            return False
        if not await self._sleep_or_gone(leg, out.answer_ms / 1000, originator) or abandoned():
            return self._abandon(leg, hook, originator)
        if out.kind != "answer":
            self._reject(leg, int(out.kind), result_hook=hook)
            return False
        leg.fire_codec()
        codec, rate = leg.codec, leg.rate
        leg.setvars(
            [
                ("switch_r_sdp", leg.sdp(host.split(":")[0], leg.remote_media_port, origin="far-end")),
                ("ep_codec_string", f"CORE_PCM_MODULE.{codec}@{rate}h@20i@64000b"),
                ("remote_video_media_flow", "inactive"),
                ("remote_text_media_flow", "inactive"),
                ("remote_audio_media_flow", "sendrecv"),
                *_codec_vars(codec, rate),
            ]
        )
        leg.setvars(leg.answer_media_vars())
        leg.answered = True
        leg.media = True
        leg.answer_state = "answered"
        leg.times["answered"] = now_us()
        leg.fire("CHANNEL_ANSWER")
        leg.fire_callstate("ACTIVE")
        leg.setvar("endpoint_disposition", "ANSWER")
        if flip_cid:
            old_num = leg.profile.get("Caller-ID-Number", "")
            leg.setvar("pre_transfer_caller_id_number", old_num)
            leg.setvar("channel_cid_flipped", "yes")
            prof = {k: v for k, v in leg.profile.items() if k not in ("Callee-ID-Name",)}
            prof["Caller-ID-Name"] = "Outbound Call"
            prof["Caller-ID-Number"] = leg.destination
            prof["Callee-ID-Number"] = old_num
            leg.profile = {k: prof[k] for k in _profile_order(prof)}
            leg.hit_dialplan = True
            leg.fire("CALL_UPDATE", pre=[("Direction", "RECV")])
        return True

    def _abandon(self: SimulatedFreeSwitch, leg: SimChannel, hook: Any, originator: SimChannel | None) -> bool:
        if leg.alive:  # the caller went away while the leg was ringing
            self.hangup(
                leg,
                "ORIGINATOR_CANCEL",
                disposition="send_cancel",
                post_vars=[("sip_invite_failure_status", "487"), ("sip_invite_failure_phrase", "CANCEL")],
                result_hook=hook,
            )
        elif hook is not None:
            hook()
        return False

    async def originate(self: SimulatedFreeSwitch, dial: str, app_spec: str, rest: list[str],
                        job: Job | None) -> str:  # fmt: skip
        """``originate``: body ``+OK <uuid>\\n`` after CHANNEL_ANSWER, or ``-ERR <CAUSE>\\n``."""
        cid_name = rest[2] if len(rest) > 2 else None
        cid_num = rest[3] if len(rest) > 3 else None
        timeout = None
        if len(rest) > 4:
            try:
                timeout = float(rest[4])
            except ValueError:
                timeout = None
        try:
            leg = self._create_outbound(dial, cid=(cid_name, cid_num))
        except DialError as e:
            return f"-ERR {e.cause}\n"
        result: list[str] = []

        def hook() -> None:
            body = f"-ERR {leg.hangup_cause}\n"
            result.append(body)
            if job is not None:
                job.complete(body)

        ok = await self._progress_outbound(leg, flip_cid=True, hook=hook, timeout=timeout)
        if not ok:
            return result[0] if result else f"-ERR {leg.hangup_cause or 'NORMAL_TEMPORARY_FAILURE'}\n"
        body = f"+OK {leg.uuid}\n"
        if job is not None:
            job.complete(body)
        leg.setvar("call_uuid", leg.uuid)
        leg.fire_state("CS_EXECUTE")
        if app_spec.startswith("&"):
            name, _, args = app_spec[1:].partition("(")
            args = args[:-1] if args.endswith(")") else args
            if name == "park" or not name:
                self._dialplan_park(leg)
            else:
                self.spawn(self._run_after_originate(leg, name, args))
        else:
            self._dialplan_park(leg)  # the simulator has no dialplan: an extension parks the leg
        return body

    async def _run_after_originate(self: SimulatedFreeSwitch, leg: SimChannel, app: str, args: str) -> None:
        await self._exec_app(leg, app, args)
        if leg.alive and not leg.parked:
            self.hangup(leg, "NORMAL_CLEARING")

    # ================================================================================================
    # REFER (uuid_deflect)
    # ================================================================================================
    def _refer_notify_for(self, ch: SimChannel) -> str | None:
        if ch.uuid in self._refer_outcomes:
            return self._refer_outcomes[ch.uuid]
        return self._refer_outcomes.get("*", "200")

    def _notify_refer(self: SimulatedFreeSwitch, ch: SimChannel, code: str) -> str:
        status = int(code)
        frag = f"SIP/2.0 {status} {SIPFRAG_PHRASES.get(status, 'Unknown')}\r\n"
        ch.setvar("sip_refer_target_status_code", str(status))
        ch.setvar("sip_refer_reply", frag)
        ch.refer_notified = True
        ch.dialog_ended = True  # recorded (13): sofia-sip BYEs the caller after a terminating NOTIFY
        local = self.local_ip
        self.fire(
            "CUSTOM",
            [
                ("content-type", "message/sipfrag"),
                ("event-package", "refer"),
                ("contact", f"{ch.caller_id}@{self.peer_ip}"),
                ("from", f"{ch.caller_id}@{self.peer_ip}"),
                ("from-tag", ch.tag),
                ("to", f"{ch.destination}@{local}"),
                ("to-tag", getattr(ch, "to_tag", "") or ""),
                ("call-id", getattr(ch, "sip_call_id", ch.uuid)),
                ("subscription-substate", "terminated"),
                ("subscription-reason", "noresource"),
                ("UniqueID", ch.uuid),
            ],
            body=frag,
            source="NOTIFY_REFER",
            subclass="sofia::notify_refer",
        )
        return frag

    async def deflect(self: SimulatedFreeSwitch, ch: SimChannel, uri: str) -> str:
        """``uuid_deflect``: blocking (fixture 06) or, with ``sip_refer_continue_after_reply=true``, an
        immediate ``+OK:`` and a channel that stays up whatever the NOTIFY says (tests/fixtures_esl/13) -- although
        after a NOTIFY the caller got a BYE (``dialog_ended``): the channel is orphaned until someone kills it."""
        ch.refers.append(uri)
        notify = self._refer_notify_for(ch)
        if _true(ch.variables.get("sip_refer_continue_after_reply")):
            self.spawn(self._refer_continue(ch, notify))
            return "+OK:\n"
        ch.setvar("sip_refer_status_code", "202")
        if notify is None:
            if not await self._sleep_or_gone(ch, self.refer_no_notify_timeout):
                return "+OK:no reply\n"
            body = "+OK:no reply\n"
        else:
            if not await self._sleep_or_gone(ch, self.refer_notify_delay):
                return "+OK:no reply\n"
            body = f"+OK:{self._notify_refer(ch, notify)}\n"
        if ch.alive:
            self.hangup(ch, "BLIND_TRANSFER", disposition="send_bye")
        return body

    async def _refer_continue(self: SimulatedFreeSwitch, ch: SimChannel, notify: str | None) -> None:
        if not await self._sleep_or_gone(ch, min(0.01, self.refer_notify_delay)):
            return
        ch.setvar("sip_refer_status_code", "202")
        if notify is None:
            return
        if await self._sleep_or_gone(ch, self.refer_notify_delay):
            self._notify_refer(ch, notify)

    # ================================================================================================
    # mod_audio_fork
    # ================================================================================================
    def start_fork(self: SimulatedFreeSwitch, ch: SimChannel, spec: ForkSpec, args: list[str]) -> None:
        """A media bug for a parsed ``uuid_audio_fork ... start``: MEDIA_BUG_START now; then a real WebSocket client
        (``fork_websocket``) or, scripted, ``mod_audio_fork::connect`` / ``connect_failed`` ``fork_connect_delay``
        later. A ``set_fork_outcome`` of ``connect_failed`` wins over the socket."""
        fork = spec.as_dict(args)
        ch.fork = fork
        ch.forks.append(fork)
        ch.bugs[spec.bug] = fork
        ch.fire("MEDIA_BUG_START", pre=[("Media-Bug-Function", "audio_fork"), ("Media-Bug-Target", "N/A")])
        outcome, reason = "connect", None
        for pattern, out, why in self.fork_outcomes:
            if fnmatch.fnmatchcase(spec.url, pattern):
                outcome, reason = out, why
                break
        if self.fork_websocket and outcome == "connect":
            fork["client"] = ForkClient(self, ch, fork, spec)
            fork["client"].start()
        else:
            self.spawn(self._fork_connect(ch, fork, outcome, reason))

    async def _fork_connect(self: SimulatedFreeSwitch, ch: SimChannel, fork: dict[str, Any], outcome: str,
                            reason: str | None) -> None:  # fmt: skip
        """Scripted connect (no socket). After ``connect_failed`` the bug stays attached, as in FreeSWITCH."""
        await asyncio.sleep(self.fork_connect_delay)
        if not ch.alive or ch.bugs.get(fork["bug"]) is not fork:
            return
        if outcome == "connect_failed":
            body = '{"reason":"%s"}' % (reason or "Unable to connect")
            ch.fire("CUSTOM", subclass="mod_audio_fork::connect_failed", body=body, source="AUDIO_FORK")
        else:
            fork["connected"] = True
            ch.fire("CUSTOM", subclass="mod_audio_fork::connect", source="AUDIO_FORK")

    def stop_fork(self, ch: SimChannel, fork: dict[str, Any], final_text: str | None) -> None:
        """``uuid_audio_fork <uuid> stop [bugname] [text]``: MEDIA_BUG_STOP; the client sends ``text``, then closes
        1000; no ``::disconnect`` event (recorded)."""
        fork["final_text"] = final_text
        fork["stopped"] = True
        self._detach_fork(ch, fork, final_text)
        ch.fire("MEDIA_BUG_STOP", pre=[("Media-Bug-Function", "audio_fork"), ("Media-Bug-Target", "N/A")])

    def _detach_fork(self, ch: SimChannel, fork: dict[str, Any], text: str | None = None) -> None:
        if ch.bugs.get(fork["bug"]) is fork:
            del ch.bugs[fork["bug"]]
        if fork.get("client") is not None:
            fork["client"].detach(text)
        if ch.fork is fork:
            ch.fork = next(reversed(ch.bugs.values()), None)

    async def _close_forks(self: SimulatedFreeSwitch) -> None:
        """``stop()``: close the open fork sockets (1000 "") and drop queued playbacks."""
        waits = []
        for ch in self.channels.values():
            if ch.audio is not None:
                ch.audio.close()
            for fork in ch.bugs.values():
                client = fork.get("client")
                if client is not None and client.state == "connected":
                    client.detach()
                    waits.append(asyncio.ensure_future(client.closed.wait()))
        if waits:
            await asyncio.wait(waits, timeout=self.fork_close_wait)
            for w in waits:
                w.cancel()

    # ================================================================================================
    # channel audio
    # ================================================================================================
    def channel_audio(self: SimulatedFreeSwitch, ch: SimChannel) -> ChannelAudio:
        """The channel's :class:`~simulator.media.ChannelAudio` (created on first use)."""
        if ch.audio is None:
            ch.audio = ChannelAudio(self, ch)
        return ch.audio

    def set_caller_audio(self: SimulatedFreeSwitch, uuid: str, pcm: bytes, loop: bool = False) -> None:
        """What the caller says: L16 (little-endian) at the leg's codec rate, silence once exhausted (or looped).
        Every fork streams it from its next frame on (resampled to the fork rate)."""
        self.channel_audio(self.channels[uuid]).set_caller(pcm, loop)

    def fork_client(self: SimulatedFreeSwitch, uuid: str) -> ForkClient | None:
        """The WebSocket client of the channel's latest fork (also after the channel is gone)."""
        ch = self.channels.get(uuid) or self._gone.get(uuid)
        if ch is None:
            return None
        clients = [f["client"] for f in ch.forks if f.get("client") is not None]
        return clients[-1] if clients else None

    def fork_overrun(self: SimulatedFreeSwitch, uuid: str) -> None:
        """Fire ``mod_audio_fork::buffer_overrun`` (no body) for the channel's latest fork, as when the server does not
        read and the module's buffer (MOD_AUDIO_FORK_BUFFER_SECS) overflows."""
        ch = self.channels[uuid]
        client = ch.fork_client
        if client is not None:
            client.overrun()
        else:
            ch.fire("CUSTOM", subclass="mod_audio_fork::buffer_overrun", source="AUDIO_FORK")


def _copy_callee(a: SimChannel, b: SimChannel) -> None:
    """The originator's caller profile takes the callee of the leg it dialled (recorded in 14-bridge)."""
    prof = {k: v for k, v in a.profile.items() if k not in ("Callee-ID-Name", "Callee-ID-Number")}
    for k in ("Callee-ID-Name", "Callee-ID-Number"):
        if k in b.profile:
            prof[k] = b.profile[k]
    a.profile = {k: prof[k] for k in _profile_order(prof)}


def _insert_after(profile: dict[str, str], after: str, key: str, value: str) -> dict[str, str]:
    if key in profile:
        profile[key] = value
        return profile
    out: dict[str, str] = {}
    for k, v in profile.items():
        out[k] = v
        if k == after:
            out[key] = value
    if key not in out:
        out[key] = value
    return {k: out[k] for k in _profile_order(out)}


def _profile_order(profile: dict[str, str]) -> list[str]:
    from .channel import PROFILE_FIELDS

    known = [k for k in PROFILE_FIELDS if k in profile]
    return known + [k for k in profile if k not in PROFILE_FIELDS]
