"""The bridge from our Arrow detection datasets to ultralytics' own dataset and augmentation pipeline.

``ArrowYOLODataset`` subclasses ultralytics' ``YOLODataset`` and replaces only where images and labels come from:
image bytes and ``objects`` (COCO ``[x, y, w, h]`` pixels) are read from the ``datasets`` split instead of image and
label files, and converted once to the normalised centre ``xywh`` labels ultralytics expects. Everything else —
mosaic, random perspective, HSV, flips, letterbox, ``Format``, ``close_mosaic`` and ``collate_fn`` — is
ultralytics' code, unchanged. Nothing is written to disk (no temporary YOLO folder, no ``.cache`` files), so N
processes can read the same split without racing.

Two deliberate differences from file-based ultralytics, both for reproducibility:

- augmentation randomness (ultralytics uses the global ``random``/``numpy`` generators) is seeded per
  (seed, epoch, sample) and the global state restored afterwards, so a sample's augmentation does not depend on
  the worker or process count, nor on where a resumed run starts;
- mosaic partners are drawn uniformly from the whole split (ultralytics' behaviour with ``cache='ram'``) instead of
  from a buffer of recently loaded images, whose content depends on load order.

``model.config.hyp.cache: ram`` is ultralytics' own image cache: every image is decoded (and resized) once, up
front; without it each access decodes the PNG/JPEG bytes from Arrow with OpenCV, as ultralytics reads files.

ultralytics is imported by this module, so it is only ever imported from inside the detection task's functions.
"""

from __future__ import annotations

import math
import random
from contextlib import contextmanager
from copy import copy
from typing import Any

import numpy as np

from hf_tasks.models.yolo import prepare_ultralytics

prepare_ultralytics()

import cv2  # noqa: E402
from ultralytics.data.dataset import YOLODataset  # noqa: E402

from hf_tasks.errors import DataError  # noqa: E402


def category_names(features, objects_column: str = "objects") -> list[str]:
    """Class names of the ``objects.category`` ClassLabel (datasets 5 stores Sequence-of-dict as a dict of lists)."""
    objects = features.get(objects_column) if hasattr(features, "get") else None
    if objects is None:
        raise DataError(f"detection needs an {objects_column!r} column with bbox and category; columns: "
                        f"{list(features)}")
    inner = getattr(objects, "feature", objects)
    category = inner.get("category") if isinstance(inner, dict) else None
    category = getattr(category, "feature", category)
    names = getattr(category, "names", None)
    if not names:
        raise DataError(f"{objects_column!r}.category must be a ClassLabel (class names in a fixed order); it is "
                        f"{category}. Build the dataset with `hf-tasks build-dataset`")
    return list(names)


