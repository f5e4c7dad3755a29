"""COCO detection mAP for hf-tasks, as an ``evaluate`` module wrapping faster-coco-eval (or pycocotools).

Loaded by path (``hf_tasks.metrics.load_metric("coco_map")``), so it works offline. The twelve summary numbers
come straight from the library's ``COCOeval.stats``; we only build the COCO structures in memory and read the
library's accumulated arrays back out. The only thing computed here is the per-class precision/recall operating
point, which COCOeval does not report (see ``_KWARGS_DESCRIPTION``).

evaluate's loader scans top-level import lines (one module per line) and instantiates the first
``EvaluationModule`` subclass it finds, so the base class is referenced as ``evaluate.Metric`` and the COCO
backends are imported lazily inside functions: either one being installed is enough.
"""

import contextlib
import io
from typing import Any

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
COCO bounding-box detection metrics (mAP@[.5:.95], mAP@.5, ..., mAR@100) computed by faster-coco-eval's COCOeval,
or pycocotools' when faster-coco-eval is not installed, plus per-class AP and a per-class precision/recall point.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `dict`, one per image): {"boxes": [[x, y, w, h], ...], "scores": [...], "labels": [...]}.
        Boxes are COCO xywh in pixels; labels are class ids in [0, num_labels).
    references (`list` of `dict`, one per image, same order): {"boxes": [[x, y, w, h], ...], "labels": [...],
        "iscrowd": [...] (optional, default 0), "area": [...] (optional, default w * h)}. `area` only decides the
        small/medium/large bucket, as in COCO (where it is the segmentation area).
        Optional keys are filled in by `add_batch`/`add` before storage, so evaluate's fixed schema always holds.
        Images with no boxes are allowed on either side: pass empty lists. A box, score or area that is NaN or
        infinite, or a label that is not an integer, raises a ValueError naming the argument, image and entry.
    num_labels (`int`, *optional*): number of classes; default max label id + 1 (or len(label_names)).
    label_names (`list` of `str`, *optional*): class names; adds `per_class_ap_by_name`.
    backend (`str`, *optional*): "faster_coco_eval" or "pycocotools"; default the first one importable.
Returns:
    map, map_50, map_75, map_small, map_medium, map_large, mar_1, mar_10, mar_100, mar_small, mar_medium,
        mar_large (`float`): COCOeval.stats[0..11] unchanged, so -1.0 means "undefined" (no ground truth in that
        area range), exactly as pycocotools prints it.
    per_class_ap, per_class_ap50 (`list` of `float` or `None`): AP@[.5:.95] / AP@.5 of each class 0..num_labels-1
        (area all, 100 detections per image), read from COCOeval's precision array. `None` for a class without
        non-crowd ground truth: COCOeval leaves it at -1 and keeps it out of `map`.
    per_class_precision, per_class_recall (`list` of `float` or `None`): one operating point at IoU 0.5, area all,
        the top 100 detections per image and class, with COCOeval's own matching rules (greedy by score, crowd
        matches ignored). The point is a single confidence threshold shared by all classes, chosen among the
        detection scores to maximise the mean F1 over classes with ground truth (the lowest such score on ties),
        as ultralytics and faster-coco-eval's `extended_metrics` report P and R. precision = TP / detections kept
        (0 when none is kept), recall = TP / non-crowd ground truth; raw counts, no interpolation or smoothing.
    precision, recall, f1 (`float`): means over classes with ground truth at that threshold (0 with no detections).
    score_threshold (`float` or `None`): the chosen threshold; `None` when there is no detection to choose from.
    per_class_num_gt (`list` of `int`): non-crowd ground-truth boxes per class (the recall denominators).
    num_images (`int`): number of images evaluated.
Examples:
    >>> metric = hf_tasks.metrics.load_metric("coco_map")
    >>> box = {"boxes": [[10, 10, 20, 20]], "labels": [0]}
    >>> metric.compute(predictions=[{**box, "scores": [0.9]}], references=[box], num_labels=1)["map"]
    1.0
