"""Tiny ImageNet build script on a tiny copy of the real ``tiny-imagenet-200`` layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import datasets
import pytest

from dataset_scripts import cli, common, get_source
from dataset_scripts.captions_common import UNSAFE_NAME
from hf_tasks.errors import DataError
from tests.helpers import jpeg_bytes, write

# wnids.txt order is deliberately not sorted: it is the class order.
WNIDS = ["n02123045", "n01443537", "n03126707", "n01629819", "n02012849"]
WORDS = {
    "n01443537": "goldfish, Carassius auratus",
    "n01629819": "European fire salamander, Salamandra salamandra",
    "n02123045": "tabby, tabby cat",
    "n02012849": "crane",  # the bird ...
    "n03126707": "crane",  # ... and the machine share a first synonym
    "n00001740": "entity",  # words.txt covers all of ImageNet, not just the 200
}
NAMES = ["tabby", "goldfish", "crane (n03126707)", "European fire salamander", "crane (n02012849)"]
TRAIN_PER_CLASS, VAL_PER_CLASS = 8, 2






@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """``raw/tiny-imagenet-200`` with 5 classes × 8 train, 2 val each, boxes files and an unlabelled test/."""
    root = tmp_path / "raw" / "tiny-imagenet-200"
    write(root / "wnids.txt", "\n".join(WNIDS) + "\n")
    write(root / "words.txt", "".join(f"{w}\t{t}\n" for w, t in sorted(WORDS.items())))
    for c, wnid in enumerate(WNIDS):
        boxes = []
        for i in range(TRAIN_PER_CLASS):
            write(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", jpeg_bytes(100 * c + i))
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t10\t10\n")
        write(root / "train" / wnid / f"{wnid}_boxes.txt", "".join(boxes))
    lines = []
    for k in range(VAL_PER_CLASS * len(WNIDS)):
        write(root / "val" / "images" / f"val_{k}.JPEG", jpeg_bytes(1000 + k))
        lines.append(f"val_{k}.JPEG\t{WNIDS[k % len(WNIDS)]}\t1\t2\t30\t40\n")
    write(root / "val" / "val_annotations.txt", "".join(lines))
    write(root / "test" / "images" / "test_0.JPEG", jpeg_bytes(5000))
    return tmp_path / "raw"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    get_source("tiny_imagenet").add_arguments(parser)
    return argparse.Namespace(**vars(parser.parse_args(["--out", "unused-out", *argv])), source="tiny_imagenet")


def build(src: Path, *argv: str):
    return get_source("tiny_imagenet").build(parse("--src", str(src), "--test-per-class", "2", *argv))


def stored_paths(split: datasets.Dataset) -> list[str]:
    return [cell["path"] for cell in split.cast_column("image", datasets.Image(decode=False))["image"]]


def test_all_classes_names_order_and_splits(tiny: Path):
    result = build(tiny)
    assert result.info["class_names"] == NAMES and result.info["wnids"] == WNIDS
    assert result.info["words"]["n01443537"] == "goldfish, Carassius auratus"
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 30, "validation": 10, "test": 10}
    assert result.info["counts"]["test"] == dict.fromkeys(NAMES, 2)
    for name, split in result.dataset.items():
        assert split.features["label"].names == NAMES
        assert all(WNIDS[label] == wnid for label, wnid in zip(split["label"], split["wnid"]))
        prefix = "val__" if name == "validation" else "train__"
        assert all(p.startswith(prefix) for p in stored_paths(split)), name  # official test/ never included
    cell = result.dataset["validation"].cast_column("image", datasets.Image(decode=False))[0]["image"]
    assert cell["bytes"] == (tiny / "tiny-imagenet-200" / "val" / "images" / "val_0.JPEG").read_bytes()
    assert "official train" in result.info["split_method"]["test"] and "not included" in result.info["official_test"]
    # --src may also be the tiny-imagenet-200 folder itself
    assert build(tiny / "tiny-imagenet-200").info["class_names"] == NAMES


def test_class_subset_is_seeded_and_keeps_wnids_order(tiny: Path):
    first, again = build(tiny, "--classes", "3"), build(tiny, "--classes", "3")
    assert first.info["wnids"] == again.info["wnids"] and len(first.info["wnids"]) == 3
    assert first.info["wnids"] == [w for w in WNIDS if w in first.info["wnids"]]
    assert first.dataset["train"]["wnid"] == again.dataset["train"]["wnid"]
    chosen = {tuple(build(tiny, "--classes", "3", "--seed", str(s)).info["wnids"]) for s in range(6)}
    assert len(chosen) > 1  # a different seed may pick different classes
    named = build(tiny, "--classes", "n01629819,n02123045")
    assert named.info["wnids"] == ["n02123045", "n01629819"]  # wnids.txt order, not the order given
    assert named.info["class_names"] == ["tabby", "European fire salamander"]
    assert {n: len(s) for n, s in named.dataset.items()} == {"train": 12, "validation": 4, "test": 4}
    with pytest.raises(DataError, match="Did you mean 'n01629819'"):
        build(tiny, "--classes", "n01629818")
    with pytest.raises(DataError, match="between 1 and 5"):
        build(tiny, "--classes", "6")


def test_cap_applies_after_the_test_carve(tiny: Path):
    full, capped = build(tiny), build(tiny, "--max-per-class", "3")
    assert capped.info["counts"]["train"] == dict.fromkeys(NAMES, 3)
    assert capped.info["unused_train_images"] == 5 * (TRAIN_PER_CLASS - 2 - 3)
    assert stored_paths(capped.dataset["test"]) == stored_paths(full.dataset["test"])  # carved before the cap
    assert not set(stored_paths(capped.dataset["test"])) & set(stored_paths(full.dataset["train"]))
    assert set(stored_paths(capped.dataset["train"])) < set(stored_paths(full.dataset["train"]))
    subset = build(tiny, "--classes", "n01443537", "--max-per-class", "3")
    goldfish = [p for p in stored_paths(full.dataset["test"]) if "n01443537" in p]
    assert stored_paths(subset.dataset["test"]) == goldfish  # per-class streams: other classes don't matter


def _break(root: Path) -> None:
    """Every bad-input kind this source can meet."""
    data = jpeg_bytes(7)
    write(root / "train" / "n01443537" / "images" / "n01443537_3.JPEG", data[: len(data) // 2])
    write(root / "train" / "n01443537" / "images" / "notes.txt", "x")
    write(root / "train" / "n09999999" / "images" / "n09999999_0.JPEG", jpeg_bytes(8))
    write(root / "val" / "images" / "val_1.JPEG", b"")
    write(root / "val" / "images" / "val_unlabelled.JPEG", jpeg_bytes(9))
    write(root.parent / "secret.JPEG", jpeg_bytes(10))
    extra = ("no tabs here\n"                                   # line 11
             "val_x.JPEG\tn07777777\t0\t0\t1\t1\n"                 # line 12: unknown wnid
             "val_missing.JPEG\tn01443537\t0\t0\t1\t1\n"           # line 13: missing image
             "../../secret.JPEG\tn01443537\t0\t0\t1\t1\n"          # line 14: escapes val/images
             "/etc/passwd\tn01443537\t0\t0\t1\t1\n")               # line 15: absolute
    with open(root / "val" / "val_annotations.txt", "a") as f:
        f.write(extra)


def test_bad_inputs_are_reported_by_file_and_line(tiny: Path, tmp_path: Path, monkeypatch):
    root = tiny / "tiny-imagenet-200"
    _break(root)
    opened: list[str] = []
    real = common.check_image
    monkeypatch.setattr(common, "check_image", lambda p: opened.append(str(p)) or real(p))
    with pytest.raises(DataError) as err:
        build(tiny)
    message = str(err.value)
    assert "10 bad input file(s)" in message and "--skip-bad" in message
    for where in ("train/n01443537/images/n01443537_3.JPEG: truncated", "train/n01443537/images/notes.txt",
                  "train/n09999999: class folder not listed", "val/images/val_1.JPEG: empty",
                  "val/images/val_unlabelled.JPEG: image has no label", "val/val_annotations.txt:11: malformed",
                  "val_annotations.txt:12: label is not a wnid",
                  "val_annotations.txt:13: annotation refers to a missing",
                  "val_annotations.txt:14: image name escapes", "val_annotations.txt:15: image name escapes"):
        assert where in message, where
    assert not any("secret" in p or "passwd" in p for p in opened)  # never opened

    out = tmp_path / "ds"
    argv = ["build-dataset", "tiny_imagenet", "--src", str(tiny), "--out", str(out), "--skip-bad",
            "--test-per-class", "2"]
    assert cli.main(argv) == 0
    report = json.loads((out / "build_report.json").read_text())
    assert report["rejected"]["count"] == 10 and report["info"]["rejected"] == 10
    assert {"path": "val/val_annotations.txt", "line": 14, "reason": UNSAFE_NAME} in report["rejected"]["items"]
    dataset = datasets.load_from_disk(str(out))
    assert {n: len(s) for n, s in dataset.items()} == {"train": 29, "validation": 9, "test": 10}


def test_structural_errors_are_one_clear_message(tiny: Path):
    root = tiny / "tiny-imagenet-200"
    with pytest.raises(DataError, match="--max-per-class"):
        build(tiny, "--max-per-class", "0")
    (root / "wnids.txt").write_text("n02123045\nn01443537\nn02123045\n")
    with pytest.raises(DataError, match=r"wnids.txt:3: 'n02123045' repeats line 1"):
        build(tiny)
    with pytest.raises(DataError, match="not a Tiny ImageNet download"):
        build(tiny / "tiny-imagenet-200" / "train")


def test_build_is_deterministic(tiny: Path):
    first, second = build(tiny, "--classes", "3", "--max-per-class", "4"), build(tiny, "--classes", "3",
                                                                                 "--max-per-class", "4")
    for name in first.dataset:
        assert first.dataset[name]._fingerprint == second.dataset[name]._fingerprint
