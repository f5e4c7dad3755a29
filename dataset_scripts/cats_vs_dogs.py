"""Kaggle cats-vs-dogs → image-classification ``DatasetDict`` with classes ``["cat", "dog"]``.

Two real-world layouts are accepted:

* Microsoft's ``PetImages/Cat/*.jpg`` + ``PetImages/Dog/*.jpg`` (``--src`` is PetImages or its parent).
  It ships zero-byte and corrupt JPEGs and ``Thumbs.db`` files: they are reported, never silently dropped.
* The competition's flat ``train/cat.0.jpg``, ``train/dog.12.jpg`` (``--src`` is train/ or its parent).
  Names that are not ``cat.N.ext``/``dog.N.ext`` are reported.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from hf_tasks.errors import DataError

from .common import (
    BadInputReport,
    BuildResult,
    LabeledFile,
    add_input_arguments,
    add_output_arguments,
    add_split_arguments,
    carve,
    classification_dataset,
    classification_info,
    is_image_name,
    keep_valid,
    require_splits,
    resolve_src,
)
from .paths import keep_inside, walk_files

SOURCE = "cats_vs_dogs"
CLASS_NAMES = ["cat", "dog"]
FLAT_NAME = re.compile(r"^(cat|dog)\.(\d+)\.(jpe?g|png|bmp|gif|webp)$", re.IGNORECASE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Same options as image_folder: the class order is fixed, so there is nothing else to choose."""
    add_input_arguments(parser)
    add_output_arguments(parser)
    add_split_arguments(parser)


def _child_dir(folder: Path, name: str) -> Path | None:
    """Case-insensitive sub-folder lookup (zips made on Windows/macOS differ in case)."""
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name.lower() == name.lower():
            return entry
    return None


def _is_pet_root(folder: Path) -> bool:
    return _child_dir(folder, "Cat") is not None and _child_dir(folder, "Dog") is not None


def _has_flat_files(folder: Path) -> bool:
    return any(FLAT_NAME.match(p.name) for p in folder.iterdir() if p.is_file())


def detect_layout(src: Path) -> tuple[str, Path]:
    """``("pet", PetImages root)`` or ``("flat", train folder)``; anything else is a clear error."""
    candidates = []
    pet = _child_dir(src, "PetImages")
    if pet is not None and _is_pet_root(pet):
        candidates.append(("pet", pet))
    elif _is_pet_root(src):
        candidates.append(("pet", src))
    train = _child_dir(src, "train")
    if train is not None and _has_flat_files(train):
        candidates.append(("flat", train))
    elif _has_flat_files(src):
        candidates.append(("flat", src))
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise DataError(f"{src} holds both the PetImages and the flat train/ layout; point --src at one of them.")
    raise DataError(
        f"{src} is not a cats-vs-dogs download. Expected PetImages/Cat/*.jpg and PetImages/Dog/*.jpg, "
        "or the competition layout train/cat.0.jpg, train/dog.0.jpg."
    )


def scan_pet(root: Path, report: BadInputReport, src: Path) -> list[LabeledFile]:
    """``Cat/`` and ``Dog/`` files; non-image names (e.g. Thumbs.db) and links leaving ``src`` are reported."""
    files = []
    for label, name in enumerate(("Cat", "Dog")):
        folder = _child_dir(root, name)
        for path in walk_files(folder, src, report):
            if is_image_name(path):
                files.append(LabeledFile(path, path.relative_to(root).as_posix(), label))
            else:
                report.add(path, f"not an image file ({path.suffix.lower() or 'no extension'})")
    return files


def _flat_sort_key(path: Path) -> tuple:
    """cat.2 before cat.10: numeric order, so the stored order reads naturally."""
    match = FLAT_NAME.match(path.name)
    return (match.group(1).lower(), int(match.group(2)), path.name) if match else ("~", 0, path.name)


def scan_flat(root: Path, report: BadInputReport, src: Path) -> list[LabeledFile]:
    """``cat.N.ext``/``dog.N.ext`` files directly in ``root``; other names and links leaving ``src`` are reported."""
    files = []
    entries = keep_inside((p for p in root.iterdir() if p.is_file() or p.is_symlink()), src, report)
    for path in sorted((p for p in entries if p.is_file()), key=_flat_sort_key):
        match = FLAT_NAME.match(path.name)
        if match is None:
            report.add(path, "name does not match cat.N.ext or dog.N.ext")
            continue
        files.append(LabeledFile(path, path.name, CLASS_NAMES.index(match.group(1).lower())))
    return files


def build(args: argparse.Namespace) -> BuildResult:
    """Detect the layout, validate every image, stop on bad inputs unless ``--skip-bad``, split, load bytes."""
    src = resolve_src(args)
    layout, root = detect_layout(src)
    report = BadInputReport(root=root)
    candidates = (scan_pet if layout == "pet" else scan_flat)(root, report, src)
    files = keep_valid(candidates, report, args.num_proc)
    report.check(args.skip_bad)
    if not files:
        raise DataError(f"No valid cat or dog images found in {root}.")
    splits = carve(files, args.val_fraction, args.test_fraction, args.seed)
    require_splits(splits, report)
    dataset = classification_dataset(splits, CLASS_NAMES)
    method = dict.fromkeys(splits, "stratified (seeded)")
    info = classification_info(SOURCE, root, args, splits, CLASS_NAMES, method, layout=layout, rejected=report.count)
    return BuildResult(dataset=dataset, report=report, info=info)
