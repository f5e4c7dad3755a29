"""What a detection run carries besides its network and processor (``ModelBundle.settings``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_IMAGE_SIZE = 640
PREDICTIONS_FILE = "predictions.png"


@dataclass
class DetectionSettings:
    """What a run needs besides the network and its processor."""

    family: str = "ultralytics"  # hf_tasks.tasks.detection.family
    imgsz: int = DEFAULT_IMAGE_SIZE
    hyp: Any = None  # ultralytics' namespace (augmentation + loss gains)
    nms: dict = field(default_factory=lambda: {"conf": 0.001, "iou": 0.7, "max_det": 300})
    export_pt: bool = False
    plots: bool = True
    hflip: float = 0.0  # processor-fed families: probability of a horizontal flip of a training image
