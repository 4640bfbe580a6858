"""The simulator's mod_audio_fork WebSocket client against a small websockets server, compared with what FreeSWITCH
1.10.12 did in fixtures 05 (drachtio) and 10 (jambonz bidirectional streaming)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from simulator import SimulatedFreeSwitch
from simulator.cjson import cjson_parse, cjson_print
from simulator.forkargs import fs_separate
from simulator.media import Resampler
from simulator.playout import StreamPlayout
from test_simulator import (
    SHARED,
    Client,
    assert_same_events,
    fixture_call,
    needs_shared,
    recorded_events,
    started,
)
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Response

from orchestrator.media import dialects

SUB = "audio.drachtio.org"
LWS_HEADERS = [
    "Pragma",
    "Cache-Control",
    "Host",
    "Origin",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Version",
]


# =====================================================================================================
# a tiny recording WebSocket server
# =====================================================================================================
@dataclass(eq=False)
class Conn:
    """One connection the server accepted: everything received, with loop times."""

    ws: ServerConnection
    texts: list[tuple[float, str]] = field(default_factory=list)
    binary: list[tuple[float, bytes]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_rcvd: tuple[int, str] | None = None
    closed_at: float = 0.0
    error: BaseException | None = None

    @property
    def path(self) -> str:
        return self.ws.request.path if self.ws.request else ""

    @property
    def headers(self) -> list[tuple[str, str]]:
        return list(self.ws.request.headers.raw_items()) if self.ws.request else []

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for m in self.ws:
                (self.texts if isinstance(m, str) else self.binary).append((loop.time(), m))  # type: ignore[arg-type]
        except Exception:
            pass
        rcvd = self.ws.protocol.close_rcvd
        self.close_rcvd = (rcvd.code, rcvd.reason) if rcvd else None
        self.closed_at = loop.time()
        self.closed.set()

    async def wait_texts(self, n: int, timeout: float = 5.0) -> list[str]:
        await wait_for(lambda: len(self.texts) >= n, timeout)
        return [t for _, t in self.texts]

    async def wait_binary(self, n: int, timeout: float = 5.0) -> None:
        await wait_for(lambda: len(self.binary) >= n, timeout)


Script = Callable[[Conn], Awaitable[None]]


class Server:
    """Accepts ``audio.drachtio.org`` connections; ``script`` (if any) runs per connection while it is read."""

    def __init__(self, script: Script | None = None):
        self.script = script
        self.conns: list[Conn] = []
        self.port = 0

    async def _handler(self, ws: ServerConnection) -> None:
        conn = Conn(ws)
        self.conns.append(conn)
        reader = asyncio.ensure_future(conn.read())
        if self.script is not None:
            try:
                await self.script(conn)
            except Exception as exc:  # surfaced by the tests
                conn.error = exc
        await reader

    def url(self, path: str = "/x") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def conn(self, index: int = 0, timeout: float = 3.0) -> Conn:
        await wait_for(lambda: len(self.conns) > index, timeout)
        return self.conns[index]


@asynccontextmanager
async def ws_server(script: Script | None = None, **kw: Any) -> AsyncIterator[Server]:
    srv = Server(script)
    async with serve(srv._handler, "127.0.0.1", 0, subprotocols=[SUB], **kw) as server:  # type: ignore[list-item]
        srv.port = server.sockets[0].getsockname()[1]
        yield srv
        for c in srv.conns:
            assert c.error is None, c.error


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.005)


@pytest.fixture()
async def sim() -> AsyncIterator[SimulatedFreeSwitch]:
    s = await started(hostname="vm")
    s.fork_websocket = True
    try:
        yield s
    finally:
        await s.stop()


# =====================================================================================================
# audio helpers
# =====================================================================================================
def tone(freq: float, ms: int, rate: int, amp: int = 8000, phase: int = 0) -> bytes:
    n = rate * ms // 1000
    return array("h", [round(amp * math.sin(2 * math.pi * freq * (i + phase) / rate)) for i in range(n)]).tobytes()


def samples(pcm: bytes) -> list[int]:
    return list(array("h", pcm))


def frames_of(pcm: bytes, size: int) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def loud(frame: bytes) -> bool:
    return any(abs(s) > 100 for s in array("h", frame))


def dominant(frame: bytes, candidates: tuple[int, ...], rate: int = 8000) -> int:
    """0 for silence, else the candidate frequency with the most power (Goertzel)."""
    x = array("h", frame)
    if not loud(frame):
        return 0

    def power(f: int) -> float:
        w = 2 * math.cos(2 * math.pi * f / rate)
        s1 = s2 = 0.0
        for v in x:
            s1, s2 = v + w * s1 - s2, s1
        return s1 * s1 + s2 * s2 - w * s1 * s2

    return max(candidates, key=power)


def runs(values: list[int]) -> list[tuple[int, int]]:
    """[(value, run length)] without the silent runs."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return [r for r in out if r[0]]


def mark(name: str) -> str:
    return json.dumps({"type": "mark", "data": {"name": name}}, separators=(",", ":"))


def reply(name: str, event: str) -> str:
    return '{"type": "mark", "data": {"name":"' + name + '", "event": "' + event + '"}}'


