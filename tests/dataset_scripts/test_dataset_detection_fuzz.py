"""Fuzzing the detection parsers: random YOLO label text, COCO-like json and data.yaml text raise only DataError."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataset_scripts.coco_detection import parse_coco
from dataset_scripts.common import BadInputReport
from dataset_scripts.yolo import load_data_yaml, names_from_yaml, parse_labels, yaml_splits
from hf_tasks.errors import DataError

TOKENS = st.sampled_from(["0", "1", "2", "-1", "3", "0.5", "1.0", "1.5", "0", "nan", "inf", "-inf", "1e999", "x",
                          "0x1", "1,2", "\u0661", "1_0", "0.25", "2.0", "-0.0", "NaN", "1e-320"])
LINES = st.lists(st.one_of(TOKENS, st.floats().map(repr), st.text(max_size=3)), max_size=7).map(" ".join)
LABEL_TEXT = st.one_of(st.text(), st.lists(LINES, max_size=6).map("\n".join), st.binary().map(
    lambda b: b.decode("latin-1")))


@settings(max_examples=100, deadline=None)
@given(text=LABEL_TEXT, num_classes=st.integers(1, 4))
def test_fuzz_yolo_label_parser_never_crashes(text: str, num_classes: int):
    boxes, problems = parse_labels(text, num_classes)
    lines = text.split("\n")
    assert all(1 <= line <= len(lines) and lines[line - 1].split() for line, _ in problems)
    for cls, cx, cy, w, h in boxes:
        assert 0 <= cls < num_classes and all(0 <= v <= 1 for v in (cx, cy, w, h)) and w * h > 0


LEAF = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(), st.text(max_size=4))
ANY_JSON = st.recursive(LEAF, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                        max_leaves=12)
SMALL_ID = st.one_of(st.integers(0, 3), ANY_JSON)
CATEGORY = st.fixed_dictionaries({}, optional={"id": SMALL_ID, "name": st.one_of(st.sampled_from("ab"), ANY_JSON)})
IMAGE = st.fixed_dictionaries({}, optional={"id": SMALL_ID, "file_name": st.one_of(st.sampled_from(
    ["a.jpg", "../a.jpg", "/a.jpg", ""]), ANY_JSON), "width": SMALL_ID, "height": st.one_of(st.integers(1, 9), ANY_JSON)})
NUMBER = st.one_of(st.integers(-2, 9), st.floats(), st.text(max_size=2), st.none())
ANNOTATION = st.fixed_dictionaries({}, optional={
    "id": SMALL_ID, "image_id": SMALL_ID, "category_id": SMALL_ID, "iscrowd": SMALL_ID, "area": NUMBER,
    "bbox": st.one_of(st.lists(NUMBER, min_size=3, max_size=5), ANY_JSON)})
COCO_LIKE = st.fixed_dictionaries({}, optional={
    "images": st.one_of(st.lists(st.one_of(IMAGE, ANY_JSON), max_size=4), ANY_JSON),
    "annotations": st.one_of(st.lists(st.one_of(ANNOTATION, ANY_JSON), max_size=5), ANY_JSON),
    "categories": st.one_of(st.lists(CATEGORY, max_size=3), ANY_JSON)})


@settings(max_examples=100, deadline=None)
@given(data=st.one_of(COCO_LIKE, ANY_JSON))
def test_fuzz_coco_parser_raises_only_data_error(data):
    report = BadInputReport(root=Path("/d"))
    try:
        index = parse_coco(data, Path("/d/instances_x.json"), report)
    except DataError:
        return
    for image_id, objects in index.objects.items():
        for obj in objects:
            assert 0 <= obj.category < len(index.categories) and obj.bbox[2] > 0 and obj.bbox[3] > 0
    report.to_dict()


YAML_TEXT = st.one_of(st.text(max_size=60), st.lists(st.sampled_from(
    ["names: [a, b]", "names: {0: a, 1: b}", "names: {1: a}", "nc: 2", "nc: x", "train: images", "val: ../x",
     "path: /", "train: [a, 3]", "test:", "download: x", "names:", "- a", "names: {a: 1}", "nc: -1", "&a [*a]",
     "!!python/object/apply:os.system [echo]", "names: [[1]]", "? [a]\n: b"]), max_size=6).map("\n".join))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=YAML_TEXT)
def test_fuzz_data_yaml_raises_only_data_error(text: str):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "images").mkdir()
        try:
            data = load_data_yaml(text, "data.yaml")
            names_from_yaml(data, "data.yaml")
            yaml_splits(data, "data.yaml", Path(folder))
        except DataError:
            pass
