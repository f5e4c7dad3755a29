"""What ``hf-tasks demo`` needs of captioning: its built-in job on the shapes data, loading a published model back
as its card says to caption one image, the held-out row's reference captions, and the numbers the summary shows."""

from __future__ import annotations

from typing import Any

from hf_tasks.registry import Bar, DemoParts, Preset

# (results.json key, short name); the first is the task's headline number
HEADLINE = (("test_bleu4", "BLEU-4"), ("test_bleu1", "BLEU-1"))

PRESET = Preset(
    recipe="shapes_captioning_cnn_lstm", repo_name="shapes-captioner", bar=Bar("test_bleu4", 0.5),
    build=("--task", "captioning", "--num-images", "2000", "--image-size", "64"),
    quick_build=("--task", "captioning", "--num-images", "1000", "--image-size", "64"),
    quick_overrides=("--epochs", "6"))


def predict(ref: str, image) -> dict[str, Any]:
    from transformers import AutoProcessor, VisionEncoderDecoderModel

    import hf_tasks.models  # noqa: F401  (registers the captioning processor, encoders and decoders)

    processor = AutoProcessor.from_pretrained(ref)
    model = VisionEncoderDecoderModel.from_pretrained(ref, use_safetensors=True).eval()
    return {"caption": processor.batch_decode(model.generate(**processor(images=[image])),
                                              skip_special_tokens=True)[0]}


def ground_truth(row: dict, features, image_column: str = "image", label_column: str = "label") -> dict[str, Any]:
    """The row's reference captions (empty when the row has no ``captions`` column)."""
    if "captions" not in row:
        return {}
    return {"captions": list(row["captions"])}


def describe(prediction: dict[str, Any], truth: dict[str, Any]) -> str:
    first = (truth.get("captions") or ["?"])[0]
    return f'"{prediction["caption"]}"; a reference: "{first}"'


DEMO = DemoParts(predict=predict, ground_truth=ground_truth, preset=PRESET, describe=describe)
