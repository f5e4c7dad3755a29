"""Captioning end to end: tiny ViT+GPT-2 and CNN+LSTM encoder-decoders train in the shared loop, save, reload and
caption identically (also through the image-text-to-text pipeline); tokenizer training; config checks; a 2-process
`accelerate launch` run evaluates exactly like 1 process."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from hf_tasks.errors import ConfigError
from hf_tasks.registry import load_config
from tests.helpers import build_dataset, read_json, run_launch, subprocess_env

TINY = {
    "vit_gpt2": "{encoder: {model_type: vit, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,"
                " intermediate_size: 32, patch_size: 8, initializer_range: 0.5}, decoder: {model_type: gpt2,"
                " n_embd: 16, n_layer: 1, n_head: 2, n_positions: 40, initializer_range: 0.5},"
                " generation: {num_beams: 2, max_new_tokens: 8}}",
    "cnn_lstm": "{encoder: {model_type: resnet, embedding_size: 8, hidden_sizes: [8, 16], depths: [1, 1]},"
                " decoder: {model_type: lstm, hidden_size: 16, embedding_size: 8, attention_size: 8,"
                " initializer_range: 0.5}, generation: {max_new_tokens: 8}}",
}
# Large initial weights make each image's caption its own after 2 steps: a pairing of captions with the wrong
# images, or a reload that loses a part, then changes what is generated (a constant "a a a" caption would not).


def assert_captions_depend_on_the_image(captions: list[str]) -> None:
    assert len(set(captions)) >= max(2, len(captions) // 2), captions
    assert any(len(set(caption.split())) > 1 for caption in captions), captions


def args(dataset, out, arch: str, *extra: str) -> list[str]:
    return ["--task", "captioning", "--data.dataset", str(dataset), "--output-dir", str(out), "--batch-size", "4",
            "--data.image_size", "32", "--model.name", arch, "--model.pretrained", "false", "--model.config",
            TINY[arch], "--lr", "0.01", *extra]


@pytest.fixture(scope="module")
def captions_data(tmp_path_factory):
    """Shapes captioning data (3 references per image) whose test split has an odd size (9)."""
    out = tmp_path_factory.mktemp("captions") / "ds"
    build_dataset(["shapes", "--task", "captioning", "--num-images", "36", "--image-size", "32", "--seed", "0",
                   "--test-fraction", "0.25", "--val-fraction", "0.1", "--out", str(out)])
    return out


@pytest.fixture(scope="module", params=sorted(TINY))
def trained(request, captions_data, tmp_path_factory):
    """A tiny model of each architecture trained in-process for 2 steps (evaluated on validation and test)."""
    from hf_tasks.train import train

    out = tmp_path_factory.mktemp(request.param) / "run"
    results = train(load_config(None, args(captions_data, out, request.param, "--max-steps", "2")))
    return out, results


def test_trains_in_the_shared_loop_and_writes_a_loadable_folder(trained):
    out, results = trained
    assert read_json(out / "results.json") == results and results["train_steps"] == 2
    assert results["test_num_samples"] == 9 and results["train_samples"] == 3 * 23  # one row per caption
    for n in range(1, 5):
        assert 0.0 <= results[f"test_bleu{n}"] <= 1.0
    assert "BLEU-4" in results["test_bleu_variant"] and "test_brevity_penalty" in results
    for name in ("model.safetensors", "config.json", "generation_config.json", "processor_config.json",
                 "tokenizer.json", "caption_gallery.png", "README.md", "train_config.yaml"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin"))


def _test_images(dataset, count: int = 5):
    import datasets

    return [row["image"].convert("RGB") for row in datasets.load_from_disk(str(dataset))["test"].select(range(count))]


def test_reload_generates_the_captions_evaluation_produced(trained, captions_data):
    """save -> from_pretrained -> the same captions as the trained model gave in the final test evaluation."""
    from transformers import AutoProcessor, VisionEncoderDecoderModel

    import hf_tasks.models  # noqa: F401  registers CaptioningProcessor, the CNN encoder and the LSTM decoder

    out, results = trained
    model = VisionEncoderDecoderModel.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    inputs = processor(images=_test_images(captions_data))
    with torch.no_grad():
        ids = model.generate(pixel_values=inputs["pixel_values"])
        assert torch.equal(ids, model.generate(**inputs))  # the processor's [bos] prompt changes nothing
        assert torch.equal(model.generate(pixel_values=inputs["pixel_values"], use_cache=False), ids)
    captions = [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]
    assert_captions_depend_on_the_image(captions)
    assert captions == [example["prediction"] for example in results["test_examples"]]


def test_a_saved_captioner_is_the_starting_point_of_another_run(trained, captions_data):
    from hf_tasks.registry import get_task

    out, _ = trained
    cfg = load_config(None, ["--task", "captioning", "--data.dataset", str(captions_data), "--model.name", str(out),
                             "--model.config", "{generation: {num_beams: 4}}"])
    spec = get_task("captioning")
    bundle = spec.build_model(cfg, spec.load_data(cfg))
    assert bundle.model.generation_config.num_beams == 4
    assert bundle.processor.tokenizer.get_vocab() == read_json(out / "tokenizer.json")["model"]["vocab"]
    from transformers import VisionEncoderDecoderModel

    import hf_tasks.models  # noqa: F401

    saved, built = VisionEncoderDecoderModel.from_pretrained(out).state_dict(), bundle.model.state_dict()
    assert saved.keys() == built.keys()
    for key, value in saved.items():
        assert torch.equal(built[key], value), key


def test_image_text_to_text_pipeline_serves_the_saved_model(trained, captions_data):
    from transformers import AutoProcessor, VisionEncoderDecoderModel, pipeline

    import hf_tasks.models  # noqa: F401

    out, _ = trained
    image = _test_images(captions_data, 1)[0]
    captioner = pipeline("image-text-to-text", model=str(out))
    generated = captioner(images=image, text="")[0]["generated_text"]
    processor, model = AutoProcessor.from_pretrained(out), VisionEncoderDecoderModel.from_pretrained(out).eval()
    ids = model.generate(**processor(images=image))
    assert generated == processor.batch_decode(ids, skip_special_tokens=True)[0]


def test_card_metadata_and_usage_snippet(trained, tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results
    from PIL import Image

    out, results = trained
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "image-to-text"
    _, evals = model_index_to_eval_results(data["model-index"])
    assert [(e.metric_type, e.metric_name, e.dataset_split) for e in evals] == [("bleu", "BLEU-4", "test")]
    assert evals[0].metric_value == results["test_bleu4"] and evals[0].metric_config == results["test_bleu_variant"]
    assert "![generated captions" in card.text and f"| BLEU-4 | {results['test_bleu4']:.4f} |" in card.text
    if "cnn_lstm" not in str(out):  # one architecture is enough to run the snippet in a fresh interpreter
        return
    snippet = re.search(r"## Usage\n\n.*?```python\n(.*?)```", card.text, re.S).group(1)
    Image.new("RGB", (40, 40), "red").save(tmp_path / "image.jpg")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]  # pipeline and step-by-step agree


def test_training_rows_are_caption_pairs_and_evaluation_rows_are_images(captions_data):
    from hf_tasks.registry import get_task

    cfg = load_config(None, args(captions_data, "unused", "cnn_lstm"))
    spec = get_task("captioning")
    data = spec.load_data(cfg)
    bundle = spec.build_model(cfg, data)
    train = spec.make_dataset(data.splits["train"], bundle, cfg, data, train=True)
    test = spec.make_dataset(data.splits["test"], bundle, cfg, data, train=False)
    assert len(train) == 3 * 23 and len(test) == 9
    batch = spec.collate([train[0], train[5]])
    tokenizer = bundle.processor.tokenizer
    assert batch["labels"].shape[0] == 2 and (batch["labels"] == -100).any()
    first = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert first[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(first, skip_special_tokens=True) == data.splits["train"][0]["captions"][0]
    assert len(spec.collate([test[0]])["references"][0]) == 3


def test_tokenizer_is_trained_on_training_captions_only():
    from datasets import Dataset

    from hf_tasks.registry import TaskData
    from hf_tasks.tasks.captioning.model import build_tokenizer
    from hf_tasks.tasks.captioning.options import model_parts
    from hf_tasks.tasks.captioning.tokenizer import encode_caption

    splits = {"train": Dataset.from_dict({"captions": [["a red circle", "a red disc"], ["one blue square"]]}),
              "test": Dataset.from_dict({"captions": [["a green unicorn"]]})}
    data = TaskData(splits=splits, info={"train_split": "train", "caption_column": "captions"})
    for kind in ("word", "bpe"):
        parts = model_parts({"encoder": {"model_type": "vit"}, "decoder": {"model_type": "lstm"},
                             "tokenizer": {"type": kind, "max_length": 4}})
        tokenizer = build_tokenizer(parts, load_config(None, ["--data.dataset", "x", "--task", "captioning"]), data)
        assert {tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token} == {"<pad>", "<bos>", "<eos>"}
        ids = encode_caption(tokenizer, "one blue square and more words")
        assert len(ids) == 4 and ids[-1] == tokenizer.eos_token_id  # truncated to max_length, eos kept
        assert tokenizer.decode(encode_caption(tokenizer, "a red circle"), skip_special_tokens=True) == "a red circle"
    word = build_tokenizer(model_parts({"encoder": {"model_type": "vit"}, "decoder": {"model_type": "lstm"}}),
                           load_config(None, ["--data.dataset", "x", "--task", "captioning"]), data)
    assert "circle" in word.get_vocab() and "unicorn" not in word.get_vocab()  # no test caption leaks in
    assert word.decode(encode_caption(word, "a green unicorn"), skip_special_tokens=True) == "a"


@pytest.mark.parametrize("override, message", [
    (["--model.config", "{encoder: {model_type: vit}, decoder: {model_type: lstm}, generaton: {}}"],
     "unknown key 'model.config.generaton'; did you mean 'model.config.generation'"),
    (["--model.config", "{encoder: {model_type: vit}, decoder: {model_type: lstm}, generation: {num_beams: 0}}"],
     "generation.num_beams must be an integer >= 1"),
    (["--model.config", "{encoder: {model_type: vit}, decoder: {model_type: lstm}, generation: {beams: 3}}"],
     r"unknown generation option\(s\) \['beams'\]"),
    (["--model.config", "{encoder: {model_type: vit}, decoder: {model_type: lstm}, tokenizer: {type: char}}"],
     "tokenizer.type must be 'word' or 'bpe'"),
    (["--model.config", "{encoder: {model_type: vitt}, decoder: {model_type: lstm}}"],
     "encoder.model_type 'vitt' is unknown to transformers; did you mean 'vit'"),
    (["--model.config", "{encoder: {model_type: vit}, decoder: {model_type: lstm, dropout: 1.5}}"],
     "dropout must be a probability"),
    (["--model.config", "{encoder: {model_type: vit}, decoder: {model_type: gpt2, n_embed: 16}}"],
     "decoder.n_embed is not a field of GPT2Config; did you mean 'n_embd'"),
    (["--model.config", "{encoder: {model_type: vit, hidden_size: big}, decoder: {model_type: gpt2}}"],
     "encoder: Validation error for field 'hidden_size'"),
    (["--model.config", "{encoder: {model_type: vit}, decoder: {name: distilgpt2}, tokenizer: {type: word}}"],
     r"tokenizer \['type'\] only apply to a trained tokenizer"),
    (["--model.config", "{encoder: {model_type: vit}}"], "give both 'encoder' and 'decoder'"),
    (["--model.config", "{encoder: {model_type: vit}, decoder: {model_type: lstm}}", "--data.augment.hflip", "true"],
     "'data.augment' must stay off for captioning"),
])
def test_bad_config_fails_before_anything_is_built(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["--task", "captioning", "--data.dataset", "x", "--model.pretrained", "false", *override])


def test_two_process_launch_evaluates_exactly_like_one_process(captions_data, tmp_path):
    """`accelerate launch` with 2 processes (gloo): training runs, and its test BLEU on the odd-sized split (each
    image once, none dropped) equals a 1-process `hf-tasks evaluate` of the saved model."""
    from hf_tasks.cli import main as cli

    out = tmp_path / "run"
    run_launch(["hf_tasks.train", *args(captions_data, out, "vit_gpt2", "--max-steps", "2", "--data.eval_split",
                                        "none")], num_processes=2)
    results = read_json(out / "results.json")
    assert results["num_processes"] == 2 and results["train_steps"] == 2 and results["test_num_samples"] == 9
    assert_captions_depend_on_the_image([example["prediction"] for example in results["test_examples"]])
    assert cli(["evaluate", "--task", "captioning", "--model", str(out), "--dataset", str(captions_data),
                "--split", "test", "--batch-size", "4", "--output", str(tmp_path / "one.json")]) == 0
    single = read_json(tmp_path / "one.json")
    for key in ("test_bleu1", "test_bleu2", "test_bleu3", "test_bleu4", "test_hyp_len", "test_ref_len",
                "test_num_samples", "test_examples"):
        assert single[key] == results[key], key


@pytest.fixture(scope="module")
def local_pretrained(tmp_path_factory):
    """Stand-ins for Hub checkpoints: a tiny ViT with its image processor, a tiny GPT-2 with a GPT-2 style
    tokenizer whose bos = eos = <|endoftext|> and no pad token (as distilgpt2 ships)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        PreTrainedTokenizerFast,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    root = tmp_path_factory.mktemp("pretrained")
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8)).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    words = ["<|endoftext|>", "a", "small", "large", "red", "blue", "green", "circle", "square", "star", "triangle"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    tokenizer.save_pretrained(root / "gpt2")
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_embd=16, n_layer=1, n_head=2, n_positions=40, bos_token_id=0,
                               eos_token_id=0)).save_pretrained(root / "gpt2")
    return root


