"""Image classification: transformers models (ViT, ResNet, ...), any timm model, and the small from-scratch CNN.

Every model is a transformers ``PreTrainedModel`` (timm through ``TimmWrapperForImageClassification``), so one
``forward``/``predict`` serves all of them, and every output folder loads with
``AutoModelForImageClassification.from_pretrained`` and ``pipeline("image-classification")``; timm models are
saved in timm's own format, so ``timm.create_model("local-dir:…", pretrained=True)`` loads them too.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hf_tasks.config import TrainConfig
from hf_tasks.data import open_run_splits
from hf_tasks.errors import ConfigError, DataError
from hf_tasks.images import to_rgb
from hf_tasks.registry import ModelBundle, TaskData, TaskSpec, register_task
from hf_tasks.trust import LoadPolicy, load_pretrained

SMALL_CNN = "small_cnn"
TIMM_PREFIX = "timm/"
DEFAULT_CNN_SIZE = 64
LOAD_HINT = ("Offline, pass a local folder, or set model.pretrained=false with model.config.model_type to build from "
             "a config")


# ----------------------------------------------------------------------------------------------- config checks


def validate(cfg: TrainConfig) -> None:
    name, model_cfg = cfg.model.name, cfg.model.config
    if name == SMALL_CNN:
        if cfg.model.freeze_backbone:
            raise ConfigError("'model.freeze_backbone' makes no sense for small_cnn: it has no pretrained backbone")
        from hf_tasks.models import SmallCNNConfig

        try:
            SmallCNNConfig(**model_cfg)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"'model.config' is invalid for small_cnn: {err}") from None
    elif name.startswith(TIMM_PREFIX):
        _check_timm_name(name[len(TIMM_PREFIX):], cfg.model.pretrained)
    elif not cfg.model.pretrained and "model_type" in model_cfg:
        from transformers import CONFIG_MAPPING

        if model_cfg["model_type"] not in CONFIG_MAPPING:
            close = difflib.get_close_matches(str(model_cfg["model_type"]), list(CONFIG_MAPPING.keys()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"'model.config.model_type' {model_cfg['model_type']!r} is unknown to transformers{hint}")
    if cfg.model.checkpoint and not Path(cfg.model.checkpoint).is_file():
        raise ConfigError(f"'model.checkpoint' {cfg.model.checkpoint!r} is not a file")
    augment = cfg.data.augment.resolved()
    for key in ("rotation", "shear"):
        if not 0 <= augment[key] <= 180:
            raise ConfigError(f"'data.augment.{key}' must be in [0, 180] degrees (got {augment[key]})")
    for key in ("width_shift", "height_shift", "zoom"):
        if not 0 <= augment[key] < 1:
            raise ConfigError(f"'data.augment.{key}' must be in [0, 1) (got {augment[key]})")


def _check_timm_name(name: str, pretrained: bool) -> None:
    import timm

    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"'model.name': timm has no model {arch!r}{hint}")


# ----------------------------------------------------------------------------------------------- data


def load_data(cfg: TrainConfig) -> TaskData:
    """Open the prepared dataset and check that its columns and labels are what classification needs."""
    data = cfg.data
    dataset_dict, splits = open_run_splits(data)
    label_names = check_columns(splits, data.image_column, data.label_column)
    info = {"label_names": label_names, "num_labels": len(label_names), "dataset": data.dataset,
            "split_sizes": {split: len(ds) for split, ds in dataset_dict.items()}}
    return TaskData(splits=splits, info=info)


def check_columns(splits: dict, image_column: str, label_column: str) -> list[str]:
    """Return the class names, or fail naming the split, the column and what it holds (see ``tasks.columns``)."""
    from datasets import ClassLabel

    from hf_tasks.tasks.columns import check_image_column, feature_type, mismatch

    check_image_column(splits, "classification", image_column)
    names = None
    for split, ds in splits.items():
        feature = ds.features.get(label_column)
        if feature is None:
            raise mismatch("classification", split, f"has no {label_column!r} column ('data.label_column')",
                           ds.features)
        if not isinstance(feature, ClassLabel):
            raise mismatch("classification", split, f"column {label_column!r} ('data.label_column') holds "
                           f"{feature_type(feature)}, not ClassLabel ids (class names in a fixed order)", ds.features)
        if names is not None and feature.names != names:
            raise DataError(f"split {split!r} has classes {feature.names}, other splits have {names}")
        names = feature.names
    return names


class ClassificationDataset(torch.utils.data.Dataset):
    """Decodes, preprocesses with the model's own processor, then augments with a per-sample generator.

    The generator is seeded from (seed, epoch, index), so augmentation does not depend on the number of workers
    or processes, nor on where a resumed run starts.
    """

    def __init__(self, dataset, processor, image_column: str, label_column: str, augment=None, seed: int = 0):
        self.dataset, self.processor, self.augment, self.seed = dataset, processor, augment, seed
        self.image_column, self.label_column = image_column, label_column
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.dataset[index]
        pixels = preprocess(self.processor, row[self.image_column])
        if self.augment is not None:
            generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)
            pixels = self.augment(pixels, generator)
        return {"pixel_values": pixels, "labels": row[self.label_column], "index": index}


def preprocess(processor, image) -> torch.Tensor:
    return processor(images=to_rgb(image), return_tensors="pt")["pixel_values"][0]


def make_dataset(split, bundle: ModelBundle, cfg: TrainConfig, data: TaskData, train: bool):
    from hf_tasks.tasks.classification.augment import build_augmentation

    augment = build_augmentation(cfg.data.augment.resolved()) if train else None
    return ClassificationDataset(split, bundle.processor, cfg.data.image_column, cfg.data.label_column,
                                 augment=augment, seed=cfg.seed)


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    return torch.utils.data.default_collate(samples)


# ----------------------------------------------------------------------------------------------- model


def build_model(cfg: TrainConfig, data: TaskData) -> ModelBundle:
    labels = data.info["label_names"]
    label_kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                    "label2id": {name: i for i, name in enumerate(labels)}}
    name = cfg.model.name
    if name == SMALL_CNN:
        model, processor = _build_small_cnn(cfg, label_kwargs)
    elif name.startswith(TIMM_PREFIX):
        model, processor = _build_timm(cfg, label_kwargs)
    else:
        model, processor = _build_transformers(cfg, label_kwargs)
    if cfg.model.checkpoint:
        from hf_tasks.tasks.classification.start_weights import load_checkpoint

        load_checkpoint(model, classifier_head(model), cfg.model.checkpoint, cfg.model.trust_pickle,
                        cfg.model.reset_head)
    if cfg.model.reset_head:
        reset_head(model)
    if cfg.model.freeze_backbone:
        freeze_backbone(model)
    return ModelBundle(model=model, processor=processor, label_names=labels)


def _build_small_cnn(cfg: TrainConfig, label_kwargs: dict):
    from transformers import ViTImageProcessor

    from hf_tasks.models import SmallCNNConfig, SmallCNNForImageClassification

    size = cfg.data.image_size or DEFAULT_CNN_SIZE
    model = SmallCNNForImageClassification(SmallCNNConfig(**cfg.model.config, **label_kwargs))
    processor = ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return model, processor


def _build_timm(cfg: TrainConfig, label_kwargs: dict):
    from timm.data import resolve_data_config
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification, TimmWrapperImageProcessor

    hub_id = cfg.model.name
    if cfg.model.pretrained:
        model = _from_pretrained(TimmWrapperForImageClassification, hub_id, cfg, label_kwargs)
    else:
        arch = hub_id[len(TIMM_PREFIX):].split(".", 1)[0]
        model = TimmWrapperForImageClassification(TimmWrapperConfig(architecture=arch, **cfg.model.config,
                                                                    **label_kwargs))
    args = {"input_size": (3, cfg.data.image_size, cfg.data.image_size)} if cfg.data.image_size else {}
    data_config = resolve_data_config(args=args, model=model.timm_model)
    return model, TimmWrapperImageProcessor(pretrained_cfg=data_config)


def _build_transformers(cfg: TrainConfig, label_kwargs: dict):
    import hf_tasks.models  # noqa: F401  a saved small_cnn folder loads through the auto classes
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, ViTImageProcessor

    overrides, policy = dict(cfg.model.config), LoadPolicy.of(cfg.model)
    if cfg.model.pretrained:
        model = _from_pretrained(AutoModelForImageClassification, cfg.model.name, cfg, label_kwargs)
        processor = _hub_call(AutoImageProcessor.from_pretrained, cfg.model.name, **policy.config_kwargs())
    else:
        if "model_type" in overrides:
            config = AutoConfig.for_model(**overrides, **label_kwargs)
        else:
            config = _hub_call(AutoConfig.from_pretrained, cfg.model.name, **policy.config_kwargs(),
                               **overrides, **label_kwargs)
        model = AutoModelForImageClassification.from_config(config)
        size = cfg.data.image_size or getattr(config, "image_size", 224)
        processor = ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    if cfg.data.image_size and cfg.model.pretrained:
        _resize_processor(processor, cfg.data.image_size)
    return model, processor


def _from_pretrained(model_class, name: str, cfg: TrainConfig, label_kwargs: dict):
    """Pretrained weights with a head sized to the dataset's labels: a new one for a pretrained backbone; a
    fine-tuned run's own one only if its labels are the dataset's (``hf_tasks.tasks.labels``)."""
    policy = LoadPolicy.of(cfg.model)
    _check_run_labels(name, cfg, list(label_kwargs["id2label"].values()), policy)
    return _hub_call(model_class.from_pretrained, name, ignore_mismatched_sizes=True, **policy.model_kwargs(),
                     **cfg.model.config, **label_kwargs)


def _check_run_labels(name: str, cfg: TrainConfig, labels: list[str], policy: LoadPolicy) -> None:
    from transformers import AutoConfig

    from hf_tasks.tasks.labels import check_head_labels, is_run

    if cfg.model.reset_head or not is_run(name, cfg.model.revision):
        return
    config = _hub_call(AutoConfig.from_pretrained, name, **policy.config_kwargs())
    saved = [config.id2label[i] for i in range(config.num_labels)]
    check_head_labels(name, saved, labels, cfg.data.dataset)


def _hub_call(fn, name: str, **kwargs):
    return load_pretrained(fn, name, "model.name", LOAD_HINT, **kwargs)


def _resize_processor(processor, size: int) -> None:
    current = getattr(processor, "size", None) or {}
    if "height" in current:
        processor.size = {"height": size, "width": size}
    elif "shortest_edge" in current:
        processor.size = {"shortest_edge": size}
        if getattr(processor, "crop_size", None):
            processor.crop_size = {"height": size, "width": size}


def classifier_head(model: torch.nn.Module) -> torch.nn.Module:
    """The final classification layer(s) of any supported model."""
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        return timm_model.get_classifier()
    head = getattr(model, "classifier", None)
    if head is None:
        head = getattr(model, "head", None)  # small_cnn: its hidden layer(s) and classifier
    if head is None:
        raise ConfigError(f"cannot find the classification head of {type(model).__name__}, which "
                          "model.freeze_backbone, model.reset_head and model.checkpoint need")
    return head


def reset_head(model: torch.nn.Module) -> None:
    """``model.reset_head``: the classification head starts afresh (PyTorch's default init), even when a fine-tuned
    head of the same size was loaded."""
    timm_model = getattr(model, "timm_model", None)
    if timm_model is not None:
        timm_model.reset_classifier(model.config.num_labels)
        return
    for module in classifier_head(model).modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def freeze_backbone(model: torch.nn.Module) -> None:
    """Linear probe: only the new head trains."""
    for param in model.parameters():
        param.requires_grad = False
    for param in classifier_head(model).parameters():
        param.requires_grad = True


def load_model(path: str | Path, policy: LoadPolicy | None = None) -> ModelBundle:
    """A saved output folder (or Hub id) back as a bundle, for evaluation and comparison (safetensors only unless
    ``policy`` trusts pickles)."""
    import hf_tasks.models  # noqa: F401  registers small_cnn with the auto classes
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    policy = policy or LoadPolicy()
    model = _hub_call(AutoModelForImageClassification.from_pretrained, str(path), **policy.model_kwargs())
    processor = _hub_call(AutoImageProcessor.from_pretrained, str(path), **policy.config_kwargs())
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return ModelBundle(model=model, processor=processor, label_names=labels)


def save_model(bundle: ModelBundle, path: Path, data: TaskData) -> None:
    """Safetensors weights plus config and processor; timm models in timm's own layout."""
    model = bundle.model
    if getattr(model, "timm_model", None) is not None:
        save_timm(model, bundle.processor, path, bundle.label_names)
        return
    model.save_pretrained(path)
    bundle.processor.save_pretrained(path)


def save_timm(model, processor, path: Path, label_names: list[str]) -> None:
    """Write timm's native layout, which both timm ``local-dir:`` and transformers' TimmWrapper read."""
    import json

    from timm.models import save_for_hf

    save_for_hf(model.timm_model, str(path), model_config={"label_names": list(label_names)},
                safe_serialization=True, data_config=dict(processor.data_config))
    config_file = Path(path) / "config.json"
    config = json.loads(config_file.read_text())
    # transformers' wrapper passes num_classes itself and rejects a second copy in model_args
    config.get("model_args", {}).pop("num_classes", None)
    config_file.write_text(json.dumps(config, indent=2))


# ----------------------------------------------------------------------------------------------- steps


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    logits = model(pixel_values=batch["pixel_values"]).logits
    return {"loss": F.cross_entropy(logits.float(), batch["labels"])}


def predict(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    logits = model(pixel_values=batch["pixel_values"]).logits.float()
    return {"predictions": logits.argmax(-1), "references": batch["labels"],
            "loss": F.cross_entropy(logits, batch["labels"], reduction="none")}


def compute_metrics(outputs: dict[str, torch.Tensor], data: TaskData) -> dict[str, Any]:
    from hf_tasks.metrics import load_metric

    metric = load_metric("accuracy")
    results = metric.compute(predictions=outputs["predictions"].tolist(), references=outputs["references"].tolist(),
                             num_labels=data.info["num_labels"])
    results["loss"] = float(outputs["loss"].mean()) if "loss" in outputs else None
    return results


SPEC = register_task(TaskSpec(
    name="classification", main_metric="accuracy", greater_is_better=True, validate=validate, load_data=load_data,
    build_model=build_model, load_model=load_model, make_dataset=make_dataset, collate=collate, forward=forward,
    predict=predict, compute_metrics=compute_metrics, save_model=save_model,
))
