"""Deployment → FreeSWITCH configuration tree: plan, render, write."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config.model import Deployment
from orchestrator.perf import gc_paused
from orchestrator.render.output import OutputError, TreeDiff, diff_tree, read_tree, write_tree
from orchestrator.render.plan import Plan, build
from orchestrator.render.renderer import RenderedFile, Renderer, render_nodes


def render_deployment(deployment: Deployment, base_dir: Path) -> dict[str, RenderedFile]:
    """Every file of the FreeSWITCH configuration for ``deployment`` (TLS paths relative to ``base_dir``).

    Behind an edge each node has its own tree: :func:`render_nodes` (this raises ValueError then)."""
    with gc_paused():
        return Renderer().render(build(deployment, base_dir))


__all__ = [
    "OutputError",
    "Plan",
    "RenderedFile",
    "Renderer",
    "TreeDiff",
    "build",
    "diff_tree",
    "read_tree",
    "render_deployment",
    "render_nodes",
    "write_tree",
]
