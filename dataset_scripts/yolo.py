"""YOLO detection labels (one ``class cx cy w h`` line per box, normalised to [0, 1]) → detection DatasetDict.

Layouts (``--src`` is the dataset folder):

* ``data.yaml`` whose ``train:``/``val:``/``test:`` name folders or ``.txt`` image lists, relative to ``path:``
  (default: the folder holding data.yaml); ``names:`` is a list or an ``{id: name}`` mapping.
* ``images/{train,val,test}/`` + ``labels/{train,val,test}/`` (or ``{train,valid,test}/images`` + ``labels``).
* A flat folder of images, each with its ``.txt`` beside it, split by seed (``--val-fraction 0.2``, optional
  ``--test-fraction``). A missing validation/test split is carved the same way from train.

The label of ``.../images/.../x.jpg`` is ``.../labels/.../x.txt`` (YOLO's rule), else ``x.txt`` beside the image.
An image without a label file is a background image with no objects (YOLO's convention), not an error.
Class names come from data.yaml ``names:``, else ``classes.txt``, else ``--names a,b,c``. data.yaml is read with
``yaml.safe_load`` only; ``download:`` is ignored, never run; its paths must stay inside ``--src``.
Boxes are stored as COCO xywh in pixels. With ``--skip-bad`` an image whose label file has any bad line is left
out whole: keeping its other boxes would teach a model that the unlabelled object is background. Boxes up to 1 %
past an edge are clipped and duplicate lines dropped (``yolo_labels``), both counted in the build report.
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path
from typing import Any

from hf_tasks.errors import DataError

from .common import (
    BadInputReport,
    BuildResult,
    add_input_arguments,
    add_output_arguments,
    is_image_name,
    require_splits,
    resolve_src,
)
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
    listed,
    load_data_yaml,
    usable_images,
)
from .paths import keep_inside, link_problem, walk_files
from .yolo_labels import Box, parse_labels, read_label_text, to_pixels  # noqa: F401  (parse_labels: public here)

SOURCE = "yolo"
YAML_NAMES = ("data.yaml", "data.yml")
SPLIT_KEYS = {"train": "train", "val": "validation", "test": "test"}
SPLIT_DIRS = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test"}
USED_KEYS = frozenset({"path", "train", "val", "test", "names", "nc"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--src/--out``, ``--names`` for label folders without data.yaml, image-level split options."""
    add_input_arguments(parser)
    parser.add_argument("--names", default=None,
                        help="comma-separated class names, when there is no data.yaml names: and no classes.txt")
    add_output_arguments(parser)
    add_detection_split_arguments(parser)


# ------------------------------------------------------------------------------------------- data.yaml
def read_config(src: Path) -> tuple[dict[Any, Any], str | None]:
    """``src/data.yaml`` (or ``data.yml``) parsed, with its name; ``({}, None)`` when there is none."""
    found = [src / n for n in YAML_NAMES if (src / n).is_file()]
    if not found:
        return {}, None
    try:
        text = found[0].read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{found[0].name} is not UTF-8 text.") from None
    return load_data_yaml(text, found[0].name), found[0].name


def names_from_yaml(data: dict[Any, Any], where: str) -> list[str] | None:
    """``names:`` as a list or ``{id: name}`` (ids 0..n-1), else ``nc:`` generic names, else None."""
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise DataError(f"{where} nc: must be a positive integer (got {nc!r}).")
    if names is None:
        return None if nc is None else [f"class_{i}" for i in range(nc)]
    if isinstance(names, dict):
        names = _names_from_mapping(names, where)
    if not isinstance(names, list):
        raise DataError(f"{where} names: must be a list or an {{id: name}} mapping (got {type(names).__name__}).")
    if any(isinstance(n, bool) or not isinstance(n, (str, int, float)) for n in names):
        raise DataError(f"{where} names: every class name must be a string.")
    out = dedupe_names(names, f"{where} names:")
    if nc is not None and nc != len(out):
        raise DataError(f"{where} says nc: {nc} but names: lists {len(out)} classes.")
    return out


def _names_from_mapping(names: dict[Any, Any], where: str) -> list[Any]:
    ids: dict[int, Any] = {}
    for key, value in names.items():
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key.strip())
        if isinstance(key, bool) or not isinstance(key, int) or key in ids:
            raise DataError(f"{where} names: keys must be distinct integer class ids (got {key!r}).")
        ids[key] = value
    if sorted(ids) != list(range(len(ids))):
        raise DataError(f"{where} names: class ids must be 0..{len(ids) - 1} without gaps (got {sorted(ids)}).")
    return [ids[i] for i in range(len(ids))]


def class_names(data: dict[Any, Any], where: str | None, src: Path, args: argparse.Namespace) -> tuple[list[str], str]:
    """Names and where they came from: data.yaml, else classes.txt, else ``--names`` (never two of them)."""
    from_yaml = names_from_yaml(data, where) if where else None
    txt = src / "classes.txt"
    lines = txt.read_text(encoding="utf-8-sig", errors="replace").splitlines() if txt.is_file() else None
    from_txt = dedupe_names([n for n in lines if n.strip()], "classes.txt") if lines is not None else None
    given = dedupe_names(args.names.split(","), "--names") if args.names is not None else None
    options = [(n, w) for n, w in ((from_yaml, f"{where} names:"), (from_txt, "classes.txt"), (given, "--names"))
               if n is not None]
    if not options:
        raise DataError(f"No class names for {src}: add names: to data.yaml, write classes.txt (one name per line) "
                        "or pass --names a,b,c.")
    if given is not None and len(options) > 1:
        raise DataError(f"--names was given but {options[0][1]} also defines the classes; keep only one of them.")
    return options[0]


# -------------------------------------------------------------------------------------------- layouts
def _entry(base: Path, value: Any, src: Path, where: str) -> Path:
    """One path from data.yaml, refused when it leaves ``src`` (``..``/absolute paths elsewhere)."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where} must be a path string (got {value!r}).")
    path = inside(base, value.strip(), limit=src)
    if path is None:
        raise DataError(f"{where} {value!r} points outside the dataset folder {src}; nothing outside --src is read. "
                        "Use a path relative to the folder holding data.yaml (e.g. images/train).")
    if not path.exists():
        raise DataError(f"{where} {value!r} does not exist ({path}).")
    return path


def yaml_splits(data: dict[Any, Any], where: str, src: Path) -> tuple[dict[str, list[Path]], Path]:
    """Split → folders/lists named in data.yaml, and the dataset root (``path:``)."""
    root = src if data.get("path") in (None, "") else _entry(src, data["path"], src, f"{where} path:")
    if not root.is_dir():
        raise DataError(f"{where} path: {data['path']!r} is not a folder.")
    out: dict[str, list[Path]] = {}
    for key, split in SPLIT_KEYS.items():
        value = data.get(key)
        if value in (None, "", []):
            continue
        values = value if isinstance(value, list) else [value]
        out[split] = [_entry(root, v, src, f"{where} {key}:") for v in values]
    if out and "train" not in out:
        raise DataError(f"{where} names {', '.join(k for k in data if k in SPLIT_KEYS)} but no train: entry.")
    return out, root


def folder_splits(src: Path) -> dict[str, list[Path]]:
    """``images/<split>/`` or ``<split>/images/`` folders; ``{}`` for a flat folder."""
    candidates = []
    if (src / "images").is_dir():
        candidates += [(d.name, d) for d in (src / "images").iterdir() if d.is_dir()]
    candidates += [(d.name, d / "images") for d in src.iterdir() if d.is_dir() and (d / "images").is_dir()]
    found: dict[str, list[Path]] = {}
    for name, folder in sorted(candidates):
        split = SPLIT_DIRS.get(name.lower())
        if split is None:
            continue
        if split in found:
            raise DataError(f"{src} has two image folders for the {split} split: {found[split][0]} and {folder}.")
        found[split] = [folder]
    if found and "train" not in found:
        raise DataError(f"{src} has image split folders ({', '.join(sorted(found))}) but no train folder.")
    return found


def images_in(entry: Path, root: Path, src: Path, report: BadInputReport, ignored: list[str]) -> list[Path]:
    """Image files of one split entry: a folder (recursive), a ``.txt`` list of images, or one image. Symbolic
    links are followed while they stay inside ``src``; the others are reported (``paths``)."""
    if entry.is_dir():
        files = [p for p in walk_files(entry, src, report)
                 if not any(part.startswith(".") for part in p.relative_to(entry).parts)]
        ignored += [p.relative_to(src).as_posix() for p in files
                    if not is_image_name(p) and p.suffix.lower() not in (".txt", ".yaml", ".yml")]
        return [p for p in files if is_image_name(p)]
    if entry.suffix.lower() == ".txt":
        return keep_inside(images_from_list(entry, root, src, report), src, report)
    if is_image_name(entry):
        return keep_inside([entry], src, report)
    raise DataError(f"{entry} is neither a folder, a .txt list of images nor an image.")


def images_from_list(list_file: Path, root: Path, src: Path, report: BadInputReport) -> list[Path]:
    """Lines of an image list: ``./x`` is relative to the list, other names to the dataset root."""
    images = []
    text = list_file.read_bytes().decode("utf-8-sig", errors="replace")
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        path = inside(list_file.parent if line.startswith("./") else root, line, limit=src)
        if path is None:
            report.add(list_file, "listed image path leaves the dataset folder (not read)", line=number)
        elif not path.is_file():
            report.add(list_file, "listed image not found", line=number)
        else:
            images.append(path)
    return images


def _swap_folder(path: Path, src: Path, old: str, new: str) -> Path:
    """``path`` with its last ``old`` folder below ``src`` renamed ``new``: how YOLO pairs images/ and labels/."""
    parts = list(path.relative_to(src).parts)
    folders = parts[:-1]
    if old in folders:
        parts[len(folders) - 1 - folders[::-1].index(old)] = new
    return src.joinpath(*parts)


def label_path(image: Path, src: Path) -> Path:
    """YOLO's rule: the last ``images`` folder becomes ``labels``, the extension ``.txt``."""
    return _swap_folder(image, src, "images", "labels").with_suffix(".txt")


def orphan_labels(entries: list[Path], images: list[Path], src: Path, skip: set[Path]) -> list[Path]:
    """Label files in the label folders that no image claims (README/classes.txt/image lists excepted)."""
    expected = {label_path(p, src) for p in images}
    folders = {label_path(e / "x.jpg", src).parent for e in entries if e.is_dir()}
    folders |= {p.parent for p in expected}
    found = {p for folder in folders if folder.is_dir() for p in folder.rglob("*.txt") if p.is_file()}
    return sorted(p for p in found - expected - skip if not _is_meta(p.relative_to(src)) and not _has_image(p, src))


def _has_image(label: Path, src: Path) -> bool:
    """Whether the label's image exists but was not listed for any split (a data.yaml .txt list): not an orphan."""
    folder = _swap_folder(label, src, "labels", "images").parent
    return any(is_image_name(p) for p in folder.glob(glob.escape(label.stem) + ".*"))


def _is_meta(rel: Path) -> bool:
    """Text files that are not labels: READMEs (Roboflow exports two), classes.txt, hidden files."""
    name = rel.name.lower()
    return name == "classes.txt" or name.startswith("readme") or any(part.startswith(".") for part in rel.parts)


# --------------------------------------------------------------------------------------------- reading
def collect_images(sources: dict[str, list[Path]], root: Path, src: Path, report: BadInputReport,
                   ignored: list[str]) -> dict[str, list[Path]]:
    """Split → unique images; one image in two splits (also through a symbolic link) would leak evaluation data,
    so that is a DataError."""
    images: dict[str, list[Path]] = {}
    owner: dict[str, str] = {}  # real path → split
    for split, entries in sources.items():
        paths = list(dict.fromkeys(p for e in entries for p in images_in(e, root, src, report, ignored)))
        real = {p: os.path.realpath(p) for p in paths}
        clashes = sorted((p.relative_to(src).as_posix(), owner[real[p]]) for p in paths if real[p] in owner)
        if clashes:
            raise DataError(f"{len(clashes)} image(s) are in both {clashes[0][1]} and {split}, "
                            f"e.g. {', '.join(c for c, _ in clashes[:5])}; each image may belong to one split only.")
        owner.update(dict.fromkeys(real.values(), split))
        images[split] = paths
    if not owner:
        raise DataError(f"No images found in {src} ({', '.join(str(e) for es in sources.values() for e in es)}).")
    return images


