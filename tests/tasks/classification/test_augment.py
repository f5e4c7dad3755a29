"""Augmentation: Keras semantics, reproducibility from an explicit generator, fill modes, shapes and dtypes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage

from hf_tasks.tasks.classification.augment import (
    KERAS_PRESET,
    NO_AUGMENT,
    AffineParams,
    KerasAffine,
    RandomHorizontalFlip,
    apply_affine,
    build_augmentation,
    keras_matrix,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def image() -> torch.Tensor:
    """A normalised-looking image with no zeros anywhere (values in [0.1, 1.1))."""
    return torch.rand(3, 32, 40, generator=_gen(123)) + 0.1


def _bright_pixel(height: int = 32, width: int = 32, row: int = 16, col: int = 16) -> torch.Tensor:
    img = torch.zeros(1, height, width)
    img[0, row, col] = 1.0
    return img


def _argmax_2d(img: torch.Tensor) -> tuple[int, int]:
    flat = int(img[0].argmax())
    return divmod(flat, img.shape[-1])


def _scipy_keras(img: torch.Tensor, params: AffineParams, mode: str) -> np.ndarray:
    """The Keras reference: its matrix about the centre (size/2 - 0.5), applied by scipy with order=1."""
    h, w = img.shape[-2:]
    oy, ox = h / 2 - 0.5, w / 2 - 0.5
    offset = np.array([[1, 0, oy], [0, 1, ox], [0, 0, 1]], dtype=np.float64)
    reset = np.array([[1, 0, -oy], [0, 1, -ox], [0, 0, 1]], dtype=np.float64)
    m = offset @ keras_matrix(params).numpy() @ reset
    return np.stack([ndimage.affine_transform(c, m[:2, :2], m[:2, 2], order=1, mode=mode) for c in img.numpy()])


def test_presets_have_the_same_keys() -> None:
    assert set(KERAS_PRESET) == set(NO_AUGMENT)
    assert KERAS_PRESET["rotation"] == 40 and KERAS_PRESET["hflip"] is True


def test_no_augment_builds_nothing_and_zero_affine_is_identity(image: torch.Tensor) -> None:
    assert build_augmentation(NO_AUGMENT) is None
    affine = KerasAffine()
    assert affine.is_identity()
    assert torch.equal(affine(image, _gen(0)), image)
    assert torch.equal(apply_affine(image, AffineParams()), image)


def test_unknown_and_missing_keys_are_named() -> None:
    with pytest.raises(ValueError, match="rotaton"):
        build_augmentation({**NO_AUGMENT, "rotaton": 10})
    params = dict(NO_AUGMENT)
    del params["zoom"]
    with pytest.raises(ValueError, match="zoom"):
        build_augmentation(params)


@pytest.mark.parametrize(
    "bad", [{"fill_mode": "wrap"}, {"rotation": -1}, {"width_shift": 1.5}, {"zoom": 1.0}, {"hflip": "yes"}]
)
def test_invalid_values_raise(bad: dict) -> None:
    with pytest.raises(ValueError):
        build_augmentation({**KERAS_PRESET, **bad})


def test_same_seed_same_output_different_seed_different(image: torch.Tensor) -> None:
    augment = build_augmentation(KERAS_PRESET)
    assert augment is not None
    first = augment(image, _gen(7))
    assert torch.equal(first, augment(image, _gen(7)))
    assert not torch.equal(first, augment(image, _gen(8)))
    # pickled copies (what DataLoader workers receive) draw the same transform from the same seed
    clone = pickle.loads(pickle.dumps(augment))
    assert torch.equal(first, clone(image, _gen(7)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_and_dtype_preserved(image: torch.Tensor, dtype: torch.dtype) -> None:
    augment = build_augmentation(KERAS_PRESET)
    out = augment(image.to(dtype), _gen(1))
    assert out.shape == image.shape and out.dtype == dtype


def test_hflip_flips_or_not() -> None:
    img = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(img, _gen(0)), img.flip(-1))
    assert torch.equal(RandomHorizontalFlip(p=0.0)(img, _gen(0)), img)
    flip_only = build_augmentation({**NO_AUGMENT, "hflip": True})
    outcomes = {bool(torch.equal(flip_only(img, _gen(s)), img.flip(-1))) for s in range(20)}
    assert outcomes == {True, False}  # p=0.5: both happen over 20 seeds


@pytest.mark.parametrize(("tx", "ty"), [(3.0, 0.0), (0.0, -5.0), (4.0, 6.0)])
def test_shift_moves_pixel_as_keras_does(tx: float, ty: float) -> None:
    """Keras: output (r, c) reads input (r + tx, c + ty), so the content moves by (-tx, -ty)."""
    out = apply_affine(_bright_pixel(), AffineParams(tx=tx, ty=ty), "constant")
    row, col = _argmax_2d(out)
    assert abs(row - (16 - tx)) <= 1 and abs(col - (16 - ty)) <= 1


def test_sampled_shift_is_a_fraction_of_the_size() -> None:
    affine = KerasAffine(width_shift=0.25, height_shift=0.1)
    for seed in range(10):
        params = affine.sample(40, 80, _gen(seed))
        assert abs(params.tx) <= 0.1 * 40 and abs(params.ty) <= 0.25 * 80
        assert params.theta == params.shear == 0.0 and params.zx == params.zy == 1.0
        img = _bright_pixel(40, 80, 20, 40)
        row, col = _argmax_2d(apply_affine(img, params, "constant"))
        assert abs(row - (20 - params.tx)) <= 1 and abs(col - (40 - params.ty)) <= 1


def test_zoom_is_sampled_independently_per_axis() -> None:
    affine = KerasAffine(zoom=0.3)
    params = [affine.sample(10, 10, _gen(s)) for s in range(20)]
    assert all(0.7 <= p.zx <= 1.3 and 0.7 <= p.zy <= 1.3 for p in params)
    assert any(abs(p.zx - p.zy) > 1e-3 for p in params)


def test_nearest_fill_has_no_zero_border_constant_does(image: torch.Tensor) -> None:
    params = AffineParams(theta=30.0, tx=5.0, ty=-6.0, zx=1.2, zy=1.2)
    nearest = apply_affine(image, params, "nearest")
    reflect = apply_affine(image, params, "reflect")
    constant = apply_affine(image, params, "constant")
    assert nearest.min() > 0 and reflect.min() > 0
    assert (constant == 0).any()


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect"])
def test_matches_keras_scipy_reference(fill_mode: str) -> None:
    img = torch.rand(3, 21, 34, dtype=torch.float64, generator=_gen(5))
    affine = KerasAffine(rotation=40, width_shift=0.2, height_shift=0.2, shear=30, zoom=0.2)
    for seed in range(3):
        params = affine.sample(21, 34, _gen(seed))
        ours = apply_affine(img, params, fill_mode).numpy()
        np.testing.assert_allclose(ours, _scipy_keras(img, params, fill_mode), atol=1e-9)


def test_constant_matches_scipy_grid_constant() -> None:
    img = torch.rand(2, 16, 16, dtype=torch.float64, generator=_gen(9))
    params = AffineParams(theta=25.0, tx=3.5, ty=-2.0, shear=10.0, zx=0.9, zy=1.1)
    ours = apply_affine(img, params, "constant").numpy()
    np.testing.assert_allclose(ours, _scipy_keras(img, params, "grid-constant"), atol=1e-9)


def test_rejects_non_chw_float_input() -> None:
    augment = build_augmentation(KERAS_PRESET)
    with pytest.raises(ValueError, match="C, H, W"):
        augment(torch.rand(1, 3, 8, 8), _gen(0))
    with pytest.raises(ValueError, match="float"):
        augment(torch.zeros(3, 8, 8, dtype=torch.uint8), _gen(0))
