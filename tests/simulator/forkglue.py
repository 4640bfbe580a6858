"""The simulator's side of mod_audio_fork / mod_audio_stream: the media bug a ``start`` attaches, its scripted or
real (WebSocket) connect, ``stop``, and the channel audio the forks read and write.

Models the bug lifecycle of drachtio's / jambonz's ``mod_audio_fork.c`` (``start_capture``: MEDIA_BUG_START,
``do_stop``: MEDIA_BUG_STOP, no ``::disconnect``; a bug stays attached after ``connect_failed``) and
``lws_glue.cpp`` (``::connect`` / ``::connect_failed`` / ``::buffer_overrun``). The commands are in
:mod:`.audiofork` (arguments: :mod:`.forkargs`), the WebSocket client in :mod:`.forkclient`, the audio clock in
:mod:`.media`.
Recorded in fixtures 05 and 10 and tests/fixtures_esl/15-misc.
"""

from __future__ import annotations

import asyncio
import fnmatch
from typing import TYPE_CHECKING, Any

from .channel import SimChannel
from .forkargs import ForkSpec
from .forkclient import ForkClient
from .media import ChannelAudio

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch

#: the headers of a fork's MEDIA_BUG_START / MEDIA_BUG_STOP (fixture 05)
BUG_HEADERS = [("Media-Bug-Function", "audio_fork"), ("Media-Bug-Target", "N/A")]


class ForkGlue:
    """Mixin of :class:`~simulator.server.SimulatedFreeSwitch`: fork media bugs and channel audio."""

    def set_fork_outcome(self: SimulatedFreeSwitch, url_pattern: str, outcome: str = "connect",
                         reason: str | None = None) -> None:  # fmt: skip
        """Whether ``uuid_audio_fork start`` to URLs matching ``url_pattern`` connects (``"connect"``) or fires
        ``mod_audio_fork::connect_failed`` (``"connect_failed"``, body ``{"reason":"Unable to connect"}``)."""
        self.fork_outcomes.insert(0, (url_pattern, outcome, reason))

    def start_fork(self: SimulatedFreeSwitch, ch: SimChannel, spec: ForkSpec, args: list[str]) -> None:
        """A media bug for a parsed ``uuid_audio_fork ... start``: MEDIA_BUG_START now; then a real WebSocket client
        (``fork_websocket``) or, scripted, ``mod_audio_fork::connect`` / ``connect_failed`` ``fork_connect_delay``
        later. A ``set_fork_outcome`` of ``connect_failed`` wins over the socket."""
        fork = spec.as_dict(args)
        ch.fork = fork
        ch.forks.append(fork)
        ch.bugs[spec.bug] = fork
        ch.fire("MEDIA_BUG_START", pre=BUG_HEADERS)
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
        ch.fire("MEDIA_BUG_STOP", pre=BUG_HEADERS)

    def _drop_forks(self, ch: SimChannel) -> None:
        """Hangup (CS_HANGUP): every bug is removed -- MEDIA_BUG_STOP each; clients close 1000 "", no ::disconnect."""
        for fork in list(ch.bugs.values()):
            self._detach_fork(ch, fork)
            ch.fire("MEDIA_BUG_STOP", pre=BUG_HEADERS)
        ch.fork = None

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
