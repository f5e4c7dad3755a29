"""Training throughput (images/s) of our accelerate loop vs transformers' ``Trainer`` on the same tiny ViT (issue 8).

Both sides train ``ViTForImageClassification`` built by our classification task from the same ``ViTConfig`` (no
download; the same seed set before it is built) on the same generated shapes classification set (``hf-tasks
build-dataset shapes --task classification``), with the same samples: our ``ClassificationDataset`` (the model's
``ViTImageProcessor``, no augmentation) feeds both, so only the training loops differ. Same batch size, image size,
number of optimizer steps, fp32 on the CPU, one process, the same torch thread count, AdamW (``optim=adamw_torch``
for the Trainer: the same ``torch.optim.AdamW`` implementation ours uses; its default ``adamw_torch_fused`` is a
``--trainer-optim``), linear schedule without warmup, gradient clipping at 1.0, a loss log every 10 steps, no
evaluation, no saving during training, no dataloader workers.

Steady-state throughput: a global optimizer step hook (``torch.optim.optimizer.register_optimizer_step_post_hook``)
timestamps every optimizer step on both sides; images/s = (steps - warmup) x batch / (t[last] - t[warmup]). Start-up
(imports, model build, the first ``--warmup-steps`` steps) and everything after the last step (our end-of-run
checkpoint, final save) are outside the window; the train split is larger than steps x batch, so no epoch boundary
(and no per-epoch checkpoint of ours) falls inside it. Each side runs in its own fresh subprocess, the order
alternated (ours, trainer, trainer, ours, …; ``benchmarks/interleave.py``).

    python benchmarks/trainer_throughput.py [--repeats 3] [--steps 150] [--batch 32] [--image-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.interleave import child_env, emit, machine, median, run_alternating, step_clock  # noqa: E402

VIT = {"model_type": "vit", "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
       "intermediate_size": 256, "patch_size": 8}


def build_data(work: Path, args) -> Path:
    from dataset_scripts.cli import main

    out = work / f"shapes_cls_{args.image_size}_{args.num_images}"
    if not (out / "dataset_dict.json").is_file():
        main(["build-dataset", "shapes", "--task", "classification", "--num-images", str(args.num_images),
              "--image-size", str(args.image_size), "--seed", "0", "--out", str(out)])
    import datasets

    train = len(datasets.load_from_disk(str(out))["train"])
    if train < args.steps * args.batch:  # an epoch boundary (and our per-epoch checkpoint) would fall in the window
        raise SystemExit(f"--num-images: the train split has {train} images < steps x batch; generate more")
    return out


def our_config(dataset: Path, out: Path, args):
    from hf_tasks.registry import load_config

    return load_config(None, [
        "--task", "classification", "--data.dataset", str(dataset), "--output-dir", str(out), "--overwrite",
        "--model.name", "vit", "--model.pretrained", "false",
        "--model.config", json.dumps({**VIT, "image_size": args.image_size}),
        "--data.image_size", str(args.image_size), "--batch-size", str(args.batch), "--epochs", "1",
        "--max-steps", str(args.steps), "--data.eval_split", "null", "--data.test_split", "null",
        "--optim.lr", str(args.lr), "--optim.weight_decay", "0.01", "--optim.scheduler", "linear",
        "--optim.max_grad_norm", "1.0", "--log-every", "10", "--seed", str(args.seed)])


def train_ours(dataset: Path, out: Path, args) -> list[float]:
    from hf_tasks.train import train

    stamps = step_clock()
    train(our_config(dataset, out, args))
    return stamps


def train_trainer(dataset: Path, out: Path, args) -> list[float]:
    """transformers' Trainer on the model, processor and samples our task builds from the same config."""
    import torch
    from accelerate.utils import set_seed
    from transformers import Trainer, TrainingArguments

    from hf_tasks.registry import get_task

    cfg = our_config(dataset, out, args)
    spec = get_task("classification")
    set_seed(args.seed)  # as our loop does before building the model: the same initial weights
    data = spec.load_data(cfg)
    bundle = spec.build_model(cfg, data)
    train_set = spec.make_dataset(data.splits["train"], bundle, cfg, data, train=True)

    def collate(samples: list[dict]) -> dict:
        return torch.utils.data.default_collate([{k: s[k] for k in ("pixel_values", "labels")} for s in samples])

    training_args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps, learning_rate=args.lr,
        weight_decay=0.01, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, optim=args.trainer_optim,
        logging_steps=10, eval_strategy="no", save_strategy="no", report_to="none", use_cpu=True, seed=args.seed,
        data_seed=args.seed, dataloader_num_workers=0, dataloader_pin_memory=False, bf16=False, fp16=False)
    stamps = step_clock()
    Trainer(model=bundle.model, args=training_args, train_dataset=train_set, data_collator=collate).train()
    return stamps


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    dataset = build_data(work, args)
    out = work / f"{args.child}_{args.repeat}"
    stamps = (train_ours if args.child == "ours" else train_trainer)(dataset, out, args)
    if len(stamps) != args.steps:
        raise RuntimeError(f"{args.child}: {len(stamps)} optimizer steps, expected {args.steps}")
    window = stamps[-1] - stamps[args.warmup_steps - 1]
    steps = args.steps - args.warmup_steps
    emit({"side": args.child, "repeat": args.repeat, "images_per_s": steps * args.batch / window,
          "window_s": window, "steps_timed": steps, "threads": torch.get_num_threads()})


