"""An LSTM caption decoder with additive (Bahdanau) attention: the Show-Attend-Tell baseline (Xu et al., 2015).

Why a transformers ``PreTrainedModel`` + ``GenerationMixin`` with the causal-LM interface of GPT-2 (``input_ids``,
``encoder_hidden_states`` -> ``logits``): it then plugs into ``VisionEncoderDecoderModel`` exactly where a GPT-2
decoder goes, so the captioning task has ONE code path for both decoders — teacher forcing through the
encoder-decoder's own loss, ``generate`` (greedy and beam search), ``save_pretrained``/``from_pretrained`` (after
``import hf_tasks.models`` registers it with ``AutoModelForCausalLM``).

Each step ``t``, with LSTM state ``(h, c)`` and encoder tokens ``a_1..a_N`` (already projected to ``hidden_size`` by
the encoder-decoder's ``enc_to_dec_proj`` when the widths differ):

    e_i   = v^T tanh(W_a a_i + W_h h)            additive attention scores over the N encoder tokens
    alpha = softmax(e);  z = beta * sum_i alpha_i a_i,  beta = sigmoid(W_b h)   (the paper's gating scalar, per unit)
    h, c  = LSTMCell([E y_{t-1}; z], (h, c));    logits_t = W_o dropout(h + z)

The initial state comes from the mean encoder token, as in the paper. During ``generate`` the recurrent state is
kept in a :class:`~hf_tasks.models.recurrent_state.RecurrentStateCache`, a cache type this project owns: the decoder
returns it in its output, ``generate`` hands it back at the next step (under ``cache`` or ``past_key_values``,
whichever name the installed transformers uses) and reorders it for beam search, so each step feeds one new token and
the state never depends on the layout of transformers' own key/value caches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

from hf_tasks.models.recurrent_state import RecurrentStateCache, causal_lm_output, state_cache_for

LSTM_MODEL_TYPE = "hf_tasks_lstm_decoder"


class LSTMDecoderConfig(PreTrainedConfig):
    """Configuration of :class:`LSTMDecoderForCausalLM`.

    Args:
        vocab_size: tokens in the vocabulary (set from the tokenizer by the captioning task).
        hidden_size: LSTM state width; also the width the encoder tokens are projected to.
        embedding_size: word embedding width.
        attention_size: width of the additive attention's hidden layer.
        dropout: dropout before the output layer and on the embeddings.
        max_position_embeddings: longest caption ``generate`` may produce by default (no positional weights).
        num_hidden_layers: always 1 (one LSTM cell); ``generate`` sizes its cache by it.
    """

    model_type = LSTM_MODEL_TYPE

    vocab_size: int = 1000
    hidden_size: int = 256
    embedding_size: int = 128
    attention_size: int = 128
    dropout: float = 0.1
    max_position_embeddings: int = 64
    num_hidden_layers: int = 1
    initializer_range: float = 0.05
    is_decoder: bool = True
    add_cross_attention: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    tie_word_embeddings: bool = False
    use_cache: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.check_values()

    def check_values(self) -> None:
        """Raise ``ValueError`` naming the first bad field, so a recipe typo fails before a model is built."""
        for name in ("vocab_size", "hidden_size", "embedding_size", "attention_size", "max_position_embeddings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")


class AdditiveAttention(nn.Module):
    """Bahdanau attention: scores ``v^T tanh(W_a a_i + W_h h)``; the token projection is computed once per caption."""

    def __init__(self, hidden_size: int, attention_size: int) -> None:
        super().__init__()
        self.token_proj = nn.Linear(hidden_size, attention_size)
        self.state_proj = nn.Linear(hidden_size, attention_size, bias=False)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, projected_tokens: torch.Tensor, tokens: torch.Tensor, state: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(projected_tokens + self.state_proj(state)[:, None])).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask.bool(), torch.finfo(scores.dtype).min)
        alpha = scores.softmax(-1)
        return torch.bmm(alpha[:, None], tokens).squeeze(1), alpha


class LSTMDecoderPreTrainedModel(PreTrainedModel):
    config: LSTMDecoderConfig
    config_class = LSTMDecoderConfig
    base_model_prefix = "lstm_decoder"
    main_input_name = "input_ids"
    input_modalities = ("text",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Uniform init as in the reference Show-Attend-Tell code; ``transformers.initialization`` skips loaded
        tensors, so ``from_pretrained`` never overwrites trained weights."""
        scale = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.uniform_(module.weight, -scale, scale)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LSTMCell):
            for name, param in module.named_parameters():
                init.uniform_(param, -scale, scale) if name.startswith("weight") else init.zeros_(param)


class LSTMDecoderForCausalLM(LSTMDecoderPreTrainedModel, GenerationMixin):
    """``forward(input_ids, encoder_hidden_states) -> logits`` like GPT-2 with cross-attention."""

    def __init__(self, config: LSTMDecoderConfig) -> None:
        super().__init__(config)
        config.check_values()
        hidden = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size)
        self.init_state = nn.Linear(hidden, 2 * hidden)
        self.attention = AdditiveAttention(hidden, config.attention_size)
        self.gate = nn.Linear(hidden, hidden)
        self.cell = nn.LSTMCell(config.embedding_size + hidden, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(hidden, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(self, input_ids: torch.LongTensor | None = None, encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                cache: RecurrentStateCache | None = None, past_key_values: RecurrentStateCache | None = None,
                use_cache: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None, **kwargs: Any) -> CausalLMOutputWithCrossAttentions | tuple:
        """Logits for the new tokens, continuing from the state in the cache when it holds one.

        ``cache`` and ``past_key_values`` are the two names transformers has given the generation cache; either may
        carry it. ``attention_mask`` (in ``kwargs``) is ignored: padding only follows a caption, so it never changes
        the outputs at earlier positions.
        """
        if encoder_hidden_states is None:
            raise ValueError("the LSTM decoder attends to image tokens: pass encoder_hidden_states (B, N, hidden)")
        state_cache = state_cache_for(self, cache if cache is not None else past_key_values, use_cache)
        embeds = self.dropout(inputs_embeds if inputs_embeds is not None else self.embed_tokens(input_ids))
        tokens = encoder_hidden_states
        projected = self.attention.token_proj(tokens)
        last = state_cache.last_state() if state_cache is not None else None
        h, c = last if last is not None else torch.tanh(self.init_state(tokens.mean(1))).chunk(2, dim=-1)
        outputs, states, cells, alphas = [], [], [], []
        for t in range(embeds.shape[1]):
            context, alpha = self.attention(projected, tokens, h, encoder_attention_mask)
            context = torch.sigmoid(self.gate(h)) * context
            h, c = self.cell(torch.cat([embeds[:, t], context], dim=-1), (h, c))
            outputs.append(h + context)
            states.append(h), cells.append(c), alphas.append(alpha)
        if state_cache is not None:
            state_cache.append((torch.stack(states, 1), torch.stack(cells, 1)))
        logits = self.lm_head(self.dropout(torch.stack(outputs, dim=1)))
        attentions = (torch.stack(alphas, dim=1)[:, None],) if output_attentions else None
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return (logits,) if state_cache is None else (logits, state_cache)
        return causal_lm_output(logits, state_cache, attentions)


__all__ = ["LSTM_MODEL_TYPE", "LSTMDecoderConfig", "LSTMDecoderForCausalLM"]
