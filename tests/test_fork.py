"""The uuid_audio_fork command and per-call tokens."""

from __future__ import annotations

import json

import pytest

from orchestrator.media import dialects, fork


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
    cmd = dialects.MOD_AUDIO_FORK.start("abc", "ws://127.0.0.1:8090/calls/abc?token=t", "16k", meta)
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
        dialects.MOD_AUDIO_FORK.start("abc", "ws://x/y", "44k", {})
    with pytest.raises(ValueError):
        dialects.MOD_AUDIO_FORK.start("abc", "ws://x/a b", "8k", {})
    with pytest.raises(ValueError):
        dialects.MOD_AUDIO_FORK.start("abc", "ws://x/y", "8k", {"big": "x" * 9000})
    with pytest.raises(ValueError):
        dialects.escape_argument("line\nbreak")


def test_tokens_are_per_fork_start_and_bound_to_the_call() -> None:
    tokens = fork.Tokens(b"k" * 32)
    t = tokens.token("call-1")
    assert len(t) == fork.TOKEN_LENGTH == 48 and t == t.lower()
    nonce = tokens.verify("call-1", t)
    assert nonce is not None and t.startswith(nonce) and len(nonce) == 16
    assert tokens.token("call-1") != t  # a fresh nonce for every fork start
    assert tokens.token("call-1", nonce) == t  # stable across restarts with the same secret and nonce
    assert fork.Tokens(b"k" * 32).verify("call-1", t) == nonce
    assert tokens.verify("call-2", t) is None  # bound to the call
    assert fork.Tokens().verify("call-1", t) is None  # and to the secret
    assert fork.fork_url("ws://h:1/", "call-1", t) == f"ws://h:1/calls/call-1?token={t}"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: "",
        lambda t: t[:32],  # the old per-call form: HMAC(uuid) alone
        lambda t: t[:-1],
        lambda t: t + "0",
        lambda t: t.upper(),
        lambda t: t[:16] + "0" * 32,  # right nonce, forged MAC
        lambda t: "0" * 16 + t[16:],  # other nonce, same MAC
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),
        lambda t: t[:47] + "g",
        lambda t: "é" * 48,
        lambda t: t[:20] + "\x00" + t[21:],
    ],
)
def test_malformed_or_forged_tokens_are_refused(mutate: object) -> None:
    tokens = fork.Tokens(b"k" * 32)
    t = tokens.token("call-1")
    assert tokens.verify("call-1", mutate(t)) is None  # type: ignore[operator]


def test_nonce_must_be_hex() -> None:
    with pytest.raises(ValueError):
        fork.Tokens().token("call-1", "not-a-nonce-0000")


GOOD = {
    "call_id": "c1",
    "direction": "inbound",
    "agent": "bot",
    "trunk": "carrier",
    "caller_id": "+15551230000",
    "called_number": "+15557650001",
    "codec": "PCMU",
    "rate": 8000,
    "variables": {"campaign": "O'Brien \\ spring", "x_tier": "gold"},
}


def test_metadata_as_the_controller_sends_it() -> None:
    meta = fork.parse_metadata(json.dumps(GOOD))
    assert meta.agent == "bot" and meta.variables["campaign"] == "O'Brien \\ spring" and meta.fork_rate == 8000
    assert fork.parse_metadata(json.dumps({**GOOD, "rate": 48000})).fork_rate == 16000  # Opus: forked at 16k
    assert fork.parse_metadata(json.dumps({**GOOD, "rate": 0})).fork_rate == 8000  # rate unknown: 8k
    assert fork.parse_metadata('{"agent":"bot"}').direction == ""  # the rest is optional
    assert fork.parse_metadata(json.dumps({**GOOD, "extra": {"x": [1, 2]}})).agent == "bot"  # unknown keys ignored


