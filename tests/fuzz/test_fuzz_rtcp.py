"""The far end's RTCP reports from arbitrary headers: a report within bounds or a refusal, nothing else; a call's
track fed arbitrary reports and readings keeps every figure within its bounds and its state bounded."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.calls import quality

HEADERS = [
    "Source0-SSRC", "Source0-Fraction", "Source0-Lost", "Source0-Highest-Sequence-Number-Received",
    "Source0-Jitter", "RTP-Rate", "Rtt0-Avg",
]  # fmt: skip
values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "0", "255", "256", "4294967295", "8388607", "4286578688", "5eed0001", "nan", "1e308"]),
)
headers = st.dictionaries(st.sampled_from(HEADERS), values, max_size=len(HEADERS))


def within(report: quality.FarReport) -> None:
    assert 0 <= report.fraction <= 255 and -(1 << 23) <= report.lost < 1 << 23
    assert 0 <= report.highest_seq < 1 << 32 and len(report.source) == 8
    assert report.jitter_ms is None or 0 <= report.jitter_ms <= quality.MAX_JITTER_MS
    assert report.rtt_ms is None or 0 < report.rtt_ms <= 1000 * quality.MAX_RTT_S


@given(headers)
def test_any_headers_give_a_bounded_report_or_a_refusal(h: dict[str, str]) -> None:
    result, report = quality.parse_rtcp(lambda k: h.get(k, ""))
    assert isinstance(result, quality.RtcpResult)
    assert (report is not None) == (result is quality.RtcpResult.OK)
    if report is not None:
        within(report)


reports = st.builds(
    quality.FarReport,
    source=st.sampled_from(["5eed0001", "00000002"]),
    fraction=st.integers(0, 255),
    lost=st.integers(-(1 << 23), (1 << 23) - 1),
    highest_seq=st.integers(0, (1 << 32) - 1),
    jitter_ms=st.none() | st.floats(0, quality.MAX_JITTER_MS),
    rtt_ms=st.none() | st.floats(0.001, 1000 * quality.MAX_RTT_S),
)


@given(st.lists(st.tuples(st.lists(reports, max_size=5), st.floats(0, 30)), min_size=1, max_size=20))
def test_a_track_fed_anything_keeps_its_figures_in_bounds(steps: list[tuple[list[quality.FarReport], float]]) -> None:
    track = quality.Track(length=5)
    at, received = 0.0, 0
    for batch, gap in steps:
        for r in batch:
            track.report(r, at)
        at += gap
        received += 50
        p, _ = track.add(quality.reading({"in_media_packet_count": received, "out_media_packet_count": received}), at)
        d = p.to_dict()
        if d["out_mos"] is not None:
            assert quality.MOS_MIN <= d["out_mos"] <= quality.MOS_MAX
            assert 0 <= d["out_loss_pct"] <= 100
        assert d["mos"] is None or quality.MOS_MIN <= d["mos"] <= quality.MOS_MAX
    assert len(track.series) <= 5
    s = track.summary()
    for key in ("out_mos_min", "out_mos_avg", "out_mos_max"):
        assert s[key] is None or (quality.MOS_MIN <= s[key] <= quality.MOS_MAX and math.isfinite(s[key]))