async def streaming_call(sim: SimulatedFreeSwitch, *, silence: bool = True, **kw: Any) -> Any:
    """A PCMU call that answers and parks; ``send_silence_when_idle=-1`` set before (fixture 10 call 1) or not."""
    variables = {"send_silence_when_idle": "-1"} if silence else {}
    return await fixture_call(sim, answered=True, variables=variables, **kw)


async def stream_fork(sim: SimulatedFreeSwitch, ch: Any, url: str, stream_rate: int = 8000) -> Any:
    cmd = f'uuid_audio_fork {ch.uuid} start {url} mono 16k audio_fork {{"s":1}} true true {stream_rate}'
    assert await sim.run_api(cmd) == "+OK Success\n"
    client = ch.fork_client
    await asyncio.wait_for(client.connected.wait(), 3)
    return client


def tone_frames(heard: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    return [(t, d) for t, d in heard if loud(d)]


async def heard_tone(client: Any, frames: int, then: int = 20, timeout: float = 10.0) -> None:
    """Wait until ``frames`` frames with audio were heard, then ``then`` more frame intervals."""
    await wait_for(lambda: len(tone_frames(client.heard_frames)) >= frames, timeout)
    await asyncio.sleep(then * client.sim.frame_interval)


# =====================================================================================================
# unit: argument splitting, cJSON, resampler
# =====================================================================================================
def test_argument_splitting_and_unescaping_like_switch_separate_string() -> None:
    meta = {"callId": "x", "say": 'it\'s a "test"', "path": "C:\\tmp", "nl": "a\nb"}
    text = json.dumps(meta, separators=(",", ":"), ensure_ascii=False)
    cmd = dialects.MOD_AUDIO_FORK.start("u1", "ws://h:1/c?t=1", "8k", meta)
    argv = fs_separate(cmd.split(" ", 1)[1], 7)
    assert argv[:6] == ["u1", "start", "ws://h:1/c?t=1", "mono", "8k", "sipagent"]
    assert argv[6] == text, "the metadata arrives byte for byte"
    assert fs_separate("a  'b c'  d\\se f g", 3) == ["a", "b c", "d e f g"], (
        "quotes group, the last slot keeps the rest"
    )


def test_cjson_reads_and_prints_like_freeswitch() -> None:
    obj = cjson_parse(' {"Type":"x","n":1.0,"f":0.1,"big":1e20,"a":[true,null],"u":"é\\u0001"} trailing')
    assert obj.get_item("type") == "x", "keys are case-insensitive"
    assert cjson_print(obj) == '{"Type":"x","n":1,"f":0.1,"big":1e+20,"a":[true,null],"u":"é\\u0001"}'
    assert cjson_print(cjson_parse('{"a":1,"a":2}')) == '{"a":1,"a":2}', "duplicates are kept"


def test_resampler_is_continuous_across_chunks() -> None:
    up = Resampler(8000, 16000)
    x = list(range(0, 1600, 10))
    out = up.process(x[:80]) + up.process(x[80:])
    assert out[:6] == [0, 5, 10, 15, 20, 25] and all(b - a == 5 for a, b in itertools.pairwise(out))
    down = Resampler(16000, 8000)
    assert down.process([1, 3, 5]) + down.process([7]) == [2, 6]


def test_stream_playout_holdback_and_mark_limit() -> None:
    """libwebsockets hands 1 KiB pieces to the module: one 32000 B frame (1 s at 16k) leaves 72 ms in the prebuffer
    (rtp-analysis s8: 940 ms heard, 4 frames more at the next utterance); at most 30 pending marks."""
    p = StreamPlayout(16000, 8000)
    p.feed(tone(600, 1000, 16000))
    assert len(p.playout) == 928 * 8 and len(p.prebuffer) == 72 * 16
    p.feed(b"\x01")  # an odd byte waits for its partner
    assert p.carry == b"\x01" and len(p.prebuffer) == 72 * 16
    q = StreamPlayout(8000, 8000)
    assert [q.add_mark(f"m{i}") for i in range(31)] == [True] * 30 + [False]
    assert q.tick(160) == ([], [("m0", "playout")]), "nothing buffered: one inventory mark per frame"
    q.kill()
    data, notes = q.tick(160)
    assert data == [] and notes == [(f"m{i}", "cleared") for i in range(1, 30)]


# =====================================================================================================
# upgrade request, metadata, binary pacing
# =====================================================================================================
@pytest.mark.parametrize(("rate", "size"), [("8k", 320), ("16k", 640)])
async def test_upgrade_metadata_first_then_paced_l16_frames(sim: SimulatedFreeSwitch, rate: str, size: int) -> None:
    async with ws_server() as srv:
        ch = await fixture_call(sim, answered=True)
        speech = tone(440, 400, 8000, amp=12000)
        sim.set_caller_audio(ch.uuid, speech)
        meta = {"callId": ch.uuid, "note": "spaces and 'quotes' and \\ back\\slashes", "q": '"x"'}
        url = srv.url(f"/calls/{ch.uuid}?token=abc")
        cmd = dialects.MOD_AUDIO_FORK.start(ch.uuid, url, rate, meta)
        c = await Client.open(sim, events="plain CUSTOM mod_audio_fork::connect")
        assert await c.api(cmd) == "+OK Success\n"
        assert not c.evs(), "+OK Success comes before the connect"
        await c.wait_event("mod_audio_fork::connect")
        conn = await srv.conn()
        await conn.wait_binary(40)
        client = ch.fork_client
        # the upgrade request as libwebsockets writes it (fixture 05 ws.txt)
        assert conn.path == f"/calls/{ch.uuid}?token=abc" == client.request_path
        assert [k for k, _ in conn.headers] == LWS_HEADERS
        h = dict(conn.headers)
        assert h["Host"] == "127.0.0.1" and h["Origin"] == "http://127.0.0.1" and h["Sec-WebSocket-Protocol"] == SUB
        assert conn.ws.subprotocol == SUB == client.subprotocol
        # metadata first, verbatim after FreeSWITCH's unescaping
        first_text_t, first_text = conn.texts[0]
        assert first_text == json.dumps(meta, separators=(",", ":"), ensure_ascii=False) == client.metadata
        assert first_text_t <= conn.binary[0][0]
        sizes = {len(b) for _, b in conn.binary}
        assert sizes == {size}
        # the caller's audio, resampled to the fork rate
        got = b"".join(b for _, b in conn.binary)
        if rate == "8k":
            assert got[: len(speech)] == speech
        else:
            n = len(speech) - 2  # samples at 16 kHz, but for the last interpolated one
            assert samples(got)[:n] == Resampler(8000, 16000).process(samples(speech))[:n]
        assert not any(got[2 * len(speech) + 64 :]), "silence once the caller's audio is exhausted"
        # 20 ms absolute schedule, no drift
        t = client.send_times
        assert len(t) == client.sent_frames >= 40
        slope = (t[-1] - t[0]) / (len(t) - 1)
        assert abs(slope - 0.02) < 0.0005, slope
        assert max(abs(x - (t[0] + 0.02 * i)) for i, x in enumerate(t)) < 0.02
        await c.close()


async def test_basic_auth_header_appended_from_channel_variables(sim: SimulatedFreeSwitch) -> None:
    async with ws_server() as srv:
        ch = await fixture_call(sim, answered=True, variables={"MOD_AUDIO_BASIC_AUTH_USERNAME": "u"})
        ch.setvar("MOD_AUDIO_BASIC_AUTH_PASSWORD", "p")
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} start {srv.url()} mono 8k") == "+OK Success\n"
        conn = await srv.conn()
        assert conn.headers[-1] == ("Authorization", "Basic " + base64.b64encode(b"u:p").decode())