def _with(**changes: object) -> str:
    return json.dumps({**GOOD, **changes})


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (_with(rate=1e400).replace("Infinity", "1e400"), 1008),  # json.loads: inf, int(inf) raised OverflowError
        (_with(rate=float("inf")), 1008),  # Infinity
        (_with(rate=float("-inf")), 1008),
        (_with(rate=float("nan")), 1008),  # NaN
        (_with(rate=-8000), 1008),
        (_with(rate=8001), 1008),
        (_with(rate=10**400), 1008),
        (_with(rate="16000"), 1008),
        (_with(rate=True), 1008),
        (_with(rate=None), 1008),
        (_with(rate=[8000]), 1008),
        (_with(agent=""), 1008),
        (_with(agent=None), 1008),
        (_with(agent=7), 1008),
        (_with(agent=["bot"]), 1008),
        (_with(agent="b" * 200), 1008),
        (_with(direction="sideways"), 1008),
        (_with(direction=1), 1008),
        (_with(caller_id=15551230000), 1008),
        (_with(caller_id={"a": 1}), 1008),
        (_with(called_number=None), 1008),
        (_with(trunk=False), 1008),
        (_with(codec=["PCMU"]), 1008),
        (_with(call_id=1), 1008),
        (_with(variables=["a", "b"]), 1008),
        (_with(variables="a=b"), 1008),
        (_with(variables=None), 1008),
        (_with(variables={"a": 1}), 1008),
        (_with(variables={"a": None}), 1008),
        (_with(variables={"a": {"b": "c"}}), 1008),
        (_with(variables={"a": ["b"]}), 1008),
        (_with(variables={"a": True}), 1008),
        (_with(variables={"": "x"}), 1008),
        (_with(variables={"k" * 200: "x"}), 1008),
        (_with(variables={f"v{i}": "x" for i in range(fork.MAX_VARIABLES + 1)}), 1008),
        (_with(variables={"a": "x" * 5000}), 1008),
        ("[" * 5000 + "]" * 5000, 1008),  # json.loads: RecursionError
        ('{"agent":"bot","x":' + "[" * 3000 + "]" * 3000 + "}", 1008),  # deep inside an ignored key
        ('{"agent":"bot","variables":' + '{"a":' * 1000 + '"b"' + "}" * 1001, 1008),
        ("null", 1008),
        ("[]", 1008),
        ('"bot"', 1008),
        ("8000", 1008),
        ("", 1008),
        ("{", 1008),
        ('{"agent":"bot"} trailing', 1008),
        ('{"agent":"bot",}', 1008),
        ("{'agent':'bot'}", 1008),
        ('{"agent":"\\ud800"}', 1008),  # a lone surrogate
        ('{"agent":"bot","variables":{"a":"\\udfff"}}', 1008),
        (
            _with(
                variables={
                    "pad": "x" * 4000,
                    "pad2": "x" * 4000,
                    "pad3": "x" * 4000,
                    "pad4": "x" * 4000,
                    "p5": "x" * 1000,
                }
            ),
            1009,
        ),
        ("x" * (fork.MAX_METADATA_FRAME + 1), 1009),
    ],
)
def test_malformed_metadata_is_refused_with_a_close_code(text: str, code: int) -> None:
    with pytest.raises(fork.MetadataError) as info:
        fork.parse_metadata(text)
    assert info.value.code == code
    assert len(info.value.detail) <= 300 and info.value.detail.isprintable()


def test_metadata_error_detail_escapes_the_peers_keys() -> None:
    with pytest.raises(fork.MetadataError) as info:
        fork.parse_metadata(_with(variables={"evil\n\x1b[31mkey": 1}))
    assert "\n" not in info.value.detail and "\x1b" not in info.value.detail and "evil" in info.value.detail


def test_mod_audio_stream_start_and_stop_commands() -> None:
    cmd = dialects.MOD_AUDIO_STREAM.start("u1", "ws://h:1/calls/u1?token=t", "16k", {"a": "b c"})
    assert cmd == 'uuid_audio_stream u1 start ws://h:1/calls/u1?token=t mono 16k {"a":"b\\sc"}'
    assert dialects.MOD_AUDIO_STREAM.stop("u1") == "uuid_audio_stream u1 stop"
    with pytest.raises(ValueError):
        dialects.MOD_AUDIO_STREAM.start("u1", "ws://h/x", "8k", {}, stream_rate=8000)


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/elsewhere", 404),
        ("/calls", 404),
        ("/calls/", 404),
        ("/calls/a/b", 404),
        ("/calls/-leading-dash", 404),
        ("/calls/" + "a" * 129, 404),
        ("/calls/a%0ab", 404),  # an escaped line break in the call id
        ("/calls/a%20b", 404),
        ("/calls/%2e%2e", 404),
        ("/calls/%ff", 400),  # not UTF-8 once unescaped
        ("/calls/a?token=%ff", 400),
        ("//[x/calls/a", 400),  # urlsplit: invalid IPv6 URL
        ("/calls/a?" + "&".join(f"f{i}=1" for i in range(20)), 400),
        ("/calls/a?token=1&token=2", 403),
    ],
)
def test_request_targets_that_name_no_call(target: str, status: int) -> None:
    with pytest.raises(fork.TargetError) as info:
        fork.parse_target(target)
    assert info.value.status == status and info.value.detail.isprintable()
    assert "token=" not in info.value.detail  # the query stays out of logs


def test_request_target_of_a_fork() -> None:
    assert fork.parse_target("/calls/c0ffee00-0000-4000-8000-000000000001?token=abc") == (
        "c0ffee00-0000-4000-8000-000000000001",
        "abc",
    )
    assert fork.parse_target("/calls/abc") == ("abc", "")
    assert fork.parse_target("/calls/abc/?token=t&x=1") == ("abc", "t")
