"""The package layout reads like the data flow, and stays that way: no package imports another against it.

config → render → FreeSWITCH; ESL events → calls → media → agents, with ``audio`` a leaf both media and
agents use (docs/architecture.md); ``store`` (the call store) reads only the configuration, and ``calls``, ``api``
and the CLI use it; ``edge`` (the Kamailio edge's DNS records and live reloads) reads only the
configuration, and the CLI, doctor and render use it; ``webhooks`` takes events into the store's outbox and
out over HTTP, and only the runtime and the API use it. ``events`` (call and trunk events) is built from the
calls' public types; the controller, the asyncio layer that publishes them, is its own node of the graph
(:data:`MODULES`), so ``calls.controller`` → ``events`` → ``calls`` is no cycle. Every import counts, including
those inside functions.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "orchestrator"

#: package -> packages it must never import (directly; cycles are checked over the whole graph)
FORBIDDEN = {
    "audio": {"*"},  # a leaf: numpy, soxr, audioop only
    "dtmf": {"*"},
    "channelvars": {"*"},
    "perf": {"*"},
    "config": {
        "agents",
        "api",
        "audio",
        "calls",
        "cli",
        "doctor",
        "edge",
        "esl",
        "events",
        "media",
        "render",
        "runtime",
        "store",
        "webhooks",
    },
    "edge": {
        "agents",
        "api",
        "audio",
        "calls",
        "cli",
        "doctor",
        "esl",
        "events",
        "media",
        "render",
        "runtime",
        "store",
        "webhooks",
    },
    "esl": {
        "agents",
        "api",
        "audio",
        "calls",
        "cli",
        "doctor",
        "edge",
        "events",
        "media",
        "render",
        "runtime",
        "store",
        "webhooks",
    },
    "agents": {
        "api",
        "calls",
        "cli",
        "doctor",
        "edge",
        "esl",
        "events",
        "media",
        "render",
        "runtime",
        "store",
        "webhooks",
    },
    "media": {"api", "calls", "cli", "doctor", "edge", "events", "render", "runtime", "store", "webhooks"},
    "calls": {"api", "cli", "doctor", "edge", "events", "render", "runtime", "calls.controller", "webhooks"},
    "calls.controller": {"api", "cli", "doctor", "edge", "render", "runtime", "webhooks"},
    "events": {
        "agents",
        "api",
        "audio",
        "cli",
        "doctor",
        "edge",
        "esl",
        "media",
        "render",
        "runtime",
        "store",
        "calls.controller",
        "webhooks",
    },
    "render": {"agents", "api", "audio", "calls", "cli", "doctor", "media", "runtime", "store", "webhooks"},
    "doctor": {"api", "calls", "cli", "runtime", "store", "webhooks"},
    # the call store: records are dicts to it; it reads the configuration and nothing else of the project
    "store": {
        "agents",
        "api",
        "audio",
        "calls",
        "cli",
        "doctor",
        "edge",
        "esl",
        "events",
        "media",
        "render",
        "runtime",
        "webhooks",
    },
    "api": {"cli", "doctor", "render", "runtime"},
    # webhooks: events into the store's outbox, out over HTTP; it reads the configuration, events and the store
    "webhooks": {"agents", "api", "audio", "calls", "cli", "doctor", "edge", "esl", "media", "render", "runtime"},
}


#: modules that are nodes of their own (not part of their package's node): the asyncio layers that wire packages
MODULES = frozenset({"calls.controller"})
for _rules in FORBIDDEN.values():  # a package kept from another is kept from its modules too
    _rules |= {m for m in MODULES if m.split(".")[0] in _rules}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    module = ".".join(rel.with_suffix("").parts[:2])
    return module if module in MODULES else rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The top-level orchestrator packages a module imports (absolute or relative, anywhere in it)."""
    return _imports_in(path.read_text(), path.relative_to(ROOT).parent.parts)


def _imports_in(source: str, here: tuple[str, ...]) -> set[str]:
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - (node.level - 1)]) if node.level > 1 else list(here)
                module = ".".join(["orchestrator", *base, *([node.module] if node.module else [])])
                names = [f"{module}.{alias.name}" for alias in node.names]
            else:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "orchestrator" and len(parts) > 1:
                module = ".".join(parts[1:3])
                found.add(module if module in MODULES else parts[1])
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        package = _package(path)
        if package in ("__init__", "__main__"):
            continue
        graph[package] |= _imports(path) - {package}
    return graph


def test_the_layout_has_the_packages_it_names() -> None:
    assert set(FORBIDDEN) <= set(_graph()) | {"dtmf", "perf", "channelvars"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_against_the_data_flow(package: str) -> None:
    imports = _graph().get(package, set())
    forbidden = FORBIDDEN[package]
    bad = imports if "*" in forbidden else imports & forbidden
    assert not bad, f"orchestrator.{package} imports {sorted(bad)}"


def test_no_package_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                cycles.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its smallest member
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "package cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_every_form_of_import() -> None:
    source = """
import orchestrator.esl.client
from orchestrator import calls
from orchestrator.render.plan import build
from .. import api
from ..doctor import run
from .session import Session
from orchestrator.calls import controller

def later():
    import orchestrator.cli
"""
    assert _imports_in(source, ("media",)) == {
        "esl", "calls", "render", "api", "doctor", "media", "cli", "calls.controller"
    }  # fmt: skip
