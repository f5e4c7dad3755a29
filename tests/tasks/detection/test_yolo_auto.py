"""A YOLO detector saved by hf-tasks loads everywhere: ``AutoModelForObjectDetection``, ``AutoImageProcessor``,
``pipeline("object-detection")`` (in this process and in a fresh one) and ``YoloDetector`` (new and old folders),
and every route gives the boxes ``YoloDetector.predict_images`` gives."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import subprocess_env

NAMES = ["circle", "square", "triangle", "star"]
THRESHOLD = 0.5
# non-square sizes (height, width), so the letterbox pads and the boxes are scaled back differently per image
SIZES = [(48, 80), (64, 64), (90, 37)]


@pytest.fixture(scope="module")
def detector():
    """A tiny untrained YOLOv8 made to give varied boxes: at ultralytics' init its activations fade layer by layer
    (every score is the class prior, every box the whole image), so the BatchNorm statistics are set from one batch
    and the head's biases spread out: box sizes, scores and labels then differ between anchors and images."""
    import hf_tasks.models  # noqa: F401  (registers the Auto classes)
    from hf_tasks.models.yolo import YoloDetector, architecture

    torch.manual_seed(0)
    model = YoloDetector(architecture("yolov8n.yaml", {"width_multiple": 0.0625, "max_channels": 64}), NAMES, imgsz=64)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # one batch sets the running statistics exactly
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.train().model(torch.rand(8, 3, 64, 64, generator=generator))
        head = model.model.model[-1]
        for box, cls in zip(head.cv2, head.cv3, strict=True):  # DFL mass on the first bins: small boxes
            box[-1].bias.copy_(torch.randn(64, generator=generator) - 0.5 * torch.arange(16.0).repeat(4))
            cls[-1].bias.copy_(torch.randn(len(NAMES), generator=generator) - 2)  # class logits ~ N(-2, 1)
    return model.eval()


@pytest.fixture(scope="module")
def saved(detector, tmp_path_factory):
    from hf_tasks.models.yolo_transformers import save_transformers

    return save_transformers(detector, tmp_path_factory.mktemp("yolo_auto") / "run")


@pytest.fixture(scope="module")
def images():
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]


def as_pipeline_output(prediction: dict) -> list[dict]:
    """``predict_images``' arrays in the pipeline's form (label names, int-truncated xyxy boxes)."""
    rows = zip(prediction["scores"], prediction["names"], prediction["boxes"], strict=True)
    return [{"score": float(score), "label": name,
             "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), torch.from_numpy(box).int().tolist(), strict=True))}
            for score, name, box in rows]


def test_saved_folder_is_a_transformers_checkpoint(detector, saved):
    from transformers import AutoConfig, AutoImageProcessor

    from hf_tasks.models.yolo_transformers import YoloConfig, YoloImageProcessor

    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == "hf_tasks_yolo" and config["architectures"] == ["YoloForObjectDetection"]
    assert config["names"] == NAMES and config["nc"] == 4 and config["imgsz"] == 64
    assert config["model_yaml"] == detector._hub_mixin_config["model_yaml"]
    loaded = AutoConfig.from_pretrained(saved)
    assert isinstance(loaded, YoloConfig) and loaded.id2label == dict(enumerate(NAMES))
    assert loaded.label2id == {name: i for i, name in enumerate(NAMES)} and (loaded.iou, loaded.max_det) == (0.7, 300)
    processor = AutoImageProcessor.from_pretrained(saved)
    assert isinstance(processor, YoloImageProcessor) and (processor.imgsz, processor.stride) == (64, 32)


def test_auto_model_loads_the_same_weights_as_yolo_detector(detector, saved):
    from transformers import AutoModelForObjectDetection

    from hf_tasks.models.yolo import YoloDetector
    from hf_tasks.models.yolo_transformers import YoloForObjectDetection

    model = AutoModelForObjectDetection.from_pretrained(saved)
    assert isinstance(model, YoloForObjectDetection) and not model.training and model.dtype == torch.float32
    reloaded = YoloDetector.from_pretrained(str(saved))  # the mixin ignores the transformers-only config keys
    expected = detector.state_dict()
    for state in (model.state_dict(), reloaded.state_dict()):
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[key], expected[key]) for key in expected)


def test_pipeline_gives_the_boxes_of_predict_images(saved, images):
    from transformers import pipeline

    from hf_tasks.models.yolo import YoloDetector

    detector = YoloDetector.from_pretrained(str(saved))
    detect = pipeline("object-detection", model=str(saved))
    found = 0
    for image in images:  # one at a time, as the pipeline runs them
        ours = as_pipeline_output(detector.predict_images([image], conf=THRESHOLD)[0])
        assert detect(image, threshold=THRESHOLD) == ours
        found += len(ours)
    assert found > 3


