"""Data of the classification task: the prepared splits checked, and the torch datasets the loop reads."""

from __future__ import annotations

from typing import Any

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.data import open_run_splits
from hf_tasks.errors import DataError
from hf_tasks.images import to_rgb
from hf_tasks.registry import ModelBundle, TaskData

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
