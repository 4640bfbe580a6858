"""Live reloads over Kamailio's JSON-RPC datagram socket: the messages (no I/O), the client against small local
servers, and against a real Kamailio 5.6 started here (skipped without /usr/sbin/kamailio)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrator.edge import rpc
from orchestrator.edge.jsonrpc import Fault, ProtocolError, Response, decode_response, encode_request

KAMAILIO = os.environ.get("KAMAILIO_BIN", "/usr/sbin/kamailio")
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"


# -- the messages -----------------------------------------------------------------------------------------
def test_requests_are_json_rpc_2_with_positional_params() -> None:
    assert json.loads(encode_request("dispatcher.reload", (), 7)) == {
        "jsonrpc": "2.0",
        "method": "dispatcher.reload",
        "id": 7,
    }
    doc = json.loads(encode_request("dispatcher.set_state", ["ip", 1, "sip:127.0.0.1:5080"], 8))
    assert doc["params"] == ["ip", 1, "sip:127.0.0.1:5080"]


@pytest.mark.parametrize("method", ["", "dispatcher.reload; rm -rf /", "a..b", ".x", "x" * 65, "ümlaut.x"])
def test_a_method_name_kamailio_cannot_have_is_refused(method: str) -> None:
    with pytest.raises(ValueError, match="not an RPC method name"):
        encode_request(method, (), 1)


def test_params_that_are_not_plain_json_are_refused() -> None:
    with pytest.raises(ValueError, match="not plain JSON"):
        encode_request("core.echo", [float("nan")], 1)
    with pytest.raises(ValueError, match="not plain JSON"):
        encode_request("core.echo", [object()], 1)


def test_responses_result_and_fault() -> None:
    assert decode_response(b'{"jsonrpc":"2.0","result":"Ok.","id":3}') == Response(3, result="Ok.")
    assert decode_response(b'{"jsonrpc":"2.0","result":null,"id":"a"}') == Response("a", result=None)
    assert decode_response(b'{"jsonrpc":"2.0","error":{"code":500,"message":"Method Not Found"},"id":3}') == Response(
        3, fault=Fault(500, "Method Not Found")
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[1]",
        b'{"result": 1, "id": 1}',
        b'{"jsonrpc":"1.0","result":1,"id":1}',
        b'{"jsonrpc":"2.0","id":1}',
        b'{"jsonrpc":"2.0","result":1,"id":true}',
        b'{"jsonrpc":"2.0","result":1,"id":[1]}',
        b'{"jsonrpc":"2.0","error":"bad","id":1}',
        b'{"jsonrpc":"2.0","error":{"code":"500","message":"x"},"id":1}',
        b'{"jsonrpc":"2.0","error":{"code":500},"id":1}',
    ],
)
def test_anything_else_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_response(data)


# -- the client against local servers ---------------------------------------------------------------------
Handler = Callable[[dict[str, Any]], list[bytes]]


@asynccontextmanager
async def server(path: Path, handler: Handler) -> AsyncIterator[list[dict[str, Any]]]:
    """A unix datagram server at ``path`` answering each request with the datagrams ``handler`` returns."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()

    async def serve() -> None:
        while True:
            data, addr = await loop.sock_recvfrom(sock, 70000)
            request = json.loads(data)
            seen.append({**request, "from": addr})
            for reply in handler(request):
                await loop.sock_sendto(sock, reply, addr)

    task = asyncio.create_task(serve())
    try:
        yield seen
    finally:
        task.cancel()
        sock.close()


def _ok(request: dict[str, Any]) -> list[bytes]:
    return [json.dumps({"jsonrpc": "2.0", "result": f"did {request['method']}", "id": request["id"]}).encode()]


async def test_a_call_gets_its_result_from_its_own_reply_socket(tmp_path: Path) -> None:
    async with server(tmp_path / "rpc.sock", _ok) as seen:
        assert await rpc.call(tmp_path / "rpc.sock", "core.echo", ["x"]) == "did core.echo"
    assert seen[0]["params"] == ["x"]
    assert seen[0]["from"].startswith(b"\0sipagent-rpc-")  # abstract: nothing left on disk


