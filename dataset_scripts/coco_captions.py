"""COCO captions → captioning ``DatasetDict``: one row per image with all of its captions.

Inputs: ``--src COCO`` holding ``annotations/captions_<name>.json`` and ``<name>/`` image folders (e.g. train2017,
val2017), or ``--annotations FILE [FILE ...] --images DIR`` (``DIR/<name>/`` is used when it exists, else ``DIR``).

Splits: with ``--karpathy dataset_coco.json`` the Karpathy split of each image (matched by ``cocoid``, else by
file name; restval → train). Without it, when both a ``captions_train*`` and a ``captions_val*`` file are given:
train = official train minus a seeded ``--val-fraction`` validation carve, test = official val (COCO test has no
public captions). Otherwise all images are split by image with ``--val-fraction``/``--test-fraction``.
``--karpathy`` alone (with ``--images``) takes the captions from its ``sentences`` and images from
``DIR/<filepath>/<filename>``.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from hf_tasks.errors import DataError

from .captions_common import (
    NO_CAPTION,
    Caption,
    CaptionedImage,
    add_caption,
    anchor,
    captioning_dataset,
    captioning_info,
    check_out_apart,
    group_by_image,
    is_int,
    is_text,
    load_json_lists,
    seeded_image_split,
    validate_images,
)
from .common import (
    BadInputReport,
    BuildResult,
    add_output_arguments,
    add_split_arguments,
    require_splits,
    requested_splits,
)

SOURCE = "coco_captions"
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "validation", "test": "test"}
ROLE = re.compile(r"^captions_(train|val)", re.IGNORECASE)


@dataclass
class CocoFile:
    """One parsed captions file: image id → file name, and its usable captions (``image`` = file name)."""

    path: Path
    file_names: dict[int, str]
    captions: list[Caption]


@dataclass(frozen=True)
class KarpathyImage:
    """One entry of a Karpathy split file."""

    cocoid: int | None
    name: str  # ``filepath/filename`` (or ``filename``)
    filename: str
    split: str  # train / validation / test
    sentences: tuple[Caption, ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", type=Path, default=None,
                        help="COCO root with annotations/captions_*.json and one image folder per file")
    parser.add_argument("--annotations", type=Path, nargs="+", default=None, help="captions_*.json file(s)")
    parser.add_argument("--images", type=Path, default=None, help="image folder for --annotations/--karpathy")
    parser.add_argument("--karpathy", type=Path, default=None,
                        help="Karpathy split file (dataset_coco.json): use its splits, restval → train")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip bad captions/images (recorded in build_report.json)")
    parser.add_argument("--num-proc", type=int, default=1, help="worker processes for checking images")
    add_output_arguments(parser)
    add_split_arguments(parser)


# ----------------------------------------------------------------------------------------------- parsers
def _coco_images(path: Path, entries: list, report: BadInputReport) -> dict[int, str]:
    """Image id → file name; malformed entries and duplicate ids or names are reported."""
    file_names: dict[int, str] = {}
    names: set[str] = set()
    for index, entry in enumerate(entries):
        ok = isinstance(entry, dict) and is_int(entry.get("id")) and is_text(entry.get("file_name"))
        if not ok:
            report.add(anchor(path, f"images[{index}]"),
                       "malformed image entry (needs integer 'id', string 'file_name')")
        elif entry["id"] in file_names or entry["file_name"] in names:
            report.add(anchor(path, f"image_id={entry['id']}"), "duplicate image id or file_name")
        else:
            file_names[entry["id"]] = entry["file_name"]
            names.add(entry["file_name"])
    return file_names


def _annotation_where(path: Path, index: int, annotation: object) -> Path:
    if isinstance(annotation, dict) and is_int(annotation.get("id")):
        return anchor(path, f"annotation_id={annotation['id']}")
    return anchor(path, f"annotations[{index}]")


def parse_coco_json(path: Path, report: BadInputReport) -> CocoFile:
    """Parse ``{"images": [...], "annotations": [{image_id, caption}]}``; every problem names its entry."""
    data = load_json_lists(path, ("images", "annotations"))
    file_names = _coco_images(path, data["images"], report)
    captions: list[Caption] = []
    captioned: set[int] = set()
    for index, ann in enumerate(data["annotations"]):
        where = _annotation_where(path, index, ann)
        if not (isinstance(ann, dict) and is_int(ann.get("image_id")) and is_text(ann.get("caption"))):
            report.add(where, "malformed annotation (needs integer 'image_id', string 'caption')")
        elif ann["image_id"] not in file_names:
            report.add(where, "caption refers to an unknown image id")
        else:
            captioned.add(ann["image_id"])
            add_caption(captions, report, file_names[ann["image_id"]], ann["caption"], where, None)
    for image_id in sorted(set(file_names) - captioned):
        report.add(anchor(path, f"image_id={image_id}"), NO_CAPTION)
    return CocoFile(path, file_names, captions)


def _karpathy_sentences(where: Path, entry: dict, name: str, report: BadInputReport) -> tuple[Caption, ...]:
    sentences = entry.get("sentences", [])
    if not isinstance(sentences, list):
        report.add(where, "malformed 'sentences' (must be a list)")
        return ()
    out: list[Caption] = []
    for sentence in sentences:
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not is_text(raw):
            report.add(where, "malformed sentence (needs string 'raw')")
        else:
            add_caption(out, report, name, raw, where, None)
    if not out and sentences == []:
        report.add(where, NO_CAPTION)
    return tuple(out)


def _karpathy_entry(path: Path, index: int, entry: object, report: BadInputReport,
                    with_sentences: bool) -> KarpathyImage | None:
    cocoid = entry.get("cocoid") if isinstance(entry, dict) else None
    where = anchor(path, f"cocoid={cocoid}" if is_int(cocoid) else f"images[{index}]")
    ok = (isinstance(entry, dict) and is_text(entry.get("filename")) and is_text(entry.get("split"))
          and entry["split"] in KARPATHY_SPLITS
          and is_text(entry.get("filepath", "")) and (cocoid is None or is_int(cocoid)))
    if not ok:
        report.add(where, "malformed Karpathy entry (needs 'filename', 'split' in train/val/test/restval)")
        return None
    filepath, filename = entry.get("filepath", ""), entry["filename"]
    name = f"{filepath}/{filename}" if filepath else filename
    sentences = _karpathy_sentences(where, entry, name, report) if with_sentences else ()
    return KarpathyImage(cocoid, name, filename, KARPATHY_SPLITS[entry["split"]], sentences)


def parse_karpathy(path: Path, report: BadInputReport, with_sentences: bool = False) -> list[KarpathyImage]:
    """Entries of a Karpathy split file; ``sentences`` are only checked when they are the caption source."""
    entries = load_json_lists(path, ("images",))["images"]
    parsed = [_karpathy_entry(path, i, entry, report, with_sentences) for i, entry in enumerate(entries)]
    seen: set[object] = set()
    kept = []
    for item in (p for p in parsed if p is not None):
        key = item.cocoid if item.cocoid is not None else item.name
        if key in seen:
            report.add(anchor(path, f"cocoid={item.cocoid}" if item.cocoid is not None else f"filename={item.name}"),
                       "image listed more than once in the Karpathy file")
            continue
        seen.add(key)
        kept.append(item)
    return kept


# ------------------------------------------------------------------------------------------------ inputs
def _image_root(images: Path, annotation: Path) -> Path:
    """``captions_val2017.json`` → ``images/val2017`` when that folder exists, else ``images`` itself."""
    name = annotation.stem[len("captions_"):] if annotation.stem.lower().startswith("captions_") else ""
    return images / name if name and (images / name).is_dir() else images


def _from_src(src: Path) -> list[tuple[Path, Path]]:
    files = sorted((src / "annotations").glob("captions_*.json"))
    if not files:
        raise DataError(f"{src} has no annotations/captions_*.json; expected the COCO layout "
                        "annotations/captions_train2017.json + train2017/.")
    pairs = []
    for path in files:
        folder = src / path.stem[len("captions_"):]
        if not folder.is_dir():
            raise DataError(f"{path.name} has no image folder {folder}/ next to annotations/.")
        pairs.append((path, folder))
    return pairs


def resolve_inputs(args: argparse.Namespace) -> tuple[list[tuple[Path, Path]], Path | None, Path]:
    """(annotation file, image folder) pairs, the image folder for Karpathy-only builds, and the report root."""
    if args.src is not None and (args.annotations or args.images):
        raise DataError("Give either --src or --annotations/--images, not both.")
    if args.src is None and args.images is None:
        raise DataError("Give --src COCO_ROOT, or --images DIR with --annotations FILE(s) and/or --karpathy FILE.")
    if args.src is None and not args.annotations and args.karpathy is None:
        raise DataError("--images needs --annotations FILE(s) or --karpathy FILE.")
    for path in [*(args.annotations or []), *([args.karpathy] if args.karpathy else [])]:
        if not Path(path).is_file():
            raise DataError(f"{path} is not an existing file.")
    root = Path(args.src if args.src is not None else args.images).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root} is not an existing folder.")
    if args.src is not None:
        pairs = _from_src(root)
    else:
        pairs = [(Path(p).resolve(), _image_root(root, Path(p))) for p in args.annotations or []]
    check_out_apart(args.out, root, *(p for p, _ in pairs))
    report_root = Path(os.path.commonpath([root, *(p.parent for p, _ in pairs)]))
    return pairs, root, report_root


# ------------------------------------------------------------------------------------------------ splits
def karpathy_split(images: list[tuple[int | None, CaptionedImage]], entries: list[KarpathyImage],
                   ) -> tuple[dict[str, list[CaptionedImage]], dict[str, int]]:
    """Karpathy's split for each image by cocoid (else file name); unmatched on either side are counted."""
    by_id = {e.cocoid: e.split for e in entries if e.cocoid is not None}
    by_name = {e.filename: e.split for e in entries}
    splits: dict[str, list[CaptionedImage]] = {"train": [], "validation": [], "test": []}
    matched, unmatched = set(), 0
    for cocoid, image in images:
        split = by_id.get(cocoid) if cocoid in by_id else by_name.get(image.image_id)
        if split is None:
            unmatched += 1
            continue
        matched.add(cocoid if cocoid in by_id else image.image_id)
        splits[split].append(image)
    stats = {"images_not_in_karpathy": unmatched, "karpathy_entries_not_found": len(entries) - len(matched)}
    return splits, stats


