"""Tiny ImageNet (tiny-imagenet-200) → image-classification ``DatasetDict`` with human-readable class names.

``--src`` is ``tiny-imagenet-200/`` or its parent: ``wnids.txt``, ``words.txt``, ``train/<wnid>/images/*.JPEG``,
``val/images/*.JPEG`` + ``val/val_annotations.txt``. Class order is the ``wnids.txt`` order (a ``--classes``
subset keeps that order); names are the first synonym in ``words.txt`` (``"goldfish"``), with `` (<wnid>)``
appended to every name that several of the 200 classes share, so a class is named the same in every subset.

Splits: validation = the official val set (50 per class). The official test set has no labels, so it is left
out; the labelled test split is ``--test-per-class`` images per class drawn from official train by seeded
per-class sampling *before* ``--max-per-class`` caps the rest (TinyImageNet30: ``--classes 30 --max-per-class
450`` → 30 × 450 train, 30 × 50 validation, 30 × 50 test). A carve that would take more of a class than it leaves
for training (a reduced download) is refused; the per-class counts are printed. Bounding boxes are not included.
"""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from hf_tasks.errors import DataError
from hf_tasks.util import nearest

from .captions_common import UNSAFE_NAME, contained, is_file, read_text, unsafe_reason
from .common import (
    BadInputReport,
    BuildResult,
    LabeledFile,
    add_input_arguments,
    add_output_arguments,
    class_counts,
    image_value,
    is_image_name,
    keep_valid,
    require_splits,
    resolve_src,
    rows_to_dataset,
)
from .paths import walk_files

SOURCE = "tiny_imagenet"
ROOT_NAME = "tiny-imagenet-200"
VAL_FIELDS = (2, 6)  # file<TAB>wnid, optionally followed by x0 y0 x1 y1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--classes", default=None,
                        help="N (a seeded subset of N classes) or a comma list of wnids (default: all 200)")
    parser.add_argument("--max-per-class", type=int, default=None,
                        help="cap on train images per class, applied after the test carve (e.g. 450)")
    parser.add_argument("--test-per-class", type=int, default=50,
                        help="official train images per class carved into the labelled test split")
    parser.add_argument("--seed", type=int, default=42, help="seed for the class subset, test carve and cap")
    add_output_arguments(parser)


# ------------------------------------------------------------------------------------------- metadata
def find_root(src: Path) -> Path:
    for root in (src, src / ROOT_NAME):
        if (root / "wnids.txt").is_file():
            return root
    raise DataError(f"{src} is not a Tiny ImageNet download: expected {ROOT_NAME}/wnids.txt, words.txt, train/, val/.")


def _lines(path: Path):
    for number, line in enumerate(read_text(path).split("\n"), 1):
        yield number, line.rstrip("\r")


def read_wnids(path: Path) -> list[str]:
    """Class ids in file order; duplicates or spaces make the class list ambiguous, so they stop the build."""
    wnids, first_line = [], {}
    for number, line in _lines(path):
        wnid = line.strip()
        if not wnid:
            continue
        if len(wnid.split()) != 1 or wnid in first_line:
            problem = "contains spaces" if len(wnid.split()) != 1 else f"repeats line {first_line[wnid]}"
            raise DataError(f"{path}:{number}: {wnid!r} {problem}; wnids.txt holds one unique wnid per line.")
        first_line[wnid] = number
        wnids.append(wnid)
    if not wnids:
        raise DataError(f"{path} lists no wnids.")
    return wnids


def read_words(path: Path, report: BadInputReport) -> dict[str, str]:
    """wnid → full words text (``"goldfish, Carassius auratus"``); lines without a tab are reported."""
    if not path.is_file():
        raise DataError(f"{path} is missing; it maps wnids to class names.")
    words: dict[str, str] = {}
    for number, line in _lines(path):
        wnid, tab, text = line.partition("\t")
        if not line.strip():
            continue
        if not tab or not wnid.strip():
            report.add(path, "malformed line: expected <wnid><TAB><names>", number)
            continue
        words.setdefault(wnid.strip(), text.strip())
    return words


