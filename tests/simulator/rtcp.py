"""The far end's RTCP reports and the ``RECV_RTCP_MESSAGE`` event, as FreeSWITCH 1.10.12 reads and fires them.

Sources (FreeSWITCH v1.10.12):

* ``src/switch_rtp.c`` ``process_rtcp_report`` (line 6686): an SR stores its sender's SSRC, NTP words, RTP
  timestamp, packet and octet counts in the session's ``rtcp_frame``; an RR leaves them as the last SR set them
  (0 before any). Then for each report block (``header.count``, at most ``MAX_REPORT_BLOCKS`` = 5):
  ``loss_avg`` (``fraction·100/255`` as an integer, then 0.7·old + 0.3·new while non-zero), SSRC, fraction, the
  24-bit cumulative loss sign-extended into an ``int32_t``, the extended highest sequence number, jitter, LSR,
  DLSR; with a non-zero LSR, ``rtt_now = ((int64)lsr_now − dlsr − lsr)/65536`` seconds, taken only when
  ``lsr_now > dlsr + lsr`` (32-bit sum), ``rtt_avg`` = the first, then 0.7·avg + 0.3·rtt_now (it stays as it was
  for reports without an LSR); ``report_count`` = the blocks read; the frame is marked fresh. ``lsr_now`` is
  ``calc_local_lsr_now``: the middle 32 bits of the NTP time now (``(ntp_sec & 0xffff) << 16 | usec·0.065536``).
* ``src/switch_core_media.c`` ``switch_core_media_read_frame`` (line 2945): at the next frame read after a fresh
  frame (``switch_rtcp_zerocopy_read_frame``), a ``RECV_RTCP_MESSAGE`` event (``switch_event_create``: core
  headers only, no channel data) with ``Unique-ID``, ``SSRC`` (``%.8x``), ``NTP-Most-Significant-Word``,
  ``NTP-Least-Significant-Word``, ``RTP-Timestamp``, ``Sender-Packet-Count``, ``Octect-Packet-Count`` (sic),
  ``Last-RTP-Timestamp``, ``RTP-Rate`` (the codec's RTP clock rate: 8000 for G.722), ``Capture-Time`` (µs), then
  per block ``Source<i>-SSRC`` (``%.8x``), ``-Fraction``, ``-Lost`` (``%u`` of the ``int32_t``), ``-Loss-Avg``,
  ``-Highest-Sequence-Number-Received``, ``-Jitter``, ``-LSR``, ``-DLSR`` and ``Rtt<i>-Avg`` (``%f``).
* RTCP is on for a session only with the profile's ``rtcp-audio-interval-msec`` or the channel variable
  ``rtcp_audio_interval_msec`` (``switch_core_media_activate_rtp``, line 8862): ``sim.rtcp_audio_interval_msec``
  stands for the profile parameter. Without it no RTCP socket is read and no event fires.

Not modelled: two reports between frame reads (FreeSWITCH fires only the latest), SDES/BYE/APP and feedback
packets, ``a=rtcp`` in the far end's SDP turning RTCP on at 1 s, rtcp-mux and passthru, the reports FreeSWITCH
sends itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch
    from .wire import Event

EVENT = "RECV_RTCP_MESSAGE"
MAX_REPORT_BLOCKS = 5
NTP_TIME_OFFSET = 2208988800
_U32 = 1 << 32


@dataclass(frozen=True)
class Block:
    """One report block as the far end sends it (RFC 3550 6.4.1): about the stream ``ssrc`` (FreeSWITCH's)."""

    ssrc: int = 0x5EED0001
    fraction: int = 0  # 0-255
    lost: int = 0  # cumulative, signed 24 bits
    highest_seq: int = 0
    jitter: int = 0  # RTP timestamp units
    lsr: int = 0
    dlsr: int = 0


@dataclass(frozen=True)
class Sender:
    """An SR's sender info (its SSRC and what it sent)."""

    ssrc: int
    ntp_msw: int = 0
    ntp_lsw: int = 0
    timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0


def lsr_of(now_us: int) -> int:
    """``calc_local_lsr_now`` at ``now_us`` (epoch µs): the middle 32 bits of the NTP timestamp."""
    sec = now_us // 1_000_000
    usec = now_us - sec * 1_000_000
    return ((int(usec * 0.065536)) | ((sec + NTP_TIME_OFFSET) & 0xFFFF) << 16) & 0xFFFFFFFF


@dataclass
class _BlockState:
    ssrc: int = 0
    fraction: int = 0
    lost: int = 0
    highest_seq: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0
    loss_avg: int = 0
    rtt_avg: float = 0.0


@dataclass
class RtcpFrame:
    """A session's ``rtcp_frame`` (what ``process_rtcp_report`` leaves for the next event), pure."""

    ssrc: int = 0
    ntp_msw: int = 0
    ntp_lsw: int = 0
    timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0
    report_count: int = 0
    reports: list[_BlockState] = field(default_factory=lambda: [_BlockState() for _ in range(MAX_REPORT_BLOCKS)])

    def receive(self, blocks: list[Block], sender: Sender | None, now_us: int) -> None:
        """``process_rtcp_report`` for an SR (``sender`` given) or an RR carrying ``blocks``."""
        if sender is not None:
            self.ssrc, self.ntp_msw, self.ntp_lsw = sender.ssrc, sender.ntp_msw, sender.ntp_lsw
            self.timestamp, self.packet_count, self.octet_count = (
                sender.timestamp, sender.packet_count, sender.octet_count,
            )  # fmt: skip
        lsr_now = lsr_of(now_us)
        count = 0
        for i, b in enumerate(blocks[:MAX_REPORT_BLOCKS]):
            r = self.reports[i]
            percent = (b.fraction & 0xFF) * 100 // 255
            r.loss_avg = percent if not r.loss_avg else int(r.loss_avg * 0.7 + percent * 0.3)
            r.ssrc, r.fraction = b.ssrc & 0xFFFFFFFF, b.fraction & 0xFF
            lost24 = b.lost & 0xFFFFFF
            r.lost = lost24 - (1 << 24) if lost24 & 0x800000 else lost24  # sign-extended into int32_t
            r.highest_seq, r.jitter = b.highest_seq & 0xFFFFFFFF, b.jitter & 0xFFFFFFFF
            r.lsr, r.dlsr = b.lsr & 0xFFFFFFFF, b.dlsr & 0xFFFFFFFF
            if r.lsr:
                rtt_now = (lsr_now - r.dlsr - r.lsr) / 65536
                if lsr_now > (r.dlsr + r.lsr) & 0xFFFFFFFF:
                    r.rtt_avg = rtt_now if not r.rtt_avg else r.rtt_avg * 0.7 + rtt_now * 0.3
            count = i + 1
        self.report_count = count

    def headers(self, uuid: str, rate: int, last_ts: int, now_us: int) -> list[tuple[str, str]]:
        """The event's own headers (after the core ones), in FreeSWITCH's order."""
        out = [
            ("Unique-ID", uuid),
            ("SSRC", f"{self.ssrc:08x}"),
            ("NTP-Most-Significant-Word", str(self.ntp_msw)),
            ("NTP-Least-Significant-Word", str(self.ntp_lsw)),
            ("RTP-Timestamp", str(self.timestamp)),
            ("Sender-Packet-Count", str(self.packet_count)),
            ("Octect-Packet-Count", str(self.octet_count)),
            ("Last-RTP-Timestamp", str(last_ts & 0xFFFFFFFF)),
            ("RTP-Rate", str(rate)),
            ("Capture-Time", str(now_us)),
        ]
        for i in range(self.report_count):
            r = self.reports[i]
            out += [
                (f"Source{i}-SSRC", f"{r.ssrc:08x}"),
                (f"Source{i}-Fraction", str(r.fraction)),
                (f"Source{i}-Lost", str(r.lost & 0xFFFFFFFF)),  # %u of an int32_t
                (f"Source{i}-Loss-Avg", str(r.loss_avg)),
                (f"Source{i}-Highest-Sequence-Number-Received", str(r.highest_seq)),
                (f"Source{i}-Jitter", str(r.jitter)),
                (f"Source{i}-LSR", str(r.lsr)),
                (f"Source{i}-DLSR", str(r.dlsr)),
                (f"Rtt{i}-Avg", f"{r.rtt_avg:f}"),
            ]
        return out


#: the codec's RTP clock rate (``rm_rate``: G.722 is clocked at 8000 by RFC 3551)
RTP_CLOCK = {"PCMU": 8000, "PCMA": 8000, "G722": 8000, "OPUS": 48000, "L16": 8000}


class Rtcp:
    """Mixin: the far end's RTCP reports on a live channel."""

    #: the profile's ``rtcp-audio-interval-msec`` (None: not set, RTCP off unless the channel variable is set)
    rtcp_audio_interval_msec: str | None = None

    def rtcp_enabled(self: SimulatedFreeSwitch, uuid: str) -> bool:
        """Whether the channel's RTP session reads RTCP (the variable wins over the profile's parameter)."""
        ch = self.channels[uuid]
        return bool(ch.variables.get("rtcp_audio_interval_msec") or self.rtcp_audio_interval_msec)

    def receive_rtcp(self: SimulatedFreeSwitch, uuid: str, *blocks: Block, sender: Sender | None = None,
                     rtt_ms: float | None = None) -> Event | None:  # fmt: skip
        """The far end's RTCP report reaches a live channel with media: the event FreeSWITCH fires at the next frame
        read (None: no RTCP on this session, or no media). ``rtt_ms`` fills each block's LSR so that FreeSWITCH's
        ``lsr_now − DLSR − LSR`` comes out at that round-trip time."""
        ch = self.channels[uuid]
        if not ch.alive or not ch.media or not self.rtcp_enabled(uuid):
            return None
        now_us = int(time.time() * 1_000_000)
        if rtt_ms is not None:
            lsr_now = lsr_of(now_us)
            blocks = tuple(
                Block(b.ssrc, b.fraction, b.lost, b.highest_seq, b.jitter,
                      (lsr_now - b.dlsr - int(rtt_ms * 65.536)) & 0xFFFFFFFF, b.dlsr)
                for b in blocks
            )  # fmt: skip
        if ch.rtcp_frame is None:
            ch.rtcp_frame = RtcpFrame()
        frame: RtcpFrame = ch.rtcp_frame
        frame.receive(list(blocks), sender, now_us)
        rate = RTP_CLOCK.get(ch.codec, ch.rate or 8000)
        last_ts = int(time.monotonic() * rate)  # the last frame read's timestamp: any value counting at the rate
        ev = self.core_event(EVENT)
        ev.headers += frame.headers(ch.uuid, rate, last_ts, now_us)
        self.deliver(ev)
        return ev
