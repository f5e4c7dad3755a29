"""torchvision's detectors (Faster R-CNN …) packaged as transformers models, so a run loads everywhere.

Why a transformers wrapper around ``torchvision.models.detection``: people browsing the Hub try
``AutoModelForObjectDetection.from_pretrained(repo)`` and ``pipeline("object-detection", model=repo)`` first. With
``import hf_tasks.models`` both work on a saved run: :class:`TorchvisionDetectorConfig` names the torchvision
builder (``fasterrcnn_mobilenet_v3_large_fpn``, ``fasterrcnn_resnet50_fpn_v2``, …) and the class list,
:class:`TorchvisionDetectorForObjectDetection` holds torchvision's own network (its anchors, RPN, RoI heads, losses
and NMS, unchanged), and :class:`TorchvisionDetectionImageProcessor` is the pipeline's pre- and post-processing.

The interface is the transformers detectors' one, so the training loop treats all of them alike:

- ``pixel_values`` (B, 3, S, S) in [0, 1] (the processor resizes every image to S×S; torchvision's own transform
  then normalises with ImageNet statistics and, with ``min_size = max_size = S``, does not resize again);
- ``labels``: one dict per image with ``class_labels`` (0-based) and ``boxes`` as normalised centre ``xywh`` — the
  format transformers' DETR-family processors produce from COCO annotations;
- in training mode the output carries ``loss`` (torchvision's four losses summed) and ``loss_dict``; in eval mode
  ``pred_boxes`` (xyxy pixels of the S×S input), ``scores`` and ``labels``, padded with score -1 to the same count.

torchvision reserves class 0 for background; that shift stays inside this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.utils import ModelOutput

MODEL_TYPE = "hf_tasks_torchvision_detector"


class TorchvisionDetectorConfig(PreTrainedConfig):
    """What rebuilds the network: the torchvision builder's name, the input size and the classes (``id2label``).

    Args:
        architecture: a builder of ``torchvision.models.detection`` (``torchvision.models.list_models``).
        image_size: the square input side S; torchvision's ``min_size`` and ``max_size``.
        frozen_batch_norm: the backbone's BatchNorm layers are ``FrozenBatchNorm2d`` (eps 1e-5), as torchvision
            builds them for COCO-pretrained weights; from scratch they are ordinary BatchNorm.
        box_score_thresh, box_nms_thresh, box_detections_per_img: torchvision's post-processing (a low score
            threshold keeps the low-confidence boxes that mAP needs).
        detector_kwargs: other keyword arguments of torchvision's ``FasterRCNN`` (``rpn_post_nms_top_n_train``,
            ``box_batch_size_per_image``, ...): fewer proposals and sampled RoIs make small images cheap on a CPU.
    """

    model_type = MODEL_TYPE

    architecture: str = "fasterrcnn_mobilenet_v3_large_fpn"
    image_size: int = 640
    frozen_batch_norm: bool = False
    box_score_thresh: float = 0.001
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    detector_kwargs: dict[str, Any] | None = None


@dataclass
class TorchvisionDetectionOutput(ModelOutput):
    """Training: ``loss`` and torchvision's ``loss_dict``. Eval: padded detections in the input's pixel frame."""

    loss: torch.FloatTensor | None = None
    loss_dict: dict[str, torch.Tensor] | None = None
    pred_boxes: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None
    labels: torch.LongTensor | None = None


def freeze_batch_norms(module: torch.nn.Module) -> None:
    """Replace every ``BatchNorm2d`` under ``module`` by torchvision's ``FrozenBatchNorm2d`` (default eps)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features))
        else:
            freeze_batch_norms(child)


