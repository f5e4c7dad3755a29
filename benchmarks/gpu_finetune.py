"""GPU fine-tuning throughput and model FLOPs utilisation (issue 8): ViT-B/16 and ResNet-50 at 224 px, bf16 autocast.

For each model (transformers ``ViTForImageClassification`` / ``ResNetForImageClassification`` from their default
configs — ViT-B/16 and ResNet-50 — randomly initialised, nothing downloaded):

- ours: ``hf_tasks.engine.loop.train`` (``mixed_precision: bf16``) on a generated 224-px shapes classification set, data
  decoded and preprocessed by our ``ClassificationDataset`` in ``--workers`` dataloader workers;
- reference: a bare PyTorch loop on one synthetic on-device batch (``torch.autocast(bf16)``, AdamW, clip at 1.0) —
  the compute-only ceiling, with no data loading at all.

images/s is steady state: every optimizer step is timestamped (after a device synchronise) and the first
``--warmup-steps`` are left out. MFU = 3 x forward FLOPs per image x images/s / peak dense bf16 FLOPS, forward FLOPs
counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls/convolutions; 3x = forward + backward); peak from
``PEAK_BF16_TFLOPS`` by GPU name, "n/a" for a GPU not in it. Each (model, side) runs in a fresh subprocess, the order
alternated over ``--repeats`` (``benchmarks/interleave.py``). Then YOLOv8n: ``benchmarks/yolo_parity.py`` (our loop
vs ultralytics' own trainer) on the same device.

Without a GPU it still runs, on the CPU with a tiny batch and a few steps, and says so: those are CPU numbers, not
the GPU benchmark.

    python benchmarks/gpu_finetune.py [--batch 128] [--steps 40] [--repeats 3] [--yolo-epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.interleave import child_env, emit, machine, median, run_alternating, step_clock  # noqa: E402

MODELS = {"vit_b16": {"model_type": "vit"}, "resnet50": {"model_type": "resnet"}}  # the configs' defaults
# dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets; first match on the device name wins
PEAK_BF16_TFLOPS = ((("H100", "PCIe"), 756.5), (("H100",), 989.4), (("H200",), 989.4), (("A100",), 312.0))
NUM_LABELS = 4
NO_GPU = "no GPU: CPU numbers, not the GPU benchmark"


def peak_flops(device_name: str) -> float | None:
    for words, tflops in PEAK_BF16_TFLOPS:
        if all(word in device_name for word in words):
            return tflops * 1e12
    return None


def build_model(kind: str):
    from transformers import AutoConfig, AutoModelForImageClassification

    return AutoModelForImageClassification.from_config(AutoConfig.for_model(**MODELS[kind], num_labels=NUM_LABELS))


def forward_flops_per_image(model, image_size: int, device) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    images = torch.randn(2, 3, image_size, image_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixel_values=images)
    return counter.get_total_flops() / 2


def device_clock(device) -> list[float]:
    import torch

    return step_clock(torch.cuda.synchronize if device.type == "cuda" else None)


def train_reference(args, device) -> list[float]:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    model = build_model(args.model).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, NUM_LABELS, (args.batch,), device=device)
    stamps = device_clock(device)
    for _ in range(args.steps):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(pixel_values=images).logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return stamps


def build_data(work: Path, args) -> Path:
    from dataset_scripts.cli import main

    images = args.steps * args.batch + 8
    out = work / f"shapes_cls_{args.image_size}_{images}"
    if not (out / "dataset_dict.json").is_file():
        main(["build-dataset", "shapes", "--task", "classification", "--num-images", str(images), "--image-size",
              str(args.image_size), "--val-fraction", "0", "--test-fraction", "0", "--seed", "0", "--out", str(out)])
    return out


def train_ours(args, device) -> list[float]:
    from hf_tasks.registry import load_config
    from hf_tasks.train import train

    work = Path(args.work)
    cfg = load_config(None, [
        "--task", "classification", "--data.dataset", str(build_data(work, args)), "--overwrite",
        "--output-dir", str(work / f"ours_{args.model}_{args.repeat}"), "--model.name", args.model,
        "--model.pretrained", "false", "--model.config", json.dumps(MODELS[args.model]),
        "--data.image_size", str(args.image_size), "--data.num_workers", str(args.workers),
        "--batch-size", str(args.batch), "--epochs", "1", "--max-steps", str(args.steps), "--mixed-precision",
        "bf16", "--data.eval_split", "null", "--data.test_split", "null", "--optim.lr", str(args.lr),
        "--optim.weight_decay", "0.01", "--optim.scheduler", "constant", "--seed", str(args.seed)])
    stamps = device_clock(device)
    train(cfg)
    return stamps


def child(args) -> None:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()["cpu"]
    stamps = (train_ours if args.child == "ours" else train_reference)(args, device)
    window = stamps[args.steps - 1] - stamps[args.warmup_steps - 1]
    images_per_s = (args.steps - args.warmup_steps) * args.batch / window
    flops = forward_flops_per_image(build_model(args.model).to(device).eval(), args.image_size, device)
    peak = peak_flops(name) if device.type == "cuda" else None
    emit({"model": args.model, "side": args.child, "repeat": args.repeat, "device": name,
          "images_per_s": round(images_per_s, 2), "forward_gflops_per_image": round(flops / 1e9, 2),
          "mfu": None if peak is None else round(3 * flops * images_per_s / peak, 4),
          "peak_bf16_tflops": None if peak is None else peak / 1e12})


def yolo(args, gpu: bool) -> dict:
    """Our loop vs ultralytics' trainer, YOLOv8n epoch time, on this device (``benchmarks/yolo_parity.py``)."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "yolo_parity.py"), "--work", str(Path(args.work) / "yolo"),
           "--device", "cuda" if gpu else "cpu", "--epochs", str(args.yolo_epochs),
           "--repeats", str(args.repeats), "--close-mosaic", str(max(1, args.yolo_epochs // 3))]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"benchmark": "yolo_parity"')]
    if proc.returncode or not lines:
        raise RuntimeError(f"yolo_parity failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for model in MODELS:
        by_side = {side: [r for r in runs if r["model"] == model and r["side"] == side]
                   for side in ("ours", "reference")}
        ours, ref = (median([r["images_per_s"] for r in by_side[s]]) for s in ("ours", "reference"))
        mfus = {s: [r["mfu"] for r in by_side[s]] for s in by_side}
        rows.append({"model": model, "ours_images_per_s": ours, "reference_images_per_s": ref,
                     "ratio": round(ours / ref, 3),
                     "forward_gflops_per_image": by_side["ours"][0]["forward_gflops_per_image"],
                     "ours_mfu": median(mfus["ours"]) if None not in mfus["ours"] else None,
                     "reference_mfu": median(mfus["reference"]) if None not in mfus["reference"] else None,
                     "each_ours": [r["images_per_s"] for r in by_side["ours"]],
                     "each_reference": [r["images_per_s"] for r in by_side["reference"]]})
    return rows


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--batch", type=int, help="default: 128 on a GPU, 2 on the CPU")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: 40 on a GPU, 4 on the CPU)")
    parser.add_argument("--warmup-steps", type=int, help="steps left out of the timing (default: 10 / 1)")
    parser.add_argument("--repeats", type=int, help="pairs of runs per model (default: 3 on a GPU, 1 on the CPU)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="our dataloader workers")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--yolo-epochs", type=int, help="default: 10 on a GPU, 2 on the CPU; 0 skips it")
    parser.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    import torch

    args = parse_args()
    gpu = torch.cuda.is_available()
    for key, on_gpu, on_cpu in (("batch", 128, 2), ("steps", 40, 4), ("warmup_steps", 10, 1), ("repeats", 3, 1),
                                ("yolo_epochs", 10, 2)):
        if getattr(args, key) is None:
            setattr(args, key, on_gpu if gpu else on_cpu)
    if args.child:
        child(args)
        return
    if not gpu:
        print(NO_GPU, flush=True)
    args.work = args.work or tempfile.mkdtemp(prefix="bench_gpu_finetune_")
    env = child_env(min(8, os.cpu_count() or 1), cpu_only=False)
    passthrough = ["--batch", str(args.batch), "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps),
                   "--image-size", str(args.image_size), "--workers", str(args.workers), "--work", args.work]
    runs = []
    for model in MODELS:
        runs += run_alternating(__file__, [*passthrough, "--model", model], ("ours", "reference"), args.repeats, env,
                                Path(args.work) / "logs", tag=f"{model}_")
    summary = {"benchmark": "gpu_finetune", "gpu": gpu, "device": runs[0]["device"], "batch": args.batch,
               "image_size": args.image_size, "steps": args.steps, "warmup_steps": args.warmup_steps,
               "models": summarise(runs), **machine()}
    if args.yolo_epochs:
        summary["yolov8n"] = yolo(args, gpu)
    if not gpu:
        summary["note"] = NO_GPU
    print(json.dumps(summary))
    if not gpu:
        print(NO_GPU)


if __name__ == "__main__":
    main()
