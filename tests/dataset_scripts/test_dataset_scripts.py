"""Build scripts on tiny raw layouts in the real formats (PetImages, Kaggle flat train/, class folders)."""

from __future__ import annotations

import argparse
from functools import partial
import hashlib
import json
from pathlib import Path

import datasets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ImageFile

from dataset_scripts import SOURCES, cli, common, get_source
from dataset_scripts.common import BadInputReport, check_image, stratified_split
from dataset_scripts.publish import publish
from dataset_scripts.shapes import write_image_folder
from hf_tasks.errors import DataError
from tests.helpers import jpeg_bytes as small_jpeg
from tests.helpers import write

jpeg_bytes = partial(small_jpeg, size=48)  # a real (noisy, so not tiny) baseline JPEG

THUMBS_DB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # OLE2 header, as in Windows' Thumbs.db


# ------------------------------------------------------------------------------------------- raw fixtures




@pytest.fixture
def pet_images(tmp_path: Path) -> Path:
    """``raw/PetImages/{Cat,Dog}`` with 10 good JPEGs each plus the defects the real download has."""
    root = tmp_path / "raw" / "PetImages"
    for i in range(10):
        write(root / "Cat" / f"{i}.jpg", jpeg_bytes(i))
        write(root / "Dog" / f"{i}.jpg", jpeg_bytes(100 + i))
    write(root / "Cat" / "666.jpg", b"")
    good = jpeg_bytes(999)
    write(root / "Dog" / "11702.jpg", good[: len(good) // 2])
    write(root / "Cat" / "Thumbs.db", THUMBS_DB)
    write(root / "Dog" / "Thumbs.db", THUMBS_DB)
    return tmp_path / "raw"


PET_BAD = {"Cat/666.jpg", "Dog/11702.jpg", "Cat/Thumbs.db", "Dog/Thumbs.db"}


@pytest.fixture
def flat_train(tmp_path: Path) -> Path:
    """Kaggle competition layout ``raw/train/cat.N.jpg`` plus one misnamed file."""
    train = tmp_path / "raw" / "train"
    for i in range(8):
        write(train / f"cat.{i}.jpg", jpeg_bytes(i))
        write(train / f"dog.{i}.jpg", jpeg_bytes(50 + i))
    write(train / "kitten.3.jpg", jpeg_bytes(77))
    return tmp_path / "raw"


@pytest.fixture
def class_tree(tmp_path: Path) -> Path:
    """``raw/<class>/*`` with three classes of 10 images (PNG and JPEG mixed, upper-case extension too)."""
    src = write_image_folder(tmp_path / "raw", ["circle", "square"], per_class=10, image_size=32, seed=1)
    for i in range(10):
        write(src / "blob" / f"b{i}.JPG", jpeg_bytes(200 + i))
    return src


@pytest.fixture
def split_tree(tmp_path: Path) -> Path:
    """``raw/{train,val,test}/<class>/*``: folder splits must be kept as given."""
    src = tmp_path / "raw"
    write_image_folder(src / "train", ["circle", "triangle"], per_class=12, image_size=32, seed=2)
    write_image_folder(src / "val", ["circle", "triangle"], per_class=3, image_size=32, seed=3)
    write_image_folder(src / "test", ["circle", "triangle"], per_class=4, image_size=32, seed=4)
    return src


def parse(source: str, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    get_source(source).add_arguments(parser)
    return argparse.Namespace(**vars(parser.parse_args(list(argv))), source=source)


def stored_bytes(split: datasets.Dataset) -> list[dict]:
    return list(split.cast_column("image", datasets.Image(decode=False))["image"])


def source_file(root: Path, cell: dict) -> Path:
    """The raw file a stored image came from (the stored name is the flattened relative path)."""
    return root / cell["path"].replace("__", "/")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------- registry & checks
def test_registry_unknown_source_names_nearest():
    assert {"image_folder", "cats_vs_dogs", "shapes"} <= set(SOURCES)
    with pytest.raises(DataError, match=r"Did you mean 'shapes'\?.*Known sources: cats_vs_dogs, .*image_folder, shapes"):
        get_source("shape")


def test_check_image_reasons(tmp_path: Path, monkeypatch):
    good = write(tmp_path / "good.jpg", jpeg_bytes(1))
    empty = write(tmp_path / "empty.jpg", b"")
    data = jpeg_bytes(2)
    truncated = write(tmp_path / "cut.jpg", data[: len(data) // 2])
    thumbs = write(tmp_path / "Thumbs.db", THUMBS_DB)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # someone else's global must not hide it
    assert check_image(good) is None
    assert "empty" in check_image(empty)
    assert "truncated" in check_image(truncated)
    assert "not an image" in check_image(thumbs)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_parallel_check_matches_serial(pet_images: Path):
    paths = sorted(p for p in pet_images.rglob("*") if p.is_file())
    assert common.check_images(paths, num_proc=2) == common.check_images(paths, num_proc=1)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=5),
    val=st.sampled_from([0.0, 0.1, 0.2, 0.3]),
    test=st.sampled_from([0.0, 0.1, 0.25]),
    seed=st.integers(0, 2**16),
)
def test_stratified_split_properties(counts, val, test, seed):
    labels = [label for label, n in enumerate(counts) for _ in range(n)]
    parts = stratified_split(labels, val, test, seed)
    assert parts == stratified_split(labels, val, test, seed)
    everything = sorted(i for indices in parts.values() for i in indices)
    assert everything == list(range(len(labels)))
    for name, fraction in (("validation", val), ("test", test)):
        assert parts[name] == sorted(parts[name])
        for label, n in enumerate(counts):
            got = sum(1 for i in parts[name] if labels[i] == label)
            if fraction == 0:
                assert got == 0
            elif n >= 3:
                assert got >= 1 and abs(got - n * fraction) <= 1
    for label in range(len(counts)):
        assert any(labels[i] == label for i in parts["train"])


def test_stratified_split_rejects_bad_fractions():
    with pytest.raises(DataError, match="--val-fraction"):
        stratified_split([0, 1], 0.6, 0.5, 0)


def test_bad_input_report_summary_and_dict(tmp_path: Path):
    report = BadInputReport(root=tmp_path)
    for i in range(25):
        report.add(tmp_path / f"f{i:02d}.jpg", "empty file (0 bytes)")
    report.add(tmp_path / "notes.csv", "bad row", line=3)
    summary = report.summary()
    assert "26 bad input file(s)" in summary and "25 × empty file (0 bytes)" in summary
    assert "f00.jpg" in summary and "f24.jpg" not in summary and "and 6 more" in summary
    assert report.to_dict()["items"][-1] == {"path": "notes.csv", "line": 3, "reason": "bad row"}
    with pytest.raises(DataError, match="--skip-bad"):
        report.check(skip_bad=False)
    report.check(skip_bad=True)


# ------------------------------------------------------------------------------------------ cats vs dogs
def test_pet_images_bad_files_stop_build_with_one_message(pet_images: Path, tmp_path: Path):
    for src in (pet_images, pet_images / "PetImages"):
        with pytest.raises(DataError) as err:
            get_source("cats_vs_dogs").build(parse("cats_vs_dogs", "--src", str(src), "--out", str(tmp_path / "o")))
        message = str(err.value)
        assert "4 bad input file(s)" in message and "--skip-bad" in message
        for name in PET_BAD:
            assert name in message


def test_pet_images_skip_bad_via_cli(pet_images: Path, tmp_path: Path, capsys):
    out = tmp_path / "ds"
    argv = ["build-dataset", "cats_vs_dogs", "--src", str(pet_images), "--out", str(out), "--skip-bad"]
    assert cli.main(argv) == 0
    assert "rejected inputs: 4" in capsys.readouterr().out
    report = json.loads((out / "build_report.json").read_text())
    assert {item["path"] for item in report["rejected"]["items"]} == PET_BAD
    assert report["info"]["class_names"] == ["cat", "dog"] and report["info"]["layout"] == "pet"
    dataset = datasets.load_from_disk(str(out))
    assert sum(len(s) for s in dataset.values()) == 20
    root = pet_images / "PetImages"
    for name, split in dataset.items():
        assert split.features["label"].names == ["cat", "dog"]
        for cell, label in zip(stored_bytes(split), split["label"]):
            assert sha(cell["bytes"]) == sha(source_file(root, cell).read_bytes())  # original bytes, untouched
            assert cell["path"].startswith(("Cat__", "Dog__")[label])
        assert set(split["label"]) == {0, 1}, name  # stratified: both classes in every split


def test_flat_layout_labels_and_misnamed_file(flat_train: Path, tmp_path: Path):
    with pytest.raises(DataError, match="kitten.3.jpg"):
        get_source("cats_vs_dogs").build(parse("cats_vs_dogs", "--src", str(flat_train), "--out", "x"))
    for src in (flat_train, flat_train / "train"):
        result = get_source("cats_vs_dogs").build(
            parse("cats_vs_dogs", "--src", str(src), "--out", "x", "--skip-bad", "--val-fraction", "0.25",
                  "--test-fraction", "0.25"))
        assert result.info["layout"] == "flat" and result.report.count == 1
        assert {name: len(s) for name, s in result.dataset.items()} == {"train": 8, "validation": 4, "test": 4}
        for split in result.dataset.values():
            for cell, label in zip(stored_bytes(split), split["label"]):
                assert cell["path"].split(".")[0] == ["cat", "dog"][label]


def test_unrecognised_layout_is_explained(tmp_path: Path):
    write(tmp_path / "raw" / "random.txt", b"x")
    assert cli.main(["build-dataset", "cats_vs_dogs", "--src", str(tmp_path / "raw"), "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(DataError, match="PetImages/Cat"):
        get_source("cats_vs_dogs").build(parse("cats_vs_dogs", "--src", str(tmp_path / "raw"), "--out", "o"))


# ------------------------------------------------------------------------------------------ image folder
def test_image_folder_carves_stratified_splits(class_tree: Path):
    result = get_source("image_folder").build(parse("image_folder", "--src", str(class_tree), "--out", "x"))
    assert result.info["class_names"] == ["blob", "circle", "square"]  # sorted folder names
    assert result.info["counts"]["test"] == {"blob": 1, "circle": 1, "square": 1}
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 24, "validation": 3, "test": 3}
    for split in result.dataset.values():
        for cell, label in zip(stored_bytes(split), split["label"]):
            assert cell["path"].split("__")[0] == result.info["class_names"][label]
            assert sha(cell["bytes"]) == sha(source_file(class_tree, cell).read_bytes())


def test_image_folder_keeps_split_folders(split_tree: Path):
    result = get_source("image_folder").build(parse("image_folder", "--src", str(split_tree), "--out", "x"))
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 24, "validation": 6, "test": 8}
    assert result.info["split_method"] == dict.fromkeys(("train", "validation", "test"), "folder")
    assert all(c["path"].startswith("val__") for c in stored_bytes(result.dataset["validation"]))


def test_image_folder_carves_missing_validation_from_train(split_tree: Path):
    for path in sorted((split_tree / "val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (split_tree / "val").rmdir()
    result = get_source("image_folder").build(
        parse("image_folder", "--src", str(split_tree), "--out", "x", "--val-fraction", "0.25"))
    sizes = {n: len(s) for n, s in result.dataset.items()}
    assert sizes == {"train": 18, "validation": 6, "test": 8}
    assert all(c["path"].startswith("train__") for c in stored_bytes(result.dataset["validation"]))
    assert "stratified" in result.info["split_method"]["validation"]


def test_image_folder_reports_non_images(class_tree: Path):
    write(class_tree / "circle" / "notes.txt", b"hello")
    write(class_tree / "square" / "bad.png", b"\x89PNG garbage")
    with pytest.raises(DataError) as err:
        get_source("image_folder").build(parse("image_folder", "--src", str(class_tree), "--out", "x"))
    assert "2 bad input file(s)" in str(err.value)
    assert "circle/notes.txt" in str(err.value) and "square/bad.png" in str(err.value)


def test_builds_are_deterministic(class_tree: Path, monkeypatch):
    monkeypatch.setattr(common, "CHUNK_ROWS", 4)  # exercise the chunked/concatenated path too
    args = parse("image_folder", "--src", str(class_tree), "--out", "x", "--seed", "7")
    first, second = (get_source("image_folder").build(args).dataset for _ in range(2))
    for name in first:
        assert first[name]._fingerprint == second[name]._fingerprint
        assert stored_bytes(first[name]) == stored_bytes(second[name])
    other = get_source("image_folder").build(parse("image_folder", "--src", str(class_tree), "--out", "x"))
    assert other.dataset["test"]["label"] == first["test"]["label"]
    assert stored_bytes(other.dataset["test"]) != stored_bytes(first["test"])  # the seed matters


# ----------------------------------------------------------------------------------------------- publish
def test_publish_overwrites_atomically(class_tree: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "published"
    source = get_source("image_folder")
    first = source.build(parse("image_folder", "--src", str(class_tree), "--out", str(out)))
    publish(first, out)
    second = source.build(parse("image_folder", "--src", str(class_tree), "--out", str(out), "--test-fraction", "0.2"))
    publish(second, out)
    assert len(datasets.load_from_disk(str(out))["test"]) == 6
    assert json.loads((out / "build_report.json").read_text())["info"]["test_fraction"] == 0.2

    def crash(self, path, **kwargs):
        Path(path, "dataset_dict.json").write_text("{half")
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", crash)
    with pytest.raises(KeyboardInterrupt):
        publish(first, out)
    assert len(datasets.load_from_disk(str(out))["test"]) == 6  # the previous build is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["published", "raw"]  # no temp leftovers


def test_publish_refuses_foreign_folder(class_tree: Path, tmp_path: Path):
    result = get_source("image_folder").build(parse("image_folder", "--src", str(class_tree), "--out", "x"))
    with pytest.raises(DataError, match="refusing"):
        publish(result, class_tree)
    assert (class_tree / "circle").is_dir()


def test_parquet_output_loads(class_tree: Path, tmp_path: Path):
    out = tmp_path / "pq"
    argv = ["build-dataset", "image_folder", "--src", str(class_tree), "--out", str(out), "--format", "parquet"]
    assert cli.main(argv) == 0
    files = {s: sorted(str(p) for p in (out / s).glob("*.parquet")) for s in ("train", "validation", "test")}
    assert all(files.values())
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].features["label"].names == ["blob", "circle", "square"]
    assert len(loaded["train"]) == 24
    cell = stored_bytes(loaded["test"])[0]
    assert sha(cell["bytes"]) == sha(source_file(class_tree, cell).read_bytes())
    assert loaded["test"][0]["image"].size in {(32, 32), (48, 48)}  # decodes as an image


def test_cli_reports_user_errors_without_traceback(tmp_path: Path, capsys):
    code = cli.main(["build-dataset", "image_folder", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err


def test_out_inside_src_is_refused(class_tree: Path):
    with pytest.raises(DataError, match="overlap"):
        get_source("image_folder").build(parse("image_folder", "--src", str(class_tree), "--out", str(class_tree / "ds")))


def test_parser_mounts_under_another_cli(capsys):
    parser = argparse.ArgumentParser(prog="hf-tasks")
    cli.add_build_dataset_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["build-dataset", "shapes", "--out", "o", "--task", "detection", "--public"])
    assert (args.source, args.task, args.private, args.func) == ("shapes", "detection", False, cli.run_build_dataset)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["build-dataset", "cats_vs_dogs", "--help"])
    assert exit_info.value.code == 0 and "--skip-bad" in capsys.readouterr().out
