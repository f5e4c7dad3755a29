"""Training-time augmentation on model-ready ``(C, H, W)`` float tensors, reproducible per sample.

Augmentation runs after the image processor (resize + normalise), so it works the same for every model and image
processor. Every random draw comes from an explicit ``torch.Generator`` that the caller seeds from
``(seed, epoch, sample index)``: the augmented sample then depends only on those three numbers, not on the number
of DataLoader workers, on the process count, or on where a resumed run restarts.

:class:`KerasAffine` reproduces the random affine of Keras' ``ImageDataGenerator`` (the classic cats-vs-dogs
recipe), with ``torch.nn.functional.affine_grid`` + ``grid_sample`` (bilinear) in place of
``scipy.ndimage.affine_transform(order=1)``. The sampled matrix is Keras' own:
``rotation @ shift @ shear @ zoom`` in (row, col) pixel coordinates about the image centre, mapping *output*
pixels to the *input* pixels they read from. Two Keras quirks are kept on purpose, so a recipe means what it
meant in Keras:

- ``shear`` is an angle in **degrees** (``shear_range=0.2`` is a 0.2 degree shear, almost nothing);
- zoom factors ``zx`` (rows) and ``zy`` (columns) are drawn independently from ``[1 - zoom, 1 + zoom]``, and a
  factor > 1 reads a larger area, i.e. zooms *out*.

Agreement with scipy (checked in the tests): ``"nearest"`` and ``"reflect"`` equal ``ndimage.affine_transform``
with the same mode to float precision; ``"constant"`` equals scipy's ``"grid-constant"`` (bilinear blending with
zeros across the edge), which differs from scipy's ``"constant"`` only in the one-pixel band at the image border.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# the presets are data of the run config (``data.augment.preset``); ``build_augmentation(NO_AUGMENT)`` is None
from hf_tasks.config import KERAS_PRESET, NO_AUGMENT

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: Keras fill modes -> grid_sample padding modes. Each pair agrees on what lies outside the image:
#: edge replication, half-sample symmetric reflection, zeros.
FILL_MODES: dict[str, str] = {"nearest": "border", "reflect": "reflection", "constant": "zeros"}

AUGMENT_KEYS: frozenset[str] = frozenset(KERAS_PRESET)


@dataclass(frozen=True)
class AffineParams:
    """One sampled Keras affine, in Keras' own units and sign conventions.

    ``theta`` and ``shear`` are degrees; ``tx`` / ``ty`` are shifts in pixels along rows / columns (Keras' names:
    a pure shift makes output pixel ``(r, c)`` read input pixel ``(r + tx, c + ty)``, so content moves up / left);
    ``zx`` / ``zy`` are the row / column zoom factors.
    """

    theta: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    shear: float = 0.0
    zx: float = 1.0
    zy: float = 1.0

    def is_identity(self) -> bool:
        return (self.theta, self.tx, self.ty, self.shear, self.zx, self.zy) == (0.0, 0.0, 0.0, 0.0, 1.0, 1.0)


def keras_matrix(params: AffineParams) -> torch.Tensor:
    """Keras' 3x3 output->input matrix in centred (row, col) pixel coordinates, float64 for exactness."""
    theta, shear = math.radians(params.theta), math.radians(params.shear)
    rotation = [[math.cos(theta), -math.sin(theta), 0.0], [math.sin(theta), math.cos(theta), 0.0], [0.0, 0.0, 1.0]]
    shift = [[1.0, 0.0, params.tx], [0.0, 1.0, params.ty], [0.0, 0.0, 1.0]]
    shear_m = [[1.0, -math.sin(shear), 0.0], [0.0, math.cos(shear), 0.0], [0.0, 0.0, 1.0]]
    zoom = [[params.zx, 0.0, 0.0], [0.0, params.zy, 0.0], [0.0, 0.0, 1.0]]
    m = torch.eye(3, dtype=torch.float64)
    for factor in (rotation, shift, shear_m, zoom):
        m = m @ torch.tensor(factor, dtype=torch.float64)
    return m


def affine_grid_theta(params: AffineParams, height: int, width: int) -> torch.Tensor:
    """Convert Keras' pixel matrix into the ``(1, 2, 3)`` ``theta`` of ``affine_grid(align_corners=False)``.

    With ``align_corners=False`` a normalised coordinate ``u`` in [-1, 1] sits ``u * size / 2`` pixels from the
    image centre ``(size - 1) / 2``, the same centre Keras uses (``size / 2 - 0.5``). So with ``S`` the diagonal
    half-sizes and ``P`` the (row, col) -> (x, y) swap: ``A' = P S^-1 A S P`` and ``b' = P S^-1 b``.
    """
    m = keras_matrix(params)
    half = torch.tensor([height / 2.0, width / 2.0], dtype=torch.float64)
    a = m[:2, :2] * half[None, :] / half[:, None]
    b = m[:2, 2] / half
    swap = torch.tensor([1, 0])
    theta = torch.cat([a[swap][:, swap], b[swap, None]], dim=1)
    return theta.unsqueeze(0)


