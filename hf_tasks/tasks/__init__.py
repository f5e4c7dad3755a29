"""One folder per task (``hf_tasks.registry`` finds them); each package exposes ``SPEC``, its one registration.

Beside the folders: what the tasks share (``columns``: dataset column checks; ``options``: typed ``model.config``
schemas derived from transformers config classes).
"""
