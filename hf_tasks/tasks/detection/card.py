"""The detection model card: (config, results, figures) → card text, and the figures drawn from ``results.json``.

Used by ``hf_tasks.cards`` through ``CARD`` (the spec's ``card``). The model-index holds mAP50-95 and mAP50 on the
test split; every number comes from ``results.json`` (``test_map``, ``test_map_50``, ``test_per_class_*``,
``test_pr_curve``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hf_tasks.config import TrainConfig
from hf_tasks.registry import CardParts
from hf_tasks.util import fmt, is_hub_id

PR_FILE = "pr_curve.png"
PER_CLASS_FILE = "per_class_ap.png"
PREDICTIONS_FILE = "predictions.png"  # written by the task's save_model (it needs the model)


def plot_figures(results: dict, output_dir: Path) -> None:
    """PR curve and per-class AP bars of the test split, when the run has test results."""
    from hf_tasks.tasks.detection.plots import plot_per_class_ap, plot_pr_curve

    names = results.get("test_per_class_names")
    if not names:
        return
    if results.get("test_pr_curve"):
        plot_pr_curve(results["test_pr_curve"], names, results.get("test_per_class_ap50") or [], output_dir / PR_FILE)
    plot_per_class_ap(names, results.get("test_per_class_ap") or [], results.get("test_per_class_ap50") or [],
                      output_dir / PER_CLASS_FILE)


def figure_files(output_dir: Path) -> list[tuple[str, str]]:
    """(alt text, file) of the figures present in a run folder, in card order."""
    wanted = [("predictions on test images", PREDICTIONS_FILE), ("precision-recall curves", PR_FILE),
              ("per-class AP", PER_CLASS_FILE)]
    return [(alt, name) for alt, name in wanted if (output_dir / name).is_file()]


def is_pretrained(cfg: TrainConfig) -> bool:
    return cfg.model.name.endswith(".pt") and cfg.model.pretrained


def card_data(cfg: TrainConfig, results: dict):
    from huggingface_hub import EvalResult, ModelCardData

    dataset = cfg.data.dataset
    common = dict(task_type="object-detection", dataset_type=dataset, dataset_name=Path(dataset).name or dataset,
                  dataset_split=cfg.data.test_split, dataset_revision=cfg.data.revision)
    evals = [EvalResult(metric_type=key, metric_name=name, metric_value=results[f"test_{key}"], **common)
             for key, name in (("map", "mAP50-95"), ("map_50", "mAP50")) if results.get(f"test_{key}") is not None]
    return ModelCardData(
        model_name=Path(cfg.output_dir).name, library_name="hf-tasks", pipeline_tag="object-detection",
        tags=["object-detection", "hf-tasks", "ultralytics", "yolo"],
        # base_model would have to be a Hub repo id; a .pt file name is not one (the description names it)
        datasets=[dataset] if is_hub_id(dataset) else None, metrics=["map"], eval_results=evals or None,
    )


def context(cfg: TrainConfig, results: dict, output_dir: Path | None = None) -> dict[str, Any]:
    """Template variables of ``model_cards/detection.md`` (``output_dir``: which figure files exist)."""
    names = results.get("test_per_class_names") or []
    columns = [results.get(f"test_per_class_{k}") or [None] * len(names)
               for k in ("ap", "ap50", "precision", "recall", "num_gt")]
    per_class = [{"name": n, "ap": fmt(a), "ap50": fmt(b), "precision": fmt(p), "recall": fmt(r), "gt": g}
                 for n, a, b, p, r, g in zip(names, *columns)]
    headline = [(label, fmt(results[key])) for label, key in (
        ("mAP50-95", "test_map"), ("mAP50", "test_map_50"), ("mAP75", "test_map_75"), ("precision", "test_precision"),
        ("recall", "test_recall"), ("test images", "test_num_images")) if results.get(key) is not None]
    what = "fine-tuned from" if is_pretrained(cfg) else "trained from scratch as"
    model_names = results.get("label_names") or names
    return {
        "model_name": Path(cfg.output_dir).name,
        "description": f"A YOLO object detector {what} `{cfg.model.name}` on `{cfg.data.dataset}`, trained with "
                       "hf-tasks' accelerate loop using ultralytics' model, loss, augmentation and EMA.",
        "headline": headline, "per_class": per_class, "label_names": model_names, "num_labels": len(model_names),
        "dataset_classes": names, "image_size": cfg.data.image_size or 640,
        "figures": figure_files(Path(output_dir)) if output_dir is not None else [],
        "dataset": cfg.data.dataset, "split_sizes": results.get("dataset_split_sizes", {}),
        "ultralytics_version": _version("ultralytics"),
    }


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def usage(cfg: TrainConfig, model_id: str, output_dir: Path | None = None) -> str:
    """Runs as written (a test executes it): hf-tasks' detector, and ultralytics itself when the run exported
    ``model.pt``."""
    has_pt = output_dir is not None and (Path(output_dir) / "model.pt").is_file()
    lines = ["from PIL import Image", "from hf_tasks.models.yolo import YoloDetector", "",
             f'model = YoloDetector.from_pretrained("{model_id}")',
             'result = model.predict_images([Image.open("image.jpg")], conf=0.25)[0]',
             'print(result["names"], result["boxes"], result["scores"])']
    if has_pt:
        where = f'"{Path(model_id) / "model.pt"}"' if Path(model_id).exists() else \
            f'hf_hub_download("{model_id}", "model.pt")'
        lines += ["", "# or with ultralytics itself, from the exported checkpoint"]
        if not Path(model_id).exists():
            lines.append("from huggingface_hub import hf_hub_download")
        lines += ["from ultralytics import YOLO", "", f"print(YOLO({where}).predict(\"image.jpg\")[0].boxes)"]
    return "\n".join(lines)


CARD = CardParts(template="detection.md", context=context, card_data=card_data, usage=usage, figures=plot_figures)
