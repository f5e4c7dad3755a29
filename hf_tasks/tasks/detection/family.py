"""Which detector family a ``model.name`` is; the family decides how the run is built, fed and saved.

- ``ultralytics``: a YOLO yaml (from scratch) or ``.pt`` (fine-tune): ultralytics' model, loss, augmentation, EMA;
- ``torchvision``: a builder of ``torchvision.models.detection`` (``fasterrcnn_mobilenet_v3_large_fpn``,
  ``fasterrcnn_resnet50_fpn_v2``, ...), wrapped as a transformers model (``hf_tasks.models.torchvision_detection``);
- ``transformers``: anything else — a Hub id or folder of an ``AutoModelForObjectDetection`` (RT-DETR, D-FINE,
  DETR, a saved torchvision run ...), or a bare transformers ``model_type`` (``rt_detr_v2``) built from its config.

The last two share one path (an image processor makes ``pixel_values`` and DETR-style ``labels``; the model returns
its loss; the processor's ``post_process_object_detection`` makes boxes): ``hf_tasks.tasks.detection.processed``.
"""

from __future__ import annotations

import functools

ULTRALYTICS, TORCHVISION, TRANSFORMERS = "ultralytics", "torchvision", "transformers"
# the card's licence of each family's code; a transformers detector's is its base model's (hf_tasks...card)
LICENSES = {ULTRALYTICS: "agpl-3.0", TORCHVISION: "bsd-3-clause"}


@functools.lru_cache(maxsize=1)
def torchvision_detectors() -> tuple[str, ...]:
    """torchvision's Faster R-CNN builders (``torchvision.models.list_models``): the family tested here. RetinaNet,
    FCOS and SSD take other constructor arguments and are not offered until they are tested."""
    import torchvision

    return tuple(n for n in torchvision.models.list_models(module=torchvision.models.detection)
                 if n.startswith("fasterrcnn"))


def family_of(name: str) -> str:
    if str(name).endswith((".yaml", ".yml", ".pt")):
        return ULTRALYTICS
    if name in torchvision_detectors():
        return TORCHVISION
    return TRANSFORMERS


def is_model_type(name: str) -> bool:
    """A bare transformers ``model_type`` (``rt_detr_v2``), built from its config rather than loaded."""
    from pathlib import Path

    from transformers import CONFIG_MAPPING

    return "/" not in name and not Path(name).exists() and name in CONFIG_MAPPING
