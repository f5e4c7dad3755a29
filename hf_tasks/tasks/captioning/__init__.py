"""The captioning task: everything of it lives in this folder; ``spec`` is its one registration."""

from hf_tasks.tasks.captioning.spec import SPEC

__all__ = ["SPEC"]
