"""Jinja templates for model and dataset cards, one per task (rendered by ``hf_tasks.cards``)."""

from pathlib import Path

TEMPLATES_DIR = Path(__file__).parent
