"""Media bridge in worker processes: forks spread over workers, call actions and records reach the main process."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
from fake_agents import FakeRawAgent
from test_bridge import TOKENS, Control, Fork, deployment, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from orchestrator.calls.tracker import Notice
from orchestrator.media import dialects, fork
from orchestrator.media.workers import WorkerPool
from orchestrator.metrics import Metrics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CALLS = 16


class _Call:
    def __init__(self, uuid: str) -> None:
        self.uuid = uuid


async def test_two_workers_share_the_port_and_act_through_the_main_process() -> None:
    port = free_port()
    async with FakeRawAgent(rate=8000) as agent:
        dep = deployment({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}, port=port)
        control = Control()
        metrics = Metrics()
        pool = WorkerPool(dep, control, metrics, TOKENS.secret, 2)
        await pool.start()
        try:
            forks = []
            # the kernel spreads SO_REUSEPORT connections by a hash: with 16 the chance that one worker
            # gets them all is 2**-15, with 8 it was 1/128 (a CI run hit it)
            for i in range(CALLS):
                cid = f"c0ffee00-0000-4000-8000-{i:012x}"
                url = fork.fork_url(f"ws://127.0.0.1:{port}", cid, TOKENS.token(cid))
                ws = await connect(url, subprotocols=[dialects.SUBPROTOCOL])  # type: ignore[list-item]
                meta: dict[str, Any] = {"call_id": cid, "agent": "bot", "rate": 8000, "direction": "inbound"}
                await ws.send(json.dumps(meta))
                forks.append(Fork(ws, 8000))
            await agent.wait_session(CALLS)
            for f in forks:
                await f.send_audio(bytes(range(256)) * 5, realtime=False)
            for s in agent.sessions:
                await agent.wait_audio(1280, session=s)
            # the agent of call 3 hangs up: the worker asks the main process
            target = next(s for s in agent.sessions if s.of_type("start")[0]["call"]["call_id"].endswith("3"))
            await agent.send_hangup("done", session=target)
            await wait_until(lambda: control.calls)
            assert control.calls == [("hangup", "c0ffee00-0000-4000-8000-000000000003", "completed", "agent")]
            # the main process's notice closes the call in whichever worker has it, and its record comes back
            pool.on_notice(Notice("hangup", _Call("c0ffee00-0000-4000-8000-000000000003"), {}))  # type: ignore[arg-type]
            await wait_until(lambda: "c0ffee00-0000-4000-8000-000000000003" in control.records)
            record = control.records["c0ffee00-0000-4000-8000-000000000003"]
            assert record["outcome"] == "agent_hangup" and record["detail"] == "done"
            assert record["frames"]["from_caller"] == 4  # 1280 bytes in 20 ms frames
            # the agent of call 5 asks for a transfer: its result waits for the outcome notice from the main process
            other = next(s for s in agent.sessions if s.of_type("start")[0]["call"]["call_id"].endswith("5"))
            await agent.send_transfer("+15550001111", request_id="t5", session=other)
            await wait_until(lambda: len(control.calls) == 2)
            assert control.calls[1] == ("transfer", "c0ffee00-0000-4000-8000-000000000005", "+15550001111")
            data = {"succeeded": False, "sip_status": 486, "detail": "Busy Here", "call_continues": True}
            pool.on_notice(Notice("transfer", _Call("c0ffee00-0000-4000-8000-000000000005"), data))  # type: ignore[arg-type]
            await agent.wait_for(lambda: other.of_type("result"))
            result = other.of_type("result")[0]
            assert result["id"] == "t5" and result["ok"] is False and "SIP 486 Busy Here" in result["detail"]
            await asyncio.wait_for(forks[3].closed.wait(), 3)
            deadline = time.monotonic() + 5
            while len(pool.exposition) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            text = metrics.render().decode()
            per_worker = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("sipagent_media_sessions_total{")
            ]
            assert len(per_worker) == 2 and sum(per_worker) == CALLS  # both workers took calls, none lost
            assert all(n > 0 for n in per_worker)
        finally:
            await pool.stop()


async def test_fork_tokens_are_claimed_through_the_main_process_once() -> None:
    port = free_port()
    async with FakeRawAgent(rate=8000) as agent:
        dep = deployment({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}, port=port)
        control = Control()
        pool = WorkerPool(dep, control, Metrics(), TOKENS.secret, 2)
        await pool.start()
        try:
            urls = []
            for i in range(6):  # enough connections that both workers take some
                cid = f"c0ffee00-0000-4000-8000-00000000010{i}"
                url = fork.fork_url(f"ws://127.0.0.1:{port}", cid, TOKENS.token(cid))
                ws = await connect(url, subprotocols=[dialects.SUBPROTOCOL])  # type: ignore[list-item]
                await ws.send(json.dumps({"call_id": cid, "agent": "bot", "rate": 8000}))
                urls.append((url, ws))
            await agent.wait_session(6)
            assert len(control.claimed) == 6  # every claim reached the main process
            for url, _ in urls:  # replays, whichever worker the kernel hands them to
                with pytest.raises(InvalidStatus) as replay:
                    await connect(url, subprotocols=[dialects.SUBPROTOCOL])  # type: ignore[list-item]
                assert replay.value.response.status_code == 403
            gone = "c0ffee00-0000-4000-8000-000000000199"
            control.ended.add(gone)
            with pytest.raises(InvalidStatus) as ended:
                await connect(fork.fork_url(f"ws://127.0.0.1:{port}", gone, TOKENS.token(gone)))
            assert ended.value.response.status_code == 403
            assert len(agent.sessions) == 6
            for _, ws in urls:
                await ws.close()
        finally:
            await pool.stop()


async def test_records_wait_for_the_workers_media_summary() -> None:
    """With the bridge in worker processes a call's summary arrives after FreeSWITCH's end: the record waits for it
    (at most the grace), instead of being written without frames, transcript or outcome."""
    from orchestrator.calls.controller import Controller
    from orchestrator.calls.tracker import Call, Notice
    from orchestrator.config import check_text

    text = """
freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: p}}
agents: [{name: bot, protocol: raw, url: 'ws://127.0.0.1:9/a'}]
orchestrator: {records: null}
"""
    result = check_text(text, "d.yaml", {})
    assert result.deployment is not None
    controller = Controller(result.deployment, result.base_dir, write_records=False)
    controller.media_grace = 0.5
    call = Call("c0ffee00-0000-4000-8000-00000000000a", "fs1", "inbound", agent="bot", fork="closed")
    controller._notify([Notice("ended", call)])
    assert controller.describe(call.uuid)["media"] is None  # provisional: the summary is not in yet
    assert "sipagent_calls_total{" not in controller.metrics.render().decode()
    controller.media_update(call.uuid, {"outcome": "agent_hangup", "frames": {"from_caller": 5}}, final=True)
    record = controller.describe(call.uuid)
    assert record["media"]["outcome"] == "agent_hangup" and record["media"]["frames"]["from_caller"] == 5
    assert 'sipagent_calls_total{direction="inbound"' in controller.metrics.render().decode()
    # a summary that never comes: the record is written after the grace, without it
    other = Call("c0ffee00-0000-4000-8000-00000000000b", "fs1", "inbound", agent="bot", fork="closed")
    controller._notify([Notice("ended", other)])
    await asyncio.sleep(0.7)
    assert controller.describe(other.uuid)["media"] is None and other.uuid not in controller._awaiting


async def test_a_voicemail_beep_reaches_the_worker_and_its_verdict_the_main_process() -> None:
    """Answering-machine detection across processes: the main process's ``machine`` notice (mod_avmd's beep) reaches
    the worker's session; its verdict and cue to speak go to the agent and back to the controller."""
    port = free_port()
    async with FakeRawAgent(rate=8000) as agent:
        dep = deployment({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}, port=port)
        control = Control()
        pool = WorkerPool(dep, control, Metrics(), TOKENS.secret, 1)
        await pool.start()
        try:
            cid = "c0ffee00-0000-4000-8000-00000000beef"
            url = fork.fork_url(f"ws://127.0.0.1:{port}", cid, TOKENS.token(cid))
            ws = await connect(url, subprotocols=[dialects.SUBPROTOCOL])  # type: ignore[list-item]
            meta = {"call_id": cid, "agent": "bot", "rate": 8000, "direction": "outbound",
                    "machine_detection": {"mode": "wait_for_beep"}}  # fmt: skip
            await ws.send(json.dumps(meta))
            session = await agent.wait_session()
            pool.on_notice(Notice("machine", _Call(cid), {"event": "beep", "frequency": 950.5}))  # type: ignore[arg-type]
            await agent.wait_for(lambda: len(session.of_type("machine_detection")) == 2)
            verdict, speak = session.of_type("machine_detection")
            assert (verdict["verdict"], verdict["reason"], verdict["action"]) == ("machine", "beep", "wait")
            assert speak["event"] == "speak" and speak["reason"] == "beep"
            await wait_until(lambda: len(control.calls) == 2)
            assert control.calls[0][:2] == ("machine_detection", cid) and control.calls[0][2]["verdict"] == "machine"
            assert control.calls[1][2]["speak_reason"] == "beep" and control.calls[1][2]["done"] is True
            await ws.close()
        finally:
            await pool.stop()
