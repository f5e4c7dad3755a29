"""Generation state of the recurrent (LSTM) decoder in its own cache type: token-by-token decoding equals one pass,
the cache's own operations, and ``generate`` giving the same ids with and without the cache for GPT-2 and LSTM
decoders, greedy and beam search, on whichever transformers release is installed."""

from __future__ import annotations

import pytest
import torch


def test_lstm_decoder_cache_continues_exactly_where_the_full_prefix_would():
    """Token-by-token decoding with the state kept in our own cache equals one pass over the whole prefix; the
    decoder creates that cache from nothing or from the empty key/value cache generate hands it first."""
    from transformers import DynamicCache

    from hf_tasks.models import LSTMDecoderConfig, LSTMDecoderForCausalLM
    from hf_tasks.models.recurrent_state import CACHE_FIELD, RecurrentStateCache

    config = LSTMDecoderConfig(vocab_size=11, hidden_size=8, embedding_size=4, attention_size=6, dropout=0.0,
                               initializer_range=0.8)
    decoder = LSTMDecoderForCausalLM(config).eval()
    tokens, ids = torch.randn(3, 5, 8), torch.randint(0, 11, (3, 6))
    full = decoder(input_ids=ids, encoder_hidden_states=tokens, use_cache=False)
    assert getattr(full, CACHE_FIELD) is None
    for first in (None, DynamicCache(config=config)):
        cache, steps = first, []
        for t in range(6):
            out = decoder(input_ids=ids[:, t:t + 1], encoder_hidden_states=tokens, cache=cache, use_cache=True)
            cache = getattr(out, CACHE_FIELD)
            assert isinstance(cache, RecurrentStateCache)
            steps.append(out.logits)
        assert cache.get_seq_length() == 6
        torch.testing.assert_close(torch.cat(steps, dim=1), full.logits)
    # the older argument name carries it too; a filled key/value cache of another kind is refused
    again = decoder(input_ids=ids[:, :1], encoder_hidden_states=tokens, past_key_values=RecurrentStateCache())
    torch.testing.assert_close(again.logits, full.logits[:, :1])
    filled = DynamicCache(config=config)
    filled.update(torch.zeros(3, 1, 2, 8), torch.zeros(3, 1, 2, 8), 0)
    with pytest.raises(ValueError, match="cannot continue from a filled DynamicCache"):
        decoder(input_ids=ids[:, :1], encoder_hidden_states=tokens, cache=filled)


def test_recurrent_state_cache_reorders_repeats_and_crops_its_history():
    from hf_tasks.models.recurrent_state import RecurrentStateCache

    cache = RecurrentStateCache()
    assert cache.last_state() is None and cache.get_seq_length() == 0
    h = torch.arange(2 * 3 * 1, dtype=torch.float).reshape(2, 3, 1)  # batch 2, 3 tokens
    cache.append((h, -h))
    cache.append((h[:, :1] + 100, -h[:, :1] - 100))
    assert cache.get_seq_length() == 4
    assert cache.last_state()[0].flatten().tolist() == [100.0, 103.0]
    cache.reorder_cache(torch.tensor([1, 1]))
    assert cache.last_state()[0].flatten().tolist() == [103.0, 103.0]
    assert cache.last_state()[1].flatten().tolist() == [-103.0, -103.0]
    cache.batch_repeat_interleave(2)
    assert cache.history[0].shape == (4, 4, 1)
    cache.crop(-1)
    assert cache.get_seq_length() == 3 and cache.last_state()[0].flatten().tolist() == [5.0] * 4
    cache.crop(1)
    assert cache.get_seq_length() == 1 and cache.last_state()[0].flatten().tolist() == [3.0] * 4
    cache.batch_select_indices(torch.tensor([0]))
    assert cache.history[0].shape == (1, 1, 1)


def _tiny_captioner(decoder_kind: str):
    """A ViT + (GPT-2 | LSTM) encoder-decoder with large random weights, so each image and prefix changes the next
    token: a lost or misplaced generation state then changes the generated ids."""
    from transformers import GPT2Config, GPT2LMHeadModel, VisionEncoderDecoderModel, ViTConfig, ViTModel

    from hf_tasks.models import LSTMDecoderConfig, LSTMDecoderForCausalLM

    torch.manual_seed(0)
    encoder = ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 image_size=32, patch_size=8))
    if decoder_kind == "gpt2":
        decoder = GPT2LMHeadModel(GPT2Config(vocab_size=13, n_embd=16, n_layer=2, n_head=2, n_positions=40,
                                             add_cross_attention=True, is_decoder=True, initializer_range=0.5,
                                             bos_token_id=1, eos_token_id=2, pad_token_id=0))
    else:
        decoder = LSTMDecoderForCausalLM(LSTMDecoderConfig(vocab_size=13, hidden_size=16, embedding_size=8,
                                                           attention_size=8, dropout=0.0, initializer_range=0.6))
    model = VisionEncoderDecoderModel(encoder=encoder, decoder=decoder).eval()
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 1, 0, 2
    model.generation_config.decoder_start_token_id = 1
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    return model


@pytest.mark.parametrize("decoder_kind", ["gpt2", "lstm"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generate_gives_the_same_ids_with_and_without_the_cache(decoder_kind, num_beams):
    """The generation state survives ``generate``'s cache handling (greedy and beam search) on the installed
    transformers: cached decoding must equal recomputing every prefix from scratch."""
    model = _tiny_captioner(decoder_kind)
    pixels = torch.randn(4, 3, 32, 32)
    kwargs = dict(num_beams=num_beams, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    with torch.no_grad():
        cached = model.generate(pixel_values=pixels, use_cache=True, **kwargs)
        uncached = model.generate(pixel_values=pixels, use_cache=False, **kwargs)
    assert cached.shape == (4, 11)
    assert len({tuple(row) for row in cached[:, 1:].tolist()}) > 1, "captions must differ per image"
    assert len(set(cached[:, 1:].flatten().tolist())) > 2, "a caption of one repeated token proves nothing"
    assert torch.equal(cached, uncached)
