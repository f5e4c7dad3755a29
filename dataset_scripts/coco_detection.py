"""COCO detection json (``instances_*.json`` + image folder) → object-detection DatasetDict.

Inputs: ``--src`` holding ``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/`` (or
``images/{train,val}2017/``), or ``--annotations FILE --images DIR`` for one file, split by seed
(``--val-fraction 0.2``, optional ``--test-fraction``). A single annotation file under ``--src`` is split the same way.

Category ids are remapped to contiguous labels in ascending id order (original ids in ``info["category_ids"]``).
Crowd annotations are kept with ``iscrowd=True``; ``area`` is the json's (segment) area, which COCO evaluation
uses for its small/medium/large ranges, or ``w*h`` when absent. Boxes stay COCO xywh in pixels, unchanged.
Bad entries are reported by annotation id or image id: unknown image/category ids, boxes with width or height
≤ 0, missing files and ``file_name``s that leave the image folder (those are never read), one annotation id used for
two different annotations. With ``--skip-bad`` an image with any bad annotation is left out whole, so no object in a
kept image lacks its box. Exact duplicates (the same box twice, or the same annotation listed twice) are dropped and
counted in the build report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_tasks.errors import DataError

from .common import BadInputReport, BuildResult, add_output_arguments, require_splits, resolve_src
from .detection_common import (
    DetectionExample,
    add_detection_split_arguments,
    carve_missing,
    correction_notes,
    dedupe_names,
    detection_dataset,
    detection_info,
    image_size,
    inside,
    is_number,
    listed,
    usable_images,
)
from .paths import link_problem

SOURCE = "coco_detection"
INSTANCES = re.compile(r"^instances_([A-Za-z]+?)(\d*)\.json$")
SPLIT_NAMES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test"}
PIXEL_TOLERANCE = 1.0  # COCO boxes are floats from polygons; they may overshoot the border by rounding


@dataclass
class CocoImage:
    image_id: int
    file_name: str
    width: int
    height: int


@dataclass
class CocoObject:
    bbox: list[float]
    category: int  # contiguous label, not the json category id
    iscrowd: bool
    area: float


@dataclass
class CocoIndex:
    """One annotation file, validated: good images, their objects, and ids of images with a bad entry."""

    categories: list[tuple[int, str]]
    images: dict[int, CocoImage] = field(default_factory=dict)
    objects: dict[int, list[CocoObject]] = field(default_factory=dict)
    bad: set[int] = field(default_factory=set)
    annotations: dict[int, dict] = field(default_factory=dict)  # annotation id → entry, to spot repeated ids
    duplicates: Counter = field(default_factory=Counter)  # image id → duplicate boxes removed

    def duplicates_kept(self) -> int:
        """Duplicate boxes removed from the images that stay in the dataset."""
        return sum(n for image_id, n in self.duplicates.items() if image_id not in self.bad)


@dataclass(frozen=True)
class SplitInput:
    split: str
    annotations: Path
    images: Path
    root: Path  # symbolic links are followed only while they stay inside it (--src, else --images)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Either ``--src`` (the COCO folder layout) or ``--annotations`` with ``--images``."""
    parser.add_argument("--src", type=Path, default=None,
                        help="folder with annotations/instances_<split>.json and <split>/ image folders")
    parser.add_argument("--annotations", type=Path, default=None, help="one instances_*.json file (with --images)")
    parser.add_argument("--images", type=Path, default=None, help="folder that the json's file_name entries are in")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out images with bad entries or files (recorded in build_report.json)")
    parser.add_argument("--num-proc", type=int, default=1, help="worker processes for checking images")
    add_output_arguments(parser)
    add_detection_split_arguments(parser)


