"""Shared parts of every build script: bad-input reports, image checks, splits, dataset assembly, publishing.

Heavy libraries (``datasets``, ``tqdm``) are imported inside functions so that importing a source module to
build the CLI parser costs nothing.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Sized

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, ImageOps, UnidentifiedImageError

from hf_tasks.errors import DataError
from hf_tasks.images import needs_conversion, to_8bit

if TYPE_CHECKING:
    from datasets import DatasetDict, Features

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
SPLITS = ("train", "validation", "test")
REPORT_NAME = "build_report.json"
PROGRESS_MIN_FILES = 500  # below this a progress bar is noise
SUMMARY_ITEMS = 20
CHUNK_ROWS = 1000  # rows per in-memory Arrow chunk: bounds the Python-side copy of image bytes


# ----------------------------------------------------------------------------------------------- reports
@dataclass
class BadInputReport:
    """Problems found in the raw input, so that nothing is dropped silently.

    Paths are shown relative to ``root`` (the source folder) because that is what the user can act on.
    """

    root: Path | None = None
    items: list[tuple[Path, int | None, str]] = field(default_factory=list)

    def add(self, path: Path | str, reason: str, line: int | None = None) -> None:
        self.items.append((Path(path), line, reason))

    @property
    def count(self) -> int:
        return len(self.items)

    def display(self, path: Path) -> str:
        """The name a user recognises: relative to the source root when possible."""
        if self.root is not None:
            try:
                return Path(path).relative_to(self.root).as_posix()
            except ValueError:
                pass
        return Path(path).name

    def where(self, path: Path, line: int | None) -> str:
        """``file`` or ``file:line``, as the summary lists a problem."""
        return f"{self.display(path)}:{line}" if line is not None else self.display(path)

    def first(self) -> str:
        """The first problem in summary order, as ``where: reason``."""
        path, line, reason = self._sorted()[0]
        return f"{self.where(path, line)}: {reason}"

    def _sorted(self) -> list[tuple[Path, int | None, str]]:
        return sorted(self.items, key=lambda item: (self.display(item[0]), item[1] or 0))

    def summary(self, limit: int = SUMMARY_ITEMS) -> str:
        """Counts by reason, then the first ``limit`` problems ordered by file name."""
        if not self.items:
            return "no bad input files"
        lines = [f"{self.count} bad input file(s):"]
        for reason, n in sorted(Counter(r for _, _, r in self.items).items()):
            lines.append(f"  {n} × {reason}")
        for path, line, reason in self._sorted()[:limit]:
            lines.append(f"  - {self.where(path, line)}: {reason}")
        if self.count > limit:
            lines.append(f"  ... and {self.count - limit} more (all listed in {REPORT_NAME})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "by_reason": dict(sorted(Counter(r for _, _, r in self.items).items())),
            "items": [
                {"path": self.display(p), "line": line, "reason": reason} for p, line, reason in self._sorted()
            ],
        }

    def check(self, skip_bad: bool) -> None:
        """Stop the build with one readable error unless the user asked to skip bad inputs."""
        if self.items and not skip_bad:
            raise DataError(
                f"{self.summary()}\nPass --skip-bad to skip these {self.count} file(s); "
                f"they are then recorded in {REPORT_NAME}."
            )


@dataclass
class BuildResult:
    """What a source's ``build(args)`` returns: the splits, the rejected inputs and provenance for the card."""

    dataset: DatasetDict
    report: BadInputReport
    info: dict[str, Any]


