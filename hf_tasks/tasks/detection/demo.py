"""What ``hf-tasks demo`` needs of detection: its built-in job on the shapes data, loading a published model back as
its card says to predict one image, the held-out row's boxes, the picture with the predicted boxes, and the numbers
the summary shows."""

from __future__ import annotations

from typing import Any

from hf_tasks.registry import Bar, DemoParts, Preset
from hf_tasks.tasks.columns import class_name

# (results.json key, short name); the first is the task's headline number
HEADLINE = (("test_map_50", "mAP50"), ("test_map", "mAP50-95"))

PRESET = Preset(
    recipe="shapes_yolov8n", repo_name="shapes-yolov8n", bar=Bar("test_map_50", 0.5),
    build=("--task", "detection", "--num-images", "480", "--image-size", "128", "--val-fraction", "0.1667",
           "--test-fraction", "0.1667"),
    overrides=("--data.test_split", "test"),
    quick_overrides=("--epochs", "8", "--model.config", "{hyp: {close_mosaic: 3, cache: ram}}"))


def predict(ref: str, image, conf: float = 0.25) -> dict[str, Any]:
    """What a user gets from the published model: ``pipeline("object-detection")``, as the card's snippet says."""
    from transformers import pipeline

    import hf_tasks.models  # noqa: F401  (registers hf-tasks' detector architectures)

    found = pipeline("object-detection", model=ref)(image, threshold=conf)
    return {"boxes": [[float(d["box"][k]) for k in ("xmin", "ymin", "xmax", "ymax")] for d in found],
            "scores": [round(float(d["score"]), 3) for d in found], "labels": [d["label"] for d in found]}


def ground_truth(row: dict, features, image_column: str = "image", label_column: str = "label") -> dict[str, Any]:
    """The row's boxes (``[x, y, w, h]``) and class names (empty when the row has no ``objects`` column)."""
    if "objects" not in row:
        return {}
    categories = features["objects"]["category"]
    return {"boxes_xywh": row["objects"]["bbox"],
            "labels": [class_name(categories, c) for c in row["objects"]["category"]]}


def draw(image, prediction: dict[str, Any]):
    """A copy of the image with the predicted boxes, their class names and scores."""
    from PIL import ImageDraw

    image = image.copy()
    canvas = ImageDraw.Draw(image)
    for box, name, score in zip(prediction["boxes"], prediction["labels"], prediction["scores"]):
        canvas.rectangle(box, outline=(255, 0, 0), width=2)
        canvas.text((box[0] + 2, box[1] + 1), f"{name} {score:.2f}", fill=(255, 0, 0))
    return image


def describe(prediction: dict[str, Any], truth: dict[str, Any]) -> str:
    found = ", ".join(f"{n} {s:.2f}" for n, s in zip(prediction["labels"], prediction["scores"])) or "nothing"
    return f"{len(prediction['labels'])} boxes: {found}; truth {', '.join(map(str, truth.get('labels', [])))}"


DEMO = DemoParts(predict=predict, ground_truth=ground_truth, preset=PRESET, draw=draw, describe=describe)
