"""The call controller: drives calls on every FreeSWITCH node over ESL.

It connects one :class:`~orchestrator.esl.client.EslClient` per node, feeds their events to the
sans-I/O :class:`~orchestrator.calls.tracker.CallTracker`, runs the commands the tracker asks for
(in order, per call), and offers the actions the API and the media bridge need: originate, hang
up, transfer, send DTMF. What may be dialed or transferred to is decided in :mod:`orchestrator.calls.dialing`
(sans-I/O); the nodes come from :mod:`orchestrator.calls.nodes`. Notices (answered, DTMF, transfer result,
ended …) go to listeners, the call records and the metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import dtmf, store
from orchestrator.calls import attended as att
from orchestrator.calls import dialing, records
from orchestrator.calls import machine as amd
from orchestrator.calls import recording as rec
from orchestrator.calls.limits import OutboundLimiter
from orchestrator.calls.nodes import node_endpoints
from orchestrator.calls.outcome import HANGUP_REASONS
from orchestrator.calls.quality import RTCP_EVENT
from orchestrator.calls.recording_files import RecordingFiles
from orchestrator.calls.sampler import QualitySampler
from orchestrator.calls.tracker import (
    CUSTOM,
    EVENTS,
    Api,
    Call,
    CallState,
    CallTracker,
    ForkState,
    Notice,
    NoticeKind,
    Policy,
    fork_rate,
)
from orchestrator.config import routing
from orchestrator.config.model import Deployment, MachineDetection, Orchestrator
from orchestrator.esl import commands
from orchestrator.esl.client import EslClient, EslError
from orchestrator.esl.protocol import CommandError, EslProtocolError, Event, parse_json_event
from orchestrator.events import GATEWAY_STATE, Broker, CallEvents, EventFactory, TrunkStates, parse_gateway_state
from orchestrator.events import Event as CallEvent
from orchestrator.media import dialects, fork
from orchestrator.metrics import Metrics

log = logging.getLogger("sipagent.calls")

Listener = Callable[[Notice], None]


class CallError(Exception):
    """A call action that cannot be done; ``code`` is stable for API clients."""

    def __init__(self, code: str, message: str, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        #: seconds after which the request may succeed (the API's Retry-After header)
        self.retry_after = retry_after


@dataclass
class NodeState:
    """A node, its client, and whether its calls have been reconciled since the last connection."""

    name: str
    client: EslClient
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    lost_timer: asyncio.TimerHandle | None = None


#: the call's own facts among its variables: the last to give way when the fork metadata is too large
_CALL_FACTS = frozenset({"caller_id", "called_number", "call_id", "trunk", "sip_call_id", "caller_name"})


def _refused(exc: dialing.Invalid) -> CallError:
    """A request :mod:`~orchestrator.calls.dialing` refused, as the API reports it."""
    return CallError(exc.code, exc.message, exc.status)


def _policy(deployment: Deployment, fork_command: Callable[[Call], str]) -> Policy:
    """What the tracker needs to know of the deployment: agents, numbers, the fork, the headers passed on."""
    return Policy(
        agents={a.name: a.protocol for a in deployment.agents},
        routing=routing.table(deployment),
        fork_command=fork_command,
        fork_module=deployment.orchestrator.media.fork_module,
        headers={
            t.name: [(h.header, h.variable_name) for h in t.inbound.header_mappings()]
            for t in deployment.trunks
            if t.inbound
        },
        recording_policy=lambda call: rec.policy_for(
            deployment, direction=call.direction, trunk=call.trunk, agent=call.agent, number=call.number
        ),
        recording=deployment.orchestrator.recording,
    )


def record_writer(o: Orchestrator, base_dir: Path) -> records.RecordWriter | store.StoreWriter | None:
    """Where ended calls' records go: a JSONL file, or the call store (SQLite or PostgreSQL: docs/operations.md)."""
    if not o.records:
        return None
    target = store.target(o.records, base_dir)
    if target.kind == "jsonl":
        return records.RecordWriter(Path(target.location))
    return store.writer(target, retention_days=o.records_retention_days)


def _fork_metadata(call: Call) -> dict[str, Any]:
    """What the media bridge and the agent learn of the call when its fork connects."""
    inbound = call.direction == "inbound"
    metadata = {
        "call_id": call.uuid,
        "direction": call.direction,
        "agent": call.agent,
        "trunk": call.trunk,
        "caller_id": call.remote if inbound else call.number,
        "called_number": call.number if inbound else call.remote,
        "codec": call.codec,
        "rate": call.rate,
        "variables": call.variables,
    }
    if call.agent_overrides:
        metadata["agent_overrides"] = call.agent_overrides
    if inbound and call.rule is not None:
        metadata["route_rule"] = call.rule
    m = call.machine
    if m is not None and m.settings.mode != "off" and not m.verdict and not call.reattached:
        metadata["machine_detection"] = m.settings.model_dump()  # the bridge measures the callee's speech
    return metadata


