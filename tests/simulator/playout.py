"""jambonz mod_audio_fork's streaming playout (bidirectional audio, stream=true): pure, driven by frames.

Models ``processIncomingBinary`` and ``dub_speech_frame`` of jambonz's mod_audio_fork (``lws_glue.cpp``,
``audio_pipe.cpp``, 30f21899) as recorded in fixture 10 and rtp-analysis: no clock is read, the channel's media
clock (:class:`~simulator.media.ChannelAudio`) calls :meth:`StreamPlayout.tick` once per written frame.
"""

from __future__ import annotations

from collections import deque

from .media import Resampler, pcm_to_samples

MAX_MARKS = 30


class StreamPlayout:
    """jambonz mod_audio_fork's playback of server audio (``processIncomingBinary`` / ``dub_speech_frame``).

    * Binary frames arrive in pieces of at most ``rx_chunk`` (1024) bytes -- libwebsockets' rx buffer -- an odd byte
      is carried over; pending marks enter the audio as one sample 0xFFFF (-1) each in front of the next piece.
    * The prebuffer (stream rate) is moved to the playout buffer (resampled to the leg rate) only when it holds
      ``1280 * df`` samples (160 ms at a stream rate <= leg rate; df = stream rate // leg rate, at least 1), later
      ``640 * df`` (80 ms): what remains below that stays until more audio comes (tail holdback; measured: 1 s in one
      32000 B frame keeps 72 ms back, 97 x 333 B 74 ms, 2 x 16000 B 20 ms, 500 x 64 B 60 ms -- as in rtp-analysis).
    * Each written frame takes up to one frame of samples. While marks are in use or cleared, every -1 sample pops a
      mark (cleared ones silently, in-use ones answer ``playout``) and is dropped from the audio -- a real -1 sample is
      taken for a marker too. With nothing buffered and no such marks, one mark left in the inventory (sent after the
      last audio) answers ``playout`` per frame. The resampler destroys the markers, so with stream rate != leg rate
      marks only come back through that empty-buffer path (or ``cleared``).
    * killAudio: at the next frame the playout buffer (not the prebuffer) is emptied, every in-use and inventory mark
      answers ``cleared`` and the in-use ones move to the cleared queue (they swallow the next markers: off by one).
      clearMarks moves in-use and inventory marks to the cleared queue without a reply. ``stop_play`` empties the
      playout buffer now and leaves the marks alone. At most 30 marks (in use + inventory); more are dropped.
    """

    def __init__(self, stream_rate: int, leg_rate: int, rx_chunk: int = 1024):
        self.df = stream_rate // leg_rate if stream_rate > leg_rate else 1
        self.threshold = 320 * self.df * 4
        self.rx_chunk = rx_chunk
        self.resampler = Resampler(stream_rate, leg_rate) if stream_rate != leg_rate else None
        self.prebuffer: list[int] = []
        self.playout: deque[int] = deque()
        self.carry = b""
        self.clear_pending = False
        self.marks_on = False
        self.inventory: deque[str] = deque()
        self.in_use: deque[str] = deque()
        self.cleared: deque[str] = deque()

    # -- from the server -------------------------------------------------------------------------------
    def feed(self, message: bytes) -> None:
        """One binary WebSocket message."""
        for i in range(0, len(message), self.rx_chunk):
            self._piece(message[i : i + self.rx_chunk])

    def _piece(self, data: bytes) -> None:
        if self.carry:
            data, self.carry = self.carry + data, b""
        if len(data) % 2:
            data, self.carry = data[:-1], data[-1:]
        if self.marks_on and self.inventory:
            self.prebuffer.extend([-1] * len(self.inventory))
            self.in_use.extend(self.inventory)
            self.inventory.clear()
        self.prebuffer.extend(pcm_to_samples(data))
        if len(self.prebuffer) < self.threshold:
            return
        self.threshold = 320 * self.df * 2
        full = len(self.prebuffer) // self.df * self.df
        chunk, self.prebuffer = self.prebuffer[:full], self.prebuffer[full:]
        self.playout.extend(self.resampler.process(chunk) if self.resampler else chunk)

    def add_mark(self, name: str) -> bool:
        """``{"type":"mark"}``; False when dropped (30 pending)."""
        if self.marks_on and len(self.in_use) + len(self.inventory) >= MAX_MARKS:
            return False
        self.marks_on = True
        self.inventory.append(name)
        return True

    def clear_marks(self) -> None:
        """``{"type":"clearMarks"}``."""
        if self.marks_on:
            self.cleared.extend(self.in_use)
            self.cleared.extend(self.inventory)
            self.in_use.clear()
            self.inventory.clear()

    def kill(self) -> None:
        """killAudio: empty the playout buffer at the next frame."""
        self.clear_pending = True

    def stop_play(self) -> None:
        """``uuid_audio_fork <uuid> stop_play``."""
        self.playout.clear()

    # -- each written frame --------------------------------------------------------------------------------
    def tick(self, n: int) -> tuple[list[int], list[tuple[str, str]]]:
        """Samples to add to a frame of ``n`` samples, and mark notifications ``(name, "playout"|"cleared")``."""
        notes: list[tuple[str, str]] = []
        if self.clear_pending:
            self.clear_pending = False
            self.playout.clear()
            if self.marks_on and (self.in_use or self.inventory):
                notes = [(name, "cleared") for name in (*self.in_use, *self.inventory)]
                self.cleared.extend(self.in_use)
                self.in_use.clear()
                self.inventory.clear()
            return [], notes
        take = min(len(self.playout), n)
        pop = self.playout.popleft
        if self.marks_on and (self.in_use or self.cleared):
            data: list[int] = []
            for _ in range(take):
                s = pop()
                if s != -1:
                    data.append(s)
                elif self.cleared:
                    self.cleared.popleft()
                elif self.in_use:
                    notes.append((self.in_use.popleft(), "playout"))
            return data, notes
        data = [pop() for _ in range(take)]
        if not take and self.marks_on and self.inventory:
            notes.append((self.inventory.popleft(), "playout"))
        return data, notes


def mark_reply(name: str, event: str) -> str:
    """The text jambonz's ``send_mark_event`` writes (name inserted unescaped, as the module does)."""
    return '{"type": "mark", "data": {"name":"' + name + '", "event": "' + event + '"}}'
