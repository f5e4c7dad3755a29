"""Captioning model cards and figures: ``results.json`` (+ config) → card context, metadata and usage snippet.

The caption gallery (``caption_gallery.png``) is drawn here too, but at save time by the captioning task: it needs
the trained model to generate captions, which a card, a pure function of the run's files, must not do.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from hf_tasks.config import TrainConfig
from hf_tasks.registry import CardParts
from hf_tasks.util import fmt, is_hub_id

GALLERY_FILE = "caption_gallery.png"


def context(cfg: TrainConfig, results: dict, output_dir: Path | None) -> dict[str, Any]:
    """Template variables of ``model_cards/captioning.md``."""
    from hf_tasks.tasks.captioning.tokenizer import generation_options

    headline = [(name, fmt(results.get(key))) for name, key in (
        ("BLEU-4", "test_bleu4"), ("BLEU-3", "test_bleu3"), ("BLEU-2", "test_bleu2"), ("BLEU-1", "test_bleu1"),
        ("brevity penalty", "test_brevity_penalty"), ("length ratio (hyp / ref)", "test_length_ratio"),
        ("test images", "test_num_samples")) if results.get(key) is not None]
    parts = cfg.model.config
    generation = generation_options(parts.get("generation"))
    decoding = ("greedy search" if generation["num_beams"] == 1 else
                f"beam search ({generation['num_beams']} beams, length penalty {generation['length_penalty']})")
    examples = [{"prediction": _cell(e["prediction"]), "reference": _cell(e["reference"])}
                for e in results.get("test_examples") or []]
    return {
        "model_name": Path(cfg.output_dir).name,
        "description": f"An image captioner ({architecture(cfg)}) trained with hf-tasks on `{cfg.data.dataset}`.",
        "headline": headline, "bleu_variant": results.get("test_bleu_variant", "n/a"), "examples": examples,
        "decoding": decoding, "max_new_tokens": generation["max_new_tokens"] or "the tokenizer's max_length",
        "gallery": GALLERY_FILE if output_dir is not None and (Path(output_dir) / GALLERY_FILE).is_file() else None,
        "dataset": cfg.data.dataset, "split_sizes": results.get("dataset_split_sizes", {}),
        "train_samples": results.get("train_samples"),
    }


def architecture(cfg: TrainConfig) -> str:
    """``ViT encoder + GPT-2 decoder``-style words from the recipe's encoder/decoder entries."""
    parts = cfg.model.config
    if not parts.get("encoder"):
        return f"fine-tuned from `{cfg.model.name}`"
    words = []
    for key in ("encoder", "decoder"):
        spec = parts[key]
        label = spec.get("name") or str(spec.get("model_type")).replace("hf_tasks_lstm_decoder", "lstm")
        source = "pretrained" if "name" in spec and cfg.model.pretrained else "from scratch"
        words.append(f"`{label}` {key} ({source})")
    return " + ".join(words)


def pretrained_names(cfg: TrainConfig) -> list[str]:
    if not cfg.model.pretrained:
        return []
    parts = cfg.model.config
    if not parts.get("encoder"):
        return [cfg.model.name]
    return [parts[key]["name"] for key in ("encoder", "decoder") if "name" in parts[key]]


def card_data(cfg: TrainConfig, results: dict):
    """Hub metadata: pipeline tag image-to-text and a model-index with the test split's BLEU-4 (variant named)."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset = cfg.data.dataset
    evals = [EvalResult(task_type="image-to-text", dataset_type=dataset, dataset_name=Path(dataset).name or dataset,
                        dataset_split=cfg.data.test_split, dataset_revision=cfg.data.revision, metric_type="bleu",
                        metric_name="BLEU-4", metric_config=results.get("test_bleu_variant"),
                        metric_value=results["test_bleu4"])] if "test_bleu4" in results else []
    bases = pretrained_names(cfg)
    return ModelCardData(
        model_name=Path(cfg.output_dir).name, library_name="transformers", pipeline_tag="image-to-text",
        tags=["image-to-text", "image-captioning", "vision-encoder-decoder", "hf-tasks"],
        base_model=(bases[0] if len(bases) == 1 else bases) or None,
        datasets=[dataset] if is_hub_id(dataset) else None, metrics=["bleu"], eval_results=evals or None,
    )


def usage(cfg: TrainConfig, model_id: str, output_dir: Path | None = None) -> str:
    """Runs as written (a test executes it): the image-text-to-text pipeline, then the step-by-step way (the same
    for every captioning run: ``cfg`` and ``output_dir`` are not needed)."""
    return "\n".join([
        "import hf_tasks.models  # registers hf-tasks' CaptioningProcessor (and CNN encoder / LSTM decoder)",
        "from PIL import Image",
        "from transformers import AutoProcessor, VisionEncoderDecoderModel, pipeline",
        "",
        "image = Image.open(\"image.jpg\").convert(\"RGB\")",
        f'captioner = pipeline("image-text-to-text", model="{model_id}")',
        'print(captioner(images=image, text="")[0]["generated_text"])',
        "",
        "# or step by step",
        f'processor = AutoProcessor.from_pretrained("{model_id}")',
        f'model = VisionEncoderDecoderModel.from_pretrained("{model_id}")',
        "ids = model.generate(**processor(images=image))",
        "print(processor.batch_decode(ids, skip_special_tokens=True)[0])",
    ])


def plot_gallery(images: list, captions: list[str], references: list[str], path: Path) -> None:
    """A PNG grid: each image with its generated caption above and its first reference caption below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 4.0 * rows), squeeze=False)
    for axis in axes.flat:
        axis.set_xticks([]), axis.set_yticks([])
        axis.set_frame_on(False)
    for axis, image, caption, reference in zip(axes.flat, images, captions, references):
        axis.imshow(image)
        axis.set_title("\n".join(textwrap.wrap(caption or "(empty)", 30)), fontsize=8)
        axis.set_xlabel("\n".join(textwrap.wrap(f"reference: {reference}", 36)), fontsize=7, color="dimgray")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(text: str) -> str:
    """Safe inside a markdown table cell."""
    return text.replace("|", "\\|") or "(empty)"


# the caption gallery needs the trained model, so the task draws it at save time (no ``figures`` here)
CARD = CardParts(template="captioning.md", context=context, card_data=card_data, usage=usage)
