"""Which raw files a build may read: one rule for symbolic links, used by every source.

A link, to a file or to a folder, is followed when its target stays inside the ``--src`` root (a user's own
symlinked image folders keep working) and refused when it leaves it: the link is reported as a bad input
(``LINK_OUTSIDE``, so the build stops unless ``--skip-bad``) and never opened. A dangling link is reported too.
Folder links are walked like real folders, each real folder once, so a link loop cannot recurse forever.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Iterable

from .common import BadInputReport

LINK_OUTSIDE = "symbolic link leads outside --src (not read)"
BROKEN_LINK = "broken symbolic link (its target does not exist)"


def within(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves, every link followed, to ``root`` or somewhere below it (nothing is opened)."""
    try:
        real, top = os.path.realpath(path), os.path.realpath(root)
    except (OSError, ValueError):
        return False
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def link_problem(path: Path, root: Path) -> str | None:
    """Why ``path`` must not be read (it leads outside ``root``, or is a dangling link), else ``None``."""
    if not within(path, root):
        return LINK_OUTSIDE
    if path.is_symlink() and not path.exists():
        return BROKEN_LINK
    return None


def _allowed(path: Path, root: Path, report: BadInputReport, quiet: Collection[str] = ()) -> bool:
    """Real entries below an allowed folder stay inside it; a link is checked and reported when it may not be read
    (unless its normalised path is in ``quiet``: an annotation naming it is reported instead)."""
    if not path.is_symlink():
        return True
    reason = link_problem(path, root)
    if reason is not None and os.path.normpath(path) not in quiet:
        report.add(path, reason)
    return reason is None


def walk_files(folder: Path, root: Path, report: BadInputReport, quiet: Collection[str] = ()) -> list[Path]:
    """Every file below ``folder`` (sorted, hidden ones included), through the links that stay inside ``root``."""
    reason = link_problem(folder, root)
    if reason is not None:  # the folder itself, or a folder above it, is a link leaving root
        report.add(folder, reason)
        return []
    files: list[Path] = []
    seen: set[str] = set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # reached again through a link: already listed
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if _allowed(Path(top, d), root, report, quiet))
        files += [Path(top, n) for n in names if _allowed(Path(top, n), root, report, quiet) and Path(top, n).is_file()]
    return sorted(files)


def keep_inside(paths: Iterable[Path], root: Path, report: BadInputReport) -> list[Path]:
    """``paths`` without those that lead outside ``root`` through a link (reported, never opened)."""
    kept = []
    for path in paths:
        reason = link_problem(path, root)
        if reason is None:
            kept.append(path)
        else:
            report.add(path, reason)
    return kept
