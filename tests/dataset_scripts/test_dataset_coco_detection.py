"""The COCO instances build script (``coco_detection``) on tiny raw layouts written in the real format."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from dataset_scripts import cli
from hf_tasks.errors import DataError
from tests.helpers import write
from tests.dataset_scripts.test_dataset_detection import H, W, build, by_stem, image_bytes

COCO_CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}]


def coco_json(images: list[tuple[int, str]], annotations: list[dict]) -> str:
    return json.dumps({"info": {}, "categories": COCO_CATEGORIES, "annotations": annotations,
                       "images": [{"id": i, "file_name": f, "width": W, "height": H} for i, f in images]})


@pytest.fixture
def coco_src(tmp_path: Path) -> Path:
    """``annotations/instances_{train,val}2017.json`` + ``{train,val}2017/`` with a crowd box and a json area."""
    src = tmp_path / "coco"
    for split, ids in (("train", [101, 102, 103, 104]), ("val", [201, 202])):
        for i in ids:
            write(src / f"{split}2017" / f"{i:012d}.jpg", image_bytes(i))
    train = [
        {"id": 1, "image_id": 101, "category_id": 18, "bbox": [5, 7, 11, 9], "area": 80.5, "iscrowd": 0},
        {"id": 2, "image_id": 101, "category_id": 1, "bbox": [0, 0, 64, 48], "area": 3072, "iscrowd": 1},
        {"id": 3, "image_id": 102, "category_id": 3, "bbox": [10.5, 20.25, 7.5, 3], "iscrowd": 0},
        {"id": 4, "image_id": 104, "category_id": 1, "bbox": [1, 2, 3, 4]},
    ]
    val = [{"id": 9, "image_id": 201, "category_id": 3, "bbox": [2, 2, 60, 44], "area": 2000, "iscrowd": 0}]
    write(src / "annotations" / "instances_train2017.json",
          coco_json([(i, f"{i:012d}.jpg") for i in (101, 102, 103, 104)], train))
    write(src / "annotations" / "instances_val2017.json", coco_json([(i, f"{i:012d}.jpg") for i in (201, 202)], val))
    return src



def test_coco_round_trip_remap_and_crowd(coco_src: Path):
    result = build("coco_detection", "--src", str(coco_src))
    dataset, info = result.dataset, result.info
    assert info["class_names"] == ["person", "car", "dog"] and info["category_ids"] == [1, 3, 18]
    assert info["box_format"] == "coco_xywh_pixels" and "no test split" in info["splits_note"]
    assert {n: len(s) for n, s in dataset.items()} == {"train": 4, "validation": 2}
    assert dataset["train"]["image_id"] == [101, 102, 103, 104]
    rows = {r["image_id"]: r for r in dataset["train"]}
    assert rows[101]["objects"] == {"bbox": [[5, 7, 11, 9], [0, 0, 64, 48]], "category": [2, 0],
                                    "iscrowd": [False, True], "area": [80.5, 3072.0]}
    assert rows[102]["objects"]["bbox"] == [[10.5, 20.25, 7.5, 3.0]] and rows[102]["objects"]["area"] == [22.5]
    assert rows[103]["objects"]["bbox"] == [] and rows[104]["objects"]["iscrowd"] == [False]
    assert info["num_crowd"] == {"train": 1, "validation": 0}
    cell = by_stem(dataset["validation"])["000000000201"]
    assert cell["image"]["bytes"] == (coco_src / "val2017" / "000000000201.jpg").read_bytes()


def test_coco_single_file_is_split_by_seed(tmp_path: Path):
    images = tmp_path / "imgs"
    for i in range(10):
        write(images / f"{i}.png", image_bytes(i, fmt="PNG"))
    ann = write(tmp_path / "ann" / "instances_x.json",
                coco_json([(i, f"{i}.png") for i in range(10)],
                          [{"id": i, "image_id": i, "category_id": 3, "bbox": [1, 1, 5, 5]} for i in range(10)]))
    result = build("coco_detection", "--annotations", str(ann), "--images", str(images))
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 8, "validation": 2}
    assert result.info["annotation_files"] == {"all": "ann/instances_x.json"}
    with pytest.raises(DataError, match="not both"):
        build("coco_detection", "--src", str(tmp_path), "--annotations", str(ann))
    with pytest.raises(DataError, match="--images"):
        build("coco_detection", "--annotations", str(ann))


def test_coco_single_split_under_src_is_carved(coco_src: Path):
    (coco_src / "annotations" / "instances_val2017.json").unlink()
    result = build("coco_detection", "--src", str(coco_src), "--val-fraction", "0.25")
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 3, "validation": 1}
    assert "random (seeded)" in result.info["split_method"]["validation"]


def _coco_edit(src: Path, mutate) -> None:
    path = src / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))


JSON = "annotations/instances_train2017.json"
COCO_BAD = {  # name → (mutation of the train json or files, reported path, reason fragment, image id dropped)
    "unknown-image": (lambda d, s: d["annotations"].append({"id": 7, "image_id": 999, "category_id": 1,
                                                             "bbox": [1, 1, 2, 2]}),
                      f"{JSON} (annotation id 7)", "image_id not in images", None),
    "unknown-category": (lambda d, s: d["annotations"][0].update(category_id=2),
                         f"{JSON} (annotation id 1)", "category_id not in categories", 101),
    "zero-width": (lambda d, s: d["annotations"][2].update(bbox=[1, 1, 0, 5]),
                   f"{JSON} (annotation id 3)", "width or height ≤ 0", 102),
    "missing-file": (lambda d, s: (s / "train2017" / "000000000103.jpg").unlink(),
                     f"{JSON} (image id 103)", "image file not found", 103),
    "traversal": (lambda d, s: d["images"][2].update(file_name="../secret.jpg"),
                  f"{JSON} (image id 103)", "leaves the image folder", 103),
    "absolute": (lambda d, s: d["images"][2].update(file_name=str(s / "secret.jpg")),
                 f"{JSON} (image id 103)", "leaves the image folder", 103),
    "truncated": (lambda d, s: write(s / "train2017" / "000000000104.jpg", image_bytes(3)[:200]),
                  "train2017/000000000104.jpg", "truncated", 104),
}


@pytest.mark.parametrize("kind", sorted(COCO_BAD))
def test_coco_bad_input_stops_or_is_skipped(coco_src: Path, tmp_path: Path, kind: str):
    mutate, where, reason, dropped = COCO_BAD[kind]
    write(coco_src / "secret.jpg", b"")  # were it ever read it would be reported as an empty file
    _coco_edit(coco_src, lambda d: mutate(d, coco_src))
    with pytest.raises(DataError) as err:
        build("coco_detection", "--src", str(coco_src))
    message = str(err.value)
    assert "1 bad input file(s)" in message and f"- {where}: " in message and reason in message, message
    out = tmp_path / "ds"
    assert cli.main(["build-dataset", "coco_detection", "--src", str(coco_src), "--out", str(out), "--skip-bad"]) == 0
    report = json.loads((out / "build_report.json").read_text())
    [item] = report["rejected"]["items"]
    assert (item["path"], item["line"]) == (where, None) and reason in item["reason"]
    assert report["info"]["rejected"] == report["rejected"]["count"] == 1
    ids = datasets.load_from_disk(str(out))["train"]["image_id"]
    assert dropped not in ids and len(ids) == 4 - (dropped is not None)


def test_coco_structure_errors_name_the_file(coco_src: Path):
    path = coco_src / "annotations" / "instances_val2017.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"instances_val2017.json line 2"):
        build("coco_detection", "--src", str(coco_src))
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1}]}))
    with pytest.raises(DataError, match="integer 'id' and a string 'name'"):
        build("coco_detection", "--src", str(coco_src))