# ------------------------------------------------------------------------------------------ image checks
def check_image(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a usable image, or ``None``.

    ``verify()`` alone misses truncated JPEGs, so the file is reopened and fully decoded with truncated
    loading forced off (other code may have switched it on globally; it is restored afterwards).
    """
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
    except OSError as exc:
        return f"unreadable file ({exc.strerror or exc})"
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with PILImage.open(path) as img:
            img.verify()
        with PILImage.open(path) as img:
            img.load()
            return _unconvertible(img)
    except UnidentifiedImageError:
        return "not an image (unrecognised format)"
    except PILImage.DecompressionBombError:
        return "image too large (decompression bomb check)"
    except (OSError, SyntaxError, ValueError, EOFError):
        return "truncated or corrupt image"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _unconvertible(img: PILImage.Image) -> str | None:
    """Why a decoded image cannot become 8-bit pixels (``hf_tasks.images.to_8bit``), or ``None``."""
    try:
        to_8bit(img)
    except ValueError:
        return f"unsupported image mode ({img.mode})"
    return None


def check_images(paths: Sequence[Path], num_proc: int | None = None, desc: str = "checking images") -> list[str | None]:
    """``check_image`` over many files, in order, with a progress bar on large folders.

    Workers are spawned (not forked) so a parent that already holds torch/tokenizer threads cannot deadlock.
    """
    from tqdm import tqdm

    bar = {"total": len(paths), "desc": desc, "unit": "file", "leave": False,
           "disable": len(paths) < PROGRESS_MIN_FILES}
    if num_proc and num_proc > 1 and len(paths) > 1:
        with multiprocessing.get_context("spawn").Pool(num_proc) as pool:
            return list(tqdm(pool.imap(check_image, [str(p) for p in paths], chunksize=16), **bar))
    return [check_image(path) for path in tqdm(paths, **bar)]


@dataclass(frozen=True)
class LabeledFile:
    """One raw image with its class index; ``rel`` is the name stored in the dataset (relative to the source)."""

    path: Path
    rel: str
    label: int


def keep_valid(files: list[LabeledFile], report: BadInputReport, num_proc: int | None) -> list[LabeledFile]:
    """Check every file; record failures in ``report`` and return the usable ones."""
    reasons = check_images([f.path for f in files], num_proc=num_proc)
    for item, reason in zip(files, reasons):
        if reason is not None:
            report.add(item.path, reason)
    return [item for item, reason in zip(files, reasons) if reason is None]


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


# ------------------------------------------------------------------------------------------------ splits
def _split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Validation/test sizes for one class: rounded, at least one each for classes of ≥3, train never empty."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if n >= 3:
        n_val = max(n_val, 1) if val_fraction > 0 else 0
        n_test = max(n_test, 1) if test_fraction > 0 else 0
    while n_val + n_test > max(n - 1, 0):
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"--val-fraction ({val_fraction}) and --test-fraction ({test_fraction}) must each be in [0, 1) "
            "and sum to less than 1."
        )


def stratified_split(
    labels: Sequence[int], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """Seeded per-class shuffle-and-cut, so every split sees every class in the same proportions.

    Each class gets its own generator (seeded by ``seed`` and the label), so adding a class never reshuffles
    the others. Returned indices are sorted so split order follows the source order.
    """
    check_fractions(val_fraction, test_fraction)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    for label in sorted(by_class):
        members = np.array(by_class[label])
        np.random.default_rng([seed, label]).shuffle(members)
        n_val, n_test = _split_counts(len(members), val_fraction, test_fraction)
        out["validation"].extend(members[:n_val].tolist())
        out["test"].extend(members[n_val : n_val + n_test].tolist())
        out["train"].extend(members[n_val + n_test :].tolist())
    return {name: sorted(indices) for name, indices in out.items()}


def carve(files: list[LabeledFile], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[LabeledFile]]:
    """``stratified_split`` applied to labelled files; a split with a 0 fraction is not made."""
    parts = stratified_split([f.label for f in files], val_fraction, test_fraction, seed)
    return requested_splits({name: [files[i] for i in indices] for name, indices in parts.items()},
                            val_fraction, test_fraction)


def requested_splits(parts: dict[str, Any], val_fraction: float, test_fraction: float) -> dict[str, Any]:
    """``parts`` without the carved splits nobody asked for (fraction 0); every other one must hold examples."""
    asked = {"validation": val_fraction > 0, "test": test_fraction > 0}
    return {name: items for name, items in parts.items() if asked.get(name, True)}


def require_splits(splits: Mapping[str, Sized], report: BadInputReport) -> None:
    """Stop when a split the build set out to make ended empty: training would fail on it much later.

    This happens when ``--skip-bad`` left out every input of a split, or a fraction is too small for the data.
    """
    for name, items in splits.items():
        if items:
            continue
        if report.count:
            raise DataError(f"The {name} split would be empty: --skip-bad left out {report.count} bad input(s) "
                            f"(first: {report.first()}) and none of the {name} inputs is usable; fix or replace "
                            f"those files so that the {name} split keeps at least one example.")
        raise DataError(f"The {name} split would be empty: no usable example is left for it; add inputs for it "
                        "(a carved split needs more images or a larger --val-fraction/--test-fraction).")


# ------------------------------------------------------------------------------------- dataset assembly
def rows_to_dataset(rows: Iterable[dict[str, Any]], features: Features, description: str = ""):
    """Build one split from row dicts in chunks, so only one chunk of Python objects is alive at a time.

    ``Dataset.from_dict`` fingerprints by content, so identical rows give an identical fingerprint.
    """
    from datasets import Dataset, DatasetInfo, concatenate_datasets

    info = DatasetInfo(description=description, features=features)
    chunks, batch = [], []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK_ROWS:
            chunks.append(Dataset.from_list(batch, features=features, info=info.copy()))
            batch = []
    if batch or not chunks:
        chunks.append(Dataset.from_list(batch, features=features, info=info.copy()))
    return chunks[0] if len(chunks) == 1 else concatenate_datasets(chunks, info=info)


PATH_SEPARATOR = "__"


def stored_name(rel: str) -> str:
    """``Cat/0.jpg`` → ``Cat__0.jpg``.

    ``datasets`` keeps only the basename of an image's path when it embeds the bytes (save_to_disk, Parquet,
    push_to_hub), which would make ``Cat/0.jpg`` and ``Dog/0.jpg`` indistinguishable; a flattened relative
    path survives that and still names the source file.
    """
    return rel.replace("\\", "/").strip("/").replace("/", PATH_SEPARATOR)


def stored_bytes(data: bytes) -> bytes:
    """The original encoded bytes, unless a reader would misread them (16-bit, float, transparency, CMYK: see
    ``hf_tasks.images``): those become a lossless 8-bit PNG, EXIF rotation applied, so every decoder (PIL's
    ``convert("RGB")``, OpenCV) sees the same pixels at the size the detection sources record."""
    with PILImage.open(io.BytesIO(data)) as img:
        if not needs_conversion(img):
            return data
        pixels = to_8bit(ImageOps.exif_transpose(img))
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG")
    return buffer.getvalue()


def image_value(data: bytes, rel: str) -> dict[str, Any]:
    """An ``Image()`` cell holding the original encoded bytes (no decode/re-encode, so no quality loss) or, for
    the modes :func:`stored_bytes` converts, their 8-bit PNG."""
    return {"bytes": stored_bytes(data), "path": stored_name(rel)}


def classification_dataset(splits: dict[str, list[LabeledFile]], class_names: Sequence[str]) -> DatasetDict:
    """Read each file's bytes lazily into its split; empty splits are left out."""
    from datasets import ClassLabel, DatasetDict, Features, Image

    features = Features({"image": Image(), "label": ClassLabel(names=list(class_names))})

    def rows(files: list[LabeledFile]):
        for item in files:
            yield {"image": image_value(item.path.read_bytes(), item.rel), "label": item.label}

    return DatasetDict({name: rows_to_dataset(rows(files), features) for name, files in splits.items() if files})


