"""Parity of hf-tasks' detection loop with ultralytics' own ``YOLO.train()`` on the same data (goal: epoch-time
ratio <= 1.1, final mAP50-95 within 0.02).

1. Build (or reuse) the shapes detection set (Arrow) and materialise it once as a YOLO folder + data yaml for
   ultralytics (PNG bytes copied as-is, labels as normalised centre xywh).
2. Train each side in its own fresh subprocess, the order alternated over ``--repeats`` pairs (ours, theirs,
   theirs, ours, …; see ``benchmarks/interleave.py``): ours is ``hf_tasks.engine.loop.train`` with the ``shapes_yolov8n``
   recipe and the overrides below; theirs is ``YOLO("yolov8n.yaml").train(...)`` with the same epochs, image size,
   batch, seed, optimizer, lr, weight decay, warmup, close_mosaic, image cache and workers; ``nbs`` = batch so it
   does not accumulate gradients; ``amp``, ``plots`` and ``deterministic`` off (our loop forces no deterministic
   kernels either); integrations off (settings in a temporary ``YOLO_CONFIG_DIR``); no font check.
3. The same torch thread count for both (``--threads``; default what ultralytics picks for itself on the CPU,
   ``min(8, cpus - 1)``): ultralytics' ``select_device`` resets ``torch.set_num_threads`` to its ``NUM_THREADS``,
   which the child sets to ``--threads``; ours calls ``torch.set_num_threads``; ``OMP_NUM_THREADS`` is the same.
4. Per-epoch training time measured the same way on both sides: ``perf_counter`` from the start to the end of the
   epoch's training part (ours: around ``hf_tasks.engine.loop.train_one_epoch``; ultralytics: its
   ``on_train_epoch_start``/``on_train_epoch_end`` callbacks), so per-epoch validation and checkpointing are out
   of it on both sides. The headline is the mean over epochs 2..N: epoch 1 also pays one-time costs (first
   oneDNN kernel selection, allocator growth, the lazily built loss) — it is reported separately, as is the wall
   clock of the whole ``train`` call (model build, image cache, per-epoch validation and saving, final steps).
   The minor page faults of each epoch are counted too, and each run records the CPU time other processes used
   while it lasted (the noise of a shared machine).
5. Both final (best) models are scored by the same evaluator (our predict + ``coco_map`` on the validation split);
   ultralytics' own mAP is printed next to it.

``--ours-glibc-defaults`` leaves glibc's malloc at its defaults on our side (``hf_tasks.engine.accelerator.keep_freed_memory``
skipped), to measure what that setting is worth.
Prints one JSON line per run, then a summary line and markdown rows; ``--summarise-only`` re-prints them from the
logs of an earlier run in the same ``--work``.

    python benchmarks/yolo_parity.py [--work DIR] [--repeats 3] [--epochs 30] [--device cpu|cuda] [--ours-glibc-defaults]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")
for _key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_key, "1")

from benchmarks.interleave import child_env, emit, machine, median, run_alternating  # noqa: E402

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

    from hf_tasks.tasks.detection.yolo_data import category_names, coco_to_yolo

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

    import hf_tasks.engine.loop as loop
    import hf_tasks.tasks.detection.yolo_data  # noqa: F401  (ultralytics and our models imported before the clock, as for theirs)
    from hf_tasks.registry import get_task, load_config

    torch.set_num_threads(args.threads)
    if args.ours_glibc_defaults:  # measure the loop without its malloc setting (hf_tasks.engine.accelerator)
        loop.keep_freed_memory = lambda device_type: False
    timer, one_epoch = EpochTimer(), loop.train_one_epoch

    def timed_epoch(run, state, bar):  # the training part of one epoch, as ultralytics' callbacks bracket it
        timer.start(None)
        reached = one_epoch(run, state, bar)
        timer.end(None)
        return reached

    loop.train_one_epoch = timed_epoch
    cfg = load_config("shapes_yolov8n", [
        "--data.dataset", str(dataset), "--output-dir", str(out), "--overwrite", "--epochs", str(args.epochs),
        "--batch-size", str(args.batch), "--data.image_size", str(args.image_size), "--seed", str(args.seed),
        "--data.num_workers", str(args.workers), "--optim.lr", str(args.lr),
        "--model.config", f"{{hyp: {{close_mosaic: {args.close_mosaic}, cache: {args.cache}}}}}"])
    started = time.perf_counter()
    loop.train(cfg, get_task(cfg.task))
    return {"epoch_s": timer.seconds, "epoch_page_faults": timer.faults, "wall_s": time.perf_counter() - started,
            "threads": torch.get_num_threads()}


class EpochTimer:
    """Times the training part of each epoch (validation and saving excluded), for both sides: ultralytics calls
    ``start``/``end`` as its epoch callbacks, ours around ``train_one_epoch``. Also counts the process's minor page
    faults in that span (memory handed back to the OS and touched again shows up there)."""

    def __init__(self):
        self.started, self.seconds, self.faults, self.faults_at = 0.0, [], [], 0

    def start(self, trainer) -> None:
        self.faults_at = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        self.started = time.perf_counter()

    def end(self, trainer) -> None:
        self.seconds.append(time.perf_counter() - self.started)
        self.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.faults_at)


def train_ultralytics(data_yaml: Path, project: Path, args) -> dict:
    from hf_tasks.models.yolo import prepare_ultralytics

    prepare_ultralytics()
    import torch
    import ultralytics.data.utils as data_utils
    import ultralytics.utils.torch_utils as torch_utils
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    SETTINGS.update({k: False for k in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard",
                                        "wandb")})
    data_utils.check_font = lambda *a, **k: None  # its dataset check would fetch Arial.ttf
    torch_utils.NUM_THREADS = args.threads  # what select_device passes to torch.set_num_threads
    timer = EpochTimer()
    model = YOLO("yolov8n.yaml")
    model.add_callback("on_train_epoch_start", timer.start)
    model.add_callback("on_train_epoch_end", timer.end)
    warmup_epochs = 0.05 * args.epochs  # our recipe's warmup_ratio
    started = time.perf_counter()
    model.train(data=str(data_yaml), epochs=args.epochs, imgsz=args.image_size, batch=args.batch, seed=args.seed,
                workers=args.workers, device="0" if args.device == "cuda" else "cpu", optimizer="AdamW",
                lr0=args.lr, lrf=0.01, momentum=0.9, weight_decay=0.0005, warmup_epochs=warmup_epochs,
                warmup_bias_lr=0.0, nbs=args.batch, close_mosaic=args.close_mosaic, amp=False, plots=False,
                pretrained=False, cache=args.cache if args.cache == "ram" else False,
                deterministic=False, project=str(project), name="run", exist_ok=True, verbose=False)
    wall_s = time.perf_counter() - started
    metrics = model.trainer.metrics
    return {"epoch_s": timer.seconds, "epoch_page_faults": timer.faults, "wall_s": wall_s,
            "threads": torch.get_num_threads(), "own_map": metrics.get("metrics/mAP50-95(B)"),
            "own_map_50": metrics.get("metrics/mAP50(B)"), "best_pt": str(model.trainer.best)}


def evaluate_same_way(detector, dataset: Path, batch: int) -> dict:
    """Our predict (NMS conf 0.001, iou 0.7) + coco_map on the validation split, for either model."""
    from hf_tasks.config import evaluation_config
    from hf_tasks.engine.evaluation import evaluate_bundle
    from hf_tasks.engine.accelerator import make_accelerator
    from hf_tasks.registry import ModelBundle, get_task
    from hf_tasks.tasks.detection.model import DetectionSettings

    cfg = evaluation_config("detection", str(dataset), "validation", batch)
    spec = get_task("detection")
    data = spec.load_data(cfg)
    bundle = ModelBundle(detector, None, list(detector.names), settings=DetectionSettings(imgsz=detector.imgsz))
    metrics = evaluate_bundle(make_accelerator(cfg), spec, bundle, cfg, data, "validation", desc="val")
    return {"map": round(metrics["map"], 4), "map_50": round(metrics["map_50"], 4)}


def child(args) -> None:
    """One side, one repeat, in this fresh process: train, then score the final model with the shared evaluator."""
    work, side = Path(args.work), args.child
    dataset = build_data(work, args.image_size, args.num_images)
    out = work / f"{side}_{args.repeat}"
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if side == "ours":
        result = train_ours(dataset, out, args)
    else:
        result = train_ultralytics(work / "yolo_folder" / "data.yaml", out, args)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{args.profile}.{side}.{args.repeat}.prof")
    from hf_tasks.models.yolo import YoloDetector, build_detector
    from hf_tasks.tasks.detection.yolo_data import category_names

    import datasets

    if side == "ours":
        detector = YoloDetector.from_pretrained(str(out))
    else:
        names = category_names(datasets.load_from_disk(str(dataset))["train"].features)
        detector = build_detector(result.pop("best_pt"), names, args.image_size, {})
    result.update(side=side, repeat=args.repeat, **evaluate_same_way(detector, dataset, args.batch))
    emit(result)


def steady(values: list[float], how: str = "mean") -> float:
    """Mean (or median) over epochs 2..N (all of them when there is only one)."""
    rest = values[1:] or values
    return median(rest) if how == "median" else sum(rest) / len(rest)


def pair_row(repeat: int, first: str, ours: dict, theirs: dict) -> dict:
    def ratio(how: str) -> float:
        return round(steady(ours["epoch_s"], how) / steady(theirs["epoch_s"], how), 3)

    return {"repeat": repeat, "first": first,
            "ours_epoch_s": round(steady(ours["epoch_s"]), 3), "theirs_epoch_s": round(steady(theirs["epoch_s"]), 3),
            "ratio": ratio("mean"), "ratio_median_epoch": ratio("median"),
            "ratio_all_epochs": round(sum(ours["epoch_s"]) / sum(theirs["epoch_s"]), 3),
            "ours_first_epoch_s": round(ours["epoch_s"][0], 2), "theirs_first_epoch_s": round(theirs["epoch_s"][0], 2),
            "ours_page_faults": round(steady(ours["epoch_page_faults"])),
            "theirs_page_faults": round(steady(theirs["epoch_page_faults"])),
            "ours_wall_s": round(ours["wall_s"], 1), "theirs_wall_s": round(theirs["wall_s"], 1),
            "ours_map": ours["map"], "theirs_map": theirs["map"], "theirs_own_map": theirs["own_map"],
            "ours_map_50": ours["map_50"], "theirs_map_50": theirs["map_50"],
            "threads": [ours["threads"], theirs["threads"]],
            "other_cpu_s": [ours.get("other_cpu_s"), theirs.get("other_cpu_s")]}


def summarise(runs: list[dict], args) -> dict:
    """``runs`` in the order they ran; one row per repeat and the medians over repeats."""
    pairs = []
    for repeat in sorted({r["repeat"] for r in runs}):
        mine = [r for r in runs if r["repeat"] == repeat]
        ours, theirs = (next(r for r in mine if r["side"] == side) for side in ("ours", "theirs"))
        pairs.append(pair_row(repeat, mine[0]["side"], ours, theirs))
    return {"benchmark": "yolo_parity", "device": args.device, "ours_glibc_defaults": args.ours_glibc_defaults,
            "epochs": args.epochs, "image_size": args.image_size, "batch": args.batch, "threads": args.threads,
            "cache": args.cache, "repeats": pairs,
            **{f"median_{key}": round(median([p[key] for p in pairs]), 3)
               for key in ("ratio", "ratio_median_epoch", "ratio_all_epochs")},
            "max_map_diff": round(max(abs(p["ours_map"] - p["theirs_map"]) for p in pairs), 4), **machine()}


def markdown(summary: dict) -> str:
    """Rows: repeat | first | ours s/epoch | theirs s/epoch | ratio (mean) | ratio (median epoch) | ratio (all
    epochs) | page faults per epoch | wall s | mAP50-95 | other jobs' CPU s during each run."""
    rows = [f"| {p['repeat'] + 1} | {p['first']} | {p['ours_epoch_s']:.2f} | {p['theirs_epoch_s']:.2f} | "
            f"{p['ratio']:.3f} | {p['ratio_median_epoch']:.3f} | {p['ratio_all_epochs']:.3f} | "
            f"{p['ours_page_faults']:,} / {p['theirs_page_faults']:,} | {p['ours_wall_s']:.0f} / "
            f"{p['theirs_wall_s']:.0f} | {p['ours_map']:.4f} / {p['theirs_map']:.4f} | "
            f"{' / '.join('n/a' if c is None else f'{c:.0f}' for c in p['other_cpu_s'])} |"
            for p in summary["repeats"]]
    last = (f"| median | | | | {summary['median_ratio']:.3f} | {summary['median_ratio_median_epoch']:.3f} | "
            f"{summary['median_ratio_all_epochs']:.3f} | | | max diff {summary['max_map_diff']:.4f} | |")
    return "\n".join([*rows, last])