"""

_CITATION = """
@inproceedings{lin2014microsoft,
  title={Microsoft COCO: Common Objects in Context},
  author={Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and others},
  booktitle={ECCV},
  year={2014}
}
"""

STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")
IOU_THRESHOLD = 0.5  # the IoU of the precision/recall operating point
AREA_ALL = (0.0, 1e5**2)  # COCOeval's "all" area range
_DTYPES = {"boxes": np.float64, "scores": np.float64, "area": np.float64, "labels": np.int64, "iscrowd": np.int64}
BOX_RULE = "boxes must be [x, y, w, h] with finite numbers (no NaN or inf)"
_BOXES = datasets.Sequence(datasets.Sequence(datasets.Value("float64"), length=4))


class CocoMap(evaluate.Metric):
    """COCO mAP: the library computes every AP/AR; this class only builds its inputs and reads its arrays."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": {"boxes": _BOXES, "scores": datasets.Sequence(datasets.Value("float64")),
                                "labels": datasets.Sequence(datasets.Value("int64"))},
                "references": {"boxes": _BOXES, "labels": datasets.Sequence(datasets.Value("int64")),
                               "iscrowd": datasets.Sequence(datasets.Value("int64")),
                               "area": datasets.Sequence(datasets.Value("float64"))},
            }),
            reference_urls=["https://cocodataset.org/#detection-eval", "https://github.com/MiXaiLL76/faster_coco_eval"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Check and normalise each image for evaluate's fixed schema; errors name it by its index since ``compute``."""
        start = getattr(self, "_added", 0) if self.writer is not None else 0  # compute() closes the writer
        if predictions is not None:
            predictions = [_normalise_prediction(p, start + i) for i, p in enumerate(predictions)]
        if references is not None:
            references = [_normalise_reference(r, start + i) for i, r in enumerate(references)]
        out = super().add_batch(predictions=predictions, references=references, **kwargs)
        self._added = start + len(predictions if predictions is not None else references or [])
        return out

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Single-image counterpart of ``add_batch``, with the same checks and normalisation."""
        return self.add_batch(predictions=None if prediction is None else [prediction],
                              references=None if reference is None else [reference], **kwargs)

    def _compute(self, predictions, references, num_labels=None, label_names=None, backend=None):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        if not references:
            raise ValueError("cannot compute coco_map on zero images")
        preds = [_as_arrays(p) for p in predictions]
        refs = [_as_arrays(r) for r in references]
        n = _resolve_num_labels(preds, refs, num_labels, label_names)
        lib = _load_backend(backend)
        names = list(label_names) if label_names is not None else [str(k) for k in range(n)]
        coco_eval = run_cocoeval(lib, coco_ground_truth(refs, names), coco_detections(preds))
        result = {name: float(value) for name, value in zip(STAT_NAMES, coco_eval.stats[:12])}
        result.update(_per_class_ap(coco_eval))
        result.update(_operating_point(preds, refs, n, lib["iou"]))
        result["num_images"] = len(refs)
        if label_names is not None:
            result["per_class_ap_by_name"] = dict(zip(names, result["per_class_ap"]))
        return result


def _normalise_prediction(pred: dict, index: int) -> dict:
    """One image's prediction as plain lists, checked: finite boxes and scores, integer labels, matching lengths."""
    name = f"predictions[{index}]"
    boxes = _finite(pred["boxes"], f"{name}['boxes']", BOX_RULE, width=4)
    scores = _finite(pred["scores"], f"{name}['scores']", "scores must be finite")
    labels = _integers(pred["labels"], f"{name}['labels']")
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"{name}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels")
    return {"boxes": boxes.tolist(), "scores": scores.tolist(), "labels": labels.tolist()}


def _normalise_reference(ref: dict, index: int) -> dict:
    """One image's ground truth as plain lists, checked; ``iscrowd`` defaults to 0 and ``area`` to the box area."""
    name = f"references[{index}]"
    boxes = _finite(ref["boxes"], f"{name}['boxes']", BOX_RULE, width=4)
    labels = _integers(ref["labels"], f"{name}['labels']")
    iscrowd, area = ref.get("iscrowd"), ref.get("area")
    iscrowd = np.zeros(len(boxes), np.int64) if iscrowd is None else _integers(iscrowd, f"{name}['iscrowd']", "0 or 1")
    area = boxes[:, 2] * boxes[:, 3] if area is None else _finite(area, f"{name}['area']", "areas must be finite")
    if not len(boxes) == len(labels) == len(iscrowd) == len(area):
        raise ValueError(f"{name}: {len(boxes)} boxes, {len(labels)} labels, {len(iscrowd)} iscrowd, {len(area)} area")
    return {"boxes": boxes.tolist(), "labels": labels.tolist(), "iscrowd": iscrowd.tolist(), "area": area.tolist()}


