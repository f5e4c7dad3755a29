"""What ``hf-tasks demo`` needs of classification: its built-in job on the shapes data, loading a published model
back as its card says to predict one image, the held-out row's label, and the numbers the summary shows."""

from __future__ import annotations

from typing import Any

from hf_tasks.registry import Bar, DemoParts, Preset
from hf_tasks.tasks.columns import class_name

# (results.json key, short name); the first is the task's headline number
HEADLINE = (("test_accuracy", "accuracy"), ("test_macro_f1", "macro F1"))

PRESET = Preset(
    recipe="shapes_cnn", repo_name="shapes-cnn", bar=Bar("test_accuracy", 0.95),
    build=("--task", "classification", "--num-images", "600", "--image-size", "64"))  # < 1 min: same quick


def predict(ref: str, image) -> dict[str, Any]:
    from transformers import pipeline

    import hf_tasks.models  # noqa: F401  (registers the small CNN with the Auto classes)

    classify = pipeline("image-classification", model=ref, model_kwargs={"use_safetensors": True})
    top = classify(image, top_k=1)[0]
    return {"label": top["label"], "score": round(float(top["score"]), 4)}


def ground_truth(row: dict, features, image_column: str = "image", label_column: str = "label") -> dict[str, Any]:
    """The row's class name (empty when the row has no label column)."""
    if label_column not in row:
        return {}
    return {"label": class_name(features[label_column], row[label_column])}


def describe(prediction: dict[str, Any], truth: dict[str, Any]) -> str:
    return f"{prediction['label']} ({prediction['score']:.2f}); truth {truth.get('label', '?')}"


DEMO = DemoParts(predict=predict, ground_truth=ground_truth, preset=PRESET, describe=describe)
