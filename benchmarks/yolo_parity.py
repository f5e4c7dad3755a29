"""Parity of hf-tasks' detection loop with ultralytics' own ``YOLO.train()`` on the same data (goal: epoch-time
ratio <= 1.1, final mAP50-95 within 0.02).

1. Build (or reuse) the shapes detection set (Arrow) and materialise it once as a YOLO folder + data yaml for
   ultralytics (PNG bytes copied as-is, labels as normalised centre xywh).
2. Train with our loop (``hf_tasks.loop.train``, the ``shapes_yolov8n`` recipe with the overrides below).
3. Train with ``YOLO("yolov8n.yaml").train(...)`` with the same epochs, image size, batch, seed, optimizer, lr,
   weight decay, warmup, close_mosaic, image cache and workers; ``nbs`` = batch so it does not accumulate
   gradients; ``amp``, ``plots`` and ``deterministic`` off (our loop forces no deterministic kernels either);
   integrations off (settings in a temporary ``YOLO_CONFIG_DIR``); no font check. Same CPU threads for both:
   ultralytics' ``select_device`` calls ``torch.set_num_threads(min(8, cpus - 1))``, so ours runs with that count too
   (``--threads``; on a shared 2-core machine 2 threads are also easily slowed 10x by anyone else's job).
4. Time each training epoch (ours: ``train_runtime_s``; ultralytics: its on_train_epoch_start/end callbacks) and
   evaluate BOTH final models with the same evaluator (our predict + ``coco_map`` on the validation split);
   ultralytics' own mAP is printed next to it.

Prints one JSON line.

    python benchmarks/yolo_parity.py [--work DIR] [--epochs 30] [--image-size 128] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")
for _key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_key, "1")


def build_data(work: Path, image_size: int, num_images: int) -> Path:
    from dataset_scripts.cli import main

    out = work / f"shapes_det_{image_size}_{num_images}"
    if not (out / "dataset_dict.json").is_file():
        main(["build-dataset", "shapes", "--task", "detection", "--num-images", str(num_images), "--image-size",
              str(image_size), "--val-fraction", "0.2", "--test-fraction", "0", "--seed", "0", "--out", str(out)])
    return out


def materialise_yolo(dataset: Path, root: Path) -> Path:
    """``root/images/{train,val}/*.png`` + ``root/labels/...txt`` + ``data.yaml`` (no ``download`` key)."""
    import datasets
    import yaml

    from hf_tasks.yolo_data import category_names, coco_to_yolo

    dd = datasets.load_from_disk(str(dataset))
    names = category_names(dd["train"].features)
    for split, folder in (("train", "train"), ("validation", "val")):
        ds = dd[split].cast_column("image", datasets.Image(decode=False))
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        (root / "labels" / folder).mkdir(parents=True, exist_ok=True)
        for i, row in enumerate(ds):
            (root / "images" / folder / f"{i:05d}.png").write_bytes(row["image"]["bytes"])
            boxes, keep = coco_to_yolo(row["objects"]["bbox"], row["width"], row["height"])
            classes = [c for c, k in zip(row["objects"]["category"], keep) if k]
            lines = [f"{c} " + " ".join(f"{v:.6f}" for v in box) for c, box in zip(classes, boxes)]
            (root / "labels" / folder / f"{i:05d}.txt").write_text("\n".join(lines))
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                         "names": dict(enumerate(names))}))
    return data_yaml


def train_ours(dataset: Path, out: Path, args) -> dict:
    import torch

    from hf_tasks.config import load_config
    from hf_tasks.loop import train

    torch.set_num_threads(args.threads)

    cfg = load_config("shapes_yolov8n", [
        "--data.dataset", str(dataset), "--output-dir", str(out), "--overwrite", "--epochs", str(args.epochs),
        "--batch-size", str(args.batch), "--data.image_size", str(args.image_size), "--seed", str(args.seed),
        "--data.num_workers", str(args.workers), "--optim.lr", str(args.lr),
        "--model.config", f"{{hyp: {{close_mosaic: {args.close_mosaic}, cache: {args.cache}}}}}"])
    results = train(cfg)
    return {"epoch_s": results["train_runtime_s"] / max(results["train_epochs"], 1), "folder": out}


class EpochTimer:
    """ultralytics callbacks timing the training part of each epoch (validation excluded, as for ours)."""

    def __init__(self):
        self.started, self.seconds = 0.0, []

    def start(self, trainer) -> None:
        self.started = time.perf_counter()

    def end(self, trainer) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def train_ultralytics(data_yaml: Path, project: Path, args) -> dict:
    from hf_tasks.models.yolo import prepare_ultralytics

    prepare_ultralytics()
    import ultralytics.data.utils as data_utils
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    SETTINGS.update({k: False for k in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard",
                                        "wandb")})
    data_utils.check_font = lambda *a, **k: None  # its dataset check would fetch Arial.ttf
    timer = EpochTimer()
    model = YOLO("yolov8n.yaml")
    model.add_callback("on_train_epoch_start", timer.start)
    model.add_callback("on_train_epoch_end", timer.end)
    warmup_epochs = 0.05 * args.epochs  # our recipe's warmup_ratio
    model.train(data=str(data_yaml), epochs=args.epochs, imgsz=args.image_size, batch=args.batch, seed=args.seed,
                workers=args.workers, device="cpu", optimizer="AdamW", lr0=args.lr, lrf=0.01, momentum=0.9,
                weight_decay=0.0005, warmup_epochs=warmup_epochs, warmup_bias_lr=0.0, nbs=args.batch,
                close_mosaic=args.close_mosaic, amp=False, plots=False, pretrained=False,
                cache=args.cache if args.cache == "ram" else False,
                deterministic=False, project=str(project), name="run", exist_ok=True, verbose=False)
    metrics = model.trainer.metrics
    return {"epoch_s": sum(timer.seconds) / len(timer.seconds),
            "own_map": metrics.get("metrics/mAP50-95(B)"), "own_map_50": metrics.get("metrics/mAP50(B)"),
            "best_pt": Path(model.trainer.best)}


def evaluate_same_way(detector, dataset: Path, batch: int) -> dict:
    """Our predict (NMS conf 0.001, iou 0.7) + coco_map on the validation split, for either model."""
    from hf_tasks.evaluation import evaluate_bundle, evaluation_config
    from hf_tasks.loop import make_accelerator
    from hf_tasks.registry import ModelBundle, get_task
    from hf_tasks.tasks.detection import DetectionSettings

    cfg = evaluation_config("detection", str(dataset), "validation", batch)
    spec = get_task("detection")
    data = spec.load_data(cfg)
    bundle = ModelBundle(detector, DetectionSettings(imgsz=detector.imgsz), list(detector.names))
    metrics = evaluate_bundle(make_accelerator(cfg), spec, bundle, cfg, data, "validation", desc="val")
    return {"map": round(metrics["map"], 4), "map_50": round(metrics["map_50"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-images", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--close-mosaic", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--cache", choices=["ram", "false"], default="ram",
                        help="ultralytics' image cache, for both (ram: decoded once, mosaic partners from the whole "
                             "split in both pipelines; false: ultralytics keeps a buffer of recent images)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ultralytics-first", action="store_true", help="train ultralytics' model first")
    parser.add_argument("--threads", type=int, default=min(8, max(1, (os.cpu_count() or 1) - 1)),
                        help="torch CPU threads for our loop (default: what ultralytics picks for itself)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_yolo_parity_"))
    os.environ.setdefault("YOLO_CONFIG_DIR", str(work / "ultralytics_config"))  # settings stay in the work folder
    dataset = build_data(work, args.image_size, args.num_images)
    data_yaml = materialise_yolo(dataset, work / "yolo_folder")
    if args.ultralytics_first:  # the second run in a process may find warm caches: check both orders
        theirs = train_ultralytics(data_yaml, work / "ultralytics", args)
        ours = train_ours(dataset, work / "ours", args)
    else:
        ours = train_ours(dataset, work / "ours", args)
        theirs = train_ultralytics(data_yaml, work / "ultralytics", args)

    from hf_tasks.models.yolo import YoloDetector, build_detector
    from hf_tasks.yolo_data import category_names

    import datasets

    names = category_names(datasets.load_from_disk(str(dataset))["train"].features)
    their_model = build_detector(str(theirs["best_pt"]), names, args.image_size, {})
    row = {"benchmark": "yolo_parity", "epochs": args.epochs, "image_size": args.image_size, "batch": args.batch,
           "threads": args.threads, "cache": args.cache, "order": "ultralytics first" if args.ultralytics_first
           else "ours first",
           "ours_epoch_s": round(ours["epoch_s"], 2), "ultralytics_epoch_s": round(theirs["epoch_s"], 2),
           "time_ratio": round(ours["epoch_s"] / theirs["epoch_s"], 3),
           "ours": evaluate_same_way(YoloDetector.from_pretrained(str(ours["folder"])), dataset, args.batch),
           "ultralytics": evaluate_same_way(their_model, dataset, args.batch),
           "ultralytics_own_metric": {"map": theirs["own_map"], "map_50": theirs["own_map_50"]},
           "cpus": os.cpu_count()}
    row["map_diff"] = round(row["ours"]["map"] - row["ultralytics"]["map"], 4)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
