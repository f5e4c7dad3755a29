"""The detection task's typed ``model.config`` (checked like every other key, reachable as ``--model.config.iou``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


def options(cfg) -> type:
    return DetectionOptions