def class_names(wnids: list[str], words: dict[str, str]) -> list[str]:
    """First synonyms, made unique by appending the wnid to every name several classes share."""
    first = [(words.get(w, "").split(",")[0].strip() or w) for w in wnids]
    counts = Counter(first)
    names = [f"{name} ({wnid})" if counts[name] > 1 else name for name, wnid in zip(first, wnids)]
    if len(set(names)) != len(names):
        names = [f"{name} ({wnid})" for name, wnid in zip(first, wnids)]
    return names


def select_classes(spec: str | None, wnids: list[str], seed: int) -> tuple[list[int], str]:
    """Indices into ``wnids`` (sorted, i.e. wnids.txt order) and how they were chosen."""
    if spec is None or not spec.strip():
        return list(range(len(wnids))), "all classes"
    if spec.strip().isdigit():
        n = int(spec)
        if not 1 <= n <= len(wnids):
            raise DataError(f"--classes {n}: choose between 1 and {len(wnids)} classes.")
        chosen = np.random.default_rng(seed).choice(len(wnids), size=n, replace=False)
        return sorted(int(i) for i in chosen), f"seeded random subset of {n} of {len(wnids)} (seed {seed})"
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in wnids]
    if unknown:
        close = nearest(unknown[0], wnids)
        hint = f" Did you mean {close!r}?" if close else ""
        raise DataError(f"--classes: {', '.join(unknown)} not in wnids.txt.{hint} Give N or a comma list of wnids.")
    return sorted({wnids.index(n) for n in names}), "named wnids"


