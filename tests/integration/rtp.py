"""A caller's RTP endpoint for the real-FreeSWITCH suite: G.711 μ-law frames and RFC 4733 digits both ways, RTCP.

sipp does the signalling with this endpoint's address in its SDP; the endpoint streams 20 ms PCMU frames
to the port FreeSWITCH answered with, sends digits as telephone-events (payload type 101), and decodes
the telephone-events FreeSWITCH sends, so a test sees what a phone on the far end would hear.

RTCP on the next port up (RFC 3550: the SDP has no ``a=rtcp``, so FreeSWITCH sends its reports to the RTP port +
1): the endpoint records FreeSWITCH's sender reports (:attr:`RtpPeer.sender_reports`) and, once
:meth:`RtpPeer.report` is called, sends a receiver report every interval — one report block on FreeSWITCH's stream
(RFC 3550 6.4.2: fraction lost, cumulative lost, extended highest sequence number, jitter, LSR/DLSR), with the
loss and jitter it is told to claim and its DLSR shortened so that the round trip FreeSWITCH measures grows by
the delay it is told to add.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import struct
import time
from dataclasses import dataclass, field

import numpy as np
from audio_tools import DTMF_TONES, goertzel_digits  # noqa: F401  (tests import them from here too)

PCMU, EVENT = 0, 101
EVENT_CODES = "0123456789*#ABCD"
FRAME = 160  # 20 ms at 8 kHz
HOST = "127.0.0.2"  # the caller's address (sipp signals from it): never inside FreeSWITCH's own RTP range


def packet(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    """One RTP packet (version 2, no CSRC, no extension)."""
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def ntp_middle(t: float) -> int:
    """The middle 32 bits of the NTP timestamp of epoch time ``t`` (RFC 3550's LSR): 16 bits of seconds, 16 of
    fraction."""
    ntp = t + 2208988800
    return ((int(ntp) & 0xFFFF) << 16 | int((ntp % 1) * 65536)) & 0xFFFFFFFF


def receiver_report(ssrc: int, source: int, fraction: int, lost: int, highest: int, jitter: int, lsr: int,
                    dlsr: int) -> bytes:  # fmt: skip
    """An RTCP RR (PT 201) with one report block (RFC 3550 6.4.2): 32 bytes, length 7 words after the first."""
    return struct.pack(
        "!BBHIIIIIII", 0x81, 201, 7, ssrc, source, (fraction & 0xFF) << 24 | (lost & 0xFFFFFF),
        highest & 0xFFFFFFFF, jitter & 0xFFFFFFFF, lsr & 0xFFFFFFFF, dlsr & 0xFFFFFFFF,
    )  # fmt: skip


@dataclass
class SenderReport:
    """An RTCP SR FreeSWITCH sent: when it arrived (epoch), its SSRC, NTP middle bits, packets sent, its blocks."""

    at: float
    ssrc: int
    lsr: int
    packets: int
    blocks: int


def parse_sender_reports(data: bytes, at: float) -> list[SenderReport]:
    """The SRs of a compound RTCP packet (others skipped)."""
    out: list[SenderReport] = []
    i = 0
    while i + 4 <= len(data):
        first, pt, length = struct.unpack("!BBH", data[i : i + 4])
        end = i + 4 * (length + 1)
        if first >> 6 != 2 or end > len(data):
            break
        if pt == 200 and end - i >= 28:
            ssrc, msw, lsw, _ts, packets = struct.unpack("!IIIII", data[i + 4 : i + 24])
            out.append(SenderReport(at, ssrc, ((msw & 0xFFFF) << 16) | (lsw >> 16), packets, first & 0x1F))
        i = end
    return out


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


class _RtcpSocket(asyncio.DatagramProtocol):
    def __init__(self, peer: RtpPeer) -> None:
        self.peer = peer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer.rtcp_packets += 1
        self.peer.sender_reports += parse_sender_reports(data, time.time())


@dataclass
class Claim:
    """What the peer's receiver reports claim: ``loss_pct`` of FreeSWITCH's packets lost, ``jitter`` (timestamp
    units), ``extra_rtt_ms`` more round trip (its DLSR shortened by as much)."""

    loss_pct: float = 0.0
    jitter: int = 0
    extra_rtt_ms: float = 0.0


@dataclass
class SentReport:
    """A receiver report the peer sent: its block's figures."""

    at: float
    fraction: int
    lost: int
    highest: int
    jitter: int
    lsr: int
    dlsr: int


class RtpPeer(asyncio.DatagramProtocol):
    """Bound on 127.0.0.2 (RTP on an even port, RTCP on the next); ``aim`` it at FreeSWITCH's media port, then it
    streams until closed."""

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
        # RTCP: FreeSWITCH's stream as received (its SSRC, first and extended highest sequence numbers) and reports
        self.rtcp: _RtcpSocket | None = None
        self.rtcp_packets = 0
        self.sender_reports: list[SenderReport] = []
        self.reports_sent: list[SentReport] = []
        self.claim: Claim | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._source: int | None = None
        self._first_seq: int | None = None
        self._highest = -1  # extended
        self._claimed_lost = 0.0

    @classmethod
    async def open(cls) -> RtpPeer:
        loop = asyncio.get_running_loop()
        for _ in range(100):
            _, peer = await loop.create_datagram_endpoint(cls, local_addr=(HOST, 0))
            if peer.port % 2 == 0:
                try:
                    _, rtcp = await loop.create_datagram_endpoint(
                        functools.partial(_RtcpSocket, peer), local_addr=(HOST, peer.port + 1)
                    )
                except OSError:
                    pass
                else:
                    peer.rtcp = rtcp
                    return peer
            assert peer.transport is not None
            peer.transport.close()
        raise RuntimeError("no free even/odd port pair on " + HOST)

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
        if len(data) >= 12 and data[0] >> 6 == 2:
            seq, ssrc = struct.unpack("!H", data[2:4])[0], struct.unpack("!I", data[8:12])[0]
            if ssrc != self._source:  # a new stream: count from it
                self._source, self._first_seq, self._highest, self._claimed_lost = ssrc, seq, seq, 0.0
            else:
                ahead = (seq - self._highest) & 0xFFFF
                if 0 < ahead < 0x8000:  # forward (across a wrap too); older packets are left out
                    self._highest += ahead

    def report(self, claim: Claim, interval: float = 1.0) -> None:
        """From now on send a receiver report every ``interval`` seconds, claiming ``claim`` (changeable)."""
        self.claim = claim
        if self._reporter is None:
            self._reporter = asyncio.create_task(self._report_loop(interval))

    def _send_report(self) -> SentReport | None:
        assert self.rtcp is not None and self.rtcp.transport is not None and self._target is not None
        if self._source is None or self._first_seq is None or self.claim is None:
            return None
        last = self.reports_sent[-1] if self.reports_sent else None
        expected_total = self._highest - self._first_seq + 1
        interval_expected = self._highest - (last.highest if last else self._first_seq - 1)
        interval_lost = round(interval_expected * self.claim.loss_pct / 100) if interval_expected > 0 else 0
        self._claimed_lost = min(self._claimed_lost + interval_lost, expected_total)
        lost = int(self._claimed_lost)
        fraction = min(255, interval_lost * 256 // interval_expected) if interval_expected > 0 else 0
        now = time.time()
        lsr = dlsr = 0
        # the latest SR old enough to hide the extra delay in (none: no LSR, FreeSWITCH measures no RTT this time)
        extra = self.claim.extra_rtt_ms / 1000
        old_enough = [sr for sr in self.sender_reports if now - sr.at >= extra]
        if old_enough:
            lsr = old_enough[-1].lsr
            dlsr = int((now - old_enough[-1].at - extra) * 65536)
        sent = SentReport(now, fraction, lost, self._highest, self.claim.jitter, lsr, dlsr)
        self.rtcp.transport.sendto(
            receiver_report(self._ssrc, self._source, fraction, lost, self._highest, self.claim.jitter, lsr, dlsr),
            (self._target[0], self._target[1] + 1),
        )
        self.reports_sent.append(sent)
        return sent

    async def _report_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._send_report()

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
        for task in (self._sender, self._reporter):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.transport is not None:
            self.transport.close()
        if self.rtcp is not None and self.rtcp.transport is not None:
            self.rtcp.transport.close()


G722_PT = 9


class AudioPeer(RtpPeer):
    """A phone that talks: a tone (PCMU at 8 kHz, or G.722 at 16 kHz after :meth:`switch_codec`), DTMF as tones in
    the audio (:meth:`send_tones`), and what it receives decoded by payload type (:attr:`heard`: L16 per codec)."""

    def __init__(self, freq: float = 440.0) -> None:
        super().__init__()
        self.freq = freq
        self.codec = "PCMU"
        self.heard: dict[str, bytearray] = {"PCMU": bytearray(), "G722": bytearray()}
        self._tones: asyncio.Queue[str] = asyncio.Queue()
        self._phase = 0
        self._g722_enc: object | None = None
        self._g722_dec: object | None = None

    def switch_codec(self, codec: str) -> None:
        """Send (and expect) ``codec`` from the next frame on (after a re-INVITE changed it)."""
        self.codec = codec

    async def send_tones(self, digits: str) -> None:
        """``digits`` as DTMF tone pairs in the audio (120 ms each, then 120 ms of silence, instead of the tone);
        waits until they are sent."""
        for d in digits:
            self._tones.put_nowait(d)
        async with asyncio.timeout(2 + len(digits)):
            while not self._tones.empty():
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.35)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        super().datagram_received(data, addr)
        if len(data) < 12 or data[0] >> 6 != 2 or data[0] & 0x10:
            return
        pt, body = data[1] & 0x7F, data[12 + 4 * (data[0] & 0x0F) :]
        if pt == PCMU:
            self.heard["PCMU"] += _ulaw_to_l16(body)
        elif pt == G722_PT:
            self.heard["G722"] += self._g722("dec").decode(body).tobytes()  # type: ignore[attr-defined]

    def _g722(self, which: str) -> object:
        import G722  # the g722 package (test extra): sippy's libg722

        attr = "_g722_" + which
        if getattr(self, attr) is None:
            setattr(self, attr, G722.G722(16000, 64000))
        return getattr(self, attr)

    def _samples(self, rate: int, n: int, pair: tuple[int, int] | None, mute: bool) -> np.ndarray:
        t = (self._phase + np.arange(n)) / rate
        self._phase += n
        if mute:  # between digits: silence (a detector ends a digit at the gap, not when other sound follows)
            return np.zeros(n)
        if pair is not None:
            return 6000 * (np.sin(2 * np.pi * pair[0] * t) + np.sin(2 * np.pi * pair[1] * t)) / 2
        return 8000 * np.sin(2 * np.pi * self.freq * t)

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        pair: tuple[int, int] | None = None
        left = 0  # frames of the current digit's tone (then of its gap)
        gap = 0
        while True:
            if pair is None and gap == 0 and not self._tones.empty():
                pair, left = DTMF_TONES[self._tones.get_nowait()], 6  # 120 ms
            if self.codec == "G722":
                pcm = np.round(self._samples(16000, 320, pair, gap > 0)).astype(np.int16)
                self._send(G722_PT, self._g722("enc").encode(pcm))  # type: ignore[attr-defined]
                self._ts += 320 // 2  # G.722's RTP clock is 8 kHz (RFC 3551)
            else:
                pcm = np.round(self._samples(8000, FRAME, pair, gap > 0)).astype(np.int16)
                self._send(PCMU, _l16_to_ulaw(pcm.astype("<i2").tobytes()))
                self._ts += FRAME
            self.sent += 1
            if pair is not None:
                left -= 1
                if left == 0:
                    pair, gap = None, 6
            elif gap:
                gap -= 1
            tick += 0.02
            await asyncio.sleep(max(0.0, tick - loop.time()))


def _ulaw_to_l16(data: bytes) -> bytes:
    from orchestrator.audio.convert import audioop

    return audioop.ulaw2lin(data, 2)


def _l16_to_ulaw(data: bytes) -> bytes:
    from orchestrator.audio.convert import audioop

    return audioop.lin2ulaw(data, 2)
