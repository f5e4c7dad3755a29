"""Shared parts of the captioning sources (Flickr8k, COCO captions): safe names, caption grouping, assembly.

Every caption carries *where* it came from (file and line, or ``file.json#annotation_id=N``) so that a problem
is reported at the place the user can fix. Image names from caption files are untrusted text: they are checked
for absolute paths, ``..`` and symlinks leaving the ``--src`` root before anything is opened.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from hf_tasks.errors import DataError

from .common import (
    BadInputReport,
    check_images,
    image_value,
    is_image_name,
    requested_splits,
    rows_to_dataset,
    stratified_split,
)
from .paths import walk_files, within

if TYPE_CHECKING:
    from datasets import DatasetDict, Features

UNSAFE_NAME = "image name escapes the image folder (absolute path or '..'); not opened"
MISSING_IMAGE = "caption refers to a missing image"
EMPTY_CAPTION = "empty caption"
NO_CAPTION = "image has no caption"


@dataclass(frozen=True)
class Caption:
    """One caption as read: ``image`` is the name written in the file (relative to the image folder)."""

    image: str
    text: str
    where: Path
    line: int | None = None


@dataclass(frozen=True)
class CaptionedImage:
    """A validated image with all its captions; ``rel`` is its path relative to the report root."""

    path: Path
    rel: str
    image_id: str
    captions: tuple[str, ...]


# -------------------------------------------------------------------------------------------- reading
def read_text(path: Path) -> str:
    """A caption file as text; undecodable or unreadable files are one clear error (whole file unusable)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (bad byte at offset {exc.start}).") from None


def is_text(value: Any) -> bool:
    """A ``str`` that Arrow can store: JSON may smuggle in lone surrogates (``"\\ud800"``) or NUL bytes."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def anchor(path: Path, label: str) -> Path:
    """``captions.json#annotation_id=7``: names an entry of a JSON file in a report (JSON has no useful lines)."""
    return path.with_name(f"{path.name}#{label}")


def load_json_lists(path: Path, keys: Sequence[str]) -> dict[str, list]:
    """A JSON object whose ``keys`` are lists; anything else makes the whole file unusable (one DataError)."""
    import json

    try:
        data = json.loads(read_text(path))
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path} is not valid JSON ({str(exc)[:200]}).") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with {', '.join(keys)}, found {type(data).__name__}.")
    wrong = [key for key in keys if not isinstance(data.get(key), list)]
    if wrong:
        raise DataError(f"{path}: {', '.join(repr(k) for k in wrong)} must be a list (missing or wrong type).")
    return {key: data[key] for key in keys}


def is_int(value: Any) -> bool:
    """JSON integer ids only: ``True`` is an ``int`` in Python but never a valid id."""
    return isinstance(value, int) and not isinstance(value, bool)


def add_caption(out: list[Caption], report: BadInputReport, image: str, text: str, where: Path,
                line: int | None) -> None:
    """Keep a caption unless it is blank (reported): blank captions would silently become empty references."""
    text = text.strip()
    if not text:
        report.add(where, EMPTY_CAPTION, line)
    else:
        out.append(Caption(image.strip(), text, where, line))


# ------------------------------------------------------------------------------------------ safe names
def unsafe_reason(name: str) -> str | None:
    """Why ``name`` may not be joined to the image folder, or ``None``. Pure string check: nothing is opened."""
    if not is_text(name) or not name.strip():
        return "image name is empty or not valid text"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\")):
        return UNSAFE_NAME
    if ".." in name.replace("\\", "/").split("/"):
        return UNSAFE_NAME
    return None


def contained(root: Path, name: str, limit: Path | None = None) -> Path | None:
    """``root/name`` if, symlinks resolved, it stays inside ``limit`` (the ``--src`` root; default ``root``).
    Only stats, never opens."""
    path = root / name
    return path if within(path, limit if limit is not None else root) else None


