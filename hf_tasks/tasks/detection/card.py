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
from hf_tasks.tasks.detection.family import LICENSES, TORCHVISION, TRANSFORMERS, ULTRALYTICS, family_of, is_model_type
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
    family = family_of(cfg.model.name)
    return cfg.model.pretrained and (family != ULTRALYTICS or cfg.model.name.endswith(".pt")) and \
        not (family == TRANSFORMERS and is_model_type(cfg.model.name))


# what each family's card says about the model, its licence and its library (the Hub's own library names)
FAMILY = {
    ULTRALYTICS: {"what": "A YOLO object detector", "library": "ultralytics", "tags": ["ultralytics", "yolo"],
                  "parts": "ultralytics' `DetectionModel`, `v8DetectionLoss`, `YOLODataset` augmentation (mosaic, "
                           "HSV, flips, close-mosaic) and `ModelEMA`; the loss is ultralytics' scale (summed over the "
                           "images of a batch)",
                  "input": "letterboxed to that size",
                  "nms": "NMS at confidence {conf}, IoU {iou}, {max_det} detections per image (ultralytics validates "
                         "at 0.001, 0.7, 300)"},
    TORCHVISION: {"what": "A torchvision Faster R-CNN detector", "library": "transformers",
                  "tags": ["torchvision", "faster-rcnn"],
                  "parts": "torchvision's network and its four losses (RPN objectness and box, RoI class and box), "
                           "wrapped as a transformers model; horizontal flips",
                  "input": "resized to a square of that side",
                  "nms": "torchvision's post-processing: score above {conf}, NMS IoU {iou}, {max_det} detections per "
                         "image"},
    TRANSFORMERS: {"what": "A transformers object detector", "library": "transformers", "tags": ["detr"],
                   "parts": "the model's own loss (Hungarian matching) and image processor; horizontal flips",
                   "input": "resized to a square of that side by its image processor",
                   "nms": "the image processor's `post_process_object_detection`, score above {conf}"},
}


def base_license(name: str) -> str:
    """The licence of a transformers detector's base weights: its card's, read locally or from the Hub (when the
    Hub can be asked); a bare model_type trained here from scratch is transformers' own code, Apache-2.0."""
    from huggingface_hub import ModelCard

    from hf_tasks.models.yolo import env_flag

    if is_model_type(name):
        return "apache-2.0"
    try:
        if Path(name).is_dir():
            return ModelCard.load(Path(name) / "README.md").data.license or "other"
        if env_flag("HF_HUB_OFFLINE"):
            return "other"
        return ModelCard.load(name).data.license or "other"
    except Exception:  # no card, no network: the card then says to read the base model's terms
        return "other"


def license_fields(cfg: TrainConfig) -> dict[str, str]:
    family = family_of(cfg.model.name)
    license_id = LICENSES.get(family) or base_license(cfg.model.name)
    if license_id != "other":
        return {"license": license_id}
    link = f"https://huggingface.co/{cfg.model.name}" if is_hub_id(cfg.model.name) else cfg.model.name
    return {"license": "other", "license_name": "base-model-license", "license_link": link}


def card_data(cfg: TrainConfig, results: dict):
    from huggingface_hub import EvalResult, ModelCardData

    dataset = cfg.data.dataset
    common = {"task_type": "object-detection", "dataset_type": dataset, "dataset_name": Path(dataset).name or dataset,
              "dataset_split": cfg.data.test_split, "dataset_revision": cfg.data.revision}
    evals = [EvalResult(metric_type=key, metric_name=name, metric_value=results[f"test_{key}"], **common)
             for key, name in (("map", "mAP50-95"), ("map_50", "mAP50")) if results.get(f"test_{key}") is not None]
    family = FAMILY[family_of(cfg.model.name)]
    # base_model must be a Hub repo id; a .pt file or a torchvision builder is not one (the description names it)
    base = cfg.model.name if is_pretrained(cfg) and is_hub_id(cfg.model.name) else None
    return ModelCardData(
        model_name=Path(cfg.output_dir).name, library_name=family["library"], pipeline_tag="object-detection",
        tags=["object-detection", "hf-tasks", *family["tags"]], base_model=base, **license_fields(cfg),
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
    family_name = family_of(cfg.model.name)
    family = FAMILY[family_name]
    licence = license_fields(cfg)["license"]
    return {
        "model_name": Path(cfg.output_dir).name,
        "description": f"{family['what']} {what} `{cfg.model.name}` on `{cfg.data.dataset}`, trained with "
                       f"hf-tasks' accelerate loop. Licence: `{licence}`, {LICENSE_WHY[family_name]}.",
        "parts": family["parts"], "input": family["input"], "nms": family["nms"].format(**nms_settings(cfg)),
        "headline": headline, "per_class": per_class, "label_names": model_names, "num_labels": len(model_names),
        "dataset_classes": names, "image_size": cfg.data.image_size or 640,
        "figures": figure_files(Path(output_dir)) if output_dir is not None else [],
        "dataset": cfg.data.dataset, "split_sizes": results.get("dataset_split_sizes", {}),
        "library_versions": [(n, _version(n)) for n in (["ultralytics"] if family_name == ULTRALYTICS else
                                                          ["torchvision"] if family_name == TORCHVISION else [])],
    }


def nms_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The run's post-processing settings: its ``model.config`` over its family's option defaults."""
    from dataclasses import fields

    from hf_tasks.tasks.detection.options import options

    defaults = {f.name: f.default for f in fields(options(cfg)) if f.name in ("conf", "iou", "max_det")}
    return {**{"iou": None, "max_det": None}, **defaults, **{k: v for k, v in cfg.model.config.items() if k in defaults}}


LICENSE_WHY = {ULTRALYTICS: "the licence of ultralytics' code, which these weights need (AGPL-3.0)",
               TORCHVISION: "torchvision's licence (BSD-3-Clause); COCO-pretrained weights carry COCO's terms too",
               TRANSFORMERS: "the base model's licence (from its card), or transformers' (Apache-2.0) for a "
                             "model built here from a config"}


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def usage(cfg: TrainConfig, model_id: str, output_dir: Path | None = None) -> str:
    """Runs as written (a test executes it): transformers' pipeline on the run, for every family (``import
    hf_tasks.models`` registers the architectures that are ours), and ultralytics itself when the run exported
    ``model.pt``."""
    native = family_of(cfg.model.name) == TRANSFORMERS and (is_model_type(cfg.model.name) or
                                                            is_hub_id(cfg.model.name))
    ours = not native
    lines = ["from PIL import Image", "from transformers import pipeline", ""]
    if ours:
        lines[1:1] = ["", "import hf_tasks.models  # registers hf-tasks' detector architectures with transformers"]
    lines += [f'detector = pipeline("object-detection", model="{model_id}")',
              'print(detector(Image.open("image.jpg"), threshold=0.25))']
    if output_dir is not None and (Path(output_dir) / "model.pt").is_file():
        where = f'"{Path(model_id) / "model.pt"}"' if Path(model_id).exists() else \
            f'hf_hub_download("{model_id}", "model.pt")'
        lines += ["", "# or with ultralytics itself, from the exported checkpoint"]
        if not Path(model_id).exists():
            lines.append("from huggingface_hub import hf_hub_download")
        lines += ["from ultralytics import YOLO", "", f"print(YOLO({where}).predict(\"image.jpg\")[0].boxes)"]
    return "\n".join(lines)


CARD = CardParts(template="detection.md", context=context, card_data=card_data, usage=usage, figures=plot_figures)