def test_processor_and_model_match_predict_images_on_a_batch(saved, images):
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    from hf_tasks.models.yolo import YoloDetector

    processor = AutoImageProcessor.from_pretrained(saved)
    model = AutoModelForObjectDetection.from_pretrained(saved)
    with torch.no_grad():
        outputs = model(**processor(images, return_tensors="pt"))
    assert outputs.logits.shape == (len(images), 4 + len(NAMES), 84)  # 8x8 + 4x4 + 2x2 anchors at 64 px
    results = processor.post_process_object_detection(outputs, threshold=0.3, target_sizes=SIZES)
    expected = YoloDetector.from_pretrained(str(saved)).predict_images(images, conf=0.3)
    for result, ours in zip(results, expected, strict=True):
        assert torch.equal(result["boxes"], torch.from_numpy(ours["boxes"]))
        assert torch.equal(result["scores"], torch.from_numpy(ours["scores"]))
        assert result["labels"].tolist() == ours["labels"].tolist()


def test_old_format_folder_still_loads(detector, tmp_path):
    from hf_tasks.models.yolo import YoloDetector
    from hf_tasks.models.yolo_transformers import YoloForObjectDetection

    detector.save_pretrained(tmp_path)  # the format of runs saved before the transformers classes existed
    assert set(json.loads((tmp_path / "config.json").read_text())) == {"model_yaml", "names", "imgsz", "nc"}
    expected = detector.state_dict()
    for model in (YoloDetector.from_pretrained(str(tmp_path)), YoloForObjectDetection.from_pretrained(tmp_path)):
        state = model.state_dict()
        assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)


def test_transformers_save_pretrained_round_trip(saved, tmp_path):
    """A folder written by transformers' own ``save_pretrained`` loads back in both worlds as well."""
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    from hf_tasks.models.yolo import YoloDetector

    model = AutoModelForObjectDetection.from_pretrained(saved)
    model.save_pretrained(tmp_path)
    AutoImageProcessor.from_pretrained(saved).save_pretrained(tmp_path)
    expected = model.state_dict()
    for loaded in (AutoModelForObjectDetection.from_pretrained(tmp_path), YoloDetector.from_pretrained(str(tmp_path))):
        state = loaded.state_dict()
        assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)


def test_from_pretrained_arguments(saved):
    from hf_tasks.models.yolo_transformers import YoloForObjectDetection

    model = YoloForObjectDetection.from_pretrained(saved, dtype=torch.float64, device_map="cpu", iou=0.5,
                                                   _from_pipeline="object-detection", trust_remote_code=None)
    assert model.dtype == torch.float64 and model.device.type == "cpu" and model.config.iou == 0.5
    assert YoloForObjectDetection.from_pretrained(saved, dtype="auto").dtype == torch.float32
    with pytest.raises(TypeError, match="no_such_argument"):
        YoloForObjectDetection.from_pretrained(saved, no_such_argument=1)
    with pytest.raises(ValueError, match="single device"):
        YoloForObjectDetection.from_pretrained(saved, device_map={"model.model.0": "cpu"})
    with pytest.raises(RuntimeError, match="inference-only"):
        model.train()(torch.zeros(1, 3, 64, 64, dtype=torch.float64))


def test_exported_pt_from_a_new_folder(saved, tmp_path):
    import shutil

    from hf_tasks.models.yolo import YoloDetector, export_ultralytics_pt, load_pt

    folder = shutil.copytree(saved, tmp_path / "run")
    path = export_ultralytics_pt(YoloDetector.from_pretrained(str(folder)), folder)
    assert load_pt(str(path)).names == dict(enumerate(NAMES))


FRESH = """
import json, sys
import hf_tasks.models
assert "ultralytics" not in sys.modules, "importing hf_tasks.models must not import ultralytics"
from transformers import pipeline
detect = pipeline("object-detection", model=sys.argv[1])
print(json.dumps(detect(sys.argv[2:], threshold=float({threshold}))))
"""


def test_pipeline_in_a_fresh_process(saved, images, tmp_path):
    from hf_tasks.models.yolo import YoloDetector

    paths = []
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")  # lossless: the subprocess reads the same pixels
        paths.append(str(tmp_path / f"{i}.png"))
    proc = subprocess.run([sys.executable, "-c", FRESH.format(threshold=THRESHOLD), str(saved), *paths],
                          cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    detector = YoloDetector.from_pretrained(str(saved))
    expected = [as_pipeline_output(detector.predict_images([image], conf=THRESHOLD)[0]) for image in images]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected
