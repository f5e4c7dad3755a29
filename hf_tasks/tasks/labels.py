"""Starting a run from a fine-tuned model: its head must fit the dataset's labels, or the user says to reset it.

A pretrained backbone (an ImageNet ViT, COCO YOLO weights) gets a new head sized to the dataset, as transformers'
examples do with ``ignore_mismatched_sizes``. A model that an hf-tasks run fine-tuned (its folder, or Hub repo,
holds ``train_config.yaml``) was trained for *its* labels: when they differ from the dataset's (in count, names
or order) the run fails before training, naming ``model.name`` and ``data.dataset``, unless
``model.reset_head: true`` asks for a new head. Captioning has no label head (its vocabulary comes with the
tokenizer), so this check does not apply there.
"""

from __future__ import annotations

from pathlib import Path

from hf_tasks.errors import ConfigError

RUN_MARKER = "train_config.yaml"


def is_run(name: str | Path, revision: str | None = None) -> bool:
    """True for the output of an hf-tasks run: a folder (or the folder of a ``.pt`` in it) or a Hub repo with
    ``train_config.yaml``. An unreachable Hub repo counts as not a run (loading it fails later, with its reason)."""
    path = Path(name)
    if path.exists():
        folder = path if path.is_dir() else path.parent
        return (folder / RUN_MARKER).is_file()
    if str(name).count("/") != 1:
        return False
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(str(name), RUN_MARKER, revision=revision)
        return True
    except Exception:  # offline, missing file or repo: not something we can call a run
        return False


def check_head_labels(name: str, checkpoint_labels: list[str], dataset_labels: list[str], dataset: str) -> None:
    """Fail, naming the keys, when a fine-tuned model's labels differ from the dataset's (callers skip this check
    with ``model.reset_head``)."""
    if list(checkpoint_labels) == list(dataset_labels):
        return
    raise ConfigError(
        f"'model.name' {name!r} was fine-tuned for {len(checkpoint_labels)} labels {_show(checkpoint_labels)}, but "
        f"'data.dataset' {dataset!r} has {len(dataset_labels)} labels {_show(dataset_labels)}: its head does not fit. "
        "Set model.reset_head: true (--reset-head) to train a new head for the dataset's labels, or use a dataset "
        "with the same labels")


def _show(labels: list[str], limit: int = 10) -> str:
    shown = ", ".join(map(str, labels[:limit]))
    return f"[{shown}{', ...' if len(labels) > limit else ''}]"