def summarise(runs: list[dict], args) -> dict:
    pairs = []
    for repeat in sorted({r["repeat"] for r in runs}):
        mine = [r for r in runs if r["repeat"] == repeat]
        ours, theirs = (next(r for r in mine if r["side"] == side) for side in ("ours", "trainer"))
        pairs.append({"repeat": repeat, "first": mine[0]["side"], "ours_images_per_s": round(ours["images_per_s"], 1),
                      "trainer_images_per_s": round(theirs["images_per_s"], 1),
                      "ratio": round(ours["images_per_s"] / theirs["images_per_s"], 3),
                      "other_cpu_s": [ours["other_cpu_s"], theirs["other_cpu_s"]]})
    return {"benchmark": "trainer_throughput", "model": {**VIT, "image_size": args.image_size}, "batch": args.batch,
            "steps": args.steps, "warmup_steps": args.warmup_steps, "threads": args.threads,
            "trainer_optim": args.trainer_optim, "repeats": pairs,
            "median_ours_images_per_s": round(median([p["ours_images_per_s"] for p in pairs]), 1),
            "median_trainer_images_per_s": round(median([p["trainer_images_per_s"] for p in pairs]), 1),
            "median_ratio": round(median([p["ratio"] for p in pairs]), 3), **machine()}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs, order alternated (ABBA…)")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per run")
    parser.add_argument("--warmup-steps", type=int, default=20, help="first steps left out of the timing")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-images", type=int, default=7000, help="generated images (train split >= steps x batch)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=min(8, max(1, (os.cpu_count() or 1) - 1)))
    parser.add_argument("--trainer-optim", default="adamw_torch", help="TrainingArguments.optim for the Trainer")
    parser.add_argument("--child", choices=["ours", "trainer"], help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_trainer_"))
    build_data(work, args)
    runs = run_alternating(__file__, [*sys.argv[1:], "--work", str(work)], ("ours", "trainer"), args.repeats,
                           child_env(args.threads), work / "logs")
    summary = summarise(runs, args)
    print(json.dumps(summary))
    for p in summary["repeats"]:
        print(f"| {p['repeat'] + 1} | {p['first']} | {p['ours_images_per_s']:.1f} | {p['trainer_images_per_s']:.1f} | "
              f"{p['ratio']:.3f} | {p['other_cpu_s'][0]:.0f} / {p['other_cpu_s'][1]:.0f} |")
    print(f"| median | | {summary['median_ours_images_per_s']:.1f} | {summary['median_trainer_images_per_s']:.1f} | "
          f"{summary['median_ratio']:.3f} | |")


if __name__ == "__main__":
    main()
