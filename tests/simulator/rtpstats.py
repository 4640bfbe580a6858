"""A channel's audio RTP statistics as FreeSWITCH 1.10.12 counts them, and the ``json`` API's ``mediaStats``.

Pure (time passed in). Follows ``src/switch_rtp.c`` (``check_jitter``, ``do_mos``, ``burstr_calculate``),
``src/switch_core_media.c`` (``set_stats``: the ``rtp_audio_*`` variables, integers as ``%zu`` and doubles as
``%0.2f``) and ``src/mod/applications/mod_commands/mod_commands.c`` (``json_function``, ``json_stats_function``,
``jsonify_stats``) with ``src/switch_loadable_module.c`` (``switch_json_api_execute``).

The model: from the answer on, one 20 ms packet per tick each way (160 payload bytes + a 12-byte header);
``loss_pct`` of the far end's packets never arrive from the moment it is set (FreeSWITCH plays comfort noise for
the tick: a skip); each gap is a flaw per lost packet plus a penalty of 2 (``do_mos`` compares with a stale count:
measured on 1.10.12, 2 of every 5 lost gave 40 flaws a second), flaws beyond the packets received reset to 0;
``jitter_ms`` sets the running variance (its square), whose minimum and maximum FreeSWITCH reports.
``R = (int)(100 * (received - flaws) / received)`` (100 when out of 0–100) and ``mos = 1 + 0.035 R + 0.000007 R
(R - 60)(100 - R)``, as ``do_mos``; 4.5 before the first packet. ``fixed`` values win over the model (tests set any
counter, even to a value FreeSWITCH never sends). A far end that stops sending (``flowing`` False: ``stop_rtp``, a
hold without RTP) adds nothing received. Not modelled: escalating penalties of consecutive gaps, DTMF/CNG
packets, the jitter buffer, RTCP (``rtcp_*`` stay 0), video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .cjson import INVALID, JObj, cjson_parse, cjson_print

#: jsonify_stats's audio keys, in its order (the variables are ``rtp_audio_<key>``)
KEYS = (
    "in_raw_bytes", "in_media_bytes", "in_packet_count", "in_media_packet_count", "in_skip_packet_count",
    "in_jitter_packet_count", "in_dtmf_packet_count", "in_cng_packet_count", "in_flush_packet_count",
    "in_largest_jb_size", "in_jitter_min_variance", "in_jitter_max_variance", "in_jitter_loss_rate",
    "in_jitter_burst_rate", "in_mean_interval", "in_flaw_total", "in_quality_percentage", "in_mos",
    "out_raw_bytes", "out_media_bytes", "out_packet_count", "out_media_packet_count", "out_skip_packet_count",
    "out_dtmf_packet_count", "out_cng_packet_count", "rtcp_packet_count", "rtcp_octet_count",
)  # fmt: skip
#: set_stats prints these with %0.2f, the others with %zu
DOUBLES = frozenset(
    {"in_jitter_min_variance", "in_jitter_max_variance", "in_jitter_loss_rate", "in_jitter_burst_rate",
     "in_mean_interval", "in_quality_percentage", "in_mos"}
)  # fmt: skip
PTIME = 0.02
PAYLOAD = 160
HEADER = 12


@dataclass
class RtpStats:
    """One channel's audio counters (see the module docstring)."""

    started: float  # when media began (the caller's clock: the answer)
    loss_pct: float = 0.0
    jitter_ms: float = 0.0
    fixed: dict[str, Any] = field(default_factory=dict)
    ticks: int = 0
    received: int = 0
    flaws: int = 0
    _loss_due: float = 0.0
    min_variance: float = 0.0
    max_variance: float = 0.0
    #: the far end sends RTP (False: it stopped, or holds the call without sending: nothing is received)
    flowing: bool = True

    def advance(self, now: float) -> None:
        """Count the packets of the ticks up to ``now`` at the current loss."""
        total = max(0, int((now - self.started) / PTIME))
        new, self.ticks = total - self.ticks, max(total, self.ticks)
        if new <= 0 or not self.flowing:
            return  # (a silent far end: FreeSWITCH still sends its packets, it receives none)
        self._loss_due += new * min(max(self.loss_pct, 0.0), 100.0) / 100.0
        lost = min(new, int(self._loss_due))
        self._loss_due -= lost
        self.received += new - lost
        # do_mos: each gap costs its lost packets plus 2 at the next packet (it compares with a stale count);
        # gaps are single packets up to 50 % loss, beyond it every packet received ends one
        gaps = lost if self.loss_pct <= 50 else new - lost
        self.flaws += lost + 2 * gaps
        if self.flaws > self.received:
            self.flaws = 0  # do_mos: "if (recved < flaws) flaws = 0"
        if self.received:
            variance = self.jitter_ms**2
            if variance < self.min_variance or self.min_variance == 0:
                self.min_variance = variance
            self.max_variance = max(self.max_variance, variance)

    def set_flowing(self, now: float, flowing: bool) -> None:
        """The far end stops (or starts again) sending RTP from ``now`` on."""
        self.advance(now)
        self.flowing = flowing

    def set(self, now: float, *, loss_pct: float | None = None, jitter_ms: float | None = None) -> None:
        """Change the far end's stream from ``now`` on."""
        self.advance(now)
        if loss_pct is not None:
            self.loss_pct = loss_pct
        if jitter_ms is not None:
            self.jitter_ms = jitter_ms

    def values(self, now: float) -> dict[str, Any]:
        """The counters at ``now`` (numbers; ``fixed`` values as they were set)."""
        self.advance(now)
        recv, flaws, sent = self.received, self.flaws, self.ticks
        r = 100.0
        if recv > 0:
            r = float(int((recv - flaws) / recv * 100.0))
            if r < 0 or r > 100:
                r = 100.0
        mos = 1 + 0.035 * r + 0.000007 * r * (r - 60) * (100 - r)
        out: dict[str, Any] = {
            "in_raw_bytes": recv * (PAYLOAD + HEADER),
            "in_media_bytes": recv * PAYLOAD,
            "in_packet_count": recv,
            "in_media_packet_count": recv,
            "in_skip_packet_count": self.ticks - recv,
            "in_jitter_packet_count": 0,
            "in_dtmf_packet_count": 0,
            "in_cng_packet_count": 0,
            "in_flush_packet_count": 0,
            "in_largest_jb_size": 0,
            "in_jitter_min_variance": self.min_variance,
            "in_jitter_max_variance": self.max_variance,
            "in_jitter_loss_rate": flaws / recv if recv else 0.0,
            "in_jitter_burst_rate": 1.0 if flaws else 0.0,
            "in_mean_interval": PTIME * 1000 if recv else 0.0,
            "in_flaw_total": flaws,
            "in_quality_percentage": r,
            "in_mos": mos,
            "out_raw_bytes": sent * (PAYLOAD + HEADER),
            "out_media_bytes": sent * PAYLOAD,
            "out_packet_count": sent,
            "out_media_packet_count": sent,
            "out_skip_packet_count": 0,
            "out_dtmf_packet_count": 0,
            "out_cng_packet_count": 0,
            "rtcp_packet_count": 0,
            "rtcp_octet_count": 0,
        }
        out.update(self.fixed)
        return out

    def variables(self, now: float) -> dict[str, str]:
        """``set_stats``: the ``rtp_audio_*`` channel variables."""
        return {f"rtp_audio_{k}": _var(k, v) for k, v in self.values(now).items()}