def read_logs(work: Path) -> list[dict]:
    """The runs recorded in ``work/logs`` (``--summarise-only``), in the order they ran."""
    runs = []
    for log in (work / "logs").glob("*.log"):
        line = next(x for x in log.read_text().splitlines() if x.startswith("RESULT "))
        other = [x.split()[1] for x in log.read_text().splitlines() if x.startswith("other_cpu_s ")]
        runs.append({**json.loads(line[len("RESULT "):]), "finished": log.stat().st_mtime,
                     "other_cpu_s": float(other[0]) if other else None})
    return sorted(runs, key=lambda r: r["finished"])


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs, order alternated (ABBA…)")
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
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=min(8, max(1, (os.cpu_count() or 1) - 1)),
                        help="torch CPU threads for both sides (default: what ultralytics picks for itself)")
    parser.add_argument("--first", choices=["ours", "theirs"], default="ours", help="side of the first run")
    parser.add_argument("--ours-glibc-defaults", action="store_true",
                        help="skip the loop's malloc setting (hf_tasks.engine.accelerator.keep_freed_memory) on our side")
    parser.add_argument("--profile", help="cProfile each run's training into PREFIX.<side>.<repeat>.prof")
    parser.add_argument("--summarise-only", action="store_true",
                        help="print the summary of the runs already in WORK/logs (other_cpu_s is not in the logs)")
    parser.add_argument("--child", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_yolo_parity_"))
    if args.summarise_only:
        summary = summarise(read_logs(work), args)
        print(json.dumps(summary))
        print(markdown(summary))
        return
    materialise_yolo(build_data(work, args.image_size, args.num_images), work / "yolo_folder")
    env = child_env(args.threads, cpu_only=args.device == "cpu", YOLO_CONFIG_DIR=str(work / "ultralytics_config"))
    second = "theirs" if args.first == "ours" else "ours"
    runs = run_alternating(__file__, [*sys.argv[1:], "--work", str(work)], (args.first, second), args.repeats, env,
                           work / "logs")
    summary = summarise(runs, args)
    print(json.dumps(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
