"""The media port's admission gate (sans-I/O, a fake clock) and how its caps come from the call limit."""

from __future__ import annotations

import pytest

from orchestrator.logs import LogThrottle
from orchestrator.media.admission import Gate, derive_limits


def gate(**kw: object) -> Gate[str]:
    args: dict[str, object] = {
        "max_connections": 10,
        "max_pending": 4,
        "handshake_timeout": 5.0,
        "metadata_timeout": 5.0,
        **kw,
    }
    return Gate(**args)  # type: ignore[arg-type]


def test_timeouts_close_in_order_and_only_when_due() -> None:
    g = gate()
    assert g.arrive("a", 0.0) and g.arrive("b", 1.0) and g.arrive("c", 2.0)
    assert g.claiming("c") == 7.0  # its deadline: the controller's answer must meet it
    assert g.sweep(4.9) == []
    assert g.sweep(6.0) == [("a", "handshake_timeout"), ("b", "handshake_timeout")]
    assert g.total == 3  # closing until the connections are really gone
    g.left("a")
    g.left("b")
    g.upgraded("c", 6.5)
    assert g.sweep(11.0) == []
    assert g.sweep(11.5) == [("c", "metadata_timeout")]
    g.left("c")
    assert g.total == 0 and not g.waiting


def test_attached_forks_have_no_timers_and_are_never_chosen() -> None:
    g = gate(max_connections=3, max_pending=3)
    for name in ("f1", "f2"):
        g.arrive(name, 0.0)
        g.claiming(name)
        g.upgraded(name, 0.0)
        g.attached(name)
    g.arrive("x", 0.0)
    for _ in range(5):
        g.sweep(1.0)
    assert not g.room()
    assert g.make_room(10) == ["x"]  # the only one in its handshake
    assert g.make_room(10) == []  # nothing else may be closed
    assert g.sweep(1000.0) == []  # accepted forks never time out here
    assert g.counts() == {"handshake": 0, "claiming": 0, "upgraded": 0, "attached": 2, "closing": 1}


def test_connections_whose_token_is_being_confirmed_are_not_chosen() -> None:
    g = gate(max_connections=2)
    g.arrive("real", 0.0)
    g.arrive("junk", 0.0)
    g.claiming("real")
    g.sweep(0.1)
    g.sweep(0.2)
    assert g.make_room(5) == ["junk"]


def test_new_connections_are_safe_until_the_loop_has_read_them() -> None:
    g = gate(max_connections=2, max_pending=10)
    g.arrive("old", 0.0)
    g.sweep(0.02)
    g.arrive("new", 0.03)
    assert g.make_room(5) == []  # "old" has seen one sweep: what it sent may not have been read yet
    g.sweep(0.04)
    assert g.make_room(5) == ["old"]  # two sweeps: it has; "new" has seen only one
    g.left("old")
    g.arrive("newer", 0.05)
    assert g.make_room(5) == []
    g.sweep(0.06)
    assert g.make_room(5) == ["new"]


def test_the_sweep_spares_the_young_too() -> None:
    g = gate(max_connections=10, max_pending=1)
    g.arrive("a", 0.0)
    g.arrive("b", 0.0)
    assert g.sweep(0.02) == []  # over max_pending, but both too young
    assert g.sweep(0.04) == [("a", "evicted")]  # the oldest once read


def test_the_handshake_cap_closes_the_oldest_beyond_it() -> None:
    g = gate(max_connections=100, max_pending=3)
    for i in range(6):
        g.arrive(f"c{i}", i * 0.01)
    g.sweep(0.1)
    assert [c for c, why in g.sweep(0.1) if why == "evicted"] == ["c0", "c1", "c2"]
    assert g.evicted == 3


def test_descriptors_count_an_agent_socket_per_accepted_fork() -> None:
    g = gate(max_connections=100, max_pending=100, descriptors=6)
    for name in ("f1", "f2"):
        g.arrive(name, 0.0)
        g.upgraded(name, 0.0)
    g.arrive("x", 0.0)
    assert g.room()  # 3 connections + 2 agent sockets = 5 < 6
    g.arrive("y", 0.0)
    assert not g.room()  # 6
    assert not g.arrive("z", 0.0) and g.refused == 1


def test_peak_and_counts() -> None:
    g = gate()
    for i in range(4):
        g.arrive(i, 0.0)  # type: ignore[arg-type]
    g.left(0)  # type: ignore[arg-type]
    assert g.peak == 4 and g.total == 3 and g.counts()["handshake"] == 3


# -- the caps --------------------------------------------------------------------------------------
def test_caps_come_from_the_call_limit() -> None:
    one = derive_limits(max_calls=1000)
    assert (one.calls, one.max_pending, one.max_connections, one.descriptors) == (1000, 252, 1260, None)
    assert derive_limits(max_calls=10).max_pending == 32  # never below 32
    assert derive_limits(max_calls=100_000).max_pending == 1024  # nor above 1024
    assert derive_limits(max_calls=500, nodes=2).calls == 1000  # per FreeSWITCH node
    four = derive_limits(max_calls=1000, workers=4)
    assert four.calls == 500  # twice an even share: SO_REUSEPORT hashes, it does not balance
    assert derive_limits(max_calls=1000, workers=2).calls == 1000
    assert derive_limits(max_calls=1000, workers=64).calls == 32


def test_settings_override_the_derived_caps() -> None:
    lim = derive_limits(max_calls=1000, max_connections=50, max_pending=10)
    assert (lim.max_connections, lim.max_pending) == (50, 10)
    assert derive_limits(max_calls=1000, max_connections=20).max_pending == 20  # never above the total


@pytest.mark.parametrize(
    ("nofile", "in_use", "warned"),
    [(256, 20, True), (1024, 30, True), (4096, 30, False), (1 << 20, 30, False)],
)
def test_the_descriptor_limit_bounds_the_port(nofile: int, in_use: int, warned: bool) -> None:
    lim = derive_limits(max_calls=1000, nofile=nofile, in_use=in_use)
    assert lim.descriptors == nofile - in_use - 32
    assert bool(lim.warning) is warned
    if warned:
        assert "RLIMIT_NOFILE" in lim.warning and "max_calls" in lim.warning


def test_log_throttle_allows_a_few_and_counts_the_rest() -> None:
    t = LogThrottle(burst=2, window=10.0)
    assert [t.allow("k", 0.0), t.allow("k", 1.0), t.allow("k", 2.0), t.allow("k", 3.0)] == [0, 0, None, None]
    assert t.allow("other", 3.0) == 0  # per kind
    assert t.allow("k", 10.5) == 2  # a new window: the line says two were held back
    assert t.allow("k", 10.6) == 0
