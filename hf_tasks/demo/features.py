"""Helpers for the tasks' demo parts (``hf_tasks/tasks/<task>/demo.py``): reading a held-out row's labels."""

from __future__ import annotations

from typing import Any


def class_name(feature: Any, value: Any) -> Any:
    """A ClassLabel's name for ``value`` (also inside a list feature); the value itself otherwise."""
    while not hasattr(feature, "names") and hasattr(feature, "feature"):
        feature = feature.feature
    return feature.names[value] if hasattr(feature, "names") and isinstance(value, int) else value