def coco_to_yolo(boxes, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """COCO ``[x, y, w, h]`` pixels → normalised centre ``xywh``, clipped to the image; degenerate boxes dropped."""
    array = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x1 = np.clip(array[:, 0], 0, width)
    y1 = np.clip(array[:, 1], 0, height)
    x2 = np.clip(array[:, 0] + array[:, 2], 0, width)
    y2 = np.clip(array[:, 1] + array[:, 3], 0, height)
    keep = (x2 > x1) & (y2 > y1)
    xywh = np.stack([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height], 1)
    return xywh[keep].astype(np.float32), keep


@contextmanager
def seeded_global_rng(seed: int):
    """Seed ``random`` and ``numpy.random`` (what ultralytics' transforms draw from), then restore both."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class ArrowYOLODataset(YOLODataset):
    """ultralytics' ``YOLODataset`` reading a ``datasets`` split (image bytes + COCO boxes) instead of files.

    ``class_map[j]`` is the detector's class id of dataset category ``j``. Evaluation samples also carry the
    original ground truth (``gt``: COCO pixel boxes, dataset ids, ``iscrowd``, ``area``) so metrics use it exactly.
    """

    def __init__(self, split, *, imgsz: int, augment: bool, hyp, names: dict[int, str], class_map: list[int],
                 image_column: str = "image", objects_column: str = "objects", seed: int = 0,
                 batch_size: int = 16, stride: int = 32, close_mosaic_epoch: int | None = None):
        from datasets import Image

        self.split = split.cast_column(image_column, Image(decode=False))
        self.image_column, self.objects_column = image_column, objects_column
        self.class_map = np.asarray(class_map, dtype=np.int64)
        self.seed, self.epoch, self.hyp = seed, 0, copy(hyp)
        self.close_mosaic_epoch, self.mosaic_closed = close_mosaic_epoch, False
        self.gt: list[dict[str, Any]] = []  # per image, in the dataset's own terms, for the metrics
        cache = hyp.cache if hyp.cache in (True, "ram") else False
        super().__init__(img_path=[], imgsz=imgsz, cache=cache, augment=augment, hyp=hyp, prefix="", rect=False,
                         batch_size=batch_size, stride=stride, pad=0.0 if augment else 0.5, single_cls=False,
                         classes=None, fraction=1.0, data={"names": names, "channels": 3}, task="detect")

    # ------------------------------------------------------------------ where images and labels come from
    def get_img_files(self, img_path) -> list[str]:
        """Stable names for ``im_file`` (shown in ultralytics' messages); nothing is read from disk."""
        return [f"arrow:{i}" for i in range(len(self.split))]

    def get_labels(self) -> list[dict[str, Any]]:
        """ultralytics' label dicts (class ids of the detector, normalised centre xywh), built once from Arrow."""
        columns = self.split.column_names
        sizes = ([(int(w), int(h)) for w, h in zip(self.split["width"], self.split["height"])]
                 if "width" in columns and "height" in columns else [self._image_size(i) for i in range(len(self))])
        labels = []
        for i, (objects, (width, height)) in enumerate(zip(self.split[self.objects_column], sizes)):
            boxes = np.asarray(objects["bbox"], dtype=np.float32).reshape(-1, 4)
            dataset_ids = np.asarray(objects["category"], dtype=np.int64).reshape(-1)
            crowd = np.asarray(objects.get("iscrowd") or np.zeros(len(boxes)), dtype=bool).reshape(-1)
            area = objects.get("area")
            self.gt.append({"boxes": boxes, "labels": dataset_ids, "iscrowd": crowd.astype(np.int64),
                            "area": None if area is None else np.asarray(area, dtype=np.float32).reshape(-1)})
            # crowd regions are not objects to learn (ultralytics' COCO conversion drops them too)
            bboxes, keep = coco_to_yolo(boxes[~crowd], width, height)
            cls = self.class_map[dataset_ids[~crowd][keep]].astype(np.float32).reshape(-1, 1)
            labels.append({"im_file": self.im_files[i], "shape": (height, width), "cls": cls, "bboxes": bboxes,
                           "segments": [], "keypoints": None, "normalized": True, "bbox_format": "xywh"})
        return labels

    def __len__(self) -> int:
        return len(self.split)

    def _image_size(self, index: int) -> tuple[int, int]:
        image = self.decode(index)
        return image.shape[1], image.shape[0]

    def decode(self, index: int) -> np.ndarray:
        """BGR uint8, decoded by OpenCV from the stored bytes, exactly as ultralytics reads image files."""
        value = self.split[index][self.image_column]
        data = value.get("bytes")
        if data is None:
            with open(value["path"], "rb") as handle:
                data = handle.read()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"sample {index}: the image bytes cannot be decoded")
        return image

    def load_image(self, i: int, rect_mode: bool = True, resize_short: bool = False):
        """ultralytics' ``load_image`` (long side to imgsz, aspect kept) with the decode from Arrow bytes."""
        if self.ims[i] is not None:
            return self.ims[i], self.im_hw0[i], self.im_hw[i]
        image = self.decode(i)
        h0, w0 = image.shape[:2]
        if rect_mode:
            ratio = self.imgsz / max(h0, w0)
            if ratio != 1:
                w, h = min(math.ceil(w0 * ratio), self.imgsz), min(math.ceil(h0 * ratio), self.imgsz)
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        elif (h0, w0) != (self.imgsz, self.imgsz):
            image = cv2.resize(image, (self.imgsz, self.imgsz), interpolation=cv2.INTER_LINEAR)
        return image, (h0, w0), image.shape[:2]

    # ------------------------------------------------------------------ reproducible augmentation
    def build_transforms(self, hyp):
        # 'ram' turns off ultralytics' load-order buffer: mosaic partners come uniformly from the whole split
        self.cache = "ram"
        return super().build_transforms(hyp)

    def set_epoch(self, epoch: int) -> None:
        """Seed the next epoch's augmentation, and close mosaic for the last ``close_mosaic`` epochs (idempotent)."""
        self.epoch = epoch
        closing = self.augment and self.close_mosaic_epoch is not None and epoch >= self.close_mosaic_epoch
        if closing and not self.mosaic_closed:
            self.close_mosaic(copy(self.hyp))
            self.mosaic_closed = True

    def __getitem__(self, index: int) -> dict[str, Any]:
        with seeded_global_rng(hash((self.seed, self.epoch, index)) & 0x7FFF_FFFF):
            sample = self.transforms(self.get_image_and_label(index))
        sample["index"] = index
        if not self.augment:
            sample["gt"] = self.gt[index]
        return sample


def collate(samples: list[dict]) -> dict:
    """ultralytics' own ``collate_fn`` (stacked images, concatenated boxes with their image index)."""
    return YOLODataset.collate_fn(samples)
