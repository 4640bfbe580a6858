"""Property tests: every value the encoders accept comes out of FreeSWITCH's parsing (the simulator's model of it,
checked against a real switch in tests/integration/test_dial_strings.py) exactly as given, and nothing a value holds
can change the endpoint, add a leg or add a variable."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from simulator import fsstrings

from orchestrator.calls import dialing
from orchestrator.esl import commands, quoting

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: tests/fuzz/conftest.py
ENDPOINT = "sofia/gateway/carrier/+15557654321"
# text biased towards the characters FreeSWITCH's parsers care about
SPECIAL = st.sampled_from([*" \\'\"{}[]<>^,|=:_;$%@&!*~()\t\n\x00\x1f\x7f", "\\s", "\\n", "${", ":_:", "^^", "é", "😀"])
TEXT = st.lists(st.one_of(SPECIAL, st.text(max_size=4)), max_size=24).map("".join)


def _parse(command: str) -> fsstrings.DialString:
    """``originate <args>`` as FreeSWITCH's API splits it, then its dial string."""
    name, _, rest = command.partition(" ")
    assert name == "originate"
    argv = fsstrings.separate(rest, " ", 10)
    assert argv[1] == "&park()"
    return fsstrings.parse_dial_string(argv[0])


@FUZZ
@given(values=st.dictionaries(st.from_regex(r"sip_h_X-[A-Za-z][A-Za-z0-9-]{0,8}", fullmatch=True), TEXT, max_size=6))
@example(values={"sip_h_X-A": "x}sofia/gateway/evil/+1999,y={"})
@example(values={"sip_h_X-A": " edges "})
@example(values={"sip_h_X-A": "a\\"})
def test_accepted_values_arrive_exactly_and_cannot_change_the_endpoint(values: dict[str, str]) -> None:
    variables = {"origination_uuid": "u1", **values}
    try:
        command = commands.originate(variables, ENDPOINT)
    except quoting.Refused:
        # refused: it holds what FreeSWITCH cannot carry
        assert any(
            not v
            or ":_:" in v
            or fsstrings.var_check(v)
            or any(unicodedata.category(c) in ("Cc", "Cs", "Cn") for c in v)
            or not _balanced(v)
            or len(v.encode()) > 1024
            for v in values.values()
        )
        return
    parsed = _parse(command)
    assert not parsed.enterprise
    assert [[leg.endpoint for leg in group] for group in parsed.groups] == [[ENDPOINT]]
    assert dict(parsed.variables) == variables
    assert len(parsed.variables) == len(variables)


def _balanced(v: str) -> bool:
    depth = 0
    for c in v:
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
    return depth == 0


@FUZZ
@given(value=TEXT)
def test_one_api_argument_is_one_argument(value: str) -> None:
    try:
        encoded = quoting.argument(value)
    except quoting.Refused:
        assert (
            not value or any(unicodedata.category(c) in ("Cc", "Cs", "Cn") for c in value) or len(value.encode()) > 1024
        )
        return
    assert fsstrings.separate(f"uuid {encoded} next", " ") == ["uuid", value, "next"]


@FUZZ
@given(data=TEXT)
def test_inline_dialplan_data_is_one_application(data: str) -> None:
    try:
        arg = quoting.inline_dialplan([("playback", data), ("hangup", "NORMAL_CLEARING")])
    except quoting.Refused:
        return
    [cleaned] = fsstrings.separate(arg, " ")
    assert cleaned.startswith("m:^:")
    items = fsstrings.separate(cleaned[4:], "^", 128)
    apps = [item.lstrip(" ").partition(":") for item in items]
    assert [(a, d) for a, _, d in apps] == [("playback", data), ("hangup", "NORMAL_CLEARING")]


@FUZZ
@given(
    to=st.one_of(
        TEXT,
        st.from_regex(
            r"sips?:[A-Za-z0-9+.%$&=*!~-]{1,12}@[a-z0-9.:\[\]-]{1,20}(;[a-z]{1,5}(=[a-z0-9]{1,5})?){0,2}",
            fullmatch=True,
        ),
    )
)
def test_a_destination_is_dialled_as_one_endpoint(to: str) -> None:
    try:
        dest = dialing.destination(to)
    except dialing.Invalid as exc:
        assert exc.code == "invalid_destination"
        return
    command = commands.originate({"origination_uuid": "u1"}, f"sofia/gateway/carrier/{dest}")
    parsed = _parse(command)
    assert [[leg.endpoint for leg in group] for group in parsed.groups] == [[f"sofia/gateway/carrier/{dest}"]]
    assert not fsstrings.var_check(dest)


@pytest.mark.parametrize("value", ["}", "{", "}{", "a:_:b", "${x}", "$\\{x}", "a\nb", "a\x00b", "\ud800", "x" * 1025])
def test_what_freeswitch_cannot_carry_is_refused(value: str) -> None:
    with pytest.raises(quoting.Refused):
        commands.originate({"sip_h_X-A": value}, ENDPOINT)