def official_split(files: list[tuple[Path, list[CaptionedImage]]], args: argparse.Namespace,
                   ) -> tuple[dict[str, list[CaptionedImage]], dict[str, str]]:
    """Official train/val roles when both kinds of file are given, else one seeded split by image."""
    roles = {path: (m.group(1).lower() if (m := ROLE.match(path.name)) else None) for path, _ in files}
    splits: dict[str, list[CaptionedImage]] = {"train": [], "validation": [], "test": []}
    if {"train", "val"} <= set(roles.values()) and None not in roles.values():
        names = {r: ", ".join(p.name for p, role in roles.items() if role == r) for r in ("train", "val")}
        for path, images in files:
            if roles[path] == "val":
                splits["test"].extend(images)
                continue
            for name, part in seeded_image_split(images, args.val_fraction, 0.0, args.seed).items():
                splits[name].extend(part)
        carve = f"seeded {args.val_fraction} of {names['train']} images (seed {args.seed})"
        splits = requested_splits(splits, args.val_fraction, test_fraction=1.0)  # test: the official val file
        return splits, {"train": f"official {names['train']} minus the validation carve", "validation": carve,
                        "test": f"official {names['val']} (COCO test has no public captions)"}
    every = [image for _, images in files for image in images]
    splits = seeded_image_split(every, args.val_fraction, args.test_fraction, args.seed)
    method = (f"seeded split by image (seed {args.seed}, validation {args.val_fraction}, test "
              f"{args.test_fraction}); no --karpathy file and no train+val annotation pair")
    return splits, dict.fromkeys(splits, method)