# ----------------------------------------------------------------------------------------------- inputs
def find_inputs(args: argparse.Namespace) -> tuple[list[SplitInput], Path, list[str]]:
    """Annotation files with their image folders, the folder reports are relative to, and ignored files."""
    if args.src is not None and (args.annotations is not None or args.images is not None):
        raise DataError("Pass either --src or --annotations with --images, not both.")
    if args.src is None:
        if args.annotations is None or args.images is None:
            raise DataError("Pass --src DIR (annotations/instances_*.json + image folders), "
                            "or --annotations FILE together with --images DIR.")
        annotations = Path(args.annotations).expanduser().resolve()
        if not annotations.is_file():
            raise DataError(f"--annotations {annotations} is not an existing file.")
        images = resolve_src(argparse.Namespace(src=args.images, out=args.out))
        root = Path(os.path.commonpath([annotations.parent, images]))
        return [SplitInput("all", annotations, images, images)], root, []
    src = resolve_src(args)
    return _split_files(src)


def _split_files(src: Path) -> tuple[list[SplitInput], Path, list[str]]:
    files = sorted([*(src / "annotations").glob("instances_*.json"), *src.glob("instances_*.json")])
    found: dict[str, SplitInput] = {}
    ignored = []
    for path in files:
        match = INSTANCES.match(path.name)
        split = SPLIT_NAMES.get(match.group(1).lower()) if match else None
        if split is None:
            ignored.append(path.relative_to(src).as_posix())
            continue
        if split in found:
            raise DataError(f"{src} has two annotation files for the {split} split: "
                            f"{found[split].annotations.name} and {path.name}; use --annotations to pick one.")
        stem = path.name[len("instances_"):-len(".json")]
        images = next((d for d in (src / stem, src / "images" / stem) if d.is_dir()), None)
        if images is None:
            raise DataError(f"{path.name} has no image folder: expected {src / stem}/ or {src / 'images' / stem}/.")
        found[split] = SplitInput(split, path, images, src)
    if not found:
        raise DataError(f"No instances_<split>.json in {src} or {src / 'annotations'}; expected the COCO layout "
                        "annotations/instances_train2017.json + train2017/, or pass --annotations and --images.")
    if "train" not in found:
        if len(found) > 1:
            raise DataError(f"{src} has {', '.join(sorted(found))} annotations but no instances_train*.json.")
        only = next(iter(found.values()))
        found = {"all": SplitInput("all", only.annotations, only.images, src)}
    return list(found.values()), src, ignored


def load_json(path: Path) -> Any:
    """The parsed file; syntax errors name the line and column."""
    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name} line {exc.lineno} column {exc.colno} is not valid JSON ({exc.msg}).") from None
    except (UnicodeDecodeError, RecursionError, OSError) as exc:
        raise DataError(f"{path.name} cannot be read as JSON ({type(exc).__name__}).") from None


# ---------------------------------------------------------------------------------------------- parsing
def parse_coco(data: Any, where: Path, report: BadInputReport) -> CocoIndex:
    """Validate one instances json; per-entry problems go to ``report``, unusable structure is a DataError."""
    if not isinstance(data, dict):
        raise DataError(f"{where.name} must hold a JSON object with images, annotations and categories.")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{where.name}: '{key}' must be a list (got {type(data.get(key)).__name__}).")
    index = CocoIndex(parse_categories(data["categories"], where.name))
    known: set[int] = set()
    for position, entry in enumerate(data["images"]):
        parse_image(entry, position, where, report, index, known)
    labels = {cid: i for i, (cid, _) in enumerate(index.categories)}
    for position, entry in enumerate(data["annotations"]):
        parse_annotation(entry, position, where, report, index, labels, known)
    return index


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_categories(entries: list[Any], name: str) -> list[tuple[int, str]]:
    """``(id, name)`` in ascending id order: that order is the ClassLabel order."""
    pairs: dict[int, Any] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not _is_id(entry.get("id")) or not isinstance(entry.get("name"), str):
            raise DataError(f"{name}: every category needs an integer 'id' and a string 'name' (got {entry!r:.80}).")
        if entry["id"] in pairs:
            raise DataError(f"{name}: category id {entry['id']} is defined twice.")
        pairs[entry["id"]] = entry["name"]
    ids = sorted(pairs)
    return list(zip(ids, dedupe_names([pairs[i] for i in ids], f"{name} categories")))


