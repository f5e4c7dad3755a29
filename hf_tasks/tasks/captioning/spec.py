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

import difflib
from pathlib import Path
from typing import Any

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.data import open_run_splits
from hf_tasks.errors import ConfigError
from hf_tasks.images import to_rgb
from hf_tasks.registry import ModelBundle, TaskData, TaskSpec, register_task
from hf_tasks.trust import LoadPolicy, load_errors

CAPTIONS_COLUMN = "captions"
MODEL_CONFIG_KEYS = ("encoder", "decoder", "tokenizer", "generation")
DECODER_ALIASES = {"lstm": "hf_tasks_lstm_decoder"}
TOKENIZER_ATTRIBUTE = "caption_tokenizer"  # set on the model: predict turns generated ids into text with it
LOAD_HINT = ("Offline, pass a local folder, or set model.pretrained=false and build encoder/decoder from a "
             "model_type")


# ----------------------------------------------------------------------------------------------- config checks


def validate(cfg: TrainConfig) -> None:
    """Check ``model.config`` (architectures, tokenizer, generation) and the data options before anything is built."""
    try:
        parts = model_parts(cfg.model.config)
        for key in ("encoder", "decoder"):
            _check_architecture(key, parts[key])
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


def model_parts(raw: dict[str, Any]) -> dict[str, Any]:
    """Split ``model.config`` into encoder/decoder specs and checked tokenizer/generation options."""
    from hf_tasks.tasks.captioning.tokenizer import generation_options, tokenizer_options

    unknown = [key for key in raw if key not in MODEL_CONFIG_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}{_hint(unknown[0], MODEL_CONFIG_KEYS)} "
                         f"(known: {', '.join(MODEL_CONFIG_KEYS)})")
    parts = {key: _part(key, raw.get(key)) for key in ("encoder", "decoder")}
    if bool(parts["encoder"]) != bool(parts["decoder"]):
        raise ValueError("give both 'encoder' and 'decoder', or neither (to fine-tune the saved model.name)")
    tokenizer = dict(raw.get("tokenizer") or {})
    trained_only = sorted(set(tokenizer) & {"type", "min_frequency", "vocab_size"})
    if "name" in parts["decoder"] and trained_only:
        raise ValueError(f"tokenizer {trained_only} only apply to a trained tokenizer; decoder.name "
                         f"{parts['decoder']['name']!r} brings its own")
    parts["tokenizer"] = tokenizer_options(tokenizer)
    parts["generation"] = generation_options(raw.get("generation"))
    return parts


def _part(key: str, spec: Any) -> dict[str, Any]:
    if spec is None:
        return {}
    if not isinstance(spec, dict) or ("name" in spec) == ("model_type" in spec):
        raise ValueError(f"'{key}' must be a mapping with either 'name' (Hub id or folder) or 'model_type' "
                         f"(build from a config), got {spec!r}")
    spec = dict(spec)
    if key == "decoder" and "model_type" in spec:
        spec["model_type"] = DECODER_ALIASES.get(spec["model_type"], spec["model_type"])
    return spec


def _check_architecture(key: str, spec: dict[str, Any]) -> None:
    """A known ``model_type`` whose config has every field given (a typo such as ``n_embed`` fails here)."""
    import dataclasses

    from huggingface_hub.errors import StrictDataclassError
    from transformers import CONFIG_MAPPING

    import hf_tasks.models  # noqa: F401  registers the LSTM decoder and CNN encoder model types

    model_type = spec.get("model_type")
    if model_type is None:
        return
    if model_type not in CONFIG_MAPPING:
        hint = _hint(str(model_type), [*CONFIG_MAPPING.keys(), *DECODER_ALIASES])
        raise ValueError(f"{key}.model_type {model_type!r} is unknown to transformers{hint}")
    config_class = CONFIG_MAPPING[model_type]
    fields = {f.name for f in dataclasses.fields(config_class)} | set(config_class.attribute_map)
    for name in spec:
        if name not in fields and name != "model_type":
            raise ValueError(f"{key}.{name} is not a field of {config_class.__name__}{_hint(name, fields)}")
    try:  # values checked by the config class itself (transformers 5 configs are strict dataclasses)
        config_class(**{k: v for k, v in spec.items() if k != "model_type"})
    except (TypeError, ValueError, StrictDataclassError) as err:
        raise ValueError(f"{key}: {' '.join(str(err).split())}") from None


