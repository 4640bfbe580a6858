"""What the console shows, computed without I/O: outcome classes, a call's timeline, quality series, the records
filter form, per-trunk counts over the last hour, certificate expiry.

Everything here takes plain values (records and summaries as the API gives them, ``now`` in epoch seconds) and
returns plain values the templates render (escaped by Jinja2) or embed as JSON. Records come from outside (a
database another orchestrator may share): every field is read defensively — a missing or ill-typed field is
left out, never an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.store import Filters

#: result words, by how an operator should read them (colour and an icon, the word always shown)
OK_RESULTS = frozenset({"completed", "transferred"})
UNANSWERED_RESULTS = frozenset({"busy", "no_answer", "cancelled", "not_found", "rejected"})
#: everything else (agent_failed, media_failed, unavailable, incompatible, auth_failed, media_timeout,
#: limit_exceeded, lost, node_lost, failed, unknown) is a failure: of the system, the carrier or the agent
RESULTS = sorted(
    OK_RESULTS
    | UNANSWERED_RESULTS
    | {
        "agent_failed",
        "media_failed",
        "incompatible",
        "unavailable",
        "auth_failed",
        "media_timeout",
        "limit_exceeded",
        "lost",
        "node_lost",
        "failed",
    }
)

SIP_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RESULT = re.compile(r"^[a-z_]{1,32}$")
#: the filters the Calls page offers (the query parameters of GET /v1/records)
FILTER_FIELDS = ("since", "until", "direction", "trunk", "number", "agent", "result", "sip_status")
MAX_SERIES = 2000


def outcome(result: Any) -> dict[str, str]:
    """How to show a result word: ``cls`` (ok, warn, bad: the colour) and ``icon`` (the same, without colour)."""
    word = result if isinstance(result, str) and result else "unknown"
    if word in OK_RESULTS:
        return {"word": word, "cls": "ok", "icon": "✓"}
    if word in UNANSWERED_RESULTS:
        return {"word": word, "cls": "warn", "icon": "–"}
    return {"word": word, "cls": "bad", "icon": "✗"}


def failed(result: Any) -> bool:
    """A failure (the red class of :func:`outcome`): not completed, transferred or merely unanswered."""
    return outcome(result)["cls"] == "bad"


def _num(value: Any) -> float | None:
    """A finite number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: Any, limit: int = 512) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def utc(t: Any) -> str:
    """Epoch seconds as ``2024-05-01 12:00:03`` (UTC), or an empty string."""
    value = _num(t)
    if value is None or not 0 < value < 32503680000:
        return ""
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: Any) -> str:
    """A duration as ``1:02:03``, ``2:03`` or ``4.2 s``."""
    v = _num(value)
    if v is None or v < 0:
        return ""
    if v < 60:
        return f"{v:.1f} s"
    whole = int(v)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


#: a live sample's figures the Now page shows: what FreeSWITCH receives, then (from the far end's RTCP reports, when
#: it sends them) what the far end receives and the round trip
LIVE_FIGURES = ("mos", "jitter_ms", "loss_pct", "out_mos", "out_jitter_ms", "out_loss_pct", "rtt_ms")


def live_quality(summary: Mapping[str, Any]) -> dict[str, float] | None:
    """The current MOS, jitter and loss of a live call's summary (``quality``: the latest sample) and, when the far
    end sends RTCP, its own (``out_*``) and the RTT, if any."""
    q = _dict(summary.get("quality"))
    out = {k: v for k in LIVE_FIGURES if (v := _num(q.get(k))) is not None}
    return out or None


