"""Detection: a tiny YOLOv8 trained by the shared loop in-process and under `accelerate launch` (1 and 2 processes),
save → reload, the exported ultralytics .pt, EMA resume, pretrained-class handling, safe unpickling, the card."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from hf_tasks.errors import ConfigError
from hf_tasks.registry import load_config
from tests.helpers import interrupted_copy, read_json, run_launch, same_weights, subprocess_env

TINY = ["--task", "detection", "--model.name", "yolov8n.yaml", "--data.image_size", "64", "--batch-size", "8"]
TINY_CONFIG = "width_multiple: 0.0625, max_channels: 64"


def tiny(*extra_config: str) -> list[str]:
    return [*TINY, "--model.config", "{" + ", ".join([TINY_CONFIG, *extra_config]) + "}"]


def train(dataset, out, *overrides: str) -> dict:
    from hf_tasks.train import train as run

    return run(load_config(None, ["--data.dataset", str(dataset), "--output-dir", str(out), *overrides]))


@pytest.fixture(scope="module")
def trained(shapes_detection, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny_yolo"
    train(shapes_detection, out, *tiny("export_pt: true", "hyp: {close_mosaic: 0}"), "--max-steps", "2")
    return out


def test_two_steps_in_process(trained, shapes_detection):
    import datasets

    results = read_json(trained / "results.json")
    n_test = len(datasets.load_from_disk(str(shapes_detection))["test"])
    assert results["train_steps"] == 2 and results["test_num_images"] == n_test
    for key in ("test_map", "test_map_50", "test_map_75", "test_mar_100"):
        assert -1 <= results[key] <= 1, key
    names = results["test_per_class_names"]
    assert names == ["circle", "square", "triangle", "star"] and len(results["test_per_class_ap"]) == 4
    for name in ("model.safetensors", "config.json", "model.pt", "export_manifest.json", "README.md",
                 "predictions.png", "pr_curve.png", "per_class_ap.png", "training_curves.png"):
        assert (trained / name).is_file(), name
    assert read_json(trained / "export_manifest.json") == {"pt": "model.pt"}
    config = read_json(trained / "config.json")
    assert config["model_type"] == "hf_tasks_yolo" and (trained / "preprocessor_config.json").is_file()
    assert config["nc"] == 4 and config["names"] == names and config["imgsz"] == 64
    assert config["model_yaml"]["scale"] == "n" and config["model_yaml"]["scales"]["n"] == [0.33, 0.0625, 64]


def test_save_reload_gives_identical_weights_and_metrics(trained, shapes_detection, tmp_path):
    from safetensors.torch import load_file

    from hf_tasks.cli import main
    from hf_tasks.models.yolo import YoloDetector

    model = YoloDetector.from_pretrained(str(trained))
    saved = load_file(str(trained / "model.safetensors"))
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--task", "detection", "--model", str(trained), "--dataset", str(shapes_detection),
                 "--split", "test", "--batch-size", "4", "--output", str(out)]) == 0
    results, metrics = read_json(trained / "results.json"), read_json(out)
    assert {k: metrics[k] for k in metrics} == {k: results[k] for k in metrics}


def test_exported_pt_predicts_the_same_boxes_with_ultralytics(trained, shapes_detection):
    import datasets
    import numpy as np

    from hf_tasks.models.yolo import YoloDetector, prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import torch_safe_load

    torch_safe_load(str(trained / "model.pt"), safe_only=True)  # loads with weights_only=True
    image = datasets.load_from_disk(str(shapes_detection))["test"][0]["image"].convert("RGB")
    ours = YoloDetector.from_pretrained(str(trained)).predict_images([image], conf=1e-5)[0]
    theirs = YOLO(str(trained / "model.pt")).predict(image, conf=1e-5, verbose=False)[0].boxes
    assert len(ours["boxes"]) == len(theirs) > 0
    np.testing.assert_allclose(ours["boxes"], theirs.xyxy.numpy(), atol=1e-3)
    np.testing.assert_allclose(ours["scores"], theirs.conf.numpy(), atol=1e-5)
    assert ours["labels"].tolist() == theirs.cls.long().tolist()


def test_card_model_index_and_usage_snippet(trained, tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results
    from PIL import Image

    card = ModelCard.load(trained / "README.md")
    results, data = read_json(trained / "results.json"), card.data.to_dict()
    assert data["pipeline_tag"] == "object-detection" and data["library_name"] == "ultralytics"
    assert data["license"] == "agpl-3.0"  # ultralytics' code, which the weights need
    _, evals = model_index_to_eval_results(data["model-index"])
    by_metric = {e.metric_type: e for e in evals}
    assert by_metric["map"].metric_value == results["test_map"] and by_metric["map"].metric_name == "mAP50-95"
    assert by_metric["map_50"].metric_value == results["test_map_50"]
    assert all(e.dataset_split == "test" and e.task_type == "object-detection" for e in evals)
    assert "| circle |" in card.text and "![precision-recall curves](pr_curve.png)" in card.text
    snippet = re.search(r"## Usage\n\n```python\n(.*?)```", card.text, re.S).group(1)
    Image.new("RGB", (64, 64), "gray").save(tmp_path / "image.jpg")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_launch_one_and_two_processes(shapes_detection, tmp_path):
    import datasets

    n_test = len(datasets.load_from_disk(str(shapes_detection))["test"])
    for n in (1, 2):
        out = tmp_path / f"run{n}"
        run_launch(["hf_tasks.train", "--data.dataset", str(shapes_detection), "--output-dir", str(out), *tiny(),
                    "--batch-size", "4", "--max-steps", "2"], num_processes=n)
        results = read_json(out / "results.json")
        assert results["num_processes"] == n and results["train_steps"] == 2
        assert results["test_num_images"] == n_test  # gathered without duplicates
    # the 2-process test metrics equal a 1-process evaluation of the same saved model
    from hf_tasks.cli import main

    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "--task", "detection", "--model", str(tmp_path / "run2"), "--dataset",
                 str(shapes_detection), "--split", "test", "--output", str(metrics)]) == 0
    results = read_json(tmp_path / "run2" / "results.json")
    assert {k: v for k, v in read_json(metrics).items()} == {k: results[k] for k in read_json(metrics)}


def test_resume_restores_ema_exactly(shapes_detection, tmp_path):
    """A run resumed from its epoch-1 checkpoint ends with the same EMA weights (mosaic on, then closed)."""
    common = [*tiny("hyp: {close_mosaic: 1}"), "--epochs", "2", "--data.eval_split", "none",
              "--data.test_split", "none", "--seed", "3"]
    train(shapes_detection, tmp_path / "full", *common)
    interrupted_copy(tmp_path / "full", tmp_path / "resumed")
    train(shapes_detection, tmp_path / "resumed", *common, "--resume", "auto")
    assert same_weights(tmp_path / "full", tmp_path / "resumed")


@pytest.fixture(scope="module")
def coco_like_pt(tmp_path_factory):
    """A stand-in for a COCO-pretrained checkpoint: a tiny detector with 'COCO' class names, exported as .pt."""
    from hf_tasks.models.yolo import YoloDetector, architecture, export_ultralytics_pt

    torch.manual_seed(0)
    spec = architecture("yolov8n.yaml", {"width_multiple": 0.0625, "max_channels": 64})
    folder = tmp_path_factory.mktemp("coco")
    export_ultralytics_pt(YoloDetector(spec, ["person", "bicycle", "circle"], imgsz=64), folder)
    return folder / "model.pt"


def build(dataset, *overrides: str):
    from hf_tasks.registry import get_task

    cfg = load_config(None, ["--data.dataset", str(dataset), "--output-dir", "unused", *TINY, *overrides])
    spec = get_task("detection")
    return spec.build_model(cfg, spec.load_data(cfg))


@pytest.mark.parametrize("keep", [True, False])
def test_new_classes_on_a_pretrained_head(shapes_detection, coco_like_pt, keep):
    from hf_tasks.models.yolo import load_pt

    bundle = build(shapes_detection, "--model.name", str(coco_like_pt),
                   "--model.config", f"{{keep_coco_classes: {str(keep).lower()}}}")
    dataset = ["circle", "square", "triangle", "star"]
    expected = ["person", "bicycle", "circle", "square", "triangle", "star"] if keep else dataset
    assert bundle.label_names == expected and bundle.model.model.model[-1].nc == len(expected)
    source = load_pt(str(coco_like_pt)).model[-1].cv3[0][-1]
    head = bundle.model.model.model[-1].cv3[0][-1]
    for row, name in enumerate(["person", "bicycle", "circle"]):
        if name in expected:  # ultralytics copies class rows by name into the resized head
            assert torch.equal(head.weight[expected.index(name)], source.weight[row])


class NotAllowed:
    """A class outside ultralytics' weights_only allow-list."""


