"""Live RTP quality of a call, sans-I/O: FreeSWITCH's media statistics in; points, summaries and changes out.

**Where the numbers come from** (FreeSWITCH 1.10.12). ``json {"command":"mediaStats","data":{"uuid":…}}``
(mod_commands.c ``json_stats_function``) runs ``switch_core_media_set_stats`` on the live channel — which also
refreshes its ``rtp_audio_*`` variables, what ``uuid_set_media_stats`` does — and answers, in the same reply, the
audio RTP counters as one JSON object: one command per call and sample, no second ``uuid_dump``/``uuid_getvar``
round trip (calls/sampler.py sends it as ``bgapi``). Its names are the variables' names without ``rtp_audio_``
(:data:`FIELDS`). What they mean, from ``switch_rtp.c``:

* ``in_*`` is what FreeSWITCH **receives** from the far end; ``out_*`` what it **sends**. FreeSWITCH measures
  loss, jitter and MOS only for what it receives; for what it sends it counts packets and bytes (the far end's
  view would come from its RTCP receiver reports, which the rendered configuration does not ask for).
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

:class:`Watch` turns the MOS of each point into ``quality_low`` / ``quality_ok`` with hysteresis; :class:`Track`
keeps one call's bounded series, its last reading and its summary.
"""

from __future__ import annotations

import enum
import json
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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

    def to_dict(self) -> dict[str, Any]:
        """The point as the record and the API show it."""
        out: dict[str, Any] = {
            "t": round(self.t, 3),
            "mos": _r2(self.mos),
            "mos_call": _r2(self.mos_call),
            "jitter_ms": _r2(self.jitter_ms),
            "loss_pct": _r2(self.loss_pct),
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
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


def point(previous: Reading | None, current: Reading, at: float) -> Point:
    """The point of ``current``, taken at ``at``, after the call's ``previous`` reading (None: the first)."""
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
    mos = e_model_mos(loss, jitter or 0.0) if loss is not None else mos_call
    return Point(
        t=at,
        mos=mos,
        mos_call=mos_call,
        jitter_ms=jitter,
        loss_pct=loss,
        packets_in=int(received) if received is not None and received > 0 else 0,
        packets_out=int(sent) if sent is not None and sent > 0 else 0,
    )


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


class Track:
    """One call's live quality: the last reading, the last ``length`` points, the summary and the watch."""

    def __init__(self, length: int = 120, min_mos: float = 3.5, margin: float = 0.2, confirm: int = 2) -> None:
        self.series: deque[Point] = deque(maxlen=max(1, length))
        self.watch = Watch(min_mos, margin, confirm)
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

    def add(self, current: Reading, at: float) -> tuple[Point, Change | None]:
        """Take a reading made at ``at``: its point, and the change of state it makes (if any)."""
        p = point(self.last, current, at)
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
        change = self.watch.update(p.mos)
        if change is Change.LOW:
            self.low_events += 1
        return p, change

    @property
    def low(self) -> bool:
        """The call's quality is below the threshold now."""
        return self.watch.low

    def points(self) -> list[dict[str, Any]]:
        """The series, oldest first."""
        return [p.to_dict() for p in self.series]

    def current(self) -> dict[str, Any] | None:
        """The latest values (for the list of calls), None before the first sample."""
        if not self.series:
            return None
        p = self.series[-1]
        return {"t": round(p.t, 3), "mos": _r2(p.mos), "jitter_ms": _r2(p.jitter_ms), "loss_pct": _r2(p.loss_pct),
                "low": self.low}  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """Figures over every sample of the call (also those the bounded series no longer holds)."""
        last = self.series[-1] if self.series else None
        return {
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
        }