def _var(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if key in DOUBLES:
        return f"{float(value):0.2f}"
    return str(int(value)) if isinstance(value, (int, float)) and math.isfinite(value) else str(value)


def _number(value: Any) -> Any:
    """add_stat: cJSON_CreateNumber((double) v); a test's fixed value of another type is sent as it is."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def json_api(text: str, stats: Any) -> str:
    """``json <text>`` with only the ``mediaStats`` JSON API: ``stats(uuid)`` gives a live channel's audio counters
    (a dict), ``{}`` for a channel without audio RTP, or None when there is no such channel."""
    if not text.strip():
        return "-ERR No JSON supplied.\n"
    doc = cjson_parse(text)
    if doc is INVALID:
        return "-ERR Parse error.\n"
    if not isinstance(doc, JObj):  # switch_json_api_execute finds no "command" in it
        return cjson_print(doc) + "\n"
    command, data = doc.get_item("command"), doc.get_item("data")
    if command != "mediaStats" or data is None:
        doc += [
            ("status", "error"),
            ("message", "Invalid request or non-existant command"),
            ("response", None),
        ]
        return cjson_print(doc) + "\n"
    uuid = data.get_item("uuid") if isinstance(data, JObj) else None
    reply = JObj()
    ok = False
    if not isinstance(uuid, str) or not uuid:
        reply.append(("response", "INVALID INPUT"))
    else:
        audio = stats(uuid)
        if audio is None:
            reply.append(("response", "Session does not exist"))
        else:
            ok = True
            if audio:
                reply.append(("audio", JObj((k, _number(v)) for k, v in audio.items())))
    if ok:
        doc.append(("status", "success"))
    else:
        doc += [("status", "error"), ("message", "The command returned an error")]
    doc.append(("response", reply))
    return cjson_print(doc) + "\n"
