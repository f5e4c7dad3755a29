"""Build, load and save the detectors fed by an image processor: torchvision's Faster R-CNN (wrapped as a
transformers model, ``hf_tasks.models.torchvision_detection``) and transformers' own (RT-DETR, D-FINE, DETR, ...).

Every run folder holds ``config.json`` + ``model.safetensors`` + ``preprocessor_config.json``, so it loads with
``AutoModelForObjectDetection`` / ``AutoImageProcessor`` and ``pipeline("object-detection")`` (after
``import hf_tasks.models`` for the torchvision wrapper).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.errors import ConfigError
from hf_tasks.registry import ModelBundle, TaskData
from hf_tasks.tasks.detection.family import (
    TORCHVISION,
    TRANSFORMERS,
    family_of,
    is_model_type,
)
from hf_tasks.tasks.detection.settings import DEFAULT_IMAGE_SIZE, PREDICTIONS_FILE, DetectionSettings
from hf_tasks.trust import LoadPolicy, load_pretrained

# image processors of the transformers detectors a bare model_type builds from scratch (a Hub id brings its own)
PROCESSORS = {"rt_detr": "RTDetrImageProcessor", "rt_detr_v2": "RTDetrImageProcessor", "d_fine": "RTDetrImageProcessor",
              "detr": "DetrImageProcessor", "conditional_detr": "ConditionalDetrImageProcessor",
              "deformable_detr": "DeformableDetrImageProcessor", "yolos": "YolosImageProcessor"}
COCO_SKIP = ("__background__", "N/A")  # torchvision's COCO category list pads unused ids with "N/A"


def labels_kwargs(names: list[str]) -> dict:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def settings_for(cfg: TrainConfig, family: str) -> DetectionSettings:
    mc = cfg.model.config
    settings = DetectionSettings(family=family, imgsz=cfg.data.image_size or DEFAULT_IMAGE_SIZE,
                                 plots=bool(mc.get("plots", True)), hflip=float(mc.get("hflip", 0.5)))
    settings.nms.update({k: mc[k] for k in ("conf", "iou", "max_det") if k in mc})
    return settings


# ----------------------------------------------------------------------------------------------- torchvision


def coco_state(architecture: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """torchvision's COCO weights of ``architecture`` and their category names (index = torchvision class id)."""
    import torchvision

    from hf_tasks.models.yolo import env_flag

    weights = torchvision.models.get_model_weights(architecture).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file() and env_flag("HF_HUB_OFFLINE"):
        raise ConfigError(f"'model.name' {architecture!r}: its COCO weights are not in torch's cache ({cached}) and "
                          "downloads are off (HF_HUB_OFFLINE); set model.pretrained: false or go online once")
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except OSError as err:
        raise ConfigError(f"'model.name' {architecture!r}: its COCO weights could not be downloaded ({err}); set "
                          "model.pretrained: false to train from scratch") from None
    return state, list(weights.meta["categories"])


def transfer_coco(model, state: dict[str, torch.Tensor], coco_names: list[str], names: list[str]) -> None:
    """Every tensor whose shape matches; the class head's rows (and box-regression rows) of each class that COCO
    also has, matched by name case-insensitively, and the background row; other rows keep their fresh init."""
    own = model.detector.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape == value.shape:
            own[key] = value
    coco_row = {n.strip().lower(): j for j, n in enumerate(coco_names) if n not in COCO_SKIP}
    rows = [(0, 0)] + [(i + 1, coco_row[n.strip().lower()]) for i, n in enumerate(names)
                       if n.strip().lower() in coco_row]
    prefix = "roi_heads.box_predictor."
    for ours, theirs in rows:
        for part in ("weight", "bias"):
            own[f"{prefix}cls_score.{part}"][ours] = state[f"{prefix}cls_score.{part}"][theirs]
            box = state[f"{prefix}bbox_pred.{part}"]
            own[f"{prefix}bbox_pred.{part}"][4 * ours:4 * ours + 4] = box[4 * theirs:4 * theirs + 4]
    model.detector.load_state_dict(own)


