"""Captioning on the synthetic shapes set: test BLEU-4 (target >= 0.5) and CPU training time (target < 10 min).

Runs the user's commands as subprocesses and times them with a wall clock:
  1. `hf-tasks build-dataset shapes --task captioning --num-images N` (64x64, 3 reference captions per image),
  2. `hf-tasks train --recipe shapes_captioning_vit_gpt2` (ViT encoder + GPT-2 style decoder, from configs),
  3. `hf-tasks train --recipe shapes_captioning_cnn_lstm` (ResNet feature map + LSTM with additive attention);
each training run evaluates its final (best-on-validation) weights on the test split with beam search.
Prints one JSON line per model. On a CPU shared with other jobs, ``OMP_NUM_THREADS=1`` avoids thread
oversubscription (the row records it).

    python benchmarks/captioning_shapes.py [--work DIR] [--num-images 2000] [--models vit_gpt2,cnn_lstm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"vit_gpt2": "shapes_captioning_vit_gpt2", "cnn_lstm": "shapes_captioning_cnn_lstm"}


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    """Wall-clock seconds of one command; its output goes to ``log`` (shown if it fails)."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run(cmd, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{log.read_text()[-4000:]}")
    return time.perf_counter() - started


def row(model: str, command: list[str], seconds: float, results: dict, images: int) -> dict:
    return {"benchmark": "captioning_shapes", "model": model, "test_bleu4": round(results["test_bleu4"], 4),
            "test_bleu1": round(results["test_bleu1"], 4), "train_minutes": round(seconds / 60, 2),
            "train_loop_minutes": round(results["train_runtime_s"] / 60, 2), "epochs": results["train_epochs"],
            "images": images, "test_images": results["test_num_samples"],
            "example": results["test_examples"][0], "command": shlex.join(["hf-tasks", *command[3:]]),
            "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "machine": platform.processor() or platform.machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="working folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--models", default=",".join(RECIPES), help=f"comma list of {', '.join(RECIPES)}")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_captioning_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "hf_tasks"]
    data = work / "shapes_captioning"
    timed([*cli, "build-dataset", "shapes", "--task", "captioning", "--num-images", str(args.num_images),
           "--image-size", "64", "--out", str(data)], env, work / "build.log")
    for model in args.models.split(","):
        out = work / model
        command = [*cli, "train", "--recipe", RECIPES[model], "--data.dataset", str(data), "--output-dir", str(out),
                   "--overwrite"]
        seconds = timed(command, env, work / f"{model}.log")
        results = json.loads((out / "results.json").read_text())
        print(json.dumps(row(model, command, seconds, results, args.num_images)), flush=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
