"""Who may hold a connection on the media port, and for how long (sans-I/O; times come from the caller's clock).

The fork port is open to anyone who can reach it, and a connection costs a file descriptor until it
is closed. :class:`Gate` keeps that bounded without costing the audio path anything:

* a connection must finish its WebSocket handshake (and its token be confirmed by the controller)
  within ``handshake_timeout``, and send its metadata within ``metadata_timeout`` of the upgrade;
* at most ``max_connections`` connections, and never more descriptors than ``descriptors`` (every
  connection one until it is really closed, every accepted fork one more for its agent). When the
  port is full the bridge stops accepting — new connections wait in the kernel's backlog — and
  closes the oldest connections still in their handshake to make room (:meth:`Gate.make_room`);
  accepted forks and forks whose token is being confirmed are never chosen;
* at most ``max_pending`` in the handshake: each sweep closes the oldest beyond it.

A connection is only ever closed to make room once the loop has had a chance to read what it sent
(two sweeps after it arrived, with a read of every ready socket between them): a burst of hostile
connections cannot push out a real fork that arrived among them before its request is read; once
read, a valid request with a good token is being confirmed and is safe.

The bridge sweeps from its 20 ms pacing tick, which costs one comparison when nothing is due; forks
with their metadata leave the timers. :func:`derive_limits` turns the call limit and the process's
descriptor limit into the caps.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)

#: descriptors kept for everything else in the process (ESL, API, records, signed-URL requests, pipes)
RESERVE = 32
#: fork connections beyond the call limit: a re-fork overlaps its old connection for a moment
REFORK_SLACK = 8


@dataclass(frozen=True)
class Limits:
    """The caps for one bridge process."""

    max_connections: int
    max_pending: int
    calls: int  # calls whose forks this process should carry
    descriptors: int | None  # descriptors the port may use (connections, plus an agent socket per fork)
    warning: str = ""  # set when the descriptor limit cannot hold what the call limit asks


def derive_limits(
    *,
    max_calls: int,
    nodes: int = 1,
    workers: int = 1,
    max_connections: int | None = None,
    max_pending: int | None = None,
    nofile: int | None = None,
    in_use: int = 0,
) -> Limits:
    """The caps from the call limit (``freeswitch.max_calls`` per node), shared by ``workers`` processes.

    With several workers the kernel spreads connections by hash, not evenly: each takes up to twice
    its share. ``nofile`` is the soft ``RLIMIT_NOFILE`` (None: unlimited): what it leaves after the
    descriptors ``in_use`` and a reserve bounds the port too, whatever the settings say, and
    ``warning`` says when it cannot hold the call limit (every call: its fork and its agent socket).
    """
    calls = max_calls * max(1, nodes)
    if workers > 1:
        calls = min(calls, -(-2 * calls // workers))
    forks = calls + REFORK_SLACK
    pending = max_pending or min(1024, max(32, forks // 4))
    total = max_connections or forks + pending
    pending = min(pending, total)
    budget = None
    warning = ""
    if nofile is not None:
        budget = max(4, nofile - in_use - RESERVE)
        if 2 * calls + min(pending, 32) > budget:
            warning = (
                f"the descriptor limit (RLIMIT_NOFILE {nofile}, {in_use} in use) leaves room for the forks of "
                f"about {max(0, (budget - 32) // 2)} calls in this process where the call limit asks for {calls}: "
                "raise it (ulimit -n, systemd LimitNOFILE=) or lower freeswitch.max_calls"
            )
    return Limits(total, pending, calls, budget, warning)


def descriptors_in_use() -> int:
    """Open descriptors of this process (Linux, macOS; a guess elsewhere)."""
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path))
        except OSError:
            continue
    return 64


class Gate(Generic[C]):
    """Connections on the media port by stage: handshake, token being confirmed, upgraded, attached."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_pending: int,
        handshake_timeout: float,
        metadata_timeout: float,
        descriptors: int | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.descriptors = descriptors
        self.handshake_timeout = handshake_timeout
        self.metadata_timeout = metadata_timeout
        self._handshaking: dict[C, tuple[float, int]] = {}  # arrival order; (deadline, sweep count at arrival)
        self._claiming: dict[C, float] = {}  # token sent to the controller; value: deadline
        self._upgraded: dict[C, float] = {}  # upgrade order; value: metadata deadline
        self._attached: set[C] = set()
        self._closing: set[C] = set()  # being closed by the gate's decision: its descriptor is not free yet
        self._sweeps = 0
        self.peak = 0
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0

    # -- counts ---------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Connections not accepted yet."""
        return len(self._handshaking) + len(self._claiming)

    @property
    def total(self) -> int:
        """Every connection the gate knows (those it is closing too)."""
        return self.pending + len(self._upgraded) + len(self._attached) + len(self._closing)

    @property
    def waiting(self) -> bool:
        """True when a sweep has something to look at (a timer to check or a cap to enforce)."""
        return bool(self._handshaking or self._upgraded)

    def counts(self) -> dict[str, int]:
        """Connections by stage."""
        return {
            "handshake": len(self._handshaking),
            "claiming": len(self._claiming),
            "upgraded": len(self._upgraded),
            "attached": len(self._attached),
            "closing": len(self._closing),
        }

    def _full(self) -> bool:
        total = self.total
        if total >= self.max_connections:
            return True
        forks = len(self._upgraded) + len(self._attached)
        return self.descriptors is not None and total + forks >= self.descriptors

    def _evictable(self) -> C | None:
        """The oldest connection in its handshake, once the loop has read what it sent (else None)."""
        for conn, (_, swept) in self._handshaking.items():
            return conn if self._sweeps - swept >= 2 else None
        return None

    def room(self) -> bool:
        """Whether a new connection can be taken now."""
        return not self._full()

    def make_room(self, most: int) -> list[C]:
        """The port is full: up to ``most`` connections to close (they count until :meth:`left`)."""
        victims: list[C] = []
        while len(victims) < most:
            victim = self._evictable()
            if victim is None:
                break
            self._close(victim)
            self.evicted += 1
            victims.append(victim)
        return victims

    # -- stages ---------------------------------------------------------------------------------
    def arrive(self, conn: C, now: float) -> bool:
        """A new connection (taken when :meth:`room` said so); False when the port is full after all."""
        if self._full():
            self.refused += 1
            return False
        self._handshaking[conn] = (now + self.handshake_timeout, self._sweeps)
        self.peak = max(self.peak, self.total)
        return True

    def claiming(self, conn: C) -> float | None:
        """Its request and token are good: the controller is asked (it can no longer be evicted).

        Returns the handshake deadline, which the controller's answer must meet; None if unknown.
        """
        entry = self._handshaking.pop(conn, None)
        if entry is None:
            return None
        self._claiming[conn] = entry[0]
        return entry[0]

    def upgraded(self, conn: C, now: float) -> None:
        """Accepted (101 sent): its metadata is due within the metadata timeout."""
        self._handshaking.pop(conn, None)
        self._claiming.pop(conn, None)
        self._upgraded[conn] = now + self.metadata_timeout

    def attached(self, conn: C) -> None:
        """Its metadata opened (or joined) a session: no more timers."""
        self._upgraded.pop(conn, None)
        self._attached.add(conn)

    def left(self, conn: C) -> None:
        """The connection is closed (its descriptor is free)."""
        self._handshaking.pop(conn, None)
        self._claiming.pop(conn, None)
        self._upgraded.pop(conn, None)
        self._attached.discard(conn)
        self._closing.discard(conn)

    def _close(self, conn: C) -> None:
        self._handshaking.pop(conn, None)
        self._claiming.pop(conn, None)
        self._upgraded.pop(conn, None)
        self._attached.discard(conn)
        self._closing.add(conn)

    def sweep(self, now: float) -> list[tuple[C, str]]:
        """Connections to close now, with why: ``handshake_timeout``, ``metadata_timeout`` or ``evicted``.

        Call it periodically (the bridge: every 20 ms tick while :attr:`waiting`), and never twice without
        the loop reading its sockets in between: the count of sweeps is what protects a new connection.
        """
        self._sweeps += 1
        out: list[tuple[C, str]] = []
        due = []
        for conn, (deadline, _) in self._handshaking.items():  # ordered by deadline
            if deadline > now:
                break
            due.append(conn)
        for conn in due:
            self._close(conn)
            out.append((conn, "handshake_timeout"))
        late = []
        for conn, deadline in self._upgraded.items():
            if deadline > now:
                break
            late.append(conn)
        for conn in late:
            self._close(conn)
            out.append((conn, "metadata_timeout"))
        self.timed_out += len(due) + len(late)
        excess = self.pending - self.max_pending
        if excess > 0:
            out += [(victim, "evicted") for victim in self.make_room(excess)]
        return out
