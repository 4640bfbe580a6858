"""A fork token is good for one live call only: once per fork start, for a call waiting for that fork.

Sans-I/O in the tracker, then end to end: the simulator's mod_audio_fork (a real WebSocket client) connecting
to the real bridge, which asks the real controller — replays after hang-up, tokens for calls that never
existed, second uses and the re-fork after an orchestrator restart."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import test_media_flow
from audio_tools import tone
from test_media_flow import Flow
from test_tracker import INBOUND_UUID, _answered_inbound, feed, tracker
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from orchestrator.calls.controller import Controller
from orchestrator.esl.client import Backoff
from orchestrator.esl.protocol import Event
from orchestrator.media import dialects, fork

flow = test_media_flow.flow  # the simulator, the real controller and bridge, a raw agent


# -- the tracker (sans-I/O) -------------------------------------------------------------------------
def _nonce_of(command: str) -> str:
    token = re.search(r"token=([0-9a-f]+)", command)
    return token.group(1)[:16] if token else ""


def _claimable_tracker() -> Any:
    t = tracker()
    t.policy.fork_command = lambda call: (
        f"uuid_audio_fork {call.uuid} start ws://b/calls/{call.uuid}?token={call.fork_nonce}"
    )
    return t


def test_a_fork_start_can_be_claimed_once() -> None:
    t = _claimable_tracker()
    _answered_inbound(t)
    call = t.calls[INBOUND_UUID]
    nonce = call.fork_nonce
    assert call.fork == "starting" and len(nonce) == 16
    assert not t.claim_fork(INBOUND_UUID, "0" * 16)  # another nonce
    assert not t.claim_fork(INBOUND_UUID, "")
    assert not t.claim_fork("00000000-0000-4000-8000-000000000000", nonce)  # another call
    assert t.claim_fork(INBOUND_UUID, nonce)
    assert not t.claim_fork(INBOUND_UUID, nonce)  # used


def test_no_claim_before_the_fork_starts_after_it_failed_or_after_the_call() -> None:
    t = _claimable_tracker()
    evs = _answered_inbound(t)
    nonce = t.calls[INBOUND_UUID].fork_nonce
    base = {"Event-Name": "CUSTOM", "Unique-ID": INBOUND_UUID, "Event-Subclass": "mod_audio_fork::connect_failed"}
    feed(t, [Event(base, '{"reason":"Unable to connect"}')])
    assert not t.claim_fork(INBOUND_UUID, nonce)  # FreeSWITCH gave up on that fork
    t2 = _claimable_tracker()
    park = next(e for e in evs if e.name == "CHANNEL_PARK")
    feed(t2, [park])  # claimed and answering, no fork started yet
    assert t2.calls[INBOUND_UUID].fork_nonce == "" and not t2.claim_fork(INBOUND_UUID, nonce)
    t3 = _claimable_tracker()
    evs = _answered_inbound(t3)
    nonce = t3.calls[INBOUND_UUID].fork_nonce
    feed(t3, [next(e for e in evs if e.name == "CHANNEL_HANGUP_COMPLETE")])
    assert INBOUND_UUID not in t3.calls and not t3.claim_fork(INBOUND_UUID, nonce)  # the call is over


def test_every_fork_start_mints_a_new_nonce_and_the_old_one_dies() -> None:
    t = _claimable_tracker()
    evs = _answered_inbound(t)
    first = t.calls[INBOUND_UUID].fork_nonce
    assert t.claim_fork(INBOUND_UUID, first)
    t.start_transfer(INBOUND_UUID, "bridge", "+15559998888")
    actions, _ = feed(t, [next(e for e in evs if e.name == "CHANNEL_PARK")])  # the bridge failed: forked again
    second = t.calls[INBOUND_UUID].fork_nonce
    assert second != first and _nonce_of(actions[0].command) == second
    assert not t.claim_fork(INBOUND_UUID, first)
    assert t.claim_fork(INBOUND_UUID, second)


# -- end to end -------------------------------------------------------------------------------------
def _fork_urls(f: Flow, uuid: str) -> list[str]:
    return re.findall(rf"uuid_audio_fork {uuid} start (\S+)", "\n".join(f.sim.received_commands))


async def _refused(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        await connect(url, subprotocols=[dialects.SUBPROTOCOL])  # type: ignore[list-item]
    return info.value.response.status_code


async def test_replay_of_a_fork_url_is_refused_while_the_call_is_up_and_after_it_ended(flow: Flow) -> None:
    f = flow
    uuid = await f.inbound()
    f.sim.set_caller_audio(uuid, tone(440, 8000, 2000))
    await f.wait("fork_connected")
    await f.agent.wait_audio(3200)  # the real fork carries audio
    [url] = _fork_urls(f, uuid)
    assert await _refused(url) == 403  # a second connection with the same token, call up
    await f.sim.remote_hangup(uuid)
    await f.wait("ended")
    assert await _refused(url) == 403  # replayed after the hang-up
    assert len(f.agent.sessions) == 1  # no agent session was opened for either


async def test_validly_made_token_for_a_call_that_never_existed_is_refused(flow: Flow) -> None:
    f = flow
    ghost = "6f1c2a58-0000-4000-8000-00000000dead"
    url = fork.fork_url(f"ws://127.0.0.1:{f.bridge.port}", ghost, f.controller.tokens.token(ghost))
    assert await _refused(url) == 403
    uuid = await f.inbound()  # a live call, but not this token's
    await f.wait("fork_connected")
    other = fork.fork_url(f"ws://127.0.0.1:{f.bridge.port}", uuid, f.controller.tokens.token(uuid))  # fresh nonce
    assert await _refused(other) == 403
    assert len(f.agent.sessions) == 1


async def test_refork_after_an_orchestrator_restart_gets_a_new_token(flow: Flow, tmp_path: Path) -> None:
    f = flow
    uuid = await f.inbound()
    f.sim.set_caller_audio(uuid, tone(440, 8000, 6000))
    await f.wait("fork_connected")
    session = await f.agent.wait_session()
    await f.agent.wait_audio(3200)
    [old_url] = _fork_urls(f, uuid)
    await f.controller.stop()
    deployment = f.controller.deployment
    controller = Controller(deployment, tmp_path, tokens=fork.Tokens(b"k"), backoff=Backoff(0.02, 0.1))
    controller.add_listener(f.bridge.on_notice)
    reattached: list[Any] = []
    controller.add_listener(reattached.append)
    f.bridge.control = controller
    f.controller = controller
    await controller.start()
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while not any(n.kind == "fork_connected" for n in reattached):
            assert asyncio.get_running_loop().time() < deadline, [n.kind for n in reattached]
            await asyncio.sleep(0.01)
        urls = _fork_urls(f, uuid)
        assert len(urls) == 2 and urls[1] != old_url  # the re-fork minted a new token …
        assert controller.call(uuid) is not None and controller.call(uuid).reattached
        before = len(session.audio)
        await f.agent.wait_audio(before + 3200, session=session)  # … it was accepted: the same agent hears the caller
        assert len(f.agent.sessions) == 1
        assert await _refused(old_url) == 403  # the previous process's token is dead
        assert await _refused(urls[1]) == 403  # and the new one was good once
    finally:
        await controller.stop()
