"""The session's decisions (orchestrator.media.lifecycle) on fake time: no sockets, no sleeps."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.media.lifecycle import (
    ENDING_GRACE,
    Failed,
    HangingUp,
    Lifecycle,
    Phase,
    TransferAnswer,
    transfer_text,
)


def life(**kw: Any) -> Lifecycle:
    """A lifecycle whose agent connected at t=0 (first message due after 5 s, fork grace 1 s, transfers 30 s)."""
    lc = Lifecycle(**{"first_message_timeout": 5.0, "fork_grace": 1.0, "transfer_timeout": 30.0, **kw})
    assert lc.opened(0.0)
    return lc


# -- fail once ------------------------------------------------------------------------------------------
def test_the_first_failure_wins_and_later_ones_are_no_news() -> None:
    lc = life()
    assert lc.fail("agent_stalled", "the agent stopped reading audio") == Failed(
        "agent_stalled", "the agent stopped reading audio"
    )
    assert lc.fail("agent_closed", "later") is None
    assert lc.agent_hangup("bye") is None
    assert (lc.phase, lc.outcome, lc.detail) == (Phase.ENDING, "agent_stalled", "the agent stopped reading audio")
    assert lc.deadline is None  # a failure stops every clock


def test_a_failure_detail_is_cleaned_and_bounded() -> None:
    failed = life().fail("agent_closed", "a\nb\x1b" + "x" * 400)
    assert failed is not None and "\n" not in failed.detail and "\x1b" not in failed.detail
    assert len(failed.detail) <= 301


def test_nothing_fails_after_the_hang_up_was_reported() -> None:
    lc = life()
    assert lc.ended() and not lc.ended()
    assert lc.fail("media_lost", "x") is None and lc.phase is Phase.ENDED and lc.outcome == ""


def test_opened_once_and_not_after_the_call_ended() -> None:
    lc = Lifecycle()
    lc.ended()
    assert not lc.opened(0.0)
    lc = life()
    assert not lc.opened(1.0)


# -- first message --------------------------------------------------------------------------------------
def test_silence_after_connecting_fails_at_the_deadline_not_before() -> None:
    lc = life()
    assert lc.deadline == 5.0
    assert lc.poll(4.99) == []
    (failed,) = lc.poll(5.0)
    assert failed == Failed("agent_first_message_timeout", "the agent sent nothing within 5 s of connecting")


def test_an_understood_message_stops_the_first_message_clock() -> None:
    lc = life()
    lc.understood()
    assert lc.heard and lc.deadline is None and lc.poll(100.0) == [] and lc.phase is Phase.OPEN


def test_no_first_message_limit_means_no_clock() -> None:
    lc = life(first_message_timeout=0.0)
    assert lc.deadline is None and lc.poll(1e6) == []


# -- ending grace -----------------------------------------------------------------------------------------
def test_an_announced_end_without_a_close_hangs_up_after_the_grace() -> None:
    lc = life()
    lc.understood()
    lc.announce_end("end_call", 10.0)
    assert lc.deadline == 10.0 + ENDING_GRACE
    assert lc.poll(10.0 + ENDING_GRACE - 0.01) == []
    assert lc.poll(10.0 + ENDING_GRACE) == [HangingUp("end_call; no close followed")]
    assert lc.outcome == "agent_hangup" and lc.phase is Phase.ENDING


def test_any_close_after_an_announced_end_is_a_hang_up() -> None:
    lc = life(ending_grace=2.0)
    lc.understood()
    lc.announce_end("end_call", 1.0)
    lc.announce_end("again", 1.5)  # the first announcement counts
    assert lc.agent_closed(1011, "oops") == HangingUp("end_call; closed 1011 oops")
    assert lc.deadline is None


# -- fork grace ---------------------------------------------------------------------------------------------
def test_a_fork_that_stays_away_fails_the_call_after_the_grace() -> None:
    lc = life()
    lc.understood()
    assert lc.fork_lost(1006, 2.0)
    assert lc.poll(2.99) == []
    (failed,) = lc.poll(3.0)
    assert failed == Failed("media_lost", "FreeSWITCH's audio fork closed (1006) while the call is up")


def test_a_new_fork_within_the_grace_keeps_the_call() -> None:
    lc = life()
    lc.understood()
    lc.fork_lost(1000, 2.0)
    lc.fork_back()
    assert lc.poll(10.0) == [] and lc.phase is Phase.OPEN


def test_a_fork_lost_while_ending_is_no_failure() -> None:
    lc = life()
    lc.understood()
    lc.agent_hangup("bye")
    assert not lc.fork_lost(1006, 1.0) and lc.poll(10.0) == [] and lc.outcome == "agent_hangup"


def test_the_hang_up_within_the_fork_grace_is_no_failure() -> None:
    lc = life()
    lc.fork_lost(1006, 1.0)
    lc.ended()
    assert lc.poll(10.0) == [] and lc.outcome == ""


# -- stall ----------------------------------------------------------------------------------------------------
def test_an_agent_that_stopped_reading_fails_once_the_stall_is_too_long() -> None:
    lc = life(stall_seconds=0.5)
    assert lc.stalled(paused_at=1.0, now=1.5) is None
    assert lc.stalled(paused_at=1.0, now=1.51) == Failed("agent_stalled", "the agent stopped reading audio")
    assert lc.stalled(paused_at=1.0, now=9.0) is None  # once


# -- outcome precedence when the agent closes ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("heard", "code", "error", "outcome", "detail"),
    [
        (True, 1000, None, "agent_hangup", "closed 1000 bye"),
        (True, 1005, None, "agent_hangup", "closed 1005 bye"),
        (False, 1000, None, "agent_closed", "the agent closed the connection (1000 bye) before its first message"),
        (True, 1001, None, "agent_closed", "the agent closed the connection (1001 bye)"),
        (True, 1006, None, "agent_closed", "the agent closed the connection (1006 bye)"),
        (
            True,
            1000,
            "bad frame",
            "agent_closed",
            "the agent broke the WebSocket protocol (bad frame); closed with 1000",
        ),
    ],
)
def test_what_an_agent_close_means(heard: bool, code: int, error: str | None, outcome: str, detail: str) -> None:
    lc = life()
    if heard:
        lc.understood()
    decision = lc.agent_closed(code, "bye", error)
    assert isinstance(decision, HangingUp if outcome == "agent_hangup" else Failed)
    assert (lc.outcome, lc.detail) == (outcome, detail)


def test_a_failure_close_says_what_the_agent_reported_last() -> None:
    lc = life()
    lc.understood()
    lc.agent_closed(1008, "Override not allowed", last_error={"t": 1.0, "kind": "error", "message": "second"})
    assert lc.detail == "the agent closed the connection (1008 Override not allowed); it reported message=second"


def test_after_a_transfer_took_the_call_the_agent_closing_is_nothing() -> None:
    lc = life()
    lc.understood()
    assert lc.transfer_requested("t1", "+15550001111", 1.0, control=True) is None
    lc.transfer_outcome({"succeeded": True, "sip_status": 200})
    assert lc.agent_closed(1011, "bye") is None
    assert (lc.phase, lc.outcome, lc.detail) == (Phase.ENDING, "", "the agent closed (1011 bye) after the transfer")


def test_a_close_while_not_open_decides_nothing() -> None:
    lc = Lifecycle()
    assert lc.agent_closed(1006, "") is None and lc.phase is Phase.CONNECTING


# -- transfers --------------------------------------------------------------------------------------------------------
def test_one_transfer_at_a_time_and_none_without_control_or_when_ending() -> None:
    lc = life()
    assert lc.transfer_requested("t0", "+1", 0.0, control=False) == "no call control"
    assert lc.transfer_requested("t1", "+1", 0.0, control=True) is None
    assert lc.transfer_requested("t2", "+2", 0.0, control=True) == "a transfer to +1 is in progress"
    lc.fail("agent_closed", "x")
    assert lc.transfer_requested("t3", "+3", 0.0, control=True) == "the call is ending"


def test_a_transfer_without_outcome_is_answered_at_its_deadline_and_once() -> None:
    lc = life(first_message_timeout=0.0, transfer_timeout=0.3)
    lc.transfer_requested("t1", "+1", 2.0, control=True)
    assert lc.deadline == pytest.approx(2.3)
    (answer,) = lc.poll(2.3)
    assert answer == TransferAnswer("t1", "+1", False, "The transfer to +1 had no outcome within 0.3 s.")
    assert lc.transfer_outcome({"succeeded": True}) is None  # late: answered already


def test_a_refusal_is_answered_once_even_when_a_notice_came_first() -> None:
    lc = life()
    lc.transfer_requested("r1", "+1", 0.0, control=True)
    pending = lc.transfer
    assert pending is not None
    notice = lc.transfer_outcome({"succeeded": False, "detail": "-ERR not answered"})
    assert notice is not None and not notice.ok and "still on the line" in notice.text
    assert lc.transfer_refused(pending, "-ERR not answered") is None


def test_a_refusal_alone_is_answered() -> None:
    lc = life()
    lc.transfer_requested("r1", "+1", 0.0, control=True)
    assert lc.transfer is not None
    answer = lc.transfer_refused(lc.transfer, "call is new")
    assert answer == TransferAnswer("r1", "+1", False, "The transfer to +1 was refused: call is new")


def test_a_transfer_still_answers_after_the_agent_hung_up() -> None:
    lc = life()
    lc.transfer_requested("t1", "+1", 0.0, control=True)
    lc.agent_hangup("bye")
    assert lc.transfer_outcome({"succeeded": True}) is not None


@pytest.mark.parametrize(
    ("data", "ok", "text"),
    [
        ({"succeeded": True, "sip_status": 200}, True, "The transfer to X succeeded (SIP 200): the call has left"),
        ({"succeeded": False, "detail": "bridge failed"}, False, "failed (bridge failed): the caller is still"),
        ({"succeeded": False, "sip_status": 486, "detail": "Busy", "call_continues": False}, False, "and the call"),
        ({"succeeded": False, "sip_status": True}, False, "The transfer to X failed: the caller"),
    ],
)
def test_transfer_texts(data: dict[str, Any], ok: bool, text: str) -> None:
    got_ok, got = transfer_text("X", data)
    assert got_ok is ok and text in got


# -- deadlines together ------------------------------------------------------------------------------------------------
def test_deadlines_pass_earliest_first_and_a_failure_cancels_the_rest() -> None:
    lc = life(first_message_timeout=5.0, fork_grace=1.0, transfer_timeout=2.0)
    lc.transfer_requested("t1", "+1", 0.0, control=True)
    lc.fork_lost(1006, 0.5)
    decisions = lc.poll(100.0)
    assert [type(d) for d in decisions] == [Failed]  # the fork's grace (1.5) first; its failure stops the others
    assert decisions[0].reason == "media_lost" and lc.deadline is None  # type: ignore[union-attr]
