"""Agent audio → FreeSWITCH, paced to real time (sans-I/O: the caller passes the clock).

Agents send speech faster than real time. Whatever is handed to FreeSWITCH can only be taken back
by a flush, so the :class:`Pacer` holds the agent's audio and releases it as FreeSWITCH plays it,
keeping only a small lead there.

It models the streaming playback of the jambonz ``mod_audio_fork`` (its ``lws_glue.cpp``, and what
FreeSWITCH 1.10.12 did in ``shared/fixtures/freeswitch-1.10.12/10-audio-fork-streaming/notes.md``):
audio sent collects in a *prebuffer* and moves to the *playout buffer* only once the prebuffer holds
160 ms (first time) then 80 ms (every later time); the playout buffer is played 20 ms per frame.
So the pacer

* sends only whole prebuffer units (160 ms first, 80 ms after), so nothing ever waits in the
  prebuffer: FreeSWITCH would hold a partial unit anyway (no latency is added), and this way
  ``killAudio`` — which empties the playout buffer within a frame but not the prebuffer (recorded;
  ``lws_glue.cpp``) — really silences everything; when the agent goes quiet for ``idle_ms`` the tail
  is padded with silence to a whole unit so it is heard at once;
* lets FreeSWITCH hold at most 160 ms + ``lead_ms``: an utterance starts with that burst (heard on
  the next frame instead of 160 ms later), audio arriving in real time is not held back beyond the
  unit, a faster agent is held to real time.

Marks (Twilio ``mark``) are tracked against this model, not with the module's own marks, which only
work when the stream rate equals the codec rate, take a real sample of -1 for a marker, and go off
by one after the first ``killAudio`` (all recorded). A mark is reported when the audio queued before
it has been played, or when a flush discards that audio.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Pacer"]


class Pacer:
    """One call's playback queue and its model of FreeSWITCH's buffers."""

    __slots__ = (
        "_bpms",
        "_chunk",
        "_idle",
        "_last_push",
        "_lead",
        "_marks",
        "_min_send",
        "_moved",
        "_pad",
        "_pending",
        "_playout_end",
        "_queue",
        "_target",
        "_threshold",
        "dropped_bytes",
        "max_bytes",
        "rate",
        "sent_bytes",
    )

    def __init__(
        self,
        rate: int,
        *,
        lead_ms: int = 40,
        prebuffer_ms: int = 160,
        chunk_ms: int = 80,
        idle_ms: int = 60,
        max_seconds: float = 60.0,
        min_send_ms: int = 0,
        pad: bool = True,
    ) -> None:
        self.rate = rate
        self._bpms = rate * 2 / 1000  # bytes per millisecond (L16 mono)
        self._lead = int(lead_ms * self._bpms) & ~1
        self._threshold = int(prebuffer_ms * self._bpms) & ~1  # FreeSWITCH's current prebuffer threshold
        self._target = self._threshold + self._lead  # most FreeSWITCH may hold
        self._chunk = int(chunk_ms * self._bpms) & ~1
        self._idle = idle_ms / 1000
        self._min_send = int(min_send_ms * self._bpms) & ~1
        self._pad = pad
        self.max_bytes = int(max_seconds * rate * 2) & ~1
        self._queue = bytearray()
        self._pending = 0  # bytes in FreeSWITCH's prebuffer (model)
        self._playout_end = 0.0  # when FreeSWITCH's playout buffer runs dry (model)
        self._moved = 0  # bytes moved to the playout buffer, ever
        self.sent_bytes = 0  # bytes sent to FreeSWITCH, ever (padding included)
        self._last_push = 0.0
        self._marks: deque[tuple[int, str]] = deque()  # (position in sent bytes, name)
        self.dropped_bytes = 0

    # -- input ----------------------------------------------------------------------------------
    def push(self, pcm: bytes, now: float) -> None:
        """Queue agent audio (L16 at ``rate``); audio beyond ``max_seconds`` of queue is dropped and counted."""
        room = self.max_bytes - len(self._queue)
        if len(pcm) > room:
            self.dropped_bytes += len(pcm) - room
            pcm = pcm[:room]
        self._queue += pcm
        self._last_push = now

    def mark(self, name: str) -> None:
        """A point in the agent's audio: reported once everything queued before it is heard."""
        self._marks.append((self.sent_bytes + len(self._queue), name))

    def clear(self, now: float) -> list[str]:
        """Barge-in: drop queued audio (the caller also sends ``killAudio``). Returns the marks this ends."""
        self._queue.clear()
        if self._playout_end > now:  # killAudio empties the playout buffer
            self._playout_end = now
        names = [name for _, name in self._marks]
        self._marks.clear()
        return names

    # -- output ---------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether :meth:`poll` has work to do later (queued audio, a tail to pad, marks to report)."""
        return bool(self._queue) or bool(self._marks)

    @property
    def queued_ms(self) -> float:
        """Audio waiting in the pacer."""
        return len(self._queue) / self._bpms

    def held(self, now: float) -> int:
        """Model: bytes FreeSWITCH holds and has not played (prebuffer + playout buffer)."""
        return self._pending + max(0, int((self._playout_end - now) * 1000 * self._bpms))

    def played(self, now: float) -> int:
        """Model: bytes FreeSWITCH has played (or discarded) by ``now``."""
        return self._moved - max(0, int((self._playout_end - now) * 1000 * self._bpms))

    def poll(self, now: float) -> tuple[bytes | None, list[str]]:
        """Audio to send now (one message, or None) and the marks heard by now."""
        chunk: bytes | None = None
        queue = self._queue
        idle = now - self._last_push >= self._idle
        filling = self._pad and not idle and len(queue) < self._threshold  # a unit is not complete yet
        if queue and not filling:
            allowed = (self._target - self.held(now)) & ~1
            if self._pad:  # streaming: whole prebuffer units only, so FreeSWITCH never keeps a tail
                unit = self._threshold
                if idle and len(queue) % unit:
                    queue += bytes(unit - len(queue) % unit)  # the agent went quiet: pad the tail
                allowed = min(allowed, len(queue)) // unit * unit
            elif self._min_send:  # file playback: whole segments; a shorter tail only once the agent is quiet
                need = min(len(queue), self._min_send) if idle else self._min_send
                if allowed < need or len(queue) < need:
                    allowed = 0
            if allowed > 0:
                if allowed >= len(queue):
                    chunk = bytes(queue)
                    queue.clear()
                else:
                    chunk = bytes(queue[:allowed])
                    del queue[:allowed]
        if chunk:
            self._sent(chunk, now)
        marks: list[str] = []
        if self._marks:
            heard = self.played(now)
            while self._marks and self._marks[0][0] <= heard:
                marks.append(self._marks.popleft()[1])
        return chunk, marks

    def _sent(self, chunk: bytes, now: float) -> None:
        """Model what FreeSWITCH does with ``chunk``."""
        self.sent_bytes += len(chunk)
        self._pending += len(chunk)
        if self._pending >= self._threshold:
            start = self._playout_end if self._playout_end > now else now
            self._playout_end = start + self._pending / self._bpms / 1000
            self._moved += self._pending
            self._pending = 0
            self._threshold = self._chunk
