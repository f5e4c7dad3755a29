"""The detection task's typed ``model.config``, one dataclass per model family (checked like every other key,
reachable as ``--model.config.iou``). Which family a run is comes from ``model.name``
(``hf_tasks.tasks.detection.family``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_tasks.tasks.detection.family import TORCHVISION, TRANSFORMERS, family_of


@dataclass
class DetectionOptions:
    """``model.config`` of a YOLO run; see ``hf_tasks.tasks.detection.spec`` for what each key does."""

    depth_multiple: float | None = None  # rescale the yaml's scale (tiny test models)
    width_multiple: float | None = None
    max_channels: int | None = None
    hyp: dict[str, Any] = field(default_factory=dict)  # ultralytics' augmentation and loss gains (keys checked)
    ema: bool = True
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0
    keep_coco_classes: bool = False
    trust_pickle: bool = False  # the older spelling of model.trust_pickle
    export_pt: bool = False
    conf: float = 0.001  # NMS for evaluation: ultralytics' validation defaults
    iou: float = 0.7
    max_det: int = 300
    plots: bool = True


@dataclass
class TorchvisionOptions:
    """``model.config`` of a torchvision Faster R-CNN run."""

    keep_coco_classes: bool = False  # with COCO weights: COCO's classes, then the dataset's new ones
    architecture: dict[str, Any] = field(default_factory=dict)  # keyword arguments of torchvision's FasterRCNN
    conf: float = 0.001  # torchvision's box_score_thresh: low, so mAP sees the low-confidence boxes
    iou: float = 0.5  # box_nms_thresh (torchvision's default)
    max_det: int = 100  # box_detections_per_img (torchvision's default, COCO's 100)
    hflip: float = 0.5  # probability of a horizontal flip of a training image
    plots: bool = True


@dataclass
class TransformersOptions:
    """``model.config`` of a transformers detector (RT-DETR, D-FINE, DETR, Conditional DETR, ...)."""

    architecture: dict[str, Any] = field(default_factory=dict)  # keys of the model's transformers config
    conf: float = 0.001  # score threshold of the processor's post-processing, for evaluation
    hflip: float = 0.5
    plots: bool = True


def options(cfg) -> type:
    family = family_of(cfg.model.name)
    return {TORCHVISION: TorchvisionOptions, TRANSFORMERS: TransformersOptions}.get(family, DetectionOptions)