def is_file(path: Path) -> bool:
    """``Path.is_file`` that treats over-long or otherwise unstat-able names as absent instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------------------------------- grouping
def group_by_image(captions: Iterable[Caption]) -> dict[str, list[Caption]]:
    """Image name → its captions in file order (all references are kept)."""
    groups: dict[str, list[Caption]] = {}
    for caption in captions:
        groups.setdefault(caption.image, []).append(caption)
    return groups


def locate_images(groups: dict[str, list[Caption]], image_root: Path, report: BadInputReport,
                  limit: Path | None = None) -> dict[str, Path]:
    """Image name → existing file inside ``image_root`` (through links only when they stay inside ``limit``, the
    ``--src`` root); unsafe and missing names are reported per caption."""
    found: dict[str, Path] = {}
    for name in sorted(groups):
        reason = unsafe_reason(name)
        path = None if reason else contained(image_root, name, limit)
        if reason is None and path is None:
            reason = UNSAFE_NAME
        elif path is not None and not is_file(path):
            reason, path = MISSING_IMAGE, None
        if reason:
            for caption in groups[name]:
                report.add(caption.where, reason, caption.line)
        else:
            found[name] = path
    return found


def validate_images(groups: dict[str, list[Caption]], image_root: Path, report: BadInputReport,
                    num_proc: int | None, id_of: dict[str, str] | None = None,
                    limit: Path | None = None) -> list[CaptionedImage]:
    """Locate and fully decode every captioned image; return the usable ones sorted by path.

    ``id_of`` maps a caption's image name to the stored ``image_id`` (default: the name itself); ``limit`` is the
    folder symbolic links must stay in (the ``--src`` root; default ``image_root``).
    """
    found = locate_images(groups, image_root, report, limit)
    names = sorted(found, key=lambda n: found[n].as_posix())
    reasons = check_images([found[n] for n in names], num_proc=num_proc)
    images = []
    for name, reason in zip(names, reasons):
        if reason is not None:
            report.add(found[name], reason)
            continue
        rel = _relative(found[name], report.root)
        texts = tuple(c.text for c in groups[name])
        images.append(CaptionedImage(found[name], rel, (id_of or {}).get(name, name), texts))
    return images


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name


def report_uncaptioned(image_root: Path, names: Iterable[str], report: BadInputReport,
                       limit: Path | None = None) -> list[str]:
    """Images in ``image_root`` that no caption names are reported; other files are returned as ignored.

    Compared by normalised path, so ``./a.jpg`` in a caption file still counts as naming ``a.jpg`` (and a
    named symlink that escapes ``limit`` is reported once, at its caption, not again here).
    """
    named = {os.path.normpath(image_root / n) for n in names if unsafe_reason(n) is None}
    ignored = []
    for path in walk_files(image_root, limit if limit is not None else image_root, report, quiet=named):
        if os.path.normpath(path) in named:
            continue
        if is_image_name(path):
            report.add(path, NO_CAPTION)
        else:
            ignored.append(_relative(path, report.root))
    return ignored


# ------------------------------------------------------------------------------------------- assembly
def captioning_features() -> Features:
    from datasets import Features, Image, Sequence, Value

    return Features({"image": Image(), "image_id": Value("string"), "captions": Sequence(Value("string"))})


def captioning_dataset(splits: dict[str, list[CaptionedImage]]) -> DatasetDict:
    """One row per image holding every caption; the original bytes are stored, empty splits left out."""
    from datasets import DatasetDict

    features = captioning_features()

    def rows(images: list[CaptionedImage]):
        for item in images:
            yield {"image": image_value(item.path.read_bytes(), item.rel), "image_id": item.image_id,
                   "captions": list(item.captions)}

    return DatasetDict({name: rows_to_dataset(rows(imgs), features) for name, imgs in splits.items() if imgs})


def seeded_image_split(images: Sequence[CaptionedImage], val_fraction: float, test_fraction: float,
                       seed: int) -> dict[str, list[CaptionedImage]]:
    """Split *images* (never captions of one image across splits) with the shared seeded splitter; a split with a
    0 fraction is not made."""
    parts = stratified_split([0] * len(images), val_fraction, test_fraction, seed)
    return requested_splits({name: [images[i] for i in idx] for name, idx in parts.items()}, val_fraction,
                            test_fraction)


def captioning_info(source: str, src: Path, splits: dict[str, list[CaptionedImage]],
                    split_method: dict[str, str], args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """Provenance recorded the same way by every captioning source."""
    kept = {name: imgs for name, imgs in splits.items() if imgs}
    return {
        "source": source, "src": str(src), "task": "captioning", "split_method": split_method,
        "seed": args.seed, "num_examples": {name: len(imgs) for name, imgs in kept.items()},
        "num_captions": {name: sum(len(i.captions) for i in imgs) for name, imgs in kept.items()},
        **extra,
    }


def check_out_apart(out: os.PathLike | str, *inputs: Path) -> None:
    """``--out`` must not overlap any input, so a re-run never scans or replaces its own raw data."""
    out_path = Path(out).expanduser().resolve()
    for path in inputs:
        folder = path.resolve() if path.is_dir() else path.resolve().parent
        if out_path == folder or folder in out_path.parents or out_path in folder.parents:
            raise DataError(f"--out {out_path} and input {path} overlap; write the dataset outside the raw folder.")
