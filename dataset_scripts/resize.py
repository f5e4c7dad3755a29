"""``--resize N``: downscale images whose longer side exceeds N pixels, in parallel, after a build.

Images already within N keep their original bytes. Resized ones are re-encoded in their own format (JPEG at
quality 95, PNG losslessly). Detection columns follow the pixels: ``width``/``height``, every ``objects.bbox``
(COCO xywh) and ``objects.area`` are scaled by the same factors, so boxes stay exact to float32.
"""

from __future__ import annotations

import io
from typing import Any

from hf_tasks.errors import DataError


def resize_dataset(dataset_dict, max_size: int, num_proc: int | None = None):
    """A new DatasetDict whose images have a longer side of at most ``max_size`` pixels."""
    from datasets import Image

    if max_size < 8:
        raise DataError(f"--resize must be at least 8 pixels (got {max_size})")
    out = {}
    for name, split in dataset_dict.items():
        raw = split.cast_column("image", Image(decode=False))
        resized = raw.map(_resize_row, fn_kwargs={"max_size": max_size}, num_proc=_procs(num_proc, len(raw)),
                          desc=f"resizing {name}")
        out[name] = resized.cast_column("image", Image())
    return type(dataset_dict)(out)


def _procs(num_proc: int | None, rows: int) -> int | None:
    return num_proc if num_proc and num_proc > 1 and rows >= 2 * num_proc else None


def _resize_row(row: dict[str, Any], max_size: int) -> dict[str, Any]:
    from PIL import Image as PILImage

    image = row["image"]
    with PILImage.open(io.BytesIO(image["bytes"])) as img:
        width, height = img.size
        if max(width, height) <= max_size:
            return row  # original bytes kept
        scale = max_size / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        fmt = img.format or "PNG"
        small = img.convert("RGB" if fmt == "JPEG" else img.mode).resize(size, PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    row["image"] = {"bytes": buffer.getvalue(), "path": image.get("path")}
    sx, sy = size[0] / width, size[1] / height
    if "width" in row:
        row["width"], row["height"] = size
    if row.get("objects") and "bbox" in row["objects"]:
        row["objects"]["bbox"] = [[x * sx, y * sy, w * sx, h * sy] for x, y, w, h in row["objects"]["bbox"]]
        if "area" in row["objects"]:
            row["objects"]["area"] = [a * sx * sy for a in row["objects"]["area"]]
    return row
