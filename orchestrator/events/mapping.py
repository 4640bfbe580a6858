"""The controller's notices → call events, sans-I/O, in a guaranteed order per call.

Per call the stream says ``call.started`` first, then ``call.ringing`` (once per provisional status, 180 and/or
183, outbound calls only), ``call.answered``, ``call.transferred`` (each transfer outcome, succeeded or not) and
``call.ended`` last, with the full call record (:func:`orchestrator.calls.records.build`). ``agent.failed`` comes
at most once, between ``call.started`` and ``call.ended``, when the media bridge reports an agent failure. An event
that would break the order is dropped (a 183 after the answer, anything after the end); one that comes before
the call was announced is preceded by ``call.started`` (a call the dialplan refused, seen only at its hang-up).

:func:`map_notice` and its siblings are pure: (notice, the call's :class:`CallProgress`) in, drafts and the new
progress out. :class:`CallEvents` keeps the progress of every call and stamps the drafts.
"""

from __future__ import annotations

import enum
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.calls.tracker import Call, Notice, NoticeKind
from orchestrator.events.model import Draft, Event, EventFactory, EventType


class Stage(enum.IntEnum):
    """How far a call's events have gone."""

    NONE = 0
    STARTED = 1
    RINGING = 2
    ANSWERED = 3
    TRANSFERRED = 4
    ENDED = 5


@dataclass(frozen=True)
class CallProgress:
    """What has been said of one call: its stage, the provisional statuses reported, whether its agent failed."""

    stage: Stage = Stage.NONE
    ringing: tuple[int, ...] = ()
    agent_failed: bool = False


Step = tuple[list[Draft], CallProgress]


def call_data(call: Call, **extra: Any) -> dict[str, Any]:
    """A call event's data: the call as ``GET /v1/calls/{id}`` shows it, plus what the event adds."""
    return {**call.summary(), **extra}


def _announce(call: Call, progress: CallProgress) -> Step:
    """``call.started`` if the call was not announced yet."""
    if progress.stage != Stage.NONE:
        return [], progress
    draft = Draft(EventType.CALL_STARTED, call.uuid, call_data(call, reattached=call.reattached))
    return [draft], replace(progress, stage=Stage.STARTED)


def _then(call: Call, progress: CallProgress, draft: Draft, stage: Stage, **changes: Any) -> Step:
    drafts, progress = _announce(call, progress)
    return [*drafts, draft], replace(progress, stage=max(progress.stage, stage), **changes)


def started(call: Call, progress: CallProgress) -> Step:
    """The call is known (claimed from the park, originated, re-attached): ``call.started`` once."""
    if progress.stage >= Stage.ENDED:
        return [], progress
    return _announce(call, progress)


def map_notice(notice: Notice, progress: CallProgress) -> Step:
    """The events one notice makes, given what was said of its call so far.

    ``progress`` → ``call.ringing`` (a new provisional status, before the answer); ``answered`` →
    ``call.answered`` (once; ``reattached`` when the call was adopted after a restart); ``transfer`` →
    ``call.transferred`` (``succeeded`` and ``call_continues``; the attempt itself is the data's ``transfer``).
    Every other notice makes none: ``ended`` waits for the record (:func:`ended`), DTMF and fork notices are not
    events.
    """
    call = notice.call
    if progress.stage >= Stage.ENDED:
        return [], progress
    kind = notice.kind
    if kind == NoticeKind.PROGRESS:
        status = notice.data.get("status")
        if not isinstance(status, int) or progress.stage > Stage.RINGING or status in progress.ringing:
            return [], progress
        draft = Draft(EventType.CALL_RINGING, call.uuid, call_data(call, status=status))
        return _then(call, progress, draft, Stage.RINGING, ringing=(*progress.ringing, status))
    if kind == NoticeKind.ANSWERED:
        if progress.stage >= Stage.ANSWERED:
            return [], progress
        reattached = bool(notice.data.get("reattached"))
        draft = Draft(EventType.CALL_ANSWERED, call.uuid, call_data(call, reattached=reattached))
        return _then(call, progress, draft, Stage.ANSWERED)
    if kind == NoticeKind.TRANSFER:
        succeeded = bool(notice.data.get("succeeded"))
        continues = bool(notice.data.get("call_continues", not succeeded))
        data = call_data(call, succeeded=succeeded, call_continues=continues)
        draft = Draft(EventType.CALL_TRANSFERRED, call.uuid, data)
        return _then(call, progress, draft, Stage.TRANSFERRED)
    return [], progress


def agent_failed(call: Call, outcome: str, detail: str, progress: CallProgress) -> Step:
    """The media bridge reported an agent failure (``outcome``, one of ``records.AGENT_FAILURES``): once per call."""
    if progress.stage >= Stage.ENDED or progress.agent_failed:
        return [], progress
    draft = Draft(EventType.AGENT_FAILED, call.uuid, call_data(call, outcome=outcome, detail=detail))
    return _then(call, progress, draft, Stage.STARTED, agent_failed=True)


def ended(call: Call, record: dict[str, Any], progress: CallProgress) -> Step:
    """The call's record is written: ``call.ended`` with it, the last event of the call."""
    if progress.stage >= Stage.ENDED:
        return [], progress
    return _then(call, progress, Draft(EventType.CALL_ENDED, call.uuid, record), Stage.ENDED)


class CallEvents:
    """The progress of every call, and the stamped events of each step (sans-I/O: the caller publishes them).

    A call's progress is dropped when it ends; nothing more is said of that call (the same :class:`Call`: a
    channel adopted again later is a new one), nor of a call no longer active that was never followed. At most
    ``limit`` calls are followed (the oldest are forgotten first).
    """

    def __init__(self, factory: EventFactory | None = None, limit: int = 100_000) -> None:
        self.factory = factory or EventFactory()
        self.limit = limit
        self.progress: OrderedDict[str, CallProgress] = OrderedDict()
        self._ended: weakref.WeakSet[Call] = weakref.WeakSet()

    def _apply(self, call: Call, step: Step) -> list[Event]:
        drafts, progress = step
        uuid = call.uuid
        if progress.stage >= Stage.ENDED:
            self.progress.pop(uuid, None)
            self._ended.add(call)
        elif drafts:
            self.progress[uuid] = progress
            while len(self.progress) > self.limit:
                self.progress.popitem(last=False)
        return [self.factory.make(d) for d in drafts]

    def _current(self, call: Call) -> CallProgress | None:
        progress = self.progress.get(call.uuid)
        if call in self._ended or (progress is None and not call.active):
            return None  # ended and forgotten (or never followed): nothing more to say
        return progress or CallProgress()

    def seen(self, call: Call) -> list[Event]:
        """A live call the controller handles: ``call.started`` the first time."""
        if call.uuid in self.progress or not call.active or call in self._ended:
            return []
        return self._apply(call, started(call, CallProgress()))

    def notice(self, notice: Notice) -> list[Event]:
        """The events of one notice."""
        progress = self._current(notice.call)
        return [] if progress is None else self._apply(notice.call, map_notice(notice, progress))

    def agent_failed(self, call: Call, outcome: str, detail: str) -> list[Event]:
        """``agent.failed`` (once per call, before its end)."""
        progress = self._current(call)
        return [] if progress is None else self._apply(call, agent_failed(call, outcome, detail, progress))

    def ended(self, call: Call, record: dict[str, Any]) -> list[Event]:
        """``call.ended`` with the record (preceded by ``call.started`` for a call never announced)."""
        if call in self._ended:
            return []
        progress = self.progress.get(call.uuid, CallProgress())
        return self._apply(call, ended(call, record, progress))
