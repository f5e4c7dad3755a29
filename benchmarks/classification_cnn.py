"""Time-to-accuracy of the from-scratch CNN on a generated two-class image folder (issue: >= 0.95 in < 2 min).

Runs the user's commands as subprocesses and times them with a wall clock:
  1. write a raw class-per-folder tree of circles and squares (150 per class, 64x64, PNG),
  2. `hf-tasks build-dataset image_folder` (stratified 80/10/10 split),
  3. `hf-tasks train --recipe shapes_cnn` (25 epochs, CPU), which evaluates on the test split.
Prints one JSON line; `--append` adds a row to benchmarks/results.jsonl.

    python benchmarks/classification_cnn.py [--work DIR] [--per-class 150]
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


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="working folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--per-class", type=int, default=150)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_cnn_"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    sys.path.insert(0, str(REPO))
    from dataset_scripts.shapes import write_image_folder

    started = time.perf_counter()
    write_image_folder(work / "raw", classes=["circle", "square"], per_class=args.per_class, image_size=64, seed=1)
    generate_s = time.perf_counter() - started
    cli = [sys.executable, "-m", "hf_tasks"]
    build_s = timed([*cli, "build-dataset", "image_folder", "--src", str(work / "raw"), "--out", str(work / "ds")],
                    env)
    train_s = timed([*cli, "train", "--recipe", "shapes_cnn", "--data.dataset", str(work / "ds"), "--output-dir",
                     str(work / "out"), "--overwrite"], env)
    results = json.loads((work / "out" / "results.json").read_text())
    row = {"benchmark": "classification_cnn_time_to_accuracy", "images": 2 * args.per_class,
           "test_accuracy": results["test_accuracy"], "test_images": results["test_num_samples"],
           "epochs": results["train_epochs"], "generate_s": round(generate_s, 1), "build_s": round(build_s, 1),
           "train_command_s": round(train_s, 1), "train_loop_s": results["train_runtime_s"],
           "total_s": round(generate_s + build_s + train_s, 1), "cpus": os.cpu_count(),
           "machine": platform.processor() or platform.machine()}
    print(json.dumps(row))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
