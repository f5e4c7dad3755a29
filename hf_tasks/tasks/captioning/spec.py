"""Image captioning: a vision encoder + a text decoder in one ``VisionEncoderDecoderModel``, trained by the shared loop.

Every architecture is a ``VisionEncoderDecoderModel`` — a ViT (or any token-sequence vision model), or a CNN whose
feature map becomes tokens (:mod:`hf_tasks.models.captioning_encoders`), with a GPT-2 style decoder or the LSTM
attention decoder (:mod:`hf_tasks.models.lstm_decoder`) — so ONE ``forward`` (teacher forcing with the
encoder-decoder's own loss), ONE ``predict`` (``generate``: greedy or beam search) and ONE save/load serve them
all. Outputs load with ``VisionEncoderDecoderModel.from_pretrained`` + ``AutoProcessor`` (after
``import hf_tasks.models``) and with ``pipeline("image-text-to-text")`` (see ``captioning_processor``).

``model.config`` of a captioning recipe::

    encoder: {model_type: vit, hidden_size: 128, ...}   # or {model_type: resnet, ...}, {name: google/vit-base-...}
    decoder: {model_type: gpt2, n_embd: 128, ...}       # or {model_type: lstm, hidden_size: 256}, {name: distilgpt2}
    tokenizer: {type: word, min_frequency: 1, max_length: 32}   # see hf_tasks.tasks.captioning.tokenizer
    generation: {num_beams: 3, max_new_tokens: 20, length_penalty: 1.0, no_repeat_ngram_size: 0}

``name`` entries load pretrained weights when ``model.pretrained`` is true (only their config otherwise); a decoder
``name`` also brings its tokenizer, else one is trained on the training captions. With no encoder/decoder,
``model.name`` must be a saved captioner to fine-tune (the only load that ``model.trust_remote_code`` and
``model.revision`` apply to). Weights load from safetensors unless ``model.trust_pickle`` (``hf_tasks.trust``). A
captioner has no label head to check against the dataset: its vocabulary comes with its tokenizer. Captions come
from ``data.label_column`` when the dataset has it, else from the ``captions`` column (a list of reference strings
per image, or one string).
"""

from __future__ import annotations

from typing import Any

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.errors import ConfigError
from hf_tasks.registry import ModelBundle, TaskData, TaskSpec
from hf_tasks.tasks.captioning.card import CARD
from hf_tasks.tasks.captioning.data import collate, load_data, make_dataset
from hf_tasks.tasks.captioning.demo import DEMO, HEADLINE
from hf_tasks.tasks.captioning.model import build_model, load_model, save_model
from hf_tasks.tasks.captioning.options import check_architecture, model_parts, options

# ----------------------------------------------------------------------------------------------- config checks


def validate(cfg: TrainConfig) -> None:
    """Check ``model.config`` (architectures, tokenizer, generation) and the data options before anything is built."""
    try:
        parts = model_parts(cfg.model.config)
        for key in ("encoder", "decoder"):
            check_architecture(key, parts[key])
    except ValueError as err:
        raise ConfigError(f"'model.config' is invalid for captioning: {err}") from None
    if not parts["encoder"] and not cfg.model.pretrained:
        raise ConfigError("captioning needs model.config.encoder and model.config.decoder (or model.pretrained "
                          "with model.name a saved captioning model)")
    if cfg.model.checkpoint:
        raise ConfigError("'model.checkpoint' is for classification; captioning starts from a saved captioner "
                          "given as model.name")
    if parts["encoder"] and cfg.model.trust_remote_code:
        raise ConfigError("'model.trust_remote_code' applies to model.name (a saved captioner, pinned by "
                          "model.revision); encoder and decoder names are not pinned and never run remote code")
    if any(value for key, value in cfg.data.augment.resolved().items() if key != "fill_mode"):
        raise ConfigError("'data.augment' must stay off for captioning: captions name positions (\"to the left "
                          "of\", \"above\"), which flips and rotations would make wrong")


# ----------------------------------------------------------------------------------------------- steps


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """Teacher forcing: the encoder-decoder shifts ``labels`` right behind bos; padding is masked out."""
    labels = batch["labels"]
    mask = torch.ones_like(labels)
    mask[:, 1:] = labels[:, :-1] != -100  # decoder input t is label t-1 (input 0 is bos)
    return {"loss": model(pixel_values=batch["pixel_values"], labels=labels, decoder_attention_mask=mask).loss}


def predict(model: torch.nn.Module, batch: dict, bundle: ModelBundle) -> list[dict[str, Any]]:
    """Generated captions (decoding settings from the model's generation config, text from the bundle's
    tokenizer), one object per image."""
    from hf_tasks.tasks.captioning.tokenizer import decode_captions

    net = getattr(model, "module", model)  # DDP wraps the model but does not forward `generate`
    sequences = net.generate(pixel_values=batch["pixel_values"])
    texts = decode_captions(bundle.processor.tokenizer, sequences)
    return [{"index": int(i), "prediction": text, "references": refs}
            for i, text, refs in zip(batch["index"].tolist(), texts, batch["references"])]


def compute_metrics(outputs: list[dict[str, Any]], data: TaskData, bundle: ModelBundle | None = None
                    ) -> dict[str, Any]:
    """Corpus BLEU-1..4 of the generated captions against every reference of each image."""
    from hf_tasks.metrics import load_metric

    outputs = sorted(outputs, key=lambda o: o["index"])
    result = load_metric("bleu").compute(predictions=[o["prediction"] for o in outputs],
                                         references=[o["references"] for o in outputs])
    metrics = {f"bleu{n}": result[f"bleu{n}"] for n in range(1, 5)}
    for key in ("brevity_penalty", "length_ratio", "hyp_len", "ref_len", "precisions"):
        metrics[key] = result[key]
    metrics.update({"bleu_variant": result["variant"], "num_samples": len(outputs),
                    "examples": [{"prediction": o["prediction"], "reference": o["references"][0]}
                                 for o in outputs[:5]]})
    return metrics


SPEC = TaskSpec(
    name="captioning", main_metric="bleu4", greater_is_better=True, validate=validate, options=options,
    load_data=load_data, build_model=build_model, load_model=load_model, make_dataset=make_dataset, collate=collate,
    forward=forward, predict=predict, compute_metrics=compute_metrics, save_model=save_model, card=CARD,
    headline=HEADLINE, demo=DEMO,
)