def class_counts(splits: dict[str, Sequence[int]], class_names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Examples per class per split, for the build report and the dataset card."""
    return {
        name: {cls: int(sum(1 for label in labels if label == i)) for i, cls in enumerate(class_names)}
        for name, labels in splits.items()
    }


def classification_info(
    source: str, src: Path, args: argparse.Namespace, splits: dict[str, list[LabeledFile]],
    class_names: Sequence[str], split_method: dict[str, str], **extra: Any,
) -> dict[str, Any]:
    """Provenance every image source records the same way."""
    labels = {name: [f.label for f in files] for name, files in splits.items() if files}
    return {
        "source": source,
        "src": str(src),
        "task": "classification",
        "split_method": split_method,
        "seed": args.seed,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "class_names": list(class_names),
        "num_examples": {name: len(v) for name, v in labels.items()},
        "counts": class_counts(labels, class_names),
        **extra,
    }


# ------------------------------------------------------------------------------------------- arguments
def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of each class for validation")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of each class for test")
    parser.add_argument("--seed", type=int, default=42, help="seed for splits (and generation)")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", type=Path, required=True, help="folder holding the raw download")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable/corrupt/non-image files (recorded in build_report.json)")
    parser.add_argument("--num-proc", type=int, default=1, help="worker processes for checking images")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--format", choices=["arrow", "parquet"], default="arrow",
                        help="arrow: DatasetDict.save_to_disk; parquet: {split}/*.parquet shards")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="also push to this Hub dataset repo")
    parser.add_argument("--revision", default=None, help="Hub branch to push to")
    parser.add_argument("--resize", type=int, default=None, metavar="N",
                        help="downscale images whose longer side exceeds N pixels (boxes follow); others keep "
                             "their original bytes")
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", help="private Hub repo (default)")
    visibility.add_argument("--public", dest="private", action="store_false", help="public Hub repo")
    parser.set_defaults(private=True)


def resolve_src(args: argparse.Namespace) -> Path:
    """``--src`` as an absolute folder, kept apart from ``--out`` so a re-run never scans or replaces its input."""
    src = Path(args.src).expanduser()
    if not src.is_dir():
        raise DataError(f"--src {src} is not an existing folder.")
    src, out = src.resolve(), Path(args.out).expanduser().resolve()
    if out == src or src in out.parents or out in src.parents:
        raise DataError(f"--out {out} and --src {src} overlap; write the dataset outside the raw folder.")
    return src