# =====================================================================================================
# fixture 05, replayed by a real server
# =====================================================================================================
@needs_shared
async def test_fixture_05_replayed_over_a_real_websocket(sim: SimulatedFreeSwitch) -> None:
    path = SHARED / "05-audio-fork"
    rec = recorded_events(path / "esl.bin")
    rec_uuid = rec[0].get("Unique-ID")
    pcm = tone(440, 400, 8000)
    play = {"audioContentType": "raw", "sampleRate": 8000, "audioContent": base64.b64encode(pcm).decode()}
    play["textContent"] = "tone"
    sent = [
        {"type": "transcription", "data": {"text": "hi"}},
        {"type": "playAudio", "data": play},
        {"type": "killAudio"},
        {"foo": "bar", "n": 1},
        {"type": "error", "data": {"code": 7, "msg": "server-side error test"}},
    ]

    async def script(conn: Conn) -> None:
        if conn.path.endswith("/third"):
            return
        await conn.wait_texts(1)
        for msg in sent:
            await conn.ws.send(json.dumps(msg))
        await conn.ws.send("this is not json")
        await conn.ws.send(b"\x00\x01" * 160)

    async with ws_server(script) as srv:
        subs = "connect disconnect connect_failed play_audio kill_audio transcription json error buffer_overrun"
        subs += " transfer"
        events = "plain CHANNEL_ANSWER CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CUSTOM "
        c = await Client.open(sim, events=events + " ".join(f"mod_audio_fork::{x}" for x in subs.split()))
        ch = await fixture_call(sim, answered=True)
        url = srv.url(f"/call/{ch.uuid}?token=abc")
        assert await c.api(f'uuid_audio_fork {ch.uuid} start {url} mono 16k {{"callId":"x","agent":"y"}}') == (
            "+OK Success\n"
        )
        await c.wait_event("mod_audio_fork::error", timeout=3)
        await asyncio.sleep(0.05)  # "this is not json" and the binary frame: nothing
        assert await c.api(f'uuid_audio_fork {ch.uuid} send_text {{"type":"note","n":1}}') == "+OK Success\n"
        assert await c.api(f'uuid_audio_fork {ch.uuid} stop {{"final":"bye"}}') == "+OK Success\n"
        conn = await srv.conn()
        await asyncio.wait_for(conn.closed.wait(), 3)
        assert [t for _, t in conn.texts] == [
            '{"callId":"x","agent":"y"}',
            '{"type":"note","n":1}',
            '{"final":"bye"}',
        ]
        assert conn.close_rcvd == (1000, "")
        assert await c.api(f"uuid_audio_fork {ch.uuid} start ws://127.0.0.1:1/nobody mono 8k") == "+OK Success\n"
        await c.wait_event("mod_audio_fork::connect_failed", timeout=3)
        third = srv.url(f"/call/{ch.uuid}/third")
        assert await c.api(f'uuid_audio_fork {ch.uuid} start {third} mono 8k fork3 {{"third":true}}') == (
            "+OK Success\n"
        )
        m = c.mark()
        await c.wait_event("mod_audio_fork::connect", since=m, timeout=3)
        conn3 = await srv.conn(1)
        await conn3.wait_binary(5)
        assert {len(b) for _, b in conn3.binary} == {320}
        assert await c.api(f"uuid_kill {ch.uuid}") == "+OK\n"
        await c.wait_event("CHANNEL_HANGUP_COMPLETE")
        await asyncio.wait_for(conn3.closed.wait(), 3)
        assert conn3.close_rcvd == (1000, ""), "close 1000 after CHANNEL_HANGUP, no ::disconnect"
        await c.settle()
        got = c.evs()
        assert_same_events(got, rec)
        bodies = [(e.name, e.body) for e in got if e.body]
        assert bodies == [(e.name, (e.body or "").replace(rec_uuid, ch.uuid)) for e in rec if e.body]
        assert sim.files[f"/tmp/{ch.uuid}_0.tmp.r8"] == pcm


