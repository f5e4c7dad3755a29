"""Flickr8k → captioning ``DatasetDict``: one row per image with all of its (usually five) captions.

Accepted downloads (``--src`` is the folder holding them):

* Kaggle: ``Images/*.jpg`` + ``captions.txt`` (CSV with header ``image,caption``; quoted captions may hold commas,
  never line breaks: a quote left open is reported at its line).
* Original: ``Flicker8k_Dataset/*.jpg`` + ``Flickr8k.token.txt`` (``img.jpg#0<TAB>caption``), the text files
  either beside the images or in ``Flickr8k_text/``.

Splits: the official ``Flickr_8k.{train,dev,test}Images.txt`` lists when present (dev → validation; images they
do not list are left out and counted in the build report), otherwise a seeded split *by image*.
"""

from __future__ import annotations

import argparse
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from hf_tasks.errors import DataError

from .captions_common import (
    Caption,
    CaptionedImage,
    add_caption,
    captioning_dataset,
    captioning_info,
    group_by_image,
    read_text,
    report_uncaptioned,
    seeded_image_split,
    validate_images,
)
from .common import (
    BadInputReport,
    BuildResult,
    add_input_arguments,
    add_output_arguments,
    add_split_arguments,
    require_splits,
    resolve_src,
)

SOURCE = "flickr8k"
IMAGE_FOLDERS = ("Images", "Flicker8k_Dataset", "Flickr8k_Dataset")
TEXT_FOLDERS = (".", "Flickr8k_text")
CAPTION_FILES = ("captions.txt", "Flickr8k.token.txt")
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "validation": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
TOKEN_NAME = re.compile(r"^(.*)#([0-9]+)$")
CSV_HEADER = ["image", "caption"]
STRAY_QUOTE = "stray quote: a quoted caption opens on this line and is not closed on it"


@dataclass
class Layout:
    """Where the pieces of one Flickr8k download are."""

    images: Path
    captions: Path
    split_files: dict[str, Path] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Input/output options, split fractions (used only without official split files) and ``--captions``."""
    add_input_arguments(parser)
    parser.add_argument("--captions", type=Path, default=None,
                        help="caption file to use (default: the captions.txt or Flickr8k.token.txt found in --src)")
    add_output_arguments(parser)
    add_split_arguments(parser)


# ------------------------------------------------------------------------------------------------ layout
def _find_files(src: Path, name: str) -> list[Path]:
    return [src / folder / name for folder in TEXT_FOLDERS if (src / folder / name).is_file()]


def _image_folder(src: Path) -> Path:
    found = [src / name for name in IMAGE_FOLDERS if (src / name).is_dir()]
    if len(found) != 1:
        what = "no image folder" if not found else f"several image folders ({', '.join(p.name for p in found)})"
        raise DataError(f"{src} has {what}; expected exactly one of {', '.join(f'{n}/' for n in IMAGE_FOLDERS)}.")
    return found[0]


def _caption_file(src: Path, chosen: Path | None) -> Path:
    if chosen is not None:
        if not Path(chosen).is_file():
            raise DataError(f"--captions {chosen} is not an existing file.")
        return Path(chosen).resolve()
    found = [path for name in CAPTION_FILES for path in _find_files(src, name)]
    if len(found) != 1:
        what = "no caption file" if not found else "several caption files (" + ", ".join(
            p.relative_to(src).as_posix() for p in found) + "); choose one with --captions"
        raise DataError(f"{src} has {what}; expected captions.txt or Flickr8k.token.txt.")
    return found[0]


def _split_files(src: Path) -> dict[str, Path]:
    """All three official lists, or none: a partial set would silently shrink a split."""
    found = {split: _find_files(src, name) for split, name in SPLIT_FILES.items()}
    present = {split: paths[0] for split, paths in found.items() if paths}
    if present and len(present) < len(SPLIT_FILES):
        missing = ", ".join(SPLIT_FILES[s] for s in SPLIT_FILES if s not in present)
        raise DataError(f"{src} has some official split files but not {missing}; add it or remove the others.")
    return present


def find_layout(src: Path, captions: Path | None = None) -> Layout:
    return Layout(_image_folder(src), _caption_file(src, captions), _split_files(src))


# ----------------------------------------------------------------------------------------------- parsers
def _lines(text: str):
    """(1-based line number, line) without the ``splitlines`` surprises (form feeds, U+2028 count as breaks)."""
    for number, line in enumerate(text.split("\n"), 1):
        yield number, line.rstrip("\r")


def parse_token_file(path: Path, report: BadInputReport) -> list[Caption]:
    """``img.jpg#N<TAB>caption`` lines; malformed and empty ones are reported with their line number."""
    captions: list[Caption] = []
    for number, line in _lines(read_text(path)):
        if not line.strip():
            continue
        name, tab, text = line.partition("\t")
        match = TOKEN_NAME.match(name.strip())
        if not tab or match is None:
            reason = "malformed line: no tab before the caption" if not tab else \
                "malformed line: expected <image>#<n> before the tab"
            report.add(path, reason, number)
            continue
        add_caption(captions, report, match.group(1), text, path, number)
    return captions


