"""The captioning task's typed ``model.config``: four parts, each checked by what it configures.

``encoder``/``decoder`` are the fields of the transformers config of their ``model_type`` (or a ``name`` to load),
``tokenizer`` and ``generation`` the options of ``hf_tasks.tasks.captioning.tokenizer``; ``model_parts`` checks
each part's own keys, with the nearest name for a typo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_tasks.util import did_you_mean

MODEL_CONFIG_KEYS = ("encoder", "decoder", "tokenizer", "generation")
DECODER_ALIASES = {"lstm": "hf_tasks_lstm_decoder"}


@dataclass
class CaptioningOptions:
    encoder: dict[str, Any] = field(default_factory=dict)  # {name: hub id} or {model_type: vit, hidden_size: ...}
    decoder: dict[str, Any] = field(default_factory=dict)  # {name: distilgpt2} or {model_type: lstm, ...}
    tokenizer: dict[str, Any] = field(default_factory=dict)  # {type: word, min_frequency, vocab_size, max_length}
    generation: dict[str, Any] = field(default_factory=dict)  # {num_beams, max_new_tokens, length_penalty, ...}


def options(cfg) -> type:
    return CaptioningOptions


def model_parts(raw: dict[str, Any]) -> dict[str, Any]:
    """Split ``model.config`` into encoder/decoder specs and checked tokenizer/generation options."""
    from hf_tasks.tasks.captioning.tokenizer import generation_options, tokenizer_options

    unknown = [key for key in raw if key not in MODEL_CONFIG_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}{did_you_mean(unknown[0], MODEL_CONFIG_KEYS)} "
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
    if not spec:  # absent, null or {}: no such part (fine-tune the saved model.name)
        return {}
    if not isinstance(spec, dict) or ("name" in spec) == ("model_type" in spec):
        raise ValueError(f"'{key}' must be a mapping with either 'name' (Hub id or folder) or 'model_type' "
                         f"(build from a config), got {spec!r}")
    spec = dict(spec)
    if key == "decoder" and "model_type" in spec:
        spec["model_type"] = DECODER_ALIASES.get(spec["model_type"], spec["model_type"])
    return spec


def check_architecture(key: str, spec: dict[str, Any]) -> None:
    """A known ``model_type`` whose config has every field given (a typo such as ``n_embed`` fails here)."""
    import dataclasses

    from huggingface_hub.errors import StrictDataclassError
    from transformers import CONFIG_MAPPING

    import hf_tasks.models  # noqa: F401  registers the LSTM decoder and CNN encoder model types

    model_type = spec.get("model_type")
    if model_type is None:
        return
    if model_type not in CONFIG_MAPPING:
        hint = did_you_mean(str(model_type), [*CONFIG_MAPPING.keys(), *DECODER_ALIASES])
        raise ValueError(f"{key}.model_type {model_type!r} is unknown to transformers{hint}")
    config_class = CONFIG_MAPPING[model_type]
    fields = {f.name for f in dataclasses.fields(config_class)} | set(config_class.attribute_map)
    for name in spec:
        if name not in fields and name != "model_type":
            raise ValueError(f"{key}.{name} is not a field of {config_class.__name__}{did_you_mean(name, fields)}")
    try:  # values checked by the config class itself (transformers 5 configs are strict dataclasses)
        config_class(**{k: v for k, v in spec.items() if k != "model_type"})
    except (TypeError, ValueError, StrictDataclassError) as err:
        raise ValueError(f"{key}: {' '.join(str(err).split())}") from None