def _finite(values: Any, name: str, rule: str, width: int = 1) -> np.ndarray:
    """``values`` as float64 rows of ``width`` numbers (flat when 1); a ValueError names the first bad row."""
    try:
        array = np.asarray(values if values is not None else [], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must hold numbers: {err}") from None
    if array.size % width:
        raise ValueError(f"{name} holds {array.size} numbers, not a multiple of {width}: {rule}")
    array = array.reshape(-1, width) if width > 1 else array.reshape(-1)
    bad = ~np.isfinite(array.reshape(-1, width)).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{name}[{row}] is {array[row].tolist()}: not finite; {rule}")
    return array


def _integers(values: Any, name: str, what: str = "an integer class id") -> np.ndarray:
    """Class ids (or iscrowd flags) as int64; a ValueError names the first entry that is not an integer."""
    array = np.asarray(values if hasattr(values, "dtype") else np.array(values or [], dtype=object))
    if array.dtype.kind in "iub":  # integer arrays and tensors: checked at once
        return array.astype(np.int64).reshape(-1)
    for i, value in enumerate(array.reshape(-1).tolist()):
        value = value.item() if isinstance(value, np.generic) else value
        if not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ValueError(f"{name}[{i}] is {value!r} ({type(value).__name__}): not {what}")
    return array.astype(np.int64).reshape(-1)


def _as_arrays(item: dict) -> dict[str, np.ndarray]:
    """Stored lists back to arrays (boxes always (N, 4), even when empty)."""
    out = {key: np.asarray(value if value is not None else [], _DTYPES[key]) for key, value in item.items()}
    out["boxes"] = out["boxes"].reshape(-1, 4)
    return out


def _resolve_num_labels(preds: list[dict], refs: list[dict], num_labels: Any, label_names: Any) -> int:
    """Number of classes, checking every label id lies in [0, num_labels)."""
    if label_names is not None:
        if num_labels is not None and num_labels != len(label_names):
            raise ValueError(f"num_labels={num_labels} but {len(label_names)} label_names were given")
        num_labels = len(label_names)
    labels = np.concatenate([x["labels"] for x in preds + refs])
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()}")
    if num_labels is None:
        if not labels.size:
            raise ValueError("no boxes at all: pass num_labels (or label_names) to define the classes")
        return int(labels.max()) + 1
    if isinstance(num_labels, bool) or not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
    if labels.size and labels.max() >= num_labels:
        raise ValueError(f"label {labels.max()} is out of range for num_labels={num_labels}")
    return int(num_labels)


def _load_backend(name: str | None) -> dict[str, Any]:
    """COCO, COCOeval and the IoU function of faster-coco-eval (preferred: C++ evaluate) or pycocotools."""
    if name not in (None, "faster_coco_eval", "pycocotools"):
        raise ValueError(f"unknown backend {name!r}; known: faster_coco_eval, pycocotools")
    if name in (None, "faster_coco_eval"):
        try:
            from faster_coco_eval import COCO, COCOeval_faster
            from faster_coco_eval.core import mask
        except ImportError:
            if name is not None:
                raise
        else:
            return {"name": "faster_coco_eval", "COCO": COCO, "COCOeval": COCOeval_faster, "iou": mask.iou}
    from pycocotools import mask
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return {"name": "pycocotools", "COCO": COCO, "COCOeval": COCOeval, "iou": mask.iou}


