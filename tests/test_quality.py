"""Live quality, sans-I/O (orchestrator/calls/quality.py): FreeSWITCH's mediaStats replies, loss, jitter, MOS,
the hysteresis of quality_low / quality_ok and the bounded series."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from orchestrator.calls import quality
from orchestrator.calls.quality import Change, Reply, Track, Watch
from orchestrator.esl import commands

UUID = "6e1c9a52-93d5-4a55-9b8b-2b4f1b1a0c11"


def reply(audio: dict[str, Any] | None = None, **top: Any) -> str:
    """A mediaStats reply as FreeSWITCH 1.10.12 prints it (json_function: the request with status and response)."""
    doc: dict[str, Any] = {"command": "mediaStats", "data": {"uuid": UUID}, "status": "success"}
    doc["response"] = {"audio": audio} if audio is not None else {}
    doc.update(top)
    return json.dumps(doc, separators=(",", ":")) + "\n"


def counters(received: float, flaws: float = 0, sent: float | None = None, **more: Any) -> dict[str, Any]:
    r = int((received - flaws) / received * 100) if received else 100
    base: dict[str, Any] = {
        "in_media_packet_count": received,
        "in_packet_count": received,
        "in_flaw_total": flaws,
        "in_jitter_max_variance": 0.25,
        "in_jitter_min_variance": 0.0,
        "in_quality_percentage": r,
        "in_mos": quality.r_to_mos(r),
        "out_media_packet_count": received if sent is None else sent,
    }
    base.update(more)
    return base


def test_the_command_is_one_json_api_call_with_the_uuid_only() -> None:
    cmd = commands.media_stats(UUID)
    assert cmd == 'json {"command":"mediaStats","data":{"uuid":"' + UUID + '"}}'
    for bad in ("x y", 'a"b', "a}b", "", "a\nb"):
        with pytest.raises(commands.Refused):
            commands.media_stats(bad)


def test_a_real_reply_is_read_with_every_counter() -> None:
    audio = {k: 7 for k in quality.FIELDS}
    kind, reading = quality.parse_media_stats(reply(audio))
    assert kind is Reply.OK and reading is not None
    assert set(reading.values) == set(quality.FIELDS) and reading.get("in_mos") == 7.0


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            '{"command":"mediaStats","data":{"uuid":"x"},"status":"error","message":"The command returned an '
            'error","response":{"response":"Session does not exist"}}\n',
            Reply.GONE,
        ),
        (reply(None), Reply.NO_MEDIA),
        ('{"status":"error","response":{"response":"INVALID INPUT"}}', Reply.UNREADABLE),
        ("-ERR Parse error.\n", Reply.UNREADABLE),
        ("-ERR json Command not found!\n", Reply.UNREADABLE),
        ("", Reply.UNREADABLE),
        ("[" * 100_000 + "]" * 100_000, Reply.UNREADABLE),  # too long
        ("[" * 10_000 + "]" * 10_000, Reply.UNREADABLE),  # deep, within the length
        ('{"status":"success","response":{"audio":{"in_mos":' + "9" * 5000 + "}}}", Reply.UNREADABLE),
        ('{"status":"success","response":[1]}', Reply.UNREADABLE),
        ('{"status":"success","response":{"audio":"yes"}}', Reply.UNREADABLE),
        ("null", Reply.UNREADABLE),
        ('"text"', Reply.UNREADABLE),
        ('{"status":"success","response":{"audio":{}}}', Reply.OK),
    ],
)
def test_replies_that_are_not_counters(body: str, kind: Reply) -> None:
    got, reading = quality.parse_media_stats(body)
    assert got is kind
    assert (reading is not None) == (kind is Reply.OK)


def test_hostile_values_are_left_out_never_raised() -> None:
    hostile: dict[str, Any] = {
        "in_mos": "4.5",  # a numeric string is a number
        "in_media_packet_count": -1,
        "in_flaw_total": 1e300,
        "in_packet_count": True,
        "in_raw_bytes": [1],
        "in_media_bytes": {"a": 1},
        "in_jitter_max_variance": None,
        "in_jitter_min_variance": "NaN",
        "in_quality_percentage": "inf",
        "out_packet_count": "12abc",
        "out_media_packet_count": 10**400,
        "in_skip_packet_count": "9" * 40,
        "unknown": 5,
    }
    kind, reading = quality.parse_media_stats(reply(hostile))
    assert kind is Reply.OK and reading is not None
    assert dict(reading.values) == {"in_mos": 4.5}
    p = quality.point(None, reading, 10.0)
    assert p.mos == 4.5 and p.loss_pct is None and p.jitter_ms is None and p.packets_in == 0


def test_the_channel_variables_read_the_same() -> None:
    names = {"rtp_audio_in_mos": "4.21", "rtp_audio_in_media_packet_count": "500", "rtp_audio_in_flaw_total": "x"}
    reading = quality.reading_from_variables(lambda n: names.get(n, ""))
    assert dict(reading.values) == {"in_mos": 4.21, "in_media_packet_count": 500.0}


def test_loss_and_mos_are_per_interval_and_mos_call_is_freeswitchs() -> None:
    first = quality.reading(counters(250))  # 5 s clean
    p1 = quality.point(None, first, 5.0)
    assert p1.loss_pct == 0 and p1.mos_call == 4.5
    assert p1.mos == pytest.approx(quality.e_model_mos(0, 0.5)) and 4.35 < (p1.mos or 0) < 4.45
    assert p1.packets_in == 250 and p1.packets_out == 250
    assert p1.jitter_ms == pytest.approx(0.5)  # √0.25 ms²
    # the next 5 s: 250 packets sent each way, 50 of the far end's lost in single gaps: 150 flaws with the penalty
    second = quality.reading(counters(450, 150, sent=500))
    p2 = quality.point(first, second, 10.0)
    assert p2.packets_in == 200 and p2.packets_out == 250
    assert p2.loss_pct == pytest.approx(20.0)  # min(150 / 350, 50 / 250)
    assert p2.mos == pytest.approx(quality.e_model_mos(20.0, 0.5))
    assert p2.mos_call == pytest.approx(quality.r_to_mos(66))  # FreeSWITCH's, over the call
    assert p2.mos is not None and p2.mos < 3.0 < p2.mos_call


def test_loss_is_the_smaller_of_two_upper_bounds() -> None:
    assert quality.loss_pct(30, 40, 50) == 40.0  # measured on 1.10.12: 2 of 5 lost, 40 flaws for 20 lost
    assert quality.loss_pct(50, 0, 75) == 0.0  # far end at 30 ms ptime, FreeSWITCH at 20: no gap, no loss
    assert quality.loss_pct(0, 0, 0) is None and quality.loss_pct(None, None, None) is None
    assert quality.loss_pct(10, None, 20) is None  # too few sent to tell, no flaw count
    assert quality.loss_pct(10, None, 50) == 80.0
    assert quality.loss_pct(60, None, 50) == 0.0  # more received than sent (a 10 ms far end): no negative loss
    assert quality.loss_pct(10, -5, 100) == 90.0  # flaws went down (FreeSWITCH zeroed them): only the other bound


def test_without_a_loss_figure_freeswitchs_mos_is_taken() -> None:
    before = quality.reading(counters(250))
    bare = quality.reading({"in_media_packet_count": 260, "in_mos": 4.1, "in_jitter_max_variance": 4})
    p = quality.point(before, bare, 1.0)
    assert p.loss_pct is None and p.mos == 4.1 and p.jitter_ms == 2.0
    assert quality.point(before, quality.reading({"in_media_packet_count": 260}), 1.0).mos is None


def test_freeswitch_resetting_its_flaws_leaves_the_sent_bound() -> None:
    before = quality.reading(counters(400, 300, sent=1000))
    after = quality.reading(counters(500, 10, sent=1250))  # flaws went down: do_mos zeroed them
    p = quality.point(before, after, 1.0)
    assert p.loss_pct == 60.0 and p.mos is not None and p.mos < 2


def test_a_new_rtp_session_counts_from_zero() -> None:
    before = quality.reading(counters(5000, 100))
    after = quality.reading(counters(100, 0))  # every counter went down
    p = quality.point(before, after, 1.0)
    assert p.packets_in == 100 and p.loss_pct == 0 and p.mos == pytest.approx(quality.e_model_mos(0, 0.5))


def test_out_of_range_freeswitch_mos_is_ignored() -> None:
    p = quality.point(None, quality.reading({"in_mos": 7.0}), 0)
    assert p.mos is None and p.mos_call is None


@pytest.mark.parametrize(
    ("loss", "jitter", "latency", "low", "high"),
    [
        (0, 0, 0, 4.35, 4.45),  # G.711, nothing lost: about 4.4
        (1, 2, 0, 4.2, 4.35),
        (5, 5, 0, 3.8, 4.0),
        (10, 10, 50, 3.2, 3.45),
        (30, 20, 150, 1.5, 2.6),
        (100, 500, 1000, 1.0, 1.0),
    ],
)
def test_the_e_model(loss: float, jitter: float, latency: float, low: float, high: float) -> None:
    assert low <= quality.e_model_mos(loss, jitter, latency) <= high


def test_the_e_model_is_monotonic_and_bounded() -> None:
    previous = 5.0
    for loss in range(0, 101, 5):
        mos = quality.e_model_mos(loss, 5)
        assert 1.0 <= mos <= 4.5 and mos <= previous
        previous = mos
    assert quality.e_model_mos(-5, -5, -5) == quality.e_model_mos(0, 0, 0)
    assert quality.r_to_mos(-3) == 1.0 and quality.r_to_mos(150) == 4.5 and quality.r_to_mos(100) == 4.5
    assert quality.r_to_mos(93.2) == pytest.approx(4.41, abs=0.01)
    assert not math.isnan(quality.e_model_mos(float("inf"), 0))


def test_the_watch_needs_two_points_to_go_low_and_two_above_the_margin_to_recover() -> None:
    w = Watch(3.5)
    assert [w.update(m) for m in (4.4, 3.4, 4.4, 3.4, 3.3)] == [None, None, None, None, Change.LOW]
    assert w.low
    # flapping around the threshold changes nothing: 3.6 is above 3.5 but below 3.5 + 0.2
    assert [w.update(m) for m in (3.6, 3.4, 3.6, 3.65, None, 3.4)] == [None] * 6
    assert [w.update(m) for m in (3.7, None, 3.9)] == [None, None, Change.OK]
    assert not w.low
    assert [w.update(m) for m in (3.0, 3.0)] == [None, Change.LOW]


def test_the_watch_recovers_at_most_at_4_5() -> None:
    w = Watch(4.5, confirm=1)
    assert w.update(4.4) is Change.LOW and w.update(4.5) is Change.OK


def test_a_track_keeps_a_bounded_series_and_a_summary_of_every_sample() -> None:
    t = Track(length=3, min_mos=3.5)
    changes = []
    received = flaws = sent = 0
    for i in range(10):
        lost = 100 if 4 <= i < 7 else 0  # 40 % lost for three samples
        sent += 250
        received += 250 - lost
        flaws += 3 * lost
        _, change = t.add(quality.reading(counters(received, flaws, sent=sent)), 100.0 + 5 * i)
        changes.append(change)
    assert len(t.series) == 3 and [p["t"] for p in t.points()] == [135.0, 140.0, 145.0]
    assert changes.count(Change.LOW) == 1 and changes.count(Change.OK) == 1
    assert changes.index(Change.LOW) == 5 and changes.index(Change.OK) == 8
    s = t.summary()
    clean = quality.e_model_mos(0, 0.5)
    assert s["samples"] == 10 and s["low_events"] == 1 and s["low"] is False
    assert s["mos_min"] == pytest.approx(quality.e_model_mos(40, 0.5), abs=0.01)
    assert s["loss_pct_max"] == 40.0 and s["mos"] == pytest.approx(clean, abs=0.01)
    assert s["packets_in"] == received and s["packets_out"] == sent and s["min_mos"] == 3.5
    current = t.current()
    assert current is not None and current["low"] is False and current["t"] == 145.0
    assert current["mos"] == pytest.approx(clean, abs=0.01)


def test_an_empty_track() -> None:
    t = Track()
    assert t.current() is None and t.points() == []
    assert t.summary()["samples"] == 0 and t.summary()["mos"] is None


# -- the far end's view: RTCP receiver reports ---------------------------------------------------------------------
def rtcp(**over: str) -> dict[str, str]:
    """The headers of a RECV_RTCP_MESSAGE as FreeSWITCH 1.10.12 prints them (one report block)."""
    h = {
        "Event-Name": "RECV_RTCP_MESSAGE", "Unique-ID": UUID, "SSRC": "00000000", "RTP-Rate": "8000",
        "Source0-SSRC": "5eed0001", "Source0-Fraction": "25", "Source0-Lost": "40", "Source0-Loss-Avg": "9",
        "Source0-Highest-Sequence-Number-Received": "1400", "Source0-Jitter": "160", "Source0-LSR": "123",
        "Source0-DLSR": "6553", "Rtt0-Avg": "0.080000",
    }  # fmt: skip
    h.update(over)
    return h


def parsed(**over: str) -> quality.FarReport:
    result, report = quality.parse_rtcp(rtcp(**over).get)
    assert result is quality.RtcpResult.OK and report is not None
    return report


def test_a_receiver_report_gives_loss_jitter_and_rtt() -> None:
    r = parsed()
    assert r.source == "5eed0001" and r.fraction == 25 and r.lost == 40 and r.highest_seq == 1400
    assert r.loss_pct == pytest.approx(100 * 25 / 256)
    assert r.jitter_ms == 20.0  # 160 timestamp units at 8000 Hz
    assert r.rtt_ms == pytest.approx(80.0)
    assert parsed(**{"RTP-Rate": "48000", "Source0-Jitter": "480"}).jitter_ms == 10.0
    assert parsed(**{"Rtt0-Avg": "0.000000"}).rtt_ms is None  # no LSR echoed yet: FreeSWITCH has no RTT
    assert parsed(**{"Source0-Lost": str((1 << 32) - 2)}).lost == -2  # duplicates: a negative count, sign-extended


@pytest.mark.parametrize(
    ("over", "result"),
    [
        ({"Source0-Fraction": "256"}, quality.RtcpResult.UNREADABLE),
        ({"Source0-Fraction": "-1"}, quality.RtcpResult.UNREADABLE),
        ({"Source0-Fraction": "２５"}, quality.RtcpResult.UNREADABLE),  # non-ASCII digits
        ({"Source0-Lost": "99999999999"}, quality.RtcpResult.UNREADABLE),
        ({"Source0-Lost": str(1 << 23)}, quality.RtcpResult.UNREADABLE),  # not a 24-bit count
        ({"Source0-Lost": str((1 << 32) - (1 << 23) - 1)}, quality.RtcpResult.UNREADABLE),
        ({"Source0-Highest-Sequence-Number-Received": "1e5"}, quality.RtcpResult.UNREADABLE),
        ({"Source0-SSRC": "5EED0001x"}, quality.RtcpResult.UNREADABLE),
        ({"Source0-SSRC": ""}, quality.RtcpResult.UNREADABLE),
        ({"Source0-Fraction": ""}, quality.RtcpResult.UNREADABLE),
    ],
)
def test_hostile_reports_are_refused_never_raised(over: dict[str, str], result: quality.RtcpResult) -> None:
    assert quality.parse_rtcp(rtcp(**over).get) == (result, None)


def test_a_report_without_a_block_and_figures_out_of_range() -> None:
    empty = {k: v for k, v in rtcp().items() if not k.startswith(("Source", "Rtt"))}
    assert quality.parse_rtcp(lambda k: empty.get(k, "")) == (quality.RtcpResult.NO_BLOCK, None)
    # a figure that cannot be taken leaves only itself out
    assert parsed(**{"RTP-Rate": "0"}).jitter_ms is None
    assert parsed(**{"RTP-Rate": "999999"}).jitter_ms is None
    assert parsed(**{"Source0-Jitter": "4294967295"}).jitter_ms is None  # 149 hours of jitter
    for rtt in ("nan", "inf", "-0.5", "11.0", "x", "0." + "1" * 40):
        assert parsed(**{"Rtt0-Avg": rtt}).rtt_ms is None, rtt


def test_interval_loss_comes_from_the_cumulative_counts() -> None:
    base = parsed(**{"Source0-Lost": "40", "Source0-Highest-Sequence-Number-Received": "1400"})
    # 250 packets expected since, 25 more lost: 10 % whatever the last report's own fraction says (a report lost
    # on the way costs nothing)
    later = parsed(**{"Source0-Lost": "65", "Source0-Highest-Sequence-Number-Received": "1650",
                      "Source0-Fraction": "0"})  # fmt: skip
    assert quality.interval_loss(base, later) == 10.0
    assert quality.interval_loss(None, later) == 0.0  # no base: the report's fraction
    other = parsed(**{"Source0-SSRC": "00000001", "Source0-Fraction": "128"})
    assert quality.interval_loss(base, other) == 50.0  # another stream: the fraction
    back = parsed(**{"Source0-Highest-Sequence-Number-Received": "1000", "Source0-Fraction": "64"})
    assert quality.interval_loss(base, back) == 25.0  # counters went back: the fraction
    dup = parsed(**{"Source0-Lost": "30", "Source0-Highest-Sequence-Number-Received": "1500"})
    assert quality.interval_loss(base, dup) == 0.0  # duplicates: never below 0
    jump = parsed(**{"Source0-Lost": "8000000", "Source0-Highest-Sequence-Number-Received": "1500"})
    assert quality.interval_loss(base, jump) == 100.0  # never above 100


def test_points_carry_the_far_ends_figures_while_its_report_is_current() -> None:
    t = Track(min_mos=3.5)
    p0, _ = t.add(quality.reading(counters(250)), 100.0)
    assert p0.far is None and p0.to_dict()["out_mos"] is None and p0.to_dict()["rtt_ms"] is None
    t.report(parsed(**{"Source0-Fraction": "0", "Source0-Jitter": "40", "Rtt0-Avg": "0.100000"}), 101.0)
    t.report(parsed(**{"Source0-Fraction": "0", "Source0-Jitter": "80", "Rtt0-Avg": "0.120000"}), 103.0)
    p1, _ = t.add(quality.reading(counters(500)), 105.0)
    d = p1.to_dict()
    assert d["out_loss_pct"] == 0.0 and d["out_jitter_ms"] == 10.0  # the larger of the interval's two reports
    assert d["rtt_ms"] == 120.0 and d["out_lost"] == 40
    assert d["out_mos"] == round(quality.e_model_mos(0, 10, 60), 2)  # RTT/2 as the network's one-way delay
    assert p1.far is not None and p1.far.fresh
    # the in-direction MOS takes the same latency once the RTT is known
    assert d["mos"] == round(quality.e_model_mos(0, 0.5, 60), 2)
    # no report since: the same figures, not fresh; past REPORT_TTL: none
    p2, _ = t.add(quality.reading(counters(750)), 110.0)
    assert p2.far is not None and not p2.far.fresh and p2.to_dict()["out_mos"] == d["out_mos"]
    p3, _ = t.add(quality.reading(counters(1000)), 103.0 + quality.REPORT_TTL + 1)
    assert p3.far is None and p3.to_dict()["out_loss_pct"] is None
    assert p3.to_dict()["mos"] == round(quality.e_model_mos(0, 0.5), 2)
    s = t.summary()
    assert s["rtcp_reports"] == 2 and s["out_mos"] is None  # the last point has none
    # the far end's figures over the samples its reports came in: once, not once per point showing them
    assert s["out_mos_min"] == s["out_mos_max"] == s["out_mos_avg"] == d["out_mos"]
    assert s["rtt_ms_min"] == s["rtt_ms_max"] == 120.0 and s["out_jitter_ms_avg"] == 10.0
    assert s["out_loss_pct_max"] == 0.0
    current = t.current()
    assert current is not None and set(current) >= {"out_mos", "out_loss_pct", "out_jitter_ms", "rtt_ms"}


def test_quality_low_follows_the_worse_direction() -> None:
    t = Track(min_mos=3.5)
    seq, lost, at = 1000, 0, 100.0
    received = 0

    def step(out_loss: float | None) -> tuple[quality.Point, Change | None]:
        nonlocal seq, lost, at, received
        at += 5
        received += 250
        if out_loss is not None:
            seq += 250
            lost += int(250 * out_loss / 100)
            t.report(parsed(**{"Source0-Lost": str(lost), "Source0-Highest-Sequence-Number-Received": str(seq)}),
                     at - 1)  # fmt: skip
        return t.add(quality.reading(counters(received)), at)

    assert step(0)[1] is None and step(0)[1] is None  # one report below the threshold (its own 10 %) is not two
    # the far end loses 40 % of what we send while what we receive is clean: low after two reports
    assert step(40)[1] is None
    p, change = step(40)
    assert change is Change.LOW and t.low_direction == "out" and p.mos is not None and p.mos > 4
    assert p.to_dict()["out_loss_pct"] == 40.0
    # points without a new report never count twice for the out direction
    assert step(None)[1] is None and step(None)[1] is None and t.low
    assert step(0)[1] is None
    p, change = step(0)
    assert change is Change.OK and t.low_direction is None and t.summary()["low_events"] == 1
    assert t.summary()["out_loss_pct_max"] == 40.0
