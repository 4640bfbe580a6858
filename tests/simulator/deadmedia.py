"""Dead media and hold in the simulator: the far end stops sending RTP, or holds the call with a re-INVITE.

Models FreeSWITCH 1.10.12:

* ``src/switch_core_media.c`` ``check_media_timeout_params``: when the RTP session starts (the answer) the channel
  variables ``media_timeout`` and ``media_hold_timeout`` (milliseconds; ``*_audio`` variants win) are read; a zero or
  missing ``media_timeout`` means no timeout at all, and a missing hold timeout is 10 times the media timeout;
* ``src/switch_rtp.c`` ``check_timeout``: a channel whose reader (here: the park loop, always reading) has had no
  RTP for longer than the timeout is hung up with ``MEDIA_TIMEOUT`` (``switch_channel_hangup``: sofia sends BYE);
  any packet restarts the count (``last_media``);
* ``switch_core_media_negotiate_sdp`` / ``switch_core_media_toggle_hold``: a re-INVITE whose audio is ``sendonly``
  or ``inactive`` holds an *answered* call (``media_audio_mode`` ``recvonly`` / ``inactive``) and sets the hold
  timeout; but the same re-INVITE then runs ``switch_core_media_activate_rtp``, whose check_media_timeout_params
  restarts the count with the *media* timeout again: a held call without RTP times out after the media timeout
  (measured on 1.10.12, tests/integration/test_limits_live.py). ``sendrecv`` resumes it (the count restarts,
  ``media_audio_mode`` is cleared);
* ``src/switch_channel.c``: setting CF_LEG_HOLDING on an answered channel fires CHANNEL_CALLSTATE (HELD) and then
  ``switch_channel_mark_hold`` fires CHANNEL_HOLD; clearing it CHANNEL_CALLSTATE (UNHELD) then CHANNEL_UNHOLD; a
  channel hung up while held fires CHANNEL_UNHOLD first (``switch_channel_perform_hangup``).

A far end on hold with ``sendonly`` still sends RTP (music on hold: no timeout); with ``inactive`` it sends none
(``hold(..., rtp=False)`` is the default for it) and the call times out after the media timeout.
``media_time_scale`` shortens the waits (the variables and causes
stay the same). Not modelled: ``execute_on_media_timeout``, video, ``rtp_timeout_sec`` (deprecated), a hold
re-INVITE before the answer, ``bypass_media_after_hold``, music on hold towards a bridged peer.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .channel import SimChannel, now_us

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch

HOLD_MODES = {"sendonly": "recvonly", "inactive": "inactive"}  # the far end's SDP -> media_audio_mode


def timeouts(ch: SimChannel) -> tuple[int, int]:
    """(media timeout, hold timeout) in ms as check_media_timeout_params reads them (0: none)."""

    def ms(name: str) -> int | None:
        value = ch.variables.get(name + "_audio", ch.variables.get(name))
        return _atoi(value) if value is not None else None

    media = ms("media_timeout") or 0
    hold = ms("media_hold_timeout") or 0
    if media and not hold:
        hold = media * 10
    return media, hold if media else 0


def _atoi(text: str) -> int:
    digits = ""
    for c in text.strip():
        if not c.isdigit():
            break
        digits += c
    return int(digits) if digits else 0


class DeadMedia:
    """Mixin of :class:`~simulator.server.SimulatedFreeSwitch`: RTP stopping, media timeouts, hold and resume."""

    channels: dict[str, SimChannel]
    #: real seconds waited per second of a media or hold timeout
    media_time_scale: float = 1.0

    def stop_rtp(self: SimulatedFreeSwitch, uuid: str) -> None:
        """The far end stops sending RTP (a dead carrier leg, a phone gone off the network)."""
        ch = self.channels[uuid]
        ch.rtp_flowing = False
        self._rtp_flow(ch)
        self._arm_media_timer(ch)

    def start_rtp(self: SimulatedFreeSwitch, uuid: str) -> None:
        """RTP arrives again: the count starts over and nothing times out while it flows."""
        ch = self.channels[uuid]
        ch.rtp_flowing = True
        self._rtp_flow(ch)
        self._cancel_media_timer(ch)

    def _rtp_flow(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """The channel's RTP counters (mediaStats) follow: nothing is received while the far end sends nothing."""
        self.rtp_of(ch).set_flowing(time.monotonic(), ch.rtp_flowing)

    def hold(self: SimulatedFreeSwitch, uuid: str, mode: str = "sendonly", *, rtp: bool | None = None) -> bool:
        """The far end re-INVITEs with ``a=sendonly`` or ``a=inactive``: an answered call goes on hold (returns
        whether it did). ``rtp``: whether it keeps sending RTP meanwhile (default: yes for sendonly)."""
        ch = self.channels[uuid]
        if mode not in HOLD_MODES:
            raise ValueError(f"hold mode {mode!r}: sendonly or inactive")
        ch.setvar("media_audio_mode", HOLD_MODES[mode])
        ch.rtp_flowing = (mode == "sendonly") if rtp is None else rtp
        self._rtp_flow(ch)
        if not ch.answered or ch.hold_mode is not None:
            ch.hold_mode = ch.hold_mode or (mode if ch.answered else None)
            self._arm_media_timer(ch)
            return False
        ch.hold_mode = mode
        ch.times["last_hold"] = now_us()
        ch.fire_callstate("HELD")
        ch.fire("CHANNEL_HOLD")
        self._arm_media_timer(ch)
        return True

    def unhold(self: SimulatedFreeSwitch, uuid: str) -> bool:
        """The far end re-INVITEs with ``a=sendrecv`` (and sends RTP again): the call is resumed."""
        ch = self.channels[uuid]
        ch.rtp_flowing = True
        self._rtp_flow(ch)
        if ch.hold_mode is None:
            return False
        self._leave_hold(ch)
        ch.setvar("media_audio_mode", None)
        self._arm_media_timer(ch)
        return True

    def _leave_hold(self, ch: SimChannel) -> None:
        ch.hold_mode = None
        if ch.times.get("last_hold"):
            ch.times["hold_accum"] = ch.times.get("hold_accum", 0) + now_us() - ch.times["last_hold"]
        ch.fire_callstate("UNHELD")
        ch.fire("CHANNEL_UNHOLD")

    def _unhold_at_hangup(self, ch: SimChannel) -> None:
        """switch_channel_perform_hangup: a held channel is marked unheld (CHANNEL_UNHOLD) before it hangs up."""
        if ch.hold_mode is not None and ch.alive and not ch.hangup_cause:
            self._leave_hold(ch)

    def _arm_media_timer(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """(Re)start the count towards MEDIA_TIMEOUT when the far end sends nothing (switch_rtp's last_media)."""
        self._cancel_media_timer(ch)
        if ch.rtp_flowing or not ch.alive or not ch.media:
            return
        media, _hold = timeouts(ch)  # the hold timeout never outlives the hold re-INVITE's activate_rtp
        if media:
            ch.media_timer = self.spawn(self._media_timeout(ch, media / 1000 * self.media_time_scale))

    async def _media_timeout(self: SimulatedFreeSwitch, ch: SimChannel, seconds: float) -> None:
        await asyncio.sleep(seconds)
        ch.media_timer = None
        if ch.alive and not ch.rtp_flowing:
            self.hangup(ch, "MEDIA_TIMEOUT")

    def _cancel_media_timer(self, ch: SimChannel) -> None:
        timer = ch.media_timer
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        ch.media_timer = None
