"""The classification model card: (config, results, comparison) → template variables, Hub metadata and usage.

Used by ``hf_tasks.cards`` through ``CARD`` (the spec's ``card``). The model-index holds accuracy and macro F1 on
the test split; every number comes from ``results.json``, and the before/after table from ``comparison.json``
(written by ``hf-tasks compare``) when the run folder has one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hf_tasks.config import TrainConfig
from hf_tasks.registry import CardParts
from hf_tasks.tasks.classification.model import SMALL_CNN, TIMM_PREFIX
from hf_tasks.util import fmt, is_hub_id

COMPARISON_FILE = "comparison.json"
HEADLINE = (("accuracy", "test_accuracy"), ("macro F1", "test_macro_f1"), ("loss", "test_loss"),
            ("test images", "test_num_samples"))


def model_family(cfg: TrainConfig) -> str:
    """``small_cnn``, ``timm`` or ``transformers``: which library loads the saved model."""
    if cfg.model.name == SMALL_CNN:
        return "small_cnn"
    return "timm" if cfg.model.name.startswith(TIMM_PREFIX) else "transformers"


def card_data(cfg: TrainConfig, results: dict):
    """Hub metadata: pipeline tag image-classification and a model-index with the test split's accuracy/macro F1."""
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
        datasets=[dataset] if is_hub_id(dataset) else None,
        metrics=["accuracy", "f1"],
        eval_results=evals or None,
    )


def context(cfg: TrainConfig, results: dict, output_dir: Path | None = None) -> dict[str, Any]:
    """Template variables of ``model_cards/classification.md`` (``output_dir``: where ``comparison.json`` may be)."""
    labels = results.get("label_names") or []
    matrix = results.get("test_confusion_matrix") or []
    per_class = [{"name": name, "accuracy": fmt(acc), "support": sum(row)}
                 for name, acc, row in zip(labels, results.get("test_per_class_accuracy") or [], matrix)]
    headline = [(name, fmt(results[key])) for name, key in HEADLINE if results.get(key) is not None]
    what = "fine-tuned from" if cfg.model.pretrained and cfg.model.name != SMALL_CNN else "trained from scratch as"
    return {
        "model_name": Path(cfg.output_dir).name,
        "description": f"An image classifier {what} `{cfg.model.name}` on `{cfg.data.dataset}`.",
        "headline": headline, "per_class": per_class, "label_names": labels, "num_labels": len(labels),
        "confusion_matrix": "\n".join(" ".join(f"{v:>5}" for v in row) for row in matrix),
        "comparison": comparison_section(read_comparison(output_dir)), "dataset": cfg.data.dataset,
        "split_sizes": results.get("dataset_split_sizes", {}),
    }


def read_comparison(output_dir: Path | None) -> dict | None:
    """The run folder's ``comparison.json`` (``hf-tasks compare``), if it has one."""
    if output_dir is None:
        return None
    path = Path(output_dir) / COMPARISON_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def comparison_section(comparison: dict | None) -> dict | None:
    """The card's "Before and after fine-tuning" section from a comparison, or ``None`` without one."""
    if not comparison:
        return None
    note = (f"the pretrained model's classes are mapped to the labels with `{comparison['label_map']}`."
            if comparison.get("label_map") else "both models predict the dataset's labels.")
    return {"split": comparison["split"], "note": note, "table": markdown_table(comparison["rows"])}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The comparison rows (``hf-tasks compare``) as a markdown table."""
    lines = ["| model | role | accuracy | macro F1 | samples |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['role']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['num_samples']} |"
              for r in rows]
    return "\n".join(lines)


def usage(cfg: TrainConfig, model_id: str, output_dir: Path | None = None) -> str:
    """Runs as written (a test executes it): the image-classification pipeline, and timm itself for timm models."""
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


CARD = CardParts(template="classification.md", context=context, card_data=card_data, usage=usage)
