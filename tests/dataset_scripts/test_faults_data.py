"""Untrusted dataset files, for every task (issue 9): a data.yaml ``download:`` is never executed, and annotation
paths that leave the dataset root (``../``, absolute) are refused in every source format: Tiny ImageNet's
val_annotations.txt (classification), YOLO image lists and COCO json (detection), Flickr8k captions and COCO
captions json (captioning)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import jpeg_bytes, write


def test_data_yaml_download_is_never_executed(tmp_path, monkeypatch):
    import subprocess

    from dataset_scripts import cli

    src, marker = tmp_path / "raw", tmp_path / "PWNED"
    for split, stems in (("train", ["a0", "a1", "a2"]), ("val", ["b0"])):
        for i, stem in enumerate(stems):
            write(src / "images" / split / f"{stem}.jpg", jpeg_bytes(i, 32))
            write(src / "labels" / split / f"{stem}.txt", "0 0.5 0.5 0.25 0.25\n")
    write(src / "data.yaml", "train: images/train\nval: images/val\nnames: [thing]\n"
                             f"download: |\n  import os; open({str(marker)!r}, 'w'); os.system('touch {marker}')\n")
    ran = []
    for module, name in ((subprocess, "Popen"), (subprocess, "run"), (os, "system")):
        monkeypatch.setattr(module, name, lambda *a, **k: ran.append(a))
    out = tmp_path / "ds"
    assert cli.main(["build-dataset", "yolo", "--src", str(src), "--out", str(out)]) == 0
    assert not marker.exists() and ran == []
    info = json.loads((out / "build_report.json").read_text())["info"]["data_yaml"]
    assert info["ignored_keys"] == ["download"] and "never executed" in info["download"]


def _tiny_imagenet(src: Path, escape) -> tuple[list[str], str]:
    base = src / "tiny-imagenet-200"
    write(base / "wnids.txt", "n01\nn02\n")
    write(base / "words.txt", "n01\tcat\nn02\tdog\n")
    lines = []
    for c, wnid in enumerate(("n01", "n02")):
        for i in range(4):
            write(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", jpeg_bytes(10 * c + i))
        write(base / "val" / "images" / f"val_{c}.JPEG", jpeg_bytes(50 + c))
        lines.append(f"val_{c}.JPEG\t{wnid}\t0\t0\t1\t1\n")
    lines.append(f"{escape(base / 'val' / 'images')}\tn01\t0\t0\t1\t1\n")
    write(base / "val" / "val_annotations.txt", "".join(lines))
    return ["--test-per-class", "1"], "val/val_annotations.txt:3"


def _yolo(src: Path, escape) -> tuple[list[str], str]:
    for i in range(4):
        write(src / "images" / f"a{i}.jpg", jpeg_bytes(i))
        write(src / "labels" / f"a{i}.txt", "0 0.5 0.5 0.25 0.25\n")
    write(src / "train.txt", f"images/a0.jpg\nimages/a1.jpg\nimages/a2.jpg\n{escape(src)}\n")
    write(src / "val.txt", "images/a3.jpg\n")
    write(src / "data.yaml", "train: train.txt\nval: val.txt\nnames: [thing]\n")
    return [], "train.txt:4"


def _coco_images(src: Path, escape, folder: str) -> list[dict]:
    for i in range(1, 5):
        write(src / folder / f"{i}.jpg", jpeg_bytes(i))
    return [{"id": i, "file_name": f"{i}.jpg", "width": 16, "height": 16} for i in range(1, 5)] + \
        [{"id": 9, "file_name": escape(src / folder), "width": 16, "height": 16}]


def _coco_detection(src: Path, escape) -> tuple[list[str], str]:
    images = _coco_images(src, escape, "train2017")
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 8, 8]} for i in (1, 2, 3, 4, 9)]
    write(src / "annotations" / "instances_train2017.json", json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    return ["--val-fraction", "0.25"], "annotations/instances_train2017.json (image id 9)"


def _flickr8k(src: Path, escape) -> tuple[list[str], str]:
    for i in range(4):
        write(src / "Images" / f"{i}.jpg", jpeg_bytes(i))
    rows = "".join(f"{i}.jpg,a thing number {i}\n" for i in range(4))
    write(src / "captions.txt", f"image,caption\n{rows}{escape(src / 'Images')},a secret\n")
    return ["--val-fraction", "0.25", "--test-fraction", "0.25"], "captions.txt:6"


def _coco_captions(src: Path, escape) -> tuple[list[str], str]:
    images = _coco_images(src, escape, "train2017")
    annotations = [{"id": i, "image_id": i, "caption": f"a thing number {i}"} for i in (1, 2, 3, 4, 9)]
    write(src / "annotations" / "captions_train2017.json", json.dumps({"images": images, "annotations": annotations}))
    return ["--val-fraction", "0.25", "--test-fraction", "0.25"], "annotations/captions_train2017.json#annotation_id=9"


ESCAPES = {  # source -> (task, raw layout, reason)
    "tiny_imagenet": ("classification", _tiny_imagenet, "image name escapes the image folder"),
    "yolo": ("detection", _yolo, "listed image path leaves the dataset folder (not read)"),
    "coco_detection": ("detection", _coco_detection, "file_name leaves the image folder (not read)"),
    "flickr8k": ("captioning", _flickr8k, "image name escapes the image folder"),
    "coco_captions": ("captioning", _coco_captions, "image name escapes the image folder"),
}


@pytest.mark.parametrize("source", sorted(ESCAPES))
@pytest.mark.parametrize("absolute", [False, True], ids=["dotdot", "absolute"])
def test_annotation_paths_cannot_leave_the_dataset_root(source, absolute, tmp_path, capsys):
    """An annotation naming ``../../secret.jpg`` (or an absolute path) that exists outside the dataset: the build
    stops naming the file and line, and with --skip-bad the secret image is reported, never read into the dataset."""
    import datasets

    from dataset_scripts import cli

    task, layout, reason = ESCAPES[source]
    secret = write(tmp_path / "secret.jpg", jpeg_bytes(999))
    src, out = tmp_path / "data" / "src", tmp_path / "data" / "out"
    extra, where = layout(src, lambda folder: str(secret) if absolute else os.path.relpath(secret, folder))
    argv = ["build-dataset", source, "--src", str(src), "--out", str(out), *extra]
    assert cli.main(argv) == 2
    assert f"- {where}: {reason}" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main([*argv, "--skip-bad"]) == 0
    report = json.loads((out / "build_report.json").read_text())
    assert report["rejected"]["count"] == 1 and reason in report["rejected"]["items"][0]["reason"]
    built = datasets.load_from_disk(str(out))
    stored = [cell["bytes"] for split in built.values()
              for cell in split.cast_column("image", datasets.Image(decode=False))["image"]]
    assert stored and all(stored) and secret.read_bytes() not in stored
    assert report["info"]["task"] == task
