"""Object detection in the shared accelerate loop, three model families (``hf_tasks.tasks.detection.family``):

- **ultralytics YOLO** (v8 n/s/m/l/x, v5u, …) from a yaml or a ``.pt``: ultralytics' own ``DetectionModel``, its
  ``v8DetectionLoss``, its ``YOLODataset`` augmentation fed from our Arrow splits (``yolo_data``), its NMS and its
  ``ModelEMA`` (``ultralytics_steps``);
- **torchvision Faster R-CNN** (``fasterrcnn_mobilenet_v3_large_fpn``, ``fasterrcnn_resnet50_fpn_v2``, …), COCO
  weights or from scratch, wrapped as a transformers model (``hf_tasks.models.torchvision_detection``);
- **transformers detectors** (RT-DETR / RT-DETRv2, D-FINE, DETR, Conditional DETR, …) by Hub id, folder or bare
  ``model_type``, with their own image processors and losses.

The last two are fed by an image processor (``processed``, ``processed_models``). All three are scored by the same
``coco_map`` module, and every run folder loads with ``AutoModelForObjectDetection`` and
``pipeline("object-detection")`` (after ``import hf_tasks.models`` for the architectures that are ours).

YOLO's ``model.config`` keys (all optional; the other families' are in ``options``):

- ``depth_multiple``, ``width_multiple``, ``max_channels``: rescale the yaml's scale (tiny test models);
- ``hyp``: ultralytics hyperparameters we use — augmentation (``mosaic``, ``hsv_h``, ``fliplr``, ``close_mosaic``…),
  loss gains (``box``, ``cls``, ``dfl``) and ``cache: ram`` (decode every image once); trainer settings are our
  config's (``lr0`` is ``optim.lr``);
- ``ema`` (default true), ``ema_decay`` (0.9999), ``ema_tau`` (2000): ultralytics' ModelEMA of the weights, which
  is what gets evaluated and saved;
- ``keep_coco_classes``: with a ``.pt``, keep its classes and append the dataset's new ones
  (``models.yolo.class_list``); the torchvision family takes it too, with COCO weights;
- ``trust_pickle``: the older spelling of ``model.trust_pickle`` (``--trust-pickle``): allow a ``.pt`` that
  ``torch.load(weights_only=True)`` refuses (it can run code);
- ``export_pt``: also write ``model.pt`` for ``ultralytics.YOLO`` (listed in ``export_manifest.json``);
- ``conf`` (0.001), ``iou`` (0.7), ``max_det`` (300): NMS for evaluation, ultralytics' validation defaults;
- ``plots`` (default true): the grid of predicted boxes for the card.
"""

from __future__ import annotations

from typing import Any

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.errors import ConfigError
from hf_tasks.registry import ModelBundle, TaskData, TaskSpec, TrainHooks
from hf_tasks.tasks.detection.card import CARD
from hf_tasks.tasks.detection.data import class_map, collate, load_data, make_dataset
from hf_tasks.tasks.detection.demo import DEMO, HEADLINE
from hf_tasks.tasks.detection.family import (
    TORCHVISION,
    TRANSFORMERS,
    ULTRALYTICS,
    family_of,
)
from hf_tasks.tasks.detection.model import (
    HYP_KEYS,
    TRAINER_KEYS,
    build_model,
    load_model,
    save_model,
)
from hf_tasks.tasks.detection.options import options
from hf_tasks.util import did_you_mean

# ----------------------------------------------------------------------------------------------- config checks


