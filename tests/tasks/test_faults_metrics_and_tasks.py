"""Bad inputs to the metrics, the typed config and the tasks' data (issue 16).

- Metrics (programmatic use): a non-finite box, score or area, a label that is not an integer, a caption that is
  not a string raise a ``ValueError`` naming the argument, the sample index and what is wrong, instead of a
  silently wrong number (a NaN ground-truth area used to give recall 2.0).
- Config: every float setting must be a finite number in its range; the error names the key.
- Data: a run of one task on another task's dataset ends with exit 2 and one ``error:`` line naming the column."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_tasks.metrics import load_metric

NON_FINITE = [math.nan, math.inf, -math.inf]

# ------------------------------------------------------------------------------------------------ metrics


@pytest.fixture(scope="module")
def coco_map():
    return load_metric("coco_map")


@pytest.fixture(scope="module")
def accuracy():
    return load_metric("accuracy")


@pytest.fixture(scope="module")
def bleu():
    return load_metric("bleu")


def _detections() -> tuple[list[dict], list[dict]]:
    """Two images, each with two well-detected boxes; references carry an explicit area."""
    boxes = [[10.0, 10.0, 20.0, 20.0], [50.0, 40.0, 30.0, 10.0]]
    refs = [{"boxes": [list(b) for b in boxes], "labels": [0, 1], "area": [400.0, 300.0]} for _ in range(2)]
    preds = [{"boxes": [list(b) for b in boxes], "scores": [0.9, 0.8], "labels": [0, 1]} for _ in range(2)]
    return preds, refs


def _poison(item: dict, key: str, position: tuple[int, ...], value) -> None:
    if len(position) == 2:
        item[key][position[0]][position[1]] = value
    else:
        item[key][position[0]] = value


COCO_FIELDS = [("predictions", "boxes", (1, 2)), ("predictions", "scores", (0,)),
               ("references", "boxes", (1, 3)), ("references", "area", (1,))]


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("argument", "key", "position"), COCO_FIELDS, ids=[f"{a}-{k}" for a, k, _ in COCO_FIELDS])
def test_coco_map_rejects_non_finite_values(coco_map, argument, key, position, value) -> None:
    preds, refs = _detections()
    _poison((preds if argument == "predictions" else refs)[1], key, position, value)
    with pytest.raises(ValueError, match=rf"^{argument}\[1\]\['{key}'\]\[{position[0]}\].*not finite"):
        coco_map.compute(predictions=preds, references=refs, num_labels=2)


def test_coco_map_nan_area_no_longer_gives_recall_two(coco_map) -> None:
    """The reported bug: a NaN ground-truth area counted the box twice in the recall point."""
    preds, refs = _detections()
    refs[0]["area"] = [math.nan, math.nan]
    with pytest.raises(ValueError, match=r"references\[0\]\['area'\]\[0\] is nan: .*not finite"):
        coco_map.compute(predictions=preds, references=refs, num_labels=2)


def test_coco_map_index_counts_across_batches(coco_map) -> None:
    preds, refs = _detections()
    coco_map.add_batch(predictions=preds, references=refs)
    bad = [{"boxes": [[0.0, 0.0, math.inf, 1.0]], "scores": [0.5], "labels": [0]}]
    with pytest.raises(ValueError, match=r"^predictions\[2\]\['boxes'\]\[0\]"):
        coco_map.add_batch(predictions=bad, references=[refs[0]])
    coco_map.add(prediction=preds[0], reference=refs[0])
    assert coco_map.compute(num_labels=2)["num_images"] == 3  # the rejected batch was not stored


@pytest.mark.parametrize(("argument", "label"), [("predictions", 0.5), ("references", "cat"), ("predictions", None),
                                                 ("references", math.nan)])
def test_coco_map_rejects_labels_that_are_not_integers(coco_map, argument, label) -> None:
    preds, refs = _detections()
    (preds if argument == "predictions" else refs)[1]["labels"][1] = label
    with pytest.raises(ValueError, match=rf"^{argument}\[1\]\['labels'\]\[1\] is .*not an integer"):
        coco_map.compute(predictions=preds, references=refs, num_labels=2)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), value=st.sampled_from(NON_FINITE))
def test_coco_map_any_non_finite_position_is_named(coco_map, data, value) -> None:
    num_images = data.draw(st.integers(1, 4))
    preds, refs = [], []
    for _ in range(num_images):
        n = data.draw(st.integers(1, 3))
        box = st.lists(st.floats(0, 100), min_size=4, max_size=4)
        refs.append({"boxes": data.draw(st.lists(box, min_size=n, max_size=n)), "labels": [0] * n,
                     "area": data.draw(st.lists(st.floats(0, 1e4), min_size=n, max_size=n))})
        preds.append({"boxes": data.draw(st.lists(box, min_size=n, max_size=n)), "labels": [0] * n,
                      "scores": data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))})
    index = data.draw(st.integers(0, num_images - 1))
    argument, key, _ = data.draw(st.sampled_from(COCO_FIELDS))
    item = (preds if argument == "predictions" else refs)[index]
    row = data.draw(st.integers(0, len(item[key]) - 1))
    position = (row, data.draw(st.integers(0, 3))) if key == "boxes" else (row,)
    _poison(item, key, position, value)
    with pytest.raises(ValueError, match=rf"^{argument}\[{index}\]\['{key}'\]\[{row}\]"):
        coco_map.compute(predictions=preds, references=refs, num_labels=1)


BAD_CLASS_IDS = [0.5, math.nan, math.inf, "1", None, [1]]


@pytest.mark.parametrize("argument", ["predictions", "references"])
@pytest.mark.parametrize("value", BAD_CLASS_IDS, ids=[repr(v) for v in BAD_CLASS_IDS])
def test_accuracy_rejects_class_ids_that_are_not_integers(accuracy, argument, value) -> None:
    inputs = {"predictions": [0, 1, 1], "references": [0, 1, 0]}
    inputs[argument][2] = value
    with pytest.raises(ValueError, match=rf"^{argument}\[2\] is .*not an integer class id"):
        accuracy.compute(**inputs, num_labels=2)


def test_accuracy_still_takes_integer_like_inputs(accuracy) -> None:
    import torch

    out = accuracy.compute(predictions=np.array([0.0, 1.0, 1.0]), references=torch.tensor([0, 1, 0]), num_labels=2)
    assert math.isclose(out["accuracy"], 2 / 3)
    assert accuracy.compute(predictions=[True, False], references=[np.int64(1), 0])["accuracy"] == 1.0


def test_accuracy_index_counts_across_batches(accuracy) -> None:
    accuracy.add_batch(predictions=[0, 1], references=[0, 1])
    with pytest.raises(ValueError, match=r"^references\[3\] is 1\.5"):
        accuracy.add_batch(predictions=[0, 1], references=[0, 1.5])
    accuracy.add(prediction=1, reference=0)
    assert accuracy.compute()["num_samples"] == 3


@pytest.mark.parametrize(("preds", "refs", "message"), [
    (["a cat", None], [["a cat"], ["a dog"]], r"^predictions\[1\] is None: .*a string"),
    (["a cat", 3], [["a cat"], ["a dog"]], r"^predictions\[1\] is 3 \(int\): .*a string"),
    (["a cat", b"a dog"], [["a cat"], ["a dog"]], r"^predictions\[1\] is b'a dog' \(bytes\)"),
    (["a cat", "a dog"], [["a cat"], ["a dog", math.nan]], r"^references\[1\]\[1\] is nan \(float\): .*a string"),
    (["a cat", "a dog"], [["a cat"], 7], r"^references\[1\] is 7 \(int\): .*a list of strings"),
    (["a cat", "a dog"], [["a cat", 1.5], ["a dog"]], r"^references\[0\]\[1\] is 1\.5"),
])
def test_bleu_rejects_captions_that_are_not_strings(bleu, preds, refs, message) -> None:
    with pytest.raises(ValueError, match=message):
        bleu.compute(predictions=preds, references=refs)


def test_bleu_still_drops_none_references(bleu) -> None:
    out = bleu.compute(predictions=["a cat on a mat"], references=[[None, "a cat on a mat"]])
    assert math.isclose(out["bleu"], 1.0)


# ------------------------------------------------------------------------------------------------ config


def _float_keys(cls=None, prefix: str = "") -> list[str]:
    """Every dotted key of the typed config whose type holds a float (float, float | None, list[float])."""
    import dataclasses
    import typing

    from hf_tasks.config import TrainConfig

    hints, keys = typing.get_type_hints(cls or TrainConfig), []
    for f in dataclasses.fields(cls or TrainConfig):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys += _float_keys(hint, f"{prefix}{f.name}.")
        elif float in (hint, *typing.get_args(hint)):
            keys.append(prefix + f.name)
    return keys


FLOAT_KEYS = _float_keys()


def one_cli_error(capsys, *argv: str) -> str:
    """`hf-tasks ARGV` exits 2 with exactly one `error:` line on stderr and no traceback; return that line."""
    from hf_tasks.cli import main

    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    return lines[0]


def test_every_float_setting_is_covered() -> None:
    assert {"optim.lr", "optim.weight_decay", "optim.momentum", "optim.betas", "optim.warmup_ratio", "optim.gamma",
            "optim.max_grad_norm", "data.augment.rotation", "data.augment.zoom"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_non_finite_float_settings_fail_naming_the_key(key, value) -> None:
    from hf_tasks.errors import ConfigError
    from hf_tasks.registry import load_config

    given = f"[{value}, 0.9]" if key == "optim.betas" else value
    with pytest.raises(ConfigError, match=rf"^'{re.escape(key)}' must be .*\(got .*{value}"):
        load_config(None, ["--data.dataset", "some/data", f"--{key}", given])


@pytest.mark.parametrize(("key", "value"), [("optim.momentum", "-0.5"), ("optim.momentum", "1.0"),
                                            ("optim.weight_decay", "-0.1"), ("optim.max_grad_norm", "0")])
def test_out_of_range_float_settings_fail_naming_the_key(key, value) -> None:
    from hf_tasks.errors import ConfigError
    from hf_tasks.registry import load_config

    with pytest.raises(ConfigError, match=rf"^'{re.escape(key)}' must be "):
        load_config(None, ["--data.dataset", "some/data", f"--{key}", value])


@pytest.mark.parametrize(("yaml_text", "key"), [("optim: {lr: .inf}", "optim.lr"),
                                                ("optim: {weight_decay: .inf}", "optim.weight_decay"),
                                                ("optim: {max_grad_norm: .inf}", "optim.max_grad_norm"),
                                                ("optim: {momentum: .nan}", "optim.momentum"),
                                                ("optim: {betas: [0.9, .nan]}", "optim.betas")])
def test_recipe_with_non_finite_value_is_one_cli_line(yaml_text, key, tmp_path, capsys) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"data: {{dataset: some/data}}\n{yaml_text}\n")
    line = one_cli_error(capsys, "train", "--recipe", str(recipe), "--output-dir", str(tmp_path / "run"))
    assert line.startswith(f"error: '{key}' must be ") and "finite number" in line, line
    assert not (tmp_path / "run").exists()


def test_programmatic_config_is_checked_too() -> None:
    from hf_tasks.config import TrainConfig, validate
    from hf_tasks.errors import ConfigError

    cfg = TrainConfig()
    cfg.data.dataset, cfg.optim.lr = "some/data", float("inf")
    with pytest.raises(ConfigError, match=r"^'optim.lr' must be a finite number \(got inf\)"):
        validate(cfg)


# ------------------------------------------------------------------------------------------------ task vs dataset

TASK_NAMES = ("classification", "detection", "captioning")
NEEDS = {"classification": "'label'", "detection": "'objects'", "captioning": "'captions'"}


@pytest.mark.parametrize("kind", TASK_NAMES, ids=[f"{k}-data" for k in TASK_NAMES])
@pytest.mark.parametrize("task", TASK_NAMES)
def test_task_on_another_tasks_dataset_is_one_clean_line(task, kind, fault_data, tmp_path, capsys) -> None:
    """Each task on each kind of shapes dataset: its own kind loads; another kind fails before any model is built,
    with one line naming the split, the column the task needs, the kind the dataset looks like and the fix."""
    from hf_tasks.registry import get_task, load_config
    from tests.faults import task_args

    argv = task_args(task, fault_data[kind], tmp_path / "run", "--max-steps", "1")
    if task == kind:
        data = get_task(task).load_data(load_config(None, argv))
        assert set(data.splits) == {"train", "validation", "test"}
        return
    line = one_cli_error(capsys, "train", *argv)
    assert line.startswith("error: split 'train' ") and NEEDS[task] in line and "columns: image" in line, line
    assert f"is this a {kind} dataset? train it with --task {kind}" in line, line
    assert f"build a {task} dataset with `hf-tasks build-dataset" in line and f"--task {task}" in line, line
    assert not (tmp_path / "run" / "checkpoints").exists()


def _save_splits(path, columns: dict, features) -> str:
    from datasets import Dataset, DatasetDict

    split = Dataset.from_dict(columns, features=features)
    DatasetDict({"train": split, "validation": split, "test": split}).save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_image_column_that_holds_no_images_is_named(task, tmp_path, capsys) -> None:
    """The image column exists but holds file names (strings): named with its type, not a crash in a worker."""
    from datasets import ClassLabel, Features, List, Value

    from tests.faults import task_args

    label = {"classification": ("label", ClassLabel(names=["a", "b"]), [0, 1]),
             "captioning": ("captions", List(Value("string")), [["a cat"], ["a dog"]]),
             "detection": ("objects", {"bbox": List(List(Value("float32"), length=4)),
                                       "category": List(ClassLabel(names=["a", "b"]))},
                           [{"bbox": [[0, 0, 1, 1]], "category": [0]}] * 2)}[task]
    features = Features({"image": Value("string"), label[0]: label[1]})
    data = _save_splits(tmp_path / "data", {"image": ["a.png", "b.png"], label[0]: label[2]}, features)
    line = one_cli_error(capsys, "train", *task_args(task, data, tmp_path / "run", "--max-steps", "1"))
    assert line.startswith("error: split 'train' column 'image' ('data.image_column') holds string values, not "
                           "images"), line


@pytest.mark.parametrize(("captions", "feature", "found"), [
    ([[1, 2], [3]], lambda d: d.List(d.Value("int64")), "list of int64"),
    ([0.5, 1.5], lambda d: d.Value("float32"), "float32"),
])
def test_caption_column_that_holds_no_text_is_named(captions, feature, found, tmp_path, capsys) -> None:
    """Numbers in the captions column used to train silently on their digits as captions."""
    import datasets

    from tests.faults import task_args

    features = datasets.Features({"image": datasets.Image(), "captions": feature(datasets)})
    data = _save_splits(tmp_path / "data", {"image": [_png(), _png()], "captions": captions}, features)
    line = one_cli_error(capsys, "train", *task_args("captioning", data, tmp_path / "run", "--max-steps", "1"))
    assert line.startswith(f"error: split 'train' column 'captions' holds {found}, not caption text"), line


def _png():
    from PIL import Image as PILImage

    return PILImage.new("RGB", (8, 8))