def test_pretrained_encoder_and_decoder_load_from_names(local_pretrained, captions_data, tmp_path):
    """The Flickr8k recipe's path (``name`` entries with model.pretrained): weights, image processor and tokenizer
    come from the checkpoints; the decoder's tied output embeddings are untied so best weights restore exactly."""
    from safetensors.torch import load_file

    from hf_tasks.train import train

    config = (f"{{encoder: {{name: {local_pretrained / 'vit'}}}, decoder: {{name: {local_pretrained / 'gpt2'}}},"
              " tokenizer: {max_length: 12}, generation: {num_beams: 2, max_new_tokens: 6}}")
    out = tmp_path / "run"
    train(load_config(None, ["--task", "captioning", "--data.dataset", str(captions_data), "--output-dir", str(out),
                             "--batch-size", "8", "--max-steps", "1", "--model.name", "vit-gpt2",
                             "--model.config", config]))
    saved = load_file(str(out / "model.safetensors"))
    pretrained_embeddings = load_file(str(local_pretrained / "gpt2" / "model.safetensors"))["transformer.wte.weight"]
    assert "decoder.lm_head.weight" in saved and saved["decoder.transformer.wte.weight"].shape == \
        pretrained_embeddings.shape
    tokenizer_config = read_json(out / "tokenizer_config.json")
    assert tokenizer_config["pad_token"] == "<|endoftext|>" and tokenizer_config["model_max_length"] == 12
    assert read_json(out / "generation_config.json")["num_beams"] == 2


