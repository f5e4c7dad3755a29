"""Model cards: a finished run folder → README.md, from the task's template and its card parts.

This module knows no task: the template, its task variables, the Hub metadata, the usage snippet and the figures
come from the spec's ``card`` (``hf_tasks.registry.CardParts``); what every card shares (how the run trained, its
hyperparameters, the framework versions, the training curves, where the dataset card is) is built here.

Every number on a card comes from ``results.json``; the model-index holds the **test-split** numbers (transformers'
``Trainer.create_model_card`` leaves results empty for anything but its own metrics).
"""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hf_tasks.config import MODEL_OPTIONS, TrainConfig, from_dict
from hf_tasks.errors import HfTasksError
from hf_tasks.util import flatten, is_hub_id

if TYPE_CHECKING:
    from hf_tasks.registry import TaskSpec

CURVES_FILE = "training_curves.png"
# run-time switches of a config that say nothing about how the model was trained
NOT_HYPERPARAMETERS = ("output_dir", "resume", "overwrite", "push_to_hub", "hub_private", "hub_revision",
                       "hub_license")
FRAMEWORKS = ("hf-tasks", "torch", "transformers", "timm", "accelerate", "datasets", "evaluate")


def write_card(output_dir: str | Path, model_id: str | None = None) -> Path:
    """Render the card of a finished run folder into its README.md (figures first, so the card can show them)."""
    from hf_tasks.registry import get_task

    output_dir = Path(output_dir)
    cfg, results, history = read_run(output_dir)
    spec = get_task(cfg.task)
    if history:
        plot_curves(history, output_dir / CURVES_FILE, curve_metrics(spec))
    if spec.card.figures is not None:
        spec.card.figures(results, output_dir)
    text = render_card(cfg, results, model_id or str(output_dir), has_curves=(output_dir / CURVES_FILE).is_file(),
                       output_dir=output_dir)
    path = output_dir / "README.md"
    path.write_text(text)
    return path


def read_run(output_dir: Path) -> tuple[TrainConfig, dict, list]:
    """The config, ``results.json`` and log history of a finished run folder."""
    from hf_tasks.engine.run_folder import check_finished

    check_finished(output_dir, "describe")
    missing = [name for name in ("train_config.yaml", "results.json") if not (output_dir / name).is_file()]
    if missing:
        raise HfTasksError(f"{output_dir} is not a finished run folder: {', '.join(missing)} missing")
    cfg = from_dict(TrainConfig, yaml.safe_load((output_dir / "train_config.yaml").read_text()), prefix="")
    results = json.loads((output_dir / "results.json").read_text())
    history_file = output_dir / "log_history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    return cfg, results, history


def render_card(cfg: TrainConfig, results: dict, model_id: str, has_curves: bool = False,
                output_dir: Path | None = None) -> str:
    """A pure function of its inputs and of the run folder's files: the same run always renders the same card.

    ``output_dir`` tells the task's parts which figure files (and extra results, such as a comparison) exist.
    """
    from huggingface_hub import ModelCard

    from hf_tasks.registry import get_task

    parts = get_task(cfg.task).card
    template = template_path(parts.template)
    if not template.is_file():
        raise HfTasksError(f"no model card template {parts.template!r} for task {cfg.task!r} (looked for {template})")
    output_dir = Path(output_dir) if output_dir is not None else None
    context = parts.context(cfg, results, output_dir)
    data = parts.card_data(cfg, results)
    data.license = data.license or cfg.hub_license  # a task that knows the weights' licence sets it
    card = ModelCard.from_template(data, template_path=str(template), usage=parts.usage(cfg, model_id, output_dir),
                                   curve=f"![training curves]({CURVES_FILE})" if has_curves else "",
                                   hyperparameters=hyperparameters(cfg), versions=framework_versions(),
                                   dataset_card=dataset_card_reference(cfg.data.dataset),
                                   **{**context, **training_facts(results)})
    return str(card)


def template_path(template: str) -> Path:
    """A template named by its file in ``model_cards/``, or by a path of its own (a task outside the package)."""
    from model_cards import TEMPLATES_DIR

    path = Path(template)
    return path if path.is_absolute() else TEMPLATES_DIR / path


def training_facts(results: dict) -> dict[str, Any]:
    """How the run trained, for every task's card: steps that updated the weights are told apart from steps that
    ``skip_nonfinite`` dropped (``train_steps`` counts both)."""
    skipped = int(results.get("train_skipped_steps") or 0)
    steps = results.get("train_steps")
    return {"num_processes": results.get("num_processes"), "train_epochs": results.get("train_epochs"),
            "train_steps": steps - skipped if isinstance(steps, int) else steps, "skipped_steps": skipped,
            "train_runtime": results.get("train_runtime_s")}


def hyperparameters(cfg: TrainConfig) -> list[tuple[str, str]]:
    """(dotted key, value) of the config, ``model.config`` whole (its keys are the model's own)."""
    flat = flatten(cfg.to_dict(), keep=(MODEL_OPTIONS,))
    return [(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
            for key, value in flat.items() if key not in NOT_HYPERPARAMETERS]


def framework_versions() -> list[tuple[str, str]]:
    found = []
    for name in FRAMEWORKS:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return found


def curve_metrics(spec: TaskSpec) -> list[tuple[str, str]]:
    """(log history key, label) of the evaluation metrics the curves show: the task's main metric, then its headline
    numbers (``test_x`` in ``results.json`` is ``eval_x`` in the history), under their short names; the loss has its
    own panel."""
    short = {key.removeprefix("test_"): name for key, name in spec.headline}
    keys = dict.fromkeys([spec.main_metric, *short])  # ordered, without repeats
    return [(f"eval_{key}", short.get(key, key)) for key in keys if key != "loss"]


def plot_curves(history: list[dict], path: Path, metrics: list[tuple[str, str]]) -> None:
    """Training loss and the evaluation ``metrics`` (history key, label) against optimizer steps, as a PNG.

    The metrics panel is on a 0-1 scale: a metric with a value outside it (a count, a ratio) is left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [h for h in history if any(k.startswith("eval_") for k in h)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    if train:
        axes[0].plot(*zip(*train), label="train loss")
    loss = _series(evals, "eval_loss")
    if loss:
        axes[0].plot(*zip(*loss), marker="o", label="eval loss")
    axes[0].set_xlabel("step"), axes[0].set_title("loss")
    for key, label in metrics:
        points = _series(evals, key)
        if points and all(0 <= value <= 1 for _, value in points):
            axes[1].plot(*zip(*points), marker="o", label=label)
    axes[1].set_xlabel("step"), axes[1].set_ylim(0, 1.02), axes[1].set_title("evaluation")
    for axis in axes:
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _series(evals: list[dict], key: str) -> list[tuple[int, float]]:
    """(step, value) of ``key`` over the evaluations that logged it as a finite float (counts are ints: left out)."""
    return [(h["step"], h[key]) for h in evals if isinstance(h.get(key), float) and math.isfinite(h[key])]


def dataset_card_reference(dataset: str) -> str:
    """Where the dataset card is: its Hub page, or the README.md that `hf-tasks build-dataset` wrote."""
    if is_hub_id(dataset):
        return f"[dataset card](https://huggingface.co/datasets/{dataset})"
    return "its dataset card is the `README.md` (with `build_report.json`) in that folder"
