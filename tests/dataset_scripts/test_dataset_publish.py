"""Publishing built datasets: the dataset card, --resize, and push_to_hub through the real client."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest

from tests.helpers import REPO, build_dataset, client_env


def test_published_folder_has_a_card_matching_the_build_report(tmp_path):
    from PIL import Image

    from dataset_scripts.shapes import write_image_folder

    write_image_folder(tmp_path / "raw", classes=["circle", "square"], per_class=10, image_size=32, seed=0)
    (tmp_path / "raw" / "circle" / "empty.png").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(tmp_path / "raw" / "square" / "tiny.jpg")
    build_dataset(["image_folder", "--src", str(tmp_path / "raw"), "--out", str(tmp_path / "ds"), "--skip-bad"])
    text = (tmp_path / "ds" / "README.md").read_text()
    report = json.loads((tmp_path / "ds" / "build_report.json").read_text())
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(tmp_path / "ds" / "README.md")
    assert card.data.task_categories == ["image-classification"] and "hf-tasks" in card.data.tags
    for split, size in report["info"]["num_examples"].items():
        assert f"| {split} | {size} |" in text
    counts = report["info"]["counts"]
    assert f"| 0 | circle | {counts['train']['circle']} | {counts['validation']['circle']} |" in text
    assert "1 input(s) were rejected" in text and "| `circle/empty.png` |" in text
    assert "| `label` | ClassLabel(names=['circle', 'square']) |" in text
    assert "Seed 42" in text


def test_resize_keeps_small_images_and_scales_boxes(tmp_path):
    build_dataset(["shapes", "--task", "detection", "--num-images", "12", "--image-size", "64", "--seed", "1",
                   "--out", str(tmp_path / "full")])
    build_dataset(["shapes", "--task", "detection", "--num-images", "12", "--image-size", "64", "--seed", "1",
                   "--out", str(tmp_path / "half"), "--resize", "32"])
    build_dataset(["shapes", "--task", "detection", "--num-images", "12", "--image-size", "64", "--seed", "1",
                   "--out", str(tmp_path / "same"), "--resize", "64"])
    full, half, same = (datasets.load_from_disk(str(tmp_path / n))["train"] for n in ("full", "half", "same"))
    raw = full.cast_column("image", datasets.Image(decode=False))
    assert [r["image"]["bytes"] for r in same.cast_column("image", datasets.Image(decode=False))] == \
        [r["image"]["bytes"] for r in raw]  # within the limit: original bytes
    for a, b in zip(full, half):
        assert b["image"].size == (32, 32) and (b["width"], b["height"]) == (32, 32)
        for box_a, box_b in zip(a["objects"]["bbox"], b["objects"]["bbox"]):
            assert box_b == pytest.approx([v / 2 for v in box_a], abs=1e-5)
    assert "longer side at most 32" in json.loads((tmp_path / "half" / "build_report.json").read_text())["info"][
        "resize"]


PUSH = """
import sys
from dataset_scripts.cli import main
sys.exit(main(["build-dataset", "shapes", "--task", "classification", "--num-images", "40", "--image-size", "32",
               "--out", sys.argv[1], "--push-to-hub", "user/shapes-ds"]))
"""
LOAD = """
import json
from datasets import load_dataset
from huggingface_hub import DatasetCard
ds = load_dataset("user/shapes-ds")
card = DatasetCard.load("user/shapes-ds", repo_type="dataset")
print(json.dumps({"sizes": {k: len(v) for k, v in ds.items()}, "names": ds["train"].features["label"].names,
                  "card": card.text, "configs": card.data.to_dict().get("configs")}))
"""


def test_push_to_hub_then_load_dataset_over_http(hub, tmp_path):
    env = client_env(hub, tmp_path / "pusher")
    push = subprocess.run([sys.executable, "-c", PUSH, str(tmp_path / "ds")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert push.returncode == 0, push.stderr[-3000:]
    load = subprocess.run([sys.executable, "-c", LOAD], env=client_env(hub, tmp_path / "user"), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert load.returncode == 0, load.stderr[-3000:]
    got = json.loads(load.stdout.strip().splitlines()[-1])
    local = datasets.load_from_disk(str(tmp_path / "ds"))
    assert got["sizes"] == {k: len(v) for k, v in local.items()}
    assert got["names"] == local["train"].features["label"].names
    assert "## Rejected inputs" in got["card"] and got["configs"]
