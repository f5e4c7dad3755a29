"""Classification end to end: every model family trains, saves safetensors, and loads back the documented ways."""

from __future__ import annotations

import json

import pytest
import torch

from hf_tasks.cli import main as cli
from hf_tasks.registry import load_config
from tests.helpers import build_dataset, read_json

TINY_VIT = ["--model.name", "vit-tiny", "--model.pretrained", "false", "--model.config",
            "{model_type: vit, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32,"
            " image_size: 32, patch_size: 8}"]
TINY_TIMM = ["--model.name", "timm/test_resnet", "--model.pretrained", "false", "--data.image_size", "32"]


@pytest.fixture(scope="module")
def two_class_folder(tmp_path_factory):
    """A raw class-per-folder tree of circles and squares, built into a dataset, plus held-out images."""
    from dataset_scripts.shapes import write_image_folder

    root = tmp_path_factory.mktemp("two")
    write_image_folder(root / "raw", classes=["circle", "square"], per_class=150, image_size=64, seed=1)
    write_image_folder(root / "held_out", classes=["circle", "square"], per_class=10, image_size=64, seed=99)
    build_dataset(["image_folder", "--src", str(root / "raw"), "--out", str(root / "ds"), "--seed", "0"])
    return root


def _train(*overrides: str, recipe: str | None = None) -> dict:
    from hf_tasks.train import train

    return train(load_config(recipe, list(overrides)))


def test_small_cnn_learns_distinct_classes_and_pipeline_predicts(two_class_folder, tmp_path):
    """The acceptance bar: >= 0.95 test accuracy from scratch; the saved model reloads and `pipeline` predicts."""
    from PIL import Image
    from transformers import pipeline

    import hf_tasks.models  # noqa: F401  registers small_cnn with the auto classes

    out = tmp_path / "cnn"
    results = _train("--data.dataset", str(two_class_folder / "ds"), "--output-dir", str(out), recipe="shapes_cnn")
    assert results["test_accuracy"] >= 0.95, results

    from transformers import AutoImageProcessor, AutoModelForImageClassification

    classify = pipeline("image-classification", model=str(out))
    model, processor = AutoModelForImageClassification.from_pretrained(out).eval(), AutoImageProcessor.from_pretrained(out)
    held_out = sorted((two_class_folder / "held_out").glob("*/*.png"))  # never seen: another generator seed
    images = [Image.open(path) for path in held_out]
    predicted = [classify(image)[0]["label"] for image in images]
    with torch.no_grad():
        logits = model(**processor(images=[im.convert("RGB") for im in images], return_tensors="pt")).logits
    assert predicted == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    correct = sum(label == path.parent.name for label, path in zip(predicted, held_out))
    assert correct / len(held_out) >= 0.9, list(zip(predicted, held_out))


def test_tiny_vit_round_trip_through_auto_class_and_pipeline(shapes_classification, tmp_path):
    from transformers import AutoModelForImageClassification, pipeline

    out = tmp_path / "vit"
    _train("--data.dataset", str(shapes_classification), "--output-dir", str(out), "--max-steps", "2",
           "--batch-size", "8", *TINY_VIT)
    config = read_json(out / "config.json")
    assert config["model_type"] == "vit" and set(config["id2label"].values()) == {"circle", "square", "triangle",
                                                                                   "star"}
    model = AutoModelForImageClassification.from_pretrained(out).eval()
    pixels = torch.randn(2, 3, 32, 32)
    from safetensors.torch import load_file

    assert torch.equal(model.classifier.weight, load_file(str(out / "model.safetensors"))["classifier.weight"])
    assert model(pixel_values=pixels).logits.shape == (2, 4)
    result = pipeline("image-classification", model=str(out))(_an_image(shapes_classification))
    assert result[0]["label"] in {"circle", "square", "triangle", "star"}


def test_timm_model_loads_in_timm_and_transformers_alike(shapes_classification, tmp_path):
    import timm
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    out = tmp_path / "timm"
    _train("--data.dataset", str(shapes_classification), "--output-dir", str(out), "--max-steps", "2",
           "--batch-size", "8", *TINY_TIMM)
    assert (out / "model.safetensors").is_file() and read_json(out / "config.json")["architecture"] == "test_resnet"
    native = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    wrapped = AutoModelForImageClassification.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    pixels = processor(images=_an_image(shapes_classification), return_tensors="pt")["pixel_values"]
    assert pixels.shape[-1] == 32
    with torch.no_grad():
        assert torch.allclose(native(pixels), wrapped(pixel_values=pixels).logits, atol=1e-6)
    assert native.pretrained_cfg["label_names"] == ["circle", "square", "triangle", "star"]
    assert pipeline("image-classification", model=str(out))(_an_image(shapes_classification))[0]["label"]


