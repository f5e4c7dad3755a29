"""Parts shared by the object-detection sources (YOLO, COCO json): features, safe paths, splits, rows, info.

Every detection source produces the same columns, with boxes as COCO ``[x_min, y_min, width, height]`` in
absolute pixels of the stored image, so training code has exactly one box convention to handle.
"""

from __future__ import annotations

import argparse
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from PIL import Image as PILImage

from hf_tasks.errors import DataError

from .common import (
    BadInputReport,
    check_fractions,
    check_images,
    image_value,
    requested_splits,
    rows_to_dataset,
    stratified_split,
)

if TYPE_CHECKING:
    from datasets import DatasetDict, Features

BOX_FORMAT = "coco_xywh_pixels"
BOX_FORMAT_TEXT = "COCO [x_min, y_min, width, height] in absolute pixels of the stored image"
EXIF_ORIENTATION = 0x0112
SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # rotated by 90°: EXIF-aware decoders swap width and height
MAX_LISTED_IGNORED = 20
CORRECTIONS = {"duplicate_boxes_removed": "duplicate box(es) removed (the same box annotated twice)",
               "boxes_clipped": "box(es) up to 1% of the image side past an edge clipped to the image"}


@dataclass
class DetectionExample:
    """One image and its objects, already converted to pixel ``xywh`` boxes with contiguous category labels."""

    path: Path
    rel: str
    image_id: int
    width: int = 0
    height: int = 0
    bbox: list[list[float]] = field(default_factory=list)
    category: list[int] = field(default_factory=list)
    iscrowd: list[bool] = field(default_factory=list)
    area: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- arguments
def add_detection_split_arguments(parser: argparse.ArgumentParser) -> None:
    """Image-level split options; detection defaults to 80/20 train/validation and no carved test split."""
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of images carved for validation when the source has no validation split")
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="share of images carved for test when the source has no test split (default: none)")
    parser.add_argument("--seed", type=int, default=42, help="seed for carved splits")


# ----------------------------------------------------------------------------------------------- paths
def inside(base: Path, value: str | os.PathLike, limit: Path | None = None) -> Path | None:
    """``base / value`` when it stays under ``limit`` (default ``base``), else ``None``.

    Lexical (``normpath``) rather than ``resolve()`` so a user's own symlinked image folders keep working, while
    names taken from a label list or json (``../../etc/passwd``, ``/abs/x.jpg``) can never make us read outside.
    """
    text = os.fspath(value)
    if not text or "\x00" in text:
        return None
    root = os.path.normpath(os.path.abspath(limit if limit is not None else base))
    candidate = os.path.normpath(os.path.join(os.path.abspath(base), text))
    if candidate != root and not candidate.startswith(root.rstrip(os.sep) + os.sep):
        return None
    return Path(candidate)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as ``datasets`` decodes the image: EXIF-rotated images report their displayed size."""
    with PILImage.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(EXIF_ORIENTATION)
    return (height, width) if orientation in SWAPPED_ORIENTATIONS else (width, height)


def usable_images(paths: Sequence[Path], report: BadInputReport, num_proc: int | None) -> set[Path]:
    """``check_image`` every file (truncated, empty, non-images); failures go to ``report``."""
    reasons = check_images(list(paths), num_proc=num_proc)
    for path, reason in zip(paths, reasons):
        if reason is not None:
            report.add(path, reason)
    return {path for path, reason in zip(paths, reasons) if reason is None}


def is_number(value: Any) -> bool:
    """A finite JSON/YAML number; ``bool`` is excluded although Python counts it as an ``int``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range is no pixel coordinate
        return False


# ----------------------------------------------------------------------------------------------- splits
def carve_missing(
    given: dict[str, list[DetectionExample]], args: argparse.Namespace, origin: str
) -> tuple[dict[str, list[DetectionExample]], dict[str, str]]:
    """Keep the source's own splits; carve a missing validation/test split from train with a seeded cut.

    ``given`` holds ``"all"`` for unsplit sources. Images (not objects) are split: one image's boxes never land
    in two splits. ``stratified_split`` with a single label is a seeded shuffle-and-cut. A split with a 0 fraction
    is not made; every returned split must hold examples (``require_splits``).
    """
    check_fractions(args.val_fraction, args.test_fraction)
    unsplit = "all" in given
    pool = given["all"] if unsplit else given.get("train", [])
    val = 0.0 if "validation" in given else args.val_fraction
    test = 0.0 if "test" in given else args.test_fraction
    parts = stratified_split([0] * len(pool), val, test, args.seed)
    carved = requested_splits({name: [pool[i] for i in idx] for name, idx in parts.items()}, val, test)
    cut = f"random (seeded) image-level cut of {origin if unsplit else 'train'}"
    splits, methods = {"train": carved["train"]}, {"train": origin}
    if unsplit:
        methods["train"] = cut
    elif val or test:
        methods["train"] = f"{origin}, minus the carved splits"
    for name in ("validation", "test"):
        if name in given:
            splits[name], methods[name] = given[name], origin
        elif name in carved:
            splits[name], methods[name] = carved[name], cut
    return splits, methods


