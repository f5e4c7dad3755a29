"""Detection figures for the model card: precision-recall curves, per-class AP bars, a grid of predicted boxes.

All drawing is matplotlib with its bundled fonts (ultralytics' plotting would look for, and download, Arial.ttf).
The PR curve is the one number series COCOeval does not hand back through the ``coco_map`` metric, so it is
computed here: greedy matching by score at IoU 0.5 (COCO's rule), then the interpolated precision envelope
sampled at COCO's 101 recall points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

RECALL_POINTS = np.linspace(0, 1, 101)
MAX_CURVE_CLASSES = 20  # beyond this, the card shows the mean curve only


def _iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU matrix of COCO xywh boxes (n, 4) × (m, 4)."""
    a = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)[:, None]
    b = np.concatenate([gt[:, :2], gt[:, :2] + gt[:, 2:]], 1)[None]
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = (boxes[:, 2] * boxes[:, 3])[:, None] + (gt[:, 2] * gt[:, 3])[None] - inter
    return inter / np.maximum(union, 1e-9)


def _match(pred: dict, ref: dict, label: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Scores and TP flags of one image's detections of ``label`` (greedy by score, IoU >= 0.5)."""
    keep = np.asarray(pred["labels"]) == label
    scores = np.asarray(pred["scores"], np.float64)[keep]
    boxes = np.asarray(pred["boxes"], np.float64).reshape(-1, 4)[keep]
    gt = np.asarray(ref["boxes"], np.float64).reshape(-1, 4)[np.asarray(ref["labels"]) == label]
    order = np.argsort(-scores, kind="mergesort")
    tp = np.zeros(len(order), bool)
    if len(gt) and len(order):
        ious, taken = _iou(boxes[order], gt), np.zeros(len(gt), bool)
        for d in range(len(order)):
            candidates = np.where(~taken & (ious[d] >= 0.5))[0]
            if candidates.size:
                g = candidates[np.argmax(ious[d, candidates])]
                tp[d], taken[g] = True, True
    return scores[order], tp, len(gt)


def pr_curve(predictions: list[dict], references: list[dict], num_labels: int) -> dict[str, Any]:
    """Per-class interpolated precision at 101 recall points (IoU 0.5); ``None`` for a class without ground truth."""
    curves: list[list[float] | None] = []
    for label in range(num_labels):
        matched = [_match(p, r, label) for p, r in zip(predictions, references)]
        num_gt = sum(m[2] for m in matched)
        if num_gt == 0:
            curves.append(None)
            continue
        scores = np.concatenate([m[0] for m in matched]) if matched else np.zeros(0)
        tp = np.concatenate([m[1] for m in matched]) if matched else np.zeros(0, bool)
        order = np.argsort(-scores, kind="mergesort")
        cum_tp = np.cumsum(tp[order])
        recall = cum_tp / num_gt
        precision = cum_tp / np.arange(1, len(order) + 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        # COCO: precision at recall r is the best precision at any recall >= r (0 beyond the last detection)
        sampled = np.append(envelope, 0.0)[np.searchsorted(recall, RECALL_POINTS, side="left")]
        curves.append([round(float(v), 4) for v in sampled])
    return {"recall": [round(float(r), 2) for r in RECALL_POINTS], "precision": curves}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pr_curve(curve: dict, names: list[str], ap50: list, path: Path) -> None:
    """One line per class (up to ``MAX_CURVE_CLASSES``) and the mean over classes with ground truth."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 4.5))
    valid = [(name, c, ap) for name, c, ap in zip(names, curve["precision"], ap50) if c is not None]
    if len(valid) <= MAX_CURVE_CLASSES:
        for name, values, ap in valid:
            axis.plot(curve["recall"], values, linewidth=1, label=f"{name} {ap or 0:.3f}")
    if valid:
        mean = np.mean([v for _, v, _ in valid], axis=0)
        axis.plot(curve["recall"], mean, linewidth=3, color="blue",
                  label=f"all classes {np.mean([a or 0 for *_, a in valid]):.3f} mAP@0.5")
    axis.set_xlabel("recall"), axis.set_ylabel("precision"), axis.set_xlim(0, 1), axis.set_ylim(0, 1.02)
    axis.set_title("precision-recall (IoU 0.5)")
    axis.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_class_ap(names: list[str], ap: list, ap50: list, path: Path) -> None:
    """Horizontal bars of AP@[.5:.95] and AP@.5 per class (classes without ground truth are left out)."""
    plt = _pyplot()
    rows = [(n, a, b) for n, a, b in zip(names, ap, ap50) if a is not None]
    fig, axis = plt.subplots(figsize=(6, 0.35 * max(len(rows), 3) + 1))
    y = np.arange(len(rows))
    axis.barh(y - 0.2, [r[2] for r in rows], height=0.4, label="AP@0.5")
    axis.barh(y + 0.2, [r[1] for r in rows], height=0.4, label="AP@[.5:.95]")
    axis.set_yticks(y, [r[0] for r in rows]), axis.invert_yaxis(), axis.set_xlim(0, 1)
    axis.set_title("per-class average precision"), axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_prediction_grid(images: list, predictions: list[dict], names: list[str], path: Path,
                         columns: int = 4) -> None:
    """Images with their predicted boxes (xyxy pixels), class name and score."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, pred in zip(axes.flat, images, predictions):
        axis.imshow(image)
        for box, score, label in zip(pred["boxes"], pred["scores"], pred["labels"]):
            x1, y1, x2, y2 = (float(v) for v in box)
            colour = colours(int(label) % 10)
            axis.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
            axis.text(x1, y1, f"{names[int(label)]} {float(score):.2f}", color="white", fontsize=6,
                      bbox={"facecolor": colour, "pad": 1, "linewidth": 0})
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