def validate(cfg: TrainConfig) -> None:
    mc = cfg.model.config
    if cfg.model.checkpoint:
        raise ConfigError("'model.checkpoint' is for classification; detection starts from model.name (a .pt, a "
                          "torchvision builder, a Hub id or a run folder)")
    if cfg.data.augment.resolved() != type(cfg.data.augment)().resolved():
        raise ConfigError("'data.augment' is classification's; detection uses its family's augmentation: "
                          "model.config.hyp for YOLO (mosaic, hsv_h, fliplr, ...), model.config.hflip otherwise")
    for key in ("conf", "iou", "hflip"):
        if key in mc and not 0 <= float(mc[key]) <= 1:
            raise ConfigError(f"'model.config.{key}' must be in [0, 1] (got {mc[key]})")
    family = family_of(cfg.model.name)
    if family == TRANSFORMERS:
        _check_detector_name(cfg.model.name)
    if family == ULTRALYTICS:
        _validate_yolo(cfg)
    elif family == TORCHVISION:
        _validate_torchvision(cfg)
    elif family == TRANSFORMERS and "model_yaml" in _local_config(cfg.model.name):
        raise ConfigError(f"'model.name' {cfg.model.name!r} is a YOLO run folder: fine-tune from its ultralytics "
                          "checkpoint (model.pt, written with model.config.export_pt: true)")


def _check_detector_name(name: str) -> None:
    """A bare name must be a transformers model_type; otherwise it is a folder or a Hub id ("org/name")."""
    from pathlib import Path

    from hf_tasks.tasks.detection.family import is_model_type, torchvision_detectors
    from hf_tasks.tasks.detection.processed_models import PROCESSORS

    if "/" in name or Path(name).exists() or is_model_type(name):
        return
    known = ["yolov8n.yaml", "yolov8n.pt", "yolov5nu.yaml", *torchvision_detectors(), *PROCESSORS]
    raise ConfigError(f"'model.name' {name!r} is not a detector{did_you_mean(name, known, prefix='')} Give an "
                      "ultralytics yaml (yolov8n.yaml) or .pt to train YOLO, a torchvision builder "
                      f"({', '.join(torchvision_detectors())}), a transformers model_type ({', '.join(PROCESSORS)}), "
                      "or a Hub id / folder of an AutoModelForObjectDetection")


# set by the run itself (its classes, input size, the options conf/iou/max_det): not architecture keys
TORCHVISION_OWN = ("num_classes", "min_size", "max_size", "box_score_thresh", "box_nms_thresh", "box_detections_per_img",
                   "weights", "weights_backbone", "progress")


def _validate_torchvision(cfg: TrainConfig) -> None:
    import inspect

    from torchvision.models.detection import FasterRCNN

    if cfg.model.trust_remote_code:
        raise ConfigError("'model.trust_remote_code' does not apply to torchvision's detectors (built in code)")
    if cfg.model.config.get("keep_coco_classes") and not cfg.model.pretrained:
        raise ConfigError("'model.config.keep_coco_classes' needs the COCO weights: set model.pretrained: true")
    known = [p for p in inspect.signature(FasterRCNN.__init__).parameters if p not in ("self", "backbone", "kwargs")]
    for key in cfg.model.config.get("architecture") or {}:
        if key in TORCHVISION_OWN:
            raise ConfigError(f"'model.config.architecture.{key}' is set by the run (data.image_size, the dataset's "
                              "classes, model.config.conf / iou / max_det)")
        if key not in known:
            raise ConfigError(f"unknown key 'model.config.architecture.{key}' (a FasterRCNN argument)"
                              f"{did_you_mean(str(key), known, prefix='model.config.architecture.')}")


def _local_config(name: str) -> dict:
    import json
    from pathlib import Path

    path = Path(name) / "config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _validate_yolo(cfg: TrainConfig) -> None:
    name, mc = cfg.model.name, cfg.model.config
    if cfg.model.trust_remote_code:
        raise ConfigError("'model.trust_remote_code' does not apply to YOLO: ultralytics models are built from a "
                          "yaml or a .pt, never from a repository's code")
    hyp = mc.get("hyp") or {}
    if not isinstance(hyp, dict):
        raise ConfigError(f"'model.config.hyp' must be a mapping, got {hyp!r}")
    for key in hyp:
        if key in TRAINER_KEYS:
            raise ConfigError(f"'model.config.hyp.{key}' is a YOLO.train() setting; here it is {TRAINER_KEYS[key]!r}")
    _check_keys(hyp, HYP_KEYS, "model.config.hyp")
    if hyp.get("cache") == "disk":
        raise ConfigError("'model.config.hyp.cache' disk is not supported (images live in Arrow); use ram or false")
    if mc.get("keep_coco_classes") and not name.endswith(".pt"):
        raise ConfigError("'model.config.keep_coco_classes' needs pretrained weights: set model.name to a .pt")
    size = cfg.data.image_size
    if size is not None and size % 32:
        raise ConfigError(f"'data.image_size' must be a multiple of 32 for YOLO (got {size})")


