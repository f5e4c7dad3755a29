"""YOLO label lines (``class cx cy w h``, normalised to [0, 1]) → boxes, with ultralytics' tolerances.

* A box may overshoot an image edge by up to 1 % of that side (``OVERSHOOT``, ultralytics' ``verify_image_label``
  accepts coordinates up to 1.01 and clips); it is clipped to the image and counted. Beyond that it is a bad line.
* Identical lines are one box written twice (ultralytics removes duplicate label rows too): the copies are dropped
  and counted, because a duplicated ground-truth box turns every correct detection's twin into a miss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

EDGE_TOLERANCE = 1e-6  # normalised coordinates written with 6 decimals may overshoot an edge by rounding
OVERSHOOT = 0.01  # up to 1 % of the image side past an edge is clipped, as ultralytics does
Box = tuple[int, float, float, float, float]


@dataclass
class Labels:
    """One label file: usable boxes, ``(line, reason)`` problems, and the corrections made on the way."""

    boxes: list[Box] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)
    duplicates: int = 0
    clipped: int = 0


def read_label_text(text: str, num_classes: int) -> Labels:
    """Boxes (duplicates dropped, small overshoots clipped) and problems of one label file; never raises."""
    out, seen = Labels(), set()
    for number, raw in enumerate(text.split("\n"), start=1):
        fields = raw.split()
        if not fields:
            continue
        parsed = parse_line(fields, num_classes)
        if isinstance(parsed, str):
            out.problems.append((number, parsed))
        elif parsed in seen:
            out.duplicates += 1
        else:
            seen.add(parsed)
            box, clipped = clip(parsed)
            out.boxes.append(box)
            out.clipped += clipped
    return out


def parse_labels(text: str, num_classes: int) -> tuple[list[Box], list[tuple[int, str]]]:
    """Boxes and ``(line, reason)`` problems of one label file; never raises. Fixed reasons count by kind."""
    labels = read_label_text(text, num_classes)
    return labels.boxes, labels.problems


def parse_line(fields: list[str], num_classes: int) -> Box | str:
    """One ``class cx cy w h`` line as a box (not yet clipped), or the reason it is unusable."""
    if len(fields) != 5:
        return "wrong number of columns (expected 5: class cx cy w h)"
    try:
        values = [float(f) for f in fields]
    except ValueError:
        return "not a number"
    if not all(math.isfinite(v) for v in values):
        return "not a finite number"
    cls, cx, cy, w, h = values
    if not cls.is_integer():
        return "class id is not an integer"
    if cls < 0 or cls >= num_classes:
        return f"class id outside 0..{num_classes - 1} ({num_classes} class names)"
    low, high = -OVERSHOOT - EDGE_TOLERANCE, 1 + OVERSHOOT + EDGE_TOLERANCE
    if not all(low <= v <= high for v in (cx, cy, w, h)):
        return "coordinate outside [0, 1] (by more than the 1% tolerance)"
    if w < 0 or h < 0:
        return "negative box width or height"
    if w == 0 or h == 0:
        return "zero-area box"
    if min(cx - w / 2, cy - h / 2) < low or max(cx + w / 2, cy + h / 2) > high:
        return "box extends outside the image (more than 1% of its side past an edge)"
    if min(cx + w / 2, cy + h / 2) <= 0 or max(cx - w / 2, cy - h / 2) >= 1:
        return "box lies outside the image"
    return int(cls), cx, cy, w, h


def clip(box: Box) -> tuple[Box, bool]:
    """The box cut at the image edges, and whether it overshot by more than rounding (only that is counted)."""
    cls, cx, cy, w, h = box
    x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if min(x0, y0) >= 0 and max(x1, y1) <= 1:
        return box, False
    counted = min(x0, y0) < -EDGE_TOLERANCE or max(x1, y1) > 1 + EDGE_TOLERANCE
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, 1.0), min(y1, 1.0)
    return (cls, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), counted


def to_pixels(box: Box, width: int, height: int) -> tuple[list[float], float]:
    """Normalised centre box → COCO ``[x, y, w, h]`` in pixels (and its area); exact for representable input."""
    _, cx, cy, w, h = box
    x, y = max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height)
    bw, bh = w * width, h * height
    return [x, y, bw, bh], bw * bh
