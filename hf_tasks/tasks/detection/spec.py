"""Object detection with ultralytics YOLO (v8 n/s/m/l/x, v5u, …) trained by the shared accelerate loop.

Only glue lives here; the parts are ultralytics' own: ``DetectionModel`` (from a yaml or a ``.pt``), its
``v8DetectionLoss`` (gains box/cls/dfl from its default cfg unless ``model.config.hyp`` says otherwise), its
``YOLODataset`` augmentation pipeline fed from our Arrow splits (``hf_tasks.tasks.detection.yolo_data``), its
``collate_fn``, its NMS and its ``ModelEMA`` (through ``TrainHooks``). mAP comes from the project's ``coco_map`` metric.

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

from typing import Any

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.errors import ConfigError
from hf_tasks.registry import ModelBundle, TaskData, TaskSpec, TrainHooks
from hf_tasks.tasks.detection.card import CARD
from hf_tasks.tasks.detection.data import class_map, collate, load_data, make_dataset
from hf_tasks.tasks.detection.demo import DEMO, HEADLINE
from hf_tasks.tasks.detection.model import (
    HYP_KEYS,
    TRAINER_KEYS,
    DetectionSettings,
    build_model,
    load_model,
    save_model,
)
from hf_tasks.tasks.detection.options import options
from hf_tasks.util import did_you_mean

# ----------------------------------------------------------------------------------------------- config checks


def validate(cfg: TrainConfig) -> None:
    name, mc = cfg.model.name, cfg.model.config
    if not name.endswith((".yaml", ".yml", ".pt")):
        raise ConfigError(f"'model.name' {name!r}: detection takes an ultralytics yaml (yolov8n.yaml … yolov8x.yaml, "
                          "yolov5nu.yaml) to train from scratch, or a .pt checkpoint to fine-tune")
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
            raise ConfigError(f"unknown key '{prefix}.{key}'{did_you_mean(str(key), known, prefix=prefix + '.')} "
                              f"Known: {', '.join(known)}")


# ----------------------------------------------------------------------------------------------- steps


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """ultralytics' v8DetectionLoss: (box, cls, dfl) gains-weighted, times the batch size, summed — its scale, so
    its learning rates and gradient clipping at 10 carry over."""
    inputs = {"img": batch["img"].float() / 255, "batch_idx": batch["batch_idx"], "cls": batch["cls"],
              "bboxes": batch["bboxes"]}
    loss, _ = model(inputs)
    return {"loss": loss.sum()}


def predict(model: torch.nn.Module, batch: dict, bundle: ModelBundle | None = None) -> list[dict]:
    """NMS'd boxes in original-image COCO xywh pixels, with the sample's exact ground truth, one dict per image."""
    from hf_tasks.models.yolo import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.utils import nms, ops

    core = getattr(model, "module", model)
    settings = (bundle.settings if bundle is not None and bundle.settings is not None else DetectionSettings()).nms
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


def compute_metrics(outputs: list[dict], data: TaskData, bundle: ModelBundle | None = None) -> dict[str, Any]:
    """coco_map over the dataset's classes (detections of classes the dataset lacks are not scored), plus the PR
    curve for the card. The model's classes are matched to the dataset's by name (``bundle.label_names``)."""
    import numpy as np

    from hf_tasks.metrics import load_metric
    from hf_tasks.tasks.detection.plots import pr_curve

    names = data.info["label_names"]
    mapping = class_map(bundle.label_names, names) if bundle is not None and bundle.label_names else range(len(names))
    to_dataset = {model_id: k for k, model_id in enumerate(mapping)}
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


SPEC = TaskSpec(
    name="detection", main_metric="map", greater_is_better=True, validate=validate, options=options,
    load_data=load_data, build_model=build_model, load_model=load_model, make_dataset=make_dataset, collate=collate,
    forward=forward, predict=predict, compute_metrics=compute_metrics, save_model=save_model, make_hooks=make_hooks,
    card=CARD, headline=HEADLINE, demo=DEMO,
)
