"""The one place where a decoded image of any PIL mode becomes 8-bit pixels (used by the builds and by training).

``Image.convert("RGB")`` is only exact for 8-bit modes. It clips 16-bit and 32-bit samples at 255 (a 16-bit PNG
turns almost white), maps float images to black, and drops alpha, keeping whatever colour hides under transparent
pixels. Here:

* 16-bit modes (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) are scaled by their declared range: ``value >> 8``.
* ``I`` and ``F`` declare no range, so the smallest usual one that holds every sample is used: ``[0, 1]`` (float
  only), ``[0, 255]``, ``[0, 65535]`` or ``[0, 2**32 - 1]``; negative samples become 0.
* Transparency (``LA``, ``RGBA``, ``PA``, ``P``/``L``/``RGB`` with a ``transparency`` entry) is composited over
  white, as ``transformers.image_transforms.convert_to_rgb`` does; a fully opaque image is unchanged.
* ``CMYK``, ``YCbCr``, ``P`` and the other 8-bit modes use Pillow's own conversion.

:func:`to_8bit` keeps grayscale as ``L`` (what a build stores); :func:`to_rgb` is what a model reads.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
ALPHA_MODES = frozenset({"LA", "La", "RGBA", "RGBa", "PA"})
GRAY_MODES = frozenset({"1", "L", "LA", "La"}) | HIGH_DEPTH_MODES
#: modes that PIL's ``convert("RGB")`` and OpenCV's ``IMREAD_COLOR`` both read exactly (alpha only when opaque)
STORED_MODES = frozenset({"1", "L", "P", "RGB", "LA", "RGBA"})
FLOAT_RANGES = (1.0, 255.0, 65535.0, 2.0**32 - 1)
BACKGROUND = 255


def has_transparency(image: Image.Image) -> bool:
    """Whether any pixel is less than fully opaque (alpha band or a palette/colour-key ``transparency``)."""
    if image.mode in ALPHA_MODES:
        return image.getchannel(image.getbands()[-1]).getextrema()[0] < 255
    return "transparency" in image.info and image.mode in ("P", "L", "RGB")


def needs_conversion(image: Image.Image) -> bool:
    """Whether ``image.convert("RGB")`` would misread it (or OpenCV would read it differently)."""
    return image.mode not in STORED_MODES or has_transparency(image)


def _depth_to_8bit(image: Image.Image) -> Image.Image:
    """A single-band 16/32-bit or float image as ``L``, scaled by its range (module docstring)."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        return Image.fromarray((values.astype(np.uint16) >> 8).astype(np.uint8))
    values = np.clip(values.astype(np.float64), 0, None)
    ranges = FLOAT_RANGES if image.mode == "F" else FLOAT_RANGES[1:]
    top = float(values.max(initial=0.0))
    scale = next((r for r in ranges if top <= r), ranges[-1])
    return Image.fromarray(np.clip(np.rint(values * (255.0 / scale)), 0, 255).astype(np.uint8))


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Transparent pixels composited over a white background."""
    gray = image.mode in GRAY_MODES
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (BACKGROUND, BACKGROUND, BACKGROUND, 255))
    flat = Image.alpha_composite(background, rgba).convert("RGB")
    return flat.convert("L") if gray else flat


def to_8bit(image: Image.Image) -> Image.Image:
    """``image`` itself when every reader already decodes it exactly (``needs_conversion`` is false), else an
    8-bit ``L`` (grayscale sources) or ``RGB`` image."""
    if not needs_conversion(image):
        return image
    if image.mode in HIGH_DEPTH_MODES:
        return _depth_to_8bit(image)
    if has_transparency(image):
        return _flatten_alpha(image)
    try:
        return image.convert("L" if image.mode in GRAY_MODES else "RGB")
    except ValueError as exc:  # e.g. LAB, HSV without a colour profile
        raise ValueError(f"cannot convert image mode {image.mode} to RGB") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, whatever its mode: the training-time counterpart of ``convert("RGB")``."""
    out = to_8bit(image)
    return out if out.mode == "RGB" else out.convert("RGB")