def test_named_encoder_and_decoder_bring_their_weights_untied(local_pretrained, captions_data):
    """The captioner built from Hub-style names holds the pretrained ViT's and GPT-2's weights; its output layer
    starts as a copy of GPT-2's (tied) input embeddings but is a tensor of its own."""
    from transformers import GPT2LMHeadModel, ViTModel

    from hf_tasks.registry import get_task

    config = f"{{encoder: {{name: {local_pretrained / 'vit'}}}, decoder: {{name: {local_pretrained / 'gpt2'}}}}}"
    cfg = load_config(None, ["--task", "captioning", "--data.dataset", str(captions_data), "--model.name",
                             "vit-gpt2", "--model.config", config])
    spec = get_task("captioning")
    model = spec.build_model(cfg, spec.load_data(cfg)).model
    vit, gpt2 = ViTModel.from_pretrained(local_pretrained / "vit"), \
        GPT2LMHeadModel.from_pretrained(local_pretrained / "gpt2")
    for part, reference in (("encoder", vit), ("decoder", gpt2)):
        state = getattr(model, part).state_dict()  # the decoder adds new cross-attention layers
        assert reference.state_dict().keys() <= state.keys()
        for key, value in reference.state_dict().items():
            assert torch.equal(state[key], value), f"{part}.{key}"
    embeddings, output = model.decoder.get_input_embeddings().weight, model.decoder.get_output_embeddings().weight
    wte = gpt2.get_input_embeddings().weight.detach().clone()
    assert torch.equal(output, wte) and output.data_ptr() != embeddings.data_ptr()
    with torch.no_grad():
        output.add_(1.0)
    assert torch.equal(embeddings, wte)
