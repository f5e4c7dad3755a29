"""The data path of detectors fed by an image processor: torchvision's (wrapped) and transformers' own.

The transformers guide's recipe, inside our loop: each sample is the image plus its COCO annotations given to the
model's image processor (``processor(images=..., annotations=..., return_tensors="pt")``), which resizes to the
run's S×S and turns boxes into the model's ``labels``; the model returns its own loss; evaluation runs the
processor's ``post_process_object_detection`` back to each image's original size and scores the boxes with the
same ``coco_map`` as YOLO. Training images are flipped horizontally with probability ``model.config.hflip``, seeded
per (seed, epoch, sample) so the augmentation does not depend on the process count or on where a resume starts.
Crowd regions are not objects to learn (dropped from training targets) but stay in the evaluation ground truth.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from PIL import Image

from hf_tasks.errors import DataError
from hf_tasks.images import to_rgb


def ground_truth(objects: dict) -> dict[str, Any]:
    """One image's objects in the dataset's own terms (COCO xywh pixels, dataset ids), for the metrics."""
    boxes = np.asarray(objects["bbox"], dtype=np.float32).reshape(-1, 4)
    crowd = np.asarray(objects.get("iscrowd") or np.zeros(len(boxes)), dtype=np.int64).reshape(-1)
    area = objects.get("area")
    return {"boxes": boxes, "labels": np.asarray(objects["category"], dtype=np.int64).reshape(-1), "iscrowd": crowd,
            "area": None if area is None else np.asarray(area, dtype=np.float32).reshape(-1)}


def training_objects(gt: dict, width: int, height: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Non-crowd boxes clipped to the image (degenerate ones dropped), mirrored when the image is flipped."""
    keep = gt["iscrowd"] == 0
    boxes, labels = gt["boxes"][keep], gt["labels"][keep]
    x1, y1 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 1], 0, height)
    x2, y2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width), np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    if flip:
        x1, x2 = width - x2, width - x1
    valid = (x2 > x1) & (y2 > y1)
    return np.stack([x1, y1, x2 - x1, y2 - y1], 1)[valid], labels[valid]


class ProcessorDetectionDataset(torch.utils.data.Dataset):
    """One Arrow split through an image processor. ``class_map[j]`` is the model's class id of dataset class j."""

    def __init__(self, split, processor, class_map: list[int], *, image_column: str = "image",
                 objects_column: str = "objects", train: bool = False, hflip: float = 0.0, seed: int = 0):
        self.split, self.processor, self.class_map = split, processor, np.asarray(class_map, dtype=np.int64)
        self.image_column, self.objects_column = image_column, objects_column
        self.train, self.hflip, self.seed, self.epoch = train, float(hflip), seed, 0

    def __len__(self) -> int:
        return len(self.split)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.split[index]
        image, gt = to_rgb(row[self.image_column]), ground_truth(row[self.objects_column])
        width, height = image.size
        if not self.train:
            encoded = self.processor(images=image, return_tensors="pt")
            return {**_first(encoded), "index": index, "orig_size": (height, width), "gt": gt}
        flip = random.Random(hash((self.seed, self.epoch, index))).random() < self.hflip
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        boxes, labels = training_objects(gt, width, height, flip)
        annotations = {"image_id": index, "annotations": [
            {"bbox": [float(v) for v in box], "category_id": int(self.class_map[label]), "area": float(box[2] * box[3]),
             "iscrowd": 0} for box, label in zip(boxes, labels)]}
        encoded = self.processor(images=image, annotations=annotations, return_tensors="pt")
        sample = _first(encoded)
        sample["labels"] = {k: v for k, v in encoded["labels"][0].items()}
        return {**sample, "index": index}


def _first(encoded) -> dict[str, torch.Tensor]:
    """The one image's tensors of a processor's batch of one (``pixel_values``, and ``pixel_mask`` if any)."""
    return {key: encoded[key][0] for key in ("pixel_values", "pixel_mask") if key in encoded}


def collate(samples: list[dict]) -> dict[str, Any]:
    shapes = {tuple(s["pixel_values"].shape) for s in samples}
    if len(shapes) > 1:
        raise DataError(f"images of one batch have different sizes after the processor ({sorted(shapes)}); the run "
                        "resizes every image to data.image_size × data.image_size, check the processor's size")
    batch: dict[str, Any] = {"pixel_values": torch.stack([s["pixel_values"] for s in samples]),
                             "index": torch.tensor([s["index"] for s in samples])}
    if "pixel_mask" in samples[0]:
        batch["pixel_mask"] = torch.stack([s["pixel_mask"] for s in samples])
    if "labels" in samples[0]:
        batch["labels"] = [s["labels"] for s in samples]
    if "gt" in samples[0]:
        batch["orig_size"] = torch.tensor([s["orig_size"] for s in samples])
        batch["gt"] = [s["gt"] for s in samples]
    return batch


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """The model's own detection loss (Hungarian-matched for DETRs, torchvision's four losses for Faster R-CNN)."""
    inputs = {key: batch[key] for key in ("pixel_values", "pixel_mask", "labels") if key in batch}
    return {"loss": model(**inputs).loss}


def predict(model: torch.nn.Module, batch: dict, processor, threshold: float) -> list[dict]:
    """Post-processed boxes in original-image COCO xywh pixels, with the sample's ground truth, one dict per image."""
    inputs = {key: batch[key] for key in ("pixel_values", "pixel_mask") if key in batch}
    results = processor.post_process_object_detection(model(**inputs), threshold=threshold,
                                                      target_sizes=batch["orig_size"])
    outputs = []
    for i, result in enumerate(results):
        boxes = result["boxes"].float().cpu().numpy().reshape(-1, 4).copy()
        boxes[:, 2:] -= boxes[:, :2]  # xyxy → COCO xywh
        outputs.append({"index": int(batch["index"][i]), "boxes": boxes, "gt": batch["gt"][i],
                        "scores": result["scores"].float().cpu().numpy(),
                        "labels": result["labels"].long().cpu().numpy()})
    return outputs


@torch.no_grad()
def predict_images(model: torch.nn.Module, processor, images: list, threshold: float = 0.25) -> list[dict]:
    """Boxes for PIL images as ``pipeline("object-detection")`` computes them (xyxy pixels, scores, labels)."""
    was_training = model.training
    model.eval()
    images = [to_rgb(image) for image in images]
    encoded = processor(images=images, return_tensors="pt").to(next(model.parameters()).device)
    inputs = {key: encoded[key] for key in ("pixel_values", "pixel_mask") if key in encoded}
    sizes = torch.tensor([(image.height, image.width) for image in images])
    results = processor.post_process_object_detection(model(**inputs), threshold=threshold, target_sizes=sizes)
    model.train(was_training)
    return [{"boxes": r["boxes"].float().cpu().numpy(), "scores": r["scores"].float().cpu().numpy(),
             "labels": r["labels"].long().cpu().numpy()} for r in results]