def _an_image(dataset_path):
    import datasets

    return datasets.load_from_disk(str(dataset_path))["test"][0]["image"]


def test_evaluate_refuses_a_model_trained_on_other_labels(shapes_classification, two_class_folder, tmp_path,
                                                         capsys):
    out = tmp_path / "vit"
    _train("--data.dataset", str(shapes_classification), "--output-dir", str(out), "--max-steps", "1", *TINY_VIT)
    code = cli(["evaluate", "--model", str(out), "--dataset", str(two_class_folder / "ds")])
    assert code == 2 and "predicts 4 labels" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cats_dogs(tmp_path_factory):
    """A cats-vs-dogs dataset in Kaggle's flat layout (train/cat.0.jpg), faked with shapes."""
    from PIL import Image

    from dataset_scripts.shapes import write_image_folder

    root = tmp_path_factory.mktemp("cvd")
    write_image_folder(root / "shapes", classes=["circle", "square"], per_class=12, image_size=32, seed=5)
    (root / "kaggle" / "train").mkdir(parents=True)
    for shape, animal in (("circle", "cat"), ("square", "dog")):
        for i, png in enumerate(sorted((root / "shapes" / shape).glob("*.png"))):
            Image.open(png).convert("RGB").save(root / "kaggle" / "train" / f"{animal}.{i}.jpg")
    build_dataset(["cats_vs_dogs", "--src", str(root / "kaggle"), "--out", str(root / "ds")])
    return root / "ds"


def test_compare_pretrained_with_imagenet_label_map_and_finetuned(cats_dogs, tmp_path, capsys):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    baseline = tmp_path / "imagenet_vit"  # stands in for google/vit-base-patch16-224: 1000 ImageNet classes
    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8, num_labels=1000)
    imagenet = ViTForImageClassification(config)
    with torch.no_grad():  # always "tabby cat" (281): through the label map, always "cat"
        imagenet.classifier.weight.zero_()
        imagenet.classifier.bias.zero_()
        imagenet.classifier.bias[281] = 10.0
    imagenet.save_pretrained(baseline)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(baseline)
    tuned = tmp_path / "tuned"
    _train("--data.dataset", str(cats_dogs), "--output-dir", str(tuned), "--max-steps", "2", *TINY_VIT)

    code = cli(["compare", "--dataset", str(cats_dogs), "--baseline", str(baseline), "--label-map",
                "imagenet-cats-dogs", "--model", str(tuned)])
    assert code == 0
    table = capsys.readouterr().out
    assert "| pretrained, label map imagenet-cats-dogs |" in table and "| fine-tuned |" in table
    report = read_json(tuned / "comparison.json")
    assert [row["role"] for row in report["rows"]] == ["pretrained, label map imagenet-cats-dogs", "fine-tuned"]
    truth, predicted = plain_predictions(tuned, cats_dogs)
    cats = truth.count(0) / len(truth)
    assert 0 < cats < 1 and report["rows"][0]["accuracy"] == pytest.approx(cats)
    tuned_accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
    assert report["rows"][1]["accuracy"] == pytest.approx(tuned_accuracy)
    assert all(row["num_samples"] == len(truth) for row in report["rows"])

    # the same comparison on 2 processes, each evaluating its share of the test split
    from tests.helpers import run_launch

    two = tmp_path / "two.json"
    run_launch(["hf_tasks", "compare", "--dataset", str(cats_dogs), "--baseline", str(baseline), "--label-map",
                "imagenet-cats-dogs", "--model", str(tuned), "--batch-size", "4", "--output", str(two)],
               num_processes=2)
    assert read_json(two)["rows"] == report["rows"]


def plain_predictions(model_dir, dataset) -> tuple[list[int], list[int]]:
    """The test split's labels and a saved classifier's predictions, computed with plain transformers calls."""
    import datasets
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    test = datasets.load_from_disk(str(dataset))["test"]
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    with torch.no_grad():
        logits = model(**processor(images=[row["image"].convert("RGB") for row in test], return_tensors="pt")).logits
    return list(test["label"]), logits.argmax(-1).tolist()


