"""Data of the captioning task: the prepared splits checked, and the torch datasets the loop reads."""

from __future__ import annotations

from typing import Any

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.data import open_run_splits
from hf_tasks.images import to_rgb
from hf_tasks.registry import ModelBundle, TaskData

CAPTIONS_COLUMN = "captions"


# ----------------------------------------------------------------------------------------------- data


def load_data(cfg: TrainConfig) -> TaskData:
    """Open the prepared dataset; find the image and caption columns."""
    data = cfg.data
    dataset_dict, splits = open_run_splits(data)
    column = caption_column(splits, data.image_column, data.label_column)
    gallery = next(s for s in (data.test_split, data.eval_split, data.train_split) if s is not None)
    info = {"dataset": data.dataset, "caption_column": column, "image_column": data.image_column,
            "train_split": data.train_split, "gallery_split": gallery,
            "split_sizes": {split: len(ds) for split, ds in dataset_dict.items()}}
    return TaskData(splits=splits, info=info)


def caption_column(splits: dict, image_column: str, label_column: str) -> str:
    """``data.label_column`` when it holds text, else ``captions``; fail naming the split, the column and what it
    holds otherwise (see ``tasks.columns``)."""
    from hf_tasks.tasks.columns import check_image_column, feature_type, is_text, mismatch

    check_image_column(splits, "captioning", image_column)
    first = next(iter(splits.values())).features
    column = label_column if is_text(first.get(label_column)) else CAPTIONS_COLUMN
    for split, ds in splits.items():
        feature, label = ds.features.get(column), ds.features.get(label_column)
        if feature is None:
            also = (f", and {label_column!r} ('data.label_column') holds {feature_type(label)}, not text"
                    if label is not None and label_column != CAPTIONS_COLUMN else "")
            raise mismatch("captioning", split, f"has no {CAPTIONS_COLUMN!r} column of reference captions{also}",
                           ds.features)
        if not is_text(feature):
            raise mismatch("captioning", split, f"column {column!r} holds {feature_type(feature)}, not caption text "
                           "(a string or a list of strings per image)", ds.features)
    return column


def references(value: Any) -> list[str]:
    """One image's reference captions, from a list of strings or a single string."""
    return [value] if isinstance(value, str) else [str(v) for v in value]


class CaptionPairs(torch.utils.data.Dataset):
    """Training rows: one per (image, caption) pair, through an index map — images are not copied."""

    def __init__(self, split, processor, image_column: str, caption_column: str) -> None:
        self.split, self.processor, self.image_column = split, processor, image_column
        self.captions = [references(value) for value in split[caption_column]]
        self.pairs = [(row, k) for row, caps in enumerate(self.captions) for k in range(len(caps))]

    def set_epoch(self, epoch: int) -> None:
        """No random augmentation, so nothing depends on the epoch."""

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from hf_tasks.tasks.captioning.tokenizer import encode_caption

        row, k = self.pairs[index]
        image = self.split[row][self.image_column]
        return {"pixel_values": pixels(self.processor, image), "index": index,
                "labels": encode_caption(self.processor.tokenizer, self.captions[row][k])}


class CaptionImages(torch.utils.data.Dataset):
    """Evaluation rows: one per image, with ALL its reference captions."""

    def __init__(self, split, processor, image_column: str, caption_column: str) -> None:
        self.split, self.processor = split, processor
        self.image_column, self.caption_column = image_column, caption_column

    def set_epoch(self, epoch: int) -> None:
        """Evaluation data does not change between epochs."""

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.split[index]
        return {"pixel_values": pixels(self.processor, row[self.image_column]), "index": index,
                "references": references(row[self.caption_column])}


def pixels(processor, image) -> torch.Tensor:
    return processor.image_processor(images=to_rgb(image), return_tensors="pt")["pixel_values"][0]


def make_dataset(split, bundle: ModelBundle, cfg: TrainConfig, data: TaskData, train: bool):
    dataset_class = CaptionPairs if train else CaptionImages
    return dataset_class(split, bundle.processor, data.info["image_column"], data.info["caption_column"])


def collate(samples: list[dict]) -> dict[str, Any]:
    """Stack pixels; pad labels with -100 (ignored by the loss); keep reference lists as Python lists."""
    batch: dict[str, Any] = {"pixel_values": torch.stack([s["pixel_values"] for s in samples]),
                             "index": torch.tensor([s["index"] for s in samples])}
    if "labels" in samples[0]:
        width = max(len(s["labels"]) for s in samples)
        batch["labels"] = torch.tensor([s["labels"] + [-100] * (width - len(s["labels"])) for s in samples])
    if "references" in samples[0]:
        batch["references"] = [s["references"] for s in samples]
    return batch
