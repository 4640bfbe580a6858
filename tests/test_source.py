"""Reading YAML: positions, plain scalars kept as written, ${VAR} interpolation, merges, reading limits."""

from __future__ import annotations

import pytest

from orchestrator.config import source as source_mod
from orchestrator.config.source import parse


def test_positions_point_at_keys_and_items() -> None:
    src = parse("a:\n  b: 1\n  c:\n    - x\n    - y\n")
    assert src.locate(("a", "b")) == (2, 3)
    assert src.locate(("a", "c", 1)) == (5, 7)
    # a missing key is located at its nearest existing parent
    assert src.locate(("a", "c", 1, "nope")) == (5, 7)
    assert src.locate(("zzz",)) == (1, 1)


def test_plain_scalars_stay_text() -> None:
    src = parse("number: +15551234567\ncountry: NO\nport: 5060\nempty:\nnull_word: null\nquoted: 'null'\n")
    assert src.data == {
        "number": "+15551234567",  # YAML 1.1 would make this an int and lose the '+'
        "country": "NO",  # ... and this False
        "port": "5060",
        "empty": None,
        "null_word": None,
        "quoted": "null",
    }


def test_interpolation() -> None:
    env = {"A": "alpha", "EMPTY": ""}
    src = parse("x: ${A}\ny: pre-${A}-post\nz: ${MISSING:-fallback}\nw: ${EMPTY:-used}\nd: cost $$5\n", env=env)
    assert src.data == {"x": "alpha", "y": "pre-alpha-post", "z": "fallback", "w": "used", "d": "cost $5"}
    assert src.from_env == {("x",), ("y",), ("z",), ("w",)}
    assert src.diagnostics == []


def test_missing_variable_names_it_and_the_place() -> None:
    src = parse("outer:\n  secret: ${TOP_SECRET}\n", name="f.yaml", env={})
    [diag] = src.diagnostics
    assert diag.path == ("outer", "secret")
    assert (diag.line, diag.column) == (2, 11)
    assert "TOP_SECRET is not set" in diag.message
    assert ("outer", "secret") in src.unresolved


def test_keys_are_not_interpolated() -> None:
    src = parse("${A}: 1\n", env={"A": "b"})
    assert src.data == {"${A}": "1"}


def test_merge_keys() -> None:
    src = parse("base: &b {x: 1, y: 2}\nitem:\n  <<: *b\n  y: 3\n")
    assert src.data["item"] == {"x": "1", "y": "3"}


def test_duplicate_key() -> None:
    src = parse("a: 1\nb: 2\na: 3\n", name="f.yaml")
    [diag] = src.diagnostics
    assert diag.line == 3
    assert "duplicate key 'a' (first given on line 1)" in diag.message


def test_syntax_error_is_a_diagnostic() -> None:
    src = parse("a: [1, 2\nb: 3\n", name="f.yaml")
    assert src.data is None
    [diag] = src.diagnostics
    assert diag.message.startswith("YAML syntax error")
    assert diag.line == 1


def test_empty_document() -> None:
    assert parse("").data == {}


def test_resolve_path_skips_pydantic_internal_parts() -> None:
    src = parse("agents:\n  - name: x\n    protocol: raw\n")
    assert src.resolve_path(("agents", 0, "raw", "url")) == ("agents", 0, "url")
    assert src.resolve_path(("agents", 0, "function-after[x]"), names_field=False) == ("agents", 0)


# -- bounded reading: what a hostile or careless file cannot do ---------------------------------


