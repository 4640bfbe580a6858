"""The uuid_audio_fork command and per-call tokens."""

from __future__ import annotations

import json

import pytest

from orchestrator.media import fork


def unescape(arg: str) -> str:
    """What FreeSWITCH's argument splitting makes of an escaped argument (\\s, \\\\, \\')."""
    out, i = [], 0
    while i < len(arg):
        c = arg[i]
        if c == "\\" and i + 1 < len(arg):
            nxt = arg[i + 1]
            out.append(" " if nxt == "s" else nxt)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def test_start_command_shape_and_metadata_roundtrip() -> None:
    meta = {"caller": "O'Brien \\ Co", "note": "two words", "u": "é"}
    cmd = fork.start_command("abc", "ws://127.0.0.1:8090/calls/abc?token=t", "16k", meta)
    parts = cmd.split(" ")
    assert parts[:7] == [
        "uuid_audio_fork",
        "abc",
        "start",
        "ws://127.0.0.1:8090/calls/abc?token=t",
        "mono",
        "16k",
        "sipagent",
    ]
    assert len(parts) == 8, "metadata must stay one argument"
    assert json.loads(unescape(parts[7])) == meta


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        fork.start_command("abc", "ws://x/y", "44k", {})
    with pytest.raises(ValueError):
        fork.start_command("abc", "ws://x/a b", "8k", {})
    with pytest.raises(ValueError):
        fork.start_command("abc", "ws://x/y", "8k", {"big": "x" * 9000})
    with pytest.raises(ValueError):
        fork.escape_argument("line\nbreak")


def test_tokens() -> None:
    tokens = fork.Tokens(b"k" * 32)
    t = tokens.token("call-1")
    assert len(t) == 32 and tokens.verify("call-1", t)
    assert not tokens.verify("call-2", t)
    assert fork.Tokens(b"k" * 32).token("call-1") == t  # stable across restarts with the same secret
    assert fork.Tokens().token("call-1") != t
    assert fork.fork_url("ws://h:1/", "call-1", t) == f"ws://h:1/calls/call-1?token={t}"


def test_mod_audio_stream_start_and_stop_commands() -> None:
    cmd = fork.start_command("u1", "ws://h:1/calls/u1?token=t", "16k", {"a": "b c"}, module="mod_audio_stream")
    assert cmd == 'uuid_audio_stream u1 start ws://h:1/calls/u1?token=t mono 16k {"a":"b\\sc"}'
    assert fork.stop_command("u1", "mod_audio_stream") == "uuid_audio_stream u1 stop"
    with pytest.raises(ValueError):
        fork.start_command("u1", "ws://h/x", "8k", {}, stream_rate=8000, module="mod_audio_stream")
