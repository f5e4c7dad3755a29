"""Object detection with ultralytics YOLO (v8 n/s/m/l/x, v5u, …) trained by the shared accelerate loop.

Only glue lives here; the parts are ultralytics' own: ``DetectionModel`` (from a yaml or a ``.pt``), its
``v8DetectionLoss`` (gains box/cls/dfl from its default cfg unless ``model.config.hyp`` says otherwise), its
``YOLODataset`` augmentation pipeline fed from our Arrow splits (``hf_tasks.tasks.detection.yolo_data``), its ``collate_fn``, its
NMS and its ``ModelEMA`` (through ``TrainHooks``). mAP comes from the project's ``coco_map`` metric.

``model.config`` keys (all optional):

- ``depth_multiple``, ``width_multiple``, ``max_channels``: rescale the yaml's scale (tiny test models);
- ``hyp``: ultralytics hyperparameters we use — augmentation (``mosaic``, ``hsv_h``, ``fliplr``, ``close_mosaic``…),
  loss gains (``box``, ``cls``, ``dfl``) and ``cache: ram`` (decode every image once); trainer settings are our
  config's (``lr0`` is ``optim.lr``);
- ``ema`` (default true), ``ema_decay`` (0.9999), ``ema_tau`` (2000): ultralytics' ModelEMA of the weights, which
  is what gets evaluated and saved;
- ``keep_coco_classes``: with a ``.pt``, keep its classes and append the dataset's new ones
  (``models.yolo.class_list``);
- ``trust_pickle``: the older spelling of ``model.trust_pickle`` (``--trust-pickle``): allow a ``.pt`` that
  ``torch.load(weights_only=True)`` refuses (it can run code);
- ``export_pt``: also write ``model.pt`` for ``ultralytics.YOLO`` (listed in ``export_manifest.json``);
- ``conf`` (0.001), ``iou`` (0.7), ``max_det`` (300): NMS for evaluation, ultralytics' validation defaults;
- ``plots`` (default true): the grid of predicted boxes for the card.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.data import open_run_splits
from hf_tasks.errors import ConfigError, DataError
from hf_tasks.images import to_rgb
from hf_tasks.registry import ModelBundle, TaskData, TaskSpec, TrainHooks, register_task

DEFAULT_IMAGE_SIZE = 640
MODEL_KEYS = ("depth_multiple", "width_multiple", "max_channels", "hyp", "ema", "ema_decay", "ema_tau",
              "keep_coco_classes", "trust_pickle", "export_pt", "conf", "iou", "max_det", "plots")
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
PREDICTIONS_FILE = "predictions.png"


@dataclass
class DetectionSettings:
    """What a run needs besides the network (the ``processor`` of the bundle)."""

    imgsz: int = DEFAULT_IMAGE_SIZE
    hyp: Any = None  # ultralytics' namespace (augmentation + loss gains)
    nms: dict = field(default_factory=lambda: {"conf": 0.001, "iou": 0.7, "max_det": 300})
    export_pt: bool = False
    plots: bool = True


# ----------------------------------------------------------------------------------------------- config checks


def validate(cfg: TrainConfig) -> None:
    name, mc = cfg.model.name, cfg.model.config
    if not name.endswith((".yaml", ".yml", ".pt")):
        raise ConfigError(f"'model.name' {name!r}: detection takes an ultralytics yaml (yolov8n.yaml … yolov8x.yaml, "
                          "yolov5nu.yaml) to train from scratch, or a .pt checkpoint to fine-tune")
    _check_keys(mc, MODEL_KEYS, "model.config")
    if cfg.model.checkpoint:
        raise ConfigError("'model.checkpoint' is for classification; detection starts from a .pt given as "
                          "model.name")
    if cfg.model.trust_remote_code:
        raise ConfigError("'model.trust_remote_code' does not apply to detection: ultralytics models are built from a "
                          "yaml or a .pt, never from a repository's code")
    hyp = mc.get("hyp") or {}
    if not isinstance(hyp, dict):
        raise ConfigError(f"'model.config.hyp' must be a mapping, got {hyp!r}")
    for key in hyp:
        if key in TRAINER_KEYS:
            raise ConfigError(f"'model.config.hyp.{key}' is a YOLO.train() setting; here it is {TRAINER_KEYS[key]!r}")
    _check_keys(hyp, HYP_KEYS, "model.config.hyp")
    if hyp.get("cache") == "disk":
        raise ConfigError("'model.config.hyp.cache' disk is not supported (images live in Arrow); use ram or false")
    if mc.get("keep_coco_classes") and not name.endswith(".pt"):
        raise ConfigError("'model.config.keep_coco_classes' needs pretrained weights: set model.name to a .pt")
    size = cfg.data.image_size
    if size is not None and size % 32:
        raise ConfigError(f"'data.image_size' must be a multiple of 32 for YOLO (got {size})")
    if cfg.data.augment.resolved() != type(cfg.data.augment)().resolved():
        raise ConfigError("'data.augment' is classification's; detection uses ultralytics' augmentation: set "
                          "model.config.hyp (mosaic, hsv_h, degrees, translate, scale, fliplr, ...)")
    for key in ("conf", "iou"):
        if key in mc and not 0 <= float(mc[key]) <= 1:
            raise ConfigError(f"'model.config.{key}' must be in [0, 1] (got {mc[key]})")


def _check_keys(values: dict, known: tuple[str, ...], prefix: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean '{prefix}.{close[0]}'?" if close else ""
            raise ConfigError(f"unknown key '{prefix}.{key}'{hint} Known: {', '.join(known)}")


# ----------------------------------------------------------------------------------------------- data


def objects_column(cfg: TrainConfig) -> str:
    """``data.label_column`` names the objects column when set; classification's default ``label`` means objects."""
    return "objects" if cfg.data.label_column == "label" else cfg.data.label_column


