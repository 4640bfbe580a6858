"""The steps FreeSWITCH's XML dialplan runs for a number in a rendered context, for simulator tests.

A simplified hunt (mod_dialplan_xml's): extensions in order; an extension whose conditions all match adds its
actions (a condition on ``destination_number`` is matched with its regular expression; a condition on any other
field counts as matched, as for a plain offer on a trunk that does not require SRTP), and hunting goes on only past
extensions with ``continue="true"``. Returns the ``(application, data)`` pairs up to (without) ``park``, with ``$1``
left as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

from fsxml import assemble


def steps(conf_dir: Path, context: str, number: str) -> list[tuple[str, str]]:
    """What the dialplan of ``context`` runs for ``number`` before parking the call."""
    doc = assemble(conf_dir)
    ctx = doc.find(f".//section[@name='dialplan']/context[@name='{context}']")
    assert ctx is not None, f"no context {context}"
    out: list[tuple[str, str]] = []
    for extension in ctx.findall("extension"):
        conditions = extension.findall("condition")
        matched = all(
            c.get("field") != "destination_number" or re.search(c.get("expression", ""), number) for c in conditions
        )
        if not matched:
            continue
        for condition in conditions:
            for action in condition.findall("action"):
                app, data = action.get("application", ""), action.get("data", "")
                if app == "park":
                    return out
                out.append((app, data))
        if extension.get("continue") != "true":
            break
    return out
