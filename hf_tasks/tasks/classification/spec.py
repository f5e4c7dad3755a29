"""Image classification: transformers models (ViT, ResNet, ...), any timm model, and the small from-scratch CNN.

Every model is a transformers ``PreTrainedModel`` (timm through ``TimmWrapperForImageClassification``), so one
``forward``/``predict`` serves all of them, and every output folder loads with
``AutoModelForImageClassification.from_pretrained`` and ``pipeline("image-classification")``; timm models are
saved in timm's own format, so ``timm.create_model("local-dir:…", pretrained=True)`` loads them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hf_tasks.config import TrainConfig
from hf_tasks.errors import ConfigError
from hf_tasks.registry import ModelBundle, TaskData, TaskSpec
from hf_tasks.tasks.classification.card import CARD
from hf_tasks.tasks.classification.data import collate, load_data, make_dataset
from hf_tasks.tasks.classification.demo import DEMO, HEADLINE
from hf_tasks.tasks.classification.model import (
    SMALL_CNN,
    TIMM_PREFIX,
    build_model,
    load_model,
    save_model,
)
from hf_tasks.tasks.classification.options import options
from hf_tasks.util import did_you_mean

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
        raise ConfigError(f"'model.name': timm has no model {arch!r}{did_you_mean(arch, timm.list_models())}")


# ----------------------------------------------------------------------------------------------- steps


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    logits = model(pixel_values=batch["pixel_values"]).logits
    return {"loss": F.cross_entropy(logits.float(), batch["labels"])}


def predict(model: torch.nn.Module, batch: dict, bundle: ModelBundle | None = None) -> dict[str, torch.Tensor]:
    logits = model(pixel_values=batch["pixel_values"]).logits.float()
    return {"predictions": logits.argmax(-1), "references": batch["labels"],
            "loss": F.cross_entropy(logits, batch["labels"], reduction="none")}


def compute_metrics(outputs: dict[str, torch.Tensor], data: TaskData, bundle: ModelBundle | None = None
                    ) -> dict[str, Any]:
    from hf_tasks.metrics import load_metric

    metric = load_metric("accuracy")
    results = metric.compute(predictions=outputs["predictions"].tolist(), references=outputs["references"].tolist(),
                             num_labels=data.info["num_labels"])
    results["loss"] = float(outputs["loss"].mean()) if "loss" in outputs else None
    return results


SPEC = TaskSpec(
    name="classification", main_metric="accuracy", greater_is_better=True, validate=validate, options=options,
    load_data=load_data, build_model=build_model, load_model=load_model, make_dataset=make_dataset, collate=collate,
    forward=forward, predict=predict, compute_metrics=compute_metrics, save_model=save_model, card=CARD,
    headline=HEADLINE, demo=DEMO, check_model_labels=True,
)