def apply_affine(image: torch.Tensor, params: AffineParams, fill_mode: str = "nearest") -> torch.Tensor:
    """Warp one ``(C, H, W)`` image with ``params``; bilinear, with Keras' ``fill_mode`` outside the image."""
    _check_image(image)
    padding_mode = _padding_mode(fill_mode)
    if params.is_identity():
        return image
    height, width = image.shape[-2:]
    # grid_sample needs float32/64 on CPU; compute in float32 (or float64) and cast back to keep the dtype.
    work_dtype = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
    theta = affine_grid_theta(params, height, width).to(device=image.device, dtype=work_dtype)
    batch = image.unsqueeze(0).to(work_dtype)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    out = F.grid_sample(batch, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.squeeze(0).to(image.dtype)


class KerasAffine:
    """Random affine with ``ImageDataGenerator`` semantics; identity when every range is 0.

    Args:
        rotation: degrees; the angle is uniform in ``[-rotation, rotation]``.
        width_shift / height_shift: fractions of the width / height, uniform in ``[-s, s]``.
        shear: degrees (Keras' ``shear_range``), uniform in ``[-shear, shear]``.
        zoom: row and column factors drawn independently, uniform in ``[1 - zoom, 1 + zoom]``.
        fill_mode: ``"nearest"`` (edge replication), ``"reflect"`` or ``"constant"`` (zeros).
    """

    def __init__(
        self,
        rotation: float = 0.0,
        width_shift: float = 0.0,
        height_shift: float = 0.0,
        shear: float = 0.0,
        zoom: float = 0.0,
        fill_mode: str = "nearest",
    ) -> None:
        self.rotation = _non_negative("rotation", rotation)
        self.width_shift = _fraction("width_shift", width_shift)
        self.height_shift = _fraction("height_shift", height_shift)
        self.shear = _non_negative("shear", shear)
        self.zoom = _fraction("zoom", zoom)
        _padding_mode(fill_mode)
        self.fill_mode = fill_mode

    def is_identity(self) -> bool:
        return not (self.rotation or self.width_shift or self.height_shift or self.shear or self.zoom)

    def sample(self, height: int, width: int, generator: torch.Generator) -> AffineParams:
        """Draw one transform. Always six draws in a fixed order, so turning one range on or off does not change
        what the others draw for the same seed."""
        u = torch.rand(6, generator=generator, dtype=torch.float64).mul(2).sub(1).tolist()  # uniform in [-1, 1)
        return AffineParams(
            theta=u[0] * self.rotation,
            tx=u[1] * self.height_shift * height,
            ty=u[2] * self.width_shift * width,
            shear=u[3] * self.shear,
            zx=1.0 + u[4] * self.zoom,
            zy=1.0 + u[5] * self.zoom,
        )

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_image(image)
        if self.is_identity():
            return image
        params = self.sample(image.shape[-2], image.shape[-1], generator)
        return apply_affine(image, params, self.fill_mode)

    def __repr__(self) -> str:
        return (
            f"KerasAffine(rotation={self.rotation}, width_shift={self.width_shift}, "
            f"height_shift={self.height_shift}, shear={self.shear}, zoom={self.zoom}, fill_mode={self.fill_mode!r})"
        )


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``; one draw from the generator per call, flipped or not."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_image(image)
        flip = torch.rand(1, generator=generator).item() < self.p
        return image.flip(-1) if flip else image

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply augmentations in order with the same generator. A class, not a closure, so DataLoader workers can
    pickle it."""

    def __init__(self, steps: Sequence[Augmentation]) -> None:
        self.steps = list(steps)

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            image = step(image, generator)
        return image

    def __repr__(self) -> str:
        return f"Compose({self.steps!r})"


def build_augmentation(params: Mapping[str, Any]) -> Augmentation | None:
    """Build the training augmentation from resolved params (exactly the keys of :data:`KERAS_PRESET`).

    Returns ``None`` when everything is off, so callers can skip seeding a generator. As in Keras, the flip is
    applied after the affine.
    """
    unknown = sorted(set(params) - AUGMENT_KEYS)
    if unknown:
        raise ValueError(f"unknown augmentation keys {unknown}; valid keys are {sorted(AUGMENT_KEYS)}")
    missing = sorted(AUGMENT_KEYS - set(params))
    if missing:
        raise ValueError(f"missing augmentation keys {missing}; every key of {sorted(AUGMENT_KEYS)} must be given")
    if not isinstance(params["hflip"], bool):
        raise ValueError(f"hflip must be true or false, got {params['hflip']!r}")
    affine = KerasAffine(**{k: v for k, v in params.items() if k != "hflip"})
    steps: list[Augmentation] = []
    if not affine.is_identity():
        steps.append(affine)
    if params["hflip"]:
        steps.append(RandomHorizontalFlip(0.5))
    return Compose(steps) if steps else None


def _padding_mode(fill_mode: str) -> str:
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {sorted(FILL_MODES)}, got {fill_mode!r}")
    return FILL_MODES[fill_mode]


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _fraction(name: str, value: Any) -> float:
    """Shifts and zoom are fractions in [0, 1): Keras' pixel-valued ranges (>= 1) are not supported."""
    value = _non_negative(name, value)
    if value >= 1:
        raise ValueError(f"{name} must be a fraction in [0, 1), got {value}")
    return value


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or not image.is_floating_point():
        got = f"{image.dtype} tensor of shape {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image)
        raise ValueError(f"augmentation expects a float (C, H, W) tensor, got {got}")


__all__ = [
    "AUGMENT_KEYS",
    "FILL_MODES",
    "KERAS_PRESET",
    "NO_AUGMENT",
    "AffineParams",
    "Augmentation",
    "Compose",
    "KerasAffine",
    "RandomHorizontalFlip",
    "apply_affine",
    "build_augmentation",
    "keras_matrix",
]