class TorchvisionDetectorForObjectDetection(PreTrainedModel):
    """A torchvision detector (``self.detector``) behind the transformers detectors' inputs and outputs."""

    config_class = TorchvisionDetectorConfig
    base_model_prefix = "detector"
    main_input_name = "pixel_values"

    def __init__(self, config: TorchvisionDetectorConfig):
        super().__init__(config)
        import torchvision

        size = int(config.image_size)
        self.detector = torchvision.models.get_model(
            config.architecture, weights=None, weights_backbone=None, num_classes=config.num_labels + 1,
            min_size=size, max_size=size, box_score_thresh=config.box_score_thresh,
            box_nms_thresh=config.box_nms_thresh, box_detections_per_img=config.box_detections_per_img,
            **(config.detector_kwargs or {}))
        if config.frozen_batch_norm:
            freeze_batch_norms(self.detector.backbone)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """torchvision initialises its own layers; transformers' generic init would overwrite them."""

    def forward(self, pixel_values: torch.Tensor, labels: list[dict] | None = None, pixel_mask=None,
                **kwargs: Any) -> TorchvisionDetectionOutput:
        images = list(pixel_values)
        if self.training:
            if labels is None:
                raise ValueError("training a torchvision detector needs labels (class_labels and boxes per image)")
            losses = self.detector(images, [self._target(label, image) for label, image in zip(labels, images)])
            return TorchvisionDetectionOutput(loss=sum(losses.values()), loss_dict=losses)
        detections = self.detector(images)
        most = max([len(d["scores"]) for d in detections] + [1])
        boxes = pixel_values.new_zeros((len(images), most, 4))
        scores = pixel_values.new_full((len(images), most), -1.0)
        classes = torch.full((len(images), most), -1, dtype=torch.long, device=pixel_values.device)
        for i, d in enumerate(detections):
            n = len(d["scores"])
            boxes[i, :n], scores[i, :n], classes[i, :n] = d["boxes"], d["scores"], d["labels"] - 1
        return TorchvisionDetectionOutput(pred_boxes=boxes, scores=scores, labels=classes)

    @staticmethod
    def _target(label: dict, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised centre xywh → xyxy pixels of the input; class ids shifted past torchvision's background."""
        height, width = image.shape[-2:]
        cx, cy, w, h = label["boxes"].reshape(-1, 4).unbind(-1)
        boxes = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                             (cy + h / 2) * height], -1)
        return {"boxes": boxes.float(), "labels": label["class_labels"].reshape(-1).long() + 1}


class TorchvisionDetectionImageProcessor(BaseImageProcessor):
    """Resize to S×S and scale to [0, 1]; COCO annotations become DETR-style labels; boxes go back to each image.

    ``__call__(images, annotations=None, return_tensors="pt")`` takes annotations as transformers' detection
    processors do: ``{"image_id": i, "annotations": [{"bbox": [x, y, w, h], "category_id": c}, ...]}`` per image.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, size: int = 640, **kwargs: Any):
        super().__init__(**kwargs)
        self.size = int(size["height"] if isinstance(size, dict) else size)

    def preprocess(self, images, annotations=None, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        from PIL import Image

        images = images if isinstance(images, (list, tuple)) else [images]
        if annotations is not None and not isinstance(annotations, (list, tuple)):
            annotations = [annotations]
        pixels, labels = [], []
        for i, image in enumerate(images):
            image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
            width, height = image.size
            resized = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
            pixels.append(torch.from_numpy(np.asarray(resized, np.float32) / 255).permute(2, 0, 1))
            if annotations is not None:
                labels.append(self._labels(annotations[i], width, height))
        features = BatchFeature({"pixel_values": torch.stack(pixels)})
        if annotations is not None:
            features["labels"] = labels
        return features

    def _labels(self, annotation: dict, width: int, height: int) -> dict[str, torch.Tensor]:
        objects = annotation.get("annotations", [])
        xywh = torch.tensor([o["bbox"] for o in objects], dtype=torch.float32).reshape(-1, 4)
        centre = torch.stack([(xywh[:, 0] + xywh[:, 2] / 2) / width, (xywh[:, 1] + xywh[:, 3] / 2) / height,
                              xywh[:, 2] / width, xywh[:, 3] / height], -1)
        return {"class_labels": torch.tensor([o["category_id"] for o in objects], dtype=torch.long),
                "boxes": centre, "image_id": torch.tensor([annotation.get("image_id", 0)]),
                "orig_size": torch.tensor([height, width]), "size": torch.tensor([self.size, self.size])}

    def post_process_object_detection(self, outputs, threshold: float = 0.5, target_sizes=None) -> list[dict]:
        """Per image ``{"scores", "labels", "boxes"}`` above ``threshold``, boxes as xyxy pixels of the target size
        (the S×S input when ``target_sizes`` is None)."""
        results = []
        for i in range(outputs.scores.shape[0]):
            keep = outputs.scores[i] > threshold
            boxes = outputs.pred_boxes[i][keep].clone()
            if target_sizes is not None:
                height, width = (float(v) for v in target_sizes[i])
                boxes *= boxes.new_tensor([width, height, width, height]) / self.size
            results.append({"scores": outputs.scores[i][keep], "labels": outputs.labels[i][keep], "boxes": boxes})
        return results


def register_torchvision_auto_classes() -> None:
    """``model_type`` → config, model and image processor in transformers' Auto registries (idempotent)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

    AutoConfig.register(MODEL_TYPE, TorchvisionDetectorConfig, exist_ok=True)
    AutoModelForObjectDetection.register(TorchvisionDetectorConfig, TorchvisionDetectorForObjectDetection,
                                         exist_ok=True)
    # one implementation for both image-processor backends (else every load warns that one is "not available")
    processors = {"torchvision": TorchvisionDetectionImageProcessor, "pil": TorchvisionDetectionImageProcessor}
    AutoImageProcessor.register(TorchvisionDetectorConfig, image_processor_classes=processors, exist_ok=True)