def load_data(cfg: TrainConfig) -> TaskData:
    """Open the prepared dataset; every split must have images, an objects column and the same class list."""
    from hf_tasks.tasks.columns import check_image_column, mismatch, objects_problem
    from hf_tasks.tasks.detection.yolo_data import category_names

    data, column = cfg.data, objects_column(cfg)
    dataset_dict, splits = open_run_splits(data)
    check_image_column(splits, "detection", data.image_column)
    names = None
    for split, ds in splits.items():
        if column not in ds.features:
            raise mismatch("detection", split, f"has no {column!r} column of boxes and classes ('data.label_column')",
                           ds.features)
        problem = objects_problem(ds.features[column])
        if problem:
            raise mismatch("detection", split, f"column {column!r} {problem}", ds.features)
        split_names = category_names(ds.features, column)
        if names is not None and split_names != names:
            raise DataError(f"split {split!r} has classes {split_names}, other splits have {names}")
        names = split_names
    info = {"label_names": names, "num_labels": len(names), "dataset": data.dataset,
            "split_sizes": {split: len(ds) for split, ds in dataset_dict.items()}}
    return TaskData(splits=splits, info=info)


def class_map(model_names: list[str], dataset_names: list[str]) -> list[int]:
    """The detector's class id of each dataset class, matched by name (case-insensitive)."""
    index = {n.strip().lower(): i for i, n in enumerate(model_names)}
    missing = [n for n in dataset_names if n.strip().lower() not in index]
    if missing:
        raise DataError(f"the model does not predict the dataset's classes {missing}; it knows {model_names[:20]}")
    return [index[n.strip().lower()] for n in dataset_names]


def make_dataset(split, bundle: ModelBundle, cfg: TrainConfig, data: TaskData, train: bool):
    """ultralytics' dataset/augmentation over one Arrow split (see ``hf_tasks.tasks.detection.yolo_data``)."""
    from hf_tasks.models.yolo import ultralytics_hyperparameters
    from hf_tasks.tasks.detection.yolo_data import ArrowYOLODataset

    settings: DetectionSettings = bundle.processor
    hyp = settings.hyp or ultralytics_hyperparameters()
    mapping = class_map(bundle.label_names, data.info["label_names"])
    data.info["class_map"] = mapping
    close_at = cfg.epochs - hyp.close_mosaic if train and hyp.close_mosaic else None
    stride = max(int(bundle.model.model.stride.max()), 32)
    return ArrowYOLODataset(split, imgsz=settings.imgsz, augment=train, hyp=hyp,
                            names=dict(enumerate(bundle.label_names)), class_map=mapping,
                            image_column=cfg.data.image_column, objects_column=objects_column(cfg), seed=cfg.seed,
                            batch_size=cfg.batch_size, stride=stride, close_mosaic_epoch=close_at)


