"""Dead media, sans-I/O: a call whose far end sends no RTP for the trunk's ``media_timeout_seconds`` — not counting
the time it holds the call.

FreeSWITCH 1.10.12 cannot make that distinction itself: the hold re-INVITE switches its RTP timer to
``media_hold_timeout``, and the same re-INVITE's ``switch_core_media_activate_rtp`` puts ``media_timeout`` back
(measured: tests/integration/test_limits_live.py). So while live quality sampling runs, the orchestrator decides:
each sample's ``in_packet_count`` (every RTP packet received, comfort noise included) is fed to the call's
:class:`Watch` with whether the call is held (CHANNEL_HOLD … CHANNEL_UNHOLD); once the count has not grown for
``timeout`` seconds outside a hold, the call is dead and the controller hangs it up with MEDIA_TIMEOUT (recorded
``media_timeout``). FreeSWITCH keeps a backstop of 10 × the timeout (``render.plan.BACKSTOP_FACTOR``: its own default
ratio of hold to media timeout) for when the orchestrator is not there; without sampling it keeps the timeout itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Watch:
    """One call's RTP packet count over time; :meth:`observe` says when it is dead."""

    timeout: float
    count: float | None = None
    #: the last sample at which the count grew, the call was held, or the watch began (epoch seconds)
    since: float | None = None
    dead: bool = False

    def observe(self, now: float, count: float | None, held: bool) -> bool:
        """A sample at ``now``: ``count`` packets received so far (None: not known), ``held``: the far end holds the
        call. True once, when the call is dead."""
        if self.dead or count is None:
            return False
        if self.since is None or held or self.count is None or count != self.count:
            # growth (or a counter reset: a new RTP session after a re-INVITE), a hold, or the first sample
            self.count, self.since = count, now
            return False
        if now - self.since >= self.timeout:
            self.dead = True
            return True
        return False