def splits_note(splits: dict[str, list[DetectionExample]]) -> str:
    """Said in ``info`` when there is no test split, so nobody mistakes validation scores for test scores."""
    if splits.get("test"):
        return "train/validation/test as listed in split_method"
    return ("no test split: the source has none and --test-fraction is 0; validation is the only held-out split "
            "(pass --test-fraction to carve one)")


# ------------------------------------------------------------------------------------- dataset assembly
def detection_features(class_names: Sequence[str]) -> Features:
    from datasets import ClassLabel, Features, Sequence, Value
    from datasets import Image as ImageFeature

    objects = Sequence({"bbox": Sequence(Value("float32"), length=4), "category": ClassLabel(names=list(class_names)),
                        "iscrowd": Value("bool"), "area": Value("float32")})
    return Features({"image": ImageFeature(), "image_id": Value("int64"), "width": Value("int32"),
                     "height": Value("int32"), "objects": objects})


def description(source: str) -> str:
    return (f"{source} object detection built by hf-tasks. Box format: {BOX_FORMAT_TEXT} ({BOX_FORMAT}); "
            "objects.category indexes the ClassLabel names; objects.iscrowd marks crowd regions.")


def example_row(example: DetectionExample) -> dict[str, Any]:
    """One row; the image cell keeps the original encoded bytes."""
    return {
        "image": image_value(example.path.read_bytes(), example.rel), "image_id": example.image_id,
        "width": example.width, "height": example.height,
        "objects": {"bbox": example.bbox, "category": example.category, "iscrowd": example.iscrowd,
                    "area": example.area},
    }


def detection_dataset(
    splits: dict[str, list[DetectionExample]], class_names: Sequence[str], source: str
) -> DatasetDict:
    """Read each image's bytes lazily into its split; empty splits are left out."""
    from datasets import DatasetDict

    features = detection_features(class_names)
    text = description(source)
    return DatasetDict({
        name: rows_to_dataset((example_row(e) for e in examples), features, text)
        for name, examples in splits.items() if examples
    })


def detection_info(
    source: str, src: Path, args: argparse.Namespace, splits: dict[str, list[DetectionExample]],
    class_names: Sequence[str], split_method: dict[str, str], **extra: Any,
) -> dict[str, Any]:
    """Provenance both detection sources record the same way (read by the CLI summary and the dataset card)."""
    kept = {name: examples for name, examples in splits.items() if examples}
    return {
        "source": source, "src": str(src), "task": "detection", "box_format": BOX_FORMAT,
        "box_format_text": BOX_FORMAT_TEXT, "split_method": {n: split_method[n] for n in kept},
        "splits_note": splits_note(kept), "seed": args.seed, "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction, "class_names": list(class_names),
        "num_examples": {name: len(v) for name, v in kept.items()},
        "num_objects": {name: sum(len(e.category) for e in v) for name, v in kept.items()},
        "images_without_objects": {name: sum(1 for e in v if not e.category) for name, v in kept.items()},
        "counts": {name: {cls: sum(e.category.count(i) for e in v) for i, cls in enumerate(class_names)}
                   for name, v in kept.items()},
        **extra,
    }


def correction_notes(counts: dict[str, int]) -> list[str]:
    """One line per kind of box the build corrected (printed by the CLI, kept in the build report)."""
    return [f"{counts[key]} {text}" for key, text in CORRECTIONS.items() if counts.get(key)]


def listed(names: Sequence[str], limit: int = MAX_LISTED_IGNORED) -> list[str]:
    """The first ``limit`` names plus a count of the rest, so a huge folder cannot bloat the report."""
    names = sorted(names)
    return names[:limit] + ([f"... and {len(names) - limit} more"] if len(names) > limit else [])


def dedupe_names(names: Sequence[Any], where: str) -> list[str]:
    """Class names as strings; empty or duplicated names are a DataError (ClassLabel needs unique names)."""
    out = [str(n).strip() for n in names]
    if not out:
        raise DataError(f"{where} defines no class names.")
    if any(not n for n in out):
        raise DataError(f"{where} has an empty class name at index {[i for i, n in enumerate(out) if not n][0]}.")
    dupes = sorted(n for n, k in Counter(out).items() if k > 1)
    if dupes:
        raise DataError(f"{where} repeats class name(s) {', '.join(dupes)}; every class needs a unique name.")
    return out


def load_data_yaml(text: str, where: str) -> dict[Any, Any]:
    """A YAML mapping parsed with ``yaml.safe_load``; syntax errors name the line, anything else is a DataError."""
    import yaml  # safe_load only: plain data, never tags that construct objects or run code

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"{where}{line} is not valid YAML ({getattr(exc, 'problem', None) or exc}).") from None
    except RecursionError:
        raise DataError(f"{where} is nested too deeply to be a dataset description.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(f"{where} must be a mapping (path:, train:, val:, names:), not a {type(data).__name__}.")
    return data