def coco_ground_truth(refs: list[dict], names: list[str]) -> dict:
    """A COCO ground-truth dataset dict: image id = position, category id = label id, annotation ids from 1.

    Every class is listed as a category (so a class without ground truth is evaluated, and excluded, exactly as
    COCOeval does), and every image is listed (so an image without ground truth still counts its detections).
    """
    annotations = []
    for image_id, ref in enumerate(refs):
        for box, label, crowd, area in zip(*(ref[key].tolist() for key in ("boxes", "labels", "iscrowd", "area"))):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                                "bbox": box, "area": area, "iscrowd": crowd})
    return {"images": [{"id": i} for i in range(len(refs))], "annotations": annotations,
            "categories": [{"id": k, "name": name} for k, name in enumerate(names)]}


def coco_detections(preds: list[dict]) -> list[dict]:
    """Detections in COCO results format (the list ``COCO.loadRes`` takes)."""
    return [{"image_id": image_id, "category_id": label, "bbox": box, "score": score}
            for image_id, pred in enumerate(preds)
            for box, score, label in zip(pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist())]


def run_cocoeval(lib: dict[str, Any], gt_dataset: dict, detections: list[dict]) -> Any:
    """evaluate → accumulate → summarize, in memory, with the libraries' console output swallowed.

    pycocotools' ``loadRes`` cannot take an empty list, so "no detections at all" gets an empty results COCO
    built by hand (what faster-coco-eval's ``loadRes`` does itself).
    """
    quiet = {"print_function": lambda *args, **kwargs: None} if lib["name"] == "faster_coco_eval" else {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = lib["COCO"]()
        gt.dataset = gt_dataset
        gt.createIndex()
        if detections:
            dt = gt.loadRes(detections)
        else:
            dt = lib["COCO"]()
            dt.dataset = {"images": gt_dataset["images"], "categories": gt_dataset["categories"], "annotations": []}
            dt.createIndex()
        coco_eval = lib["COCOeval"](gt, dt, "bbox", **quiet)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _per_class_ap(coco_eval: Any) -> dict[str, list]:
    """Per-class AP@[.5:.95] and AP@.5 from COCOeval's precision array [T, R, K, A, M] (area all, maxDets 100)."""
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    t50 = int(np.argmin(np.abs(np.asarray(coco_eval.params.iouThrs) - IOU_THRESHOLD)))
    return {"per_class_ap": [_mean_valid(precision[:, :, k]) for k in range(precision.shape[2])],
            "per_class_ap50": [_mean_valid(precision[t50, :, k]) for k in range(precision.shape[2])]}


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean of the entries COCOeval filled in (> -1), as ``COCOeval._summarize`` averages; None if none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def match_image_class(dt_boxes, dt_scores, gt_boxes, gt_crowd, gt_area, iou_fn, max_dets: int = 100):
    """COCOeval.evaluateImg for one image, one class, area "all" and IoU 0.5 only.

    Returns (scores, matched, ignored) for the kept detections (top ``max_dets`` by score, stable order). Same
    rules as pycocotools: ground truth sorted with crowd/ignored last, each detection greedily takes the
    best-IoU free ground truth (crowd regions may be taken many times), a detection matched to an ignored
    region is ignored, and so is an unmatched detection whose area lies outside the area range.
    """
    order = np.argsort(-dt_scores, kind="mergesort")[:max_dets]
    boxes, scores = dt_boxes[order], dt_scores[order]
    matched = np.zeros(len(order), bool)
    ignored = np.zeros(len(order), bool)
    if len(gt_boxes):
        gt_ignore = (gt_crowd != 0) | (gt_area < AREA_ALL[0]) | (gt_area > AREA_ALL[1])
        gt_order = np.argsort(gt_ignore, kind="mergesort")
        ious = np.asarray(iou_fn(boxes.tolist(), gt_boxes.tolist(), gt_crowd.astype(int).tolist()))
        ious = ious.reshape(len(order), len(gt_boxes))[:, gt_order]
        _greedy_match(ious, gt_ignore[gt_order], gt_crowd[gt_order] != 0, matched, ignored)
    dt_area = boxes[:, 2] * boxes[:, 3]
    ignored |= ~matched & ((dt_area < AREA_ALL[0]) | (dt_area > AREA_ALL[1]))
    return scores, matched, ignored


def _greedy_match(ious, gt_ignore, gt_crowd, matched, ignored) -> None:
    """The inner loop of pycocotools' evaluateImg at one IoU threshold, line for line (fills matched/ignored)."""
    gt_taken = np.zeros(len(gt_ignore), bool)
    for d in range(ious.shape[0]):
        best, m = min(IOU_THRESHOLD, 1 - 1e-10), -1
        for g in range(ious.shape[1]):
            if gt_taken[g] and not gt_crowd[g]:
                continue
            if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                break
            if ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m > -1:
            matched[d], ignored[d], gt_taken[m] = True, gt_ignore[m], True


def class_detections(preds: list[dict], refs: list[dict], num_labels: int, iou_fn) -> tuple[list, np.ndarray]:
    """Per class: (scores, is_tp) of its non-ignored detections, and the non-crowd ground-truth counts."""
    per_class: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(num_labels)]
    num_gt = np.zeros(num_labels, np.int64)
    for pred, ref in zip(preds, refs):
        crowd, area = ref["iscrowd"], ref["area"]
        valid = (crowd == 0) & (area >= AREA_ALL[0]) & (area <= AREA_ALL[1])
        num_gt += np.bincount(ref["labels"][valid], minlength=num_labels)
        for k in np.unique(pred["labels"]):
            d, g = pred["labels"] == k, ref["labels"] == k
            scores, tp, ign = match_image_class(pred["boxes"][d], pred["scores"][d], ref["boxes"][g], crowd[g],
                                                area[g], iou_fn)
            per_class[k].append((scores[~ign], tp[~ign]))
    merged = [_concat(items) for items in per_class]
    return merged, num_gt


