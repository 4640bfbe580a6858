"""FreeSWITCH's cJSON 1.7 (``src/cJSON.c`` of 1.10.12) as the fork modules see server JSON: read and re-printed.

Pure. What differs from :mod:`json`: object keys are looked up case-insensitively (first match wins), order and
duplicate keys are kept, numbers print as C's ``%1.15g`` (``%1.17g`` when that does not round-trip), non-finite
numbers print as ``null``, leading bytes <= 32 are skipped and text after the value is ignored.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["INVALID", "JObj", "cjson_parse", "cjson_print", "valueint"]


class JObj(list):  # type: ignore[type-arg]
    """A cJSON object: ordered (key, value) pairs, duplicates kept; lookups are case-insensitive, first match wins."""

    def get_item(self, key: str) -> Any:
        low = key.lower()
        return next((v for k, v in self if k.lower() == low), None)

    def detach(self, key: str) -> Any:
        low = key.lower()
        for i, (k, v) in enumerate(self):
            if k.lower() == low:
                del self[i]
                return v
        return None


#: what :func:`cjson_parse` returns for text that is not JSON (``cJSON_Parse`` returning NULL)
INVALID = object()
_DECODER = json.JSONDecoder(object_pairs_hook=JObj, parse_constant=lambda c: _raise(c))


def _raise(c: str) -> Any:
    raise ValueError(c)


def cjson_parse(text: str) -> Any:
    """``cJSON_Parse``: leading bytes <= 32 skipped, text after the value ignored; :data:`INVALID` on failure."""
    s = text.lstrip("".join(chr(c) for c in range(33)))
    try:
        value, _ = _DECODER.raw_decode(s)
    except ValueError:
        return INVALID
    return value


def cjson_print(value: Any) -> str:
    """``cJSON_PrintUnformatted``."""
    if isinstance(value, JObj):
        return "{" + ",".join(f"{_cj_str(k)}:{cjson_print(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(cjson_print(v) for v in value) + "]"
    if isinstance(value, str):
        return _cj_str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    try:
        d = float(value)
    except OverflowError:
        return "null"
    if not math.isfinite(d):
        return "null"
    s = f"{d:1.15g}"  # C's %1.15g, then %1.17g when that does not round-trip
    return s if float(s) == d else f"{d:1.17g}"


def _cj_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def valueint(v: Any) -> int:
    """cJSON's ``valueint`` of a number (saturated to int); 0 for anything else."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return 0
    if isinstance(v, float) and not math.isfinite(v):
        return 0
    return max(-(2**31), min(2**31 - 1, int(v)))
