"""Live RTP quality of a call, sans-I/O: FreeSWITCH's media statistics in; points, summaries and changes out.

**Where the numbers come from** (FreeSWITCH 1.10.12). ``json {"command":"mediaStats","data":{"uuid":…}}``
(mod_commands.c ``json_stats_function``) runs ``switch_core_media_set_stats`` on the live channel — which also
refreshes its ``rtp_audio_*`` variables, what ``uuid_set_media_stats`` does — and answers, in the same reply, the
audio RTP counters as one JSON object: one command per call and sample, no second ``uuid_dump``/``uuid_getvar``
round trip (calls/sampler.py sends it as ``bgapi``). Its names are the variables' names without ``rtp_audio_``
(:data:`FIELDS`). What they mean, from ``switch_rtp.c``:

* ``in_*`` is what FreeSWITCH **receives** from the far end; ``out_*`` what it **sends**. FreeSWITCH measures
  loss, jitter and MOS only for what it receives; for what it sends it counts packets and bytes. The far end's
  view comes from its RTCP receiver reports (below).
* ``in_media_packet_count``: audio packets received; ``in_packet_count`` all packets (with DTMF and CNG);
  ``in_skip_packet_count``: frames FreeSWITCH replaced by comfort noise.
* ``in_flaw_total``: *flaws* — each packet missing from the sequence, each read tick without audio once the
  stream has been silent for 2 s, plus penalties: ``do_mos`` compares the count with a stale copy, so every gap
  costs 2 more at the next packet (and more in consecutive ones). FreeSWITCH resets it to 0 when it exceeds the
  packets received. Measured on 1.10.12: 2 of every 5 packets lost gave 40 flaws a second for 20 lost.
* ``in_quality_percentage`` R = 100·(received − flaws)/received, and ``in_mos`` = 1 + 0.035·R +
  7·10⁻⁶·R·(R − 60)·(100 − R) (4.5 at R = 100), both **over the call so far** (an R below 0 is reported as 100).
* ``in_jitter_min_variance`` / ``in_jitter_max_variance``: the smallest and largest value the running variance
  of the time between packets (ms², measured when FreeSWITCH reads them) has had in the call; its current value is
  not exported. ``in_mean_interval``: the mean time between packets (ms). ``in_jitter_loss_rate``: lost/received
  (bursts weighted), ``in_jitter_burst_rate``: the burst ratio, both refreshed at most every 5 s.
* ``out_media_packet_count``: audio packets sent (one every ptime: the rendered dialplan sends silence when idle).
* ``rtcp_packet_count`` / ``rtcp_octet_count``: the far end's sender-report counts (0 without RTCP).

**A point** of the series (:func:`point`), from this reading and the call's previous one (Δ: the growth between
them; the first point counts from the start):

* ``loss_pct``: :func:`loss_pct` of the interval — the smaller of Δflaws/(Δreceived + Δflaws) and
  (Δsent − Δreceived)/Δsent, two upper bounds of the far end's packets that never arrived;
* ``mos``: the E-model estimate (:func:`e_model_mos`) from that loss and the jitter — over the interval, where
  FreeSWITCH's ``in_mos`` covers the whole call (30 bad seconds late in a 10-minute call would barely move it) and
  takes its penalised flaws for lost packets; FreeSWITCH's ``in_mos`` when the loss cannot be told. ``mos_call``
  is FreeSWITCH's ``in_mos`` as it reported it;
* ``jitter_ms`` = √``in_jitter_max_variance``: the largest standard deviation of the time between packets
  FreeSWITCH has seen in the call so far (ms; its first packets included, it never comes down);
* ``packets_in`` / ``packets_out``: audio packets received and sent in the interval.

Counters that went down together (a new RTP session) count from zero again. Nothing read from FreeSWITCH raises:
values that are missing, not numbers, negative, not finite or above :data:`MAX_VALUE` are left out.

**The far end's view** (``out``). With RTCP on (the rendered profiles' ``rtcp-audio-interval-msec``), FreeSWITCH
fires ``RECV_RTCP_MESSAGE`` for each RTCP SR/RR it reads from the far end (:func:`parse_rtcp`: report block 0,
the far end's figures for the stream FreeSWITCH sends it). :class:`FarEnd` folds them into the next point
(:class:`Far`): ``out_loss_pct`` over the reports since the previous point from the cumulative counts
(:func:`interval_loss`), ``out_jitter_ms`` the largest of their jitters (timestamp units / ``RTP-Rate``),
``rtt_ms`` FreeSWITCH's smoothed round trip of the latest, ``out_lost`` its cumulative count, and ``out_mos`` the
E-model of the three with RTT/2 as the network's one-way delay (the ``in`` MOS takes the same delay once an RTT is
known). A point with no new report repeats the last figures while the latest report is younger than
:data:`REPORT_TTL`; later it has none. A far end without RTCP sends no reports: the ``out`` figures stay None.

:class:`Watch` turns the MOS of each point into ``quality_low`` / ``quality_ok`` with hysteresis — one per
direction (``in`` over every point, ``out`` over the points with new reports, so a report counts once); a call is
low while either direction is (:attr:`Track.low_direction`). :class:`Track` keeps one call's bounded series, its
last reading, the far end's latest report and its summary. Everything a far end can put in RTCP is bounded: values
out of range leave the figure (or the report) out, and a report costs O(1) work and state however many come.
"""

