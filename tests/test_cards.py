"""Model cards: parse with huggingface_hub, model-index equals results.json, the usage snippet runs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from hf_tasks.config import load_config
from tests.helpers import read_json, subprocess_env


@pytest.fixture(scope="module")
def trained_cnn(shapes_classification, tmp_path_factory):
    from hf_tasks.engine.loop import train

    out = tmp_path_factory.mktemp("card") / "shapes_cnn"
    train(load_config(None, ["--data.dataset", str(shapes_classification), "--output-dir", str(out),
                             "--epochs", "2", "--batch-size", "8", "--data.image_size", "32",
                             "--model.config", "{hidden_sizes: [8, 16], convs_per_stage: 1}"]))
    return out


def test_card_metadata_round_trips_through_the_hub_parser(trained_cnn):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = ModelCard.load(trained_cnn / "README.md")
    results = read_json(trained_cnn / "results.json")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "image-classification" and "hf-tasks" in data["tags"]
    assert data["license"] == "other"  # the default until the user names one (hub_license)
    _, evals = model_index_to_eval_results(data["model-index"])
    by_metric = {e.metric_type: e for e in evals}
    assert by_metric["accuracy"].metric_value == results["test_accuracy"]
    assert by_metric["f1"].metric_value == results["test_macro_f1"]
    assert all(e.dataset_split == "test" and e.task_type == "image-classification" for e in evals)
    assert f"| accuracy | {results['test_accuracy']:.4f} |" in card.text
    for name in results["label_names"]:
        assert f"| {name} |" in card.text
    assert "![training curves](training_curves.png)" in card.text and (trained_cnn / "training_curves.png").is_file()
    assert "| `optim.lr` | `0.001` |" in card.text


def test_card_usage_snippet_runs(trained_cnn, tmp_path):
    from PIL import Image

    text = (trained_cnn / "README.md").read_text()
    snippet = re.search(r"## Usage\n\n```python\n(.*?)```", text, re.S).group(1)
    Image.new("RGB", (40, 40), "red").save(tmp_path / "image.jpg")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels = set(read_json(trained_cnn / "results.json")["label_names"])
    assert any(f"'label': '{name}'" in proc.stdout for name in labels), proc.stdout


def test_card_command_rerenders_with_a_comparison(trained_cnn, capsys):
    import json

    from hf_tasks.cli import main

    comparison = {"dataset": "d", "split": "test", "label_map": "imagenet-cats-dogs",
                  "rows": [{"model": "base", "role": "pretrained", "accuracy": 0.5, "macro_f1": 0.4, "num_samples": 9},
                           {"model": "tuned", "role": "fine-tuned", "accuracy": 0.9, "macro_f1": 0.8,
                            "num_samples": 9}]}
    (trained_cnn / "comparison.json").write_text(json.dumps(comparison))
    assert main(["card", str(trained_cnn), "--model-id", "user/shapes-cnn"]) == 0
    text = (trained_cnn / "README.md").read_text()
    assert "## Before and after fine-tuning" in text and "| tuned | fine-tuned | 0.9000 | 0.8000 | 9 |" in text
    assert 'pipeline("image-classification", model="user/shapes-cnn")' in text
    (trained_cnn / "comparison.json").unlink()


def test_card_of_an_unfinished_folder_is_a_clear_error(tmp_path, capsys):
    from hf_tasks.cli import main

    assert main(["card", str(tmp_path)]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
