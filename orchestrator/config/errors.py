"""Turn pydantic validation errors into plain-words diagnostics that never echo secrets."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from orchestrator.config.diagnostics import Diagnostic, Path
from orchestrator.config.source import Source
from orchestrator.config.text import quote


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Annotated / Optional / Union."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out.extend(_unwrap(arg))
        return out
    return [tp]


def _step(tp: Any, part: str | int) -> Any | None:
    """The type found one step below ``tp`` at ``part`` (a field, list index, dict key or union tag)."""
    for candidate in _unwrap(tp):
        origin = typing.get_origin(candidate)
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            field = candidate.model_fields.get(part) if isinstance(part, str) else None
            if field is not None:
                return field.annotation
            # a discriminated-union tag names the member class
            tag_field = candidate.model_fields.get("protocol")
            if tag_field is not None and part in typing.get_args(tag_field.annotation):
                return candidate
        elif origin is list and isinstance(part, int):
            return typing.get_args(candidate)[0]
        elif origin is dict:
            return typing.get_args(candidate)[1]
    return None


def _type_at(root: Any, loc: tuple[Any, ...]) -> Any | None:
    tp: Any = root
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    return tp


def _is_secret(tp: Any) -> bool:
    return tp is not None and any(c is SecretStr for c in _unwrap(tp))


def _model_fields(tp: Any) -> list[str]:
    for candidate in _unwrap(tp):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return list(candidate.model_fields)
    return []


def _description(parent: Any, name: Any) -> str:
    for candidate in _unwrap(parent):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel) and isinstance(name, str):
            field = candidate.model_fields.get(name)
            if field is not None and field.description:
                return field.description
    return ""


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    if value is None:
        return "nothing"
    return quote(value)


def friendly(error: ErrorDetails, root: Any, loc: tuple[Any, ...]) -> str:
    """A plain-words message for one pydantic error at ``loc`` (relative to ``root``)."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    leaf = _type_at(root, loc)
    secret = _is_secret(leaf)
    value = error.get("input")
    got = "" if secret else f" (got {_shown(value)})"
    last = loc[-1] if loc else ""
    if kind == "missing":
        desc = _description(_type_at(root, loc[:-1]), last)
        return f"'{last}' is required" + (f": {desc}" if desc else "")
    if kind == "extra_forbidden":
        allowed = _model_fields(_type_at(root, loc[:-1]))
        close = difflib.get_close_matches(str(last)[:100], allowed, n=1, cutoff=0.6)
        if close:
            return f"unknown setting {quote(last)}; did you mean '{close[0]}'?"
        return (
            f"unknown setting {quote(last)}; expected one of: {', '.join(allowed)}"
            if allowed
            else f"unknown setting {quote(last)}"
        )
    if kind in ("value_error", "assertion_error"):
        msg = error["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        return msg
    if kind == "literal_error":
        return f"{_shown(value)} is not allowed here: use {ctx.get('expected', '')}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = str(ctx.get("discriminator", "kind")).strip("'")
        if kind == "union_tag_not_found":
            return f"'{tag}' is required"
        return f"unknown {tag} {_shown(ctx.get('tag'))}: use {ctx.get('expected_tags', '')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number{got}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false{got}"
    if kind in ("string_type",):
        return f"must be text{got}"
    if kind in ("list_type",):
        return f"must be a list{got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of settings{got}"
    if kind in ("too_short",):
        return f"needs at least {ctx.get('min_length', 1)} entr{'y' if ctx.get('min_length', 1) == 1 else 'ies'}"
    if kind in ("too_long",):
        return f"at most {ctx.get('max_length')} entries are allowed (got {ctx.get('actual_length')})"
    if kind in ("string_too_long",):
        return f"at most {ctx.get('max_length')} characters are allowed"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        limit = next(iter(ctx.values()), "")
        return f"must be {words} {limit}{got}"
    msg = str(error.get("msg", "invalid value"))
    return msg[0].lower() + msg[1:] + got


def convert(exc: ValidationError, source: Source, root: Any, prefix: Path = ()) -> list[Diagnostic]:
    """Diagnostics for every error in ``exc``; ``root`` is the type that was validated at ``prefix``."""
    found: dict[Path, list[tuple[str, str]]] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = source.resolve_path((*prefix, *loc), names_field=error["type"] in _NAMES_FIELD)
        found.setdefault(path, []).append((error["type"], friendly(error, root, loc)))
    out = []
    for path, errors in found.items():
        # a union (e.g. "header name or mapping") reports one error per member: when one member
        # explains the problem, drop the others' "wrong type" noise
        specific = [msg for kind, msg in errors if kind not in _TYPE_ERRORS]
        for msg in dict.fromkeys(specific or [msg for _, msg in errors]):
            out.append(source.diagnostic(path, msg))
    return out


_NAMES_FIELD = {"missing", "extra_forbidden"}
_TYPE_ERRORS = {"model_type", "model_attributes_type", "dict_type", "string_type", "list_type"}
