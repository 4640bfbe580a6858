"""Read a deployment YAML file into plain data, remembering where every value came from.

Plain scalars are kept as the text that was written (``+15551234567`` stays a string,
``no`` does not become ``False``); pydantic converts them to the declared field types.
``${VAR}`` / ``${VAR:-default}`` in string values are replaced from the environment;
``$$`` writes a literal ``$``.

The data is built straight from libyaml's event stream, never as a node graph, and reading is
bounded: nesting depth, the number of values the file expands to (every use of an alias counts what
it repeats, so a "billion laughs" file is refused at once, without expanding it), the values aliases
add, the length of a key, of one value and of all values together. Going over a limit is an error
naming the place, never a long wait or an exhausted memory. An alias reuses the value built for its
anchor (the data is never modified afterwards).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestrator.config.diagnostics import Diagnostic, Path, Severity

try:  # libyaml is much faster on large deployments; positions are the same
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_INTERPOLATION = re.compile(r"\$\$|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SURROGATE = re.compile("[\ud800-\udfff]")

#: Values (mappings, lists, keys, scalars) a file may expand to, counting every alias use.
MAX_NODES = 1_000_000
#: Values aliases may add: each use of ``*name`` counts every value under its anchor.
MAX_ALIAS_NODES = 200_000
#: Nesting depth of mappings and lists (aliases included).
MAX_DEPTH = 32
#: Characters of one value, after ``${VAR}`` interpolation.
MAX_VALUE_CHARS = 65_536
#: Characters of one mapping key.
MAX_KEY_CHARS = 256
#: Characters of all values together (aliases and interpolation included).
MAX_TOTAL_CHARS = 64 * 1024 * 1024


class _Stop(Exception):
    """The document cannot be read (over a limit, a cycle, an unknown alias): the build stops at once."""

    def __init__(self, path: Path, pos: tuple[int, int], message: str):
        super().__init__(message)
        self.path = path
        self.pos = pos
        self.message = message


@dataclass(frozen=True)
class _Anchor:
    """What an ``&anchor`` stands for: its value, how much it expands to, and where its parts were."""

    value: Any
    nodes: int
    chars: int
    depth: int
    positions: tuple[tuple[Path, tuple[int, int]], ...]
    from_env: tuple[Path, ...]
    unresolved: tuple[Path, ...]


@dataclass
class Source:
    """A parsed deployment file: its data, where each value was, and which came from the environment."""

    data: Any
    positions: dict[Path, tuple[int, int]]
    name: str = ""
    diagnostics: list[Diagnostic] = field(default_factory=list)
    from_env: set[Path] = field(default_factory=set)
    unresolved: set[Path] = field(default_factory=set)

    def locate(self, path: Path) -> tuple[int, int]:
        """Line and column of ``path``, or of its nearest ancestor that exists in the file."""
        for end in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos is not None:
                return pos
        return (1, 1)

    def diagnostic(self, path: Path, message: str, severity: Severity = Severity.ERROR) -> Diagnostic:
        """Build a diagnostic for ``path`` with its line and column filled in."""
        line, column = self.locate(path)
        return Diagnostic(line, column, tuple(path), message, severity, self.name)

    def resolve_path(self, loc: tuple[Any, ...], names_field: bool = True) -> Path:
        """Map a pydantic error location onto the YAML tree, dropping parts that are not in the file.

        Pydantic inserts union tags and validator names into locations; a part that does not exist in
        the data is skipped, unless it is the last one and ``names_field`` says it names a field
        (a missing or unknown setting).
        """
        node = self.data
        path: list[str | int] = []
        for i, part in enumerate(loc):
            if isinstance(node, dict) and isinstance(part, str) and part in node:
                node = node[part]  # (two branches: each narrows node and part together)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            elif names_field and i == len(loc) - 1 and isinstance(part, (str, int)):
                node = None
            else:
                continue
            path.append(part)
        return tuple(path)


def _mark(event: yaml.Event) -> tuple[int, int]:
    mark = event.start_mark  # the stubs allow None; the parser's events always carry a mark
    return (mark.line + 1, mark.column + 1)  # type: ignore[union-attr]


def _is_plain(event: yaml.ScalarEvent) -> bool:
    return event.style in (None, "")  # plain style: None (Python parser) or "" (libyaml)


class _Builder:
    def __init__(self, name: str, env: Mapping[str, str]):
        self.name = name
        self.env = env
        self.positions: dict[Path, tuple[int, int]] = {}
        self.diagnostics: list[Diagnostic] = []
        self.from_env: set[Path] = set()
        self.unresolved: set[Path] = set()
        self.nodes = 0
        self.alias_nodes = 0
        self.chars = 0
        self.anchors: dict[str, _Anchor] = {}
        self.building: set[str] = set()  # anchors whose value is not finished (an alias to one is a cycle)
        self.events: Iterator[yaml.Event] = iter(())
        self.env_log: list[Path] = []  # from_env and unresolved in the order they were found (for anchors)
        self.unresolved_log: list[Path] = []

    def error(self, path: Path, pos: tuple[int, int], message: str) -> None:
        self.diagnostics.append(Diagnostic(pos[0], pos[1], path, message, Severity.ERROR, self.name))

    def _count(self, path: Path, pos: tuple[int, int], nodes: int = 1, chars: int = 0) -> None:
        self.nodes += nodes
        self.chars += chars
        if self.nodes > MAX_NODES:
            raise _Stop(path, pos, f"the file holds more than {MAX_NODES:,} values (each use of an alias counted)")
        if self.chars > MAX_TOTAL_CHARS:
            raise _Stop(path, pos, f"the values add up to more than {MAX_TOTAL_CHARS:,} characters")

    # -- documents ----------------------------------------------------------------------------
    def document(self, events: Iterator[yaml.Event]) -> Any:
        """The data of a single-document stream (``{}`` for an empty stream)."""
        self.events = events
        next(events)  # StreamStartEvent
        event = next(events)
        if isinstance(event, yaml.StreamEndEvent):
            return {}
        data = self.node(next(events), (), 0)
        next(events)  # DocumentEndEvent
        event = next(events)
        if not isinstance(event, yaml.StreamEndEvent):
            raise _Stop((), _mark(event), "YAML syntax error: expected a single document (found a second '---')")
        return data

    # -- values -------------------------------------------------------------------------------
    def node(self, event: yaml.Event, path: Path, depth: int) -> Any:
        mark = event.start_mark  # _mark inlined: the hot path (a None test here costs 0.2% of a parse)
        pos = (mark.line + 1, mark.column + 1)  # type: ignore[union-attr]
        if path not in self.positions:  # a mapping value is located at its key
            self.positions[path] = pos
        if type(event) is yaml.AliasEvent:
            return self._alias(event.anchor or "", path, pos, depth)  # an alias always has a name
        # node() is only given node events (YAML's event grammar); an isinstance() would cost the hot path
        anchor: str | None = event.anchor  # type: ignore[attr-defined]
        if anchor is None:
            return self._value(event, path, pos, depth)
        before = (self.nodes, self.chars, len(self.positions), len(self.env_log), len(self.unresolved_log))
        self.building.add(anchor)
        try:
            value, height = self._value(event, path, pos, depth), self._height
        finally:
            self.building.discard(anchor)
        n = len(path)
        added = len(self.positions) - before[2]
        recent = itertools.islice(reversed(self.positions.items()), added)
        self.anchors[anchor] = _Anchor(
            value,
            self.nodes - before[0],
            self.chars - before[1],
            height,
            tuple((p[n:], at) for p, at in recent if p[:n] == path and len(p) > n),
            tuple(p[n:] for p in self.env_log[before[3] :] if p[:n] == path),
            tuple(p[n:] for p in self.unresolved_log[before[4] :] if p[:n] == path),
        )
        return value

    _height = 0  # nesting height of the value built last (for aliases: depth they add where used)

    def _value(self, event: yaml.Event, path: Path, pos: tuple[int, int], depth: int) -> Any:
        if type(event) is yaml.ScalarEvent:  # the hot path: most events are scalars
            self._height = 0
            text = event.value
            if event.style in (None, "") and (
                event.tag == _NULL_TAG or (event.tag is None and text in _NULLS and event.implicit[0])
            ):
                self._count(path, pos)
                return None
            value = self._interpolate(text, path, pos) if "$" in text else text
            if len(value) > MAX_VALUE_CHARS:
                raise _Stop(path, pos, f"this value is longer than {MAX_VALUE_CHARS:,} characters")
            self.nodes += 1
            self.chars += len(value)
            if self.nodes > MAX_NODES or self.chars > MAX_TOTAL_CHARS:
                self._count(path, pos, 0)  # raises with the message
            return value
        self._count(path, pos)
        if depth >= MAX_DEPTH:
            raise _Stop(path, pos, f"mappings and lists nest deeper than {MAX_DEPTH} levels")
        if isinstance(event, yaml.SequenceStartEvent):
            items: list[Any] = []
            height = 0
            for item in iter(self.events.__next__, None):
                if isinstance(item, yaml.SequenceEndEvent):
                    break
                items.append(self.node(item, (*path, len(items)), depth + 1))
                height = max(height, self._height)
            self._height = height + 1
            return items
        assert isinstance(event, yaml.MappingStartEvent)
        return self._mapping(path, depth)

    def _alias(self, name: str, path: Path, pos: tuple[int, int], depth: int) -> Any:
        anchor = self.anchors.get(name)
        if anchor is None:
            if name in self.building:
                raise _Stop(path, pos, f"alias *{name} refers to a mapping or list that contains it (a cycle)")
            raise _Stop(path, pos, f"YAML syntax error: alias *{name} has no anchor &{name} before it")
        self.alias_nodes += anchor.nodes
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise _Stop(
                path,
                pos,
                f"aliases expand to more than {MAX_ALIAS_NODES:,} values (here *{name} repeats {anchor.nodes:,}): "
                "write the repeated settings out, or merge smaller anchors",
            )
        if depth + anchor.depth > MAX_DEPTH:
            raise _Stop(path, pos, f"mappings and lists nest deeper than {MAX_DEPTH} levels (through *{name})")
        self._count(path, pos, anchor.nodes, anchor.chars)
        for rel, at in anchor.positions:
            self.positions.setdefault((*path, *rel), at)
        self.from_env.update((*path, *rel) for rel in anchor.from_env)
        self.unresolved.update((*path, *rel) for rel in anchor.unresolved)
        self._height = anchor.depth
        return anchor.value

    def _skip(self, event: yaml.Event, path: Path) -> None:
        """Consume a key that is not a scalar (its whole subtree), counting what it holds."""
        open_ = 1 if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)) else 0
        while open_:
            inner = next(self.events)
            self._count(path, _mark(inner))
            if isinstance(inner, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                open_ += 1
            elif isinstance(inner, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                open_ -= 1

    def _merge(self, path: Path, depth: int, merged: dict[str, Any]) -> None:
        event = next(self.events)
        sources = []
        if isinstance(event, yaml.SequenceStartEvent):
            self._count(path, _mark(event))
            for item in iter(self.events.__next__, None):
                if isinstance(item, yaml.SequenceEndEvent):
                    break
                sources.append((_mark(item), self.node(item, path, depth)))
        else:
            sources.append((_mark(event), self.node(event, path, depth)))
        for at, value in sources:
            if isinstance(value, dict):
                for k, v in value.items():
                    merged.setdefault(k, v)
            else:
                self.error(path, at, "a '<<' merge key needs a mapping")

    def _mapping(self, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, tuple[int, int]] = {}
        merged: dict[str, Any] = {}
        height = 0
        for key_event in iter(self.events.__next__, None):
            if isinstance(key_event, yaml.MappingEndEvent):
                break
            at = _mark(key_event)
            self._count(path, at)
            if not isinstance(key_event, yaml.ScalarEvent):
                self.error(path, at, "mapping keys must be plain words")
                self._skip(key_event, path)
                self._skip_value(path)
                continue
            key = key_event.value
            if key_event.tag == _MERGE_TAG or (key == "<<" and _is_plain(key_event) and key_event.tag is None):
                self._merge(path, depth, merged)
                height = max(height, self._height)
                continue
            if len(key) > MAX_KEY_CHARS:
                raise _Stop(path, at, f"a key is longer than {MAX_KEY_CHARS} characters")
            child = (*path, key)
            if key in seen:
                self.error(child, at, f"duplicate key '{key}' (first given on line {seen[key][0]})")
                self._skip_value(path)
                continue
            seen[key] = at
            self.positions[child] = at
            out[key] = self.node(next(self.events), child, depth + 1)
            height = max(height, self._height)
        for k, v in merged.items():
            out.setdefault(k, v)
        self._height = height + 1
        return out

    def _skip_value(self, path: Path) -> None:
        event = next(self.events)
        self._count(path, _mark(event))
        self._skip(event, path)

    def _interpolate(self, text: str, path: Path, pos: tuple[int, int]) -> str:
        if "$" not in text:
            return text

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            expr = match.group(1)
            name, sep, default = expr.partition(":-")
            if not _VAR_NAME.fullmatch(name):
                self.error(path, pos, f"'${{{expr}}}' is not a valid environment reference (use ${{NAME}})")
                return match.group(0)
            self.from_env.add(path)
            self.env_log.append(path)
            value = self.env.get(name)
            if value is None or (sep and value == ""):
                if sep:
                    return default
                self.error(path, pos, f"environment variable {name} is not set")
                self.unresolved.add(path)
                self.unresolved_log.append(path)
                return ""
            if len(value) > MAX_VALUE_CHARS:
                raise _Stop(path, pos, f"environment variable {name} is longer than {MAX_VALUE_CHARS:,} characters")
            if _SURROGATE.search(value):  # undecodable bytes (os.environ keeps them as surrogates)
                self.error(path, pos, f"environment variable {name} is not valid UTF-8 text")
                self.unresolved.add(path)
                self.unresolved_log.append(path)
                return ""
            return value

        return _INTERPOLATION.sub(substitute, text)


def parse(text: str, name: str = "", env: Mapping[str, str] | None = None) -> Source:
    """Parse YAML text into a :class:`Source`; syntax errors and limits become diagnostics, never exceptions."""
    builder = _Builder(name, env if env is not None else {})
    try:
        loader = _Loader(text)
        try:  # events straight from the parser (yaml.parse adds a Python generator step per event)
            data = builder.document(iter(loader.get_event, None))
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        # point at where the broken construct starts (context), say where the parser noticed
        mark = exc.context_mark or exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context} that starts here)" if exc.context and exc.context_mark else ""
        if exc.problem_mark and exc.context_mark and exc.problem_mark.line != exc.context_mark.line:
            context += f", noticed on line {exc.problem_mark.line + 1}"
        diag = Diagnostic(line, col, (), f"YAML syntax error: {problem}{context}", Severity.ERROR, name)
        return Source(None, {}, name, [diag])
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        return Source(None, {}, name, [Diagnostic(1, 1, (), f"YAML error: {exc}", Severity.ERROR, name)])
    except _Stop as exc:
        diag = Diagnostic(exc.pos[0], exc.pos[1], exc.path, exc.message, Severity.ERROR, name)
        return Source(None, {}, name, [diag])
    return Source(data, builder.positions, name, builder.diagnostics, builder.from_env, builder.unresolved)