from __future__ import annotations

import enum
import json
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

#: the audio counters of ``mediaStats`` (also the ``rtp_audio_<name>`` channel variables), switch_core_media.c order
FIELDS: tuple[str, ...] = (
    "in_raw_bytes",
    "in_media_bytes",
    "in_packet_count",
    "in_media_packet_count",
    "in_skip_packet_count",
    "in_jitter_packet_count",
    "in_dtmf_packet_count",
    "in_cng_packet_count",
    "in_flush_packet_count",
    "in_largest_jb_size",
    "in_jitter_min_variance",
    "in_jitter_max_variance",
    "in_jitter_loss_rate",
    "in_jitter_burst_rate",
    "in_mean_interval",
    "in_flaw_total",
    "in_quality_percentage",
    "in_mos",
    "out_raw_bytes",
    "out_media_bytes",
    "out_packet_count",
    "out_media_packet_count",
    "out_skip_packet_count",
    "out_dtmf_packet_count",
    "out_cng_packet_count",
    "rtcp_packet_count",
    "rtcp_octet_count",
)
_KNOWN = frozenset(FIELDS)
#: a reply longer than this is not read (a real one is about 1 KiB)
MAX_REPLY = 64 * 1024
#: the largest value taken from FreeSWITCH (a counter of a call lasting years stays far below)
MAX_VALUE = 1e15
#: audio packets an interval needs for its own MOS (0.5 s at 20 ms); fewer: FreeSWITCH's MOS of the call
MIN_INTERVAL_PACKETS = 25
#: MOS bounds (the E-model's and FreeSWITCH's scale)
MOS_MIN, MOS_MAX = 1.0, 4.5


class Reply(enum.StrEnum):
    """What a ``mediaStats`` reply said."""

    OK = "ok"  # the counters are in the reading
    GONE = "gone"  # no such channel (it hung up meanwhile)
    NO_MEDIA = "no_media"  # a channel without audio RTP (yet)
    UNREADABLE = "unreadable"  # not a mediaStats answer


@dataclass(frozen=True)
class Reading:
    """FreeSWITCH's audio RTP counters of one call at one moment (only those it gave, as valid numbers)."""

    values: Mapping[str, float]

    def get(self, name: str) -> float | None:
        """The value of counter ``name`` (see :data:`FIELDS`), None when FreeSWITCH did not give a valid one."""
        return self.values.get(name)


