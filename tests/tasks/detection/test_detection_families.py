"""Faster R-CNN (torchvision) and RT-DETRv2 (transformers) in the shared loop: `accelerate launch` with 1 and 2
processes, 2-process metrics equal to a 1-process evaluation, COCO head transfer, the card's licence, and the run
loaded back by repo id with `pipeline("object-detection")` in a fresh process giving the run's own boxes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hf_tasks.errors import ConfigError
from hf_tasks.registry import load_config
from tests.helpers import REPO, client_env, interrupted_copy, read_json, run_launch, same_weights

# the packaged recipes, shrunk to 64 px and 2 steps
RECIPES = {"fasterrcnn": "shapes_fasterrcnn", "rtdetr": "shapes_rtdetr", "yolo": "shapes_yolov8n"}
SMALL = {"fasterrcnn": ["--data.image_size", "64", "--batch-size", "2"],
         "rtdetr": ["--data.image_size", "64", "--batch-size", "4"],
         "yolo": ["--data.image_size", "64", "--batch-size", "8", "--data.test_split", "test", "--model.config",
                  "{width_multiple: 0.0625, max_channels: 64, hyp: {close_mosaic: 0}}"]}
LAUNCHED = ("fasterrcnn", "rtdetr")  # YOLO's launch tests are in test_detection.py


@pytest.fixture
def shapes(shapes_detection):
    return shapes_detection


def args(family: str, dataset, out, *extra: str) -> list[str]:
    return [*SMALL[family], "--data.dataset", str(dataset), "--output-dir", str(out), "--max-steps", "2", *extra]


def config(family: str, dataset, out="unused", *extra: str):
    return load_config(RECIPES[family], args(family, dataset, out, *extra))


@pytest.mark.parametrize("family", LAUNCHED)
def test_two_process_launch_scores_as_one_process(shapes, tmp_path, family):
    """`accelerate launch` with 2 processes for 2 steps; its test metrics equal a 1-process evaluation of the same
    saved model (the 1-process launch path is the same command, tested for YOLO in test_detection.py)."""
    from hf_tasks.cli import main

    run_launch(["hf_tasks.train", "--recipe", RECIPES[family], *args(family, shapes, tmp_path / "run2")],
               num_processes=2)
    results = read_json(tmp_path / "run2" / "results.json")
    assert results["num_processes"] == 2 and results["train_steps"] == 2 and results["test_num_images"] == 6
    for key in ("test_map", "test_map_50", "test_mar_100"):
        assert 0 <= results[key] <= 1, key
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "README.md", "predictions.png"):
        assert (tmp_path / "run2" / name).is_file(), name
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "--task", "detection", "--model", str(tmp_path / "run2"), "--dataset", str(shapes),
                 "--split", "test", "--output", str(metrics)]) == 0
    assert read_json(metrics) == {k: results[k] for k in read_json(metrics)}


PIPELINE = """
import json, sys
import datasets
import hf_tasks.models  # registers the YOLO and torchvision wrappers (RT-DETR needs nothing)
from transformers import pipeline
detector = pipeline("object-detection", model=sys.argv[1])
images = [row["image"].convert("RGB") for row in datasets.load_from_disk(sys.argv[2])["test"].select(range(3))]
print(json.dumps([detector(image, threshold=float(sys.argv[3])) for image in images]))
"""


# a 2-step YOLO scores every box near 1e-3 (its class biases start at a low prior), the others higher
THRESHOLD = {"fasterrcnn": 0.05, "rtdetr": 0.05, "yolo": 0.0005}


def own_boxes(run, dataset, threshold: float) -> list[list[dict]]:
    """The run's own predict (what evaluation and the card's figures use), in the pipeline's form."""
    import datasets

    from hf_tasks.tasks.detection.model import load_model
    from hf_tasks.tasks.detection.predictions import predict_images

    bundle = load_model(run)
    images = [row["image"].convert("RGB") for row in datasets.load_from_disk(str(dataset))["test"].select(range(3))]
    return [[{"score": float(s), "label": bundle.label_names[int(k)],
              "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), (int(v) for v in b)))}
             for b, s, k in zip(out["boxes"], out["scores"], out["labels"])]
            for out in (predict_images(bundle, [image], conf=threshold)[0] for image in images)]  # one by one, as pipeline


LICENCE = {"fasterrcnn": ("bsd-3-clause", "transformers"), "rtdetr": ("apache-2.0", "transformers"),
           "yolo": ("agpl-3.0", "ultralytics")}


@pytest.mark.parametrize("family", sorted(RECIPES))
def test_pushed_run_loads_with_pipeline_in_a_fresh_process(shapes, hub, tmp_path, family):
    from huggingface_hub import ModelCard

    from hf_tasks.hub.push import push_run
    from hf_tasks.train import train
    from tests.hub.test_hub_tasks import _run_card_snippet

    run = tmp_path / "run"
    train(config(family, shapes, run))
    repo = f"user/shapes-{family}"
    push_run(run, repo)
    proc = subprocess.run([sys.executable, "-c", PIPELINE, repo, str(shapes), str(THRESHOLD[family])],
                          env=client_env(hub, tmp_path / "c"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote, ours = json.loads(proc.stdout.strip().splitlines()[-1]), own_boxes(run, shapes, THRESHOLD[family])
    assert [[(d["label"], d["box"]) for d in image] for image in remote] == \
        [[(d["label"], d["box"]) for d in image] for image in ours]
    assert [[round(d["score"], 4) for d in image] for image in remote] == \
        [[round(d["score"], 4) for d in image] for image in ours]
    assert sum(map(len, remote)) > 0
    if family == "fasterrcnn":  # the snippet is the same pipeline call for every family; run it once, as pushed
        _run_card_snippet(run / "README.md", repo, client_env(hub, tmp_path / "snippet"), tmp_path)
    data = ModelCard.load(run / "README.md").data  # the licence of the weights' code, a library the Hub knows
    assert (data.license, data.library_name, data.pipeline_tag) == (*LICENCE[family], "object-detection")


def test_coco_head_rows_are_kept_for_shared_names(shapes, monkeypatch):
    """torchvision's COCO weights (a stand-in with three categories): the background row, the rows of classes
    COCO has and every tensor of matching shape are copied; new classes get fresh rows."""
    from hf_tasks.models.torchvision_detection import TorchvisionDetectorConfig, TorchvisionDetectorForObjectDetection
    from hf_tasks.registry import get_task
    from hf_tasks.tasks.detection import processed_models

    coco_names = ["__background__", "person", "N/A", "circle"]
    torch.manual_seed(1)
    coco = TorchvisionDetectorForObjectDetection(TorchvisionDetectorConfig(
        image_size=64, id2label=dict(enumerate(coco_names[1:])), label2id={}))
    state = coco.detector.state_dict()
    monkeypatch.setattr(processed_models, "coco_state", lambda name: (state, coco_names))
    for keep, expected in ((False, ["circle", "square", "triangle", "star"]),
                           (True, ["person", "circle", "square", "triangle", "star"])):
        cfg = config("fasterrcnn", shapes, "unused", "--model.pretrained", "true",
                     "--model.config", f"{{keep_coco_classes: {str(keep).lower()}}}")
        spec = get_task("detection")
        bundle = spec.build_model(cfg, spec.load_data(cfg))
        assert bundle.label_names == expected
        own = bundle.model.detector.state_dict()
        weight = "roi_heads.box_predictor.cls_score.weight"
        assert torch.equal(own[weight][0], state[weight][0])
        assert torch.equal(own[weight][expected.index("circle") + 1], state[weight][3])
        assert not torch.equal(own[weight][expected.index("square") + 1], state[weight][3])
        box = "roi_heads.box_predictor.bbox_pred.weight"
        row = expected.index("circle") + 1
        assert torch.equal(own[box][4 * row:4 * row + 4], state[box][12:16])
        assert torch.equal(own["backbone.body.0.0.weight"], state["backbone.body.0.0.weight"])


@pytest.mark.parametrize("overrides, message", [
    (["--model.name", "fasterrcnn_mobilenet"], "did you mean 'fasterrcnn_mobilenet_v3_large_fpn'"),
    (["--model.name", "fasterrcnn_mobilenet_v3_large_fpn", "--model.config", "{hyp: {mosaic: 0}}"],
     "unknown key 'model.config.hyp'"),
    (["--model.name", "rt_detr_v2", "--model.config", "{hflip: 2}"], "must be in \\[0, 1\\]"),
    (["--model.name", "fasterrcnn_mobilenet_v3_large_fpn", "--model.config", "{architecture: {rpn_post_nms: 5}}"],
     "did you mean .model.config.architecture.rpn_post_nms_top_n_t"),
    (["--model.name", "fasterrcnn_mobilenet_v3_large_fpn", "--model.config", "{architecture: {min_size: 5}}"],
     "set by the run"),
    (["--model.name", "fasterrcnn_mobilenet_v3_large_fpn", "--model.pretrained", "false", "--model.config",
      "{keep_coco_classes: true}"], "needs the COCO weights"),
])
def test_family_config_mistakes_fail_fast(shapes, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["--task", "detection", "--data.dataset", str(shapes), *overrides])


def test_pretrained_torchvision_weights_offline_is_a_clear_error(shapes, monkeypatch, tmp_path):
    from hf_tasks.registry import get_task

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # (the module's hub fixture turns it off for its tests)
    cfg = config("fasterrcnn", shapes, "unused", "--model.pretrained", "true")
    spec = get_task("detection")
    with pytest.raises(ConfigError, match="not in torch's cache"):
        spec.build_model(cfg, spec.load_data(cfg))


@pytest.mark.slow  # (default suite time) the processor-fed path is covered by the RT-DETR tests
def test_a_detr_with_a_pixel_mask_trains_in_the_same_loop(shapes, tmp_path):
    """Conditional DETR (its processor adds ``pixel_mask``), a tiny config built in code: 2 steps, scored, saved,
    and its run folder loads back with its own processor."""
    from hf_tasks.tasks.detection.model import load_model
    from hf_tasks.train import train

    tiny = ("{architecture: {use_timm_backbone: false, use_pretrained_backbone: false, backbone_config: "
            "{model_type: resnet, depths: [1, 1, 1, 1], hidden_sizes: [16, 32, 64, 128], embedding_size: 16, "
            "layer_type: basic, out_features: [stage4]}, d_model: 32, encoder_layers: 1, decoder_layers: 1, "
            "encoder_ffn_dim: 64, decoder_ffn_dim: 64, encoder_attention_heads: 2, decoder_attention_heads: 2, "
            "num_queries: 20}}")
    results = train(load_config(None, ["--task", "detection", "--model.name", "conditional_detr", "--model.pretrained",
                                       "false", "--model.config", tiny, *args("rtdetr", shapes, tmp_path / "run")]))
    assert results["train_steps"] == 2 and 0 <= results["test_map_50"] <= 1
    bundle = load_model(tmp_path / "run")
    assert type(bundle.model).__name__ == "ConditionalDetrForObjectDetection"
    assert bundle.label_names == ["circle", "square", "triangle", "star"] and bundle.settings.imgsz == 64


@pytest.mark.slow
def test_resume_of_a_model_with_tied_weights_is_exact(shapes, tmp_path):
    """RT-DETR ties its decoder heads to the top-level ones (checkpoints drop the shared copies): a run resumed from
    its epoch-1 checkpoint ends with the weights of the uninterrupted run."""
    from hf_tasks.train import train

    common = [*SMALL["rtdetr"], "--data.dataset", str(shapes), "--epochs", "2", "--data.eval_split", "none",
              "--data.test_split", "none", "--seed", "3", "--model.config.plots", "false"]
    train(load_config("shapes_rtdetr", [*common, "--output-dir", str(tmp_path / "full")]))
    interrupted_copy(tmp_path / "full", tmp_path / "resumed")
    train(load_config("shapes_rtdetr", [*common, "--output-dir", str(tmp_path / "resumed"), "--resume", "auto"]))
    assert same_weights(tmp_path / "full", tmp_path / "resumed")


@pytest.mark.slow
def test_a_run_folder_is_a_starting_point_like_a_hub_id(shapes, tmp_path):
    """The path a Hub id takes (``AutoModelForObjectDetection`` / ``AutoImageProcessor.from_pretrained``, the class
    head sized to the dataset), exercised offline on a saved run folder: fine-tuned, its weights are the start."""
    from safetensors.torch import load_file

    from hf_tasks.registry import get_task
    from hf_tasks.train import train

    train(config("rtdetr", shapes, tmp_path / "first", "--data.eval_split", "none", "--data.test_split", "none",
                 "--model.config.plots", "false"))
    cfg = load_config(None, ["--task", "detection", "--model.name", str(tmp_path / "first"), "--data.dataset",
                             str(shapes), "--data.image_size", "64"])
    spec = get_task("detection")
    bundle = spec.build_model(cfg, spec.load_data(cfg))
    assert type(bundle.model).__name__ == "RTDetrV2ForObjectDetection"
    assert type(bundle.processor).__name__.startswith("RTDetrImageProcessor")
    saved = load_file(str(tmp_path / "first" / "model.safetensors"))
    own = bundle.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in saved.items() if k in own)
    assert bundle.model.config.id2label == {0: "circle", 1: "square", 2: "triangle", 3: "star"}


def test_resnet50_fpn_v2_round_trips_through_from_pretrained(tmp_path):
    from hf_tasks.models.torchvision_detection import (
        TorchvisionDetectionImageProcessor,
        TorchvisionDetectorConfig,
        TorchvisionDetectorForObjectDetection,
    )

    torch.manual_seed(0)
    model = TorchvisionDetectorForObjectDetection(TorchvisionDetectorConfig(
        architecture="fasterrcnn_resnet50_fpn_v2", image_size=64, id2label={0: "a", 1: "b"}, label2id={})).eval()
    model.save_pretrained(tmp_path)
    pixels = TorchvisionDetectionImageProcessor(size=64)(images=[torch.rand(80, 90, 3).mul(255).byte().numpy()])
    again = TorchvisionDetectorForObjectDetection.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        a, b = model(**pixels), again(**pixels)
    assert torch.equal(a.pred_boxes, b.pred_boxes) and torch.equal(a.scores, b.scores)