@needs_shared
async def test_server_close_matches_fixture_05_server_close(sim: SimulatedFreeSwitch) -> None:
    path = SHARED / "05-audio-fork" / "server-close"
    rec = recorded_events(path / "esl.bin")

    async def script(conn: Conn) -> None:
        await conn.wait_texts(1)
        await asyncio.sleep(0.05)
        await conn.ws.send(json.dumps({"type": "disconnect", "data": {"why": "server says bye via message"}}))
        await asyncio.sleep(0.05)
        await conn.ws.close(4000, "server done")

    async with ws_server(script) as srv:
        subs = " ".join(f"mod_audio_fork::{x}" for x in ("connect", "disconnect", "connect_failed", "error", "json"))
        c = await Client.open(sim, events=f"plain CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE CUSTOM {subs}")
        ch = await fixture_call(sim, answered=True)
        assert await c.api(f'uuid_audio_fork {ch.uuid} start {srv.url("/srvclose")} mono 8k {{"k":1}}') == (
            "+OK Success\n"
        )
        client = ch.fork_client
        await asyncio.wait_for(client.closed.wait(), 3)
        conn = await srv.conn()
        await asyncio.wait_for(conn.closed.wait(), 3)
        assert conn.close_rcvd == (4000, "server done") == (client.close_code, client.close_reason), "echoed"
        assert await c.api(f"uuid_audio_fork {ch.uuid} stop") == "+OK Success\n", "the bug is still attached"
        assert ch.event_names()[-1] == "MEDIA_BUG_STOP"
        assert await c.api(f"uuid_kill {ch.uuid}") == "+OK\n"
        await c.wait_event("CHANNEL_HANGUP_COMPLETE")
        await c.settle()
        assert_same_events(c.evs(), rec)
        assert [e.body for e in c.evs()] == [e.body for e in rec]


# =====================================================================================================
# closing
# =====================================================================================================
async def test_server_drops_tcp_fires_disconnect_without_body(sim: SimulatedFreeSwitch) -> None:
    async def script(conn: Conn) -> None:
        await conn.wait_binary(3)
        conn.ws.transport.abort()

    async with ws_server(script) as srv:
        ch = await fixture_call(sim, answered=True)
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} start {srv.url()} mono 8k") == "+OK Success\n"
        client = ch.fork_client
        await asyncio.wait_for(client.closed.wait(), 3)
        custom = [(e.subclass, e.body) for e in ch.events if e.name == "CUSTOM"]
        assert custom == [("mod_audio_fork::connect", None), ("mod_audio_fork::disconnect", None)]
        assert client.close_code == 1006 and client.state == "closed"
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} stop") == "+OK Success\n"
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} stop") == "-ERR Operation Failed\n"


async def test_remote_hangup_closes_1000_without_disconnect(sim: SimulatedFreeSwitch) -> None:
    async with ws_server() as srv:
        ch = await fixture_call(sim, answered=True)
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} start {srv.url()} mono 16k sipagent") == "+OK Success\n"
        conn = await srv.conn()
        await conn.wait_binary(2)
        await sim.remote_hangup(ch.uuid)
        await asyncio.wait_for(conn.closed.wait(), 3)
        assert conn.close_rcvd == (1000, "")
        names = ch.event_names()
        assert "mod_audio_fork::disconnect" not in names
        assert names.index("CHANNEL_HANGUP") < names.index("MEDIA_BUG_STOP")
        assert sim.fork_client(ch.uuid) is not None and sim.fork_client(ch.uuid).close_code == 1000