def test_untrusted_pickle_is_refused_unless_trusted(shapes_detection, coco_like_pt, tmp_path):
    ckpt = torch.load(coco_like_pt, weights_only=False)
    ckpt["extra"] = NotAllowed()
    path = tmp_path / "odd.pt"
    torch.save(ckpt, path)
    with pytest.raises(ConfigError, match="trust_pickle"):
        build(shapes_detection, "--model.name", str(path))
    bundle = build(shapes_detection, "--model.name", str(path), "--model.config", "{trust_pickle: true}")
    assert bundle.label_names == ["circle", "square", "triangle", "star"]


@pytest.mark.parametrize("overrides, message", [
    (["--model.config", "{emma: false}"], "unknown key 'model.config.emma'; did you mean 'model.config.ema'\\?"),
    (["--model.config", "{hyp: {lr0: 0.01}}"], "YOLO.train\\(\\) setting; here it is 'optim.lr'"),
    (["--data.image_size", "100"], "multiple of 32"),
    (["--model.name", "yolov8n"], "ultralytics yaml"),
    (["--model.config", "{keep_coco_classes: true}"], "needs pretrained weights"),
])
def test_config_mistakes_fail_fast(shapes_detection, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["--data.dataset", str(shapes_detection), *TINY, *overrides])


