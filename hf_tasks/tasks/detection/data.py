"""Data of the detection task: the prepared splits checked, and the torch datasets the loop reads."""

from __future__ import annotations

from hf_tasks.config import TrainConfig
from hf_tasks.data import open_run_splits
from hf_tasks.errors import DataError
from hf_tasks.registry import ModelBundle, TaskData
from hf_tasks.tasks.detection.settings import DetectionSettings

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
    """ultralytics' dataset/augmentation over one Arrow split (see ``hf_tasks.tasks.detection.yolo_data``), or the
    model's image processor over it (``hf_tasks.tasks.detection.processed``)."""
    settings: DetectionSettings = bundle.settings
    mapping = class_map(bundle.label_names, data.info["label_names"])
    if settings.family != "ultralytics":
        from hf_tasks.tasks.detection.processed import ProcessorDetectionDataset

        return ProcessorDetectionDataset(split, bundle.processor, mapping, image_column=cfg.data.image_column,
                                         objects_column=objects_column(cfg), train=train, hflip=settings.hflip,
                                         seed=cfg.seed)
    from hf_tasks.models.yolo import ultralytics_hyperparameters
    from hf_tasks.tasks.detection.yolo_data import ArrowYOLODataset

    hyp = settings.hyp or ultralytics_hyperparameters()
    close_at = cfg.epochs - hyp.close_mosaic if train and hyp.close_mosaic else None
    stride = max(int(bundle.model.model.stride.max()), 32)
    return ArrowYOLODataset(split, imgsz=settings.imgsz, augment=train, hyp=hyp,
                            names=dict(enumerate(bundle.label_names)), class_map=mapping,
                            image_column=cfg.data.image_column, objects_column=objects_column(cfg), seed=cfg.seed,
                            batch_size=cfg.batch_size, stride=stride, close_mosaic_epoch=close_at)


def collate(samples: list[dict]) -> dict:
    """ultralytics' ``collate_fn`` for YOLO samples (``img``), stacked ``pixel_values`` for processor-fed ones."""
    if "pixel_values" in samples[0]:
        from hf_tasks.tasks.detection.processed import collate as processed_collate

        return processed_collate(samples)
    from hf_tasks.tasks.detection.yolo_data import collate as yolo_collate

    return yolo_collate(samples)