def test_compare_needs_a_label_map_for_foreign_classes(cats_dogs, tmp_path, capsys):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    baseline = tmp_path / "b"
    ViTForImageClassification(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=32, image_size=32, patch_size=8, num_labels=5)
                              ).save_pretrained(baseline)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(baseline)
    assert cli(["compare", "--dataset", str(cats_dogs), "--baseline", str(baseline), "--model", str(baseline)]) == 2
    assert "pass --label-map" in capsys.readouterr().err
    bad_map = tmp_path / "map.json"
    bad_map.write_text(json.dumps({"cat": [0, 1], "dog": [7]}))
    assert cli(["compare", "--dataset", str(cats_dogs), "--baseline", str(baseline), "--label-map", str(bad_map),
                "--model", str(baseline)]) == 2
    assert "7 (for 'dog') is not a class of the baseline model" in capsys.readouterr().err


def test_label_mapped_classifier_sums_class_probabilities():
    from transformers.modeling_outputs import ImageClassifierOutput

    from hf_tasks.tasks.classification.compare import LabelMappedClassifier, resolve_groups

    class Fixed(torch.nn.Module):
        config = type("C", (), {"num_labels": 4, "id2label": {0: "tabby, tabby cat", 1: "Persian cat", 2: "pug",
                                                              3: "car"}})()

        def forward(self, pixel_values):
            # probabilities 0.3 tabby, 0.1 persian, 0.35 pug, 0.25 car: cat has 0.4 > dog 0.35
            return ImageClassifierOutput(logits=torch.tensor([[0.3, 0.1, 0.35, 0.25]]).log())

    groups = resolve_groups({"cat": ["tabby", "persian cat"], "dog": [2]}, ["cat", "dog"], Fixed.config)
    assert groups == [[0, 1], [2]]
    logits = LabelMappedClassifier(Fixed(), groups)(torch.zeros(1)).logits
    assert torch.allclose(logits.exp(), torch.tensor([[0.4, 0.35]]))


TINY_RESNET = ["--model.name", "resnet-tiny", "--model.pretrained", "false", "--data.image_size", "32",
               "--model.config", "{model_type: resnet, embedding_size: 8, hidden_sizes: [8, 16], depths: [1, 1]}"]


def test_tiny_transformers_resnet_trains_and_reloads(shapes_classification, tmp_path):
    from transformers import AutoModelForImageClassification

    out = tmp_path / "resnet"
    _train("--data.dataset", str(shapes_classification), "--output-dir", str(out), "--max-steps", "2",
           "--batch-size", "8", *TINY_RESNET)
    model = AutoModelForImageClassification.from_pretrained(out)
    assert type(model).__name__ == "ResNetForImageClassification" and model.config.num_labels == 4


def test_pretrained_checkpoint_gets_a_new_head_and_keeps_its_backbone(shapes_classification, tmp_path):
    """The online path (from_pretrained on an ImageNet checkpoint), exercised on a local 1000-class checkpoint."""
    from safetensors.torch import load_file
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    from hf_tasks.registry import get_task

    source = tmp_path / "imagenet_vit"
    ViTForImageClassification(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=32, image_size=32, patch_size=8, num_labels=1000)
                              ).save_pretrained(source)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(source)
    cfg = load_config(None, ["--data.dataset", str(shapes_classification), "--model.name", str(source),
                             "--model.freeze_backbone", "true"])
    spec = get_task("classification")
    bundle = spec.build_model(cfg, spec.load_data(cfg))
    assert bundle.model.classifier.out_features == 4
    assert bundle.model.config.id2label == {0: "circle", 1: "square", 2: "triangle", 3: "star"}
    original = load_file(str(source / "model.safetensors"))
    state = bundle.model.state_dict()
    assert torch.equal(state["vit.embeddings.patch_embeddings.projection.weight"],
                       original["vit.embeddings.patch_embeddings.projection.weight"])
    assert [n for n, p in bundle.model.named_parameters() if p.requires_grad] == ["classifier.weight",
                                                                                   "classifier.bias"]


def test_unreachable_hub_model_is_one_clear_error(shapes_classification, tmp_path):
    from hf_tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="'model.name' 'google/vit-base-patch16-224-in21k' could not be loaded"):
        _train("--data.dataset", str(shapes_classification), "--output-dir", str(tmp_path / "o"),
               "--model.name", "google/vit-base-patch16-224-in21k")