def _number(value: Any) -> float | None:
    """A counter value: an int, float or numeric string, finite, 0 to :data:`MAX_VALUE`; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > 32:
            return None
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    if not math.isfinite(number) or number < 0 or number > MAX_VALUE:
        return None
    return number


def reading(values: Mapping[str, Any]) -> Reading:
    """A :class:`Reading` of the known counters among ``values`` (unknown names and bad values left out)."""
    return Reading({k: n for k in FIELDS if (n := _number(values.get(k))) is not None})


def parse_media_stats(body: str) -> tuple[Reply, Reading | None]:
    """Read the result of ``json {"command":"mediaStats",…}`` (``api`` reply or ``bgapi`` job body); never raises.

    FreeSWITCH answers ``{"command":"mediaStats","data":{…},"status":"success","response":{"audio":{…}}}``
    (``"response":{}`` for a channel without media), ``"status":"error"`` with ``"response":{"response":"Session
    does not exist"}`` for a channel that is gone, and ``-ERR …`` when the JSON was refused.
    """
    if not isinstance(body, str) or len(body) > MAX_REPLY:
        return Reply.UNREADABLE, None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, too deep, or a number with too many digits
        return Reply.UNREADABLE, None
    if not isinstance(doc, dict):
        return Reply.UNREADABLE, None
    response = doc.get("response")
    if doc.get("status") != "success":
        if isinstance(response, dict) and response.get("response") == "Session does not exist":
            return Reply.GONE, None
        return Reply.UNREADABLE, None
    if not isinstance(response, dict):
        return Reply.UNREADABLE, None
    audio = response.get("audio")
    if audio is None:
        return Reply.NO_MEDIA, None
    if not isinstance(audio, dict):
        return Reply.UNREADABLE, None
    return Reply.OK, reading(audio)


def reading_from_variables(variable: Callable[[str], str]) -> Reading:
    """A :class:`Reading` of the ``rtp_audio_*`` channel variables (``variable(name)`` gives a value or "")."""
    return reading({k: variable("rtp_audio_" + k) for k in FIELDS})


# -- MOS -------------------------------------------------------------------------------------------------------
def r_to_mos(r: float) -> float:
    """ITU-T G.107's MOS of an R factor (the formula FreeSWITCH uses): 1 below R = 0, 4.5 above 100."""
    if r <= 0:
        return MOS_MIN
    if r >= 100:
        return MOS_MAX
    return max(MOS_MIN, min(MOS_MAX, 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)))


#: G.711 with packet loss concealment (G.113 Appendix I): equipment impairment and packet-loss robustness
_IE, _BPL = 0.0, 25.1


def e_model_r(loss_pct: float, jitter_ms: float, latency_ms: float = 0.0, frame_ms: float = 20.0) -> float:
    """The E-model R factor (ITU-T G.107, simplified after Cole & Rosenbluth 2001) of a G.711 call.

    ``R = 93.2 − Id − Ie_eff``: the delay impairment ``Id = 0.024·d + 0.11·(d − 177.3)·[d > 177.3]`` of the
    one-way delay ``d = latency + 2·jitter + frame`` (a jitter buffer about twice the jitter deep, one frame of
    packetisation), and the loss impairment ``Ie_eff = Ie + (95 − Ie)·Ppl/(Ppl + Bpl)`` with G.711's Ie = 0 and
    Bpl = 25.1 (random loss, with concealment) for ``Ppl`` = loss in %. Clamped to 0–100. FreeSWITCH does not know
    the one-way latency without RTCP: ``latency_ms`` defaults to 0 (the network's share is left out).
    """
    loss = min(max(loss_pct, 0.0), 100.0)
    d = max(latency_ms, 0.0) + 2 * max(jitter_ms, 0.0) + frame_ms
    i_d = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    i_e = _IE + (95 - _IE) * loss / (loss + _BPL)
    return min(max(93.2 - i_d - i_e, 0.0), 100.0)


