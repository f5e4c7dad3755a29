"""The synthetic shapes generator: exact labels, boxes and captions derived from one seeded scene."""

from __future__ import annotations

import argparse
import io
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_scripts import cli, shapes
from dataset_scripts.shapes import (
    COLOURS,
    SHAPES,
    classification_scene,
    multi_object_scene,
    render_scene,
    scene_boxes,
    scene_captions,
    write_image_folder,
)
from hf_tasks.errors import DataError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    shapes.add_arguments(parser)
    return parser.parse_args(["--out", "unused", *argv])


def decoded(cell: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"))


def raw_cells(split: datasets.Dataset) -> list[dict]:
    return list(split.cast_column("image", datasets.Image(decode=False))["image"])


def colour_bbox(pixels: np.ndarray, rgb: tuple[int, int, int]) -> list[float] | None:
    """COCO box of the pixels that have exactly ``rgb`` (only the object painted in that colour can)."""
    ys, xs = np.nonzero((pixels == np.array(rgb)).all(axis=-1))
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


@pytest.fixture(scope="module")
def scenes() -> list:
    return [multi_object_scene(np.random.default_rng([3, i]), SHAPES, 64, 4) for i in range(150)]


def test_same_args_same_bytes_and_fingerprint():
    args = parse("--num-images", "40", "--seed", "5")
    first, second = shapes.build(args).dataset, shapes.build(args).dataset
    for name in first:
        assert first[name]._fingerprint == second[name]._fingerprint
        assert raw_cells(first[name]) == raw_cells(second[name])
    other = shapes.build(parse("--num-images", "40", "--seed", "6")).dataset
    assert raw_cells(other["train"]) != raw_cells(first["train"])


def test_earlier_images_do_not_depend_on_num_images():
    small = shapes.build(parse("--num-images", "8", "--val-fraction", "0", "--test-fraction", "0")).dataset
    large = shapes.build(parse("--num-images", "16", "--val-fraction", "0", "--test-fraction", "0")).dataset
    assert raw_cells(large["train"])[:8] == raw_cells(small["train"])


def test_boxes_inside_image_and_match_drawn_pixels(scenes):
    for scene in scenes:
        pixels = np.asarray(render_scene(scene))
        for obj, box in zip(scene.objects, scene_boxes(scene)):
            x, y, w, h = box
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= scene.width and y + h <= scene.height
            assert colour_bbox(pixels, obj.rgb) == box  # the box is exactly the object's painted pixels


def test_background_never_contains_object_colours():
    for i in range(50):
        scene = classification_scene(np.random.default_rng([9, i]), "circle", 64)
        background = np.asarray(render_scene(scene.__class__(64, 64, scene.background, ())))
        for rgb in COLOURS.values():
            assert colour_bbox(background, rgb) is None


def test_captions_describe_the_scene(scenes):
    multi = [s for s in scenes if len(s.objects) > 1]
    assert multi and any(len(s.objects) == 1 for s in scenes)
    for scene in scenes:
        captions = scene_captions(scene)
        assert len(captions) == 3 and len(set(captions)) == 3
        main = scene.main
        for caption in captions:
            assert f"{main.size} {main.colour} {main.shape}" in caption
        for obj in scene.objects:
            assert f"a {obj.size} {obj.colour} {obj.shape}" in captions[2]
    for scene in multi:  # the spatial words agree with the drawn geometry
        (ax, ay), (bx, by) = scene.objects[0].center, scene.objects[1].center
        first = scene_captions(scene)[0]
        checks = {"to the left of": ax < bx, "to the right of": ax > bx, "above": ay < by, "below": ay > by}
        assert sum(word in first for word in checks) == 1
        assert all(ok for word, ok in checks.items() if f" {word} " in first)


def test_single_object_caption():
    scene = classification_scene(np.random.default_rng(0), "triangle", 64)
    obj = scene.main
    assert scene_captions(scene)[0] == f"a {obj.size} {obj.colour} triangle"


def test_classification_is_balanced_and_stratified():
    result = shapes.build(parse("--num-images", "120"))
    info = result.info
    assert info["class_names"] == list(SHAPES)
    assert result.dataset["train"].features["label"].names == list(SHAPES)
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 96, "validation": 12, "test": 12}
    for split, counts in info["counts"].items():
        assert len(set(counts.values())) == 1, split  # every class equally often in every split
    total = Counter(label for split in result.dataset.values() for label in split["label"])
    assert set(total.values()) == {30}


