"""The project's own ``evaluate`` modules, loaded from this folder by path so they never touch the network.

Each metric lives in ``<name>/<name>.py`` (the layout ``evaluate.load`` expects for a local module). Loading by
name from the Hub would need network access and would run code we do not version; loading by path works with
``HF_HUB_OFFLINE=1`` / ``HF_EVALUATE_OFFLINE=1``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).parent


def available_metrics() -> list[str]:
    """Names of the metric modules shipped in this folder (``<name>/<name>.py``)."""
    return sorted(p.parent.name for p in METRICS_DIR.glob("*/*.py") if p.stem == p.parent.name)


def metric_path(name: str) -> Path:
    """Path of the metric script; unknown names raise ``ValueError`` listing the known ones."""
    path = METRICS_DIR / name / f"{name}.py"
    if "/" in name or "\\" in name or not path.is_file():
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(available_metrics()) or 'none'}")
    return path


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """Load one of the project's metrics as an ``evaluate.EvaluationModule``.

    ``evaluate.load`` accepts both the script path and its folder; the script path is used because it cannot be
    mistaken for a Hub id. Two defaults keep parallel processes (tests under xdist, two training runs on one
    machine) from colliding on evaluate's cache files:

    - ``keep_in_memory=True``: predictions are buffered in memory, no Arrow file under the shared metrics cache;
    - a unique ``experiment_id`` per call: if a caller turns the memory buffer off, each instance still gets its
      own cache file name.

    Distributed evaluation (``num_process > 1``) needs the shared files, so ``keep_in_memory`` then defaults to
    False and the caller must pass the same ``experiment_id`` on every process. In this project the accelerate
    loop gathers predictions first (``gather_for_metrics``) and computes on one process instead.

    ``kwargs`` go to ``evaluate.load`` (e.g. ``cache_dir``, ``experiment_id``, ``keep_in_memory``).
    """
    path = metric_path(name)  # validate the name before paying for the evaluate import

    import evaluate  # imported lazily: evaluate pulls in datasets and transformers pipelines (seconds)

    distributed = kwargs.get("num_process", 1) > 1
    kwargs.setdefault("keep_in_memory", not distributed)
    if not distributed:
        kwargs.setdefault("experiment_id", f"hf_tasks-{os.getpid()}-{uuid.uuid4().hex}")
    return evaluate.load(str(path), **kwargs)


__all__ = ["METRICS_DIR", "available_metrics", "load_metric", "metric_path"]