async def test_connect_failures_keep_the_bug_attached(sim: SimulatedFreeSwitch) -> None:
    async def reject(connection: ServerConnection, request: Any) -> Response:
        return connection.respond(403, "no\n")

    async with ws_server(process_request=reject) as srv:
        ch = await fixture_call(sim, answered=True)
        for url in ("ws://127.0.0.1:1/dead", srv.url("/forbidden"), "ws://no-such-host.invalid/x"):
            bug = url.rsplit("/", 1)[-1]
            assert await sim.run_api(f"uuid_audio_fork {ch.uuid} start {url} mono 8k {bug}") == "+OK Success\n"
            await asyncio.wait_for(ch.fork_client.closed.wait(), 5)
            ev = ch.events[-1]
            assert (ev.subclass, ev.body) == ("mod_audio_fork::connect_failed", '{"reason":"Unable to connect"}')
            again = f"uuid_audio_fork {ch.uuid} start {url} mono 8k {bug}"
            assert await sim.run_api(again) == "-ERR Operation Failed\n", "bug already attached"
        await sim.remote_hangup(ch.uuid)
        assert ch.event_names().count("MEDIA_BUG_STOP") == 3, "15-misc: MEDIA_BUG_STOP on hangup after connect_failed"


async def test_scripted_outcomes_win_over_the_socket(sim: SimulatedFreeSwitch) -> None:
    sim.set_fork_outcome("ws://127.0.0.1:9/*", "connect_failed")
    ch = await fixture_call(sim, answered=True)
    assert await sim.run_api(f"uuid_audio_fork {ch.uuid} start ws://127.0.0.1:9/x mono 8k") == "+OK Success\n"
    await sim.wait_for(lambda: "mod_audio_fork::connect_failed" in ch.event_names())
    assert ch.fork_client is None
    sim.fork_overrun(ch.uuid)
    assert (ch.events[-1].subclass, ch.events[-1].body) == ("mod_audio_fork::buffer_overrun", None)


async def test_manual_buffer_overrun_and_usage_errors(sim: SimulatedFreeSwitch) -> None:
    async with ws_server() as srv:
        ch = await fixture_call(sim, answered=True)
        assert (await sim.run_api(f"uuid_audio_fork {ch.uuid} start {srv.url()}")).startswith("-USAGE: <uuid> [start")
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} start {srv.url()} quad 8k") == "", "nothing written"
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} start {srv.url()} mono 8k") == "+OK Success\n"
        await asyncio.wait_for(ch.fork_client.connected.wait(), 3)
        sim.fork_overrun(ch.uuid)
        assert (ch.events[-1].subclass, ch.events[-1].body) == ("mod_audio_fork::buffer_overrun", None)
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} stop_play") == "+OK Success\n"
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} pause") == "+OK Success\n"


# =====================================================================================================
# playAudio files and uuid_broadcast / uuid_break
# =====================================================================================================
async def test_play_audio_file_is_played_by_uuid_broadcast_and_broken_by_uuid_break(sim: SimulatedFreeSwitch) -> None:
    pcm = tone(600, 300, 8000)

    async def script(conn: Conn) -> None:
        await conn.wait_texts(1)
        data = {"audioContentType": "raw", "sampleRate": 8000, "audioContent": base64.b64encode(pcm).decode()}
        await conn.ws.send(json.dumps({"type": "playAudio", "data": data}))

    sim.frame_interval = 0.005
    async with ws_server(script) as srv:
        ch = await fixture_call(sim, answered=True)
        assert await sim.run_api(f'uuid_audio_fork {ch.uuid} start {srv.url()} mono 8k {{"m":1}}') == "+OK Success\n"
        await sim.wait_for(lambda: "mod_audio_fork::play_audio" in ch.event_names(), 3)
        ev = ch.events[-1]
        path = f"/tmp/{ch.uuid}_0.tmp.r8"
        assert ev.body == json.dumps(
            {"audioContentType": "raw", "sampleRate": 8000, "file": path}, separators=(",", ":")
        )
        assert ch.audio.heard_frames == [], "nothing writes to a parked call without send_silence_when_idle"
        assert await sim.run_api(f"uuid_broadcast {ch.uuid} {path} aleg") == "+OK Message sent\n"
        await sim.wait_for(lambda: "PLAYBACK_STOP" in ch.event_names(), 3)
        heard = ch.audio.heard_pcm()
        assert heard == pcm, "the file, 20 ms per frame, then nothing"
        names = [n for n in ch.event_names() if n.startswith(("CHANNEL_EXECUTE", "PLAYBACK"))]
        assert names[-4:] == ["CHANNEL_EXECUTE", "PLAYBACK_START", "PLAYBACK_STOP", "CHANNEL_EXECUTE_COMPLETE"]
        stop = next(e for e in reversed(ch.events) if e.name == "PLAYBACK_STOP")
        assert stop.get("Playback-File-Path") == path and stop.get("Playback-Status") == "done"
        assert ch.events[-1].get("Application-Response") == "FILE PLAYED"
        # an endless silence stream, broken by uuid_break; `all` drops the queued broadcast too
        for path2 in ("silence_stream://-1", path):
            assert await sim.run_api(f"uuid_broadcast {ch.uuid} {path2}") == "+OK Message sent\n"
        await sim.wait_for(lambda: ch.event_names().count("PLAYBACK_START") == 2, 3)
        assert await sim.run_api(f"uuid_break {ch.uuid} all") == "+OK\n"
        await sim.wait_for(lambda: ch.event_names().count("PLAYBACK_STOP") == 2, 3)
        assert ch.events[-2].get("Playback-Status") == "break"
        await asyncio.sleep(0.1)
        assert ch.event_names().count("PLAYBACK_START") == 2
        assert await sim.run_api("uuid_broadcast 00000000-0000-0000-0000-000000000000 x") == "-ERR invalid uuid\n"


