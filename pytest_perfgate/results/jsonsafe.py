"""The one JSON writer of results: NaN and infinities become ``null``, never invalid JSON.

Every JSON file the package writes (results, baselines, ``perfgate analyze --json``)
goes through ``dumps``; a reader treats ``null`` as "unknown" or "unbounded".
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps", "json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by ``None``, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def dumps(data: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``json_safe(data)``; strict (``allow_nan=False``)."""
    return json.dumps(json_safe(data), allow_nan=False, **kwargs)
