"""Three detector families on the same shapes images with the same budget: YOLOv8n (ultralytics), Faster R-CNN
MobileNetV3 (torchvision) and a tiny RT-DETRv2 (transformers), all from scratch on the CPU (issue 18).

Runs the user's commands as subprocesses:
  1. `hf-tasks build-dataset shapes --task detection --num-images 480 --image-size 128 --val-fraction 0.1667
     --test-fraction 0.1667 --seed 0` (the demo's set: 320 train / 80 validation / 80 test images),
  2. for each recipe, `hf-tasks train --recipe R --data.dataset D --data.test_split test --epochs E`: evaluation on
     validation after every epoch, the best epoch's weights scored on the test split by the same ``coco_map``.
Prints one markdown row per family (test mAP50-95, mAP50, AR@100, training seconds per epoch, parameters) and one
JSON line with everything and the library versions. The goal is test mAP50 >= 0.5 for each.

    python benchmarks/detection_families.py [--work DIR] [--epochs 15] [--recipes shapes_yolov8n,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "YOLO_OFFLINE": "1"}
RECIPES = ("shapes_yolov8n", "shapes_fasterrcnn", "shapes_rtdetr")
BUILD = ["shapes", "--task", "detection", "--num-images", "480", "--image-size", "128", "--val-fraction", "0.1667",
         "--test-fraction", "0.1667", "--seed", "0"]


def run(cmd: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as handle:
        subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def parameters(folder: Path) -> int:
    from safetensors import safe_open

    import math

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())  # noqa: SIM118


def family_row(recipe: str, out: Path, command_s: float) -> dict:
    results = json.loads((out / "results.json").read_text())
    history = json.loads((out / "log_history.json").read_text())
    evals = [h for h in history if "eval_map_50" in h]
    return {"recipe": recipe, "test_map": results["test_map"], "test_map_50": results["test_map_50"],
            "test_mar_100": results["test_mar_100"], "epochs": results["train_epochs"],
            "train_s_per_epoch": round(results["train_runtime_s"] / max(results["train_epochs"], 1), 1),
            "command_s": round(command_s, 1), "parameters": parameters(out),
            "val_map_50_by_epoch": [round(h["eval_map_50"], 3) for h in evals],
            "reached_map50_0.5": results["test_map_50"] >= 0.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="working folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_families_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "hf_tasks"]
    data = work / "shapes_det"
    if not data.is_dir():
        run([*cli, "build-dataset", *BUILD, "--out", str(data)], env, work / "build.log")
    rows = []
    for recipe in args.recipes.split(","):
        out = work / recipe
        seconds = run([*cli, "train", "--recipe", recipe, "--data.dataset", str(data), "--output-dir", str(out),
                       "--data.test_split", "test", "--epochs", str(args.epochs), "--overwrite"], env,
                      work / f"{recipe}.log")
        rows.append(family_row(recipe, out, seconds))
        row = rows[-1]
        print(f"| {recipe} | {row['test_map']:.3f} | {row['test_map_50']:.3f} | {row['test_mar_100']:.3f} | "
              f"{row['train_s_per_epoch']} | {row['parameters'] / 1e6:.2f} M |", flush=True)
    versions = {name: metadata.version(name) for name in ("torch", "torchvision", "transformers", "ultralytics",
                                                          "accelerate", "faster-coco-eval")}
    print(json.dumps({"benchmark": "detection_families_shapes", "rows": rows, "versions": versions,
                      "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine()}))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