def _hint(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# ----------------------------------------------------------------------------------------------- data


def load_data(cfg: TrainConfig) -> TaskData:
    """Open the prepared dataset; find the image and caption columns."""
    data = cfg.data
    dataset_dict, splits = open_run_splits(data)
    column = caption_column(splits, data.image_column, data.label_column)
    gallery = next(s for s in (data.test_split, data.eval_split, data.train_split) if s is not None)
    info = {"dataset": data.dataset, "caption_column": column, "image_column": data.image_column,
            "train_split": data.train_split, "gallery_split": gallery,
            "split_sizes": {split: len(ds) for split, ds in dataset_dict.items()}}
    return TaskData(splits=splits, info=info)


def caption_column(splits: dict, image_column: str, label_column: str) -> str:
    """``data.label_column`` when it holds text, else ``captions``; fail naming the split, the column and what it
    holds otherwise (see ``tasks.columns``)."""
    from hf_tasks.tasks.columns import check_image_column, feature_type, is_text, mismatch

    check_image_column(splits, "captioning", image_column)
    first = next(iter(splits.values())).features
    column = label_column if is_text(first.get(label_column)) else CAPTIONS_COLUMN
    for split, ds in splits.items():
        feature, label = ds.features.get(column), ds.features.get(label_column)
        if feature is None:
            also = (f", and {label_column!r} ('data.label_column') holds {feature_type(label)}, not text"
                    if label is not None and label_column != CAPTIONS_COLUMN else "")
            raise mismatch("captioning", split, f"has no {CAPTIONS_COLUMN!r} column of reference captions{also}",
                           ds.features)
        if not is_text(feature):
            raise mismatch("captioning", split, f"column {column!r} holds {feature_type(feature)}, not caption text "
                           "(a string or a list of strings per image)", ds.features)
    return column


def references(value: Any) -> list[str]:
    """One image's reference captions, from a list of strings or a single string."""
    return [value] if isinstance(value, str) else [str(v) for v in value]


class CaptionPairs(torch.utils.data.Dataset):
    """Training rows: one per (image, caption) pair, through an index map — images are not copied."""

    def __init__(self, split, processor, image_column: str, caption_column: str) -> None:
        self.split, self.processor, self.image_column = split, processor, image_column
        self.captions = [references(value) for value in split[caption_column]]
        self.pairs = [(row, k) for row, caps in enumerate(self.captions) for k in range(len(caps))]

    def set_epoch(self, epoch: int) -> None:
        """No random augmentation, so nothing depends on the epoch."""

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from hf_tasks.tasks.captioning.tokenizer import encode_caption

        row, k = self.pairs[index]
        image = self.split[row][self.image_column]
        return {"pixel_values": pixels(self.processor, image), "index": index,
                "labels": encode_caption(self.processor.tokenizer, self.captions[row][k])}


class CaptionImages(torch.utils.data.Dataset):
    """Evaluation rows: one per image, with ALL its reference captions."""

    def __init__(self, split, processor, image_column: str, caption_column: str) -> None:
        self.split, self.processor = split, processor
        self.image_column, self.caption_column = image_column, caption_column

    def set_epoch(self, epoch: int) -> None:
        """Evaluation data does not change between epochs."""

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.split[index]
        return {"pixel_values": pixels(self.processor, row[self.image_column]), "index": index,
                "references": references(row[self.caption_column])}


def pixels(processor, image) -> torch.Tensor:
    return processor.image_processor(images=to_rgb(image), return_tensors="pt")["pixel_values"][0]


def make_dataset(split, bundle: ModelBundle, cfg: TrainConfig, data: TaskData, train: bool):
    dataset_class = CaptionPairs if train else CaptionImages
    return dataset_class(split, bundle.processor, data.info["image_column"], data.info["caption_column"])


def collate(samples: list[dict]) -> dict[str, Any]:
    """Stack pixels; pad labels with -100 (ignored by the loss); keep reference lists as Python lists."""
    batch: dict[str, Any] = {"pixel_values": torch.stack([s["pixel_values"] for s in samples]),
                             "index": torch.tensor([s["index"] for s in samples])}
    if "labels" in samples[0]:
        width = max(len(s["labels"]) for s in samples)
        batch["labels"] = torch.tensor([s["labels"] + [-100] * (width - len(s["labels"])) for s in samples])
    if "references" in samples[0]:
        batch["references"] = [s["references"] for s in samples]
    return batch


# ----------------------------------------------------------------------------------------------- model


def build_model(cfg: TrainConfig, data: TaskData) -> ModelBundle:
    from transformers import VisionEncoderDecoderModel

    from hf_tasks.models import CaptioningProcessor
    from hf_tasks.models.captioning_decoders import build_decoder
    from hf_tasks.models.captioning_encoders import build_encoder

    parts, policy = model_parts(cfg.model.config), LoadPolicy.of(cfg.model)
    if not parts["encoder"]:  # fine-tune a saved captioner; its decoding settings stay unless the recipe has some
        bundle = load_model(cfg.model.name, policy)
        if cfg.model.config.get("generation") is not None:
            configure_generation(bundle.model, bundle.processor.tokenizer, parts["generation"])
        return bundle
    tokenizer = build_tokenizer(parts, cfg, data)
    with _part_errors("encoder", parts["encoder"], policy):
        encoder, image_processor = build_encoder(parts["encoder"], cfg.model.pretrained, cfg.data.image_size,
                                                 policy.for_part())
    with _part_errors("decoder", parts["decoder"], policy):
        decoder = build_decoder(parts["decoder"], cfg.model.pretrained, tokenizer, policy.for_part())
    model = VisionEncoderDecoderModel(encoder=encoder, decoder=decoder)
    configure_generation(model, tokenizer, parts["generation"])
    return ModelBundle(model=model, processor=CaptioningProcessor(image_processor, tokenizer))


def build_tokenizer(parts: dict[str, Any], cfg: TrainConfig, data: TaskData):
    """The pretrained decoder's tokenizer, else one trained on the training split's captions only."""
    from hf_tasks.tasks.captioning.tokenizer import prepare_pretrained_tokenizer, train_tokenizer

    options = parts["tokenizer"]
    name = parts["decoder"].get("name")
    if name is not None:
        from transformers import AutoTokenizer

        policy = LoadPolicy.of(cfg.model)
        with _part_errors("decoder", parts["decoder"], policy):
            tokenizer = AutoTokenizer.from_pretrained(name, **policy.for_part().config_kwargs())
        return prepare_pretrained_tokenizer(tokenizer, options["max_length"])
    train = data.splits[data.info["train_split"]]
    captions = (caption for value in train[data.info["caption_column"]] for caption in references(value))
    return train_tokenizer(captions, options)


def configure_generation(model, tokenizer, options: dict[str, Any]) -> None:
    """Special-token ids on the model config (the loss shifts labels behind bos) and the decoding settings in
    ``generation_config.json`` (used by ``predict``, ``hf-tasks evaluate`` and the pipeline alike)."""
    from transformers import GenerationConfig

    ids = {"decoder_start_token_id": tokenizer.bos_token_id, "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    for key, value in ids.items():
        setattr(model.config, key, value)
    beams = options["num_beams"]
    model.generation_config = GenerationConfig(
        **ids, num_beams=beams, max_new_tokens=options["max_new_tokens"] or tokenizer.model_max_length,
        length_penalty=float(options["length_penalty"]), no_repeat_ngram_size=options["no_repeat_ngram_size"],
        early_stopping=beams > 1)
    setattr(model, TOKENIZER_ATTRIBUTE, tokenizer)


def load_model(path: str | Path, policy: LoadPolicy | None = None) -> ModelBundle:
    """A saved output folder (or Hub id) back as a bundle, for evaluation and fine-tuning (safetensors only unless
    ``policy`` trusts pickles)."""
    import hf_tasks.models  # noqa: F401  registers the CNN encoder, LSTM decoder and CaptioningProcessor
    from transformers import AutoProcessor, VisionEncoderDecoderModel

    policy = policy or LoadPolicy()
    with load_errors("model.name", str(path), LOAD_HINT, policy.trust_pickle):
        model = VisionEncoderDecoderModel.from_pretrained(str(path), **policy.model_kwargs())
        processor = AutoProcessor.from_pretrained(str(path), **policy.config_kwargs())
    setattr(model, TOKENIZER_ATTRIBUTE, processor.tokenizer)
    return ModelBundle(model=model, processor=processor)


def _part_errors(key: str, spec: dict[str, Any], policy: LoadPolicy):
    """Load failures of ``model.config.<key>``, named by its ``name`` (or ``model_type``)."""
    return load_errors(f"model.config.{key}", str(spec.get("name", spec.get("model_type"))), LOAD_HINT,
                       policy.trust_pickle)


def save_model(bundle: ModelBundle, path: Path, data: TaskData) -> None:
    """Safetensors weights, config, generation config and processor (image processor + tokenizer), plus the gallery."""
    bundle.model.save_pretrained(path)
    bundle.processor.save_pretrained(path)
    from hf_tasks.tasks.captioning.card import GALLERY_FILE

    save_gallery(bundle, data.splits[data.info["gallery_split"]], data.info, Path(path) / GALLERY_FILE)


def save_gallery(bundle: ModelBundle, split, info: dict[str, Any], path: Path, count: int = 8) -> None:
    """Caption the first ``count`` images of ``split`` for the card's gallery (generated vs first reference)."""
    from hf_tasks.tasks.captioning.card import plot_gallery
    from hf_tasks.tasks.captioning.tokenizer import decode_captions

    rows = split.select(range(min(count, len(split))))
    images = [to_rgb(row[info["image_column"]]) for row in rows]
    model, was_training = bundle.model, bundle.model.training
    model.eval()
    with torch.no_grad():
        pixel_values = bundle.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        generated = model.generate(pixel_values=pixel_values.to(model.device))
    model.train(was_training)
    plot_gallery(images, decode_captions(bundle.processor.tokenizer, generated),
                 [references(row[info["caption_column"]])[0] for row in rows], path)


# ----------------------------------------------------------------------------------------------- steps


def forward(model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """Teacher forcing: the encoder-decoder shifts ``labels`` right behind bos; padding is masked out."""
    labels = batch["labels"]
    mask = torch.ones_like(labels)
    mask[:, 1:] = labels[:, :-1] != -100  # decoder input t is label t-1 (input 0 is bos)
    return {"loss": model(pixel_values=batch["pixel_values"], labels=labels, decoder_attention_mask=mask).loss}


def predict(model: torch.nn.Module, batch: dict) -> list[dict[str, Any]]:
    """Generated captions (decoding settings from the model's generation config), one object per image."""
    from hf_tasks.tasks.captioning.tokenizer import decode_captions

    net = getattr(model, "module", model)  # DDP wraps the model but does not forward `generate`
    sequences = net.generate(pixel_values=batch["pixel_values"])
    texts = decode_captions(getattr(net, TOKENIZER_ATTRIBUTE), sequences)
    return [{"index": int(i), "prediction": text, "references": refs}
            for i, text, refs in zip(batch["index"].tolist(), texts, batch["references"])]


def compute_metrics(outputs: list[dict[str, Any]], data: TaskData) -> dict[str, Any]:
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


SPEC = register_task(TaskSpec(
    name="captioning", main_metric="bleu4", greater_is_better=True, validate=validate, load_data=load_data,
    build_model=build_model, load_model=load_model, make_dataset=make_dataset, collate=collate, forward=forward,
    predict=predict, compute_metrics=compute_metrics, save_model=save_model,
))
