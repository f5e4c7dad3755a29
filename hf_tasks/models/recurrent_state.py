"""Generation state of a recurrent decoder, in a structure this project owns.

A recurrent decoder (the LSTM captioner) continues from its state after the last token, not from keys and values
of every earlier token. ``generate`` hands the decoder a cache object and takes back whatever the decoder returns,
reorders it for beam search and crops it when it rolls a step back; which argument carries it (``past_key_values``
before transformers 5.24, ``cache`` since) and how transformers' own caches lay out their tensors are not a
contract. So the decoder keeps its state here: a :class:`transformers.Cache` subclass (the type ``generate``
accepts) whose storage and every operation ``generate`` calls are written in this file.

Entry ``t`` of the history is the state after token ``t``; each state part (``h`` and ``c`` for an LSTM) is stored as
``(batch, tokens, ...)``. Keeping the history, not only the last state, makes ``crop`` exact.
"""

from __future__ import annotations

from dataclasses import fields

import torch
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions


class RecurrentStateCache(Cache):
    """Per-token history of a recurrent decoder's state, with the operations ``generate`` performs on a cache."""

    is_compileable = False  # a Python-side history; generate must not try to compile around it
    is_croppable = True

    def __init__(self) -> None:
        super().__init__(layers=[])
        self.history: tuple[torch.Tensor, ...] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokens={self.get_seq_length()}, parts={len(self.history)})"

    def last_state(self) -> tuple[torch.Tensor, ...] | None:
        """The state after the last token seen, each part ``(batch, ...)``; ``None`` before the first token."""
        if not self.get_seq_length():
            return None
        return tuple(part[:, -1] for part in self.history)

    def append(self, states: tuple[torch.Tensor, ...]) -> None:
        """Add the states after each new token, each part ``(batch, new_tokens, ...)``."""
        self.history = states if not self.history else \
            tuple(torch.cat([old, new], dim=1) for old, new in zip(self.history, states, strict=True))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.history[0].shape[1] if self.history else 0

    def get_max_length(self) -> int:
        return -1

    def get_max_cache_shape(self, layer_idx: int = 0) -> int:
        return -1

    def reset(self) -> None:
        self.history = ()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: row ``i`` continues from the row ``beam_idx[i]`` it was chosen from."""
        self.batch_select_indices(beam_idx)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.history = tuple(part.index_select(0, indices.to(part.device)) for part in self.history)

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.history = tuple(part.repeat_interleave(repeats, dim=0) for part in self.history)

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` tokens' states; a negative value drops that many from the end."""
        keep = max_length if max_length >= 0 else self.get_seq_length() + max_length
        self.history = tuple(part[:, :max(keep, 0)] for part in self.history)


def state_cache_for(decoder: torch.nn.Module, given: object | None, use_cache: bool | None
                    ) -> RecurrentStateCache | None:
    """The cache a recurrent decoder's forward continues from and writes to.

    ``given`` is what the caller passed: our own cache (continue), nothing or an empty cache of another kind (the
    one ``generate`` creates before the first step: start a fresh history), or a filled cache of another kind
    (an error: a key/value cache holds nothing a recurrent decoder can continue from).
    """
    if use_cache is False:
        return None
    if isinstance(given, RecurrentStateCache):
        return given
    if given is not None and given.get_seq_length() > 0:
        raise ValueError(f"{type(decoder).__name__} keeps its generation state in a RecurrentStateCache; it cannot "
                         f"continue from a filled {type(given).__name__}")
    if use_cache is None and (decoder.training or not decoder.config.use_cache):
        return None  # teacher forcing: nothing to continue from later
    return RecurrentStateCache()


# The field of a causal LM's output that carries the cache: ``cache`` since transformers 5.24, ``past_key_values``
# before. Read from the output class's own dataclass fields, so either release finds the state where it looks.
CACHE_FIELD = "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithCrossAttentions)} else "past_key_values"


def causal_lm_output(logits: torch.Tensor, cache: RecurrentStateCache | None,
                     cross_attentions: tuple[torch.Tensor, ...] | None) -> CausalLMOutputWithCrossAttentions:
    """A causal LM's output with the cache under the name the installed transformers reads it by."""
    return CausalLMOutputWithCrossAttentions(logits=logits, cross_attentions=cross_attentions, **{CACHE_FIELD: cache})


__all__ = ["CACHE_FIELD", "RecurrentStateCache", "causal_lm_output", "state_cache_for"]
