"""Push → load by repo id over HTTP → identical predictions, for captioning and detection's YoloDetector route.

(Detection by `pipeline("object-detection")`, all three families: tests/tasks/detection/test_detection_families.py.
Classification, the push rules, failure half-way and token hygiene are in tests/hub/test_hub.py.) Loading runs in a
fresh process with an empty cache, pointed at the local Hub endpoint, as a user's would.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hf_tasks.registry import load_config
from tests.helpers import REPO, build_dataset, client_env

PREDICT = """
import json, sys
import datasets
import hf_tasks.models  # registers the captioning processor / encoder / decoder
ref, dataset = sys.argv[1], sys.argv[2]
images = [row["image"].convert("RGB") for row in datasets.load_from_disk(dataset)["test"].select(range(3))]
if sys.argv[3] == "captioning":
    from transformers import AutoProcessor, VisionEncoderDecoderModel
    processor = AutoProcessor.from_pretrained(ref)
    model = VisionEncoderDecoderModel.from_pretrained(ref).eval()
    print(json.dumps(processor.batch_decode(model.generate(**processor(images=images)), skip_special_tokens=True)))
else:
    from hf_tasks.models.yolo import YoloDetector
    model = YoloDetector.from_pretrained(ref).eval()
    out = model.predict_images(images, conf=0.001)
    print(json.dumps([{k: [list(map(float, v)) if hasattr(v, "__len__") else float(v) for v in d[k]]
                       for k in ("boxes", "scores", "labels")} for d in out]))
"""


def _predict(ref: str, dataset, task: str, env) -> list:
    proc = subprocess.run([sys.executable, "-c", PREDICT, ref, str(dataset), task], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from hf_tasks.train import train
    from tests.tasks.captioning.test_captioning import args as caption_args
    from tests.tasks.detection.test_detection import tiny

    root = tmp_path_factory.mktemp("task_runs")
    build_dataset(["shapes", "--task", "captioning", "--num-images", "30", "--image-size", "32", "--seed", "0",
                   "--out", str(root / "cap_ds")])
    build_dataset(["shapes", "--task", "detection", "--num-images", "30", "--image-size", "64", "--seed", "0",
                   "--out", str(root / "det_ds")])
    train(load_config(None, caption_args(root / "cap_ds", root / "cap", "cnn_lstm", "--max-steps", "2")))
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    train(load_config(None, ["--data.dataset", str(root / "det_ds"), "--output-dir", str(root / "det"),
                             *tiny("hyp: {close_mosaic: 0}"), "--max-steps", "2"]))
    return root


@pytest.mark.parametrize("task, run, repo", [("captioning", "cap", "user/shapes-captioner"),
                                             ("detection", "det", "user/shapes-yolo")])
def test_push_then_load_by_repo_id_predicts_the_same(runs, hub, tmp_path, task, run, repo):
    from huggingface_hub import HfApi

    from hf_tasks.hub.push import push_run

    push_run(runs / run, repo)
    files = HfApi(endpoint=hub.url).list_repo_files(repo)
    assert "model.safetensors" in files and "README.md" in files
    assert not any(f.startswith("checkpoints/") or f.endswith((".bin", ".pkl", ".pt")) for f in files)
    dataset = runs / ("cap_ds" if task == "captioning" else "det_ds")
    local = _predict(str(runs / run), dataset, task, client_env(hub, tmp_path / "local"))
    remote = _predict(repo, dataset, task, client_env(hub, tmp_path / "fresh_cache"))
    assert remote == local and len(local) == 3
    _run_card_snippet(runs / run / "README.md", repo, client_env(hub, tmp_path / "snippet_cache"), tmp_path)


def _run_card_snippet(card_path, repo: str, env, workdir) -> None:
    """The card's usage snippet, exactly as pushed (push_run renders it for the repo id), against the Hub repo."""
    import re

    from PIL import Image

    text = card_path.read_text()
    snippet = re.search(r"## Usage\n.*?```python\n(.*?)```", text, re.S).group(1)
    assert f'"{repo}"' in snippet
    Image.new("RGB", (64, 64), "white").save(workdir / "image.jpg")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_train_push_to_hub_publishes_the_finished_run(shapes_classification, hub, tmp_path):
    from huggingface_hub import HfApi

    from hf_tasks.train import train

    train(load_config(None, ["--data.dataset", str(shapes_classification), "--output-dir", str(tmp_path / "run"),
                             "--max-steps", "2", "--batch-size", "8", "--data.image_size", "32",
                             "--model.config", "{hidden_sizes: [8], convs_per_stage: 1}",
                             "--push-to-hub", "user/pushed-by-train", "--hub-revision", "main"]))
    api = HfApi(endpoint=hub.url)
    files = api.list_repo_files("user/pushed-by-train")
    assert {"model.safetensors", "config.json", "README.md", "results.json"} <= set(files)
    assert api.model_info("user/pushed-by-train").private
    assert 'model="user/pushed-by-train"' in (tmp_path / "run" / "README.md").read_text()


def test_push_to_hub_needs_a_repo_id():
    from hf_tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="'push_to_hub' must be a repo id"):
        load_config(None, ["--data.dataset", "d", "--push-to-hub", "just-a-name"])
