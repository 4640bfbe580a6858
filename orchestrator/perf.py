"""Small performance helpers shared by the batch paths (loading and rendering)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many short-lived objects.

    Parsing a large deployment creates ~100k YAML nodes; each allocation burst triggers a
    collection that walks them all again, which made parsing 3x slower. Reference counting still
    frees everything; the collector runs again when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
