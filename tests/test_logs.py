"""No secret reaches a log line, at any level, from any logger: the redactor against hostile inputs, and the
real code paths (websockets, httpx, a whole call with its fork URL and agent headers) at DEBUG."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from pydantic import SecretStr

from orchestrator import logs
from orchestrator.logs import REDACTED, Redactor


@pytest.fixture()
def capture() -> Iterator[io.StringIO]:
    """Whatever the process would print, with :func:`logs.setup` installed; undone afterwards."""
    buf = io.StringIO()
    yield buf
    logs.reset()


def _lower_hex(text: str) -> str:
    return re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def forms(secret: str) -> set[str]:
    """The ways a secret can be written in a log line: none may appear."""
    raw = secret.encode()
    out = {
        secret,
        quote(secret, safe=""),
        _lower_hex(quote(secret, safe="")),
        quote_plus(secret),
        quote(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        ascii(secret)[1:-1],
        repr(raw)[2:-1],
        quote(quote(secret, safe=""), safe="") if "%" not in secret else secret,
    }
    return {f for f in out if len(f) >= 4}


SECRETS = {
    "plain": "hunter2-hunter2",
    "url-special": "p@ss:w/rd?&=#%+ end",
    "quotes": 'it\'s "quoted" \\ back',
    "unicode": "pässwörd-秘密-😀",
    "esl-default": "ClueCon",
}


def emit(redactor_secrets: list[Any], buf: io.StringIO, action: Any) -> str:
    logs.setup("debug", redactor_secrets, stream=buf)
    action(logging.getLogger("sipagent.test"))
    return buf.getvalue()


def _split(log: logging.Logger, s: str) -> None:
    log.info("a %s%s b", s[:3], s[3:])


def _exception(log: logging.Logger, s: str) -> None:
    try:
        try:
            raise ValueError(f"inner {s}")
        except ValueError as exc:
            raise RuntimeError(f"outer {quote(s)}") from exc
    except RuntimeError:
        log.exception("failed")


WAYS = {
    "message": lambda log, s: log.info(f"x {s} y"),
    "arg": lambda log, s: log.warning("x %s y", s),
    "split-across-args": _split,
    "repr-arg": lambda log, s: log.debug("x %r", s),
    "bytes-arg": lambda log, s: log.debug("x %r", s.encode()),
    "bytes-str": lambda log, s: log.debug("x %s", s.encode()),
    "url-encoded": lambda log, s: log.info("GET /x?a=%s", quote(s, safe="")),
    "url-encoded-lower-hex": lambda log, s: log.info("GET /x?a=%s", _lower_hex(quote(s, safe=""))),
    "url-partly-encoded": lambda log, s: log.info("GET /x?a=%s", quote(s, safe="@:/?&=+ ")),
    "url-plus": lambda log, s: log.info("GET /x?a=%s", quote_plus(s)),
    "json": lambda log, s: log.info("sent %s", json.dumps({"x": s})),
    "json-ascii": lambda log, s: log.info("sent %s", json.dumps({"x": s}, ensure_ascii=True)),
    "dict-arg": lambda log, s: log.info("headers %s", {"X-Custom": s}),
    "mapping-args": lambda log, s: log.info("v=%(v)s", {"v": s}),
    "exception-chain": _exception,
    "stack": lambda log, s: log.info(s, stack_info=True),
    "bad-format": lambda log, s: log.info("%d items", s),
    "non-str-msg": lambda log, s: log.info(ValueError(s)),
}


@pytest.mark.parametrize("way", WAYS.values(), ids=WAYS.keys())
@pytest.mark.parametrize("secret", SECRETS.values(), ids=SECRETS.keys())
def test_configured_secret_never_printed(capture: io.StringIO, secret: str, way: Any) -> None:
    text = emit([SecretStr(secret)], capture, lambda log: way(log, secret))
    assert text.strip()
    for form in forms(secret):
        assert form not in text, (form, text)
    assert REDACTED in text


def test_bytes_secret_in_any_encoding(capture: io.StringIO) -> None:
    secret = bytes(range(250, 256)) + b"\x00\x01media"
    text = emit([secret], capture, lambda log: log.info("%r %s %s", secret, secret.hex(), secret.hex().upper()))
    assert repr(secret)[2:-1] not in text and secret.hex() not in text and secret.hex().upper() not in text


PATTERNS = {  # no configured secret: found by what it looks like
    "query-token": ("> GET /calls/u?token=abcdef0123456789 HTTP/1.1", "abcdef0123456789"),
    "query-signature": ("wss://x/v1?agent_id=a&conversation_signature=sig-123456", "sig-123456"),
    "query-key": ("https://h/p?key=k-998877&x=1", "k-998877"),
    "query-api-key": ("https://h/p?api_key=k-998877", "k-998877"),
    "query-in-encoded-url": ("url=wss%3A%2F%2Fh%2Fp%3Ftoken%3Dabc123456%26x%3D1", "abc123456"),
    "authorization-header": ("> Authorization: Bearer eyJhbGciOi.xyz", "eyJhbGciOi"),
    "authorization-basic": ("> Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    "digest": ('Authorization: Digest username="bob", response="6629fae49393a05397450978507c4ef1"', "6629fae4"),
    "xi-api-key": ("> xi-api-key: sk_live_123456", "sk_live_123456"),
    "cookie": ("< Set-Cookie: session=s3ss10n; Path=/", "s3ss10n"),
    "dict-repr": ("{'authorization': 'Bearer tok-123456', 'host': 'h'}", "tok-123456"),
    "json": ('{"xi-api-key": "sk_789012", "x": 1}', "sk_789012"),
    "httpcore-tuples": ("[(b'Host', b'h'), (b'xi-api-key', b'sk_345678')]", "sk_345678"),
    "bearer-in-text": ("token was Bearer abcdef123456 yesterday", "abcdef123456"),
    "url-password": ("connecting to wss://bob:hunter2hunter@agent.example/ws", "hunter2hunter"),
    "password-kv": ("login password=pa55word now", "pa55word"),
    "token-quoted-kv": ('token="t0k3n-value"', "t0k3n-value"),
}


@pytest.mark.parametrize(("line", "secret"), PATTERNS.values(), ids=PATTERNS.keys())
def test_credentials_found_by_pattern(line: str, secret: str) -> None:
    out = Redactor().line(line)
    assert secret not in out and REDACTED in out, out


KEPT = [
    "esl fs1: connected (connection #1)",
    "no orchestrator.api.token: /v1 answers 503 (health and metrics still served)",
    "esl fs1: authentication failed: -ERR invalid (wrong event socket password?); reconnecting",
    "call 1234: hang-up after agent_closed: NORMAL_CLEARING",
    "media bridge listening on 127.0.0.1:8090 (streaming playback)",
    "fork from 127.0.0.1:5555 for call abc: bad token, rejected",
    "basic setup done",
]


@pytest.mark.parametrize("line", KEPT)
def test_ordinary_lines_are_kept(line: str) -> None:
    assert Redactor(["ClueCon", "hunter2-hunter2"]).line(line) == line


def test_control_characters_cannot_forge_lines(capture: io.StringIO) -> None:
    text = emit([], capture, lambda log: log.warning("caller %s", "x\n2026-01-01 INFO sipagent: forged\r\x1b[31m"))
    assert text.count("\n") == 1 and "\\n2026" in text and "\\x1b" in text


def test_uvicorn_style_args_keep_their_shape(capture: io.StringIO) -> None:
    """uvicorn's access formatter unpacks record.args: cleaning keeps the tuple when it can."""
    logs.setup("info", ["s3cr3t-value"], stream=capture)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    access = logging.getLogger("uvicorn.access")
    keep = Keep()
    access.addHandler(keep)
    access.propagate = False  # as uvicorn configures it: its own handler, not the root's
    # a uvicorn server started by another test in this process may have left the logger quieter or disabled
    level, disabled = access.level, access.disabled
    access.setLevel(logging.INFO)
    access.disabled = False
    try:
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/v1/calls?token=s3cr3t-value", "1.1", 200)
    finally:
        access.removeHandler(keep)
        access.propagate = True
        access.setLevel(level)
        access.disabled = disabled
    [record] = seen
    assert isinstance(record.args, tuple) and record.args[4] == 200
    assert "s3cr3t-value" not in record.getMessage() and "token=[redacted]" in record.args[2]