def _concat(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Scores sorted descending, with the cumulative TP count at each position."""
    if not items:
        return np.zeros(0), np.zeros(0, np.int64)
    scores = np.concatenate([s for s, _ in items])
    tp = np.concatenate([t for _, t in items])
    order = np.argsort(-scores, kind="mergesort")
    return scores[order], np.cumsum(tp[order])


def _operating_point(preds: list[dict], refs: list[dict], num_labels: int, iou_fn) -> dict[str, Any]:
    """Per-class precision/recall at the shared score threshold that maximises mean F1 (see the module docs)."""
    per_class, num_gt = class_detections(preds, refs, num_labels, iou_fn)
    with_gt = [k for k in range(num_labels) if num_gt[k] > 0]
    candidates = np.unique(np.concatenate([per_class[k][0] for k in with_gt] or [np.zeros(0)]))  # ascending
    best = None
    if candidates.size:
        f1_sum = np.zeros(candidates.size)
        for k in with_gt:
            kept, tp = _counts_at(per_class[k], candidates)
            f1_sum += 2 * tp / (kept + num_gt[k])
        best = int(np.argmax(f1_sum))  # first maximum = lowest threshold, the most inclusive
    precision: list[float | None] = [None] * num_labels
    recall: list[float | None] = [None] * num_labels
    for k in with_gt:
        kept, tp = _counts_at(per_class[k], candidates[best:best + 1]) if best is not None else ([0], [0])
        precision[k] = float(tp[0] / kept[0]) if kept[0] else 0.0
        recall[k] = float(tp[0] / num_gt[k])
    f1 = [2 * p * r / (p + r) if p + r > 0 else 0.0 for p, r in zip(precision, recall) if p is not None]
    return {
        "per_class_precision": precision, "per_class_recall": recall, "per_class_num_gt": num_gt.tolist(),
        "precision": _mean([p for p in precision if p is not None]),
        "recall": _mean([r for r in recall if r is not None]), "f1": _mean(f1),
        "score_threshold": float(candidates[best]) if best is not None else None,
    }


def _counts_at(scores_cumtp: tuple[np.ndarray, np.ndarray], thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(detections with score >= t, true positives among them) for each threshold t."""
    scores, cum_tp = scores_cumtp
    kept = np.searchsorted(-scores, -thresholds, side="right")
    tp = np.where(kept > 0, cum_tp[np.maximum(kept - 1, 0)] if cum_tp.size else 0, 0)
    return kept, tp


def _mean(values: list[float]) -> float:
    """Mean of a possibly empty list (0.0 when empty: no class with ground truth)."""
    return float(np.mean(values)) if values else 0.0