def e_model_mos(loss_pct: float, jitter_ms: float, latency_ms: float = 0.0) -> float:
    """MOS of :func:`e_model_r`."""
    return r_to_mos(e_model_r(loss_pct, jitter_ms, latency_ms))


# -- points ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One sample of a call's quality (see the module docstring for each value); None: not known."""

    t: float  # when it was taken (epoch seconds, the sampler's clock)
    mos: float | None
    mos_call: float | None  # FreeSWITCH's in_mos: over the call so far
    jitter_ms: float | None
    loss_pct: float | None
    packets_in: int
    packets_out: int
    far: Far | None = None  # the far end's view (its RTCP reports), None when no current report

    def to_dict(self) -> dict[str, Any]:
        """The point as the record and the API show it."""
        far = self.far
        out: dict[str, Any] = {
            "t": round(self.t, 3),
            "mos": _r2(self.mos),
            "mos_call": _r2(self.mos_call),
            "jitter_ms": _r2(self.jitter_ms),
            "loss_pct": _r2(self.loss_pct),
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "out_mos": _r2(far.mos) if far else None,
            "out_loss_pct": _r2(far.loss_pct) if far else None,
            "out_jitter_ms": _r2(far.jitter_ms) if far else None,
            "out_lost": far.lost if far else None,
            "rtt_ms": _r2(far.rtt_ms) if far else None,
        }
        return out


