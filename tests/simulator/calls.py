"""The simulator's telephone network: :class:`CallFlows` gathers the call-flow mixins of
:class:`~simulator.server.SimulatedFreeSwitch` and holds the test API that scripts the outside world (gateways,
originate / REFER outcomes, far-end hangups and DTMF).

Where each FreeSWITCH behaviour is modelled (each module names its FreeSWITCH 1.10.12 sources and fixtures):

* :mod:`.lifecycle` -- inbound INVITE -> dialplan -> park, answer, ``uuid_park``, park timeout, hangup teardown;
* :mod:`.dialing` -- ``originate`` and outbound legs (dial strings, ringing, answer, failures);
* :mod:`.bridging` -- the ``bridge`` application and ``uuid_bridge``; :mod:`.transfer` -- ``uuid_transfer`` and
  the inline dialplan; :mod:`.refer` -- ``uuid_deflect`` (REFER / NOTIFY);
* :mod:`.forkglue` -- the fork modules' media bugs and channel audio;
* :mod:`.gateways` -- gateway registration and OPTIONS state, the ``sofia::gateway_state`` event;
* :mod:`.deadmedia` -- RTP stopping (MEDIA_TIMEOUT), hold and resume (CHANNEL_HOLD / CHANNEL_UNHOLD);
  :mod:`.limits` -- the ``limit`` application's hash backend (pure; run by :mod:`.lifecycle`'s dialplan steps);
* :mod:`.rtcp` -- the far end's RTCP reports and the ``RECV_RTCP_MESSAGE`` event;
* pure helpers: :mod:`.sofiavars` (mod_sofia's variables), :mod:`.callerprofile` (caller-profile order).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from . import fsstrings
from .avmd import Avmd
from .bridging import Bridging
from .causes import normalize_cause, q850
from .channel import SimChannel, runs_on_answer
from .deadmedia import DeadMedia
from .dialing import DialError, Dialing, Outcome, parse_dial_string
from .forkglue import ForkGlue
from .gateways import Gateways
from .lifecycle import ChannelLifecycle
from .limits import HashLimits
from .recording import Recordings
from .refer import Refer
from .rtcp import Rtcp
from .transfer import Transfers

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch

__all__ = ["CallFlows", "DialError", "Outcome", "parse_dial_string"]


class CallFlows(
    ChannelLifecycle, Dialing, Bridging, Transfers, Refer, ForkGlue, Recordings, Avmd, Gateways, DeadMedia, Rtcp
):
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
        self.limits = HashLimits()  # mod_hash's limit counts (simulator.limits)
        self.limit_clock = time.time  # switch_epoch_time_now for mod_hash's rate windows (tests may fix it)

    # -- scripting the outside world ----------------------------------------------------------------
    def add_gateway(self: SimulatedFreeSwitch, name: str, *, profile: str = "tcp", proxy: str = "127.0.0.1",
                    username: str = "sipagent", state: str = "NOREG", ping: int = 0, ping_min: int = 1,
                    ping_max: int = 1, ping_monitoring: bool = False) -> None:  # fmt: skip
        """Declare a sofia gateway (``sofia/gateway/<name>/...``) on ``profile``: ``state`` NOREG (``register=false``:
        status UP) or a registration state (status UP when REGED, else DOWN); with ``ping`` ≥ 5 (seconds), OPTIONS
        pings (:meth:`gateway_options_reply`) with ``ping_min``/``ping_max``/``ping_monitoring``."""
        self.profiles.setdefault(profile, "sip:mod_sofia@127.0.0.1:5060")
        pinged = ping >= 5
        self.gateways[name] = {
            "profile": profile,
            "proxy": proxy,
            "username": username,
            "to": f"sip:{username}@{proxy}",
            "state": state,
            "status": "UP" if state in ("NOREG", "REGED") else "DOWN",
            "ping": ping if pinged else 0,
            "ping_count": 0,
            "ping_min": ping_min if pinged else 0,
            "ping_max": ping_max if pinged else 0,
            "ping_monitoring": ping_monitoring and pinged,
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

    async def remote_dtmf(self: SimulatedFreeSwitch, uuid: str, digits: str, duration: int = 2000,
                          via: str = "rfc2833") -> None:  # fmt: skip
        """The far end sends digits: one DTMF event each (fired at switch_channel_dequeue_dtmf, duration in samples)
        with the source of how they came: ``rfc2833`` (``RTP``), ``info`` (SIP INFO application/dtmf-relay:
        ``ENDPOINT``, sofia_handle_sip_i_info) or ``inband`` (tones found by start_dtmf's detector:
        ``INBAND_AUDIO``, inband_dtmf_callback -- only on a channel that runs it)."""
        ch = self.channels[uuid]
        source = {"rfc2833": "RTP", "info": "ENDPOINT", "inband": "INBAND_AUDIO"}[via]
        if via == "inband" and not runs_on_answer(ch, "start_dtmf"):
            return  # tones in the audio and no detector: nobody hears digits
        for d in digits:
            ch.dtmf_received.append(d)
            ch.fire("DTMF", post=[("DTMF-Digit", d), ("DTMF-Duration", str(duration)), ("DTMF-Source", source)])
        await asyncio.sleep(0)

    async def change_codec(self: SimulatedFreeSwitch, uuid: str, codec: str, rate: int) -> None:
        """The far end re-INVITEs with another codec: switch_core_media_set_codec sets the new read and write codecs
        (the CODEC events); a running media bug then reads frames at the new rate."""
        ch = self.channels[uuid]
        if (ch.codec, ch.rate) == (codec, rate):
            return  # "Already using": no event
        ch.codec, ch.rate = codec, rate
        ch.setvar("read_codec", codec)
        ch.setvar("read_rate", str(rate))
        ch.setvar("write_codec", codec)
        ch.setvar("write_rate", str(rate))
        ch.fire_codec()
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
