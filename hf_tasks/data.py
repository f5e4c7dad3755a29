"""Open a prepared dataset (``save_to_disk`` folder, Parquet folder or Hub id) and check the splits a run needs."""

from __future__ import annotations

from pathlib import Path

from hf_tasks.errors import DataError


def load_prepared(source: str, revision: str | None = None):
    """Return a ``DatasetDict`` from a folder written by ``hf-tasks build-dataset`` or from the Hub."""
    import datasets

    path = Path(source)
    if (path / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(path))
    if path.is_dir():
        files = {p.name: sorted(str(f) for f in p.glob("*.parquet")) for p in sorted(path.iterdir()) if p.is_dir()}
        files = {split: shards for split, shards in files.items() if shards}
        if not files:
            raise DataError(f"{source} holds neither a save_to_disk dataset (dataset_dict.json) nor Parquet split "
                            "folders; build one with `hf-tasks build-dataset`")
        return datasets.load_dataset("parquet", data_files=files)
    if path.suffix or source.startswith((".", "/", "~")):
        raise DataError(f"dataset folder {source} does not exist")
    try:
        return datasets.load_dataset(source, revision=revision)
    except Exception as err:  # offline, missing repo, auth: one clear message
        raise DataError(f"cannot load dataset {source!r} from the Hub: {type(err).__name__}: {err}") from None


def select_splits(dataset_dict, wanted: dict[str, str | None], limits: dict[str, int | None]) -> dict:
    """Pick the splits named in ``wanted`` (config key -> split name), failing with the key on a missing one."""
    splits = {}
    for key, split in wanted.items():
        if split is None:
            continue
        if split not in dataset_dict:
            raise DataError(f"{key!r}: the dataset has no split {split!r}; it has {', '.join(dataset_dict)}")
        ds = dataset_dict[split]
        limit = limits.get(key)
        if limit is not None and limit < len(ds):
            ds = ds.select(range(limit))
        if len(ds) == 0:
            raise DataError(f"{key!r}: split {split!r} is empty")
        splits[split] = ds
    return splits


def open_run_splits(data_cfg) -> tuple:
    """The prepared dataset of a run and the splits it uses (``DataConfig``: names, sample limits)."""
    dataset_dict = load_prepared(data_cfg.dataset, data_cfg.revision)
    wanted = {"data.train_split": data_cfg.train_split, "data.eval_split": data_cfg.eval_split,
              "data.test_split": data_cfg.test_split}
    limits = {"data.train_split": data_cfg.max_train_samples, "data.eval_split": data_cfg.max_eval_samples}
    return dataset_dict, select_splits(dataset_dict, wanted, limits)
