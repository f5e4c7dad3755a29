"""Label checks, one place for all of them: a model's head predicts the labels it was trained on.

``check_same_labels`` is the one comparison (a fine-tuned starting point, a checkpoint to resume, a model to
evaluate); each caller names what is compared and what to do about it.

Starting a run from a fine-tuned model: its head must fit the dataset's labels, or the user says to reset it.

A pretrained backbone (an ImageNet ViT, COCO YOLO weights) gets a new head sized to the dataset, as transformers'
examples do with ``ignore_mismatched_sizes``. A model that an hf-tasks run fine-tuned (its folder, or Hub repo,
holds ``train_config.yaml``) was trained for *its* labels: when they differ from the dataset's (in count, names
or order) the run fails before training, naming ``model.name`` and ``data.dataset``, unless
``model.reset_head: true`` asks for a new head. Captioning has no label head (its vocabulary comes with the
tokenizer), so this check does not apply there.
"""

from __future__ import annotations

from pathlib import Path

from hf_tasks.errors import ConfigError, HfTasksError

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


def check_same_labels(model_labels: list[str] | None, dataset_labels: list[str] | None, model: str, dataset: str,
                      remedy: str, error: type[HfTasksError] = ConfigError) -> None:
    """Fail when a model's labels (count, names, order) are not the dataset's; ``None`` on either side: nothing to
    compare. ``model`` and ``dataset`` say what holds each list ("'model.name' 'x' was fine-tuned for")."""
    if model_labels is None or dataset_labels is None or list(model_labels) == list(dataset_labels):
        return
    raise error(f"{model} {len(model_labels)} labels {_show(model_labels)}, but {dataset} {len(dataset_labels)} "
                f"labels {_show(dataset_labels)}: {remedy}")


def check_head_labels(name: str, checkpoint_labels: list[str], dataset_labels: list[str], dataset: str) -> None:
    """A fine-tuned starting point (callers skip this check with ``model.reset_head``)."""
    check_same_labels(checkpoint_labels, dataset_labels, f"'model.name' {name!r} was fine-tuned for",
                      f"'data.dataset' {dataset!r} has", "its head does not fit. Set model.reset_head: true "
                      "(--reset-head) to train a new head for the dataset's labels, or use a dataset with the same "
                      "labels")


def _show(labels: list[str], limit: int = 10) -> str:
    shown = ", ".join(map(str, labels[:limit]))
    return f"[{shown}{', ...' if len(labels) > limit else ''}]"


def check_model_labels(model_labels: list[str] | None, dataset_labels: list[str] | None, model: str) -> None:
    """A saved model evaluated on a dataset: its head must predict the dataset's labels."""
    from hf_tasks.errors import DataError

    check_same_labels(model_labels, dataset_labels, f"model {model} predicts", "the dataset has",
                      "`hf-tasks compare --label-map` maps a model's classes onto a dataset's", error=DataError)
