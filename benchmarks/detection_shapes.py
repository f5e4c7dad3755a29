"""Time-to-mAP of YOLOv8n from scratch on the synthetic shapes detection set (issue: mAP50 >= 0.5 in < 10 min, CPU).

Runs the user's commands as subprocesses and times them with a wall clock:
  1. `hf-tasks build-dataset shapes --task detection --num-images 400 --image-size 128 --val-fraction 0.2
     --test-fraction 0` (320 train / 80 validation images),
  2. `hf-tasks train --recipe shapes_yolov8n` (15 epochs, evaluating mAP on validation after every epoch).
Reports the first epoch whose validation mAP50 reached the target, with the training seconds (``train_runtime_s``
share, evaluation excluded) and the wall-clock seconds of the whole command up to the end. Prints one JSON line.

    python benchmarks/detection_shapes.py [--work DIR] [--epochs 15] [--target 0.5]
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "YOLO_OFFLINE": "1"}


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def first_reaching(history: list[dict], key: str, target: float) -> dict | None:
    return next((h for h in history if h.get(key, -1) >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="working folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--target", type=float, default=0.5, help="validation mAP50 to reach")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_det_"))
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "hf_tasks"]
    build_s = timed([*cli, "build-dataset", "shapes", "--task", "detection", "--num-images", "400", "--image-size",
                     "128", "--val-fraction", "0.2", "--test-fraction", "0", "--seed", "0",
                     "--out", str(work / "ds")], env)
    train_s = timed([*cli, "train", "--recipe", "shapes_yolov8n", "--data.dataset", str(work / "ds"),
                     "--output-dir", str(work / "out"), "--epochs", str(args.epochs), "--overwrite"], env)
    results = json.loads((work / "out" / "results.json").read_text())
    history = json.loads((work / "out" / "log_history.json").read_text())
    evals = [h for h in history if "eval_map_50" in h]
    reached = first_reaching(evals, "eval_map_50", args.target)
    seconds_per_epoch = results["train_runtime_s"] / max(results["train_epochs"], 1)
    row = {"benchmark": "detection_shapes_yolov8n_time_to_map50", "train_images": 320, "val_images": 80,
           "image_size": 128, "epochs": results["train_epochs"], "target_map50": args.target,
           "reached_at_epoch": reached["epoch"] if reached else None,  # epochs completed
           "train_s_to_target": round(seconds_per_epoch * reached["epoch"], 1) if reached else None,
           "final_val_map50": evals[-1]["eval_map_50"], "final_val_map": evals[-1]["eval_map"],
           "best_val_map": results.get("best_eval_map"), "train_loop_s": results["train_runtime_s"],
           "train_command_s": round(train_s, 1), "build_s": round(build_s, 1),
           # wall clock of the command up to the target epoch (epochs take about equally long)
           "wall_s_to_target_est": round(train_s * reached["epoch"] / len(evals), 1) if reached else None,
           "cpus": os.cpu_count(),
           "machine": platform.processor() or platform.machine()}
    row["passed"] = bool(reached) and row["wall_s_to_target_est"] < 600
    print(json.dumps(row))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
