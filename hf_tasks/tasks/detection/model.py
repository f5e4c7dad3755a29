"""The detection task's model glue: build, load and save the network of each family (the architectures themselves
live in ``hf_tasks.models``; the processor-fed families' parts in ``processed_models``)."""

from __future__ import annotations

from pathlib import Path

from hf_tasks.config import TrainConfig
from hf_tasks.errors import ConfigError
from hf_tasks.registry import ModelBundle, TaskData
from hf_tasks.tasks.detection.predictions import save_prediction_grid
from hf_tasks.tasks.detection.settings import DEFAULT_IMAGE_SIZE, PREDICTIONS_FILE, DetectionSettings

HYP_KEYS = ("hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr",
            "bgr", "mosaic", "mixup", "cutmix", "copy_paste", "copy_paste_mode", "close_mosaic", "box", "cls", "dfl",
            "cache")
# YOLO.train() settings that are ours to set: naming the key to use beats silently ignoring it
TRAINER_KEYS = {"lr0": "optim.lr", "lrf": "optim.scheduler", "cos_lr": "optim.scheduler", "epochs": "epochs",
                "batch": "batch_size", "imgsz": "data.image_size", "optimizer": "optim.optimizer",
                "weight_decay": "optim.weight_decay", "momentum": "optim.betas / optim.momentum",
                "warmup_epochs": "optim.warmup_ratio", "workers": "data.num_workers", "seed": "seed",
                "amp": "mixed_precision", "nbs": "grad_accum", "patience": "early_stopping_patience",
                "freeze": "model.freeze_backbone", "conf": "model.config.conf", "iou": "model.config.iou"}


# ----------------------------------------------------------------------------------------------- model


def build_model(cfg: TrainConfig, data: TaskData) -> ModelBundle:
    from hf_tasks.tasks.detection.family import TORCHVISION, TRANSFORMERS, family_of

    family = family_of(cfg.model.name)
    if family in (TORCHVISION, TRANSFORMERS):
        from hf_tasks.tasks.detection.processed_models import (
            build_torchvision,
            build_transformers,
        )

        return (build_torchvision if family == TORCHVISION else build_transformers)(cfg, data)
    return build_yolo(cfg, data)


def build_yolo(cfg: TrainConfig, data: TaskData) -> ModelBundle:
    from hf_tasks.models.yolo import (
        build_detector,
        reset_class_head,
        ultralytics_hyperparameters,
    )

    mc = cfg.model.config
    imgsz = cfg.data.image_size or DEFAULT_IMAGE_SIZE
    hyp = ultralytics_hyperparameters({**(mc.get("hyp") or {}), "imgsz": imgsz})
    detector = build_detector(cfg.model.name, data.info["label_names"], imgsz, mc, hyp, cfg.model.pretrained,
                              trust_pickle=cfg.model.trust_pickle or bool(mc.get("trust_pickle")),
                              check_source=_run_head_check(cfg, data.info["label_names"]))
    if cfg.model.reset_head:
        reset_class_head(detector)
    settings = DetectionSettings(imgsz=imgsz, hyp=hyp, export_pt=bool(mc.get("export_pt")),
                                 plots=bool(mc.get("plots", True)))
    settings.nms.update({k: mc[k] for k in ("conf", "iou", "max_det") if k in mc})
    if cfg.model.freeze_backbone:
        freeze_backbone(detector)
    return ModelBundle(model=detector, processor=None, label_names=list(detector.names), settings=settings)


def _run_head_check(cfg: TrainConfig, dataset_names: list[str]):
    """For a ``.pt`` exported by an hf-tasks run: its classes must be the dataset's, unless the user asks for a new
    head (``model.reset_head``) or to keep them and append new ones (``keep_coco_classes``)."""
    from hf_tasks.labels import check_head_labels, is_run

    name = cfg.model.name
    if cfg.model.reset_head or cfg.model.config.get("keep_coco_classes") or not Path(name).is_file() or \
            not is_run(name):
        return None
    return lambda names: check_head_labels(name, names, dataset_names, cfg.data.dataset)


def freeze_backbone(detector) -> None:
    """Train only neck and head: the yaml's ``backbone`` layers (``model.<i>.*`` with i < their count) are frozen."""
    layers = len(detector.model.yaml["backbone"])
    for name, param in detector.model.named_parameters():
        if int(name.split(".")[1]) < layers:
            param.requires_grad = False


def load_model(path: str | Path, policy=None) -> ModelBundle:
    """A saved output folder (or Hub repo id) back as a bundle, for ``hf-tasks evaluate``; always safetensors
    (``policy``, a ``hf_tasks.trust.LoadPolicy``, only contributes its revision). A YOLO run's config.json holds
    its ultralytics yaml; any other is an ``AutoModelForObjectDetection`` with its image processor."""
    if "model_yaml" not in saved_config(path, policy):
        from hf_tasks.tasks.detection.processed_models import load_processed

        return load_processed(path, policy)
    from hf_tasks.models.yolo import YoloDetector

    try:
        detector = YoloDetector.from_pretrained(str(path), revision=getattr(policy, "revision", None))
    except (OSError, ValueError) as err:
        raise ConfigError(f"'model' {str(path)!r} is not a saved hf-tasks detector ({err})") from None
    return ModelBundle(model=detector, processor=None, label_names=list(detector.names),
                       settings=DetectionSettings(imgsz=detector.imgsz))


def saved_config(path: str | Path, policy=None) -> dict:
    """The ``config.json`` of a saved run (folder or Hub repo), or a ConfigError saying it is not a detector run."""
    import json

    from huggingface_hub import hf_hub_download

    try:
        file = Path(path) / "config.json" if Path(path).is_dir() else \
            hf_hub_download(str(path), "config.json", revision=getattr(policy, "revision", None))
        return json.loads(Path(file).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"'model' {str(path)!r} is not a saved detector (no readable config.json: {err})") from None


def save_model(bundle: ModelBundle, path: Path, data: TaskData) -> None:
    """config.json + safetensors + preprocessor_config.json (``AutoModelForObjectDetection``, ``pipeline`` and
    ``YoloDetector.from_pretrained`` all load them), the optional ``.pt``, the predictions grid."""
    settings: DetectionSettings = bundle.settings
    if settings.family != "ultralytics":
        from hf_tasks.tasks.detection.processed_models import save_processed

        return save_processed(bundle, path, data)
    from hf_tasks.models.yolo import export_ultralytics_pt
    from hf_tasks.models.yolo_transformers import save_transformers

    save_transformers(bundle.model, path, iou=settings.nms["iou"], max_det=settings.nms["max_det"])
    if settings.export_pt:
        export_ultralytics_pt(bundle.model, path)
    split = next((s for s in ("test", "validation") if s in data.splits), None)
    if settings.plots and split is not None:
        save_prediction_grid(bundle, data.splits[split], Path(path) / PREDICTIONS_FILE)