def live_call(summary: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A row of the Now page from a live call's summary (``GET /v1/calls``)."""
    inbound = summary.get("direction") == "inbound"
    ours, theirs = _str(summary.get("number")), _str(summary.get("remote"))
    created, answered = _num(summary.get("created_at")), _num(summary.get("answered_at"))
    start = answered or created
    q = live_quality(summary)
    return {
        "id": _str(summary.get("id"), 64),
        "state": _str(summary.get("state"), 32),
        "direction": "inbound" if inbound else "outbound",
        "trunk": _str(summary.get("trunk"), 64),
        "from": theirs if inbound else ours,
        "to": ours if inbound else theirs,
        "agent": _str(summary.get("agent"), 64),
        "node": _str(summary.get("node"), 64),
        "codec": _str(summary.get("codec"), 32),
        "rate": int(_num(summary.get("rate")) or 0),
        "srtp": _str(summary.get("srtp"), 64),
        "created_at": created,
        "answered_at": answered,
        "duration": seconds(max(0.0, now - start)) if start else "",
        "quality": q,
        "quality_low": bool(_dict(summary.get("quality")).get("low")),
    }


# -- one call ----------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One line of a call's timeline."""

    label: str
    detail: str = ""
    t: float | None = None  # epoch seconds, when known
    kind: str = "info"  # info, ok, warn, bad: the marker's colour (the label says it in words)
    offset: str = ""  # "+2.3 s" after the call was created

    def view(self) -> dict[str, Any]:
        """As the template reads it."""
        return {"label": self.label, "detail": self.detail, "at": utc(self.t), "offset": self.offset, "kind": self.kind}


def _status(code: Any) -> str:
    value = _num(code)
    if value is None:
        return ""
    phrase = SIP_PHRASES.get(int(value), "")
    return f"{int(value)} {phrase}".strip()


def timeline(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A call's steps from its record: INVITE, provisional statuses, answer, agent connected, DTMF,
    interruptions, transfer with its NOTIFY outcome, hang-up (who, SIP status, Q.850 cause) — in time order where
    the record has times (DTMF and interruptions are counted, not timed, and follow the answer)."""
    timings = _dict(record.get("timings"))
    created, ringing = _num(timings.get("created")), _num(timings.get("ringing"))
    early, answered, ended = _num(timings.get("early_media")), _num(timings.get("answered")), _num(timings.get("ended"))
    inbound = record.get("direction") == "inbound"
    steps: list[Step] = []
    who = f"{_str(record.get('from'))} → {_str(record.get('to'))}"
    trunk = _str(record.get("trunk"), 64)
    steps.append(
        Step(
            "INVITE received" if inbound else "INVITE sent",
            f"{who}" + (f" via trunk {trunk}" if trunk else ""),
            created,
        )
    )
    progress = [p for p in record.get("progress") or [] if _num(p) is not None][:16]
    if progress:
        steps.append(Step("Provisional: " + ", ".join(_status(p) for p in progress), "", ringing or early))
    if early is not None:
        steps.append(Step("Early media", "", early))
    refused = _str(record.get("refused"), 64)
    if refused:
        steps.append(Step("Refused by the dialplan", refused, created, "bad"))
    error = _str(record.get("originate_error"), 200)
    if error:
        steps.append(Step("Originate failed", error, ended, "bad"))
    media = _dict(record.get("media"))
    if answered is not None:
        setup = _num(timings.get("setup_seconds"))
        steps.append(Step("Answered (200 OK)", f"setup {seconds(setup)}" if setup is not None else "", answered, "ok"))
        connect_ms = _num(media.get("agent_connect_ms"))
        if connect_ms is not None:
            protocol = _str(media.get("agent_protocol"), 32)
            agent = _str(record.get("agent"), 64)
            steps.append(
                Step(
                    "Agent connected",
                    f"{agent} ({protocol}) in {connect_ms:.0f} ms" if protocol else f"{agent} in {connect_ms:.0f} ms",
                    answered + connect_ms / 1000,
                    "ok",
                )
            )
    dtmf = _dict(record.get("dtmf"))
    for key, label in (("received", "DTMF received"), ("sent", "DTMF sent")):
        digits = _str(dtmf.get(key), 128)
        if digits:
            steps.append(Step(label, digits))
    interruptions = _num(media.get("interruptions"))
    if interruptions:
        steps.append(
            Step("Interruptions", f"the caller talked over the agent {int(interruptions)} time(s)", None, "warn")
        )
    transfer = _dict(record.get("transfer"))
    if transfer:
        method = _str(transfer.get("method"), 16)
        status = _str(transfer.get("status"), 32)
        notify = _status(transfer.get("sip_status"))
        detail = f"{method.upper() or 'transfer'} to {_str(transfer.get('target'), 256)}: {status or 'pending'}"
        if notify:
            detail += f" (NOTIFY {notify})" if method == "refer" else f" (SIP {notify})"
        if _str(transfer.get("detail")):
            detail += f" — {_str(transfer.get('detail'), 200)}"
        kind = "ok" if status in ("succeeded", "answered", "accepted") else "bad" if status == "failed" else "info"
        steps.append(Step("Transfer", detail, None, kind))
    hangup = _dict(record.get("hangup"))
    if hangup or ended is not None:
        parts = []
        by = _str(record.get("hangup_by"), 32)
        if by:
            parts.append(f"by {by}")
        sip = _status(hangup.get("sip_status"))
        if sip:
            phrase = _str(hangup.get("sip_phrase"), 64)
            parts.append(f"SIP {int(_num(hangup.get('sip_status')) or 0)} {phrase}".strip() if phrase else f"SIP {sip}")
        cause = _str(hangup.get("cause"), 64)
        q850 = _num(hangup.get("q850"))
        if cause or q850 is not None:
            parts.append(f"cause {cause}" + (f" (Q.850 {int(q850)})" if q850 is not None else ""))
        result = outcome(record.get("result"))
        steps.append(Step(f"Hang-up: {result['word']}", ", ".join(parts), ended, result["cls"]))
    if record.get("lost") is True:
        steps.append(
            Step("Lost", "the call ended while its node was not connected: its hang-up was not seen", None, "bad")
        )
    # times first in order; untimed steps stay right after the step they followed
    _sort_timed(steps)
    if created is not None:
        for step in steps:
            if step.t is not None:
                step.offset = f"+{max(0.0, step.t - created):.1f} s"
    return [s.view() for s in steps]


def _sort_timed(steps: list[Step]) -> None:
    """Order the timed steps by time, keeping each untimed step right after the step it followed."""
    groups: list[list[Step]] = []
    for step in steps:
        if step.t is not None or not groups:
            groups.append([step])
        else:
            groups[-1].append(step)
    groups.sort(key=lambda g: g[0].t if g[0].t is not None else -math.inf)
    steps[:] = [s for g in groups for s in g]


def quality_series(record: Mapping[str, Any]) -> dict[str, list[float | None]] | None:
    """The live samples of a record (``quality.series``) as columns for the chart: ``t`` (epoch seconds), ``mos``,
    ``jitter_ms``, ``loss_pct`` and, when any sample has them (the far end sent RTCP), ``out_mos``,
    ``out_jitter_ms``, ``out_loss_pct``, ``rtt_ms``; None when the record has no series (calls before live
    quality, or not sampled)."""
    series = _dict(record.get("quality")).get("series")
    if not isinstance(series, list):
        return None
    points = []
    for item in series[:MAX_SERIES]:
        if isinstance(item, dict) and (t := _num(item.get("t"))) is not None:
            points.append((t, item))
    if not points:
        return None
    points.sort(key=lambda p: p[0])
    columns: dict[str, list[float | None]] = {"t": [p[0] for p in points]}
    for key in ("mos", "jitter_ms", "loss_pct"):
        columns[key] = [_num(p[1].get(key)) for p in points]
    for key in ("out_mos", "out_jitter_ms", "out_loss_pct", "rtt_ms"):
        column = [_num(p[1].get(key)) for p in points]
        if any(v is not None for v in column):
            columns[key] = column
    return columns


def quality_figures(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The record's quality figures worth a line each: the live summary's and FreeSWITCH's at hang-up."""
    q = _dict(record.get("quality"))
    summary = _dict(q.get("summary"))
    out: list[tuple[str, str]] = []
    for key, label, fmt in (
        ("mos_min", "lowest MOS (live)", "{:.2f}"),
        ("mos_avg", "average MOS (live)", "{:.2f}"),
        ("jitter_ms_max", "highest jitter (live)", "{:.1f} ms"),
        ("loss_pct_max", "highest loss (live)", "{:.1f} %"),
        ("samples", "samples", "{:.0f}"),
        ("low_events", "quality_low events", "{:.0f}"),
        ("out_mos_min", "lowest far-end MOS (its RTCP)", "{:.2f}"),
        ("out_mos_avg", "average far-end MOS (its RTCP)", "{:.2f}"),
        ("out_jitter_ms_max", "highest far-end jitter (its RTCP)", "{:.1f} ms"),
        ("out_loss_pct_max", "highest far-end loss (its RTCP)", "{:.1f} %"),
        ("out_lost", "packets the far end lost (its RTCP, whole call)", "{:.0f}"),
        ("rtt_ms_avg", "average round trip (RTCP)", "{:.0f} ms"),
        ("rtt_ms_max", "longest round trip (RTCP)", "{:.0f} ms"),
    ):
        if (v := _num(summary.get(key))) is not None:
            out.append((label, fmt.format(v)))
    if _num(summary.get("rtcp_reports")) == 0:
        out.append(("far-end RTCP reports", "none (the far end sent no RTCP, or RTCP is off)"))
    elif (reports := _num(summary.get("rtcp_reports"))) is not None:
        out.append(("far-end RTCP reports", f"{reports:.0f}"))
    for key, label, fmt in (
        ("mos", "MOS at hang-up (FreeSWITCH, whole call)", "{:.2f}"),
        ("quality_percentage", "quality % (FreeSWITCH)", "{:.0f} %"),
        ("jitter_loss_rate", "jitter loss rate", "{:.3f}"),
        ("jitter_burst_rate", "jitter burst rate", "{:.3f}"),
        ("packets_in", "packets received", "{:.0f}"),
        ("packets_out", "packets sent", "{:.0f}"),
        ("packets_skipped", "packets skipped", "{:.0f}"),
    ):
        if (v := _num(q.get(key))) is not None:
            out.append((label, fmt.format(v)))
    return out


def transcript(record: Mapping[str, Any]) -> list[dict[str, str]]:
    """The transcript lines (role, text, when after the agent's session started)."""
    lines = _dict(record.get("media")).get("transcript")
    out = []
    for line in lines if isinstance(lines, list) else []:
        if isinstance(line, dict) and isinstance(line.get("text"), str):
            t = _num(line.get("t"))
            out.append(
                {
                    "role": _str(line.get("role"), 32) or "?",
                    "text": _str(line.get("text"), 4000),
                    "t": f"{t:.1f} s" if t is not None else "",
                    "corrected": "corrected" if line.get("corrected") else "",
                }
            )
    return out[:2000]


def media_figures(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The media bridge's outcome and figures for the call page."""
    media = _dict(record.get("media"))
    out: list[tuple[str, str]] = []
    for key, label in (("outcome", "media outcome"), ("detail", "detail"), ("agent_protocol", "agent protocol")):
        if _str(media.get(key)):
            out.append((label, _str(media.get(key), 300)))
    if _str(media.get("playback")):
        out.append(("playback", _str(media.get("playback"), 32)))
    if (v := _num(media.get("agent_connect_ms"))) is not None:
        out.append(("agent connect time", f"{v:.0f} ms"))
    for key, v in _dict(media.get("frames")).items():
        if isinstance(key, str) and (n := _num(v)) is not None:
            out.append((f"frames {key.replace('_', ' ')}", f"{n:.0f}"))
    for key, label in (
        ("interruptions", "interruptions"),
        ("playback_dropped_ms", "playback dropped (ms)"),
        ("agent_protocol_errors", "agent protocol errors"),
    ):
        if (v := _num(media.get(key))) is not None:
            out.append((label, f"{v:.0f}"))
    events = media.get("agent_events")
    if isinstance(events, list) and events:
        out.append(("agent events", str(len(events))))
    return out[:64]


def agent_events(record: Mapping[str, Any]) -> list[dict[str, str]]:
    """The agent's own events (tools it ran, errors it reported), as ``t``, ``kind`` and the rest as text."""
    events = _dict(record.get("media")).get("agent_events")
    out = []
    for event in events if isinstance(events, list) else []:
        if isinstance(event, dict):
            t = _num(event.get("t"))
            rest = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("t", "kind") and isinstance(k, str))
            out.append(
                {"t": f"{t:.1f} s" if t is not None else "", "kind": _str(event.get("kind"), 64), "data": rest[:500]}
            )
    return out[:200]


# -- the Calls page's filters --------------------------------------------------------------------------------
@dataclass
class FilterForm:
    """The Calls page's filters as typed (``values``, shown back in the form) and as the store reads them."""

    values: dict[str, str] = field(default_factory=dict)
    filters: Filters = field(default_factory=Filters)
    cursor: str | None = None
    errors: list[str] = field(default_factory=list)


def _time(text: str) -> float:
    """``2024-05-01T12:00`` (as a datetime-local field sends it; UTC) or a full ISO 8601 time, as epoch seconds."""
    value = datetime.fromisoformat(text)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def parse_filters(params: Mapping[str, str]) -> FilterForm:
    """The filter form's query parameters (empty fields ignored) → store filters, or the errors to show."""
    form = FilterForm()
    values = {k: params.get(k, "").strip()[:256] for k in FILTER_FIELDS}
    form.values = {k: v for k, v in values.items() if v}
    got: dict[str, Any] = {}
    for key in ("since", "until"):
        if values[key]:
            try:
                got[key] = _time(values[key])
            except ValueError:
                form.errors.append(f"{key}: not a date and time (2024-05-01T12:00, UTC)")
    if values["direction"]:
        if values["direction"] in ("inbound", "outbound"):
            got["direction"] = values["direction"]
        else:
            form.errors.append("direction: inbound or outbound")
    for key in ("trunk", "agent"):
        if values[key]:
            if _NAME.match(values[key]):
                got[key] = values[key]
            else:
                form.errors.append(f"{key}: a name (letters, digits, _ . -, at most 64)")
    if values["number"]:
        got["number"] = values["number"]
    if values["result"]:
        if _RESULT.match(values["result"]):
            got["result"] = values["result"]
        else:
            form.errors.append("result: a result word such as completed or busy")
    if values["sip_status"]:
        if values["sip_status"].isdigit() and 100 <= int(values["sip_status"]) <= 699:
            got["sip_status"] = int(values["sip_status"])
        else:
            form.errors.append("SIP status: a number from 100 to 699")
    if "since" in got and "until" in got and got["since"] > got["until"]:
        form.errors.append("since is after until")
    cursor = params.get("cursor", "")
    if cursor:
        if len(cursor) <= 512:
            form.cursor = cursor
        else:
            form.errors.append("cursor: not one this console handed out")
    form.filters = Filters(**got)
    return form


def record_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A row of the Calls page."""
    timings, hangup = _dict(record.get("timings")), _dict(record.get("hangup"))
    sip = _num(hangup.get("sip_status"))
    return {
        "id": _str(record.get("id"), 64),
        "started": utc(timings.get("created")),
        "direction": _str(record.get("direction"), 16),
        "trunk": _str(record.get("trunk"), 64),
        "from": _str(record.get("from"), 256),
        "to": _str(record.get("to"), 256),
        "agent": _str(record.get("agent"), 64),
        "duration": seconds(timings.get("duration_seconds")) if _num(timings.get("answered")) else "",
        "outcome": outcome(record.get("result")),
        "sip_status": int(sip) if sip is not None else None,
        "sip_phrase": _str(hangup.get("sip_phrase"), 64),
        "hangup_by": _str(record.get("hangup_by"), 32),
    }


# -- trunks over the last hour --------------------------------------------------------------------------------
def trunk_hour(
    records: Iterable[Mapping[str, Any]], trunks: Iterable[str], now: float, bucket: int = 300, span: int = 3600
) -> dict[str, Any]:
    """Calls and failures per trunk in ``bucket``-second slots over the last ``span`` seconds (by start time).

    Returns ``{"t": [slot starts], "trunks": {name: {"calls": [...], "failures": [...], "total": n, "failed": n}}}``:
    every trunk of ``trunks`` is there (with zeros), plus any other trunk a record names.
    """
    slots = span // bucket
    first = (math.floor(now / bucket) - slots + 1) * bucket
    out: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        if name not in out:
            out[name] = {"calls": [0] * slots, "failures": [0] * slots, "total": 0, "failed": 0}
        return out[name]

    for name in trunks:
        entry(name)
    for record in records:
        start = _num(_dict(record.get("timings")).get("created"))
        if start is None or not first <= start < first + slots * bucket:
            continue
        name = _str(record.get("trunk"), 64) or "(none)"
        if name not in out and len(out) >= 200:
            continue
        slot = int((start - first) // bucket)
        e = entry(name)
        e["calls"][slot] += 1
        e["total"] += 1
        if failed(record.get("result")):
            e["failures"][slot] += 1
            e["failed"] += 1
    return {"t": [first + i * bucket for i in range(slots)], "trunks": out}


def expiry(not_after: datetime, now: datetime, warn_days: int) -> dict[str, Any]:
    """A certificate's expiry as the Trunks page shows it: the date, days left, and a class (ok, warn, bad)."""
    left = (not_after - now).total_seconds() / 86400
    cls = "bad" if left < 0 else "warn" if left < warn_days else "ok"
    word = "expired" if left < 0 else "expires soon" if left < warn_days else "valid"
    return {"not_after": not_after.strftime("%Y-%m-%d %H:%M UTC"), "days": math.floor(left), "cls": cls, "word": word}
