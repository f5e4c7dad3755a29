"""Raw inputs that used to be mis-read without a word (issue 16), for every build source: high-bit-depth and
transparent images, symbolic links, --skip-bad emptying a split, YOLO edge overshoot, duplicate boxes, a stray
quote in Flickr8k's captions.txt and a Tiny ImageNet test carve larger than a reduced class."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Callable

import datasets
import numpy as np
import pytest
from PIL import Image

from dataset_scripts import cli
from tests.helpers import jpeg_bytes, write

SIDE = 16
GRADIENT = (np.arange(SIDE * SIDE, dtype=np.uint32).reshape(SIDE, SIDE) * 257).astype(np.uint16)  # 0 .. 65535
Put = Callable[[Path, str], None]  # writes one image file of a split


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png16() -> bytes:
    return encode(Image.fromarray(GRADIENT))  # a 16-bit grayscale PNG: Pillow opens it as I;16


def writer(make: Callable[[str], bytes]) -> Put:
    return lambda path, split: write(path, make(split)) and None


# ------------------------------------------------------------------------------- one raw layout per source
def _image_folder(src: Path, put: Put) -> list[str]:
    for split, folder, n in (("train", "train", 3), ("validation", "val", 1), ("test", "test", 1)):
        for cls in ("a", "b"):
            for i in range(n):
                put(src / folder / cls / f"{i}.png", split)
    return []


def _cats_vs_dogs(src: Path, put: Put) -> list[str]:
    for cls in ("Cat", "Dog"):
        for i in range(5):
            put(src / "PetImages" / cls / f"{i}.png", "train")
    return []


def _tiny_imagenet(src: Path, put: Put) -> list[str]:
    base = src / "tiny-imagenet-200"
    write(base / "wnids.txt", "n01\nn02\n")
    write(base / "words.txt", "n01\tcat\nn02\tdog\n")
    for c, wnid in enumerate(("n01", "n02")):
        for i in range(4):
            put(base / "train" / wnid / "images" / f"{wnid}_{i}.png", "train")
        put(base / "val" / "images" / f"val_{c}.png", "validation")
    write(base / "val" / "val_annotations.txt", "val_0.png\tn01\t0\t0\t1\t1\nval_1.png\tn02\t0\t0\t1\t1\n")
    return ["--test-per-class", "1"]


def _yolo(src: Path, put: Put) -> list[str]:
    for split, stems in (("train", ["a0", "a1", "a2"]), ("val", ["b0"])):
        for stem in stems:
            put(src / "images" / split / f"{stem}.png", "train" if split == "train" else "validation")
            write(src / "labels" / split / f"{stem}.txt", "0 0.5 0.5 0.25 0.25\n")
    write(src / "data.yaml", "train: images/train\nval: images/val\nnames: [thing]\n")
    return []


def _coco_json(ids: list[int], annotations: list[dict] | None = None) -> str:
    images = [{"id": i, "file_name": f"{i}.png", "width": SIDE, "height": SIDE} for i in ids]
    if annotations is None:
        annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 8, 8]} for i in ids]
    return json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]})


def _coco_detection(src: Path, put: Put) -> list[str]:
    for split, folder, ids in (("train", "train2017", [1, 2, 3]), ("validation", "val2017", [4])):
        for i in ids:
            put(src / folder / f"{i}.png", split)
        write(src / "annotations" / f"instances_{folder}.json", _coco_json(ids))
    return []


def _flickr8k(src: Path, put: Put) -> list[str]:
    lists = {"train": [0, 1, 2], "validation": [3], "test": [4]}
    for split, ids in lists.items():
        for i in ids:
            put(src / "Images" / f"{i}.png", split)
    write(src / "captions.txt", "image,caption\n" + "".join(f"{i}.png,a thing number {i}\n" for i in range(5)))
    for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")):
        write(src / f"Flickr_8k.{name}Images.txt", "".join(f"{i}.png\n" for i in lists[split]))
    return []


def _coco_captions(src: Path, put: Put) -> list[str]:
    for split, folder, ids in (("train", "train2017", [1, 2, 3]), ("test", "val2017", [4])):
        for i in ids:
            put(src / folder / f"{i}.png", split)
        images = [{"id": i, "file_name": f"{i}.png"} for i in ids]
        annotations = [{"id": i, "image_id": i, "caption": f"a thing number {i}"} for i in ids]
        write(src / "annotations" / f"captions_{folder}.json", json.dumps({"images": images,
                                                                         "annotations": annotations}))
    return ["--val-fraction", "0.34"]


LAYOUTS = {"image_folder": _image_folder, "cats_vs_dogs": _cats_vs_dogs, "tiny_imagenet": _tiny_imagenet,
           "yolo": _yolo, "coco_detection": _coco_detection, "flickr8k": _flickr8k, "coco_captions": _coco_captions}


def run(source: str, src: Path, out: Path, *extra: str) -> int:
    return cli.main(["build-dataset", source, "--src", str(src), "--out", str(out), *extra])


def stored(out: Path) -> list[dict]:
    built = datasets.load_from_disk(str(out))
    raw = [split.cast_column("image", datasets.Image(decode=False)) for split in built.values()]
    return [cell for split in raw for cell in split["image"]]


def report_of(out: Path) -> dict:
    return json.loads((out / "build_report.json").read_text())


# ----------------------------------------------------------------------------- 9: every image mode, one helper
@pytest.mark.parametrize("source", sorted(LAYOUTS))
def test_16bit_png_is_stored_scaled_not_saturated(source, tmp_path):
    src, out = tmp_path / "raw", tmp_path / "out"
    extra = LAYOUTS[source](src, writer(lambda split: png16()))
    assert run(source, src, out, *extra) == 0
    expected = np.repeat((GRADIENT >> 8).astype(np.uint8)[..., None], 3, axis=-1)
    for cell in stored(out):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB")), expected)


def _modes() -> dict[str, tuple[bytes, np.ndarray]]:
    """Raw file bytes → the RGB pixels a viewer shows (transparent pixels over white)."""
    half = np.zeros((SIDE, SIDE), np.uint8)
    half[:, SIDE // 2:] = 255  # right half opaque, left half fully transparent
    la = Image.fromarray(np.stack([np.full((SIDE, SIDE), 100, np.uint8), half], -1))  # mode LA
    shown_la = np.where(half[..., None] == 255, 100, 255).repeat(3, -1).astype(np.uint8)
    pal = Image.new("P", (SIDE, SIDE), 0)
    pal.paste(1, (SIDE // 2, 0, SIDE, SIDE))
    pal.putpalette([10, 20, 30, 200, 100, 50])
    pal.info["transparency"] = 0
    shown_p = np.where(half[..., None] == 255, [200, 100, 50], [255, 255, 255]).astype(np.uint8)
    cmyk = encode(Image.new("CMYK", (SIDE, SIDE), (0, 255, 0, 0)), "JPEG")
    return {"I;16": (png16(), np.repeat((GRADIENT >> 8).astype(np.uint8)[..., None], 3, -1)),
            "LA": (encode(la), shown_la), "P+transparency": (encode(pal, "PNG"), shown_p),
            "CMYK": (cmyk, np.asarray(Image.open(io.BytesIO(cmyk)).convert("RGB")))}


@pytest.mark.parametrize("mode", ["I;16", "LA", "P+transparency", "CMYK"])
def test_every_image_mode_is_stored_as_its_8bit_colours(mode, tmp_path):
    data, shown = _modes()[mode]
    src, out = tmp_path / "raw", tmp_path / "out"
    _image_folder(src, writer(lambda split: data))
    assert run("image_folder", src, out) == 0
    for cell in stored(out):
        assert np.abs(np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB")).astype(int) - shown).max() <= 1


def test_training_time_helper_scales_every_mode():
    from hf_tasks.images import to_rgb

    gray = (GRADIENT >> 8).astype(np.uint8)
    cases = {"I;16": Image.fromarray(GRADIENT),
             "I;16B": Image.frombytes("I;16B", (SIDE, SIDE), GRADIENT.astype(">u2").tobytes()),
             "I": Image.fromarray(GRADIENT.astype(np.int32)),
             "F": Image.fromarray((GRADIENT / 65535.0).astype(np.float32))}
    for mode, image in cases.items():
        assert image.mode == mode
        pixels = np.asarray(to_rgb(image))
        assert pixels.shape == (SIDE, SIDE, 3) and np.abs(pixels[..., 0].astype(int) - gray).max() <= 1, mode
    rgb = Image.new("RGB", (2, 2), (1, 2, 3))
    assert to_rgb(rgb) is rgb  # already 8-bit RGB: untouched


# ------------------------------------------------------------------------ 11: --skip-bad never empties a split
EMPTIED = {"image_folder": "validation", "tiny_imagenet": "validation", "yolo": "validation",
           "coco_detection": "validation", "flickr8k": "validation", "coco_captions": "test"}


@pytest.mark.parametrize("source", sorted(EMPTIED))
def test_skip_bad_that_empties_a_split_is_an_error(source, tmp_path, capsys):
    split, src, out = EMPTIED[source], tmp_path / "raw", tmp_path / "out"
    extra = LAYOUTS[source](src, writer(lambda s: b"" if s == split else jpeg_bytes(7, SIDE)))
    assert run(source, src, out, *extra, "--skip-bad") == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err and f"{split} split" in err and "empty" in err, err
    assert not out.exists()


# ------------------------------------------------------------------------------------- 13: duplicate boxes
def boxes(out: Path, split: str = "train") -> dict[str, list]:
    rows = datasets.load_from_disk(str(out))[split].cast_column("image", datasets.Image(decode=False))
    return {row["image"]["path"]: row["objects"]["bbox"] for row in rows}


def test_yolo_duplicate_label_lines_are_removed_and_counted(tmp_path):
    src, out = tmp_path / "raw", tmp_path / "out"
    _yolo(src, writer(lambda s: jpeg_bytes(3, SIDE)))
    write(src / "labels" / "train" / "a0.txt", "0 0.5 0.5 0.25 0.25\n0 0.25 0.25 0.25 0.25\n0 0.5 0.5 0.25 0.25\n")
    assert run("yolo", src, out) == 0
    assert boxes(out)["images__train__a0.png"] == [[6.0, 6.0, 4.0, 4.0], [2.0, 2.0, 4.0, 4.0]]
    assert report_of(out)["info"]["duplicate_boxes_removed"] == 1


def test_coco_duplicate_annotations_are_removed_and_counted(tmp_path):
    src, out = tmp_path / "raw", tmp_path / "out"
    _coco_detection(src, writer(lambda s: jpeg_bytes(3, SIDE)))
    same = {"image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]}
    annotations = [{"id": 1, **same}, {"id": 2, **same}, {"id": 1, **same},  # same box twice, same entry twice
                   {"id": 3, "image_id": 2, "category_id": 1, "bbox": [2, 2, 4, 4]}]
    write(src / "annotations" / "instances_train2017.json", _coco_json([1, 2, 3], annotations))
    assert run("coco_detection", src, out) == 0
    assert boxes(out)["train2017__1.png"] == [[1.0, 1.0, 8.0, 8.0]]
    assert report_of(out)["info"]["duplicate_boxes_removed"] == 2


def test_coco_duplicate_annotation_id_with_other_content_names_the_id(tmp_path, capsys):
    src, out = tmp_path / "raw", tmp_path / "out"
    _coco_detection(src, writer(lambda s: jpeg_bytes(3, SIDE)))
    annotations = [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]},
                   {"id": 7, "image_id": 2, "category_id": 1, "bbox": [2, 2, 4, 4]}]
    write(src / "annotations" / "instances_train2017.json", _coco_json([1, 2, 3], annotations))
    assert run("coco_detection", src, out) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "annotation id 7" in err and "Traceback" not in err, err


# --------------------------------------------------------------------------- 12: YOLO edge overshoot ≤ 1 %
def test_yolo_small_edge_overshoot_is_clipped_and_counted(tmp_path, capsys):
    src, out = tmp_path / "raw", tmp_path / "out"
    _yolo(src, writer(lambda s: encode(Image.new("RGB", (250, 100)), "PNG")))
    write(src / "labels" / "train" / "a0.txt", "0 0.952 0.5 0.104 0.2\n0 0.5 0.5 0.25 0.25\n")  # x_max 1.004: 1 px
    assert run("yolo", src, out) == 0
    assert np.allclose(boxes(out)["images__train__a0.png"], [[225, 40, 25, 20], [93.75, 37.5, 62.5, 25]])
    assert report_of(out)["info"]["boxes_clipped"] == 1 and "clipped" in capsys.readouterr().out
    write(src / "labels" / "train" / "a1.txt", "0 0.96 0.5 0.12 0.2\n")  # x_max 1.02: 2 % past the edge
    assert run("yolo", src, out) == 2
    err = capsys.readouterr().err
    assert "labels/train/a1.txt:1" in err and "outside the image" in err, err


# ---------------------------------------------------------------- 10: symbolic links, one rule for every source
def _linking(secret: Path) -> Put:
    """Writes the images, except that the first train image is a symbolic link to ``secret`` outside --src."""
    links: list[Path] = []

    def put(path: Path, split: str) -> None:
        if split == "train" and not links:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(secret)
            links.append(path)
        else:
            write(path, jpeg_bytes(4, SIDE))
    return put


@pytest.mark.parametrize("source", sorted(LAYOUTS))
def test_file_links_leaving_src_are_refused(source, tmp_path, capsys):
    secret, src, out = write(tmp_path / "secret.png", jpeg_bytes(999, SIDE)), tmp_path / "raw", tmp_path / "out"
    extra = LAYOUTS[source](src, _linking(secret))
    assert run(source, src, out, *extra) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert run(source, src, out, *extra, "--skip-bad") == 0
    rejected = report_of(out)["rejected"]
    assert rejected["count"] == 1 and any(w in rejected["items"][0]["reason"] for w in ("outside", "escapes"))
    assert secret.read_bytes() not in [cell["bytes"] for cell in stored(out)]


FOLDER_LINKS = {"image_folder": "train/b", "cats_vs_dogs": "PetImages/Dog", "yolo": "images/train",
                "tiny_imagenet": "tiny-imagenet-200/train/n02/images"}


@pytest.mark.parametrize("source", sorted(FOLDER_LINKS))
def test_linked_folders_inside_src_are_read_and_outside_refused(source, tmp_path, capsys):
    src, out = tmp_path / "raw", tmp_path / "out"
    extra = LAYOUTS[source](src, writer(lambda s: jpeg_bytes(5, SIDE)))
    pool, elsewhere, folder = src / ".pool", tmp_path / "elsewhere", src / FOLDER_LINKS[source]
    for i in range(2):
        write(pool / f"extra_{i}.png", jpeg_bytes(10 + i, SIDE))
    write(elsewhere / "x.png", jpeg_bytes(20, SIDE))
    (folder / "more").symlink_to(os.path.relpath(pool, folder), target_is_directory=True)
    (folder / "away").symlink_to(elsewhere, target_is_directory=True)
    assert run(source, src, out, *extra) == 2
    err = capsys.readouterr().err
    assert "away" in err and "outside" in err and "Traceback" not in err, err
    assert run(source, src, out, *extra, "--skip-bad") == 0
    rejected = report_of(out)["rejected"]
    assert rejected["count"] == 1 and rejected["items"][0]["path"].endswith("away")
    assert sum("more__extra_" in cell["path"] for cell in stored(out)) == 2


def test_yolo_link_cannot_put_one_image_in_two_splits(tmp_path, capsys):
    src, out = tmp_path / "raw", tmp_path / "out"
    _yolo(src, writer(lambda s: jpeg_bytes(6, SIDE)))
    (src / "images" / "train" / "more").symlink_to(Path("..") / "val", target_is_directory=True)
    assert run("yolo", src, out) == 2
    err = capsys.readouterr().err
    assert "in both train and validation" in err and "images/val/b0.png" in err, err


# ------------------------------------------------------------------- 14: a stray quote in Flickr8k's CSV
@pytest.mark.parametrize("line", [3, 6], ids=["middle", "last-line"])
def test_flickr_stray_quote_is_reported_at_its_line(line, tmp_path, capsys):
    src, out = tmp_path / "raw", tmp_path / "out"
    _flickr8k(src, writer(lambda s: jpeg_bytes(2, SIDE)))
    for name in ("train", "dev", "test"):
        (src / f"Flickr_8k.{name}Images.txt").unlink()  # seeded split
    rows = [f"{i}.png,a thing number {i}" for i in range(5)]
    rows[line - 2] = f'{line - 2}.png,"a thing with a stray quote'
    write(src / "captions.txt", "image,caption\n" + "\n".join(rows) + "\n")
    assert run("flickr8k", src, out) == 2
    err = capsys.readouterr().err
    assert f"captions.txt:{line}: " in err and "quote" in err and "Traceback" not in err, err
    assert run("flickr8k", src, out, "--skip-bad") == 0
    stray = [item for item in report_of(out)["rejected"]["items"] if item["path"] == "captions.txt"]
    assert [item["line"] for item in stray] == [line] and "quote" in stray[0]["reason"]
    built = datasets.concatenate_datasets(list(datasets.load_from_disk(str(out)).values()))
    captions = dict(zip(built["image_id"], built["captions"]))
    assert captions == {f"{i}.png": [f"a thing number {i}"] for i in range(5) if i != line - 2}


# ------------------------------------------------------------- 17: Tiny ImageNet's carve on a reduced download
def test_tiny_imagenet_carve_larger_than_a_reduced_class_is_refused(tmp_path, capsys):
    src, out = tmp_path / "raw", tmp_path / "out"
    _tiny_imagenet(src, writer(lambda s: jpeg_bytes(1, SIDE)))
    (src / "tiny-imagenet-200" / "train" / "n02" / "images" / "n02_3.png").unlink()  # n02 keeps 3 train images
    assert run("tiny_imagenet", src, out, "--test-per-class", "2") == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "n02" in err and "3 train images" in err and "--test-per-class" in err, err
    assert not out.exists()
    assert run("tiny_imagenet", src, out, "--test-per-class", "1") == 0
    printed = capsys.readouterr().out
    assert "1 test + 3 train" in printed and "1 test + 2 train" in printed, printed
    assert report_of(out)["info"]["test_carve"] == {"n01": {"test": 1, "train": 3}, "n02": {"test": 1, "train": 2}}
