"""A toy task living OUTSIDE the package, named by its import path (``--task tests.tasks.toy_task``).

Image regression: predict the mean brightness (0..1) of an image. It exists to prove that a task plugs into the
generic loop, evaluation, cards and Hub push through ``SPEC`` alone, with no change to any project file.

Data: a prepared dataset folder (``save_to_disk``) with an ``Image`` column and a float ``label`` column.
Model: :class:`ToyRegressor`, a tiny transformers ``PreTrainedModel`` (mean-pooled RGB -> Linear(3, hidden) ->
Linear(hidden, 1), times ``scale``), saved as safetensors with ``save_pretrained``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from hf_tasks.config import TrainConfig
from hf_tasks.errors import ConfigError, DataError
from hf_tasks.registry import CardParts, ModelBundle, TaskData, TaskSpec

TEMPLATE = Path(__file__).resolve().with_name("toy_card.md")
HEADLINE = (("test_mae", "MAE"), ("test_mse", "MSE"), ("test_num_samples", "test images"))

# ----------------------------------------------------------------------------------------------- model


class ToyConfig(PreTrainedConfig):
    """transformers 5 config: keyword-only dataclass fields declared as annotated class attributes."""

    model_type = "hf_tasks_toy_regressor"

    hidden: int = 4
    scale: float = 1.0


@dataclass
class ToyOutput(ModelOutput):
    loss: torch.Tensor | None = None
    predictions: torch.Tensor | None = None


class ToyRegressor(PreTrainedModel):
    """``forward(pixel_values, labels=None)``: one brightness per image (``predictions``, shape ``(batch,)``)."""

    config: ToyConfig
    config_class = ToyConfig
    base_model_prefix = "toy"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.hidden = nn.Linear(3, config.hidden)
        self.out = nn.Linear(config.hidden, 1)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # transformers.initialization skips tensors already loaded by from_pretrained
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.5)
            init.zeros_(module.bias)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> ToyOutput:
        features = pixel_values.float().mean(dim=(2, 3))  # (batch, 3): mean of each channel
        predictions = self.out(self.hidden(features)).squeeze(-1) * self.config.scale
        loss = F.mse_loss(predictions, labels.float()) if labels is not None else None
        return ToyOutput(loss=loss, predictions=predictions)


def to_pixels(image) -> torch.Tensor:
    """A PIL image as a ``(3, H, W)`` float tensor in [0, 1] (the task's whole preprocessing)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


# ----------------------------------------------------------------------------------------------- config


@dataclass
class ToyOptions:
    """``model.config`` of the toy task: ``--model.config.scale 2`` (a typo fails naming the nearest key)."""

    hidden: int = 4
    scale: float = 1.0


def options(cfg: TrainConfig) -> type:
    return ToyOptions


def validate(cfg: TrainConfig) -> None:
    hidden, scale = cfg.model.config.get("hidden", 4), cfg.model.config.get("scale", 1.0)
    if hidden < 1:
        raise ConfigError(f"'model.config.hidden' must be >= 1 (got {hidden})")
    if not math.isfinite(scale) or scale == 0:
        raise ConfigError(f"'model.config.scale' must be a finite non-zero number (got {scale})")


# ----------------------------------------------------------------------------------------------- data


def load_data(cfg: TrainConfig) -> TaskData:
    from datasets import Image, Value

    from hf_tasks.data import open_run_splits

    data = cfg.data
    dataset_dict, splits = open_run_splits(data)
    for split, ds in splits.items():
        image, label = ds.features.get(data.image_column), ds.features.get(data.label_column)
        if not isinstance(image, Image):
            raise DataError(f"split {split!r}: column {data.image_column!r} ('data.image_column') holds no images")
        if not isinstance(label, Value) or not str(label.dtype).startswith("float"):
            raise DataError(f"split {split!r}: column {data.label_column!r} ('data.label_column') must hold floats "
                            "(the brightness in [0, 1])")
    info = {"dataset": data.dataset, "split_sizes": {split: len(ds) for split, ds in dataset_dict.items()}}
    return TaskData(splits=splits, info=info)


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, dataset, image_column: str, label_column: str) -> None:
        self.dataset, self.image_column, self.label_column = dataset, image_column, label_column
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # no augmentation: nothing depends on it

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.dataset[index]
        return {"pixel_values": to_pixels(row[self.image_column]),
                "labels": torch.tensor(row[self.label_column], dtype=torch.float32), "index": index}


