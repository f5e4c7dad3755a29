"""Column checks shared by the tasks' ``load_data``, and the one-line ``DataError`` of a dataset a task cannot use.

A run on another task's dataset (captioning on a classification dataset, ...) must fail before any model is built,
in one line that names the split, the column and what it holds, lists the columns there are, says which task the
dataset looks built for (judged from its features alone: shapes, yolo, flickr8k, ... datasets carry no task tag)
and how to build the right kind.
"""

from __future__ import annotations

from typing import Any

from hf_tasks.errors import DataError

#: the `hf-tasks build-dataset` sources that make a dataset of each task (shapes makes all three with --task)
BUILD_SOURCES = {"classification": "image_folder|cats_vs_dogs|tiny_imagenet", "detection": "yolo|coco_detection",
                 "captioning": "flickr8k|coco_captions"}


def feature_type(feature: Any) -> str:
    """A short name of what a column holds: ``Image``, ``ClassLabel``, ``string``, ``list of int64``, ``{a, b}``."""
    from datasets import ClassLabel, Image

    if isinstance(feature, (Image, ClassLabel)):
        return type(feature).__name__
    if isinstance(feature, dict):
        return "{" + ", ".join(feature) + "}"
    inner = getattr(feature, "feature", None)  # List / Sequence / LargeList
    if inner is not None:
        return f"list of {feature_type(inner)}"
    return str(getattr(feature, "dtype", type(feature).__name__))


def is_text(feature: Any) -> bool:
    """A string column, or a list of strings (the reference captions of one image)."""
    inner = getattr(feature, "feature", feature)
    return getattr(inner, "dtype", None) in ("string", "large_string")


def objects_problem(feature: Any) -> str | None:
    """What keeps ``feature`` from being a detection objects column (``{bbox: [[x, y, w, h], ...], category: [ClassLabel
    ids]}``), or None when it is one."""
    from datasets import ClassLabel

    inner = getattr(feature, "feature", feature)  # older datasets: a Sequence of dicts
    if not isinstance(inner, dict) or not {"bbox", "category"} <= set(inner):
        return f"holds {feature_type(feature)}, not objects {{bbox, category}}"
    category = getattr(inner["category"], "feature", inner["category"])
    if not isinstance(category, ClassLabel):
        return f"has 'category' holding {feature_type(inner['category'])}, not ClassLabel ids (class names in order)"
    coordinate = getattr(getattr(inner["bbox"], "feature", None), "feature", None)
    if not str(getattr(coordinate, "dtype", "")).startswith(("float", "int", "uint")):
        return f"has 'bbox' holding {feature_type(inner['bbox'])}, not lists of [x, y, w, h] numbers"
    return None


def guess_kind(features: Any) -> str | None:
    """The task a dataset with these features looks built for; None when it looks like none of them."""
    from datasets import ClassLabel

    if any(objects_problem(f) is None for f in features.values()):
        return "detection"
    if any(isinstance(f, ClassLabel) for f in features.values()):
        return "classification"
    if any(is_text(f) for f in features.values()):
        return "captioning"
    return None


def mismatch(task: str, split: str, problem: str, features: Any) -> DataError:
    """The error a task's load_data raises: ``split 'train' <problem> (columns: ...): is this a <kind> dataset? ...``"""
    columns = ", ".join(f"{name} ({feature_type(feature)})" for name, feature in features.items())
    kind = guess_kind(features)
    other = f"is this a {kind} dataset? train it with --task {kind}, or " if kind not in (None, task) else ""
    if task not in BUILD_SOURCES:  # a task from outside the package: it knows its own data
        return DataError(f"split {split!r} {problem} (columns: {columns}): {other}the {task} task cannot use it")
    return DataError(f"split {split!r} {problem} (columns: {columns}): {other}build a {task} dataset with "
                     f"`hf-tasks build-dataset {BUILD_SOURCES[task]} ...` (or `hf-tasks build-dataset shapes "
                     f"--task {task}`)")


def check_image_column(splits: dict, task: str, column: str) -> None:
    """Every split has ``column`` (``data.image_column``) and it holds images (an ``Image`` feature)."""
    from datasets import Image

    for split, ds in splits.items():
        feature = ds.features.get(column)
        if feature is None:
            raise mismatch(task, split, f"has no {column!r} column ('data.image_column')", ds.features)
        if not isinstance(feature, Image):
            raise mismatch(task, split, f"column {column!r} ('data.image_column') holds {feature_type(feature)} "
                                        "values, not images", ds.features)


def class_name(feature: Any, value: Any) -> Any:
    """A ClassLabel's name for ``value`` (also inside a list feature); the value itself otherwise."""
    while not hasattr(feature, "names") and hasattr(feature, "feature"):
        feature = feature.feature
    return feature.names[value] if hasattr(feature, "names") and isinstance(value, int) else value