def _laughs(levels: int = 9, width: int = 9, leaf: str = '"lol"', style: str = "list") -> str:
    """A "billion laughs" document: each level repeats the previous one ``width`` times."""
    if style == "list":
        lines = [f"a0: &a0 [{', '.join([leaf] * width)}]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    elif style == "mapping":
        lines = [f"a0: &a0 {{{', '.join(f'k{j}: {leaf}' for j in range(width))}}}"]
        lines += [f"a{i}: &a{i} {{{', '.join(f'k{j}: *a{i - 1}' for j in range(width))}}}" for i in range(1, levels)]
    else:  # merge keys: each level merges the previous one ``width`` times under new keys
        lines = [f"a0: &a0 {{{', '.join(f'k{j}: {leaf}' for j in range(width))}}}"]
        for i in range(1, levels):
            inner = ", ".join(f"m{j}: {{<<: *a{i - 1}}}" for j in range(width))
            lines.append(f"a{i}: &a{i} {{{inner}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text",
    [
        _laughs(),
        _laughs(style="mapping"),
        _laughs(style="merge"),
        _laughs(levels=12, width=3),
        _laughs(levels=4, width=400),  # wide rather than deep
        _laughs(levels=5, width=9, leaf='"' + "x" * 60000 + '"'),  # few values, many characters
    ],
    ids=["list", "mapping", "merge", "deep", "wide", "long-leaf"],
)
def test_alias_bombs_are_refused_without_expanding(text: str) -> None:
    src = parse(text, name="bomb.yaml")
    assert src.data is None
    [diag] = src.diagnostics
    assert diag.line > 1  # at the alias use that went over, not "somewhere"
    assert "aliases expand to more than" in diag.message or "characters" in diag.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x [*x]\n", "refers to a mapping or list that contains it"),
        ("a: &x {b: *x}\n", "refers to a mapping or list that contains it"),
        ("a: &x {b: {<<: *x}}\n", "refers to a mapping or list that contains it"),
        ("a: &x [1, [2, *x]]\n", "refers to a mapping or list that contains it"),
        ("a: *nowhere\n", "alias *nowhere has no anchor"),
        ("a: " + "[" * 40 + "]" * 40 + "\n", "nest deeper than 32 levels"),
        ("".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "x\n", "nest deeper than 32 levels"),
        ("d: &d " + "[" * 20 + "]" * 20 + "\ne: " + "[" * 20 + "*d" + "]" * 20 + "\n", "through *d"),
        ("a: 1\n---\nb: 2\n", "a single document"),
        ("k" * 300 + ": 1\n", "a key is longer than 256 characters"),
        ("a: " + "x" * 70000 + "\n", "longer than 65,536 characters"),
    ],
    ids=[
        "cycle-list",
        "cycle-mapping",
        "cycle-merge",
        "cycle-nested",
        "undefined-alias",
        "deep-flow",
        "deep-block",
        "deep-through-alias",
        "two-documents",
        "long-key",
        "long-value",
    ],
)
def test_unreadable_structures_are_errors(text: str, message: str) -> None:
    src = parse(text, name="f.yaml")
    assert src.data is None
    assert [d.message for d in src.diagnostics if message in d.message], [str(d) for d in src.diagnostics]


def test_value_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_mod, "MAX_NODES", 1000)
    src = parse("a: [" + ", ".join(["1"] * 1200) + "]\n")
    assert src.data is None
    [diag] = src.diagnostics
    assert "more than 1,000 values" in diag.message
    assert parse("a: [" + ", ".join(["1"] * 900) + "]\n").diagnostics == []


def test_total_characters_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_mod, "MAX_TOTAL_CHARS", 10_000)
    text = "a: &s " + "y" * 3000 + "\nb: [*s, *s, *s, *s]\n"
    [diag] = parse(text).diagnostics
    assert "more than 10,000 characters" in diag.message and diag.path == ("b", 2)


def test_interpolation_is_bounded() -> None:
    env = {"BIG": "x" * 70000, "BAD": "caf\udce9"}  # os.environ keeps undecodable bytes as surrogates
    [diag] = parse("a: ${BIG}\n", env=env).diagnostics
    assert "environment variable BIG is longer than 65,536 characters" in diag.message
    src = parse("a: ${BAD}\n", env=env)
    [diag] = src.diagnostics
    assert "BAD is not valid UTF-8" in diag.message and ("a",) in src.unresolved


def test_reasonable_aliases_still_work() -> None:
    text = (
        "defaults: &defaults {transports: [tcp], media_encryption: disabled}\n"
        "trunks:\n"
        + "".join(f"  - name: t{i}\n    inbound:\n      <<: *defaults\n      codecs: [PCMU]\n" for i in range(50))
        + "shared: &net [10.0.0.0/8, 192.168.0.0/16]\n"
        "acl_a: *net\nacl_b: *net\n"
    )
    src = parse(text)
    assert src.diagnostics == []
    assert src.data["trunks"][49]["inbound"] == {
        "codecs": ["PCMU"],
        "transports": ["tcp"],
        "media_encryption": "disabled",
    }
    assert src.data["acl_b"] == ["10.0.0.0/8", "192.168.0.0/16"]
    # a value reached through an alias is located where it was written
    assert src.locate(("trunks", 3, "inbound", "transports")) == (1, 22)
    assert src.locate(("acl_b", 1)) == (src.locate(("shared", 1)))


def test_environment_through_an_alias_is_still_from_the_environment() -> None:
    src = parse("a: &p {password: '${PW}'}\nb: *p\nc: {<<: *p}\n", env={"PW": "s"})
    assert {("a", "password"), ("b", "password"), ("c", "password")} <= src.from_env
    src = parse("a: &p {password: '${NOPE}'}\nb: *p\n", env={})
    assert ("b", "password") in src.unresolved


def test_null_document_and_explicit_tags() -> None:
    assert parse("~\n").data is None and parse("~\n").diagnostics == []
    assert parse("a: !!null x\nb: !!str 5\nc: ''\n").data == {"a": None, "b": "5", "c": ""}
