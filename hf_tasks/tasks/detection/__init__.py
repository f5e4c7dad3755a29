"""The detection task: everything of it lives in this folder; ``spec`` is its one registration."""

from hf_tasks.tasks.detection.spec import SPEC

__all__ = ["SPEC"]