def collate(samples: list[dict]) -> dict:
    from hf_tasks.tasks.detection.yolo_data import collate as yolo_collate

    return yolo_collate(samples)


# ----------------------------------------------------------------------------------------------- model


def build_model(cfg: TrainConfig, data: TaskData) -> ModelBundle:
    from hf_tasks.models.yolo import build_detector, reset_class_head, ultralytics_hyperparameters

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
    detector.nms = dict(settings.nms)
    if cfg.model.freeze_backbone:
        freeze_backbone(detector)
    return ModelBundle(model=detector, processor=settings, label_names=list(detector.names))


def _run_head_check(cfg: TrainConfig, dataset_names: list[str]):
    """For a ``.pt`` exported by an hf-tasks run: its classes must be the dataset's, unless the user asks for a new
    head (``model.reset_head``) or to keep them and append new ones (``keep_coco_classes``)."""
    from hf_tasks.tasks.labels import check_head_labels, is_run

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
    (``policy``, a ``hf_tasks.trust.LoadPolicy``, only contributes its revision)."""
    from hf_tasks.models.yolo import YoloDetector

    try:
        detector = YoloDetector.from_pretrained(str(path), revision=getattr(policy, "revision", None))
    except (OSError, ValueError) as err:
        raise ConfigError(f"'model' {str(path)!r} is not a saved hf-tasks detector ({err})") from None
    return ModelBundle(model=detector, processor=DetectionSettings(imgsz=detector.imgsz),
                       label_names=list(detector.names))


def save_model(bundle: ModelBundle, path: Path, data: TaskData) -> None:
    """Safetensors + config.json (``YoloDetector.from_pretrained``), the optional ``.pt``, the predictions grid."""
    from hf_tasks.models.yolo import export_ultralytics_pt

    settings: DetectionSettings = bundle.processor
    bundle.model.save_pretrained(path)
    if settings.export_pt:
        export_ultralytics_pt(bundle.model, path)
    split = next((s for s in ("test", "validation") if s in data.splits), None)
    if settings.plots and split is not None:
        save_prediction_grid(bundle.model, data.splits[split], Path(path) / PREDICTIONS_FILE)


def save_prediction_grid(detector, split, path: Path, count: int = 8) -> None:
    from hf_tasks.tasks.detection.plots import plot_prediction_grid

    images = [to_rgb(split[i]["image"]) for i in range(min(count, len(split)))]
    predictions = detector.predict_images(images, conf=0.25)
    plot_prediction_grid(images, predictions, detector.names, path)


# ----------------------------------------------------------------------------------------------- steps


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """ultralytics' v8DetectionLoss: (box, cls, dfl) gains-weighted, times the batch size, summed — its scale, so
    its learning rates and gradient clipping at 10 carry over."""
    inputs = {"img": batch["img"].float() / 255, "batch_idx": batch["batch_idx"], "cls": batch["cls"],
              "bboxes": batch["bboxes"]}
    loss, _ = model(inputs)
    return {"loss": loss.sum()}


def predict(model: torch.nn.Module, batch: dict) -> list[dict]:
    """NMS'd boxes in original-image COCO xywh pixels, with the sample's exact ground truth, one dict per image."""
    from hf_tasks.models.yolo import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.utils import nms, ops

    core = getattr(model, "module", model)
    settings = getattr(core, "nms", DetectionSettings().nms)
    img = batch["img"].float() / 255
    raw = model(img)
    raw = raw[0] if isinstance(raw, (tuple, list)) else raw
    detections = nms.non_max_suppression(raw.float(), settings["conf"], settings["iou"], multi_label=True,
                                         max_det=settings["max_det"], nc=0,
                                         end2end=getattr(core.model, "end2end", False))
    outputs = []
    for i, det in enumerate(detections):
        boxes = ops.scale_boxes(img.shape[2:], det[:, :4].clone(), batch["ori_shape"][i],
                                ratio_pad=batch["ratio_pad"][i])
        boxes[:, 2:] -= boxes[:, :2]  # xyxy → COCO xywh
        outputs.append({"index": int(batch["index"][i]), "boxes": boxes.cpu().numpy(),
                        "scores": det[:, 4].cpu().numpy(), "labels": det[:, 5].long().cpu().numpy(),
                        "gt": batch["gt"][i]})
    return outputs


_METRIC = {}


def compute_metrics(outputs: list[dict], data: TaskData) -> dict[str, Any]:
    """coco_map over the dataset's classes (detections of classes the dataset lacks are not scored), plus the PR
    curve for the card."""
    import numpy as np

    from hf_tasks.tasks.detection.plots import pr_curve
    from hf_tasks.metrics import load_metric

    names = data.info["label_names"]
    to_dataset = {model_id: k for k, model_id in enumerate(data.info.get("class_map") or range(len(names)))}
    predictions, references = [], []
    for out in outputs:
        keep = np.array([int(label) in to_dataset for label in out["labels"]], bool)
        labels = [to_dataset[int(label)] for label in out["labels"][keep]]
        predictions.append({"boxes": out["boxes"][keep], "scores": out["scores"][keep], "labels": labels})
        references.append({k: v for k, v in out["gt"].items() if v is not None})
    if "coco_map" not in _METRIC:
        _METRIC["coco_map"] = load_metric("coco_map")
    results = _METRIC["coco_map"].compute(predictions=predictions, references=references, label_names=names)
    results.pop("per_class_ap_by_name", None)  # the same numbers as per_class_ap, keyed by name
    results["per_class_names"] = list(names)
    not_crowd = [{"boxes": r["boxes"][r["iscrowd"] == 0], "labels": r["labels"][r["iscrowd"] == 0]}
                 for r in references]
    results["pr_curve"] = pr_curve(predictions, not_crowd, len(names))
    return results


# ----------------------------------------------------------------------------------------------- EMA


class EmaHooks(TrainHooks):
    """ultralytics' ModelEMA in the shared loop: updated after each optimizer step, evaluated and saved instead of
    the raw weights, and checkpointed (weights + update count, which sets the decay) so a resume is exact."""

    def __init__(self, model: torch.nn.Module, decay: float, tau: float):
        from ultralytics.utils.torch_utils import ModelEMA

        self.settings = {"decay": decay, "tau": tau}
        self.ema = ModelEMA(model, **self.settings)

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        self.ema.update(model)

    def model_for_eval(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.ema.ema

    def state_dict(self) -> dict:
        return {"ema": {k: v.detach().clone() for k, v in self.ema.ema.state_dict().items()},
                "updates": self.ema.updates}

    def load_state_dict(self, state: dict) -> None:
        """A fresh ModelEMA around the restored weights, so nothing it cached from before the restore survives."""
        from ultralytics.utils.torch_utils import ModelEMA

        ema = ModelEMA(self.ema.ema, **self.settings)
        ema.ema.load_state_dict(state["ema"])
        ema.updates = int(state["updates"])
        self.ema = ema


def make_hooks(cfg: TrainConfig, model: torch.nn.Module) -> TrainHooks:
    mc = cfg.model.config
    if not mc.get("ema", True):
        return TrainHooks()
    return EmaHooks(model, decay=float(mc.get("ema_decay", 0.9999)), tau=float(mc.get("ema_tau", 2000)))


SPEC = register_task(TaskSpec(
    name="detection", main_metric="map", greater_is_better=True, validate=validate, load_data=load_data,
    build_model=build_model, load_model=load_model, make_dataset=make_dataset, collate=collate, forward=forward,
    predict=predict, compute_metrics=compute_metrics, save_model=save_model, make_hooks=make_hooks,
))
