"""Every YOLO scale through our detection task path, not just yolov8n: YOLOv8 n/s/m/l/x and YOLOv5u n/s.

For each: ``detection.build_model`` (the function the loop calls) gives exactly ultralytics' own
``DetectionModel(cfg, nc)`` (same tensor names, shapes and parameter count); one training forward + loss + backward on
a real 64-px batch from our Arrow → ultralytics dataset path; and ``save_pretrained`` → ``from_pretrained`` returns
identical weights and identical outputs. All of it runs on the CPU in well under a minute (about 15 s here), so no
scale is left to the ``slow`` set.
"""

from __future__ import annotations

import pytest
import torch

from hf_tasks.registry import TaskData, get_task, load_config
from tests.helpers import build_dataset

NAMES = ["circle", "square", "triangle", "star"]
V8 = ["yolov8n.yaml", "yolov8s.yaml", "yolov8m.yaml", "yolov8l.yaml", "yolov8x.yaml"]
SCALES = [*V8, "yolov5nu.yaml", "yolov5su.yaml"]
IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def shapes_detection(tmp_path_factory):
    out = tmp_path_factory.mktemp("det_scales") / "shapes_det"
    build_dataset(["shapes", "--task", "detection", "--num-images", "8", "--image-size", str(IMAGE_SIZE),
                   "--val-fraction", "0.25", "--test-fraction", "0", "--seed", "0", "--out", str(out)])
    return out


def config(name: str, dataset="unused"):
    return load_config(None, ["--task", "detection", "--model.name", name, "--model.pretrained", "false",
                              "--data.dataset", str(dataset), "--data.image_size", str(IMAGE_SIZE),
                              "--data.test_split", "null", "--batch-size", "2", "--seed", "0"])


def build(name: str):
    """Our task's bundle for ``name`` (what ``hf_tasks.engine.loop.setup_run`` builds)."""
    spec = get_task("detection")
    torch.manual_seed(0)
    return spec.build_model(config(name), TaskData(splits={}, info={"label_names": NAMES}))


def reference(name: str):
    """ultralytics' own construction of the same yaml for the same number of classes."""
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(name, nc=len(NAMES), verbose=False)


def shapes_of(model: torch.nn.Module) -> dict[str, tuple]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", SCALES)
def test_same_network_as_ultralytics(name):
    bundle = build(name)
    ours, theirs = bundle.model.model, reference(name)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert shapes_of(ours) == shapes_of(theirs)
    scale = name.removesuffix(".yaml")[-2 if name.startswith("yolov5") else -1]
    assert ours.yaml["scale"] == scale and bundle.label_names == NAMES
    assert torch.equal(ours.stride, theirs.stride)


def test_each_scale_is_bigger_than_the_last():
    counts = [sum(p.numel() for p in build(name).model.parameters()) for name in V8]
    assert counts == sorted(set(counts))


def real_batch(bundle, dataset) -> dict:
    """Two augmented training samples through our ArrowYOLODataset and collate, as the loop gets them."""
    spec = get_task("detection")
    cfg = config("yolov8n.yaml", dataset)
    data = spec.load_data(cfg)
    train = spec.make_dataset(data.splits["train"], bundle, cfg, data, train=True)
    return spec.collate([train[0], train[1]])


@pytest.mark.parametrize("name", SCALES)
def test_train_step_on_a_real_batch(name, shapes_detection):
    bundle = build(name)
    batch = real_batch(bundle, shapes_detection)
    assert batch["img"].shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and len(batch["cls"]) > 0
    model = bundle.model.train()
    loss = get_task("detection").forward(model, batch)["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", SCALES)
def test_save_reload_identical_outputs(name, tmp_path):
    from hf_tasks.models.yolo import YoloDetector

    detector = build(name).model.eval()
    detector.save_pretrained(tmp_path)
    loaded = YoloDetector.from_pretrained(str(tmp_path))
    assert loaded.names == NAMES and loaded.imgsz == IMAGE_SIZE and not loaded.training
    saved = detector.state_dict()
    assert all(torch.equal(value, saved[key]) for key, value in loaded.state_dict().items())
    assert loaded.state_dict().keys() == saved.keys()
    image = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = detector(image), loaded(image)
    expected, got = (x[0] if isinstance(x, (tuple, list)) else x for x in (expected, got))
    assert torch.equal(expected, got)