def read_labels(images: list[Path], src: Path, num_classes: int,
                report: BadInputReport) -> tuple[dict[Path, list[Box]], set[Path], dict[str, int]]:
    """Boxes per image, images with a bad label file, and counts: images without a label file (= no objects),
    duplicate boxes removed and boxes clipped to the image (counted in label files without a bad line)."""
    labels: dict[Path, list[Box]] = {image: [] for image in images}
    bad: set[Path] = set()
    counts = dict.fromkeys(("images_without_label_file", "duplicate_boxes_removed", "boxes_clipped"), 0)
    for image in images:
        path = label_path(image, src)
        if not path.is_file() and not path.is_symlink():
            counts["images_without_label_file"] += 1
            continue
        reason = link_problem(path, src)
        if reason is not None:
            report.add(path, reason)
            bad.add(image)
            continue
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except (UnicodeDecodeError, OSError):
            report.add(path, "label file is not readable UTF-8 text")
            bad.add(image)
            continue
        parsed = read_label_text(text, num_classes)
        labels[image] = parsed.boxes
        for line, reason in parsed.problems:
            report.add(path, reason, line=line)
        if parsed.problems:
            bad.add(image)
        else:
            counts["duplicate_boxes_removed"] += parsed.duplicates
            counts["boxes_clipped"] += parsed.clipped
    return labels, bad, counts


def to_example(image: Path, image_id: int, boxes: list[Box], src: Path) -> DetectionExample:
    width, height = image_size(image)
    pixels = [to_pixels(box, width, height) for box in boxes]
    return DetectionExample(image, image.relative_to(src).as_posix(), image_id, width, height,
                            bbox=[b for b, _ in pixels], category=[box[0] for box in boxes],
                            iscrowd=[False] * len(boxes), area=[a for _, a in pixels])


def make_examples(images: dict[str, list[Path]], labels: dict[Path, list[Box]], keep: set[Path],
                  src: Path) -> dict[str, list[DetectionExample]]:
    """Usable images as examples; ``image_id`` is the index in sorted path order, so it never depends on splits."""
    ordered = sorted((p for paths in images.values() for p in paths), key=lambda p: p.relative_to(src).as_posix())
    ids = {p: i for i, p in enumerate(ordered)}
    return {split: [to_example(p, ids[p], labels[p], src) for p in paths if p in keep]
            for split, paths in images.items()}


# ----------------------------------------------------------------------------------------------- build
def find_sources(src: Path, data: dict[Any, Any], where: str | None) -> tuple[dict[str, list[Path]], Path, str]:
    """Split entries, dataset root and a layout name: data.yaml entries, split folders, or one flat folder."""
    if where:
        sources, root = yaml_splits(data, where, src)
        if sources:
            return sources, root, f"{where} entries"
    sources = folder_splits(src)
    return (sources, src, "split folders") if sources else ({"all": [src]}, src, "flat folder")


def yaml_notes(data: dict[Any, Any], where: str | None) -> dict[str, Any]:
    """Which data.yaml keys were not used; ``download:`` is named, its value is never looked at."""
    if not where:
        return {}
    notes: dict[str, Any] = {"file": where, "ignored_keys": sorted(str(k) for k in data if k not in USED_KEYS)}
    if "download" in data:
        notes["download"] = "ignored: never executed or fetched (build from local files only)"
    return notes


def build(args: argparse.Namespace) -> BuildResult:
    """Read data.yaml/labels, report every bad input (file:line), stop unless ``--skip-bad``, split, load bytes."""
    src = resolve_src(args)
    report = BadInputReport(root=src)
    data, where = read_config(src)
    names, names_from = class_names(data, where, src, args)
    sources, root, layout = find_sources(src, data, where)
    ignored: list[str] = []
    images = collect_images(sources, root, src, report, ignored)
    everything = [p for paths in images.values() for p in paths]
    labels, bad, counts = read_labels(everything, src, len(names), report)
    skip = {e for es in sources.values() for e in es if e.is_file()}
    for orphan in orphan_labels([e for es in sources.values() for e in es], everything, src, skip):
        report.add(orphan, "label file without an image")
    usable = usable_images(everything, report, args.num_proc)
    report.check(args.skip_bad)
    examples = make_examples(images, labels, usable - bad, src)
    if not any(examples.values()):
        raise DataError(f"No usable images left in {src} after skipping bad inputs.")
    splits, methods = carve_missing(examples, args, layout)
    require_splits(splits, report)
    dataset = detection_dataset(splits, names, SOURCE)
    kept = sum(len(v) for v in examples.values())
    info = detection_info(
        SOURCE, src, args, splits, names, methods, layout=layout, names_from=names_from,
        class_order=f"as listed in {names_from}", rejected=report.count, images_dropped=len(everything) - kept,
        data_yaml=yaml_notes(data, where), ignored=listed(ignored), notes=correction_notes(counts), **counts)
    return BuildResult(dataset=dataset, report=report, info=info)
