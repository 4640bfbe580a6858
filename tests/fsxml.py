"""Assemble a rendered configuration the way FreeSWITCH's preprocessor does, for assertions.

FreeSWITCH (switch_xml.c ``preprocess``, 1.10.12) reads ``freeswitch.xml`` line by line, on the raw
text, before any XML parsing:

* ``$${name}`` anywhere in a line is replaced by the global variable (nothing when unset; the name
  ends at the matching ``}``);
* a line holding ``<include>``, ``</include>`` or ``<?`` anywhere is dropped;
* a line holding ``X-PRE-PROCESS`` in any case is a command when ``<`` comes right before it, and is
  dropped otherwise; ``cmd="include"`` follows the glob (relative to the including file's directory,
  sorted), ``cmd="set"`` sets a variable from the raw ``data`` (nothing decoded).

The result is parsed as XML (entities decoded). This helper does the same so tests can query the
document FreeSWITCH would see, including what its preprocessor would do to a value.
"""

from __future__ import annotations

import glob
import re
import xml.etree.ElementTree as ET
from pathlib import Path

_COMMAND = re.compile(r'cmd\s*=\s*"([^"]*)"\s+data\s*=\s*"([^"]*)"', re.I)
_DIRECTIVE = re.compile(r"x-pre-process", re.I)


def _find_end(text: str, start: int) -> int:
    """Index of the ``}`` matching the ``{`` at ``start`` (FreeSWITCH's switch_find_end_paren), or -1."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def expand(text: str, variables: dict[str, str]) -> str:
    """``$${name}`` expansion as switch_xml.c's ``expand_vars`` does it."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$${", i):
            end = _find_end(text, i + 2)
            if end >= 0:
                out.append(variables.get(text[i + 3 : end], ""))
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _preprocess(path: Path, variables: dict[str, str], depth: int = 0) -> str:
    assert depth < 20, "include loop"
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = expand(raw, variables)
        if "<include>" in raw or "</include>" in raw or "<?" in raw:
            continue
        directive = _DIRECTIVE.search(line)
        if directive:
            if directive.start() == 0 or line[directive.start() - 1] != "<":
                continue  # FreeSWITCH drops the whole line
            m = _COMMAND.search(line, directive.end())
            if m:
                cmd, data = m.groups()
                if cmd.lower() == "include":
                    pattern = data if data.startswith("/") else str(path.parent / data)
                    for inc in sorted(glob.glob(pattern)):
                        out.append(_preprocess(Path(inc), variables, depth + 1))
                elif cmd.lower() == "set":
                    name, _, value = data.partition("=")
                    variables[name.strip()] = value.strip(" ")
            continue
        out.append(line)
    return "\n".join(out)


def assemble(conf_dir: Path, variables: dict[str, str] | None = None) -> ET.Element:
    """The parsed document FreeSWITCH builds from ``conf_dir/freeswitch.xml``.

    ``variables`` are the preprocessor's globals: given values are used, and the dict receives what
    the files ``set``.
    """
    env = variables if variables is not None else {}
    env.setdefault("conf_dir", str(conf_dir))
    text = _preprocess(conf_dir / "freeswitch.xml", env)
    return ET.fromstring(text)


def profile_params(doc: ET.Element, profile: str) -> list[tuple[str, str]]:
    """``(name, value)`` of every ``<param>`` in a sofia profile's settings, in order."""
    node = doc.find(f".//configuration[@name='sofia.conf']/profiles/profile[@name='{profile}']/settings")
    assert node is not None, f"no sofia profile {profile}"
    return [(p.get("name", ""), p.get("value", "")) for p in node.findall("param")]


def params(node: ET.Element) -> dict[str, str]:
    """Params of a node as a dict (last one wins)."""
    return {p.get("name", ""): p.get("value", "") for p in node.iter("param")}
