"""Boxes for a few images by whichever family a bundle is, and the grid of them the card shows."""

from __future__ import annotations

from pathlib import Path

from hf_tasks.images import to_rgb
from hf_tasks.registry import ModelBundle


def predict_images(bundle: ModelBundle, images: list, conf: float = 0.25) -> list[dict]:
    """xyxy boxes, scores and label ids for PIL images, by the bundle's own family."""
    if bundle.settings is not None and bundle.settings.family != "ultralytics":
        from hf_tasks.tasks.detection.processed import (
            predict_images as processed_predict,
        )

        return processed_predict(bundle.model, bundle.processor, images, threshold=conf)
    return bundle.model.predict_images(images, conf=conf)


def save_prediction_grid(bundle: ModelBundle, split, path: Path, count: int = 8) -> None:
    from hf_tasks.tasks.detection.plots import plot_prediction_grid

    images = [to_rgb(split[i]["image"]) for i in range(min(count, len(split)))]
    plot_prediction_grid(images, predict_images(bundle, images, conf=0.25), bundle.label_names, path)