def csv_records(path: Path, report: BadInputReport):
    """``(line number, row)`` of each CSV record. A caption never spans lines, so a quoted field that runs over a
    line break is a stray quote: it is reported at the line where it opens (not blamed on the images whose lines it
    would swallow), and reading resumes on the next line. Unparsable lines are reported the same way."""
    lines = read_text(path).split("\n")
    if lines and not lines[-1]:
        lines.pop()
    start = 0
    while start < len(lines):
        reader, consumed = csv.reader(lines[i] + "\n" for i in range(start, len(lines))), 0
        try:
            for row in reader:
                number, span, consumed = start + consumed + 1, reader.line_num - consumed, reader.line_num
                if span > 1 or any("\n" in cell for cell in row):  # the last line: open until the end
                    report.add(path, STRAY_QUOTE, number)
                    break
                yield number, row
            else:
                return
        except csv.Error as exc:
            number = start + consumed + 1
            report.add(path, f"unreadable CSV line ({exc})", number)
        start = number


def parse_csv_file(path: Path, report: BadInputReport) -> list[Caption]:
    """``image,caption`` CSV read with the csv module (quoted captions may hold commas and quotes)."""
    records = csv_records(path, report)
    number, header = next(records, (0, None))
    if number != 1 or [h.strip().lower() for h in header] != CSV_HEADER:
        raise DataError(f"{path}:1: expected the CSV header 'image,caption', found {header!r}.")
    captions: list[Caption] = []
    for number, row in records:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            report.add(path, "malformed row: expected 2 columns (image,caption)", number)
            continue
        add_caption(captions, report, row[0], row[1], path, number)
    return captions


def parse_captions(path: Path, report: BadInputReport) -> list[Caption]:
    """Pick the parser by content: a CSV starts with the ``image,caption`` header, the token file never does."""
    first = next((line for _, line in _lines(read_text(path)) if line.strip()), "")
    if first.replace(" ", "").lower().startswith("image,caption"):
        return parse_csv_file(path, report)
    return parse_token_file(path, report)


def parse_name_list(path: Path) -> list[tuple[str, int]]:
    """(image name, line number) of an official split list; blank lines skipped."""
    return [(line.strip(), number) for number, line in _lines(read_text(path)) if line.strip()]


# ------------------------------------------------------------------------------------------------ splits
def official_splits(images: list[CaptionedImage], split_files: dict[str, Path], captioned: set[str],
                    report: BadInputReport) -> tuple[dict[str, list[CaptionedImage]], list[str]]:
    """Honour the official lists; names listed twice or never captioned are reported at their line.

    Names that *were* captioned but rejected (missing or corrupt image) are already reported, so not again.
    Returns the splits and the usable images no list names (left out, recorded in the build info).
    """
    by_name = {image.image_id: image for image in images}
    assigned: dict[str, str] = {}
    for split, path in split_files.items():
        for name, line in parse_name_list(path):
            if name in assigned:
                report.add(path, "image listed more than once in the official split files", line)
            elif name not in captioned:
                report.add(path, "split file lists an image that has no caption", line)
            else:
                assigned[name] = split
    splits = {split: [by_name[n] for n in sorted(assigned) if assigned[n] == split and n in by_name]
              for split in split_files}
    unassigned = sorted(name for name in by_name if name not in assigned)
    return splits, unassigned


def _split_method(layout: Layout, args: argparse.Namespace) -> dict[str, str]:
    if layout.split_files:
        return {split: f"official {path.name}" for split, path in layout.split_files.items()}
    return dict.fromkeys(("train", "validation", "test"),
                         f"seeded split by image (seed {args.seed}, validation {args.val_fraction}, "
                         f"test {args.test_fraction}); no official split files found")


def build(args: argparse.Namespace) -> BuildResult:
    """Parse captions, validate every named image, report problems (or stop), split and load original bytes."""
    src = resolve_src(args)
    layout = find_layout(src, args.captions)
    report = BadInputReport(root=src)
    groups = group_by_image(parse_captions(layout.captions, report))
    images = validate_images(groups, layout.images, report, args.num_proc, limit=src)
    ignored = report_uncaptioned(layout.images, groups, report, limit=src)
    unassigned: list[str] = []
    if layout.split_files:
        splits, unassigned = official_splits(images, layout.split_files, set(groups), report)
    report.check(args.skip_bad)
    if not images:
        raise DataError(f"No captioned images found in {layout.images} (captions from {layout.captions}).")
    if not layout.split_files:
        splits = seeded_image_split(images, args.val_fraction, args.test_fraction, args.seed)
    require_splits(splits, report)
    info = captioning_info(
        SOURCE, src, splits, _split_method(layout, args), args, rejected=report.count,
        captions_file=str(layout.captions), images_folder=str(layout.images), ignored=ignored,
        not_in_official_splits={"count": len(unassigned), "images": unassigned},
    )
    if not layout.split_files:
        info.update(val_fraction=args.val_fraction, test_fraction=args.test_fraction)
    return BuildResult(dataset=captioning_dataset(splits), report=report, info=info)