# ---------------------------------------------------------------------------------------------- scanning
def _natural(path: Path) -> list:
    """``x_2`` before ``x_10``: the order a person reads the folder in."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def scan_train(root: Path, chosen: list[str], known: set[str], report: BadInputReport,
               src: Path) -> list[LabeledFile]:
    """Candidate train images of the chosen classes; stray class folders, non-images and links leaving ``src`` are
    reported."""
    train = root / "train"
    for folder in sorted(p for p in train.iterdir() if p.is_dir()) if train.is_dir() else []:
        if folder.name not in known:
            report.add(folder, "class folder not listed in wnids.txt")
    files = []
    for label, wnid in enumerate(chosen):
        folder = train / wnid / "images"
        if not folder.is_dir():
            raise DataError(f"{folder} is missing; wnids.txt lists {wnid}, so its train images are expected there.")
        for path in sorted(walk_files(folder, src, report), key=_natural):
            if is_image_name(path):
                files.append(LabeledFile(path, path.relative_to(root).as_posix(), label))
            else:
                report.add(path, f"not an image file ({path.suffix.lower() or 'no extension'})")
    return files


def _val_line(line: str, known: set[str]) -> tuple[str, str, str | None]:
    """(file, wnid, problem) of one val_annotations.txt line."""
    parts = [p.strip() for p in line.split("\t")]
    if len(parts) not in VAL_FIELDS or not parts[0] or not parts[1]:
        return "", "", "malformed line: expected file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1"
    if parts[1] not in known:
        return parts[0], parts[1], "label is not a wnid from wnids.txt"
    return parts[0], parts[1], unsafe_reason(parts[0])


def scan_val(root: Path, chosen: list[str], known: set[str], report: BadInputReport, src: Path) -> list[LabeledFile]:
    """Official val images of the chosen classes, each problem reported at its val_annotations.txt line."""
    annotations, images = root / "val" / "val_annotations.txt", root / "val" / "images"
    if not annotations.is_file() or not images.is_dir():
        raise DataError(f"{root}/val needs val_annotations.txt and images/ (the official validation split).")
    label_of, files, seen, named = {w: i for i, w in enumerate(chosen)}, [], set(), set()
    for number, line in _lines(annotations):
        if not line.strip():
            continue
        name, wnid, problem = _val_line(line, known)
        named.add(os.path.normpath(images / name))
        path = contained(images, name, src) if problem is None else None
        if problem is None and path is None:
            problem = UNSAFE_NAME
        elif problem is None and path.resolve() in seen:
            problem = "image annotated more than once"
        elif problem is None and not is_file(path):
            problem = "annotation refers to a missing image"
        if problem:
            report.add(annotations, problem, number)
            continue
        seen.add(path.resolve())
        if wnid in label_of:
            files.append(LabeledFile(path, path.relative_to(root).as_posix(), label_of[wnid]))
    for path in sorted(walk_files(images, src, report, quiet=named), key=_natural):
        if path.resolve() not in seen:
            report.add(path, "image has no label in val_annotations.txt")
    return files


# ------------------------------------------------------------------------------------------------ splits
def carve_test(files: list[LabeledFile], chosen_index: list[int], per_class: int, cap: int | None,
               seed: int) -> tuple[list[LabeledFile], list[LabeledFile], int]:
    """(train, test, unused): per class, a seeded permutation; the first ``per_class`` go to test, then the cap.

    Each class draws from its own generator seeded by (seed, wnids.txt index), so choosing other classes never
    changes a class's test images. Train always keeps at least one image.
    """
    by_class: dict[int, list[LabeledFile]] = {}
    for item in files:
        by_class.setdefault(item.label, []).append(item)
    train, test, unused = [], [], 0
    for label in sorted(by_class):
        members = by_class[label]
        order = np.random.default_rng([seed, chosen_index[label]]).permutation(len(members))
        n_test = min(per_class, max(len(members) - 1, 0))
        rest = sorted(order[n_test:].tolist())
        kept = rest if cap is None else sorted(order[n_test:n_test + cap].tolist())
        test.extend(members[i] for i in sorted(order[:n_test].tolist()))
        train.extend(members[i] for i in kept)
        unused += len(rest) - len(kept)
    return train, test, unused


def check_carve(files: list[LabeledFile], per_class: int, chosen: list[str], names: list[str]) -> None:
    """Refuse a test carve that takes more images of a class than it leaves for training (a reduced download)."""
    sizes = Counter(item.label for item in files)
    short = [label for label in range(len(chosen)) if per_class and sizes[label] < 2 * per_class]
    if not short:
        return
    label = min(short, key=lambda k: (sizes[k], k))
    n, most = sizes[label], min(sizes[k] for k in range(len(chosen))) // 2
    taken = min(per_class, max(n - 1, 0))
    others = f" (and {len(short) - 1} other class(es) below {2 * per_class})" if len(short) > 1 else ""
    fix = f"lower --test-per-class to at most {most}" if most else "pass --test-per-class 0 (no test split)"
    raise DataError(f"Class {chosen[label]} ({names[label]}) has only {n} train images{others}: --test-per-class "
                    f"{per_class} would carve {taken} into test and leave {n - taken} for training; {fix}, so that "
                    "every class keeps at least as many training images as it gives to test.")


def carve_counts(train: list[LabeledFile], test: list[LabeledFile], chosen: list[str]) -> dict[str, dict[str, int]]:
    """wnid → images carved into test and kept for training."""
    tests, trains = Counter(item.label for item in test), Counter(item.label for item in train)
    return {wnid: {"test": tests[i], "train": trains[i]} for i, wnid in enumerate(chosen)}


def carve_note(counts: dict[str, dict[str, int]], limit: int = 5) -> str:
    """``test carve per class: 50 test + 450 train × 200 classes``, one group per distinct pair of counts."""
    groups: dict[tuple[int, int], list[str]] = {}
    for wnid, count in counts.items():
        groups.setdefault((count["test"], count["train"]), []).append(wnid)
    parts = []
    for (n_test, n_train), wnids in sorted(groups.items(), reverse=True):
        which = "" if len(groups) == 1 else f" ({', '.join(wnids[:limit])}{', ...' if len(wnids) > limit else ''})"
        parts.append(f"{n_test} test + {n_train} train × {len(wnids)} class(es){which}")
    return "test carve per class: " + "; ".join(parts)


def _rows(files: list[LabeledFile], wnids: list[str]):
    for item in files:
        yield {"image": image_value(item.path.read_bytes(), item.rel), "label": item.label, "wnid": wnids[item.label]}


def make_dataset(splits: dict[str, list[LabeledFile]], names: list[str], wnids: list[str]):
    from datasets import ClassLabel, DatasetDict, Features, Image, Value

    features = Features({"image": Image(), "label": ClassLabel(names=names), "wnid": Value("string")})
    return DatasetDict({n: rows_to_dataset(_rows(f, wnids), features) for n, f in splits.items() if f})


def _check_args(args: argparse.Namespace) -> None:
    if args.max_per_class is not None and args.max_per_class < 1:
        raise DataError(f"--max-per-class must be at least 1 (got {args.max_per_class}).")
    if args.test_per_class < 0:
        raise DataError(f"--test-per-class must be 0 or more (got {args.test_per_class}).")


def _info(root: Path, args, splits, names, chosen, words, selection: str, unused: int) -> dict[str, Any]:
    cap = f", capped at {args.max_per_class} per class (seeded)" if args.max_per_class else ""
    labels = {name: [f.label for f in files] for name, files in splits.items() if files}
    return {
        "source": SOURCE, "src": str(root), "task": "classification", "seed": args.seed,
        "split_method": {
            "train": f"official train/ minus the test carve{cap}",
            "validation": "official val/ (val_annotations.txt, 50 per class)",
            "test": f"{args.test_per_class} images per class carved from official train/ by seeded per-class "
                    f"sampling (seed {args.seed}) before the cap",
        },
        "class_names": names, "wnids": chosen, "words": {w: words.get(w, "") for w in chosen},
        "class_order": "wnids.txt order (a --classes subset keeps that order)", "class_selection": selection,
        "max_per_class": args.max_per_class, "test_per_class": args.test_per_class,
        "unused_train_images": unused, "num_examples": {n: len(v) for n, v in labels.items()},
        "counts": class_counts(labels, names),
        "official_test": "test/images/ has no labels and is not included",
        "boxes": "train/<wnid>/<wnid>_boxes.txt and the val boxes are not included",
    }


def build(args: argparse.Namespace) -> BuildResult:
    """Read the class list, pick classes, validate every image, stop on problems unless --skip-bad, split."""
    _check_args(args)
    src = resolve_src(args)
    root = find_root(src)
    report = BadInputReport(root=root)
    wnids = read_wnids(root / "wnids.txt")
    words = read_words(root / "words.txt", report)
    all_names = class_names(wnids, words)
    indices, selection = select_classes(args.classes, wnids, args.seed)
    chosen, names = [wnids[i] for i in indices], [all_names[i] for i in indices]
    train = keep_valid(scan_train(root, chosen, set(wnids), report, src), report, args.num_proc)
    val = keep_valid(scan_val(root, chosen, set(wnids), report, src), report, args.num_proc)
    report.check(args.skip_bad)
    check_carve(train, args.test_per_class, chosen, names)
    train, test, unused = carve_test(train, indices, args.test_per_class, args.max_per_class, args.seed)
    if not train:
        raise DataError(f"No valid train images found for the chosen classes under {root / 'train'}.")
    splits = {"train": train, "validation": val, **({"test": test} if args.test_per_class else {})}
    require_splits(splits, report)
    info = _info(root, args, splits, names, chosen, words, selection, unused)
    info["rejected"] = report.count
    if args.test_per_class:
        info["test_carve"] = carve_counts(train, test, chosen)
        info["notes"] = [carve_note(info["test_carve"])]
    return BuildResult(dataset=make_dataset(splits, names, chosen), report=report, info=info)
