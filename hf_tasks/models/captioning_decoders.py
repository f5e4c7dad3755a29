"""The text side of a captioner: a causal LM with cross-attention built from a recipe's ``model.config.decoder``.

``{name: ...}`` loads a Hub id or folder (weights only when ``pretrained``), ``{model_type: ...}`` builds from a
config (``gpt2``-style, or ``hf_tasks_lstm_decoder``); either way sized to the caption tokenizer. The vision side is
:mod:`hf_tasks.models.captioning_encoders`.
"""

from __future__ import annotations

from typing import Any


from hf_tasks.trust import LoadPolicy


def build_decoder(spec: dict[str, Any], pretrained: bool, tokenizer, policy: LoadPolicy | None = None):
    """A causal LM with cross-attention (GPT-2 style, or the LSTM decoder), sized to the tokenizer.

    Output embeddings are untied from the input embeddings: accelerate drops aliased tensors when it saves the
    best weights (``checkpoints/best``), and restoring them with a strict ``load_state_dict`` then misses the tied
    ``lm_head.weight``. ``policy`` (safe by default) decides whether pickled weights may load.
    """
    import hf_tasks.models  # noqa: F401  registers the LSTM decoder type
    from transformers import AutoConfig, AutoModelForCausalLM

    overrides, policy = {k: v for k, v in spec.items() if k not in ("name", "model_type")}, policy or LoadPolicy()
    name = spec.get("name")
    load = pretrained and name is not None
    if not load:  # sized to the tokenizer: a trained one, or the named decoder's own
        overrides.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    config = AutoConfig.from_pretrained(name, **policy.config_kwargs(), **overrides) if name else \
        AutoConfig.for_model(spec["model_type"], **overrides)
    config.is_decoder, config.add_cross_attention, config.pad_token_id = True, True, tokenizer.pad_token_id
    loaded = AutoModelForCausalLM.from_pretrained(name, config=config, **policy.model_kwargs()) if load else None
    config.tie_word_embeddings = False  # built untied, so neither it nor the encoder-decoder ties them again
    decoder = AutoModelForCausalLM.from_config(config)
    if loaded is not None:  # a tied checkpoint's state dict names the shared matrix under both keys: both copied
        decoder.load_state_dict(loaded.state_dict())
    return decoder
