"""Deployment → FreeSWITCH configuration tree: plan, render, write."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.config.model import Deployment
from orchestrator.perf import gc_paused
from orchestrator.render.output import OutputError, TreeDiff, diff_tree, read_tree, write_tree
from orchestrator.render.plan import Plan, build
from orchestrator.render.renderer import MARKER, PUBLIC_MODE, RenderedFile, Renderer, config_digest, render_nodes

#: With an edge, where in the rendered tree the edge's and the nodes' files go.
EDGE_DIR = "kamailio"
NODES_DIR = "nodes"


def render_deployment(deployment: Deployment, base_dir: Path) -> dict[str, RenderedFile]:
    """Every file of the FreeSWITCH configuration for ``deployment`` (TLS paths relative to ``base_dir``).

    Behind an edge each node has its own tree: :func:`render_nodes` (this raises ValueError then)."""
    with gc_paused():
        return Renderer().render(build(deployment, base_dir))


def render_all(deployment: Deployment, base_dir: Path, edge_conf_dir: Path | None = None) -> dict[str, RenderedFile]:
    """Everything ``sipagent render`` writes: without an edge, the FreeSWITCH tree; with one, ``kamailio/`` (the
    edge, whose files name ``edge_conf_dir`` — where Kamailio will read them — in kamailio.cfg) and
    ``nodes/<name>/`` (each node's FreeSWITCH tree), with a manifest at the top."""
    if deployment.edge is None:
        return render_deployment(deployment, base_dir)
    from orchestrator.render import kamailio

    files: dict[str, RenderedFile] = {}
    for name, tree in render_nodes(deployment, base_dir).items():
        files.update({f"{NODES_DIR}/{name}/{rel}": f for rel, f in tree.items()})
    conf_dir = edge_conf_dir if edge_conf_dir is not None else kamailio.DEFAULT_CONF_DIR
    edge = kamailio.render(deployment, base_dir, conf_dir)
    files.update({f"{EDGE_DIR}/{rel}": f for rel, f in edge.items()})
    manifest = {
        "generator": "sipagent",
        "digest": config_digest(files),
        "edge": EDGE_DIR,
        "nodes": [n.name for n in deployment.edge.nodes],
    }
    files[MARKER] = RenderedFile((json.dumps(manifest, indent=2) + "\n").encode(), PUBLIC_MODE)
    return dict(sorted(files.items()))


__all__ = [
    "EDGE_DIR",
    "NODES_DIR",
    "OutputError",
    "Plan",
    "RenderedFile",
    "Renderer",
    "TreeDiff",
    "build",
    "diff_tree",
    "read_tree",
    "render_all",
    "render_deployment",
    "render_nodes",
    "write_tree",
]
