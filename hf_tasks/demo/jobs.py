"""What the demo's modules share: a job, what became of it, the stages, the offline environment, the built-in jobs.

``run`` (the stages), ``publish`` (the hubs) and ``report`` (the table and the page) import from here and never from
each other, so none of them imports back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hf_tasks.registry import Bar, Preset

NAMESPACE = "demo"
MARKER = ".hf-tasks-demo"  # marks a folder the demo owns (and may replace with --overwrite)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "YOLO_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
STAGES = ("build dataset", "train + test evaluation (accelerate launch)", "model card", "push", "load back + predict")


@dataclass
class Job:
    task: str
    recipe: str
    repo_name: str
    dataset: Path
    build_args: list[str] | None  # shapes build arguments; None: the user's prepared dataset
    overrides: list[str]
    bar: Bar | None
    offline: bool  # the embedded data needs nothing from the network: children run offline


@dataclass
class Outcome:
    """What happened to one job; ``failed`` names the stage that stopped it."""

    job: Job
    run_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    repo: str = ""
    prediction: dict[str, Any] | None = None
    heldout_image: Path | None = None
    failed: str | None = None

    @property
    def bar_met(self) -> bool | None:
        return None if self.job.bar is None or self.failed else self.job.bar.met(self.results)


def presets() -> dict[str, Preset]:
    """The built-in jobs, by task: every built-in task whose spec has a demo preset, in ``builtin_tasks()`` order."""
    from hf_tasks.registry import builtin_tasks, get_task

    found = {}
    for name in builtin_tasks():
        demo = get_task(name).demo
        if demo is not None and demo.preset is not None:
            found[name] = demo.preset
    return found
