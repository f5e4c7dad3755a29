"""A task from outside the package (``tests/tasks/toy_task.py``, image brightness regression) plugs in through its
``SPEC`` alone: trained by a real ``accelerate launch``, evaluated by ``hf-tasks evaluate``, carded, pushed to the
local Hub and loaded back by repo id, with typed ``model.config`` options, and no project file changed."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import client_env, read_json, run_launch

TASK = "tests.tasks.toy_task"
REPO_ID = "user/toy-brightness"
NUM_IMAGES, SIZE = 24, 16
SPLITS = {"train": 16, "validation": 4, "test": 4}


@pytest.fixture(scope="module")
def brightness_data(tmp_path_factory):
    """24 solid grey-ish 16x16 images, labelled with their mean brightness in [0, 1], as a save_to_disk folder."""
    import numpy as np
    from datasets import Dataset, DatasetDict, Features, Image, Value
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    images, labels = [], []
    for _ in range(NUM_IMAGES):
        colour = rng.uniform(0.1, 0.9) * 255 + rng.normal(0, 8, size=3)  # grey, a little tinted
        pixels = np.clip(colour + rng.integers(-4, 5, size=(SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        images.append(PILImage.fromarray(pixels))
        labels.append(float(pixels.mean() / 255.0))
    features = Features({"image": Image(), "label": Value("float32")})
    full = Dataset.from_dict({"image": images, "label": labels}, features=features)
    splits, start = {}, 0
    for name, size in SPLITS.items():
        splits[name] = full.select(range(start, start + size))
        start += size
    out = tmp_path_factory.mktemp("toy_data") / "brightness"
    DatasetDict(splits).save_to_disk(str(out))
    return out


@pytest.fixture(scope="module")
def trained(brightness_data, tmp_path_factory):
    """One run of the toy task under a real `accelerate launch` subprocess (1 CPU process)."""
    out = tmp_path_factory.mktemp("toy_run") / "run"
    proc = run_launch(["hf_tasks.train", "--task", TASK, "--data.dataset", str(brightness_data),
                       "--output-dir", str(out), "--epochs", "2", "--batch-size", "4", "--lr", "0.05"])
    return out, proc


def test_trains_under_accelerate_launch_and_writes_its_card(trained):
    from huggingface_hub import ModelCard

    out, proc = trained
    assert "Traceback" not in proc.stderr
    results = read_json(out / "results.json")
    assert results["num_processes"] == 1 and results["train_steps"] == 2 * SPLITS["train"] // 4
    mae = results["test_mae"]
    assert isinstance(mae, float) and math.isfinite(mae) and 0 <= mae
    assert results["test_num_samples"] == SPLITS["test"]
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert read_json(out / "config.json")["model_type"] == "hf_tasks_toy_regressor"

    card_path = out / "README.md"
    assert card_path.is_file()
    text = card_path.read_text()
    assert f"| MAE | {mae:.4f} |" in text  # the headline number, as results.json has it
    card = ModelCard.load(card_path)
    assert card.data.eval_results[0].metric_type == "mae" and card.data.eval_results[0].metric_value == mae
    assert "tests.tasks.toy_task" in text  # the usage snippet and the hyperparameters name the task


def test_evaluate_cli_reproduces_the_test_mae(trained, brightness_data, tmp_path):
    from hf_tasks.cli import main

    out, _ = trained
    json_path = tmp_path / "metrics.json"
    assert main(["evaluate", "--task", TASK, "--model", str(out), "--dataset", str(brightness_data),
                 "--split", "test", "--output", str(json_path)]) == 0
    metrics = read_json(json_path)
    results = read_json(out / "results.json")
    assert metrics["test_num_samples"] == SPLITS["test"]
    assert metrics["test_mae"] == pytest.approx(results["test_mae"], rel=1e-5, abs=1e-7)


LOAD_BACK = """
import json, runpy, sys
import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import load_file
from hf_tasks.registry import get_task

repo, batch_file, snippet_file, out = sys.argv[1:5]
spec = get_task("tests.tasks.toy_task")
bundle = spec.load_model(repo)
with torch.no_grad():
    predicted = spec.predict(bundle.model, load_file(batch_file), bundle)
result = {"predictions": predicted["predictions"].tolist(), "weights": hf_hub_download(repo, "model.safetensors"),
          "scale": bundle.model.config.scale}
runpy.run_path(snippet_file)  # the card's usage snippet, as pushed
json.dump(result, open(out, "w"))
"""


def test_push_then_load_by_repo_id_predicts_the_same(trained, brightness_data, hub, tmp_path):
    from huggingface_hub import HfApi
    from PIL import Image
    from safetensors.torch import save_file

    from hf_tasks.config import evaluation_config
    from hf_tasks.hub.push import push_run
    from hf_tasks.registry import get_task

    out, _ = trained
    info = push_run(out, REPO_ID)
    files = set(HfApi(endpoint=hub.url).list_repo_files(REPO_ID))
    assert {"model.safetensors", "config.json", "README.md", "results.json", "train_config.yaml"} <= files
    assert not any(f.startswith("checkpoints/") for f in files)

    # one batch of the test split, predicted by the local run folder through the task's own spec
    spec = get_task(TASK)
    cfg = evaluation_config(TASK, str(brightness_data), "test", 4)
    data = spec.load_data(cfg)
    local = spec.load_model(out)
    batch = spec.collate([spec.make_dataset(data.splits["test"], local, cfg, data, False)[i] for i in range(4)])
    with torch.no_grad():
        expected = spec.predict(local.model, batch, local)["predictions"]

    save_file({"pixel_values": batch["pixel_values"], "labels": batch["labels"]}, tmp_path / "batch.safetensors")
    snippet = re.search(r"## Usage\n\n```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    assert f'"{REPO_ID}"' in snippet  # push_run re-rendered the card for the repo id
    (tmp_path / "snippet.py").write_text(snippet)
    Image.new("RGB", (SIZE, SIZE), (128, 128, 128)).save(tmp_path / "image.jpg")
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-c", LOAD_BACK, REPO_ID, str(tmp_path / "batch.safetensors"),
                           str(tmp_path / "snippet.py"), str(tmp_path / "out.json")], cwd=tmp_path,
                          env=client_env(hub, home), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    loaded = read_json(tmp_path / "out.json")
    assert torch.equal(torch.tensor(loaded["predictions"]), expected)
    assert loaded["scale"] == 1.0
    downloaded = Path(loaded["weights"])
    assert downloaded.is_relative_to(home) and info.oid in downloaded.parts  # over HTTP, at the pushed commit
    assert downloaded.read_bytes() == (out / "model.safetensors").read_bytes()
    assert re.fullmatch(r"-?\d+\.\d+(e-?\d+)?", proc.stdout.strip().splitlines()[-1])  # the snippet printed a number


def test_model_config_options_are_typed_and_typos_name_the_key(brightness_data):
    from hf_tasks.errors import ConfigError
    from hf_tasks.registry import load_config

    common = ["--task", TASK, "--data.dataset", str(brightness_data)]
    cfg = load_config(None, [*common, "--model.config.scale", "2"])
    assert cfg.model.config["scale"] == 2.0 and type(cfg.model.config["scale"]) is float
    assert cfg.model.config["hidden"] == 4
    with pytest.raises(ConfigError, match=re.escape("did you mean 'model.config.scale'")):
        load_config(None, [*common, "--model.config.scael", "2"])