def test_records_not_made_by_the_factory_are_cleaned_by_the_handler(capture: io.StringIO) -> None:
    logs.setup("debug", ["hunter2-hunter2"], stream=capture)
    record = logging.makeLogRecord(
        {"name": "x", "levelno": 20, "levelname": "INFO", "msg": "pw %s", "args": ("hunter2-hunter2",)}
    )
    logging.getLogger().handle(record)
    assert "hunter2" not in capture.getvalue() and REDACTED in capture.getvalue()


def test_a_failing_redactor_withholds_the_record(capture: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    logs.setup("debug", ["hunter2-hunter2"], stream=capture)

    def boom(self: Redactor, record: logging.LogRecord) -> logging.LogRecord:
        raise RuntimeError("bug")

    monkeypatch.setattr(Redactor, "scrub", boom)
    logging.getLogger("x").error("pw hunter2-hunter2")  # must not raise either
    assert "hunter2" not in capture.getvalue()


def test_setup_and_reset(capture: io.StringIO) -> None:
    before = logging.getLogRecordFactory()
    logs.setup("warning", [], stream=capture)
    assert logging.getLogger().level == logging.WARNING and logs.os.environ[logs.LEVEL_ENV] == "WARNING"
    logs.setup("debug", [], stream=capture)  # replaces, does not stack
    assert sum(isinstance(h.formatter, logs.RedactingFormatter) for h in logging.getLogger().handlers) == 1
    logs.reset()
    assert logging.getLogRecordFactory() is before and logs.LEVEL_ENV not in logs.os.environ
    with pytest.raises(ValueError, match="unknown log level"):
        logs.setup("loud", [])


def test_deployment_secrets_are_every_secretstr(example_dir: Path) -> None:
    from support import EXAMPLE_ENV

    from orchestrator.config import check_file

    result = check_file(example_dir / "deployment.yaml", EXAMPLE_ENV)
    assert result.deployment is not None
    redactor = Redactor(logs.deployment_secrets(result.deployment))
    for name, value in EXAMPLE_ENV.items():  # each value the example takes from the environment, e.g. the
        assert value not in redactor.line(f"logged {value}!"), name  # token inside "Bearer ${SALES_AGENT_TOKEN}"


# -- real code paths at DEBUG --------------------------------------------------------------------------------


async def test_websockets_client_and_server_debug_logs(capture: io.StringIO) -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    token, bearer, key = "tok-4f8a9c0e21", "bearer-7d1e5a22b9", "key-0b3c6f9e11"
    logs.setup("debug", [bearer, key], stream=capture)  # the token is not configured: found by its name

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        headers = {"Authorization": f"Bearer {bearer}", "X-Api-Key": key}
        async with connect(f"ws://127.0.0.1:{port}/agent?token={token}", additional_headers=headers) as ws:
            await ws.send(json.dumps({"auth": bearer}))
            assert json.loads(await ws.recv()) == {"auth": bearer}
    text = capture.getvalue()
    assert "> GET /agent?token=[redacted] HTTP/1.1" in text  # websockets' own debug lines went through
    assert "< GET /agent?token=[redacted]" in text and "Authorization: [redacted]" in text
    for secret in (token, bearer, key):
        assert secret not in text, secret


async def test_httpx_request_debug_logs(capture: io.StringIO) -> None:
    api_key, token, cookie, signature = "xi-9f3b2a7c55", "qtok-8e2d1c4b", "ck-5a6b7c8d9e", "sig-1a2b3c4d5e6f"
    logs.setup("debug", [SecretStr(api_key)], stream=capture)
    body = json.dumps(
        {"signed_url": f"wss://api.example/v1/convai/conversation?agent_id=a&conversation_signature={signature}"}
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: session={cookie}; Path=/\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{port}/v1/convai/conversation/get-signed-url?agent_id=a&token={token}"
        response = await client.get(url, headers={"xi-api-key": api_key})
        logging.getLogger("sipagent.agents").debug("signed URL answer: %s", response.json())
    server.close()
    text = capture.getvalue()
    assert "HTTP Request: GET" in text and "receive_response_headers" in text  # httpx and httpcore logged
    for secret in (api_key, token, cookie, signature):
        assert secret not in text, secret


async def test_a_whole_call_at_debug_logs_no_secret(tmp_path: Path, capture: io.StringIO) -> None:
    """ESL password, media secret, the call's fork token (in the fork URL FreeSWITCH connects to, in the
    uuid_audio_fork command) and the agent's Authorization header: none in the output of a call at DEBUG."""
    from fake_agents import FakeRawAgent
    from simulator import SimulatedFreeSwitch

    from orchestrator.calls.controller import Controller
    from orchestrator.config import check_text
    from orchestrator.esl.client import Backoff
    from orchestrator.media.bridge import MediaBridge

    env = {"ESL_PW": "esl-pw-6c1f0d", "MEDIA_SECRET": "media-secret-93ab77e1", "AGENT_TOKEN": "agent-tok-5521fe0c"}
    agent = await FakeRawAgent().start()
    sim = SimulatedFreeSwitch(env["ESL_PW"])
    sim.fork_websocket = True  # the simulator's mod_audio_fork is a websockets client: it logs the fork URL
    await sim.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = f"""
freeswitch: {{bind_ip: 127.0.0.1, event_socket: {{password: "${{ESL_PW}}"}}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
numbers: [{{number: "+15550000001", trunk: carrier, agent: bot}}]
agents:
  - {{name: bot, protocol: raw, url: "{agent.url}", audio_format: pcm_8000, headers: {{Authorization: "Bearer ${{AGENT_TOKEN}}"}}}}
orchestrator:
  media_url: ws://127.0.0.1:{port}
  media: {{port: {port}}}
  media_secret: "${{MEDIA_SECRET}}"
  records: null
  nodes: [{{name: fs1, port: {sim.port}}}]
"""
    result = check_text(text, "d.yaml", env, tmp_path)
    assert result.deployment is not None, [str(d) for d in result.errors]
    logs.setup("debug", logs.deployment_secrets(result.deployment), stream=capture)
    controller = Controller(result.deployment, tmp_path, backoff=Backoff(0.02, 0.1))
    bridge = MediaBridge(result.deployment, controller.tokens, controller, controller.metrics)
    controller.add_listener(bridge.on_notice)
    await bridge.start()
    await controller.start()
    try:
        await asyncio.wait_for(controller.nodes["fs1"].synced.wait(), 5)
        ch = await sim.inbound_call(
            destination="+15550000001",
            caller_id="+15551230000",
            context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": "bot", "sipagent_number": "+15550000001"},
            park_timeout="10:NORMAL_TEMPORARY_FAILURE",
        )
        session = await agent.wait_session()
        await agent.wait_for(lambda: session.of_type("start"))
        fork_token = controller.tokens.token(ch.uuid)
    finally:
        await controller.stop()
        await bridge.stop()
        await sim.stop()
        await agent.stop()
    out = capture.getvalue()
    assert f"/calls/{ch.uuid}?token=[redacted]" in out  # the fork URL was logged (websockets, the command)
    assert "Authorization: [redacted]" in out  # the agent connection's headers were logged
    for secret in (*env.values(), fork_token):
        for form in forms(secret):
            assert form not in out, form


def test_sipagent_run_sets_up_redaction(example_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sipagent run --log-level debug`: every secret of the deployment is redacted from what any logger prints."""
    from support import EXAMPLE_ENV
    from typer.testing import CliRunner

    from orchestrator import runtime
    from orchestrator.cli import app

    async def serve(deployment: Any, base_dir: Path) -> None:
        for value in EXAMPLE_ENV.values():
            logging.getLogger("websockets.client").debug("> X-Header: %s", value)
            logging.getLogger("httpx").info("HTTP Request: GET https://h/?v=%s", quote(value))

    monkeypatch.setattr(runtime, "serve", serve)
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in EXAMPLE_ENV.items()))
    args = ["run", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--log-level", "debug"]
    try:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.stderr.count("> X-Header: [redacted]") == len(EXAMPLE_ENV), result.stderr
        for value in EXAMPLE_ENV.values():
            assert value not in result.stderr
        bad = CliRunner().invoke(app, [*args[:-1], "loud"])
        assert bad.exit_code == 2 and "unknown log level" in bad.stderr
    finally:
        logs.reset()


def test_media_worker_logging(
    example_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process logs at the level `sipagent run` was given, with the same secrets and its media secret
    redacted (orchestrator.media.workers.worker_main calls logs.setup_worker)."""
    from support import EXAMPLE_ENV

    from orchestrator.config import check_file

    result = check_file(example_dir / "deployment.yaml", EXAMPLE_ENV)
    assert result.deployment is not None
    monkeypatch.setenv(logs.LEVEL_ENV, "DEBUG")
    secret = bytes(range(32))
    try:
        logs.setup_worker(result.deployment, secret, 3)
        log = logging.getLogger("websockets.client")
        log.debug("> Authorization: Bearer %s", EXAMPLE_ENV["SALES_AGENT_TOKEN"])
        log.debug("media secret %r %s", secret, secret.hex())
    finally:
        logs.reset()
    err = capsys.readouterr().err
    assert err.count(" worker3 DEBUG websockets.client: ") == 2
    assert EXAMPLE_ENV["SALES_AGENT_TOKEN"] not in err and secret.hex() not in err and repr(secret)[2:-1] not in err


async def test_uvicorn_access_log_has_its_own_handlers_and_is_cleaned(capsys: pytest.CaptureFixture[str]) -> None:
    """uvicorn's loggers have their own handlers (propagate off): the record factory cleans them too."""
    import uvicorn

    token = "tok-31c4e9a7f0"
    logs.setup("info", [], stream=io.StringIO())

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/v1/calls?token={token}&x=1")
        assert response.status_code == 200
    finally:
        server.should_exit = True
        await task
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # undo uvicorn's dictConfig
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
        logs.reset()
    out = "".join(capsys.readouterr())  # uvicorn's access handler writes to stdout, the others to stderr
    assert '"GET /v1/calls?token=[redacted]&x=1 HTTP/1.1" 200' in out and token not in out
