"""Dataset build scripts: raw downloads → ``DatasetDict`` (train/validation/test) → disk or the Hub.

``datasets>=4`` removed loading scripts, so every source here is a *build* script run once, ahead of
training; training only ever reads the published result. Sources are imported lazily so that importing
this package (e.g. to build the CLI parser) stays cheap and side-effect free.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hf_tasks.errors import DataError
from hf_tasks.util import nearest

#: source name → module (relative to this package). Each module exposes
#: ``add_arguments(parser)`` and ``build(args) -> BuildResult``.
SOURCES: dict[str, str] = {
    "image_folder": "dataset_scripts.image_folder",
    "cats_vs_dogs": "dataset_scripts.cats_vs_dogs",
    "shapes": "dataset_scripts.shapes",
    "yolo": "dataset_scripts.yolo",
    "coco_detection": "dataset_scripts.coco_detection",
    "tiny_imagenet": "dataset_scripts.tiny_imagenet",
    "flickr8k": "dataset_scripts.flickr8k",
    "coco_captions": "dataset_scripts.coco_captions",
}


def get_source(name: str) -> ModuleType:
    """Import and return the build module for ``name``; unknown names fail with the nearest known one."""
    if name not in SOURCES:
        known = ", ".join(sorted(SOURCES))
        close = nearest(name, SOURCES)
        hint = f" Did you mean {close!r}?" if close else ""
        raise DataError(f"Unknown dataset source {name!r}.{hint} Known sources: {known}.")
    return importlib.import_module(SOURCES[name])


__all__ = ["SOURCES", "get_source"]