async def test_a_reply_socket_file_in_reply_dir_is_removed_afterwards(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="rpc") as short:  # a unix socket path has at most 107 bytes
        replies = Path(short)
        async with server(tmp_path / "rpc.sock", _ok) as seen:
            assert await rpc.call(tmp_path / "rpc.sock", "core.echo", reply_dir=replies) == "did core.echo"
        assert Path(os.fsdecode(seen[0]["from"])).parent == replies
        assert list(replies.iterdir()) == []
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    with pytest.raises(rpc.RpcUnavailable, match=r"cannot bind a reply socket in .*ddd"):
        await rpc.call(tmp_path / "rpc.sock", "core.echo", reply_dir=deep)
    assert list(deep.iterdir()) == []


async def test_a_missing_socket_and_nobody_listening_are_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(rpc.RpcUnavailable, match=r"does not exist .*jsonrpcs' datagram transport"):
        await rpc.reload(tmp_path / "nope.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()  # the file stays, nobody reads it: Kamailio killed without cleaning up
    with pytest.raises(rpc.RpcUnavailable, match="nothing listens on Kamailio's RPC socket"):
        await rpc.reload(tmp_path / "stale.sock")


async def test_no_answer_times_out(tmp_path: Path) -> None:
    async with server(tmp_path / "rpc.sock", lambda request: []):
        started = time.monotonic()
        with pytest.raises(rpc.RpcTimeout, match=r"dispatcher.reload: no answer from Kamailio within 0.3 s"):
            await rpc.reload(tmp_path / "rpc.sock", timeout=0.3)
        assert time.monotonic() - started < 1.5


async def test_an_oversized_or_broken_reply_is_refused(tmp_path: Path) -> None:
    def big(request: dict[str, Any]) -> list[bytes]:
        return [json.dumps({"jsonrpc": "2.0", "result": "x" * 5000, "id": request["id"]}).encode()]

    async with server(tmp_path / "rpc.sock", big):
        with pytest.raises(rpc.RpcBadReply, match="larger than 1000 bytes"):
            await rpc.call(tmp_path / "rpc.sock", "core.echo", max_reply=1000)
        assert len(await rpc.call(tmp_path / "rpc.sock", "core.echo", max_reply=6000)) == 5000
    async with server(tmp_path / "rpc2.sock", lambda request: [b"<html>"]):
        with pytest.raises(rpc.RpcBadReply, match="not JSON"):
            await rpc.call(tmp_path / "rpc2.sock", "core.echo")


async def test_a_late_answer_to_an_earlier_call_is_not_taken_for_this_one(tmp_path: Path) -> None:
    def late_then_ok(request: dict[str, Any]) -> list[bytes]:
        stale = {"jsonrpc": "2.0", "result": "old", "id": request["id"] + 100}
        return [json.dumps(stale).encode(), *_ok(request)]

    async with server(tmp_path / "rpc.sock", late_then_ok):
        assert await rpc.call(tmp_path / "rpc.sock", "core.echo") == "did core.echo"


async def test_reload_reports_each_refusal_and_goes_on(tmp_path: Path) -> None:
    def handler(request: dict[str, Any]) -> list[bytes]:
        if request["method"] == "tls.reload":
            return [b'{"jsonrpc":"2.0","error":{"code":500,"message":"Method Not Found"},"id":%d}' % request["id"]]
        return _ok(request)

    async with server(tmp_path / "rpc.sock", handler) as seen:
        done = await rpc.reload(tmp_path / "rpc.sock")
    assert [r["method"] for r in seen] == list(rpc.RELOADS)
    assert [(r.method, r.ok, r.error) for r in done] == [
        ("dispatcher.reload", True, None),
        ("permissions.addressReload", True, None),
        ("tls.reload", False, "error 500: Method Not Found"),
    ]


# -- a real Kamailio ----------------------------------------------------------------------------------------
CFG = """#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
auto_aliases=no
dns=no
rev_dns=no
listen=udp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "jsonrpcs.so"
loadmodule "dispatcher.so"
loadmodule "permissions.so"
modparam("jsonrpcs", "transport", 4)
modparam("jsonrpcs", "dgram_socket", "{dir}/rpc.sock")
modparam("jsonrpcs", "pretty_format", 0)
modparam("dispatcher", "list_file", "{dir}/dispatcher.list")
modparam("dispatcher", "reload_delta", 1)
modparam("permissions", "address_file", "{dir}/address.list")
request_route {{
    sl_send_reply("404", "Not here");
}}
"""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Kamailio 5.6 with jsonrpcs (datagram), dispatcher and permissions reading files in a temp dir."""
    if not (os.path.exists(KAMAILIO) or shutil.which(KAMAILIO)):
        pytest.skip(f"kamailio not installed ({KAMAILIO}; Debian packages kamailio + kamailio-tls-modules)")
    d = tmp_path_factory.mktemp("kam")
    (d / "kamailio.cfg").write_text(CFG.format(port=_free_udp_port(), modules=MODULES, dir=d))
    (d / "dispatcher.list").write_text("1 sip:127.0.0.1:5080 0 0 weight=1\n")
    (d / "address.list").write_text("1 127.0.0.1 32 0 carrier\n")
    log = (d / "kamailio.log").open("wb")
    cmd = [KAMAILIO, "-f", str(d / "kamailio.cfg"), "-DD", "-E", "-Y", str(d), "-P", str(d / "kamailio.pid")]
    cmd += ["-m", "32", "-M", "8"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not (d / "rpc.sock").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"kamailio did not start: {(d / 'kamailio.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield d
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _targets(listing: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (t["DEST"]["URI"], t["DEST"]["ATTRS"]["WEIGHT"])
        for record in listing["RECORDS"]
        for t in record["SET"]["TARGETS"]
    ]


async def test_kamailio_reloads_the_dispatcher_list_and_address_table(kamailio: Path) -> None:
    sock = kamailio / "rpc.sock"
    assert _targets(await rpc.call(sock, "dispatcher.list")) == [("sip:127.0.0.1:5080", 1)]
    (kamailio / "dispatcher.list").write_text("1 sip:127.0.0.1:5080 0 0 weight=2\n1 sip:127.0.0.1:5090 0 0 weight=3\n")
    (kamailio / "address.list").write_text("1 127.0.0.1 32 0 carrier\n2 192.0.2.7 32 0 pbx\n")
    await asyncio.sleep(1.1)  # reload_delta 1 s since a reload another test may have made
    done = await rpc.reload(sock, ["dispatcher.reload", "permissions.addressReload", "tls.reload"])
    assert [(r.method, r.ok) for r in done] == [
        ("dispatcher.reload", True),
        ("permissions.addressReload", True),
        ("tls.reload", False),  # no tls module in this Kamailio: its error, reported, the others done
    ]
    assert done[0].result == "Ok. Dispatcher successfully reloaded."
    assert done[2].error == "error 500: Method Not Found"
    assert _targets(await rpc.call(sock, "dispatcher.list")) == [("sip:127.0.0.1:5090", 3), ("sip:127.0.0.1:5080", 2)]
    dump = json.dumps(await rpc.call(sock, "permissions.addressDump"))
    assert '"ip": "192.0.2.7"' in dump and '"tag": "pbx"' in dump


async def test_kamailio_refusing_a_call_says_why(kamailio: Path) -> None:
    sock = kamailio / "rpc.sock"
    await asyncio.sleep(1.1)
    async with rpc.RpcClient(sock) as client:
        assert await client.call("dispatcher.reload") == "Ok. Dispatcher successfully reloaded."
        with pytest.raises(rpc.RpcFailed, match=r"dispatcher\.reload: error 500: Ongoing reload") as refused:
            await client.call("dispatcher.reload")  # within reload_delta
        assert (refused.value.code, refused.value.message) == (500, "Ongoing reload")
        with pytest.raises(rpc.RpcFailed, match="Invalid Parameters"):
            await client.call("dispatcher.set_state", ["zz"])
        assert await client.call("core.echo", ["still", "here"]) == ["still", "here"]


async def test_only_kamailios_socket_can_answer_on_the_reply_socket(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="rpc") as short:
        async with server(tmp_path / "rpc.sock", _ok), rpc.RpcClient(tmp_path / "rpc.sock", reply_dir=short) as client:
            (reply,) = Path(short).iterdir()
            assert reply.stat().st_mode & 0o777 == 0o666  # whatever user Kamailio runs as
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as intruder, pytest.raises(PermissionError):
                intruder.sendto(b'{"jsonrpc":"2.0","result":"forged","id":1}', str(reply))
            assert await client.call("core.echo") == "did core.echo"