def test_class_subset_and_unknown_class():
    result = shapes.build(parse("--num-images", "30", "--classes", "triangle,circle"))
    assert result.info["class_names"] == ["circle", "triangle"]  # fixed order, not the order given
    split = result.dataset["train"]
    for cell, label in zip(raw_cells(split)[:10], split["label"][:10]):
        assert decoded(cell).shape == (64, 64, 3)
    with pytest.raises(DataError, match="hexagon.*circle, square"):
        shapes.build(parse("--classes", "circle,hexagon"))


def test_detection_dataset_features_and_boxes():
    result = shapes.build(parse("--task", "detection", "--num-images", "30", "--objects", "3", "--image-size", "48"))
    split = result.dataset["train"]
    assert "COCO" in result.info["bbox_format"] and "COCO" in split.info.description
    assert split.features["objects"]["category"].feature.names == list(SHAPES)
    ids = [i for s in result.dataset.values() for i in s["image_id"]]
    assert len(ids) == len(set(ids)) == 30
    for row, cell in zip(split, raw_cells(split)):
        pixels = decoded(cell)
        assert (row["width"], row["height"]) == (48, 48) == pixels.shape[1::-1]
        assert 1 <= len(row["objects"]["bbox"]) <= 3
        for box in row["objects"]["bbox"]:
            x, y, w, h = box
            region = pixels[int(y): int(y + h), int(x): int(x + w)].reshape(-1, 3)
            assert any(tuple(rgb) in {tuple(p) for p in region} for rgb in COLOURS.values())


def test_captioning_via_cli(tmp_path: Path):
    out = tmp_path / "captions"
    assert cli.main(["build-dataset", "shapes", "--task", "captioning", "--num-images", "20", "--out", str(out)]) == 0
    loaded = datasets.load_from_disk(str(out))
    assert all(len(c) == 3 for split in loaded.values() for c in split["captions"])
    report = json.loads((out / "build_report.json").read_text())
    assert report["info"]["task"] == "captioning" and report["rejected"]["count"] == 0


def test_bad_arguments_are_data_errors():
    with pytest.raises(DataError, match="--image-size"):
        shapes.build(parse("--image-size", "8"))
    with pytest.raises(DataError, match="--val-fraction"):
        shapes.build(parse("--val-fraction", "0.7", "--test-fraction", "0.4"))


def test_write_image_folder(tmp_path: Path):
    dest = write_image_folder(tmp_path / "raw", ["square", "star"], per_class=3, image_size=40, seed=1)
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.png"))
    assert files == [f"{c}/{c}_{i:04d}.png" for c in ("square", "star") for i in range(3)]
    assert Image.open(dest / "star" / "star_0002.png").size == (40, 40)
    again = write_image_folder(tmp_path / "again", ["square", "star"], per_class=3, image_size=40, seed=1)
    assert all((dest / f).read_bytes() == (again / f).read_bytes() for f in files)


@pytest.mark.slow
def test_small_cnn_separates_the_default_classes():
    """The promise behind the default data: a tiny CNN reaches ≥0.95 test accuracy on 600 64×64 images."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    data = shapes.build(parse()).dataset

    def tensors(split):
        pixels = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in data[split]["image"]])
        return torch.tensor(pixels).permute(0, 3, 1, 2), torch.tensor(data[split]["label"])

    (x, y), (xv, yv), (xt, yt) = tensors("train"), tensors("validation"), tensors("test")
    channels = ((3, 16), (16, 32), (32, 64), (64, 64))
    blocks = [layer for c_in, c_out in channels for layer in
              (nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))]
    model = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, len(SHAPES)))
    optimizer = torch.optim.AdamW(model.parameters(), 3e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=25 * 15)
    best_val, test_at_best = -1.0, 0.0
    for _ in range(25):
        model.train()
        for batch in torch.randperm(len(x)).split(32):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():
            val = (model(xv).argmax(1) == yv).float().mean().item()
            if val >= best_val:
                best_val, test_at_best = val, (model(xt).argmax(1) == yt).float().mean().item()
    assert test_at_best >= 0.95 - 1e-6, (best_val, test_at_best)