def test_missing_pt_offline_is_a_clear_error(shapes_detection):
    with pytest.raises(ConfigError, match="downloads are off"):
        build(shapes_detection, "--model.name", "yolov8n.pt")


OFFLINE_IMPORT = """
import socket, sys, torch
lookups = []
def refuse(host, *args, **kwargs):
    lookups.append(host)
    raise OSError("no network in this test")
socket.getaddrinfo = refuse
from PIL import Image, UnidentifiedImageError
original_save, original_open = torch.save, Image.open
import hf_tasks.tasks.detection.spec, hf_tasks.models.yolo
assert "ultralytics" not in sys.modules, "ultralytics imported at module import"
hf_tasks.models.yolo.prepare_ultralytics()
import os, ultralytics.utils
assert os.environ["YOLO_OFFLINE"] == "1" and not ultralytics.utils.ONLINE and lookups == [], lookups
assert torch.save is original_save, "ultralytics' torch.save patch was left in place"
import ultralytics.data.dataset  # what the detection task imports next
assert Image.open is original_open, "ultralytics' PIL.Image.open patch was left in place"
import io
try:
    Image.open(io.BytesIO(b"not an image"))
except UnidentifiedImageError:  # PIL's own error for a bad file, which the dataset scripts report
    print("offline")
"""


def test_ultralytics_is_imported_lazily_offline_and_contained(tmp_path):
    env = subprocess_env(YOLO_CONFIG_DIR=str(tmp_path))
    env.pop("YOLO_OFFLINE")
    proc = subprocess.run([sys.executable, "-c", OFFLINE_IMPORT], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "offline" in proc.stdout, proc.stderr[-3000:]
