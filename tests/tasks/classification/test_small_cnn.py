"""SmallCNN as a transformers model: config validation, forward/loss, save -> reload, Auto classes and pipeline."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageClassification, ViTImageProcessor, pipeline
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

import hf_tasks.models
from hf_tasks.models import SmallCNNConfig, SmallCNNForImageClassification

LABELS = ["circle", "square", "triangle"]


def _config(**overrides) -> SmallCNNConfig:
    kwargs = dict(
        hidden_sizes=[8, 16],
        convs_per_stage=1,
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    return SmallCNNConfig(**{**kwargs, **overrides})


@pytest.fixture
def model() -> SmallCNNForImageClassification:
    torch.manual_seed(0)
    return SmallCNNForImageClassification(_config())


@pytest.fixture
def saved_dir(model: SmallCNNForImageClassification, tmp_path: Path) -> Path:
    """A checkpoint folder as training writes it: weights with non-trivial BatchNorm statistics + image processor."""
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32) * 2 + 0.5)  # move the running stats away from their init values
    model.eval()
    model.save_pretrained(tmp_path)
    processor = ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor.save_pretrained(tmp_path)
    return tmp_path


def test_default_config() -> None:
    config = SmallCNNConfig()
    assert config.model_type == "hf_tasks_small_cnn"
    assert config.hidden_sizes == [32, 64, 128] and config.convs_per_stage == 2
    assert config.num_channels == 3 and config.dropout == 0.3 and config.num_labels == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hidden_sizes": []}, "hidden_sizes"),
        ({"hidden_sizes": [8, 0]}, r"hidden_sizes\[1\]"),
        ({"hidden_sizes": [8, 2.5]}, r"hidden_sizes\[1\]"),
        ({"convs_per_stage": 0}, "convs_per_stage"),
        ({"num_channels": 0}, "num_channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"hidden_dropout": 2}, "hidden_dropout"),
        ({"classifier_hidden_size": -1}, "classifier_hidden_size"),
        ({"batch_norm_eps": 0}, "batch_norm_eps"),
    ],
)
def test_invalid_config_raises_value_error_naming_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        _config(**overrides)


def test_single_label_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="num_labels"):
        SmallCNNConfig(num_labels=1)


@pytest.mark.parametrize("size", [(16, 16), (33, 47), (5, 3)])
def test_any_input_size(model: SmallCNNForImageClassification, size: tuple[int, int]) -> None:
    out = model(torch.randn(2, 3, *size))
    assert isinstance(out, ImageClassifierOutputWithNoAttention)
    assert out.logits.shape == (2, len(LABELS)) and out.loss is None


def test_depth_follows_hidden_sizes() -> None:
    model = SmallCNNForImageClassification(_config(hidden_sizes=[4, 8, 16, 32], convs_per_stage=3))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 12 and len(pools) == 4
    assert [c.out_channels for c in convs[::3]] == [4, 8, 16, 32]


def test_loss_is_cross_entropy_and_backprops(model: SmallCNNForImageClassification) -> None:
    pixel_values, labels = torch.randn(4, 3, 24, 24), torch.tensor([0, 1, 2, 1])
    model.eval()  # no dropout, so the loss can be recomputed from the logits
    out = model(pixel_values, labels=labels)
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    out.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_tuple_output_when_return_dict_false(model: SmallCNNForImageClassification) -> None:
    loss, logits = model(torch.randn(2, 3, 16, 16), labels=torch.tensor([0, 1]), return_dict=False)
    assert loss.ndim == 0 and logits.shape == (2, 3)
    (logits_only,) = model(torch.randn(2, 3, 16, 16), return_dict=False)
    assert logits_only.shape == (2, 3)


def test_wrong_channel_count_is_rejected(model: SmallCNNForImageClassification) -> None:
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.randn(2, 1, 16, 16))


def test_optional_dense_layer() -> None:
    model = SmallCNNForImageClassification(_config(classifier_hidden_size=12, hidden_dropout=0.2))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 12), (12, 3)]


def test_init_weights() -> None:
    torch.manual_seed(0)
    model = SmallCNNForImageClassification(_config(hidden_sizes=[64, 64], convs_per_stage=2))
    conv = model.stages[1].layers[0]
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)  # kaiming, fan_out, relu
    bn = model.stages[0].layers[1]
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    assert torch.equal(model.head.classifier.bias, torch.zeros(3))


def test_save_reload_identical_logits(model: SmallCNNForImageClassification, saved_dir: Path) -> None:
    assert (saved_dir / "model.safetensors").is_file()
    reloaded = SmallCNNForImageClassification.from_pretrained(saved_dir)
    reloaded.eval()
    assert reloaded.config.hidden_sizes == [8, 16]
    x = torch.randn(3, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(model(x).logits, reloaded(x).logits)
    for (name, a), (name_b, b) in zip(model.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert name == name_b and torch.equal(a, b), name


def test_auto_classes_load_saved_dir(saved_dir: Path) -> None:
    config = AutoConfig.from_pretrained(saved_dir)
    assert isinstance(config, SmallCNNConfig) and config.id2label[2] == "triangle"
    assert isinstance(AutoModelForImageClassification.from_pretrained(saved_dir), SmallCNNForImageClassification)


def test_registration_is_idempotent(saved_dir: Path) -> None:
    importlib.reload(hf_tasks.models)
    hf_tasks.models.register_auto_classes()
    assert isinstance(AutoModelForImageClassification.from_pretrained(saved_dir), SmallCNNForImageClassification)


def test_pipeline_returns_labels_from_id2label(saved_dir: Path) -> None:
    classifier = pipeline("image-classification", model=str(saved_dir), device="cpu")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    predictions = classifier(image, top_k=3)
    assert sorted(p["label"] for p in predictions) == sorted(LABELS)
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)
