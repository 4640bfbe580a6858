"""Assemble a rendered configuration the way FreeSWITCH's preprocessor does, for assertions.

FreeSWITCH reads ``freeswitch.xml``, follows ``<X-PRE-PROCESS cmd="include" data="glob"/>``
(relative to the including file's directory, files in sorted order, ``<include>`` wrappers
dropped), applies ``cmd="set"`` and expands ``$${name}`` in the text of later lines, then parses
the result as XML (entities decoded). This helper does the same so tests can query the document
FreeSWITCH would see.
"""

from __future__ import annotations

import glob
import re
import xml.etree.ElementTree as ET
from pathlib import Path

_PRE = re.compile(r'<X-PRE-PROCESS\s+cmd="(\w+)"\s+data="([^"]*)"\s*/>')
_VAR = re.compile(r"\$\$\{([^}]*)\}")


def _expand(text: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1), ""), text)


def _preprocess(path: Path, variables: dict[str, str], depth: int = 0) -> str:
    assert depth < 20, "include loop"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("<?xml"):
            continue
        if stripped in ("<include>", "</include>"):
            continue
        m = _PRE.search(line)
        if m:
            cmd, data = m.groups()
            if cmd == "include":
                pattern = data if data.startswith("/") else str(path.parent / data)
                for inc in sorted(glob.glob(pattern)):
                    out.append(_preprocess(Path(inc), variables, depth + 1))
            elif cmd == "set":
                name, _, value = _expand(data, variables).partition("=")
                variables[name] = value
            continue
        out.append(_expand(line, variables))
    return "\n".join(out)


def assemble(conf_dir: Path, variables: dict[str, str] | None = None) -> ET.Element:
    """The parsed document FreeSWITCH builds from ``conf_dir/freeswitch.xml``."""
    env = {"conf_dir": str(conf_dir), **(variables or {})}
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