def build_torchvision(cfg: TrainConfig, data: TaskData) -> ModelBundle:
    from hf_tasks.models.torchvision_detection import (
        TorchvisionDetectionImageProcessor,
        TorchvisionDetectorConfig,
        TorchvisionDetectorForObjectDetection,
    )
    from hf_tasks.models.yolo import class_list

    settings = settings_for(cfg, TORCHVISION)
    state, coco_names = coco_state(cfg.model.name) if cfg.model.pretrained else (None, None)
    coco = [n for n in coco_names or [] if n not in COCO_SKIP]
    names = class_list(data.info["label_names"], coco, bool(cfg.model.config.get("keep_coco_classes")))
    frozen = state is not None and not any(k.startswith("backbone.body") and k.endswith("num_batches_tracked")
                                           for k in state)
    config = TorchvisionDetectorConfig(
        architecture=cfg.model.name, image_size=settings.imgsz, frozen_batch_norm=frozen,
        box_score_thresh=settings.nms["conf"], box_nms_thresh=float(cfg.model.config.get("iou", 0.5)),
        box_detections_per_img=int(cfg.model.config.get("max_det", 100)),
        detector_kwargs=dict(cfg.model.config.get("architecture") or {}) or None, **labels_kwargs(names))
    model = TorchvisionDetectorForObjectDetection(config)
    if state is not None:
        transfer_coco(model, state, coco_names, names)
    processor = TorchvisionDetectionImageProcessor(size=settings.imgsz)
    return ModelBundle(model=model, processor=processor, label_names=names, settings=settings)


# ----------------------------------------------------------------------------------------------- transformers


def build_transformers(cfg: TrainConfig, data: TaskData) -> ModelBundle:
    """A bare ``model_type`` from its config (``model.config.architecture`` overrides), or a Hub id / folder:
    pretrained with a class head sized to the dataset (``ignore_mismatched_sizes``), or its config from scratch."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

    settings = settings_for(cfg, TRANSFORMERS)
    name, names = cfg.model.name, data.info["label_names"]
    architecture = dict(cfg.model.config.get("architecture") or {})
    size = {"height": settings.imgsz, "width": settings.imgsz}
    if is_model_type(name):
        if name not in PROCESSORS:
            raise ConfigError(f"'model.name' {name!r}: building it from its config needs to know its image processor;"
                              f" known types: {', '.join(PROCESSORS)} (or give a Hub id, which brings its own)")
        config = AutoConfig.for_model(name, **architecture, **labels_kwargs(names))
        model = AutoModelForObjectDetection.from_config(config)
        processor = getattr(transformers, PROCESSORS[name])(size=size)
    else:
        policy = LoadPolicy.of(cfg.model)
        kwargs = {**architecture, **labels_kwargs(names)}
        if cfg.model.pretrained:
            model = load_pretrained(AutoModelForObjectDetection.from_pretrained, name, "model.name",
                                    ignore_mismatched_sizes=True, **kwargs, **policy.model_kwargs())
        else:
            config = load_pretrained(AutoConfig.from_pretrained, name, "model.name", **kwargs,
                                     **policy.config_kwargs())
            model = AutoModelForObjectDetection.from_config(config)
        processor = load_pretrained(AutoImageProcessor.from_pretrained, name, "model.name", size=size,
                                    **policy.config_kwargs())
    return ModelBundle(model=model, processor=processor, label_names=names, settings=settings)


# ----------------------------------------------------------------------------------------------- load / save


def load_processed(path: str | Path, policy=None) -> ModelBundle:
    """A saved run (folder or Hub repo) back as a bundle: the model and processor its files name."""
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    import hf_tasks.models  # noqa: F401  (registers the torchvision wrapper)

    kwargs = {"revision": getattr(policy, "revision", None)}
    model = load_pretrained(AutoModelForObjectDetection.from_pretrained, str(path), "model", use_safetensors=True,
                            **kwargs)
    processor = load_pretrained(AutoImageProcessor.from_pretrained, str(path), "model", **kwargs)
    names = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    family = TORCHVISION if family_of(getattr(model.config, "architecture", "")) == TORCHVISION else TRANSFORMERS
    size = getattr(processor, "size", None)  # an int (ours), a dict or transformers' SizeDict
    height = getattr(size, "height", None) or (size.get("height") if isinstance(size, dict) else size)
    imgsz = int(height or DEFAULT_IMAGE_SIZE)
    return ModelBundle(model=model.eval(), processor=processor, label_names=names,
                       settings=DetectionSettings(family=family, imgsz=imgsz))


def save_processed(bundle: ModelBundle, path: Path, data: TaskData) -> None:
    """Weights + config.json + preprocessor_config.json, and the grid of test predictions for the card."""
    from hf_tasks.tasks.detection.predictions import save_prediction_grid

    bundle.model.save_pretrained(path)
    bundle.processor.save_pretrained(path)
    split = next((s for s in ("test", "validation") if s in data.splits), None)
    if bundle.settings.plots and split is not None:
        save_prediction_grid(bundle, data.splits[split], Path(path) / PREDICTIONS_FILE)
