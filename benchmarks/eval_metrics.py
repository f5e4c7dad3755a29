"""Evaluation metrics: our `coco_map` / `bleu` evaluate modules vs the libraries they wrap, run directly.

coco_map: N images x C classes of seeded random ground truth (log-uniform sizes, ~3% crowd) and noisy predictions
(missed boxes, jitter, wrong classes, spurious boxes). Timed from the same per-image Python lists to the final
numbers, in one process with every library imported before the clock starts:
  ours:              `load_metric("coco_map").compute(...)` (evaluate storage + faster-coco-eval + per-class P/R);
  pycocotools:       build the COCO dicts, COCO/loadRes/COCOeval evaluate+accumulate+summarize;
  faster-coco-eval:  the same with faster-coco-eval's COCO/COCOeval_faster (what ours runs inside).
The 12 COCOeval stats of ours and pycocotools are compared (max absolute difference).

bleu: N generated captions with R references each; ours = `load_metric("bleu").compute(...)` (BLEU-1..4 and the
rest), reference = `sacrebleu.corpus_bleu` on the reference streams. sacrebleu's tokenizers memoise their input
(lru_cache), so the cache is cleared before each timed run.

Every side runs ``--repeats`` times (default 3) in the same process, the order rotated each round; the medians are
compared and every run's seconds are printed (``repeats_s``).

    python benchmarks/eval_metrics.py --images 5000 --classes 80 [--captions 5000 --refs 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STATS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
         "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


def detection_data(images: int, classes: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Per-image references and predictions in the coco_map input schema (plain lists, xywh pixels)."""
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for _ in range(images):
        n = int(rng.poisson(7))
        wh = np.exp(rng.uniform(np.log(6), np.log(400), (n, 2)))
        gt = np.concatenate([rng.uniform(0, 640 - wh.clip(max=600)), wh], axis=1)
        labels = rng.integers(0, classes, n)
        refs.append({"boxes": gt.tolist(), "labels": labels.tolist(),
                     "iscrowd": (rng.random(n) < 0.03).astype(int).tolist()})
        hit = rng.random(n) < 0.85
        jitter = gt[hit] + rng.normal(0, 0.07, (int(hit.sum()), 4)) * np.tile(gt[hit, 2:], 2)
        jitter[:, 2:] = jitter[:, 2:].clip(min=1)
        det_labels = np.where(rng.random(int(hit.sum())) < 0.05, rng.integers(0, classes, int(hit.sum())), labels[hit])
        m = int(rng.poisson(3))
        spurious = np.concatenate([rng.uniform(0, 560, (m, 2)), rng.uniform(6, 200, (m, 2))], axis=1)
        scores = np.concatenate([rng.beta(4, 2, int(hit.sum())), rng.beta(2, 4, m)])
        preds.append({"boxes": np.concatenate([jitter, spurious]).tolist(), "scores": scores.tolist(),
                      "labels": np.concatenate([det_labels, rng.integers(0, classes, m)]).tolist()})
    return preds, refs


def direct_cocoeval(lib: str, preds: list[dict], refs: list[dict], classes: int) -> np.ndarray:
    """The library alone: COCO dicts from the per-image lists, then COCO + loadRes + COCOeval, stdout swallowed."""
    if lib == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    anns = [{"id": 0, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": z}
            for i, r in enumerate(refs) for b, c, z in zip(r["boxes"], r["labels"], r["iscrowd"])]
    for k, ann in enumerate(anns):
        ann["id"] = k + 1
    dets = [{"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, p in enumerate(preds) for b, s, c in zip(p["boxes"], p["scores"], p["labels"])]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": i} for i in range(len(refs))], "annotations": anns,
                      "categories": [{"id": k} for k in range(classes)]}
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(dets), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return np.asarray(coco_eval.stats[:12], dtype=float)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def alternate(sides: dict, repeats: int) -> tuple[dict, dict]:
    """Run every side ``repeats`` times, the order rotated each round (A B C, B C A, C A B, …; A B, B A for two), so
    neither warm caches nor a burst of someone else's job favours one side. Returns (last output, seconds list) per
    side."""
    names, outputs, seconds = list(sides), {}, {name: [] for name in sides}
    for round_ in range(repeats):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            outputs[name], spent = timed(sides[name])
            seconds[name].append(round(spent, 3))
    return outputs, seconds


