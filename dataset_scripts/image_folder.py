"""Any class-per-folder tree → image-classification ``DatasetDict``.

Layouts: ``SRC/<class>/*.jpg`` (all splits carved with a seeded stratified split) or
``SRC/{train,validation|val|valid,test}/<class>/*`` (folder splits kept; missing validation/test carved
from train). Class order is the sorted folder names, so it never depends on the filesystem. Symbolic links are
followed while they stay inside SRC and reported otherwise (``paths``).
"""

from __future__ import annotations

import argparse
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
from .paths import link_problem, walk_files

SOURCE = "image_folder"
#: folder name → split name; the first spelling found wins, two spellings for one split are an error.
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation", "test": "test"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--src/--out`` plus split, output and bad-input options."""
    add_input_arguments(parser)
    add_output_arguments(parser)
    add_split_arguments(parser)


def _visible_entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def find_split_folders(src: Path) -> dict[str, Path]:
    """Split name → folder when ``src`` is split-organised, else ``{}``."""
    found: dict[str, Path] = {}
    for entry in _visible_entries(src):
        split = SPLIT_FOLDERS.get(entry.name.lower())
        if split is None or not entry.is_dir() or not any(p.is_dir() for p in entry.iterdir()):
            continue
        if split in found:
            raise DataError(f"{src} has two folders for the {split} split: {found[split].name}/ and {entry.name}/.")
        found[split] = entry
    if found and "train" not in found:
        names = ", ".join(f"{p.name}/" for p in found.values())
        raise DataError(f"{src} has split folders ({names}) but no train/ folder; add train/<class>/ images.")
    if found:
        others = [p.name for p in _visible_entries(src) if p.is_dir() and p not in found.values()]
        if others:
            raise DataError(
                f"{src} mixes split folders with other folders ({', '.join(others)}); "
                "put class folders inside train/, validation/ and test/ only."
            )
    return found


def scan_class_tree(root: Path, report: BadInputReport, ignored: list[str]) -> dict[str, list[Path]]:
    """Class name → image candidates under ``root``; non-image files become reported problems."""
    classes: dict[str, list[Path]] = {}
    for entry in _visible_entries(root):
        if not entry.is_dir():
            if is_image_name(entry):
                report.add(entry, "image outside any class folder")
            else:
                ignored.append(str(entry.relative_to(report.root)))
            continue
        if (reason := link_problem(entry, report.root)) is not None:  # a class folder linked from outside SRC
            report.add(entry, reason)
            continue
        images = []
        for path in walk_files(entry, report.root, report):  # hidden files too: reported, not dropped
            if is_image_name(path):
                images.append(path)
            else:
                report.add(path, f"not an image file ({path.suffix.lower() or 'no extension'})")
        classes[entry.name] = images
    return classes


def _labeled(tree: dict[str, list[Path]], class_names: list[str], src: Path) -> list[LabeledFile]:
    index = {name: i for i, name in enumerate(class_names)}
    return [
        LabeledFile(path, path.relative_to(src).as_posix(), index[cls])
        for cls, paths in tree.items() for path in paths
    ]


def _class_names(folders: dict[str, Path], trees: dict[str, dict[str, list[Path]]], provisional: list[str],
                 valid: dict[str, list[LabeledFile]], report: BadInputReport) -> list[str]:
    """Sorted class folders holding at least one valid image; class folders with none are reported."""
    has_images = {provisional[f.label] for files in valid.values() for f in files}
    for split, tree in trees.items():
        for cls in tree:
            if cls not in has_images:
                report.add(folders[split] / cls, "class folder has no valid images")
    return [name for name in provisional if name in has_images]


def _collect(src: Path, args: argparse.Namespace) -> tuple[dict[str, list[LabeledFile]], list[str], BadInputReport, dict]:
    """Scan, validate and label every split folder (or the single tree)."""
    report = BadInputReport(root=src)
    ignored: list[str] = []
    folders = find_split_folders(src) or {"all": src}
    trees = {split: scan_class_tree(folder, report, ignored) for split, folder in folders.items()}
    provisional = sorted({cls for tree in trees.values() for cls in tree})
    if not provisional:
        raise DataError(f"No class folders found in {src}; expected {src}/<class>/*.jpg (or train/<class>/...).")
    valid = {split: keep_valid(_labeled(tree, provisional, src), report, args.num_proc) for split, tree in trees.items()}
    class_names = _class_names(folders, trees, provisional, valid, report)
    if not class_names:
        report.check(skip_bad=False)
        raise DataError(f"No valid images found in {src}.")
    remap = {provisional.index(n): i for i, n in enumerate(class_names)}
    valid = {s: [LabeledFile(f.path, f.rel, remap[f.label]) for f in files] for s, files in valid.items()}
    return valid, class_names, report, {"ignored": ignored}


def _assemble_splits(valid: dict[str, list[LabeledFile]], args) -> tuple[dict[str, list[LabeledFile]], dict[str, str]]:
    """Keep folder splits; carve whatever is missing from train with a stratified split."""
    if "all" in valid:
        method = "stratified (seeded) from the class folders"
        splits = carve(valid["all"], args.val_fraction, args.test_fraction, args.seed)
        return splits, dict.fromkeys(splits, method)
    val = 0.0 if "validation" in valid else args.val_fraction
    test = 0.0 if "test" in valid else args.test_fraction
    carved = carve(valid["train"], val, test, args.seed)
    splits = {"train": carved["train"]}
    method = {"train": "folder, minus the carved splits" if (val or test) else "folder"}
    for name in ("validation", "test"):
        if name in valid or name in carved:
            splits[name] = valid[name] if name in valid else carved[name]
            method[name] = "folder" if name in valid else "stratified (seeded) from train/"
    return splits, method


def build(args: argparse.Namespace) -> BuildResult:
    """Scan ``args.src``, stop on bad files unless ``--skip-bad``, split, and load the original bytes."""
    src = resolve_src(args)
    valid, class_names, report, extra = _collect(src, args)
    report.check(args.skip_bad)
    splits, method = _assemble_splits(valid, args)
    require_splits(splits, report)
    dataset = classification_dataset(splits, class_names)
    info = classification_info(SOURCE, src, args, splits, class_names, method,
                               rejected=report.count, **extra)
    return BuildResult(dataset=dataset, report=report, info=info)
