"""The captioning task's model glue: build, load and save the network (the architectures themselves live in
``hf_tasks.models``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hf_tasks.config import TrainConfig
from hf_tasks.images import to_rgb
from hf_tasks.registry import ModelBundle, TaskData
from hf_tasks.tasks.captioning.data import references
from hf_tasks.tasks.captioning.options import model_parts
from hf_tasks.trust import LoadPolicy, load_errors

LOAD_HINT = ("Offline, pass a local folder, or set model.pretrained=false and build encoder/decoder from a "
             "model_type")


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


def load_model(path: str | Path, policy: LoadPolicy | None = None) -> ModelBundle:
    """A saved output folder (or Hub id) back as a bundle, for evaluation and fine-tuning (safetensors only unless
    ``policy`` trusts pickles)."""
    from transformers import AutoProcessor, VisionEncoderDecoderModel

    import hf_tasks.models  # noqa: F401  registers the CNN encoder, LSTM decoder and CaptioningProcessor

    policy = policy or LoadPolicy()
    with load_errors("model.name", str(path), LOAD_HINT, policy.trust_pickle):
        model = VisionEncoderDecoderModel.from_pretrained(str(path), **policy.model_kwargs())
        processor = AutoProcessor.from_pretrained(str(path), **policy.config_kwargs())
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
