"""The detection tests' shared data: one small shapes detection set (30 images of 64 px: 18 / 6 / 6), built once."""

from __future__ import annotations

import pytest

from tests.helpers import build_dataset


@pytest.fixture(scope="session")
def shapes_detection(tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "shapes_det"
    build_dataset(["shapes", "--task", "detection", "--num-images", "30", "--image-size", "64",
                   "--val-fraction", "0.2", "--test-fraction", "0.2", "--seed", "0", "--out", str(out)])
    return out
