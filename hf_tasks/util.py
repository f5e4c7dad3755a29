"""Small helpers every part of the package shares, one copy each: "did you mean", atomic JSON, flat dicts, numbers
for tables, and what looks like a Hub repo id."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Iterable


def nearest(name: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name closest to ``name``, if any is close enough."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6, prefix: str = "") -> str:
    """``"; did you mean 'x'?"`` for the nearest known name, or ``""``."""
    close = nearest(name, known, cutoff)
    return f"; did you mean {prefix + close!r}?" if close else ""


def write_json(path: Path, payload: Any, durable: bool = False) -> None:
    """Write ``payload`` so that ``path`` holds the old or the new content, never half of one (``durable``: flushed
    to the disk before it replaces the old file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)


def flatten(tree: dict, prefix: str = "", keep: Iterable[str] = ()) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; the dotted names in ``keep`` stay whole (a free-form mapping)."""
    kept, flat = set(keep), {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and name not in kept:
            flat.update(flatten(value, f"{name}.", kept))
        else:
            flat[name] = value
    return flat


def fmt(value: Any) -> str:
    """A number for a card or report table: 4 decimals for floats, ``n/a`` for a missing one."""
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def is_hub_id(name: str) -> bool:
    """``user/name`` that is not a local path: a Hub repo id."""
    return name.count("/") == 1 and not Path(name).exists() and not name.startswith((".", "/"))