def bench_coco(images: int, classes: int, seed: int, repeats: int) -> dict:
    import faster_coco_eval  # noqa: F401  imported before any clock starts
    import pycocotools.cocoeval  # noqa: F401

    from hf_tasks.metrics import load_metric

    preds, refs = detection_data(images, classes, seed)
    metric = load_metric("coco_map")
    outputs, seconds = alternate({
        "ours": lambda: metric.compute(predictions=preds, references=refs, num_labels=classes),
        "pycocotools": lambda: direct_cocoeval("pycocotools", preds, refs, classes),
        "faster_coco_eval": lambda: direct_cocoeval("faster_coco_eval", preds, refs, classes)}, repeats)
    ours, reference, faster = outputs["ours"], outputs["pycocotools"], outputs["faster_coco_eval"]
    ours_s, pycoco_s, faster_s = (statistics.median(seconds[k]) for k in ("ours", "pycocotools", "faster_coco_eval"))
    ours_stats = np.array([ours[name] for name in STATS])
    diff = float(np.abs(ours_stats - reference).max())
    return {"benchmark": "coco_map", "images": images, "classes": classes,
            "gt_boxes": sum(len(r["labels"]) for r in refs), "detections": sum(len(p["labels"]) for p in preds),
            "ours_s": round(ours_s, 3), "pycocotools_s": round(pycoco_s, 3), "faster_coco_eval_s": round(faster_s, 3),
            "repeats_s": seconds, "speedup_vs_pycocotools": round(pycoco_s / ours_s, 2),
            "stats_max_abs_diff": diff, "stats_equal": diff <= 1e-9,
            "faster_direct_max_abs_diff": float(np.abs(faster - reference).max()),
            "map": ours["map"], "map_50": ours["map_50"]}


def caption_data(captions: int, refs_per: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """Captions over a 2,000-word Zipf-ish vocabulary; the hypothesis is a perturbed first reference."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(2000)])
    probs = 1 / np.arange(1, 2001)
    probs /= probs.sum()
    preds, refs = [], []
    for _ in range(captions):
        image_refs = [" ".join(rng.choice(vocab, int(rng.integers(8, 16)), p=probs)) + " ." for _ in range(refs_per)]
        words = image_refs[0].split()
        words = [w if rng.random() < 0.7 else str(rng.choice(vocab, p=probs)) for w in words]
        preds.append(" ".join(words[: int(rng.integers(5, len(words) + 1))]))
        refs.append(image_refs)
    return preds, refs


def _clear_tokenizer_cache() -> None:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    Tokenizer13a.__call__.cache_clear()


def bench_bleu(captions: int, refs_per: int, seed: int, repeats: int) -> dict:
    import sacrebleu

    from hf_tasks.metrics import load_metric

    preds, refs = caption_data(captions, refs_per, seed)
    metric = load_metric("bleu")
    streams = [[r[j] for r in refs] for j in range(refs_per)]

    def cold(fn):  # each timed run starts with an empty tokenizer cache
        _clear_tokenizer_cache()
        return fn()

    outputs, seconds = alternate({
        "ours": lambda: cold(lambda: metric.compute(predictions=preds, references=refs)),
        "sacrebleu": lambda: cold(lambda: sacrebleu.corpus_bleu(preds, streams))}, repeats)
    ours, reference = outputs["ours"], outputs["sacrebleu"]
    ours_s, ref_s = statistics.median(seconds["ours"]), statistics.median(seconds["sacrebleu"])
    return {"benchmark": "bleu", "captions": captions, "refs_per_caption": refs_per,
            "ours_s": round(ours_s, 3), "sacrebleu_s": round(ref_s, 3), "repeats_s": seconds,
            "time_ratio_ours_over_sacrebleu": round(ours_s / ref_s, 2), "bleu": ours["bleu"],
            "sacrebleu_bleu": reference.score / 100,
            "bleu_equal": ours["bleu"] == reference.score / 100, "bleu1": ours["bleu1"]}


def markdown(coco: dict, bleu: dict) -> str:
    return "\n".join([
        "| metric | data | ours | reference | faster-coco-eval direct | equal |",
        "|---|---|---:|---:|---:|---|",
        f"| coco_map | {coco['images']:,} images x {coco['classes']} classes, {coco['gt_boxes']:,} GT / "
        f"{coco['detections']:,} dets | {coco['ours_s']:.2f} s | pycocotools {coco['pycocotools_s']:.2f} s "
        f"({coco['speedup_vs_pycocotools']}x) | {coco['faster_coco_eval_s']:.2f} s | "
        f"12 stats, max diff {coco['stats_max_abs_diff']:.1e} |",
        f"| bleu | {bleu['captions']:,} captions x {bleu['refs_per_caption']} refs | {bleu['ours_s']:.2f} s | "
        f"sacrebleu {bleu['sacrebleu_s']:.2f} s | - | {'exactly' if bleu['bleu_equal'] else 'NO'} "
        f"(BLEU {bleu['bleu']:.4f}) |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--captions", type=int, default=None, help="default: the same as --images")
    parser.add_argument("--refs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side, order rotated; medians reported")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    coco = bench_coco(args.images, args.classes, args.seed, args.repeats)
    print(json.dumps(coco), flush=True)
    bleu = bench_bleu(args.captions or args.images, args.refs, args.seed, args.repeats)
    print(json.dumps(bleu), flush=True)
    print(json.dumps({"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}))
    print()
    print(markdown(coco, bleu))


if __name__ == "__main__":
    main()
