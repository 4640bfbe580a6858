"""Call and trunk events without sockets: stamping, notices → events (order, every type), gateway states, the
SSE format and parameters, and the broker's bounds, overflow and resume."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from typing import Any

import pytest

from orchestrator.calls import outcome, records
from orchestrator.calls.tracker import Call, CallState, Notice, NoticeKind, TransferAttempt
from orchestrator.events import (
    EVENT_TYPES,
    Broker,
    CallEvents,
    CallProgress,
    Draft,
    EventFactory,
    EventType,
    TrunkStates,
    map_notice,
    mapping,
    parse_gateway_state,
    sse,
)
from orchestrator.events.model import Event, iso_utc

UUID = "7f1c2d3e-0000-4000-8000-00000000000{}"


def factory(start: float = 1_700_000_000.25) -> EventFactory:
    ids = (UUID.format(i % 10) for i in itertools.count())
    clock = itertools.count(start, 0.5)
    return EventFactory(clock=lambda: next(clock), new_id=lambda: next(ids))


def call(uuid: str = "call-1", direction: str = "outbound", **kw: Any) -> Call:
    c = Call(uuid, "fs1", direction, trunk="carrier", agent="sales", number="+15550009999", remote="+15557654321")  # type: ignore[arg-type]
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def end(c: Call, result: str = "completed") -> dict[str, Any]:
    c.state = CallState.ENDED
    c.hangup = outcome.Hangup("NORMAL_CLEARING", 16, 200, "OK", "recv_bye", result)
    return records.build(c)


def types(events: list[Event]) -> list[str]:
    return [str(e.type) for e in events]


# -- the event model ------------------------------------------------------------------------------


def test_an_event_is_numbered_identified_timed_in_utc_and_a_snapshot() -> None:
    f = factory()
    data: dict[str, Any] = {"state": CallState.RINGING, "progress": [180]}
    first = f.make(Draft(EventType.CALL_RINGING, "call-1", data))
    data["progress"].append(183)  # the call changes afterwards: the event does not
    second = f.make(Draft(EventType.TRUNK_DOWN, None, {"trunk": "carrier"}))
    assert (first.seq, second.seq) == (1, 2)
    assert (first.id, second.id) == (UUID.format(0), UUID.format(1))
    assert (first.at, second.at) == ("2023-11-14T22:13:20.250Z", "2023-11-14T22:13:20.750Z")
    assert first.data == {"state": "ringing", "progress": [180]}
    assert json.loads(first.json) == {
        "id": UUID.format(0),
        "seq": 1,
        "type": "call.ringing",
        "at": "2023-11-14T22:13:20.250Z",
        "call_id": "call-1",
        "data": {"state": "ringing", "progress": [180]},
    }
    assert json.loads(second.json)["call_id"] is None
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"


def test_the_default_factory_makes_uuid4_ids() -> None:
    event = EventFactory().make(Draft(EventType.CALL_STARTED, "c", {}))
    assert len(event.id) == 36 and event.id[14] == "4" and event.at.endswith("Z")


def test_event_types_are_the_documented_ones() -> None:
    assert {
        "call.started", "call.ringing", "call.answered", "call.transferred", "call.ended", "agent.failed",
        "trunk.down", "trunk.up",
    } == EVENT_TYPES  # fmt: skip


# -- notices → events -----------------------------------------------------------------------------


def test_an_outbound_call_in_order_each_step_once() -> None:
    ev = CallEvents(factory())
    c = call(state=CallState.DIALING)
    out = ev.seen(c)
    assert types(out) == ["call.started"] and out[0].call_id == "call-1"
    assert out[0].data["direction"] == "outbound" and out[0].data["reattached"] is False
    assert ev.seen(c) == []  # once
    c.state, c.progress = CallState.RINGING, [180]
    ringing = ev.notice(Notice(NoticeKind.PROGRESS, c, {"status": 180}))
    assert types(ringing) == ["call.ringing"] and ringing[0].data["status"] == 180
    assert ev.notice(Notice(NoticeKind.PROGRESS, c, {"status": 180})) == []  # the same status again
    c.progress.append(183)
    early = ev.notice(Notice(NoticeKind.PROGRESS, c, {"status": 183}))
    assert types(early) == ["call.ringing"] and early[0].data["progress"] == [180, 183]
    c.state = CallState.ANSWERED
    answered = ev.notice(Notice(NoticeKind.ANSWERED, c))
    assert types(answered) == ["call.answered"] and answered[0].data["reattached"] is False
    assert ev.notice(Notice(NoticeKind.ANSWERED, c)) == []
    assert ev.notice(Notice(NoticeKind.PROGRESS, c, {"status": 181})) == []  # after the answer: out of order
    for kind in (NoticeKind.DTMF, NoticeKind.FORK_CONNECTED, NoticeKind.HANGUP, NoticeKind.FORK_ERROR):
        assert ev.notice(Notice(kind, c, {"digit": "1"})) == []
    c.transfer = TransferAttempt("refer", "sip:+15559998888@sbc.carrier.example", "failed", 603, "Decline")
    failed = ev.notice(Notice(NoticeKind.TRANSFER, c, {"succeeded": False, "sip_status": 603, "call_continues": True}))
    assert types(failed) == ["call.transferred"]
    assert failed[0].data["succeeded"] is False and failed[0].data["call_continues"] is True
    assert failed[0].data["transfer"]["sip_status"] == 603
    c.transfer = TransferAttempt("refer", "sip:+15559998888@sbc.carrier.example", "succeeded", 200)
    done = ev.notice(Notice(NoticeKind.TRANSFER, c, {"succeeded": True, "sip_status": 200}))
    assert done[0].data["succeeded"] is True and done[0].data["call_continues"] is False
    assert ev.notice(Notice(NoticeKind.ENDED, c, {"lost": False})) == []  # the end waits for the record
    record = end(c)
    ended = ev.ended(c, record)
    assert types(ended) == ["call.ended"] and ended[0].data == json.loads(json.dumps(record))
    assert ended[0].data["result"] == "completed" and ended[0].data["id"] == "call-1"
    assert ev.ended(c, record) == [] and ev.notice(Notice(NoticeKind.TRANSFER, c, {})) == []
    assert ev.progress == {}  # nothing kept for an ended call
    seqs = [e.seq for e in [*out, *ringing, *early, *answered, *failed, *done, *ended]]
    assert seqs == sorted(seqs) == list(range(1, 8))


def test_a_call_first_seen_at_its_end_is_started_then_ended() -> None:
    """A call the dialplan refused (488, 404) is only seen at its hang-up: still started before ended."""
    ev = CallEvents(factory())
    c = call(direction="inbound", refused="unknown_number")
    out = ev.ended(c, end(c, "not_found"))
    assert types(out) == ["call.started", "call.ended"] and out[1].data["refused"] == "unknown_number"


def test_a_notice_before_the_call_was_seen_announces_it_first() -> None:
    ev = CallEvents(factory())
    c = call(state=CallState.ANSWERED, reattached=True)
    out = ev.notice(Notice(NoticeKind.ANSWERED, c, {"reattached": True}))
    assert types(out) == ["call.started", "call.answered"]
    assert out[0].data["reattached"] is True and out[1].data["reattached"] is True


def test_agent_failed_comes_once_between_started_and_ended() -> None:
    ev = CallEvents(factory())
    c = call(direction="inbound", state=CallState.ANSWERED)
    ev.seen(c)
    failed = ev.agent_failed(c, "agent_unreachable", "connection refused")
    assert types(failed) == ["agent.failed"]
    assert failed[0].data["outcome"] == "agent_unreachable" and failed[0].data["detail"] == "connection refused"
    assert failed[0].data["agent"] == "sales" and failed[0].data["id"] == "call-1"
    assert ev.agent_failed(c, "agent_closed", "") == []
    c.media = {"outcome": "agent_unreachable"}
    c.hangup_by = "orchestrator"
    ended = ev.ended(c, end(c))
    assert ended[0].data["result"] == "agent_failed"
    assert ev.agent_failed(c, "agent_stalled", "") == []  # after the end: never


def test_an_agent_failure_reported_after_the_hangup_still_precedes_the_end() -> None:
    """With media worker processes, the summary (and its failure) can arrive after the hang-up, before the record."""
    ev = CallEvents(factory())
    c = call(state=CallState.ANSWERED)
    ev.seen(c)
    c.state = CallState.ENDED  # hung up; the record waits for the media summary
    assert types(ev.agent_failed(c, "agent_closed", "1011")) == ["agent.failed"]
    assert types(ev.ended(c, end(c))) == ["call.ended"]


def test_notices_of_a_call_that_ended_and_was_forgotten_make_nothing() -> None:
    ev = CallEvents(factory())
    c = call(state=CallState.ENDED)
    assert ev.seen(c) == []
    assert ev.notice(Notice(NoticeKind.ANSWERED, c)) == []
    assert ev.agent_failed(c, "agent_closed", "") == []


def test_a_readopted_call_after_its_end_starts_again() -> None:
    """A node lost and back: the tracker adopts a still-live channel as a new call (same id)."""
    ev = CallEvents(factory())
    old = call(state=CallState.ANSWERED)
    ev.seen(old)
    ev.ended(old, end(old, "node_lost"))
    again = call(state=CallState.ANSWERED, reattached=True)
    assert types(ev.seen(again)) == ["call.started"]


def test_map_notice_is_pure() -> None:
    c = call(state=CallState.RINGING, progress=[180])
    notice = Notice(NoticeKind.PROGRESS, c, {"status": 180})
    start = CallProgress()
    first = map_notice(notice, start)
    second = map_notice(notice, start)
    assert first == second and start == CallProgress()
    drafts, after = first
    assert [d.type for d in drafts] == [EventType.CALL_STARTED, EventType.CALL_RINGING]
    assert after == CallProgress(mapping.Stage.RINGING, (180,), False)
    assert map_notice(notice, after) == ([], after)
    assert map_notice(Notice(NoticeKind.PROGRESS, c, {"status": "180"}), start) == ([], start)  # not a status


@pytest.mark.parametrize("kind", list(NoticeKind))
def test_every_notice_kind(kind: NoticeKind) -> None:
    c = call(state=CallState.ANSWERED, transfer=TransferAttempt("bridge", "+15559998888", "succeeded"))
    drafts, _ = map_notice(Notice(kind, c, {"status": 180, "succeeded": True}), CallProgress(mapping.Stage.STARTED))
    expected = {
        NoticeKind.PROGRESS: ["call.ringing"],
        NoticeKind.ANSWERED: ["call.answered"],
        NoticeKind.TRANSFER: ["call.transferred"],
    }.get(kind, [])
    assert [str(d.type) for d in drafts] == expected


ORDER = ["call.started", "call.ringing", "call.answered", "call.transferred", "call.ended"]


@pytest.mark.parametrize("seed", range(40))
def test_per_call_order_holds_whatever_the_notices(seed: int) -> None:
    """Notices of several calls in any order, repeated, late: per call the order always holds, started first, ended
    last and once, agent.failed at most once in between, and sequence numbers increase."""
    rnd = random.Random(seed)
    ev = CallEvents(factory())
    calls = [call(f"call-{i}", state=CallState.ANSWERED) for i in range(3)]
    out: list[Event] = []
    for _ in range(60):
        c = rnd.choice(calls)
        step = rnd.randrange(7)
        if step == 0:
            out += ev.seen(c)
        elif step == 1:
            out += ev.notice(Notice(NoticeKind.PROGRESS, c, {"status": rnd.choice([180, 183])}))
        elif step == 2:
            out += ev.notice(Notice(NoticeKind.ANSWERED, c))
        elif step == 3:
            c.transfer = TransferAttempt("refer", "sip:x@example.com")
            out += ev.notice(Notice(NoticeKind.TRANSFER, c, {"succeeded": rnd.random() < 0.5}))
        elif step == 4:
            out += ev.agent_failed(c, "agent_stalled", "")
        elif step == 5 and rnd.random() < 0.2:
            out += ev.ended(c, {"id": c.uuid})
            c.state = CallState.ENDED
        else:
            out += ev.notice(Notice(rnd.choice([NoticeKind.DTMF, NoticeKind.HANGUP]), c))
    assert [e.seq for e in out] == list(range(1, len(out) + 1))
    for c in calls:
        mine = [str(e.type) for e in out if e.call_id == c.uuid]
        if not mine:
            continue
        assert mine[0] == "call.started" and mine.count("call.started") == 1
        assert mine.count("call.ended") <= 1 and ("call.ended" not in mine or mine[-1] == "call.ended")
        assert mine.count("agent.failed") <= 1
        stages = [ORDER.index(t) for t in mine if t != "agent.failed"]
        assert stages == sorted(stages)


# -- gateway states → trunk events ----------------------------------------------------------------


def gateway_event(**headers: str) -> dict[str, str]:
    base = {"Event-Name": "CUSTOM", "Event-Subclass": "sofia::gateway_state", "Gateway": "carrier",
            "State": "NOREG", "Ping-Status": "UP"}  # fmt: skip
    return {**base, **headers}


def test_a_gateway_state_event_is_read_and_bounded() -> None:
    state = parse_gateway_state(
        gateway_event(State="FAIL_WAIT", **{"Ping-Status": "DOWN", "Register-Network-IP": "192.0.2.7",
                                            "Register-Network-Port": "5061", "Phrase": "Forbidden", "Status": "403"})
    )  # fmt: skip
    assert state is not None and not state.up
    assert (state.gateway, state.state, state.ping_status) == ("carrier", "FAIL_WAIT", "DOWN")
    assert (state.sip_status, state.phrase) == (403, "Forbidden")
    assert (state.register_network_ip, state.register_network_port) == ("192.0.2.7", 5061)
    minimal = parse_gateway_state(gateway_event())
    assert minimal is not None and minimal.up and minimal.sip_status is None and minimal.register_network_port is None
    odd = parse_gateway_state(gateway_event(State="WEIRD", Status="99999", Phrase="a\r\nb" + "x" * 500))
    assert odd is not None and odd.state == "" and odd.sip_status is None and odd.phrase == "ab" + "x" * 126
    assert parse_gateway_state(gateway_event(**{"Ping-Status": "MAYBE"})) is None
    assert parse_gateway_state(gateway_event(Gateway="bad name;x")) is None
    assert parse_gateway_state(gateway_event(**{"Event-Subclass": "sofia::register"})) is None


def test_trunks_go_down_and_up_once_per_change_per_node() -> None:
    states = TrunkStates(["carrier", "backup"])

    def update(node: str, **headers: str) -> Draft | None:
        state = parse_gateway_state(gateway_event(**headers))
        assert state is not None
        return states.update(node, state)

    first = update("fs1")
    assert first is not None and first.type == EventType.TRUNK_UP and first.call_id is None
    assert first.data["previous"] is None and first.data["trunk"] == "carrier" and first.data["node"] == "fs1"
    assert update("fs1") is None  # ping monitoring: the same state again
    down = update("fs1", **{"Ping-Status": "DOWN", "Status": "503", "Phrase": "Service Unavailable"})
    assert down is not None and down.type == EventType.TRUNK_DOWN
    assert down.data | {} == {
        "trunk": "carrier", "node": "fs1", "state": "NOREG", "ping_status": "DOWN", "sip_status": 503,
        "phrase": "Service Unavailable", "register_network_ip": None, "register_network_port": None,
        "previous": "up",
    }  # fmt: skip
    other_node = update("fs2", **{"Ping-Status": "DOWN"})
    assert other_node is not None and other_node.data["node"] == "fs2" and other_node.data["previous"] is None
    assert update("fs1", State="TRYING", **{"Ping-Status": "DOWN"}) is None  # a registration step, still down
    assert update("fs1", Gateway="not-ours") is None
    up = update("fs1", State="REGED")
    assert up is not None and up.type == EventType.TRUNK_UP and up.data["previous"] == "down"
    assert states.snapshot() == [
        {"trunk": "carrier", "node": "fs1", "up": True, "state": "REGED", "ping_status": "UP"},
        {"trunk": "carrier", "node": "fs2", "up": False, "state": "NOREG", "ping_status": "DOWN"},
    ]


# -- SSE format and parameters --------------------------------------------------------------------


def test_sse_lines() -> None:
    event = factory().make(Draft(EventType.CALL_ENDED, "call-1", {"result": "busy"}))
    text = sse.format_event(event).decode()
    assert text == f"id: 1:{UUID.format(0)}\nevent: call.ended\ndata: {event.json}\n\n"
    assert "\n" not in event.json
    assert sse.format_notice("overflow", {"reason": "x"}) == b'event: overflow\ndata: {"reason":"x"}\n\n'
    assert sse.opening().startswith(b"retry: 3000\n")
    assert sse.KEEPALIVE.startswith(b":")


def test_sse_parameters() -> None:
    assert sse.parse_types(None) is None
    assert sse.parse_types("call.ended, trunk.down") == {"call.ended", "trunk.down"}
    for bad, code in [("call.ended,nope", "unknown_event_type"), ("", "invalid_types"), ("a,,b", "invalid_types"),
                      (",".join(["call.ended"] * 17), "invalid_types")]:  # fmt: skip
        with pytest.raises(sse.InvalidParameter) as err:
            sse.parse_types(bad)
        assert err.value.code == code and err.value.status == 422
    assert "'nope'" in str(err_of("call.ended,nope")) and "trunk.up" in str(err_of("nope"))
    assert sse.parse_last_event_id(None) is None and sse.parse_last_event_id(" ") is None
    assert sse.parse_last_event_id(f"12:{UUID.format(3)}") == (12, UUID.format(3))
    for bad in ["12", "0:" + UUID.format(1), "x:y", f"12:{UUID.format(3)}x", "1" * 20 + ":" + UUID.format(1)]:
        with pytest.raises(sse.InvalidParameter) as err:
            sse.parse_last_event_id(bad)
        assert err.value.status == 400 and err.value.code == "invalid_last_event_id"


def err_of(value: str) -> sse.InvalidParameter:
    try:
        sse.parse_types(value)
    except sse.InvalidParameter as exc:
        return exc
    raise AssertionError("accepted")


# -- the broker -----------------------------------------------------------------------------------


def events(n: int, call_id: str = "call-1", kind: EventType = EventType.CALL_RINGING, f: EventFactory | None = None):
    f = f or factory()
    return [f.make(Draft(kind, call_id, {"n": i})) for i in range(n)]


async def test_fan_out_with_filters() -> None:
    broker = Broker()
    every = broker.subscribe()
    ended = broker.subscribe(types={"call.ended", "trunk.down"})
    one = broker.subscribe(call_id="call-2")
    f = factory()
    published = [
        f.make(Draft(EventType.CALL_STARTED, "call-1", {})),
        f.make(Draft(EventType.CALL_STARTED, "call-2", {})),
        f.make(Draft(EventType.CALL_ENDED, "call-2", {})),
        f.make(Draft(EventType.TRUNK_DOWN, None, {})),
    ]
    for e in published:
        broker.publish(e)
    assert every.drain(10) == published
    assert [e.seq for e in ended.drain(10)] == [3, 4]
    assert [e.seq for e in one.drain(10)] == [2, 3]
    assert broker.published == 4


async def test_a_subscriber_that_falls_behind_is_cut_off_and_nobody_waits() -> None:
    broker = Broker(queue_limit=5, history=5)
    slow = broker.subscribe()
    fast = broker.subscribe()
    received: list[Event] = []

    async def read() -> None:
        while (e := await fast.next()) is not None:
            received.append(e)

    reader = asyncio.create_task(read())
    for e in events(50):
        broker.publish(e)  # synchronous: never waits for anybody
        await asyncio.sleep(0)
    assert slow.overflowed and slow not in broker.subscriptions and broker.overflows == 1
    assert [e.data["n"] for e in slow.drain(100)] == [0, 1, 2, 3, 4]  # what was queued, then the end
    assert await slow.next() is None
    fast.close()
    await reader
    assert [e.data["n"] for e in received] == list(range(50))
    assert not fast.overflowed and broker.subscriptions == set()


async def test_publish_cost_does_not_depend_on_readers() -> None:
    broker = Broker(queue_limit=1000, history=100)
    subs = [broker.subscribe() for _ in range(100)]
    for e in events(2000):
        broker.publish(e)  # nobody reads: every queue fills up to its limit and is cut off, none grows past it
    assert all(s.overflowed and len(s.queue) == 1000 for s in subs)
    assert broker.subscriptions == set() and len(broker.history) == 100


async def test_resume_after_an_event_from_the_ring_buffer() -> None:
    broker = Broker(queue_limit=10, history=4)
    published = events(6)
    for e in published:
        broker.publish(e)
    # the ring holds 3..6 (seq); resuming after 4 gives 5 and 6, then what comes
    sub = broker.subscribe(after=(published[3].seq, published[3].id))
    assert sub.resumed is True and [e.seq for e in sub.drain(10)] == [5, 6]
    latest = broker.subscribe(after=(published[5].seq, published[5].id))
    assert latest.resumed is True and latest.drain(10) == []
    for after in [(published[0].seq, published[0].id), (5, UUID.format(9)), (99, UUID.format(1))]:
        # too old, another process's event with the same number, a number this process never reached
        gap = broker.subscribe(after=after)
        assert gap.resumed is False and [e.seq for e in gap.drain(10)] == [3, 4, 5, 6]
    filtered = broker.subscribe(types={"call.ended"}, after=(published[2].seq, published[2].id))
    assert filtered.resumed is True and filtered.drain(10) == []
    assert broker.subscribe().resumed is None


async def test_a_waiting_reader_wakes_on_publish_and_on_close() -> None:
    broker = Broker()
    sub = broker.subscribe()
    waiting = asyncio.create_task(sub.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    [e] = events(1)
    broker.publish(e)
    assert await asyncio.wait_for(waiting, 1) == e
    waiting = asyncio.create_task(sub.next())
    await asyncio.sleep(0.01)
    broker.close()
    assert await asyncio.wait_for(waiting, 1) is None
    late = broker.subscribe()
    assert late.closed and await late.next() is None and broker.subscriptions == set()
    broker.publish(e)  # after close: still never fails
    sub.close()  # idempotent


def test_broker_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        Broker(queue_limit=10, history=11)
    with pytest.raises(ValueError):
        Broker(queue_limit=0)
