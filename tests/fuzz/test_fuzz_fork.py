"""Fork metadata and request targets from arbitrary input: a value or the module's own error, nothing else.

``parse_metadata`` gets arbitrary JSON (any nesting, NaN/Infinity, huge numbers, wrong types for every field),
arbitrary text, and valid metadata with one field replaced; ``parse_target`` arbitrary request targets; tokens
arbitrary strings. Whatever comes back is within the schema's bounds."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.media import fork

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=40,
)
FIELDS = ["call_id", "direction", "agent", "trunk", "caller_id", "called_number", "codec", "rate", "variables"]
GOOD: dict[str, Any] = {
    "call_id": "c1",
    "direction": "inbound",
    "agent": "bot",
    "trunk": "carrier",
    "caller_id": "+15551230000",
    "called_number": "+15557650001",
    "codec": "PCMU",
    "rate": 8000,
    "variables": {"campaign": "spring", "x_tier": "gold"},
}


def check(text: str) -> None:
    try:
        meta = fork.parse_metadata(text)
    except fork.MetadataError as exc:
        assert exc.code in (1008, 1009) and exc.detail.isprintable() and len(exc.detail) <= 300
        return
    assert isinstance(meta.agent, str) and 1 <= len(meta.agent) <= 128
    assert meta.direction in ("inbound", "outbound", "")
    assert meta.fork_rate in (8000, 16000) and isinstance(meta.rate, int)
    assert len(meta.variables) <= fork.MAX_VARIABLES
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.variables.items())
    for name in ("call_id", "trunk", "caller_id", "called_number", "codec"):
        assert isinstance(getattr(meta, name), str)


@given(value=json_values)
def test_any_json_value(value: Any) -> None:
    check(json.dumps(value))


@given(field=st.sampled_from(FIELDS), value=json_values)
def test_valid_metadata_with_one_field_replaced(field: str, value: Any) -> None:
    check(json.dumps({**GOOD, field: value}))


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)


@given(variables=st.dictionaries(st.text(max_size=150), scalars | st.lists(scalars, max_size=3), max_size=8))
def test_any_variables(variables: dict[str, Any]) -> None:
    check(json.dumps({**GOOD, "variables": variables}))


@given(text=st.text(max_size=3000))
def test_any_text(text: str) -> None:
    check(text)


@given(depth=st.integers(1, 6000), opener=st.sampled_from(["[", '{"a":', '{"agent":"bot","x":[']))
def test_any_nesting(depth: int, opener: str) -> None:
    check(opener * depth)
    check(opener * depth + "1" + ("]" if opener == "[" else "}") * depth)


@given(number=st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "9" * 5000, "1e-400", "-0"]))
def test_rate_numbers_json_loads_turns_into_trouble(number: str) -> None:
    check('{"agent":"bot","rate":' + number + "}")


@given(
    agent=st.text(min_size=1, max_size=128),
    rate=st.sampled_from([0, 8000, 16000, 48000]),
    variables=st.dictionaries(st.text(min_size=1, max_size=128), st.text(max_size=200), max_size=40),
)
def test_valid_metadata_reads_back_unchanged(agent: str, rate: int, variables: dict[str, str]) -> None:
    text = json.dumps({**GOOD, "agent": agent, "rate": rate, "variables": variables}, ensure_ascii=False)
    if len(text) > fork.MAX_METADATA_FRAME:
        return
    meta = fork.parse_metadata(text)
    assert (meta.agent, meta.rate, meta.variables) == (agent, rate, variables)


def check_target(target: str) -> None:
    try:
        call_id, token = fork.parse_target(target)
    except fork.TargetError as exc:
        assert exc.status in (400, 403, 404) and exc.detail.isprintable() and "token=" not in exc.detail
        return
    assert call_id.isascii() and call_id.isprintable() and 1 <= len(call_id) <= 128 and isinstance(token, str)


@given(target=st.text(max_size=300))
def test_any_request_target(target: str) -> None:
    check_target(target)


@given(target=st.from_regex(r"/calls/[A-Za-z0-9%._-]{0,40}(\?[A-Za-z0-9%=&._-]{0,60})?", fullmatch=True))
def test_plausible_request_targets(target: str) -> None:
    check_target(target)


@given(call=st.text(max_size=64), token=st.text(max_size=64))
def test_any_token_is_refused_or_verified(call: str, token: str) -> None:
    tokens = fork.Tokens(b"fuzz")
    assert tokens.verify(call, token) is None  # nothing but a minted token passes
    minted = tokens.token(call)
    assert tokens.verify(call, minted) == minted[:16]
