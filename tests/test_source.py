"""Reading YAML: positions, plain scalars kept as written, ${VAR} interpolation, merges."""

from __future__ import annotations

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