def make_dataset(split, bundle: ModelBundle, cfg: TrainConfig, data: TaskData, train: bool) -> ToyDataset:
    return ToyDataset(split, cfg.data.image_column, cfg.data.label_column)


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    return torch.utils.data.default_collate(samples)


# ----------------------------------------------------------------------------------------------- model i/o


def build_model(cfg: TrainConfig, data: TaskData) -> ModelBundle:
    return ModelBundle(model=ToyRegressor(ToyConfig(**cfg.model.config)), processor=None)


def load_model(path: str | Path, policy=None) -> ModelBundle:
    """A run folder or Hub repo id back as a bundle (safetensors only unless ``policy`` trusts pickles)."""
    from hf_tasks.trust import LoadPolicy, load_pretrained

    policy = policy or LoadPolicy()
    model = load_pretrained(ToyRegressor.from_pretrained, str(path), "--model", **policy.model_kwargs())
    return ModelBundle(model=model.eval(), processor=None)


def save_model(bundle: ModelBundle, path: Path, data: TaskData) -> None:
    bundle.model.save_pretrained(path)  # config.json + model.safetensors


# ----------------------------------------------------------------------------------------------- steps


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    return {"loss": model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss}


def predict(model: torch.nn.Module, batch: dict, bundle: ModelBundle | None = None) -> dict[str, torch.Tensor]:
    predictions = model(pixel_values=batch["pixel_values"]).predictions.float()
    return {"predictions": predictions, "references": batch["labels"].float()}


def compute_metrics(outputs: dict[str, torch.Tensor], data: TaskData, bundle: ModelBundle | None = None
                    ) -> dict[str, Any]:
    errors = outputs["predictions"].double() - outputs["references"].double()
    return {"mae": float(errors.abs().mean()), "mse": float(errors.pow(2).mean()), "loss": float(errors.pow(2).mean()),
            "num_samples": int(errors.numel())}


# ----------------------------------------------------------------------------------------------- card


def card_data(cfg: TrainConfig, results: dict):
    from huggingface_hub import EvalResult, ModelCardData

    dataset = cfg.data.dataset
    evals = None
    if results.get("test_mae") is not None:
        evals = [EvalResult(task_type="image-regression", dataset_type=dataset, dataset_name=Path(dataset).name,
                            dataset_split=cfg.data.test_split, metric_type="mae", metric_name="MAE",
                            metric_value=results["test_mae"])]
    return ModelCardData(model_name=Path(cfg.output_dir).name, library_name="transformers",
                         tags=["image-regression", "hf-tasks", "toy"], metrics=["mae"], eval_results=evals)


def context(cfg: TrainConfig, results: dict, output_dir: Path | None = None) -> dict[str, Any]:
    from hf_tasks.util import fmt

    return {"model_name": Path(cfg.output_dir).name,
            "description": f"A toy regressor of the mean brightness of an image, trained on `{cfg.data.dataset}`.",
            "headline": [(name, fmt(results[key])) for key, name in HEADLINE if results.get(key) is not None],
            "dataset": cfg.data.dataset, "split_sizes": results.get("dataset_split_sizes", {})}


def usage(cfg: TrainConfig, model_id: str, output_dir: Path | None = None) -> str:
    return "\n".join([
        "from PIL import Image",
        "from tests.tasks.toy_task import ToyRegressor, to_pixels",
        "",
        f'model = ToyRegressor.from_pretrained("{model_id}").eval()',
        'print(float(model(pixel_values=to_pixels(Image.open("image.jpg"))[None]).predictions[0]))',
    ])


CARD = CardParts(template=str(TEMPLATE), context=context, card_data=card_data, usage=usage)

SPEC = TaskSpec(
    name="toy_brightness", main_metric="mae", greater_is_better=False, validate=validate, options=options,
    load_data=load_data, build_model=build_model, load_model=load_model, make_dataset=make_dataset,
    collate=collate, forward=forward, predict=predict, compute_metrics=compute_metrics, save_model=save_model,
    card=CARD, headline=HEADLINE,
)
