"""Model cards: (config, results, history, comparison) → README.md text, from ``model_cards/<task>.md``.

Every number on a card comes from ``results.json``; the model-index holds the **test-split** numbers, built here
(transformers' ``Trainer.create_model_card`` leaves results empty for anything but its own metrics).
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from hf_tasks.config import TrainConfig, from_dict
from hf_tasks.errors import HfTasksError

CURVES_FILE = "training_curves.png"


def write_card(output_dir: str | Path, model_id: str | None = None) -> Path:
    """Render the card of a finished run folder into its README.md (plots first, so the card can show them)."""
    output_dir = Path(output_dir)
    cfg, results, history, comparison = read_run(output_dir)
    if history:
        plot_curves(history, output_dir / CURVES_FILE)
    if cfg.task == "detection":
        from hf_tasks.tasks.detection.card import plot_figures

        plot_figures(results, output_dir)
    text = render_card(cfg, results, history, comparison, model_id or str(output_dir),
                       has_curves=(output_dir / CURVES_FILE).is_file(), output_dir=output_dir)
    path = output_dir / "README.md"
    path.write_text(text)
    return path


def read_run(output_dir: Path) -> tuple[TrainConfig, dict, list, dict | None]:
    from hf_tasks.engine.run_folder import check_finished

    check_finished(output_dir, "describe")
    missing = [name for name in ("train_config.yaml", "results.json") if not (output_dir / name).is_file()]
    if missing:
        raise HfTasksError(f"{output_dir} is not a finished run folder: {', '.join(missing)} missing")
    cfg = from_dict(TrainConfig, yaml.safe_load((output_dir / "train_config.yaml").read_text()), prefix="")
    results = json.loads((output_dir / "results.json").read_text())
    history_file, comparison_file = output_dir / "log_history.json", output_dir / "comparison.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    comparison = json.loads(comparison_file.read_text()) if comparison_file.is_file() else None
    return cfg, results, history, comparison


def render_card(cfg: TrainConfig, results: dict, history: list, comparison: dict | None, model_id: str,
                has_curves: bool = False, output_dir: Path | None = None) -> str:
    """A pure function of its inputs: the same run always renders the same card.

    ``output_dir`` only tells which figure files exist (detection shows its PR curve and predictions if drawn).
    """
    from huggingface_hub import ModelCard

    from model_cards import TEMPLATES_DIR

    template = TEMPLATES_DIR / f"{cfg.task}.md"
    if not template.is_file():
        raise HfTasksError(f"no model card template for task {cfg.task!r} in {TEMPLATES_DIR}")
    if cfg.task == "detection":
        from hf_tasks.tasks.detection.spec import card as cards_detection

        context = cards_detection.context(cfg, results, output_dir)
        data, usage = cards_detection.card_data(cfg, results), cards_detection.usage_snippet(model_id,
                                                                                              context["has_pt"])
    elif cfg.task == "captioning":
        from hf_tasks.tasks.captioning.spec import card as cards_captioning

        context = cards_captioning.context(cfg, results, output_dir)
        data, usage = cards_captioning.card_data(cfg, results), cards_captioning.usage_snippet(model_id)
    else:
        context = classification_context(cfg, results, comparison)
        data, usage = card_data(cfg, results), usage_snippet(cfg, model_id)
    data.license = cfg.hub_license
    card = ModelCard.from_template(data, template_path=str(template), usage=usage,
                                   curve=f"![training curves]({CURVES_FILE})" if has_curves else "",
                                   hyperparameters=hyperparameters(cfg), versions=framework_versions(),
                                   dataset_card=dataset_card_reference(cfg.data.dataset),
                                   **{**context, **training_facts(results)})
    return str(card)


def training_facts(results: dict) -> dict[str, Any]:
    """How the run trained, for every task's card: steps that updated the weights are told apart from steps that
    ``skip_nonfinite`` dropped (``train_steps`` counts both)."""
    skipped = int(results.get("train_skipped_steps") or 0)
    steps = results.get("train_steps")
    return {"num_processes": results.get("num_processes"), "train_epochs": results.get("train_epochs"),
            "train_steps": steps - skipped if isinstance(steps, int) else steps, "skipped_steps": skipped,
            "train_runtime": results.get("train_runtime_s")}


def model_family(cfg: TrainConfig) -> str:
    if cfg.model.name == "small_cnn":
        return "small_cnn"
    return "timm" if cfg.model.name.startswith("timm/") else "transformers"


def card_data(cfg: TrainConfig, results: dict):
    from huggingface_hub import EvalResult, ModelCardData

    dataset = cfg.data.dataset
    common = dict(task_type="image-classification", dataset_type=dataset, dataset_name=Path(dataset).name or dataset,
                  dataset_split=cfg.data.test_split, dataset_revision=cfg.data.revision)
    evals = [EvalResult(metric_type="accuracy", metric_name="Accuracy", metric_value=results["test_accuracy"],
                        **common)] if "test_accuracy" in results else []  # no test split: no reported results
    if results.get("test_macro_f1") is not None:
        evals.append(EvalResult(metric_type="f1", metric_name="Macro F1", metric_config="macro",
                                metric_value=results["test_macro_f1"], **common))
    family = model_family(cfg)
    return ModelCardData(
        model_name=Path(cfg.output_dir).name,
        library_name="timm" if family == "timm" else "transformers",
        pipeline_tag="image-classification",
        tags=["image-classification", "hf-tasks", family],
        base_model=cfg.model.name if cfg.model.pretrained and family != "small_cnn" else None,
        datasets=[dataset] if _is_hub_id(dataset) else None,
        metrics=["accuracy", "f1"],
        eval_results=evals or None,
    )


def classification_context(cfg: TrainConfig, results: dict, comparison: dict | None) -> dict[str, Any]:
    labels = results.get("label_names") or []
    matrix = results.get("test_confusion_matrix") or []
    per_class = [{"name": name, "accuracy": _fmt(acc), "support": sum(row)}
                 for name, acc, row in zip(labels, results.get("test_per_class_accuracy") or [], matrix)]
    headline = [(name, _fmt(results[key])) for name, key in (("accuracy", "test_accuracy"),
                                                             ("macro F1", "test_macro_f1"), ("loss", "test_loss"),
                                                             ("test images", "test_num_samples"))
                if results.get(key) is not None]
    what = "fine-tuned from" if cfg.model.pretrained and cfg.model.name != "small_cnn" else "trained from scratch as"
    return {
        "model_name": Path(cfg.output_dir).name,
        "description": f"An image classifier {what} `{cfg.model.name}` on `{cfg.data.dataset}`.",
        "headline": headline, "per_class": per_class, "label_names": labels, "num_labels": len(labels),
        "confusion_matrix": "\n".join(" ".join(f"{v:>5}" for v in row) for row in matrix),
        "comparison": _comparison_section(comparison), "dataset": cfg.data.dataset,
        "split_sizes": results.get("dataset_split_sizes", {}),
    }


def _comparison_section(comparison: dict | None) -> dict | None:
    if not comparison:
        return None
    from hf_tasks.tasks.classification.compare import markdown_table

    note = (f"the pretrained model's classes are mapped to the labels with `{comparison['label_map']}`."
            if comparison.get("label_map") else "both models predict the dataset's labels.")
    return {"split": comparison["split"], "note": note, "table": markdown_table(comparison["rows"])}


def hyperparameters(cfg: TrainConfig) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and not prefix.endswith("model.config."):
            for key, inner in value.items():
                walk(f"{prefix}{key}.", inner)
        else:
            rows.append((prefix[:-1], json.dumps(value) if isinstance(value, (dict, list)) else str(value)))

    walk("", cfg.to_dict())
    return [(k, v) for k, v in rows if k not in ("output_dir", "resume", "overwrite", "push_to_hub", "hub_private", "hub_revision", "hub_license")]


def usage_snippet(cfg: TrainConfig, model_id: str) -> str:
    family = model_family(cfg)
    lines = ["from PIL import Image", "from transformers import pipeline"]
    if family == "small_cnn":
        lines.insert(0, "import hf_tasks.models  # registers hf-tasks' small_cnn with the transformers auto classes")
    lines += ["", f'classify = pipeline("image-classification", model="{model_id}")',
              'print(classify(Image.open("image.jpg")))']
    if family == "timm":
        prefix = "local-dir:" if Path(model_id).exists() else "hf-hub:"
        lines += ["", "# or with timm itself", "import timm", "",
                  f'model = timm.create_model("{prefix}{model_id}", pretrained=True).eval()']
    return "\n".join(lines)


def framework_versions() -> list[tuple[str, str]]:
    names = ["hf-tasks", "torch", "transformers", "timm", "accelerate", "datasets", "evaluate"]
    found = []
    for name in names:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return found


def plot_curves(history: list[dict], path: Path) -> None:
    """Training loss and evaluation metrics against optimizer steps, as a PNG for the card."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [h for h in history if any(k.startswith("eval_") for k in h)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    if train:
        axes[0].plot(*zip(*train), label="train loss")
    if evals and "eval_loss" in evals[0]:
        axes[0].plot([h["step"] for h in evals], [h["eval_loss"] for h in evals], marker="o", label="eval loss")
    axes[0].set_xlabel("step"), axes[0].set_title("loss")
    for key in ("eval_accuracy", "eval_macro_f1", "eval_map", "eval_map_50", "eval_bleu4"):
        if evals and key in evals[0]:
            axes[1].plot([h["step"] for h in evals], [h[key] for h in evals], marker="o", label=key)
    axes[1].set_xlabel("step"), axes[1].set_ylim(0, 1.02), axes[1].set_title("evaluation")
    for axis in axes:
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def dataset_card_reference(dataset: str) -> str:
    """Where the dataset card is: its Hub page, or the README.md that `hf-tasks build-dataset` wrote."""
    if _is_hub_id(dataset):
        return f"[dataset card](https://huggingface.co/datasets/{dataset})"
    return "its dataset card is the `README.md` (with `build_report.json`) in that folder"


def _is_hub_id(dataset: str) -> bool:
    return dataset.count("/") == 1 and not Path(dataset).exists() and not dataset.startswith((".", "/"))


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
