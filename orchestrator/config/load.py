"""Load a deployment file: parse, interpolate, validate each part, cross-check, report everything at once."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from orchestrator.config import checks
from orchestrator.config.diagnostics import DeploymentError, Diagnostic, Severity, sort
from orchestrator.config.diagnostics import Path as YamlPath
from orchestrator.config.errors import convert
from orchestrator.config.files import DEPLOYMENT_LIMIT, FileReadError, read_text_bounded
from orchestrator.config.model import (
    Agent,
    Deployment,
    Edge,
    FreeSwitch,
    Number,
    Orchestrator,
    TcpTransport,
    Transports,
    Trunk,
)
from orchestrator.config.source import Source, parse
from orchestrator.config.text import quote
from orchestrator.perf import gc_paused

#: The type each top-level list's entries validate against (a type form: Agent is a tagged union, not a class).
_LISTS: dict[str, Any] = {"trunks": Trunk, "numbers": Number, "agents": Agent}
#: Most entries each top-level list may hold.
MAX_ENTRIES = {"trunks": 10_000, "numbers": 100_000, "agents": 1_000}
_TOP = ["version", "freeswitch", "transports", "trunks", "numbers", "agents", "orchestrator", "edge"]
_ADAPTERS: dict[object, TypeAdapter[Any]] = {
    tp: TypeAdapter(tp) for tp in (*_LISTS.values(), FreeSwitch, Transports, Orchestrator, Edge)
}


@dataclass
class LoadResult:
    """The outcome of loading: the deployment (when there are no errors) and every finding."""

    deployment: Deployment | None
    diagnostics: list[Diagnostic]
    source: Source
    base_dir: Path
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        """Findings that stop a render."""
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        """Findings worth a look that do not stop a render."""
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]


def _validate(source: Source, diags: list[Diagnostic], tp: object, value: Any, prefix: YamlPath) -> Any:
    """``value`` validated as ``tp`` (an instance of it), or None with its errors added to ``diags``."""
    try:
        return _ADAPTERS[tp].validate_python(value)
    except ValidationError as exc:
        diags.extend(convert(exc, source, tp, prefix))
        return None


def check_source(source: Source, base_dir: Path) -> LoadResult:
    """Validate parsed YAML; never raises for bad input."""
    diags = list(source.diagnostics)
    data = source.data
    if data is None and not diags:  # a document that is only `~` or `null`
        diags.append(source.diagnostic((), "the deployment file is empty: expected freeswitch, transports, trunks, …"))
    if data is None:
        return LoadResult(None, sort(diags), source, base_dir)
    if not isinstance(data, dict):
        diags.append(
            source.diagnostic((), "the deployment file must be a mapping with freeswitch, transports, trunks, …")
        )
        return LoadResult(None, sort(diags), source, base_dir)

    parts = checks.Parts()
    _check_top_level(source, data, diags)
    _validate_sections(source, data, diags, parts)
    _validate_lists(source, data, diags, parts)
    diags.extend(checks.check(parts, source, base_dir))
    # a value whose environment variable is missing already has its error; do not pile on
    env_errors = set(source.diagnostics)
    diags = [d for d in diags if d in env_errors or d.path not in source.unresolved]
    deployment = None if any(d.severity is Severity.ERROR for d in diags) else _deployment(parts)
    return LoadResult(deployment, sort(diags), source, base_dir)


def _check_top_level(source: Source, data: dict[str, Any], diags: list[Diagnostic]) -> None:
    """Unknown sections (with the closest known name) and the file's version."""
    for key in data:
        if key not in _TOP:
            close = difflib.get_close_matches(key[:100], _TOP, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; expected: {', '.join(_TOP)}"
            diags.append(source.diagnostic((key,), f"unknown section {quote(key)}{hint}"))
    if data.get("version", "1") not in ("1", 1):
        diags.append(
            source.diagnostic(
                ("version",), f"unsupported version {quote(data['version'])}: this sipagent reads version 1"
            )
        )


def _validate_sections(source: Source, data: dict[str, Any], diags: list[Diagnostic], parts: checks.Parts) -> None:
    """The single sections: freeswitch (required), transports and orchestrator (defaults when absent)."""
    if "freeswitch" not in data:
        diags.append(
            source.diagnostic(
                ("freeswitch",), "'freeswitch' is required: the FreeSWITCH node's addresses and event socket"
            )
        )
    else:
        parts.freeswitch = _validate(source, diags, FreeSwitch, data["freeswitch"], ("freeswitch",))
    if "transports" in data:
        parts.transports = _validate(source, diags, Transports, data["transports"], ("transports",))
    else:
        parts.transports = Transports(tcp=TcpTransport())
    if "orchestrator" in data:
        parts.orchestrator = _validate(source, diags, Orchestrator, data["orchestrator"], ("orchestrator",))
    else:
        parts.orchestrator = Orchestrator()
    if data.get("edge") is not None:
        parts.edge = _validate(source, diags, Edge, data["edge"], ("edge",))


def _validate_lists(source: Source, data: dict[str, Any], diags: list[Diagnostic], parts: checks.Parts) -> None:
    """trunks, numbers, agents: bounded, each entry validated on its own (one bad entry hides no other)."""
    for key in _LISTS:
        items = data.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            diags.append(source.diagnostic((key,), f"'{key}' must be a list (each entry starting with '-')"))
            continue
        if len(items) > MAX_ENTRIES[key]:
            diags.append(source.diagnostic((key,), f"{len(items):,} {key}: at most {MAX_ENTRIES[key]:,} are supported"))
            continue
        valid: dict[int, Any] = {}
        for i, item in enumerate(items):
            value = _validate(source, diags, _LISTS[key], item, (key, i))
            if value is not None:
                valid[i] = value
        setattr(parts, key, valid)
        if key in ("trunks", "agents"):
            names = {
                str(item["name"]) for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)
            }
            setattr(parts, f"declared_{key}", names)


def _deployment(parts: checks.Parts) -> Deployment:
    """The deployment from parts that passed every check (no second validation: each part is validated)."""
    # every section is present and valid here: a missing or invalid one is an error above
    assert parts.freeswitch is not None and parts.transports is not None and parts.orchestrator is not None
    return Deployment.model_construct(
        version=1,
        freeswitch=parts.freeswitch,
        transports=parts.transports,
        trunks=list(parts.trunks.values()),
        numbers=list(parts.numbers.values()),
        agents=list(parts.agents.values()),
        orchestrator=parts.orchestrator,
        edge=parts.edge,
    )


def check_text(
    text: str, name: str = "", env: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> LoadResult:
    """Validate deployment YAML given as text (``env`` defaults to the process environment)."""
    with gc_paused():
        source = parse(text, name, os.environ if env is None else env)
        return check_source(source, base_dir or Path.cwd())


def check_file(path: str | Path, env: Mapping[str, str] | None = None) -> LoadResult:
    """Validate a deployment file; relative paths inside it are relative to its directory."""
    p = Path(path)
    try:
        text = read_text_bounded(p, DEPLOYMENT_LIMIT)
    except FileReadError as exc:
        diag = Diagnostic(1, 1, (), f"cannot read the deployment file: {exc}", Severity.ERROR, str(p))
        return LoadResult(None, [diag], Source(None, {}, str(p)), p.parent)
    return check_text(text, str(p), env, p.resolve().parent)


def load_deployment(path: str | Path, env: Mapping[str, str] | None = None) -> LoadResult:
    """Load a deployment file, raising :class:`DeploymentError` (with every finding) when it has errors."""
    result = check_file(path, env)
    if result.deployment is None:
        raise DeploymentError(result.diagnostics)
    return result