def _r2(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def _delta(now: Reading, before: Reading | None, name: str) -> float | None:
    """How much counter ``name`` grew since ``before`` (from zero without a previous value)."""
    value = now.get(name)
    if value is None:
        return None
    previous = before.get(name) if before is not None else None
    return value - previous if previous is not None else value


def loss_pct(received: float | None, flaws: float | None, sent: float | None) -> float | None:
    """The share of the far end's packets lost in an interval (%), from FreeSWITCH's counters of that interval:
    the smaller of two upper bounds (None when neither can be told).

    * ``flaws / (received + flaws)``: every packet missing from the sequence is a flaw, but FreeSWITCH adds a
      penalty of 2 after each gap (``do_mos`` compares with a stale last count), so this over-counts;
    * ``(sent − received) / sent``: FreeSWITCH sends one packet every ptime, the far end should too — exact for
      G.711 both ways; it over-counts when the far end sends less often (a longer ptime, silence suppression).
      Used from :data:`MIN_INTERVAL_PACKETS` packets sent.
    """
    bounds: list[float] = []
    if received is not None and flaws is not None and flaws >= 0 and received + flaws > 0:
        bounds.append(100.0 * flaws / (received + flaws))
    if received is not None and sent is not None and sent >= MIN_INTERVAL_PACKETS:
        bounds.append(100.0 * max(0.0, sent - received) / sent)
    return min(100.0, max(0.0, min(bounds))) if bounds else None


def point(previous: Reading | None, current: Reading, at: float, latency_ms: float = 0.0) -> Point:
    """The point of ``current``, taken at ``at``, after the call's ``previous`` reading (None: the first);
    ``latency_ms``: the one-way network delay for the MOS (half the RTT, when the far end's RTCP gives it)."""
    before = previous
    received_now = current.get("in_media_packet_count")
    received_before = previous.get("in_media_packet_count") if previous is not None else None
    if received_now is not None and received_before is not None and received_now < received_before:
        before = None  # the packet counters went down: a new RTP session, counted from zero
    received = _delta(current, before, "in_media_packet_count")
    flaws = _delta(current, before, "in_flaw_total")  # negative: FreeSWITCH zeroed them (more than received)
    sent = _delta(current, before, "out_media_packet_count")
    variance = current.get("in_jitter_max_variance")
    jitter = math.sqrt(variance) if variance is not None else None
    loss = loss_pct(received, flaws, sent)
    mos_call = current.get("in_mos")
    if mos_call is not None and not MOS_MIN <= mos_call <= MOS_MAX:
        mos_call = None
    mos = e_model_mos(loss, jitter or 0.0, latency_ms) if loss is not None else mos_call
    return Point(
        t=at,
        mos=mos,
        mos_call=mos_call,
        jitter_ms=jitter,
        loss_pct=loss,
        packets_in=int(received) if received is not None and received > 0 else 0,
        packets_out=int(sent) if sent is not None and sent > 0 else 0,
    )


# -- the far end's view: its RTCP receiver reports -------------------------------------------------------------
#: the ESL event FreeSWITCH fires for each RTCP report it reads (src/switch_core_media.c, switch_core_media_read_frame)
RTCP_EVENT = "RECV_RTCP_MESSAGE"
#: a far-end report stays current this long after it arrived (s): RFC 3550's 5 s minimum interval randomised up to
#: 1.5 times, and a lost report or two; older, a point has no far-end figures
REPORT_TTL = 20.0
#: RTTs above this (s) are not taken (FreeSWITCH's Rtt<i>-Avg of a far end echoing nonsense can be anything)
MAX_RTT_S = 10.0
#: jitter above this (ms) is not taken
MAX_JITTER_MS = 10_000.0
#: RTP clock rates taken for the jitter's timestamp units (Hz)
RTP_RATES = (1000, 192_000)
#: an interval's loss is read from the cumulative counts up to this many packets expected (else the fraction)
MAX_EXPECTED = 1 << 16
_U32 = 1 << 32


class RtcpResult(enum.StrEnum):
    """What a RECV_RTCP_MESSAGE event gave (``sipagent_rtcp_reports_total{result}``)."""

    OK = "ok"  # a report block about our stream, taken
    NO_BLOCK = "no_block"  # a report without a report block (a sender report of a far end receiving nothing)
    UNREADABLE = "unreadable"  # headers missing or out of range
    UNKNOWN_CALL = "unknown_call"  # not a call of ours (or one that ended): the sampler's verdict


@dataclass(frozen=True)
class FarReport:
    """The far end's report on the audio FreeSWITCH sends it: report block 0 of one RTCP SR/RR (RFC 3550 6.4),
    as FreeSWITCH 1.10.12 passes it on in ``RECV_RTCP_MESSAGE``."""

    source: str  # Source0-SSRC: the stream reported on (FreeSWITCH's), 8 hex digits
    fraction: int  # Source0-Fraction: lost since the far end's previous report, in 1/256 (0-255)
    lost: int  # Source0-Lost: cumulative packets lost (signed 24 bits: duplicates make it negative)
    highest_seq: int  # Source0-Highest-Sequence-Number-Received: extended (cycles · 65536 + sequence number)
    jitter_ms: float | None  # Source0-Jitter (RTP timestamp units) / RTP-Rate, in ms
    rtt_ms: float | None  # Rtt0-Avg: FreeSWITCH's smoothed round-trip time (s → ms); None while it has none

    @property
    def loss_pct(self) -> float:
        """The report's fraction lost, in %."""
        return 100.0 * self.fraction / 256


def _uint(value: str, top: int) -> int | None:
    """A ``%u`` header value: ASCII digits only (at most 10), 0 to ``top``; else None."""
    if not isinstance(value, str) or not 0 < len(value) <= 10 or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if number <= top else None


def parse_rtcp(get: Callable[[str], str]) -> tuple[RtcpResult, FarReport | None]:
    """Read a ``RECV_RTCP_MESSAGE`` event (``get(header)`` gives a header's value or ""); never raises.

    FreeSWITCH 1.10.12 (``switch_core_media_read_frame``, with ``process_rtcp_report`` in switch_rtp.c filling the
    frame) prints, per report block ``i`` of the last SR or RR it read: ``Source<i>-SSRC`` (``%.8x``),
    ``Source<i>-Fraction``, ``Source<i>-Lost`` (the signed 24-bit count sign-extended, printed ``%u``: a negative
    count reads 4294967295 and below), ``Source<i>-Highest-Sequence-Number-Received``, ``Source<i>-Jitter``
    (RTP timestamp units), ``Source<i>-LSR``/``-DLSR`` and ``Rtt<i>-Avg`` (``%f`` seconds: 0.7·previous + 0.3·(now −
    LSR − DLSR)/65536, kept while reports echo no LSR; 0.000000 before the first), plus ``RTP-Rate`` (the codec's
    RTP clock rate). Only block 0 is read: a call's far end reports on the one stream FreeSWITCH sends it.
    """
    fraction = _uint(get("Source0-Fraction"), 255)
    raw_lost = _uint(get("Source0-Lost"), _U32 - 1)
    highest = _uint(get("Source0-Highest-Sequence-Number-Received"), _U32 - 1)
    source = get("Source0-SSRC")
    if fraction is None and raw_lost is None and highest is None and not source:
        return RtcpResult.NO_BLOCK, None
    if fraction is None or raw_lost is None or highest is None:
        return RtcpResult.UNREADABLE, None
    lost = raw_lost - _U32 if raw_lost >= 1 << 31 else raw_lost
    if not -(1 << 23) <= lost < 1 << 23:  # not a sign-extended 24-bit count
        return RtcpResult.UNREADABLE, None
    if not isinstance(source, str) or len(source) != 8 or any(c not in "0123456789abcdef" for c in source):
        return RtcpResult.UNREADABLE, None
    jitter_ms: float | None = None
    jitter, rate = _uint(get("Source0-Jitter"), _U32 - 1), _uint(get("RTP-Rate"), RTP_RATES[1])
    if jitter is not None and rate is not None and rate >= RTP_RATES[0]:
        jitter_ms = 1000.0 * jitter / rate
        if jitter_ms > MAX_JITTER_MS:
            jitter_ms = None
    rtt_ms: float | None = None
    rtt = _number(get("Rtt0-Avg"))
    if rtt is not None and 0 < rtt <= MAX_RTT_S:
        rtt_ms = 1000.0 * rtt
    return RtcpResult.OK, FarReport(source, fraction, lost, highest, jitter_ms, rtt_ms)


def interval_loss(base: FarReport | None, latest: FarReport) -> float:
    """The far end's loss (%) of our packets since the ``base`` report: from the cumulative counts (RFC 3550
    A.3: Δlost / Δexpected, so reports lost on the way cost nothing), or the latest report's own fraction when
    there is no usable base (the first report, another stream, counters that went back or jumped)."""
    if base is not None and base.source == latest.source:
        expected = latest.highest_seq - base.highest_seq
        if 0 < expected <= MAX_EXPECTED:
            return min(100.0, max(0.0, 100.0 * (latest.lost - base.lost) / expected))
    return latest.loss_pct


@dataclass(frozen=True)
class Far:
    """The far end's figures a point carries (see :class:`FarEnd`)."""

    mos: float
    loss_pct: float
    jitter_ms: float | None
    lost: int  # cumulative, as the far end last reported it
    rtt_ms: float | None
    fresh: bool  # reports arrived since the previous point (False: the last figures again, still current)


class FarEnd:
    """One call's RTCP receiver reports folded into its points (bounded: the latest report and a few figures)."""

    def __init__(self, ttl: float = REPORT_TTL) -> None:
        self.ttl = ttl
        self.latest: FarReport | None = None
        self.latest_at = 0.0
        self.reports = 0  # taken in all
        self._base: FarReport | None = None  # the latest report when the previous point was made
        self._new = 0
        self._jitter: float | None = None  # the largest jitter of the reports since the previous point
        self._last: Far | None = None

    def add(self, report: FarReport, at: float) -> None:
        """A report arrived at ``at``."""
        self.latest, self.latest_at = report, at
        self.reports += 1
        self._new += 1
        if report.jitter_ms is not None:
            self._jitter = max(self._jitter or 0.0, report.jitter_ms)

    def take(self, at: float) -> Far | None:
        """The far end's figures for a point made at ``at``: from the reports since the previous point; the
        previous point's again when none came but the latest is younger than ``ttl``; None without one."""
        latest = self.latest
        if latest is None or at - self.latest_at > self.ttl:
            self._last, self._new, self._jitter = None, 0, None
            if latest is not None:
                self._base = latest
            return None
        if not self._new:
            return replace(self._last, fresh=False) if self._last is not None else None
        loss = interval_loss(self._base, latest)
        jitter, rtt = self._jitter, latest.rtt_ms
        mos = e_model_mos(loss, jitter or 0.0, (rtt or 0.0) / 2)
        self._last = Far(mos, loss, jitter, latest.lost, rtt, fresh=True)
        self._base, self._new, self._jitter = latest, 0, None
        return self._last


# -- quality_low / quality_ok ------------------------------------------------------------------------------------
class Change(enum.StrEnum):
    """A call's quality crossed the threshold (the notice kinds)."""

    LOW = "quality_low"
    OK = "quality_ok"


class Watch:
    """Hysteresis over the MOS of successive points.

    Low after ``confirm`` points in a row below ``min_mos``; fine again after ``confirm`` points in a row at or
    above ``min_mos + margin`` (at most 4.5). A point without a MOS changes nothing.
    """

    def __init__(self, min_mos: float, margin: float = 0.2, confirm: int = 2) -> None:
        self.min_mos = min_mos
        self.recover_mos = min(MOS_MAX, min_mos + margin)
        self.confirm = max(1, confirm)
        self.low = False
        self._run = 0  # points in a row on the other side

    def update(self, mos: float | None) -> Change | None:
        """The change the point with ``mos`` makes, if any."""
        if mos is None:
            return None
        crossing = mos >= self.recover_mos if self.low else mos < self.min_mos
        self._run = self._run + 1 if crossing else 0
        if self._run < self.confirm:
            return None
        self._run = 0
        self.low = not self.low
        return Change.LOW if self.low else Change.OK


class _Stat:
    """Smallest, mean and largest of a figure (bounded: three numbers and a count)."""

    def __init__(self) -> None:
        self.n, self.total = 0, 0.0
        self.min: float | None = None
        self.max: float | None = None

    def add(self, value: float | None) -> None:
        if value is None:
            return
        self.n += 1
        self.total += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    def into(self, out: dict[str, Any], name: str) -> None:
        out[name + "_min"] = _r2(self.min)
        out[name + "_avg"] = _r2(self.total / self.n) if self.n else None
        out[name + "_max"] = _r2(self.max)


class Track:
    """One call's live quality: the last reading, the far end's reports, the last ``length`` points, the summary
    and the watches (``quality_low`` when either direction is low: :attr:`low_direction`)."""

    def __init__(
        self,
        length: int = 120,
        min_mos: float = 3.5,
        margin: float = 0.2,
        confirm: int = 2,
        far_ttl: float = REPORT_TTL,
    ) -> None:
        self.series: deque[Point] = deque(maxlen=max(1, length))
        self.watch = Watch(min_mos, margin, confirm)  # what FreeSWITCH receives (in), over every point
        self.out_watch = Watch(min_mos, margin, confirm)  # what the far end receives (out), over fresh reports only
        self.far = FarEnd(far_ttl)
        self.last: Reading | None = None
        self.samples = 0
        self.low_events = 0
        self.packets_in = 0
        self.packets_out = 0
        self._mos_min: float | None = None
        self._mos_sum = 0.0
        self._mos_n = 0
        self._jitter_max: float | None = None
        self._loss_max: float | None = None
        self._out = {k: _Stat() for k in ("out_mos", "out_loss_pct", "out_jitter_ms", "rtt_ms")}

    def report(self, report: FarReport, at: float) -> None:
        """A far-end RTCP report arrived at ``at`` (it shows in the next point)."""
        self.far.add(report, at)

    def add(self, current: Reading, at: float) -> tuple[Point, Change | None]:
        """Take a reading made at ``at``: its point, and the change of state it makes (if any)."""
        far = self.far.take(at)
        latency = far.rtt_ms / 2 if far is not None and far.rtt_ms is not None else 0.0
        p = replace(point(self.last, current, at, latency), far=far)
        self.last = current
        self.series.append(p)
        self.samples += 1
        self.packets_in += p.packets_in
        self.packets_out += p.packets_out
        if p.mos is not None:
            self._mos_min = p.mos if self._mos_min is None else min(self._mos_min, p.mos)
            self._mos_sum += p.mos
            self._mos_n += 1
        if p.jitter_ms is not None:
            self._jitter_max = max(self._jitter_max or 0.0, p.jitter_ms)
        if p.loss_pct is not None:
            self._loss_max = max(self._loss_max or 0.0, p.loss_pct)
        was_low = self.low
        self.watch.update(p.mos)
        if far is not None and far.fresh:  # each far-end measurement counts once, however many points show it
            self.out_watch.update(far.mos)
            for name, value in (("out_mos", far.mos), ("out_loss_pct", far.loss_pct),
                                ("out_jitter_ms", far.jitter_ms), ("rtt_ms", far.rtt_ms)):  # fmt: skip
                self._out[name].add(value)
        change = None
        if self.low != was_low:
            change = Change.LOW if self.low else Change.OK
        if change is Change.LOW:
            self.low_events += 1
        return p, change

    @property
    def low(self) -> bool:
        """The call's quality is below the threshold now, in either direction."""
        return self.watch.low or self.out_watch.low

    @property
    def low_direction(self) -> str | None:
        """Which direction is low: ``in`` (what FreeSWITCH receives), ``out`` (what the far end receives), ``both``."""
        if self.watch.low and self.out_watch.low:
            return "both"
        return "in" if self.watch.low else "out" if self.out_watch.low else None

    def points(self) -> list[dict[str, Any]]:
        """The series, oldest first."""
        return [p.to_dict() for p in self.series]

    def current(self) -> dict[str, Any] | None:
        """The latest values (for the list of calls), None before the first sample."""
        if not self.series:
            return None
        d = self.series[-1].to_dict()
        out = {k: d[k] for k in ("t", "mos", "jitter_ms", "loss_pct", "out_mos", "out_jitter_ms", "out_loss_pct",
                                 "rtt_ms")}  # fmt: skip
        out["low"] = self.low
        return out

    def summary(self) -> dict[str, Any]:
        """Figures over every sample of the call (also those the bounded series no longer holds); the far end's
        over the samples its reports came in (each report interval once)."""
        last = self.series[-1] if self.series else None
        far = last.far if last else None
        out: dict[str, Any] = {
            "samples": self.samples,
            "mos": _r2(last.mos) if last else None,
            "mos_min": _r2(self._mos_min),
            "mos_avg": _r2(self._mos_sum / self._mos_n) if self._mos_n else None,
            "jitter_ms": _r2(last.jitter_ms) if last else None,
            "jitter_ms_max": _r2(self._jitter_max),
            "loss_pct": _r2(last.loss_pct) if last else None,
            "loss_pct_max": _r2(self._loss_max),
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "low": self.low,
            "low_events": self.low_events,
            "min_mos": self.watch.min_mos,
            "rtcp_reports": self.far.reports,
            "out_mos": _r2(far.mos) if far else None,
            "out_loss_pct": _r2(far.loss_pct) if far else None,
            "out_jitter_ms": _r2(far.jitter_ms) if far else None,
            "out_lost": far.lost if far else None,
            "rtt_ms": _r2(far.rtt_ms) if far else None,
        }
        for name, stat in self._out.items():
            stat.into(out, name)
        return out