class Controller:
    """Calls on all nodes of one deployment."""

    def __init__(
        self,
        deployment: Deployment,
        base_dir: Path,
        *,
        metrics: Metrics | None = None,
        tokens: fork.Tokens | None = None,
        write_records: bool = True,
        backoff: Any = None,
        ended_cache: int = 1000,
        events: Broker | None = None,
    ) -> None:
        self.deployment = deployment
        self.metrics = metrics or Metrics()
        o = deployment.orchestrator
        secret = o.media_secret.get_secret_value().encode() if o.media_secret else None
        self.tokens = tokens or fork.Tokens(secret)
        self.tracker = CallTracker(_policy(deployment, self._fork_command))
        #: the trunks' outbound.limits (429 + Retry-After over a limit; calls/limits.py)
        self.limiter = OutboundLimiter(
            {t.name: t.outbound.limits for t in deployment.trunks if t.outbound and t.outbound.limits}
        )
        #: call and trunk events (orchestrator.events): published here, read by GET /v1/events and webhooks
        self.events = events or Broker()
        self.call_events = CallEvents(EventFactory())
        self.trunk_states = TrunkStates([t.name for t in deployment.trunks])
        self.listeners: list[Listener] = []
        self.records = record_writer(o, base_dir) if write_records else None
        #: the store the API reads records from (None when records go to a JSONL file, or nowhere)
        self.store = self.records.store if isinstance(self.records, store.StoreWriter) else None
        if isinstance(self.records, store.StoreWriter):
            self.metrics.bind_records(self.records)
        self.ended: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._ended_cache = ended_cache
        self._locks: dict[str, asyncio.Lock] = {}
        #: seconds to wait for the media summary of an ended call before writing its record (0: the bridge runs
        #: in this process and its summary is in before the end; worker processes send theirs a moment later)
        self.media_grace = 0.0
        self._awaiting: dict[str, tuple[Call, asyncio.TimerHandle]] = {}
        self._media_final: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: attended transfers' deadlines, by call (tracker.attended_expired when one passes)
        self._attended_timers: dict[str, asyncio.TimerHandle] = {}
        self.nodes: dict[str, NodeState] = {}
        #: the far end's RTCP reports are read when FreeSWITCH is told to send RTCP and calls are sampled
        self.reads_rtcp = bool(deployment.freeswitch.rtcp_interval_ms and o.quality.sample_seconds)
        subscribed = [*EVENTS, RTCP_EVENT] if self.reads_rtcp else EVENTS
        for ep in node_endpoints(deployment):
            client = EslClient(
                ep,
                events=subscribed,
                custom=[*CUSTOM, GATEWAY_STATE],
                event_format="json",  # plain events cannot carry a literal %41 (FreeSWITCH leaves it unencoded)
                on_event=self._event_handler(ep.name),
                on_connect=self._connect_handler(ep.name),
                on_disconnect=self._disconnect_handler(ep.name),
                command_timeout=o.command_timeout_seconds,
                backoff=backoff,
            )
            self.nodes[ep.name] = NodeState(ep.name, client)
        #: the recordings' directory: 0700, files 0600, sizes, retention (orchestrator.recording.local_files)
        self.recording_files = RecordingFiles(o.recording)
        #: live RTP quality of the answered calls (orchestrator.quality; calls/sampler.py)
        self.quality = QualitySampler(
            o.quality,
            calls=lambda: self.tracker.calls.values(),
            client=lambda node: self.nodes[node].client if node in self.nodes else None,
            notify=self._notify,
            metrics=self.metrics,
            trunks=[t.name for t in deployment.trunks],
            command_timeout=o.command_timeout_seconds,
            media_timeout=self._media_timeout,
            on_dead=self._dead_media,
        )

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect to every node (in the background) and start writing records."""
        if self.records is not None:
            self.records.start()
        self.recording_files.start()
        for node in self.nodes.values():
            self.metrics.esl_connected.labels(node.name).set(0)
            await node.client.start()
        self.quality.start()

    async def stop(self) -> None:
        """Disconnect; calls stay up in FreeSWITCH."""
        await self.quality.stop()
        await self.recording_files.stop()
        for node in self.nodes.values():
            if node.lost_timer is not None:
                node.lost_timer.cancel()
                node.lost_timer = None
            await node.client.stop()
        for timer in self._attended_timers.values():
            timer.cancel()
        self._attended_timers.clear()
        for uuid in list(self._awaiting):
            self._finish(uuid)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.records is not None:
            await self.records.close()

    def add_listener(self, listener: Listener) -> None:
        """Receive every notice (answered, dtmf, transfer, hangup, ended, fork_* …)."""
        self.listeners.append(listener)

    # -- queries --------------------------------------------------------------------------------
    def call(self, uuid: str) -> Call | None:
        """A live call."""
        return self.tracker.calls.get(uuid)

    def describe(self, uuid: str) -> dict[str, Any] | None:
        """A live call's summary, or the record of a recently ended one."""
        call = self.tracker.calls.get(uuid)
        if call is not None:
            return call.summary()
        return self.ended.get(uuid)

    # -- ESL hooks ------------------------------------------------------------------------------
    def _event_handler(self, node: str) -> Callable[[Event], None]:
        def handle(event: Event) -> None:
            if event.subclass == GATEWAY_STATE:
                self._gateway_state(node, event)
                return
            if event.name == RTCP_EVENT:  # the far end's RTCP report: live quality only
                call = self.tracker.calls.get(event.uuid)
                self.quality.rtcp(call if call is not None and call.node == node else None, event.get)
                return
            actions, notices = self.tracker.handle(node, event)
            self._seen(event.uuid)
            self._execute(actions)
            self._notify(notices)

        return handle

    def _connect_handler(self, node: str) -> Callable[[], Any]:
        async def connected() -> None:
            timer, self.nodes[node].lost_timer = self.nodes[node].lost_timer, None
            if timer is not None:
                timer.cancel()
            self.metrics.esl_connected.labels(node).set(1)
            self.metrics.esl_connects.labels(node).inc()
            await self._modules(node)
            await self._resync(node)
            self.nodes[node].synced.set()

        return connected

    def _disconnect_handler(self, node: str) -> Callable[[], None]:
        def disconnected() -> None:
            # FreeSWITCH keeps the calls and the resync after reconnecting reconciles them; a node that stays
            # away longer than node_lost_seconds is gone with its calls: they are recorded as lost
            state = self.nodes[node]
            state.synced.clear()
            self.metrics.esl_connected.labels(node).set(0)
            wait = self.deployment.orchestrator.node_lost_seconds
            if wait and state.lost_timer is None:
                state.lost_timer = asyncio.get_running_loop().call_later(wait, self._node_lost, node)

        return disconnected

    def _node_lost(self, node: str) -> None:
        state = self.nodes[node]
        state.lost_timer = None
        if state.client.connected:
            return
        notices = self.tracker.node_lost(node)
        if notices:
            log.warning(
                "node %s unreachable for %ss: %d call(s) recorded as lost",
                node,
                self.deployment.orchestrator.node_lost_seconds,
                len(notices),
            )
        self._notify(notices)

    async def _modules(self, node: str) -> None:
        """Which optional modules the node has loaded: mod_avmd (answering-machine beeps)."""
        try:
            loaded = (await self.nodes[node].client.api(commands.module_exists("mod_avmd"))).strip() == "true"
        except (EslError, CommandError) as exc:
            log.warning("node %s: cannot tell whether mod_avmd is loaded (%s): no beep detection there", node, exc)
            loaded = False
        if loaded:
            self.tracker.avmd_nodes.add(node)
        else:
            self.tracker.avmd_nodes.discard(node)

    async def _resync(self, node: str) -> None:
        """After (re)connecting: list the node's channels, dump each, let the tracker reconcile.

        A listing FreeSWITCH sent that cannot be read reconciles nothing (calls are only ended as lost
        when the node says they are gone); a channel whose dump cannot be read is left as it is.
        """
        client = self.nodes[node].client
        text = await client.api(commands.show_channels())
        try:
            listing = json.loads(text) if text.strip() else {}
            rows = listing.get("rows", []) if isinstance(listing, dict) else None
            if not isinstance(rows, list):
                raise ValueError("no 'rows' list")
        except (ValueError, RecursionError) as exc:
            log.error("resync %s: unreadable channel list from FreeSWITCH (%s); calls left as they are", node, exc)
            return
        dumps: dict[str, Event] = {}
        unreadable: set[str] = set()
        for row in rows:
            uuid = row.get("uuid") if isinstance(row, dict) else None
            if not isinstance(uuid, str) or not uuid:
                continue
            try:
                dump = await client.api(commands.uuid_dump(uuid))
                dumps[uuid] = parse_json_event(dump)
            except CommandError:
                continue  # hung up meanwhile
            except (commands.Refused, EslProtocolError) as exc:
                log.warning("resync %s: channel %.64r cannot be read (%s)", node, uuid, exc)
                unreadable.add(uuid)
        actions, notices = self.tracker.resync(node, dumps, keep=unreadable)
        for uuid in dumps:
            self._seen(uuid)
        if dumps or notices:
            log.info(
                "resync %s: %d channels, %d of ours re-attached",
                node,
                len(dumps),
                sum(1 for c in self.tracker.calls.values() if c.node == node and c.reattached),
            )
        self._execute(actions)
        self._notify(notices)

    # -- running commands -------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _execute(self, actions: list[Api]) -> None:
        by_call: dict[str, list[Api]] = {}
        for action in actions:
            by_call.setdefault(action.call, []).append(action)
        for call_uuid, batch in by_call.items():
            self._spawn(self._run_batch(call_uuid, batch))

    async def _run_batch(self, call_uuid: str, batch: list[Api]) -> None:
        lock = self._locks.setdefault(call_uuid, asyncio.Lock())
        async with lock:
            for action in batch:
                client = self.nodes[action.node].client
                log.debug("call %s: %s", call_uuid, action.command.split(" ", 1)[0])
                try:
                    await client.api(action.command)
                except CommandError as exc:
                    # the channel hung up meanwhile, or FreeSWITCH refused: later steps are moot
                    log.info("call %s: %s", call_uuid, exc)
                    if action.optional:
                        continue
                    self._command_failed(call_uuid, action, exc)
                    break
                except EslError as exc:
                    log.warning("call %s: %s failed: %s", call_uuid, action.command.split(" ", 1)[0], exc)
                    break
        if call_uuid not in self.tracker.calls:
            self._locks.pop(call_uuid, None)

    def _command_failed(self, call_uuid: str, action: Api, exc: CommandError) -> None:
        if call_uuid in self.tracker.legs and action.command.startswith(f"uuid_broadcast {call_uuid} "):
            # an attended transfer's announcement could not be played to the target: connected without it
            log.warning("call %s: the transfer announcement was refused (%s)", call_uuid, exc.reply)
            self._run(self.tracker.attended_brief_failed(call_uuid))
            return
        call = self.tracker.calls.get(call_uuid)
        if call is None:
            return
        if action.command.startswith(f"uuid_bridge {call_uuid} "):
            self._run(self.tracker.attended_bridge_failed(call_uuid))
            return
        if any(d.is_start(action.command) for d in dialects.DIALECTS.values()):
            call.fork = ForkState.FAILED
            self._notify([Notice(NoticeKind.FORK_FAILED, call, {"reason": exc.reply, "kind": "start_refused"})])
        elif action.command.startswith(f"uuid_record {call_uuid} start "):
            self._notify(self.tracker.recording_failed(call_uuid, exc.reply))
        elif action.command.startswith(f"uuid_broadcast {call_uuid} ") and call.recording is not None:
            # the announcement could not be queued: record anyway (the caller was told nothing: in the record)
            log.warning("call %s: the recording announcement was refused (%s)", call_uuid, exc.reply)
            self._execute(self.tracker.announcement_done(call_uuid))

    def _run(self, result: tuple[list[Api], list[Notice]]) -> None:
        """Carry out what the tracker returned: its commands, then its notices."""
        actions, notices = result
        self._execute(actions)
        self._notify(notices)

    def _notify(self, notices: list[Notice]) -> None:
        for notice in notices:
            for listener in self.listeners:  # first, so the media bridge's summary is in the record
                try:
                    listener(notice)
                except Exception:
                    log.exception("listener failed on %s", notice.kind)
            self._publish(self.call_events.notice(notice))
            self._account(notice)

    # -- events ---------------------------------------------------------------------------------
    def _publish(self, events: list[CallEvent]) -> None:
        """Hand events to the broker (which never waits); a failure here never reaches a call."""
        for event in events:
            try:
                self.events.publish(event)
            except Exception:
                log.exception("publishing %s failed", event.type)

    def _seen(self, uuid: str) -> None:
        """``call.started`` for a live call the first time it is seen (claimed, originated, re-attached)."""
        call = self.tracker.calls.get(uuid)
        if call is not None:
            self._publish(self.call_events.seen(call))

    def _gateway_state(self, node: str, event: Event) -> None:
        """``sofia::gateway_state``: ``trunk.down`` / ``trunk.up`` when a trunk's gateway changed."""
        state = parse_gateway_state(event.headers)
        draft = self.trunk_states.update(node, state) if state is not None else None
        if state is None or draft is None:
            return
        reply = f", {state.sip_status} {state.phrase}".rstrip() if state.sip_status else ""
        log.log(
            logging.INFO if state.up else logging.WARNING,
            "trunk %s is %s on node %s (registration %s, ping status %s%s)",
            *(state.gateway, "up" if state.up else "down", node, state.state or "?", state.ping_status, reply),
        )
        self._publish([self.call_events.factory.make(draft)])

    def _account(self, notice: Notice) -> None:
        call = notice.call
        m = self.metrics
        if notice.kind == NoticeKind.ANSWERED and not notice.data.get("reattached"):
            if call.answered_at and call.created_at:
                m.setup_seconds.labels(call.direction).observe(max(0.0, call.answered_at - call.created_at))
        elif notice.kind == NoticeKind.DTMF:
            m.dtmf.labels("in").inc()
        elif notice.kind == NoticeKind.HOLD:
            if notice.data.get("held"):
                m.holds.labels(call.trunk).inc()
        elif notice.kind == NoticeKind.MACHINE and notice.data.get("event") == "verdict" and call.machine is not None:
            verdict = call.machine.verdict
            m.machine_verdicts.labels(call.machine.settings.mode, verdict, call.trunk).inc()
            if call.answered_at and call.machine.verdict_at:
                m.machine_seconds.labels(verdict).observe(max(0.0, call.machine.verdict_at - call.answered_at))
        elif notice.kind == NoticeKind.RECORDING and call.recording is not None:
            state = notice.data.get("state")
            if state in (rec.RecState.RECORDING, rec.RecState.STOPPED) and self.recording_files.active:
                self._spawn(self._secure_recording(call, final=state == rec.RecState.STOPPED))
        elif notice.kind == NoticeKind.TRANSFER:
            assert call.transfer is not None
            m.transfers.labels(call.transfer.method, "succeeded" if notice.data.get("succeeded") else "failed").inc()
            if call.transfer.attended is not None and not call.transfer.attended.active:
                timer = self._attended_timers.pop(call.uuid, None)
                if timer is not None:
                    timer.cancel()
        elif notice.kind == NoticeKind.FORK_FAILED:
            m.fork_failures.labels(notice.data.get("kind", "connect_failed")).inc()
            # no media path to the agent: the call cannot be served; end it the configured way
            call.media.setdefault("outcome", "media_failed")
            media = self.deployment.orchestrator.media
            if media.on_failure == "prompt" and media.fallback_prompt and call.state == CallState.ANSWERED:
                self._spawn(self.play_and_hangup(call.uuid, media.fallback_prompt, "media_failed", "orchestrator"))
            else:
                self._spawn(self._kill(call, "NORMAL_TEMPORARY_FAILURE", "orchestrator"))
        elif notice.kind == NoticeKind.ENDED:
            lost = bool(notice.data.get("lost"))
            if call.refused == "limit_exceeded":
                m.limit_refusals.labels(call.trunk, "inbound", call.limit or "unknown").inc()
            if self.media_grace and call.fork != ForkState.NONE and not lost and call.uuid not in self._media_final:
                # the media bridge runs in worker processes: its summary of the call is still on its way
                self.ended[call.uuid] = records.build(call, lost=lost)  # what describe() shows meanwhile
                handle = asyncio.get_running_loop().call_later(self.media_grace, self._finish, call.uuid)
                self._awaiting[call.uuid] = (call, handle)
            else:
                self._record(call, lost)
        self._gauge()

    def _finish(self, uuid: str) -> None:
        waiting = self._awaiting.pop(uuid, None)
        if waiting is not None:
            waiting[1].cancel()
            self._record(waiting[0], False)

    def _record(self, call: Call, lost: bool) -> None:
        """Count and write the record of an ended call (once its media summary is in)."""
        self._media_final.discard(call.uuid)
        record = records.build(call, lost=lost)
        self.metrics.calls.labels(call.direction, record["result"]).inc()
        self.ended[call.uuid] = record
        self.ended.move_to_end(call.uuid)
        while len(self.ended) > self._ended_cache:
            self.ended.popitem(last=False)
        if self.records is not None:
            self.records.write(record)
        self._publish(self.call_events.ended(call, record))

    def _gauge(self) -> None:
        counts = {"inbound": 0, "outbound": 0}
        for c in self.tracker.calls.values():
            counts[c.direction] += 1
        for direction, n in counts.items():
            self.metrics.active_calls.labels(direction).set(n)

    # -- fork -----------------------------------------------------------------------------------
    def _fork_command(self, call: Call) -> str:
        token = self.tokens.token(call.uuid, call.fork_nonce)  # good for this fork start only (claim_fork)
        url = fork.fork_url(self.deployment.orchestrator.media_url, call.uuid, token)
        metadata = _fork_metadata(call)
        rate = fork_rate(call.rate)
        media = self.deployment.orchestrator.media
        dialect = dialects.dialect(media.fork_module)
        stream_rate = (16000 if rate == "16k" else 8000) if media.playback == "streaming" else None
        # mod_audio_fork takes at most 8 KiB of metadata: what a carrier sent in many long headers must not
        # cost the call its agent -- the longest variables give way, and the record says which
        variables = dict(call.variables)
        while True:
            metadata["variables"] = variables
            try:
                return dialect.start(call.uuid, url, rate, metadata, stream_rate=stream_rate)
            except dialects.MetadataTooLarge:
                droppable = sorted((k for k in variables if k not in _CALL_FACTS), key=lambda k: -len(variables[k]))
                if droppable:
                    variables.pop(droppable[0])
                    call.media.setdefault("variables_dropped", []).append(droppable[0])
                    log.warning("call %s: fork metadata over 8 KiB: %.64r not passed on", call.uuid, droppable[0])
                elif metadata.pop("agent_overrides", None) is not None:
                    log.warning("call %s: fork metadata over 8 KiB: agent overrides not passed on", call.uuid)
                elif variables:
                    variables = {}
                else:
                    raise

    async def claim_fork(self, uuid: str, token: str) -> bool:
        """The media bridge asks whether a fork connection may serve the call: once per fork start, for a
        live call waiting for that fork, with the token minted for it (replays and unknown calls: no)."""
        nonce = self.tokens.verify(uuid, token)
        return nonce is not None and self.tracker.claim_fork(uuid, nonce)

    # -- actions --------------------------------------------------------------------------------
    def _pick_node(self) -> str:
        connected = [n for n in self.nodes.values() if n.client.connected]
        if not connected:
            raise CallError("no_freeswitch", "no FreeSWITCH node is connected", 503)
        load = {n.name: 0 for n in connected}
        for c in self.tracker.calls.values():
            if c.node in load:
                load[c.node] += 1
        return min(load, key=lambda name: (load[name], name))

    async def originate(
        self,
        *,
        trunk: str,
        to: str,
        agent: str,
        caller_id: str | None = None,
        headers: dict[str, str] | None = None,
        variables: dict[str, str] | None = None,
        agent_overrides: dict[str, str] | None = None,
        timeout: int | None = None,
        machine_detection: MachineDetection | dict[str, Any] | str | None = None,
    ) -> Call:
        """Place an outbound call through ``trunk`` to an E.164 number or SIP URI; returns at once.

        Progress and the outcome (with the real SIP status) arrive as notices and in
        :meth:`describe`; the agent is connected when the callee answers.
        """
        try:
            dial = dialing.outbound(
                self.deployment,
                trunk=trunk,
                to=to,
                agent_name=agent,
                caller=caller_id,
                extra_headers=headers,
                agent_variables=variables,
                overrides=agent_overrides,
                seconds=timeout,
            )
        except dialing.Invalid as exc:
            raise _refused(exc) from None
        try:
            detection = amd.resolve(self.deployment, trunk=dial.trunk, agent=dial.agent, request=machine_detection)
        except amd.Invalid as exc:
            raise CallError("invalid_machine_detection", str(exc)) from None
        node = self._pick_node()
        active = sum(1 for c in self.tracker.calls.values() if c.direction == "outbound" and c.trunk == dial.trunk)
        refusal = self.limiter.admit(dial.trunk, active)
        if refusal is not None:
            self.metrics.limit_refusals.labels(refusal.trunk, "outbound", refusal.limit).inc()
            log.info("originate refused: %s", refusal.message)
            raise CallError("limit_exceeded", refusal.message, 429, retry_after=refusal.retry_after)
        uuid = str(uuidlib.uuid4())
        channel = dialing.channel_variables(dial, uuid, self.deployment.orchestrator.originate_timeout_seconds)
        try:
            command = commands.originate(channel, dial.dial_string)
        except commands.Refused as exc:  # the checks above make this unreachable; never send what was refused
            raise CallError("invalid_request", str(exc)) from None
        call = self.tracker.expect_outbound(
            uuid, node, trunk=dial.trunk, agent=dial.agent, destination=dial.to, caller_id=dial.caller_id
        )
        call.variables.update(dial.variables)
        call.agent_overrides = dial.agent_overrides
        if detection.mode != "off":
            call.machine = amd.MachineState(detection)
        self._publish(self.call_events.seen(call))
        self._gauge()
        self._spawn(self._originate(node, uuid, command))
        return call

    async def _originate(self, node: str, uuid: str, command: str) -> None:
        client = self.nodes[node].client
        try:
            body = await client.bgapi(command, check=False)
        except EslError as exc:
            # the link dropped: the channel (if any) is found again by resync
            log.warning("originate %s: %s", uuid, exc)
            return
        self._notify(self.tracker.originate_result(uuid, body))

    def _live(self, uuid: str) -> Call:
        call = self.tracker.calls.get(uuid) if isinstance(uuid, str) else None
        if call is None:
            raise CallError("unknown_call", f"no active call {dialing.shown(uuid)}", 404)
        return call

    async def hangup(self, uuid: str, reason: str = "completed", by: str = "api") -> None:
        """Hang up a call with a reason (completed, busy, rejected, unavailable, no_answer, error)."""
        call = self._live(uuid)
        cause = HANGUP_REASONS.get(reason) if isinstance(reason, str) else None
        if cause is None:
            raise CallError("invalid_reason", f"reason must be one of: {', '.join(HANGUP_REASONS)}")
        await self._kill(call, cause, by)

    async def play_and_hangup(self, uuid: str, prompt: str, reason: str, by: str) -> None:
        """Play ``prompt`` to the caller, then hang up (the media path failed: ``reason`` goes in the record)."""
        call = self._live(uuid)
        self.tracker.mark_hangup_by(uuid, by)
        call.media.setdefault("outcome", reason)
        command = commands.uuid_transfer_inline(uuid, [("playback", prompt), ("hangup", "NORMAL_TEMPORARY_FAILURE")])
        await self._api(call, command)

    async def flush_playback(self, uuid: str) -> None:
        """Stop agent audio being played from files (file playback barge-in)."""
        call = self._live(uuid)
        await self._api(call, commands.uuid_break(uuid))

    def media_update(self, uuid: str, data: dict[str, Any], final: bool = False) -> None:
        """Merge the media bridge's facts into the call's record (agent session, frames, transcript, outcome);
        ``final``: the bridge's summary at the end of the call, after which its record can be written."""
        waiting = self._awaiting.get(uuid)
        call = self.tracker.calls.get(uuid) or (waiting[0] if waiting else None)
        if call is None:
            return
        if final:
            self._media_final.add(uuid)
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(call.media.get(key), dict):
                call.media[key].update(value)
            elif key == "outcome" and call.media.get("outcome") and value == "completed":
                continue  # a failure reason already recorded (e.g. fallback prompt) stays
            else:
                call.media[key] = value
        failure = call.media.get("outcome")
        if "outcome" in data and isinstance(failure, str) and failure in records.AGENT_FAILURES:
            detail = call.media.get("detail")
            detail = detail[:1024] if isinstance(detail, str) else ""
            self._publish(self.call_events.agent_failed(call, failure, detail))
        if final and waiting is not None:
            self._finish(uuid)

    async def machine_detection(self, uuid: str, data: dict[str, Any]) -> None:
        """The media bridge's answering-machine detection report: the verdict and its figures, the cue to speak,
        ``done`` (mod_avmd may stop). A machine in ``hangup`` mode is hung up (result ``machine_detected``)."""
        call = self._live(uuid)
        m = call.machine
        if m is None or not isinstance(data, dict):
            return
        had = m.verdict
        amd.accept_report(m, data, self.tracker.clock())
        if m.verdict and not had:
            self._notify([Notice(NoticeKind.MACHINE, call, {"event": "verdict", "verdict": m.verdict})])
            log.info("call %s: answering-machine detection: %s (%s)", uuid, m.verdict, m.report.get("reason", ""))
        hangup = m.verdict == "machine" and m.settings.mode == "hangup" and not m.action
        if hangup:
            m.action = "hangup"
            m.done = True
        if m.done:
            self._execute(self.tracker.stop_avmd(uuid))
        if hangup:
            await self._kill(call, "NORMAL_CLEARING", "orchestrator")

    async def record(self, uuid: str, action: str) -> dict[str, Any]:
        """Start, stop, pause or resume the call's recording (calls/recording.py says what may be done when)."""
        call = self._live(uuid)
        if call.recording is None or call.answered_at is None:
            raise CallError("not_answered", f"call is {call.state}: recordings need an answered call", 409)
        r = call.recording
        try:
            rec.check(r, action)
        except rec.Refusal as exc:
            raise CallError(exc.code, exc.message, exc.status) from None
        if not self.deployment.orchestrator.recording.directory:
            raise CallError("recording_off", "no orchestrator.recording.directory is configured", 409)
        if action == "start":
            actions = self.tracker.start_recording(uuid)
            for api in actions:
                try:
                    await self._api(call, api.command)
                except CallError as exc:
                    self._notify(self.tracker.recording_failed(uuid, exc.message))
                    raise
            self._notify([Notice(NoticeKind.RECORDING, call, {"state": r.state, "path": r.path})])
            return r.to_dict()
        verb = rec.freeswitch_action(action, self.deployment.orchestrator.recording)
        await self._api(call, commands.uuid_record(uuid, verb, r.path))
        if action in ("pause", "resume"):
            rec.note(r, action, self.tracker.clock())
            self._notify([Notice(NoticeKind.RECORDING, call, {"state": r.state, "path": r.path})])
        return r.to_dict()

    async def _secure_recording(self, call: Call, final: bool) -> None:
        """Make the file 0600 (when it starts and when it is closed) and read its size once it is closed."""
        r = call.recording
        if r is None or not r.path:
            return
        size = await asyncio.to_thread(self.recording_files.secure, r.path)
        if final and size is not None and r.size_bytes is None:
            r.size_bytes = size

    async def _kill(self, call: Call, cause: str, by: str) -> None:
        self.tracker.mark_hangup_by(call.uuid, by)
        try:
            await self.nodes[call.node].client.api(commands.uuid_kill(call.uuid, cause))
        except CommandError:
            pass  # already gone
        except EslError as exc:
            raise CallError("freeswitch_unreachable", str(exc), 503) from None

    def _media_timeout(self, call: Call) -> float:
        """The dead-media timeout of the call's trunk in seconds (0: none): ``trunks[].media_timeout_seconds``, else
        ``freeswitch.media_timeout_seconds``."""
        for t in self.deployment.trunks:
            if t.name == call.trunk and t.media_timeout_seconds is not None:
                return float(t.media_timeout_seconds)
        return float(self.deployment.freeswitch.media_timeout_seconds)

    def _dead_media(self, call: Call) -> None:
        """No RTP for the trunk's timeout outside a hold (calls/deadmedia.py): hang up with MEDIA_TIMEOUT, as
        FreeSWITCH's own timeout would (recorded ``media_timeout``)."""
        self._spawn(self._kill_quietly(call, "MEDIA_TIMEOUT", "orchestrator"))

    async def _kill_quietly(self, call: Call, cause: str, by: str) -> None:
        try:
            await self._kill(call, cause, by)
        except CallError as exc:
            log.warning("call %s: hang-up (%s) not sent: %s", call.uuid, cause, exc.message)

    def _dtmf_mode(self, call: Call) -> str:
        """How the call's trunk carries digits (``trunks[].dtmf.mode``, else ``freeswitch.dtmf.mode``)."""
        for t in self.deployment.trunks:
            if t.name == call.trunk and t.dtmf is not None:
                return t.dtmf.mode
        return self.deployment.freeswitch.dtmf.mode

    async def send_dtmf(self, uuid: str, digits: str, duration_ms: int = 100) -> None:
        """Send DTMF into the call as the trunk carries it (RFC 2833 or SIP INFO through ``uuid_send_dtmf``, tones
        played into the audio for inband trunks): keys and ``w``/``W`` pauses."""
        call = self._live(uuid)
        normal = dtmf.sequence(digits)
        if normal is None:
            raise CallError("invalid_digits", f"digits must be {dtmf.SEQUENCE_RULE}")
        if not dtmf.valid_duration(duration_ms):
            raise CallError("invalid_duration", f"duration must be {dtmf.MIN_DURATION_MS}-{dtmf.MAX_DURATION_MS} ms")
        if self._dtmf_mode(call) == "inband":  # tones in the audio, whether or not the agent is speaking
            await self._api(call, commands.uuid_broadcast_dtmf_tones(uuid, normal, duration_ms))
        else:
            await self._api(call, commands.uuid_send_dtmf(uuid, normal, duration_ms))
        call.dtmf_out += normal
        self.metrics.dtmf.labels("out").inc(sum(1 for c in normal if c not in dtmf.PAUSES))

    async def transfer(
        self,
        uuid: str,
        target: str,
        *,
        method: str | None = None,
        trunk: str | None = None,
        mode: str | None = None,
        brief: str | None = None,
    ) -> None:
        """Transfer an answered call: blind -- ``refer`` (SIP REFER to the peer) or ``bridge`` (new leg through a
        trunk) -- or ``attended`` (``mode`` attended: the target is dialled while the caller stays with the agent,
        briefed, and bridged to the caller once it answered; ``brief`` is kept in the record).

        The outcome arrives as a ``transfer`` notice; a failed transfer leaves the call with the agent.
        """
        call = self._live(uuid)
        try:
            how = dialing.transfer_method(method, mode)
        except dialing.Invalid as exc:
            raise _refused(exc) from None
        if call.state != CallState.ANSWERED:
            raise CallError("not_answered", f"call is {call.state}, transfers need an answered call", 409)
        if how == "refer":
            await self._transfer_refer(call, target)
        elif how == "bridge":
            await self._transfer_bridge(call, target, trunk or call.trunk)
        else:
            self._transfer_attended(call, target, trunk or call.trunk, brief)

    async def _transfer_refer(self, call: Call, target: str) -> None:
        """SIP REFER to the peer: a SIP URI, or a number at the call's trunk."""
        uuid = call.uuid
        try:
            target = dialing.refer_target(target, dialing.trunk_address(self.deployment, call.trunk))
        except dialing.Invalid as exc:
            raise _refused(exc) from None
        self.tracker.start_transfer(uuid, "refer", target)
        try:
            # sip_refer_continue_after_reply is set at answer: the outcome comes as sofia::notify_refer
            await self._api(call, commands.uuid_deflect(uuid, target), background=True)
        except CallError as exc:
            self._notify(self.tracker.transfer_failed(uuid, exc.message))
            raise

    async def _transfer_bridge(self, call: Call, target: str, via: str | None) -> None:
        """A new leg through trunk ``via``, bridged to the call (the fork stops first; back to park on failure)."""
        uuid = call.uuid
        try:
            t = dialing.outbound_trunk(self.deployment, via)
            dest = dialing.bridge_target(target)
        except dialing.Invalid as exc:
            raise _refused(exc) from None
        inline = commands.uuid_transfer_inline(
            uuid,
            [
                ("set", "hangup_after_bridge=true"),
                ("set", "continue_on_fail=true"),
                ("bridge", f"sofia/gateway/{t.name}/{dest}"),
                ("park", ""),
            ],
        )
        self.tracker.start_transfer(uuid, "bridge", target)
        await self._api(call, dialects.dialect(self.deployment.orchestrator.media.fork_module).stop(uuid))
        try:
            await self._api(call, inline)
        except CallError as exc:
            self._notify(self.tracker.transfer_failed(uuid, exc.message))
            raise

    def _transfer_attended(self, call: Call, target: str, via: str | None, brief: str | None) -> None:
        """Originate the target through trunk ``via`` while the caller stays with the agent (calls/attended.py)."""
        settings = self.deployment.orchestrator.transfers.attended
        caller = (call.remote if call.direction == "inbound" else call.number) if settings.caller_id == "caller" else ""
        try:
            dial = dialing.attended(
                self.deployment,
                trunk=via,
                target=target,
                brief=att.clean_brief(brief),
                caller=caller,
                brief_header=settings.brief_header,
            )
        except dialing.Invalid as exc:
            raise _refused(exc) from None
        leg = str(uuidlib.uuid4())
        variables = dialing.attended_variables(dial, leg, call.uuid, settings.ring_timeout_seconds)
        try:
            command = commands.originate(variables, dial.dial_string)
        except commands.Refused as exc:  # the checks above make this unreachable; never send what was refused
            raise CallError("invalid_request", str(exc)) from None
        self.tracker.start_attended(
            call.uuid,
            leg,
            target=target,
            trunk=dial.trunk,
            brief=dial.brief,
            announcement=settings.announcement or "",
            ring_timeout=settings.ring_timeout_seconds,
            brief_timeout=settings.brief_timeout_seconds,
        )
        assert call.transfer is not None and call.transfer.attended is not None
        wait = max(0.0, call.transfer.attended.due - self.tracker.clock())
        old = self._attended_timers.pop(call.uuid, None)
        if old is not None:
            old.cancel()
        self._attended_timers[call.uuid] = asyncio.get_running_loop().call_later(wait, self._attended_due, call.uuid)
        log.info(
            "call %s: attended transfer to %s through %s (leg %s)", call.uuid, dialing.shown(target), dial.trunk, leg
        )
        self._spawn(self._originate_leg(call.node, leg, command))

    def _attended_due(self, uuid: str) -> None:
        self._attended_timers.pop(uuid, None)
        self._run(self.tracker.attended_expired(uuid))

    async def _originate_leg(self, node: str, leg: str, command: str) -> None:
        """The target leg's ``originate``: its job result says how it went when FreeSWITCH made no channel."""
        try:
            body = await self.nodes[node].client.bgapi(command, check=False)
        except EslError as exc:
            # the link dropped: the leg's events (or the attempt's deadline) tell how it went
            log.warning("attended transfer leg %s: %s", leg, exc)
            return
        self._run(self.tracker.attended_originate_result(leg, body))

    async def _api(self, call: Call, command: str, background: bool = False) -> str:
        client = self.nodes[call.node].client
        log.debug("call %s: %s", call.uuid, command.split(" ", 1)[0])
        try:
            if background:
                return await client.bgapi(command)
            return await client.api(command)
        except CommandError as exc:
            raise CallError("freeswitch_refused", exc.reply, 409) from None
        except EslError as exc:
            raise CallError("freeswitch_unreachable", str(exc), 503) from None
