"""Read a deployment YAML file into plain data, remembering where every value came from.

Plain scalars are kept as the text that was written (``+15551234567`` stays a string,
``no`` does not become ``False``); pydantic converts them to the declared field types.
``${VAR}`` / ``${VAR:-default}`` in string values are replaced from the environment;
``$$`` writes a literal ``$``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
_INTERPOLATION = re.compile(r"\$\$|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
            if (isinstance(node, dict) and isinstance(part, str) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            ):
                node = node[part]
                path.append(part)
            elif names_field and i == len(loc) - 1 and isinstance(part, (str, int)):
                path.append(part)
                node = None
        return tuple(path)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, name: str, env: Mapping[str, str]):
        self.name = name
        self.env = env
        self.positions: dict[Path, tuple[int, int]] = {}
        self.diagnostics: list[Diagnostic] = []
        self.from_env: set[Path] = set()
        self.unresolved: set[Path] = set()

    def error(self, path: Path, pos: tuple[int, int], message: str) -> None:
        self.diagnostics.append(Diagnostic(pos[0], pos[1], path, message, Severity.ERROR, self.name))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.positions.setdefault(path, _mark(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        if node.style in (None, "") and node.tag == _NULL_TAG:  # plain style: None (Python) or "" (libyaml)
            return None
        return self._interpolate(node.value, path, _mark(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, tuple[int, int]] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    value = self.build(src, path)
                    if isinstance(value, dict):
                        for k, v in value.items():
                            merged.setdefault(k, v)
                    else:
                        self.error(path, _mark(src), "a '<<' merge key needs a mapping")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(path, _mark(key_node), "mapping keys must be plain words")
                continue
            key = key_node.value
            child = (*path, key)
            if key in seen:
                line = seen[key][0]
                self.error(child, _mark(key_node), f"duplicate key '{key}' (first given on line {line})")
                continue
            seen[key] = _mark(key_node)
            self.positions[child] = _mark(key_node)
            out[key] = self.build(value_node, child)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out

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
            value = self.env.get(name)
            if value is None or (sep and value == ""):
                if sep:
                    return default
                self.error(path, pos, f"environment variable {name} is not set")
                self.unresolved.add(path)
                return ""
            return value

        return _INTERPOLATION.sub(substitute, text)


def parse(text: str, name: str = "", env: Mapping[str, str] | None = None) -> Source:
    """Parse YAML text into a :class:`Source`; syntax errors become diagnostics, never exceptions."""
    builder = _Builder(name, env if env is not None else {})
    try:
        root = yaml.compose(text, Loader=_Loader)
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
    if root is None:
        data: Any = {}
    else:
        data = builder.build(root, ())
    return Source(data, builder.positions, name, builder.diagnostics, builder.from_env, builder.unresolved)