def _where(json_path: Path, kind: str, entry: Any, position: int) -> Path:
    """``annotations/x.json (annotation id 7)``: the entry a user can search for in the file."""
    ident = entry.get("id") if isinstance(entry, dict) else None
    label = f"{kind} id {ident}" if _is_id(ident) else f"{kind} #{position} (no integer id)"
    return Path(f"{json_path} ({label})")


def parse_image(entry: Any, position: int, where: Path, report: BadInputReport, index: CocoIndex,
                known: set[int]) -> None:
    place = _where(where, "image", entry, position)
    if not isinstance(entry, dict) or not _is_id(entry.get("id")):
        report.add(place, "image entry without an integer id")
        return
    image_id = entry["id"]
    width, height, file_name = entry.get("width"), entry.get("height"), entry.get("file_name")
    reason = None
    if image_id in known:
        reason = "duplicate image id"
    elif not isinstance(file_name, str) or not file_name:
        reason = "file_name missing or not a string"
    elif not (is_number(width) and is_number(height) and width >= 1 and height >= 1
              and float(width).is_integer() and float(height).is_integer()):
        reason = "width/height missing or not positive integers"
    known.add(image_id)
    if reason is not None:
        report.add(place, reason)
        index.bad.add(image_id)
        index.images.pop(image_id, None)
        return
    index.images[image_id] = CocoImage(image_id, file_name, int(width), int(height))
    index.objects[image_id] = []


def annotation_problem(entry: dict, image: CocoImage | None, labels: dict[int, int]) -> str | None:
    """Why one annotation (whose image entry is known) is unusable, or None."""
    if not _is_id(entry.get("category_id")) or entry["category_id"] not in labels:
        return "category_id not in categories"
    bbox = entry.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(is_number(v) for v in bbox):
        return "bbox is not a list of 4 finite numbers"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return "bbox width or height ≤ 0"
    if image is not None and (min(x, y) < -PIXEL_TOLERANCE or x + w > image.width + PIXEL_TOLERANCE
                              or y + h > image.height + PIXEL_TOLERANCE):
        return "bbox outside the image"
    if entry.get("iscrowd", 0) not in (0, 1) or isinstance(entry.get("iscrowd"), float):
        return "iscrowd is not 0 or 1"
    if "area" in entry and not (is_number(entry["area"]) and entry["area"] >= 0):
        return "area is not a non-negative number"
    return None


def parse_annotation(entry: Any, position: int, where: Path, report: BadInputReport, index: CocoIndex,
                     labels: dict[int, int], known: set[int]) -> None:
    place = _where(where, "annotation", entry, position)
    if not isinstance(entry, dict):
        report.add(place, "annotation is not an object")
        return
    image_id = entry.get("image_id")
    if not _is_id(image_id) or image_id not in known:
        report.add(place, "image_id not in images")
        return
    if repeated_id(entry, place, report, index):
        return
    reason = annotation_problem(entry, index.images.get(image_id), labels)
    if reason is not None:
        report.add(place, reason)
        index.bad.add(image_id)
        return
    if image_id in index.bad:
        return
    x, y, w, h = (float(v) for v in entry["bbox"])
    area = float(entry["area"]) if "area" in entry else w * h
    found = CocoObject([x, y, w, h], labels[entry["category_id"]], bool(entry.get("iscrowd", 0)), area)
    if found in index.objects[image_id]:
        index.duplicates[image_id] += 1  # the same box annotated twice: it would halve AP50 for its detection
    else:
        index.objects[image_id].append(found)


def repeated_id(entry: dict, place: Path, report: BadInputReport, index: CocoIndex) -> bool:
    """Whether ``entry`` reuses an annotation id: an exact copy is dropped and counted, a different annotation under
    the same id is reported (both images are left out: which of the two is right cannot be told)."""
    ident = entry.get("id")
    if not _is_id(ident):
        return False
    first = index.annotations.setdefault(ident, entry)
    if first is entry:
        return False
    if first == entry:
        index.duplicates[entry["image_id"]] += 1
    else:
        report.add(place, "annotation id used twice for different annotations")
        index.bad.update({first["image_id"], entry["image_id"]})
    return True