def _check_keys(values: dict, known: tuple[str, ...], prefix: str) -> None:
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key '{prefix}.{key}'{did_you_mean(str(key), known, prefix=prefix + '.')} "
                              f"Known: {', '.join(known)}")


# ----------------------------------------------------------------------------------------------- steps


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The family's own loss: a YOLO batch carries ``img``, a processor-fed one ``pixel_values``."""
    if "img" in batch:
        from hf_tasks.tasks.detection.ultralytics_steps import forward as yolo_forward

        return yolo_forward(model, batch)
    from hf_tasks.tasks.detection.processed import forward as processed_forward

    return processed_forward(model, batch)


def predict(model: torch.nn.Module, batch: dict, bundle: ModelBundle | None = None) -> list[dict]:
    """Boxes in original-image COCO xywh pixels with the sample's exact ground truth, one dict per image."""
    if "img" in batch:
        from hf_tasks.tasks.detection.ultralytics_steps import predict as yolo_predict

        return yolo_predict(model, batch, bundle)
    from hf_tasks.tasks.detection.processed import predict as processed_predict

    return processed_predict(model, batch, bundle.processor, threshold=bundle.settings.nms["conf"])


def make_hooks(cfg: TrainConfig, model: torch.nn.Module) -> TrainHooks:
    """ultralytics' ModelEMA for YOLO; the other families train their raw weights, as their own recipes do."""
    if family_of(cfg.model.name) != ULTRALYTICS:
        return TrainHooks()
    from hf_tasks.tasks.detection.ultralytics_steps import make_hooks as yolo_hooks

    return yolo_hooks(cfg, model)


_METRIC = {}


def compute_metrics(outputs: list[dict], data: TaskData, bundle: ModelBundle | None = None) -> dict[str, Any]:
    """coco_map over the dataset's classes (detections of classes the dataset lacks are not scored), plus the PR
    curve for the card. The model's classes are matched to the dataset's by name (``bundle.label_names``)."""
    import numpy as np

    from hf_tasks.metrics import load_metric
    from hf_tasks.tasks.detection.plots import pr_curve

    names = data.info["label_names"]
    mapping = class_map(bundle.label_names, names) if bundle is not None and bundle.label_names else range(len(names))
    to_dataset = {model_id: k for k, model_id in enumerate(mapping)}
    predictions, references = [], []
    for out in outputs:
        keep = np.array([int(label) in to_dataset for label in out["labels"]], bool)
        labels = [to_dataset[int(label)] for label in out["labels"][keep]]
        predictions.append({"boxes": out["boxes"][keep], "scores": out["scores"][keep], "labels": labels})
        references.append({k: v for k, v in out["gt"].items() if v is not None})
    if "coco_map" not in _METRIC:
        _METRIC["coco_map"] = load_metric("coco_map")
    results = _METRIC["coco_map"].compute(predictions=predictions, references=references, label_names=names)
    results.pop("per_class_ap_by_name", None)  # the same numbers as per_class_ap, keyed by name
    results["per_class_names"] = list(names)
    not_crowd = [{"boxes": r["boxes"][r["iscrowd"] == 0], "labels": r["labels"][r["iscrowd"] == 0]}
                 for r in references]
    results["pr_curve"] = pr_curve(predictions, not_crowd, len(names))
    return results


SPEC = TaskSpec(
    name="detection", main_metric="map", greater_is_better=True, validate=validate, options=options,
    load_data=load_data, build_model=build_model, load_model=load_model, make_dataset=make_dataset, collate=collate,
    forward=forward, predict=predict, compute_metrics=compute_metrics, save_model=save_model, make_hooks=make_hooks,
    card=CARD, headline=HEADLINE, demo=DEMO,
)
