"""A caller's RTP endpoint for the real-FreeSWITCH suite: G.711 μ-law frames and RFC 4733 digits both ways.

sipp does the signalling with this endpoint's address in its SDP; the endpoint streams 20 ms PCMU frames
to the port FreeSWITCH answered with, sends digits as telephone-events (payload type 101), and decodes
the telephone-events FreeSWITCH sends, so a test sees what a phone on the far end would hear.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from dataclasses import dataclass, field

PCMU, EVENT = 0, 101
EVENT_CODES = "0123456789*#ABCD"
FRAME = 160  # 20 ms at 8 kHz
HOST = "127.0.0.2"  # the caller's address (sipp signals from it): never inside FreeSWITCH's own RTP range


def packet(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    """One RTP packet (version 2, no CSRC, no extension)."""
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def event_payload(digit: str, end: bool, duration: int, volume: int = 10) -> bytes:
    """RFC 4733 section 2.3: event, E bit + volume, duration in timestamp units."""
    return struct.pack("!BBH", EVENT_CODES.index(digit), (0x80 if end else 0) | volume, duration)


@dataclass
class EventDecoder:
    """Digits out of received telephone-event packets: one per event timestamp, on its first end packet."""

    digits: list[str] = field(default_factory=list)
    _ended: set[int] = field(default_factory=set)

    def feed(self, data: bytes) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        pt, ts = data[1] & 0x7F, struct.unpack("!I", data[4:8])[0]
        offset = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10:  # header extension
            offset += 4 + 4 * struct.unpack("!H", data[offset + 2 : offset + 4])[0]
        body = data[offset:]
        if pt != EVENT or len(body) < 4 or not body[1] & 0x80 or ts in self._ended:
            return
        self._ended.add(ts)
        if body[0] < len(EVENT_CODES):
            self.digits.append(EVENT_CODES[body[0]])


class RtpPeer(asyncio.DatagramProtocol):
    """Bound on 127.0.0.2; ``aim`` it at FreeSWITCH's media port, then it streams until closed."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self.decoder = EventDecoder()
        self._target: tuple[str, int] | None = None
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._seq, self._ts, self._ssrc = random.randrange(1 << 16), random.randrange(1 << 32), random.getrandbits(32)
        #: (k, n): of every n audio packets the first k are lost on the way (never sent; their numbers skipped)
        self.loss: tuple[int, int] = (0, 0)
        self.sent = self.dropped = 0
        self._nth = 0

    @classmethod
    async def open(cls) -> RtpPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=(HOST, 0))
        return peer

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    @property
    def digits_heard(self) -> str:
        return "".join(self.decoder.digits)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        self.decoder.feed(data)

    def aim(self, host: str, port: int) -> None:
        """Start streaming silence to ``host:port``."""
        self._target = (host, port)
        self._sender = asyncio.create_task(self._send_loop())

    async def send_digits(self, digits: str) -> None:
        """Queue ``digits`` (100 ms each, 100 ms apart) and wait until the last one is sent."""
        assert self._sender is not None, "aim the peer first"
        for d in digits:
            self._digits.put_nowait(d)
        async with asyncio.timeout(2 + len(digits)):
            while not self._digits.empty():
                if self._sender.done():
                    self._sender.result()  # raises what stopped it
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)

    def _send(self, pt: int, payload: bytes, marker: bool = False, ts: int | None = None) -> None:
        assert self.transport is not None and self._target is not None
        self.transport.sendto(
            packet(pt, self._seq, self._ts if ts is None else ts, self._ssrc, payload, marker), self._target
        )
        self._seq += 1

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        silence = b"\xff" * FRAME
        gap = 0
        while True:
            if gap == 0 and not self._digits.empty():
                digit, start = self._digits.get_nowait(), self._ts
                for n in range(1, 6):  # 5 × 20 ms, the first with the marker bit
                    self._send(EVENT, event_payload(digit, False, n * FRAME), marker=n == 1, ts=start)
                    tick += 0.02
                    await asyncio.sleep(max(0.0, tick - loop.time()))
                for _ in range(3):  # the end packet, sent three times (RFC 4733 2.5.1.4)
                    self._send(EVENT, event_payload(digit, True, 5 * FRAME), ts=start)
                self._ts += 5 * FRAME
                gap = 5
                continue
            lost, every = self.loss
            self._nth = (self._nth + 1) % every if every else 0
            if every and self._nth < lost:
                self._seq += 1  # lost on the way: the far end sees a gap in the sequence
                self.dropped += 1
            else:
                self._send(PCMU, silence)
                self.sent += 1
            self._ts += FRAME
            gap = max(0, gap - 1)
            tick += 0.02
            await asyncio.sleep(max(0.0, tick - loop.time()))

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self.transport is not None:
            self.transport.close()
