"""Detection build scripts on tiny raw layouts written in the real formats: YOLO txt here, COCO json in
tests/dataset_scripts/test_dataset_coco_detection.py (which shares this module's helpers)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_scripts import cli, get_source
from dataset_scripts.publish import publish
from dataset_scripts.shapes import encode_png, multi_object_scene, render_scene, scene_boxes
from hf_tasks.errors import DataError
from tests.helpers import write

W, H = 64, 48  # boxes on integer pixels of a 64×48 image survive normalise → pixels exactly (in float32)
NAMES = ["cat", "dog", "bird"]
#: image stem → [(class, [x, y, w, h])] in pixels
YOLO_BOXES = {
    "a0": [(0, [5, 7, 11, 9]), (2, [0, 0, 64, 48])],
    "a1": [(1, [40, 20, 24, 28])],
    "a2": [(2, [1, 2, 3, 4]), (0, [30, 30, 10, 10])],
    "a3": [],  # empty label file: an image with no objects
    "b0": [(1, [10, 10, 20, 12])],
}


# ------------------------------------------------------------------------------------------- raw fixtures
def image_bytes(seed: int, width: int = W, height: int = H, fmt: str = "JPEG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()




def yolo_line(cls: int, box: list[float], width: int = W, height: int = H) -> str:
    x, y, w, h = box
    return f"{cls} {(x + w / 2) / width!r} {(y + h / 2) / height!r} {w / width!r} {h / height!r}"


def yolo_text(boxes: list[tuple[int, list[float]]], width: int = W, height: int = H) -> str:
    return "".join(yolo_line(c, b, width, height) + "\n" for c, b in boxes)


@pytest.fixture
def yolo_split(tmp_path: Path) -> Path:
    """``images/{train,val}`` + ``labels/{train,val}`` + data.yaml, one train image without a label file."""
    src = tmp_path / "raw"
    for i, stem in enumerate(YOLO_BOXES):
        split = "val" if stem.startswith("b") else "train"
        write(src / "images" / split / f"{stem}.jpg", image_bytes(i))
        write(src / "labels" / split / f"{stem}.txt", yolo_text(YOLO_BOXES[stem]))
    write(src / "images" / "train" / "bg.png", image_bytes(99, fmt="PNG"))  # background: no label file
    write(src / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog, bird]\n"
                             "download: |\n  import os; open('PWNED', 'w')\n")
    return src


@pytest.fixture
def yolo_flat(tmp_path: Path) -> Path:
    """20 rendered shapes scenes, each ``sNN.png`` with ``sNN.txt`` beside it, and classes.txt."""
    src = tmp_path / "flat"
    classes = ["circle", "square", "triangle", "star"]
    for i in range(20):
        scene = multi_object_scene(np.random.default_rng([3, i]), classes, 64, 3)
        write(src / f"s{i:02d}.png", encode_png(render_scene(scene)))
        boxes = [(classes.index(o.shape), b) for o, b in zip(scene.objects, scene_boxes(scene))]
        write(src / f"s{i:02d}.txt", yolo_text(boxes, 64, 64))
    write(src / "classes.txt", "\n".join(classes) + "\n")
    return src


def parse(source: str, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    get_source(source).add_arguments(parser)
    return argparse.Namespace(**vars(parser.parse_args(list(argv))), source=source)


def build(source: str, *argv: str):
    return get_source(source).build(parse(source, *argv, "--out", "unused-out"))


def by_stem(split: datasets.Dataset) -> dict[str, dict]:
    cells = split.cast_column("image", datasets.Image(decode=False))
    return {Path(c["image"]["path"].split("__")[-1]).stem: c for c in cells}


def f32(boxes) -> list[list[float]]:
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4).tolist()


# --------------------------------------------------------------------------------------------------- YOLO
def test_yolo_split_layout_round_trips_pixel_boxes(yolo_split: Path, tmp_path: Path):
    result = build("yolo", "--src", str(yolo_split))
    dataset, info = result.dataset, result.info
    assert {n: len(s) for n, s in dataset.items()} == {"train": 5, "validation": 1}
    assert "no test split" in info["splits_note"] and info["split_method"]["train"] == "data.yaml entries"
    assert info["box_format"] == "coco_xywh_pixels" and info["class_names"] == NAMES
    assert "COCO" in dataset["train"].info.description and "pixels" in dataset["train"].info.description
    assert info["data_yaml"]["ignored_keys"] == ["download"] and "never executed" in info["data_yaml"]["download"]
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert info["images_without_label_file"] == 1
    assert dataset["train"].features["objects"]["category"].feature.names == NAMES
    rows = {**by_stem(dataset["train"]), **by_stem(dataset["validation"])}
    for stem, boxes in YOLO_BOXES.items():
        objects = rows[stem]["objects"]
        assert objects["bbox"] == f32([b for _, b in boxes]), stem
        assert objects["category"] == [c for c, _ in boxes]
        assert objects["iscrowd"] == [False] * len(boxes)
        assert objects["area"] == [float(np.float32(b[2] * b[3])) for _, b in boxes]
        assert (rows[stem]["width"], rows[stem]["height"]) == (W, H)
        split = "val" if stem.startswith("b") else "train"
        assert rows[stem]["image"]["bytes"] == (yolo_split / "images" / split / f"{stem}.jpg").read_bytes()
    assert rows["bg"]["objects"]["bbox"] == []
    ids = sorted(r["image_id"] for r in rows.values())
    assert ids == list(range(6))


@pytest.mark.parametrize("names_yaml", ["{0: cat, 1: dog, 2: bird}", "{2: bird, 0: cat, 1: dog}",
                                        "{'0': cat, '1': dog, '2': bird}", "\n  - cat\n  - dog\n  - bird"])
def test_yolo_class_order_from_data_yaml(yolo_split: Path, names_yaml: str):
    write(yolo_split / "data.yaml", f"train: images/train\nval: images/val\nnames: {names_yaml}\n")
    assert build("yolo", "--src", str(yolo_split)).info["class_names"] == NAMES


@pytest.mark.parametrize("text, match", [
    ("names: {0: cat, 2: bird}\ntrain: images/train", "without gaps"),
    ("names: [cat, cat]\ntrain: images/train", "repeats"),
    ("names: [cat, dog]\nnc: 3\ntrain: images/train", "nc: 3"),
    ("names: cat\ntrain: images/train", "must be a list"),
    ("names: [a, b, c]\ntrain: [images/train\n", "line"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_yolo_bad_data_yaml_is_one_clear_error(yolo_split: Path, text: str, match: str):
    write(yolo_split / "data.yaml", text)
    with pytest.raises(DataError, match=match):
        build("yolo", "--src", str(yolo_split))


@pytest.mark.parametrize("entries", ["path: ..\ntrain: raw/images/train", "train: ../outside",
                                     "train: /etc", "train: images/../../outside",
                                     "train: [images/train, ../outside]", "val: images/val\ntrain: images/train\n"
                                     "test: {tmp}/raw/../secret"])
def test_yolo_yaml_paths_must_stay_inside_src(yolo_split: Path, entries: str):
    write(yolo_split.parent / "outside" / "x.jpg", b"")
    write(yolo_split / "data.yaml", "names: [cat, dog, bird]\n" + entries.format(tmp=yolo_split.parent))
    with pytest.raises(DataError, match="outside the dataset folder"):
        build("yolo", "--src", str(yolo_split))


def test_yolo_yaml_dotdot_back_inside_src_is_fine(yolo_split: Path):
    write(yolo_split / "data.yaml", "names: [cat, dog, bird]\ntrain: ../raw/images/train\nval: images/../images/val")
    assert len(build("yolo", "--src", str(yolo_split)).dataset["train"]) == 5


def test_yolo_absolute_path_inside_src_is_fine(yolo_split: Path):
    write(yolo_split / "data.yaml", f"path: {yolo_split}\ntrain: images/train\nval: {yolo_split}/images/val\n"
                                    "names: [cat, dog, bird]\n")
    assert len(build("yolo", "--src", str(yolo_split)).dataset["validation"]) == 1


def test_yolo_image_lists_and_roboflow_folders(yolo_split: Path, tmp_path: Path):
    write(yolo_split / "train.txt", "./images/train/a0.jpg\nimages/train/a1.jpg\n\n../outside/x.jpg\n"
                                    "images/train/nope.jpg\n")
    write(yolo_split / "data.yaml", "names: [cat, dog, bird]\ntrain: train.txt\nval: images/val\n")
    with pytest.raises(DataError) as err:
        build("yolo", "--src", str(yolo_split))
    assert "- train.txt:4: listed image path leaves" in str(err.value) and "- train.txt:5: listed image not found" \
        in str(err.value) and "2 bad input file(s)" in str(err.value)  # a2 is just not listed: not an orphan
    result = build("yolo", "--src", str(yolo_split), "--skip-bad")
    assert sorted(by_stem(result.dataset["train"])) == ["a0", "a1"]
    robo = tmp_path / "robo"
    for split, n in (("train", 5), ("valid", 2), ("test", 1)):
        for i in range(n):
            write(robo / split / "images" / f"{split}{i}.jpg", image_bytes(i))
            write(robo / split / "labels" / f"{split}{i}.txt", yolo_line(0, [1, 1, 8, 8]))
    write(robo / "data.yaml", "names: [thing]\nnc: 1\nroboflow: {workspace: w}\n")
    write(robo / "README.roboflow.txt", "exported")
    result = build("yolo", "--src", str(robo))
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 5, "validation": 2, "test": 1}
    assert result.info["layout"] == "split folders" and result.info["data_yaml"]["ignored_keys"] == ["roboflow"]


def test_exif_rotated_image_size_matches_decoded(tmp_path: Path):
    from dataset_scripts.detection_common import image_size

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    buffer = io.BytesIO()
    Image.new("RGB", (W, H)).save(buffer, format="JPEG", exif=exif)
    path = write(tmp_path / "r.jpg", buffer.getvalue())
    decoded = datasets.Image().decode_example({"bytes": path.read_bytes(), "path": None})
    assert image_size(path) == decoded.size == (H, W)


def test_yolo_flat_folder_split_by_seed(yolo_flat: Path):
    result = build("yolo", "--src", str(yolo_flat))
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 16, "validation": 4}  # 80/20
    assert result.info["names_from"] == "classes.txt" and result.info["layout"] == "flat folder"
    assert "random (seeded)" in result.info["split_method"]["validation"]
    assert "no test split" in result.info["splits_note"]
    three = build("yolo", "--src", str(yolo_flat), "--val-fraction", "0.2", "--test-fraction", "0.1")
    assert {n: len(s) for n, s in three.dataset.items()} == {"train": 14, "validation": 4, "test": 2}
    assert "no test split" not in three.info["splits_note"]
    classes = ["circle", "square", "triangle", "star"]
    for split in result.dataset.values():  # shapes' own boxes (integer pixel extents) survive exactly
        for stem, row in by_stem(split).items():
            scene = multi_object_scene(np.random.default_rng([3, int(stem[1:])]), classes, 64, 3)
            assert row["objects"]["bbox"] == f32(scene_boxes(scene))
            assert row["objects"]["category"] == [classes.index(o.shape) for o in scene.objects]


def test_yolo_builds_are_deterministic(yolo_flat: Path, tmp_path: Path):
    first, second = (build("yolo", "--src", str(yolo_flat), "--seed", "5").dataset for _ in range(2))
    assert all(first[n]._fingerprint == second[n]._fingerprint for n in first)
    other = build("yolo", "--src", str(yolo_flat), "--seed", "6").dataset
    assert sorted(by_stem(other["validation"])) != sorted(by_stem(first["validation"]))


def test_yolo_names_sources(yolo_flat: Path):
    with pytest.raises(DataError, match="keep only one"):
        build("yolo", "--src", str(yolo_flat), "--names", "a,b,c,d")
    (yolo_flat / "classes.txt").unlink()
    with pytest.raises(DataError, match="No class names"):
        build("yolo", "--src", str(yolo_flat))
    assert build("yolo", "--src", str(yolo_flat), "--names", "a,b,c,d").info["class_names"] == list("abcd")


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


LABEL = Path("labels/train/a1.txt")
YOLO_BAD = {  # name → (how to break the fixture, reported path, line, reason fragment)
    "columns": (lambda s: _append(s / LABEL, "1 0.5 0.5 0.1\n"), LABEL, 2, "columns"),
    "not-number": (lambda s: _append(s / LABEL, "1 0.5 half 0.1 0.1\n"), LABEL, 2, "not a number"),
    "outside-01": (lambda s: _append(s / LABEL, "1 0.5 1.5 0.1 0.1\n"), LABEL, 2, "outside [0, 1]"),
    "class-too-big": (lambda s: _append(s / LABEL, "3 0.5 0.5 0.1 0.1\n"), LABEL, 2, "class id outside 0..2"),
    "class-negative": (lambda s: _append(s / LABEL, "-1 0.5 0.5 0.1 0.1\n"), LABEL, 2, "class id outside"),
    "zero-area": (lambda s: _append(s / LABEL, "\n0 0.5 0.5 0.0 0.1\n"), LABEL, 3, "zero-area"),
    "truncated": (lambda s: write(s / "images/train/a1.jpg", image_bytes(1)[:300]), "images/train/a1.jpg", None,
                  "truncated"),
    "zero-byte": (lambda s: write(s / "images/train/a1.jpg", b""), "images/train/a1.jpg", None, "empty file"),
    "not-image": (lambda s: write(s / "images/train/a1.jpg", "hello"), "images/train/a1.jpg", None, "not an image"),
    "orphan-label": (lambda s: write(s / "labels/train/gone.txt", "0 0.5 0.5 0.1 0.1\n"), "labels/train/gone.txt",
                     None, "label file without an image"),
}


@pytest.mark.parametrize("kind", sorted(YOLO_BAD))
def test_yolo_bad_input_stops_or_is_skipped(yolo_split: Path, tmp_path: Path, kind: str):
    breaker, path, line, reason = YOLO_BAD[kind]
    breaker(yolo_split)
    where = f"{Path(path).as_posix()}:{line}" if line else Path(path).as_posix()
    with pytest.raises(DataError) as err:
        build("yolo", "--src", str(yolo_split))
    message = str(err.value)
    assert "1 bad input file(s)" in message and f"- {where}: " in message and reason in message, message
    out = tmp_path / "ds"
    result = get_source("yolo").build(parse("yolo", "--src", str(yolo_split), "--out", str(out), "--skip-bad"))
    publish(result, out)
    report = json.loads((out / "build_report.json").read_text())
    assert report["rejected"]["count"] == 1 and report["info"]["rejected"] == 1
    item = report["rejected"]["items"][0]
    assert (item["path"], item["line"]) == (Path(path).as_posix(), line) and reason in item["reason"]
    kept = set(by_stem(datasets.load_from_disk(str(out))["train"]))
    assert ("a1" in kept) == (kind == "orphan-label")  # a bad label or image drops the whole image


def test_yolo_every_bad_line_is_counted(yolo_split: Path):
    _append(yolo_split / LABEL, "x\n0 2 2 2 2\n")
    _append(yolo_split / "labels/val/b0.txt", "9 0.5 0.5 0.5 0.5\n")
    with pytest.raises(DataError) as err:
        build("yolo", "--src", str(yolo_split))
    message = str(err.value)
    assert "3 bad input file(s)" in message
    assert all(f"- {w}: " in message for w in ("labels/train/a1.txt:2", "labels/train/a1.txt:3", "labels/val/b0.txt:2"))


def test_yolo_cli_user_error_and_success(yolo_split: Path, tmp_path: Path, capsys):
    _append(yolo_split / LABEL, "0 0.5\n")
    out = tmp_path / "ds"
    argv = ["build-dataset", "yolo", "--src", str(yolo_split), "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("error:") == 1 and "Traceback" not in err
    assert "labels/train/a1.txt:2" in err and not out.exists()
    assert cli.main([*argv, "--skip-bad", "--format", "parquet"]) == 0
    assert "rejected inputs: 1" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "build_report.json", "train", "validation"]