# =====================================================================================================
# jambonz streaming (fixture 10)
# =====================================================================================================
async def test_streamed_audio_is_heard_after_the_prebuffer_with_tail_holdback(sim: SimulatedFreeSwitch) -> None:
    """Paced 20 ms frames at the leg rate: first audio ~160 ms after the first frame, sample-exact, the last
    0..79 ms held back until more audio (here: 80 ms of silence padding) arrives."""
    speech = tone(1000, 1000, 8000)

    async def script(conn: Conn) -> None:
        await conn.wait_texts(1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, f in enumerate(frames_of(speech, 320)):
            await asyncio.sleep(max(0, start + i * 0.02 - loop.time()))
            await conn.ws.send(f)
        conn.sent_last = loop.time()  # type: ignore[attr-defined]
        conn.first_sent = start  # type: ignore[attr-defined]

    async with ws_server(script) as srv:
        ch = await streaming_call(sim)
        client = await stream_fork(sim, ch, srv.url())
        conn = await srv.conn()
        await wait_for(lambda: hasattr(conn, "sent_last"), 3)
        await asyncio.sleep(0.3)
        toned = tone_frames(client.heard_frames)
        lead = toned[0][0] - conn.first_sent  # type: ignore[attr-defined]
        assert 0.14 <= lead <= 0.2, lead  # recorded: 155 ms
        assert len(toned) == 48, "1000 ms = 160 + 10 x 80 + 40 held back"
        heard = b"".join(d for _, d in client.heard_frames)
        start = heard.index(speech[:320])
        assert heard[start : start + 960 * 16] == speech[: 960 * 16], "sample-exact at the leg rate"
        assert not any(heard[start + 960 * 16 :])
        await conn.ws.send(bytes(640))  # 40 ms of silence make 80 ms pending: the held 40 ms play
        await asyncio.sleep(0.15)
        assert b"".join(d for _, d in tone_frames(client.heard_frames)) == speech


async def test_kill_audio_silences_within_one_frame_and_keeps_the_tail(sim: SimulatedFreeSwitch) -> None:
    burst = tone(1000, 2000, 8000)

    async def script(conn: Conn) -> None:
        await conn.wait_texts(1)
        for f in frames_of(burst, 320):
            await conn.ws.send(f)
        await asyncio.sleep(0.55)
        conn.kill_sent = asyncio.get_running_loop().time()  # type: ignore[attr-defined]
        await conn.ws.send('{"type":"killAudio"}')

    async with ws_server(script) as srv:
        ch = await streaming_call(sim)
        client = await stream_fork(sim, ch, srv.url())
        conn = await srv.conn()
        await sim.wait_for(lambda: "mod_audio_fork::kill_audio" in ch.event_names(), 3)
        await asyncio.sleep(0.1)
        assert next(e for e in ch.events if e.subclass == "mod_audio_fork::kill_audio").body is None
        kill = client.kill_times[0]
        after = [(t, d) for t, d in client.heard_frames if t > kill]
        assert after and not loud(after[0][1]), "the next frame is silent"
        assert after[0][0] - kill <= 0.025, after[0][0] - kill  # recorded: 2.5..18.7 ms
        assert not any(loud(d) for _, d in after)
        before = len(tone_frames(client.heard_frames))
        assert before >= 25 and max(t for t, d in client.heard_frames if loud(d)) < kill
        await conn.ws.send(tone(1000, 80, 8000))  # the park loop still writes: later audio plays
        await asyncio.sleep(0.2)
        assert len(tone_frames(client.heard_frames)) == before + 4


async def test_marks_playout_cleared_and_off_by_one_after_kill_like_s3b(sim: SimulatedFreeSwitch) -> None:
    """Fixture 10 s3b (stream-rate 8000 on PCMU): m1 playout at 1 s; killAudio: m2, m3 cleared; m4 silently
    swallowed, "m4" reported at m5's position, "m5" at m6's, m6 never."""
    sim.frame_interval = 0.005
    second = tone(1000, 1000, 8000)
    half = tone(1000, 500, 8000)
    step = sim.frame_interval

    async def script(conn: Conn) -> None:
        await conn.wait_texts(1)
        for name in ("m1", "m2", "m3"):
            for f in frames_of(second, 320):
                await conn.ws.send(f)
            await conn.ws.send(mark(name))
        await asyncio.sleep(75 * step)
        await conn.ws.send('{"type":"killAudio"}')
        await asyncio.sleep(50 * step)
        for name in ("m4", "m5", "m6"):
            for f in frames_of(half, 320):
                await conn.ws.send(f)
            await conn.ws.send(mark(name))
        for f in frames_of(tone(1000, 200, 8000), 320):
            await conn.ws.send(f)

    async with ws_server(script) as srv:
        ch = await streaming_call(sim)
        client = await stream_fork(sim, ch, srv.url())
        conn = await srv.conn()
        await conn.wait_texts(6, timeout=5)
        await asyncio.sleep(40 * step)
        replies = [t for _, t in conn.texts[1:]]
        assert replies == [
            reply("m1", "playout"),
            reply("m2", "cleared"),
            reply("m3", "cleared"),
            reply("m4", "playout"),
            reply("m5", "playout"),
        ]
        assert reply("m1", "playout") == '{"type": "mark", "data": {"name":"m1", "event": "playout"}}'

        def tone_before(t: float) -> int:
            return sum(1 for ft, d in client.heard_frames if ft < t and loud(d))

        times = {(n, e): t for t, n, e in client.mark_replies}
        assert tone_before(times["m1", "playout"]) == 50, "exactly 1 s of audio before m1"
        kill = client.kill_times[0]
        post = tone_before(times["m4", "playout"]) - tone_before(kill)
        assert post == 52, "40 ms held back + 500 + 500 ms: m5's position (recorded 1.040 s)"
        assert tone_before(times["m5", "playout"]) - tone_before(kill) == 77


async def test_clear_marks_and_stop_play_like_s5b_s6b(sim: SimulatedFreeSwitch) -> None:
    sim.frame_interval = 0.005
    step = sim.frame_interval
    second = tone(1000, 1000, 8000)

    def script_for(action: str) -> Script:
        async def script(conn: Conn) -> None:
            await conn.wait_texts(1)
            for name in ("m1", "m2") if action == "stop_play" else ("m1", "m2", "m3"):
                for f in frames_of(second, 320):
                    await conn.ws.send(f)
                await conn.ws.send(mark(name))
            if action == "stop_play":
                for f in frames_of(second, 320):
                    await conn.ws.send(f)
                await wait_for(lambda: len(conn.texts) >= 2)  # m1 played out
                await asyncio.sleep(25 * step)
                conn.action = True  # type: ignore[attr-defined]
                await wait_for(lambda: getattr(conn, "done", False))
            else:
                await asyncio.sleep(25 * step)
                await conn.ws.send('{"type":"clearMarks"}')
            await asyncio.sleep(150 * step)
            for f in frames_of(tone(1000, 500, 8000), 320):
                await conn.ws.send(f)
            await conn.ws.send(mark("m4" if action == "clear" else "m3"))
            for f in frames_of(tone(1000, 200, 8000), 320):
                await conn.ws.send(f)

        return script

    async with ws_server(script_for("clear")) as srv:
        ch = await streaming_call(sim)
        client = await stream_fork(sim, ch, srv.url())
        conn = await srv.conn()
        await heard_tone(client, 184)  # 3 s (40 ms kept) + 0.74 s (20 ms kept); markers may shift a sample
        assert [t for _, t in conn.texts[1:]] == [], "clearMarks: no reply; m3 (not yet in the audio) swallows m4"
    async with ws_server(script_for("stop_play")) as srv:
        ch = await streaming_call(sim)
        client = await stream_fork(sim, ch, srv.url())
        conn = await srv.conn()
        await wait_for(lambda: getattr(conn, "action", False), 5)
        assert await sim.run_api(f"uuid_audio_fork {ch.uuid} stop_play") == "+OK Success\n"
        t = asyncio.get_running_loop().time()
        conn.done = True  # type: ignore[attr-defined]
        await wait_for(lambda: len(conn.texts) >= 3, 10)
        await asyncio.sleep(20 * step)
        assert [x for _, x in conn.texts[1:]] == [reply("m1", "playout"), reply("m2", "playout")]
        after = [(ft, d) for ft, d in client.heard_frames if ft > t]
        # the very next frame is silent ("at once"); its arrival time only bounds a stalled clock (the loop may
        # lag a few ms behind a 5 ms frame when the suite runs on every core)
        assert not loud(after[0][1]) and after[0][0] - t <= 10 * step, "silent at once, no event"
        assert "mod_audio_fork::kill_audio" not in ch.event_names()
        (t_m2,) = [rt for rt, n, _ in client.mark_replies if n == "m2"]
        assert t_m2 > t, "m2 stayed pending and is reported at m3's position"


async def test_marks_never_come_back_when_the_stream_rate_differs_like_s1(sim: SimulatedFreeSwitch) -> None:
    sim.frame_interval = 0.005
    second = tone(1000, 1000, 16000)

    async def script(conn: Conn) -> None:
        await conn.wait_texts(1)
        for name in ("m1", "m2"):
            for f in frames_of(second, 640):
                await conn.ws.send(f)
            await conn.ws.send(mark(name))

    async with ws_server(script) as srv:
        ch = await streaming_call(sim)
        client = await stream_fork(sim, ch, srv.url(), stream_rate=16000)
        conn = await srv.conn()
        await heard_tone(client, 100)
        assert conn.texts[1:] == [] and client.mark_replies == []
        toned = tone_frames(client.heard_frames)
        assert len(toned) == 100, "16 kHz resampled to the 8 kHz leg: 2 s heard (2000 = 160 + 23 x 80)"
        assert {dominant(d, (500, 1000, 2000)) for _, d in toned} == {1000}


async def test_real_minus_one_samples_are_taken_for_markers_like_s7b(sim: SimulatedFreeSwitch) -> None:
    """A real sample == -1 pops a pending mark (m1 reported at 0.5 s instead of 1 s) and is dropped from the audio
    (the frame is padded); m2, sent after the last frame, comes when the buffer runs dry."""
    sim.frame_interval = 0.005
    s1 = array("h", tone(1000, 1000, 8000))
    s1[4000] = -1
    s2 = array("h", tone(1000, 1000, 8000, phase=3))

    async def script(conn: Conn) -> None:
        await conn.wait_texts(1)
        for f in frames_of(s1.tobytes(), 320):
            await conn.ws.send(f)
        await conn.ws.send(mark("m1"))
        for f in frames_of(s2.tobytes(), 320):
            await conn.ws.send(f)
        await conn.ws.send(mark("m2"))

    async with ws_server(script) as srv:
        ch = await streaming_call(sim)
        client = await stream_fork(sim, ch, srv.url())
        conn = await srv.conn()
        await conn.wait_texts(3, timeout=5)
        await asyncio.sleep(10 * sim.frame_interval)
        assert [t for _, t in conn.texts[1:]] == [reply("m1", "playout"), reply("m2", "playout")]
        times = {n: t for t, n, _ in client.mark_replies}
        assert sum(1 for t, d in client.heard_frames if t < times["m1"] and loud(d)) == 25
        # 2 s plus m1's real marker played as a sample: 16001 samples in 101 frames, then the buffer is dry
        assert sum(1 for t, d in client.heard_frames if t < times["m2"] and loud(d)) == 101
        heard = samples(b"".join(d for _, d in tone_frames(client.heard_frames)))
        # the fake marker is dropped (its frame padded with one 0); m1's real marker then plays as a -1 sample
        expected = list(s1[:4000]) + list(s1[4001:4160]) + [0] + list(s1[4160:]) + [-1] + list(s2)
        assert heard[: len(expected)] == expected[: len(heard)]
        assert len(heard) >= 16000


async def test_nothing_heard_without_a_writer_until_a_broadcast_writes_like_n1(sim: SimulatedFreeSwitch) -> None:
    sim.frame_interval = 0.005
    second = tone(1000, 1000, 8000)

    async def script(conn: Conn) -> None:
        await conn.wait_texts(1)
        for f in frames_of(second, 320):
            await conn.ws.send(f)
        await conn.ws.send(mark("m1"))
        for f in frames_of(tone(1000, 100, 8000), 320):
            await conn.ws.send(f)

    async with ws_server(script) as srv:
        ch = await streaming_call(sim, silence=False)
        client = await stream_fork(sim, ch, srv.url())
        conn = await srv.conn()
        await asyncio.sleep(60 * sim.frame_interval)
        assert client.heard_frames == [] and conn.texts[1:] == [], "plain park: no RTP, audio buffered"
        assert await sim.run_api(f"uuid_broadcast {ch.uuid} silence_stream://-1 aleg") == "+OK Message sent\n"
        await conn.wait_texts(2)
        assert conn.texts[1][1] == reply("m1", "playout")
        await asyncio.sleep(10 * sim.frame_interval)
        # the stale 1.1 s plays once something writes: 1040 ms (60 ms kept back), the marker sample pushes the
        # last tone sample into a 53rd frame (recorded at 16 kHz, where the resampler eats the marker: 52)
        assert len(tone_frames(client.heard_frames)) == 53
        await conn.ws.send('{"type":"killAudio"}')
        await sim.wait_for(lambda: "PLAYBACK_STOP" in ch.event_names(), 2)
        stop = next(e for e in ch.events if e.name == "PLAYBACK_STOP")
        assert stop.get("Playback-Status") == "break", "killAudio's CF_BREAK ends the broadcast"
        n = len(client.heard_frames)
        for f in frames_of(second, 320):
            await conn.ws.send(f)
        await asyncio.sleep(100 * sim.frame_interval)
        assert len(client.heard_frames) == n, "nothing writes any more: later audio is lost"


@needs_shared
async def test_frame_sizes_and_holdback_match_s8(sim: SimulatedFreeSwitch) -> None:
    """Fixture 10 s8 (16 kHz stream on PCMU): one 32000 B frame, 333 B frames, two 16000 B frames, 64 B frames.
    Runs of the dominant frequency per 20 ms frame agree with rtp-analysis.txt within one frame."""
    sim.frame_interval = 0.005
    step = sim.frame_interval
    parts = [
        [tone(600, 1000, 16000)],
        frames_of(tone(1500, 1000, 16000), 333),
        frames_of(tone(1000, 1000, 16000), 16000),
        frames_of(tone(2000, 1000, 16000), 64),
    ]

    async def script(conn: Conn) -> None:
        await conn.wait_texts(1)
        for frames in parts:
            for f in frames:
                await conn.ws.send(f)
            await asyncio.sleep(75 * step)

    async with ws_server(script) as srv:
        ch = await streaming_call(sim)
        client = await stream_fork(sim, ch, srv.url(), stream_rate=16000)
        await heard_tone(client, 190, then=40)
        got = runs([dominant(d, (600, 1000, 1500, 2000)) for _, d in client.heard_frames])
        recorded = [(600, 47), (600, 4), (1500, 46), (1500, 4), (1000, 49), (1000, 1), (2000, 47)]
        merged: list[tuple[int, int]] = []
        for f, n in got:  # adjacent runs of the same tone are separated by silence in the recording too
            merged.append((f, n))
        assert [f for f, _ in merged] == [f for f, _ in recorded], merged
        for (f, n), (_, m) in zip(merged, recorded, strict=True):
            assert abs(n - m) <= 1, (f, n, m)
