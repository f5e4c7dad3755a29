"""Flickr8k and COCO captions build scripts on tiny copies of the real layouts, plus a parser fuzz test."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import datasets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataset_scripts import cli, common, get_source
from dataset_scripts.coco_captions import parse_coco_json, parse_karpathy
from dataset_scripts.common import BadInputReport
from dataset_scripts.flickr8k import parse_csv_file, parse_token_file
from hf_tasks.errors import DataError
from tests.helpers import jpeg_bytes, write

UNSAFE = "image name escapes the image folder (absolute path or '..'); not opened"






def captions_for(i: int) -> list[str]:
    """Three references per image, one with commas and quotes (CSV must quote it)."""
    return [f"a dog number {i} runs", f"dog {i}, brown, on grass", f'the "good" dog {i} .']


def parse(source: str, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    get_source(source).add_arguments(parser)
    return argparse.Namespace(**vars(parser.parse_args(["--out", "unused-out", *argv])), source=source)


def build(source: str, *argv: str):
    return get_source(source).build(parse(source, *argv))


def by_id(dataset) -> dict[str, list[str]]:
    return {row["image_id"]: row["captions"] for split in dataset.values() for row in split.remove_columns("image")}


def ids(split) -> set[str]:
    return set(split["image_id"])


# ------------------------------------------------------------------------------------------------ flickr
@pytest.fixture
def kaggle(tmp_path: Path) -> Path:
    """Kaggle layout: ``Images/`` + ``captions.txt`` (CSV, written by the csv module as Kaggle does)."""
    src = tmp_path / "flickr8k"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "caption"])
    for i in range(10):
        write(src / "Images" / f"{1000 + i}_abc.jpg", jpeg_bytes(i))
        for caption in captions_for(i):
            writer.writerow([f"{1000 + i}_abc.jpg", caption])
    write(src / "captions.txt", buffer.getvalue())
    return src


@pytest.fixture
def original(tmp_path: Path) -> Path:
    """Original layout: ``Flicker8k_Dataset/`` + ``Flickr8k_text/`` with the token file and split lists."""
    src = tmp_path / "flickr8k"
    lines = []
    for i in range(12):
        write(src / "Flicker8k_Dataset" / f"{2000 + i}_x.jpg", jpeg_bytes(50 + i))
        lines += [f"{2000 + i}_x.jpg#{n}\t{c}" for n, c in enumerate(captions_for(i))]
    text = src / "Flickr8k_text"
    write(text / "Flickr8k.token.txt", "\n".join(lines) + "\n")
    for name, members in (("train", range(0, 7)), ("dev", range(7, 9)), ("test", range(9, 11))):
        write(text / f"Flickr_8k.{name}Images.txt", "".join(f"{2000 + i}_x.jpg\n" for i in members))
    return src  # image 2011 is captioned but in no list


def test_flickr_kaggle_csv_keeps_every_caption(kaggle: Path):
    result = build("flickr8k", "--src", str(kaggle))
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 8, "validation": 1, "test": 1}
    assert by_id(result.dataset) == {f"{1000 + i}_abc.jpg": captions_for(i) for i in range(10)}
    assert result.info["task"] == "captioning" and "seeded split by image" in result.info["split_method"]["test"]
    assert result.info["num_captions"]["train"] == 24
    features = result.dataset["train"].features
    assert set(features) == {"image", "image_id", "captions"}
    cell = result.dataset["test"].cast_column("image", datasets.Image(decode=False))[0]["image"]
    assert cell["bytes"] == (kaggle / "Images" / cell["path"].split("__")[-1]).read_bytes()
    again = build("flickr8k", "--src", str(kaggle))
    assert all(again.dataset[n]._fingerprint == result.dataset[n]._fingerprint for n in result.dataset)


def test_flickr_official_splits_are_honoured(original: Path):
    result = build("flickr8k", "--src", str(original))
    names = lambda r: {f"{2000 + i}_x.jpg" for i in r}  # noqa: E731
    assert ids(result.dataset["train"]) == names(range(0, 7))
    assert ids(result.dataset["validation"]) == names(range(7, 9))
    assert ids(result.dataset["test"]) == names(range(9, 11))
    assert result.info["not_in_official_splits"] == {"count": 1, "images": ["2011_x.jpg"]}
    assert result.info["split_method"]["validation"] == "official Flickr_8k.devImages.txt"
    assert by_id(result.dataset)["2003_x.jpg"] == captions_for(3)


def test_flickr_bad_inputs_named_by_file_and_line(original: Path, tmp_path: Path, monkeypatch):
    images, text = original / "Flicker8k_Dataset", original / "Flickr8k_text"
    data = jpeg_bytes(99)
    write(images / "2001_x.jpg", data[: len(data) // 2])      # truncated
    write(images / "2002_x.jpg", b"")                          # zero bytes
    write(images / "9999_nocap.jpg", jpeg_bytes(98))           # no caption
    write(tmp_path / "secret.jpg", jpeg_bytes(97))
    (images / "link.jpg").symlink_to(tmp_path / "secret.jpg")   # a symlink leaving the image folder
    bad = ("no tab on this line\n"                             # 37
           "2004_x.jpg\tno hash index\n"                       # 38
           "2005_x.jpg#3\t   \n"                               # 39 empty caption
           "missing.jpg#0\ta caption for nothing\n"            # 40
           "../../secret.jpg#0\tsneaky\n"                      # 41
           "/etc/passwd#0\tabsolute\n"                         # 42
           "link.jpg#0\tvia a symlink\n")                       # 43
    with open(text / "Flickr8k.token.txt", "a") as f:
        f.write(bad)
    with open(text / "Flickr_8k.testImages.txt", "a") as f:
        f.write("never_captioned.jpg\n2000_x.jpg\n")             # lines 3, 4
    opened: list[str] = []
    real = common.check_image
    monkeypatch.setattr(common, "check_image", lambda p: opened.append(str(p)) or real(p))
    with pytest.raises(DataError) as err:
        build("flickr8k", "--src", str(original))
    message = str(err.value)
    assert "12 bad input file(s)" in message
    for where in ("Flicker8k_Dataset/2001_x.jpg: truncated", "Flicker8k_Dataset/2002_x.jpg: empty",
                  "Flicker8k_Dataset/9999_nocap.jpg: image has no caption",
                  "Flickr8k.token.txt:37: malformed line: no tab", "Flickr8k.token.txt:38: malformed line: expected",
                  "Flickr8k.token.txt:39: empty caption", "Flickr8k.token.txt:40: caption refers to a missing image",
                  f"Flickr8k.token.txt:41: {UNSAFE}", f"Flickr8k.token.txt:42: {UNSAFE}",
                  f"Flickr8k.token.txt:43: {UNSAFE}",
                  "Flickr_8k.testImages.txt:3: split file lists an image that has no caption",
                  "Flickr_8k.testImages.txt:4: image listed more than once"):
        assert where in message, where
    assert not any(name in p for p in opened for name in ("secret", "passwd", "link.jpg"))

    out = tmp_path / "ds"
    assert cli.main(["build-dataset", "flickr8k", "--src", str(original), "--out", str(out), "--skip-bad"]) == 0
    report = json.loads((out / "build_report.json").read_text())
    assert report["rejected"]["count"] == 12
    assert report["rejected"]["by_reason"][UNSAFE] == 3
    assert {"path": "Flickr8k_text/Flickr8k.token.txt", "line": 40, "reason": "caption refers to a missing image"} \
        in report["rejected"]["items"]
    dataset = datasets.load_from_disk(str(out))
    assert {n: len(s) for n, s in dataset.items()} == {"train": 5, "validation": 2, "test": 2}
    assert dataset["train"].filter(lambda r: r["image_id"] == "2005_x.jpg")[0]["captions"] == captions_for(5)


def test_flickr_csv_malformed_rows_and_header(kaggle: Path):
    with open(kaggle / "captions.txt", "a") as f:
        f.write("1000_abc.jpg,unquoted, comma\n1001_abc.jpg\n1002_abc.jpg,\n")  # lines 32-34
    with pytest.raises(DataError) as err:
        build("flickr8k", "--src", str(kaggle))
    for where in ("captions.txt:32: malformed row", "captions.txt:33: malformed row", "captions.txt:34: empty caption"):
        assert where in str(err.value)
    write(kaggle / "captions.txt", "img;caption\nx.jpg;hello\n")
    with pytest.raises(DataError, match="captions.txt:1"):
        build("flickr8k", "--src", str(kaggle))


def test_flickr_ambiguous_or_missing_inputs(kaggle: Path, tmp_path: Path):
    write(kaggle / "Flickr8k.token.txt", "1000_abc.jpg#0\thello\n")
    with pytest.raises(DataError, match="choose one with --captions"):
        build("flickr8k", "--src", str(kaggle))
    result = build("flickr8k", "--src", str(kaggle), "--captions", str(kaggle / "captions.txt"))
    assert len(by_id(result.dataset)) == 10
    with pytest.raises(DataError, match="no image folder"):
        build("flickr8k", "--src", str(write(tmp_path / "empty" / "x.txt", "").parent))


def test_cli_user_error_exits_2_without_traceback(tmp_path: Path, capsys):
    code = cli.main(["build-dataset", "flickr8k", "--src", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    code = cli.main(["build-dataset", "coco_captions", "--out", str(tmp_path / "o")])
    assert code == 2 and "error: Give --src" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------------- coco
def coco_file(path: Path, images: list[tuple[int, str]], caps: dict[int, list[str]], start: int = 1) -> None:
    anns = [{"id": start + k, "image_id": i, "caption": c}
            for k, (i, c) in enumerate((i, c) for i, cs in sorted(caps.items()) for c in cs)]
    write(path, json.dumps({"info": {}, "images": [{"id": i, "file_name": n, "width": 16, "height": 16}
                                                 for i, n in images], "annotations": anns}))


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """``coco/annotations/captions_{train,val}2017.json`` + ``train2017/`` (8 images) + ``val2017/`` (3)."""
    src = tmp_path / "coco"
    for folder, id_range in (("train2017", range(1, 9)), ("val2017", range(101, 104))):
        images = [(i, f"{i:012d}.jpg") for i in id_range]
        for i, name in images:
            write(src / folder / name, jpeg_bytes(i))
        coco_file(src / "annotations" / f"captions_{folder}.json", images, {i: captions_for(i) for i in id_range},
                  start=1000 * id_range.start)
    return src


def test_coco_official_files_train_val(coco: Path):
    result = build("coco_captions", "--src", str(coco))
    val_names = {f"{i:012d}.jpg" for i in range(101, 104)}
    assert ids(result.dataset["test"]) == val_names
    assert len(result.dataset["validation"]) == 1 and len(result.dataset["train"]) == 7
    assert by_id(result.dataset) == {f"{i:012d}.jpg": captions_for(i) for i in [*range(1, 9), *range(101, 104)]}
    assert "official captions_val2017.json" in result.info["split_method"]["test"]


def test_coco_karpathy_splits(coco: Path, tmp_path: Path):
    split_of = {1: "train", 2: "restval", 3: "val", 4: "test", 5: "train", 6: "restval", 7: "val", 101: "test",
                102: "train", 103: "val", 555: "train"}  # image 8 is not listed; 555 is not in the annotations
    entries = [{"filename": f"COCO_x_{i:012d}.jpg", "filepath": "x", "cocoid": i, "split": s,
                "sentences": [{"raw": f"karpathy {i}"}]} for i, s in split_of.items()]
    karpathy = write(tmp_path / "dataset_coco.json", json.dumps({"images": entries, "dataset": "coco"}))
    result = build("coco_captions", "--src", str(coco), "--karpathy", str(karpathy))
    expect = {"train": {1, 2, 5, 6, 102}, "validation": {3, 7, 103}, "test": {4, 101}}
    for name, members in expect.items():
        assert ids(result.dataset[name]) == {f"{i:012d}.jpg" for i in members}, name
    assert result.info["images_not_in_karpathy"] == 1 and result.info["karpathy_entries_not_found"] == 1
    assert by_id(result.dataset)["000000000002.jpg"] == captions_for(2)  # captions from the annotations

    # Karpathy alone: captions from its sentences, images at DIR/<filepath>/<filename> (or DIR/<filename>)
    flat = tmp_path / "flat"
    for i in (1, 3, 4):
        write(flat / "x" / f"COCO_x_{i:012d}.jpg", jpeg_bytes(i))
    only = write(tmp_path / "k2.json", json.dumps({"images": [e for e in entries if e["cocoid"] in (1, 3, 4)]}))
    alone = build("coco_captions", "--images", str(flat), "--karpathy", str(only))
    assert {n: sorted(s["image_id"]) for n, s in alone.dataset.items()} == {
        "train": ["COCO_x_000000000001.jpg"], "validation": ["COCO_x_000000000003.jpg"],
        "test": ["COCO_x_000000000004.jpg"]}
    assert alone.dataset["test"][0]["captions"] == ["karpathy 4"]


def test_coco_annotations_and_images_options(coco: Path):
    result = build("coco_captions", "--annotations", str(coco / "annotations" / "captions_train2017.json"),
                   "--images", str(coco), "--val-fraction", "0.25", "--test-fraction", "0.25")
    assert {n: len(s) for n, s in result.dataset.items()} == {"train": 4, "validation": 2, "test": 2}
    assert "seeded split by image" in result.info["split_method"]["train"]
    with pytest.raises(DataError, match="either --src or --annotations"):
        build("coco_captions", "--src", str(coco), "--images", str(coco))


def test_coco_bad_inputs_named_by_annotation(coco: Path, tmp_path: Path, monkeypatch):
    path = coco / "annotations" / "captions_train2017.json"
    data = json.loads(path.read_text())
    data["images"] += [{"id": 9, "file_name": "../../secret.jpg"}, {"id": 10, "file_name": "gone.jpg"},
                       {"id": 11, "file_name": "000000000011.jpg"}, {"id": "12", "file_name": 5}]
    data["annotations"] += [{"id": 1, "image_id": 9, "caption": "escape"}, {"id": 2, "image_id": 10, "caption": "gone"},
                            {"id": 3, "image_id": 777, "caption": "unknown"}, {"id": 4, "image_id": 1, "caption": " "},
                            {"id": 5, "image_id": 1, "caption": 42}, "not even a dict"]
    path.write_text(json.dumps(data))
    good = jpeg_bytes(3)
    write(coco / "train2017" / "000000000003.jpg", good[: len(good) // 2])
    write(tmp_path / "secret.jpg", jpeg_bytes(4))
    opened: list[str] = []
    real = common.check_image
    monkeypatch.setattr(common, "check_image", lambda p: opened.append(str(p)) or real(p))
    with pytest.raises(DataError) as err:
        build("coco_captions", "--src", str(coco))
    message = str(err.value)
    assert "9 bad input file(s)" in message
    json_name = "annotations/captions_train2017.json"
    for where in (f"{json_name}#annotation_id=1: {UNSAFE}", f"{json_name}#annotation_id=2: caption refers to a missing",
                  f"{json_name}#annotation_id=3: caption refers to an unknown image id",
                  f"{json_name}#annotation_id=4: empty caption", f"{json_name}#annotation_id=5: malformed annotation",
                  f"{json_name}#annotations[", f"{json_name}#image_id=11: image has no caption",
                  f"{json_name}#images[11]: malformed image entry", "train2017/000000000003.jpg: truncated"):
        assert where in message, where
    assert not any("secret" in p for p in opened)
    result = build("coco_captions", "--src", str(coco), "--skip-bad")
    assert result.report.count == 9 and sum(len(s) for s in result.dataset.values()) == 10


# -------------------------------------------------------------------------------------------------- fuzz
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)
FIELD = st.sampled_from(["id", "image_id", "caption", "file_name", "filename", "filepath", "split", "cocoid",
                         "sentences", "raw"])
ENTRY = st.dictionaries(FIELD, JSON | st.sampled_from(["train", "restval", "a.jpg", "../x.jpg", "", "\ud800"]),
                        max_size=6) | JSON
DOC = st.one_of(JSON, st.fixed_dictionaries({}, optional={"images": st.lists(ENTRY, max_size=5) | JSON,
                                                          "annotations": st.lists(ENTRY, max_size=5) | JSON}))
LINE = st.text(alphabet=st.sampled_from(list("ab.jpg#0123\t,\" \r\x00é/\\") + ["\u2028", "\x0c"]), max_size=30)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=DOC, lines=st.lists(LINE, max_size=6), raw=st.binary(max_size=40), header=st.booleans())
def test_parsers_only_raise_data_error(tmp_path: Path, doc, lines, raw, header):
    text = ("image,caption\n" if header else "") + "\n".join(lines)
    files = {"json": json.dumps(doc), "text": text, "bytes": raw}
    for kind, content in files.items():
        path = write(tmp_path / f"fuzz_{kind}", content if isinstance(content, bytes) else content.encode("utf-8",
                                                                                                       "surrogatepass"))
        for parser in (parse_token_file, parse_csv_file, parse_coco_json, parse_karpathy):
            report = BadInputReport(root=tmp_path)
            try:
                parser(path, report)
            except DataError:
                pass
            report.summary(), report.to_dict()