# ------------------------------------------------------------------------------------------------- build
def _validate_coco(pairs, report, num_proc, root: Path) -> list[tuple[Path, list[tuple[int | None, CaptionedImage]]]]:
    """Parse each captions file and validate its images against its own image folder (links stay inside ``root``)."""
    out = []
    for path, folder in pairs:
        coco = parse_coco_json(path, report)
        ids = {name: image_id for image_id, name in coco.file_names.items()}
        images = validate_images(group_by_image(coco.captions), folder, report, num_proc, limit=root)
        out.append((path, [(ids.get(image.image_id), image) for image in images]))
    return out


def _karpathy_only(path: Path, root: Path, report: BadInputReport, num_proc: int | None,
                   ) -> tuple[list[tuple[int | None, CaptionedImage]], list[KarpathyImage]]:
    """Captions and images straight from the Karpathy file: ``root/filepath/filename``, or ``root/filename``
    when the ``filepath`` folder does not exist (images copied into one folder)."""
    entries = parse_karpathy(path, report, with_sentences=True)
    flat = {e.name: e.filename for e in entries if e.name != e.filename and not (root / e.name).parent.is_dir()}
    id_of = {flat.get(e.name, e.name): e.filename for e in entries}
    groups = group_by_image(replace(c, image=flat.get(c.image, c.image)) for e in entries for c in e.sentences)
    images = validate_images(groups, root, report, num_proc, id_of=id_of)
    by_name = {e.filename: e.cocoid for e in entries}
    return [(by_name.get(image.image_id), image) for image in images], entries


def build(args: argparse.Namespace) -> BuildResult:
    """Parse, validate every named image, stop on problems unless ``--skip-bad``, split, load original bytes."""
    pairs, root, report_root = resolve_inputs(args)
    report = BadInputReport(root=report_root)
    extra: dict[str, object] = {"annotation_files": [str(p) for p, _ in pairs]}
    if pairs:
        files = _validate_coco(pairs, report, args.num_proc, root)
        entries = parse_karpathy(args.karpathy, report) if args.karpathy else []
    else:
        images, entries = _karpathy_only(args.karpathy, root, report, args.num_proc)
        files = [(args.karpathy, images)]
    report.check(args.skip_bad)
    if not any(images for _, images in files):
        raise DataError(f"No captioned images found (images under {root}).")
    if args.karpathy:
        splits, stats = karpathy_split([item for _, images in files for item in images], entries)
        name = Path(args.karpathy).name
        method = {"train": f"Karpathy split ({name}): train + restval", "validation": f"Karpathy split ({name}): val",
                  "test": f"Karpathy split ({name}): test"}
        extra.update(karpathy_file=str(args.karpathy), **stats)
    else:
        splits, method = official_split([(p, [img for _, img in items]) for p, items in files], args)
        extra.update(val_fraction=args.val_fraction, test_fraction=args.test_fraction)
    splits = {name: sorted(images, key=lambda i: i.rel) for name, images in splits.items()}
    require_splits(splits, report)
    info = captioning_info(SOURCE, root, splits, method, args, rejected=report.count, **extra)
    return BuildResult(dataset=captioning_dataset(splits), report=report, info=info)
