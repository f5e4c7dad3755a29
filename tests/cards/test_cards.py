"""Model cards: parse with huggingface_hub, model-index equals results.json, the usage snippet runs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from hf_tasks.registry import load_config
from tests.helpers import read_json, subprocess_env


@pytest.fixture(scope="module")
def trained_cnn(shapes_classification, tmp_path_factory):
    from hf_tasks.train import train

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


def test_card_code_names_no_task():
    """The generic card code takes everything of a task from its spec's ``card``: no task name appears in it."""
    from pathlib import Path

    import hf_tasks.cards
    from hf_tasks.registry import builtin_tasks

    sources = {path.name: path.read_text() for path in Path(hf_tasks.cards.__file__).parent.glob("*.py")}
    for task in builtin_tasks():
        for quote in ('"', "'"):
            assert not [name for name, text in sources.items() if f"{quote}{task}{quote}" in text], task


def test_curves_show_the_main_metric_and_the_headline_numbers(tmp_path):
    from types import SimpleNamespace

    from hf_tasks.cards.render import curve_metrics, plot_curves

    spec = SimpleNamespace(main_metric="score", headline=(("test_score", "score"), ("test_loss", "loss"),
                                                          ("test_other", "other metric"), ("test_num_samples", "n")))
    metrics = curve_metrics(spec)
    assert metrics == [("eval_score", "score"), ("eval_other", "other metric"), ("eval_num_samples", "n")]
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "eval_loss": 1.5, "eval_score": 0.5, "eval_other": 0.25,
                                           "eval_num_samples": 30}]
    plot_curves(history, tmp_path / "curves.png", metrics)
    assert (tmp_path / "curves.png").is_file()


def test_classification_card_reads_the_comparison_of_its_run_folder(tmp_path):
    import json

    from hf_tasks.config import TrainConfig
    from hf_tasks.tasks.classification.card import CARD

    cfg, results = TrainConfig(), {"test_accuracy": 0.75, "label_names": ["a", "b"]}
    assert CARD.context(cfg, results, None)["comparison"] is None
    assert CARD.context(cfg, results, tmp_path)["comparison"] is None
    rows = [{"model": "base", "role": "pretrained", "accuracy": 0.5, "macro_f1": 0.4, "num_samples": 9}]
    (tmp_path / "comparison.json").write_text(json.dumps({"split": "test", "label_map": None, "rows": rows}))
    section = CARD.context(cfg, results, tmp_path)["comparison"]
    assert section["split"] == "test" and "| base | pretrained | 0.5000 | 0.4000 | 9 |" in section["table"]
    assert ("accuracy", "0.7500") in CARD.context(cfg, results, None)["headline"]
