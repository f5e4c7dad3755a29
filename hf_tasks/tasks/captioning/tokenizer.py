"""Caption tokenizers: a pretrained decoder's own, or one trained on the TRAINING captions with 🤗 tokenizers.

A caption becomes ``tokens + [eos]`` (truncated to ``tokenizer.model_max_length``); the encoder-decoder shifts it
right behind ``decoder_start_token_id = bos`` for teacher forcing, and padding positions are ``-100`` in the
labels. Special tokens are added here explicitly, never by the tokenizer's post-processor, so a trained
word-level tokenizer and GPT-2's byte-level BPE (whose bos, eos and pad are all ``<|endoftext|>``) behave the same.

Tokenizer options live in the recipe under ``model.config.tokenizer``:

- ``type``: ``word`` (word level, split on whitespace only, so ``decode`` gives back the exact caption text) or
  ``bpe`` (byte-level BPE, GPT-2 style, for open vocabularies such as Flickr8k);
- ``min_frequency``: rarer words/merges are left out (unknown words become ``<unk>``);
- ``vocab_size``: upper bound for ``bpe``;
- ``max_length``: tokens per caption including eos (longer captions are truncated), also for pretrained tokenizers.

Decoding options live under ``model.config.generation`` (``num_beams: 1`` is greedy search, more is beam search;
``max_new_tokens`` defaults to ``max_length``; ``length_penalty``; ``no_repeat_ngram_size``) and are saved in the
model's ``generation_config.json``, so evaluation, the gallery and the pipeline all decode the same way.

Only the training split is read, so no validation/test caption leaks into the vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
TOKENIZER_DEFAULTS: dict[str, Any] = {"type": "word", "min_frequency": 1, "vocab_size": 8000, "max_length": 32}
GENERATION_DEFAULTS: dict[str, Any] = {"num_beams": 1, "max_new_tokens": None, "length_penalty": 1.0,
                                       "no_repeat_ngram_size": 0}


def tokenizer_options(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults filled in and every value checked; ``ValueError`` names the bad key."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(TOKENIZER_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown tokenizer option(s) {unknown}; known: {', '.join(TOKENIZER_DEFAULTS)}")
    options = {**TOKENIZER_DEFAULTS, **raw}
    if options["type"] not in ("word", "bpe"):
        raise ValueError(f"tokenizer.type must be 'word' or 'bpe', got {options['type']!r}")
    for key, minimum in (("min_frequency", 1), ("vocab_size", 16), ("max_length", 2)):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"tokenizer.{key} must be an integer >= {minimum}, got {value!r}")
    return options


def train_tokenizer(captions: Iterable[str], options: dict[str, Any]):
    """A ``PreTrainedTokenizerFast`` trained on ``captions`` with pad/bos/eos/unk special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    if options["type"] == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(min_frequency=options["min_frequency"], special_tokens=specials,
                                           show_progress=False)
    else:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=options["vocab_size"], min_frequency=options["min_frequency"],
                                      special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
    tokenizer.train_from_iterator(captions, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=options["max_length"],
                                   **SPECIAL_TOKENS)


def prepare_pretrained_tokenizer(tokenizer, max_length: int):
    """A pretrained tokenizer made usable for captions: it needs bos (the decoder start) and eos; pad may reuse eos
    because labels mask padding by position, not by id."""
    if tokenizer.eos_token is None or tokenizer.bos_token is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no bos/eos token; a caption decoder needs both")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_max_length = max_length
    return tokenizer


def encode_caption(tokenizer, text: str) -> list[int]:
    """``tokens + [eos]``, at most ``tokenizer.model_max_length`` ids."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[: tokenizer.model_max_length - 1] + [tokenizer.eos_token_id]


def generation_options(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Checked decoding options: a typo fails before training, not after it; ``ValueError`` names the key."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(GENERATION_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown generation option(s) {unknown}; known: {', '.join(GENERATION_DEFAULTS)}")
    options = {**GENERATION_DEFAULTS, **raw}
    for key, minimum in (("num_beams", 1), ("max_new_tokens", 1), ("no_repeat_ngram_size", 0)):
        value = options[key]
        if value is None and key == "max_new_tokens":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"generation.{key} must be an integer >= {minimum}, got {value!r}")
    if isinstance(options["length_penalty"], bool) or not isinstance(options["length_penalty"], (int, float)):
        raise ValueError(f"generation.length_penalty must be a number, got {options['length_penalty']!r}")
    return options


def decode_captions(tokenizer, sequences) -> list[str]:
    """Generated id rows -> caption strings, special tokens (bos, eos, pad) dropped."""
    return [text.strip() for text in tokenizer.batch_decode(sequences, skip_special_tokens=True)]


__all__ = ["GENERATION_DEFAULTS", "SPECIAL_TOKENS", "TOKENIZER_DEFAULTS", "decode_captions", "encode_caption",
           "generation_options", "prepare_pretrained_tokenizer", "tokenizer_options", "train_tokenizer"]