# ------------------------------------------------------------------------------------------------ files
def locate_files(index: CocoIndex, part: SplitInput, report: BadInputReport) -> dict[int, Path]:
    """Image id → file; names leaving the image folder and links leaving the root are reported, never opened."""
    paths: dict[int, Path] = {}
    for image_id in sorted(index.images):
        image = index.images[image_id]
        place = Path(f"{part.annotations} (image id {image_id})")
        path = inside(part.images, image.file_name)
        if path is None:
            report.add(place, "file_name leaves the image folder (not read)")
        elif (reason := link_problem(path, part.root)) is not None:
            report.add(place, reason)
        elif not path.is_file():
            report.add(place, "image file not found")
        else:
            paths[image_id] = path
            continue
        index.bad.add(image_id)
    return paths


def check_files(index: CocoIndex, paths: dict[int, Path], report: BadInputReport, num_proc: int) -> None:
    """Decode every image; the decoded size must match the json's, or the pixel boxes would be wrong."""
    usable = usable_images(list(paths.values()), report, num_proc)
    for image_id, path in paths.items():
        if path not in usable:
            index.bad.add(image_id)
            continue
        image = index.images[image_id]
        if image_size(path) != (image.width, image.height):
            report.add(path, "image size differs from the json width/height")
            index.bad.add(image_id)


def examples(index: CocoIndex, paths: dict[int, Path], part: SplitInput) -> list[DetectionExample]:
    """Good images in ascending image id order, with their objects."""
    out = []
    for image_id in sorted(paths):
        if image_id in index.bad:
            continue
        image, path = index.images[image_id], paths[image_id]
        objs = index.objects[image_id]
        out.append(DetectionExample(
            path, path.relative_to(part.images.parent).as_posix(), image_id, image.width, image.height,
            bbox=[o.bbox for o in objs], category=[o.category for o in objs], iscrowd=[o.iscrowd for o in objs],
            area=[o.area for o in objs]))
    return out


def read_split(part: SplitInput, report: BadInputReport, num_proc: int) -> tuple[CocoIndex, list[DetectionExample]]:
    index = parse_coco(load_json(part.annotations), part.annotations, report)
    paths = locate_files(index, part, report)
    check_files(index, paths, report, num_proc)
    return index, examples(index, paths, part)


# ------------------------------------------------------------------------------------------------ build
def build(args: argparse.Namespace) -> BuildResult:
    """Parse each annotation file, report bad entries by id, stop unless ``--skip-bad``, split, load bytes."""
    parts, root, ignored = find_inputs(args)
    report = BadInputReport(root=root)
    indexes, given = {}, {}
    for part in parts:
        indexes[part.split], given[part.split] = read_split(part, report, args.num_proc)
    categories = [index.categories for index in indexes.values()]
    if any(c != categories[0] for c in categories):
        raise DataError("The annotation files define different categories; every split needs the same list.")
    report.check(args.skip_bad)
    if not any(given.values()):
        raise DataError(f"No usable images in {', '.join(str(p.annotations) for p in parts)}.")
    splits, methods = carve_missing(given, args, "annotation file")
    require_splits(splits, report)
    names = [name for _, name in categories[0]]
    counts = {"duplicate_boxes_removed": sum(index.duplicates_kept() for index in indexes.values())}
    dataset = detection_dataset(splits, names, SOURCE)
    info = detection_info(
        SOURCE, root, args, splits, names, methods,
        annotation_files={p.split: p.annotations.relative_to(root).as_posix() for p in parts},
        category_ids=[cid for cid, _ in categories[0]], class_order="ascending COCO category id",
        num_crowd={n: sum(sum(e.iscrowd) for e in v) for n, v in splits.items() if v},
        rejected=report.count, images_dropped=sum(len(i.bad) for i in indexes.values()), ignored=listed(ignored),
        notes=correction_notes(counts), **counts)
    return BuildResult(dataset=dataset, report=report, info=info)
