"""COCO detection mAP for hf-tasks, as an ``evaluate`` module wrapping faster-coco-eval (or pycocotools).

Loaded by path (``hf_tasks.metrics.load_metric("coco_map")``), so it works offline. The twelve summary numbers
come straight from the library's ``COCOeval.stats``; we only build the COCO structures in memory and read the
library's accumulated arrays back out. The only thing computed here is the per-class precision/recall operating
point, which COCOeval does not report (see ``_KWARGS_DESCRIPTION``), from COCOeval's IoU-0.5 matching redone with
numpy for all images and classes at once (``match_detections``). evaluate's loader scans top-level import lines
(one module per line) and instantiates the first ``EvaluationModule`` subclass it finds, so the base class is
referenced as ``evaluate.Metric`` and the COCO backends are imported lazily: either one being installed is enough.
"""

import contextlib
import io
import itertools
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
MAX_DETS = 100  # COCOeval's largest maxDets: detections kept per image and class
PAIR_CHUNK = 1 << 20  # (detection, ground truth) pairs matched at a time: bounds the memory of the matching
KEYS = {"predictions": ("boxes", "scores", "labels"), "references": ("boxes", "labels", "iscrowd", "area")}
AREA_ALL = (0.0, 1e5**2)  # COCOeval's "all" area range
BOX_RULE = "boxes must be [x, y, w, h] with finite numbers (no NaN or inf)"
_FLOATS, _INTS = datasets.Sequence(datasets.Value("float64")), datasets.Sequence(datasets.Value("int64"))
_BOXES = datasets.Sequence(datasets.Sequence(datasets.Value("float64"), length=4))


class CocoMap(evaluate.Metric):
    """COCO mAP: the library computes every AP/AR; this class only builds its inputs and reads its arrays."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": {"boxes": _BOXES, "scores": _FLOATS, "labels": _INTS},
                "references": {"boxes": _BOXES, "labels": _INTS, "iscrowd": _INTS, "area": _FLOATS}}),
            reference_urls=["https://cocodataset.org/#detection-eval", "https://github.com/MiXaiLL76/faster_coco_eval"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Check and normalise each image for evaluate's fixed schema; errors name it by its index since ``compute``."""
        start = getattr(self, "_added", 0) if self.writer is not None else 0  # compute() closes the writer
        batch = {"predictions": predictions, "references": references}
        for side, items in list(batch.items()):
            if items is not None:
                batch[side] = [{k: v.tolist() for k, v in _check(x, side, start + i).items()}
                               for i, x in enumerate(items)]
        out = super().add_batch(**batch, **kwargs)
        self._added = start + len(batch["predictions"] if predictions is not None else batch["references"] or [])
        return out

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Single-image counterpart of ``add_batch``, with the same checks and normalisation."""
        return self.add_batch(predictions=None if prediction is None else [prediction],
                              references=None if reference is None else [reference], **kwargs)

    def compute(self, *, predictions=None, references=None, **kwargs):
        """evaluate's ``compute``; but when all the data comes in this call (nothing added before, one process) the
        checked arrays skip the round trip through evaluate's Arrow buffer, which returns the same values, slowly."""
        direct = predictions is not None and references is not None and len(predictions) == len(references)
        if not direct or self.writer is not None or self.num_process > 1:  # evaluate's path (and length error)
            return super().compute(predictions=predictions, references=references, **kwargs)
        return _evaluate(_columns(predictions, "predictions"), _columns(references, "references"), **kwargs)

    def _compute(self, predictions, references, num_labels=None, label_names=None, backend=None):
        return _evaluate(_columns(predictions, "predictions"), _columns(references, "references"),
                         num_labels=num_labels, label_names=label_names, backend=backend)


def _evaluate(det: dict, gt: dict, num_labels=None, label_names=None, backend=None) -> dict[str, Any]:
    """Every output, from the columns of all predictions and of all references (see ``_columns``)."""
    if det["num_images"] != gt["num_images"]:
        raise ValueError(f"{det['num_images']} predictions but {gt['num_images']} references")
    if not gt["num_images"]:
        raise ValueError("cannot compute coco_map on zero images")
    n = _resolve_num_labels(np.concatenate([det["labels"], gt["labels"]]), num_labels, label_names)
    lib = _load_backend(backend)
    names = list(label_names) if label_names is not None else [str(k) for k in range(n)]
    coco_eval = run_cocoeval(lib, coco_ground_truth(gt, names), coco_detections(det))
    result = {name: float(value) for name, value in zip(STAT_NAMES, coco_eval.stats[:12])}
    result.update(_per_class_ap(coco_eval))
    result.update(_operating_point(det, gt, n))
    result["num_images"] = gt["num_images"]
    if label_names is not None:
        result["per_class_ap_by_name"] = dict(zip(names, result["per_class_ap"]))
    return result


def _columns(items: Any, side: str) -> dict[str, Any]:
    """All images' boxes as one checked array per key of ``KEYS[side]``, plus ``image`` (each box's image index) and
    ``num_images``: converted at once if every image is regular, else image by image (``_check`` raises the error)."""
    items = list(items)
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError, OverflowError):
        out = _bulk(items, side)
        if out is not None:
            return out
    return _bulk([_check(item, side, i) for i, item in enumerate(items)], side, checked=True)


def _bulk(items: list, side: str, checked: bool = False) -> dict[str, Any] | None:
    """``_check`` of every image at once; None when an image is irregular (boxes not rows of 4, a key of another
    length, a non-integer label, a number that is not finite) so that ``_check`` goes image by image."""
    counts = [len(item["boxes"]) for item in items]
    out: dict[str, Any] = {"image": np.repeat(np.arange(len(items)), counts), "num_images": len(items)}
    total = len(out["image"])
    for key in KEYS[side]:
        values = [item.get(key) if key in ("iscrowd", "area") else item[key] for item in items]
        if any(value is not None and len(value) != n for value, n in zip(values, counts)):
            return None
        values = [itertools.repeat(0, n) if value is None else value for value, n in zip(values, counts)]
        dtype = np.float64 if key in ("boxes", "scores", "area") else None
        if all(isinstance(value, np.ndarray) for value in values):
            array = np.concatenate(values) if values else np.zeros(0)
            array = array if dtype is None else array.astype(dtype)
        else:
            array = np.array(list(itertools.chain.from_iterable(values)), dtype)
        array = array.reshape(-1, 4) if key == "boxes" and not array.size else array
        plain = np.isfinite(array).all() if dtype else array.dtype.kind in "ib" or not array.size  # else: irregular
        if array.shape != ((total, 4) if key == "boxes" else (total,)) or not (checked or plain):
            return None
        out[key] = array if dtype else array.astype(np.int64)
    if side == "references":  # a missing area is the box area
        given = np.repeat([item.get("area") is not None for item in items], counts).astype(bool)
        out["area"] = np.where(given, out["area"], out["boxes"][:, 2] * out["boxes"][:, 3])
    return out


def _check(item: dict, side: str, index: int) -> dict[str, np.ndarray]:
    """One image as arrays, checked: boxes, scores and areas finite, integer labels and iscrowd, matching lengths.
    A reference's ``iscrowd`` defaults to 0 and its ``area`` to the box area."""
    name = f"{side}[{index}]"
    out = {"boxes": _finite(item["boxes"], f"{name}['boxes']", BOX_RULE, width=4)}
    if side == "predictions":
        out["scores"] = _finite(item["scores"], f"{name}['scores']", "scores must be finite")
    out["labels"] = _integers(item["labels"], f"{name}['labels']")
    if side == "references":
        iscrowd, area = item.get("iscrowd"), item.get("area")
        out["iscrowd"] = (np.zeros(len(out["boxes"]), np.int64) if iscrowd is None
                          else _integers(iscrowd, f"{name}['iscrowd']", "0 or 1"))
        out["area"] = (out["boxes"][:, 2] * out["boxes"][:, 3] if area is None
                       else _finite(area, f"{name}['area']", "areas must be finite"))
    if len({len(value) for value in out.values()}) > 1:
        raise ValueError(f"{name}: " + ", ".join(f"{len(value)} {key}" for key, value in out.items()))
    return out


def _finite(values: Any, name: str, rule: str, width: int = 1) -> np.ndarray:
    """``values`` as float64 rows of ``width`` numbers (flat when 1); a ValueError names the first bad row."""
    try:
        array = np.asarray(values if values is not None else [], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must hold numbers: {err}") from None
    if array.size % width:
        raise ValueError(f"{name} holds {array.size} numbers, not a multiple of {width}: {rule}")
    array = array.reshape(-1, width) if width > 1 else array.reshape(-1)
    if (bad := ~np.isfinite(array.reshape(-1, width)).all(axis=1)).any():
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


def _resolve_num_labels(labels: np.ndarray, num_labels: Any, label_names: Any) -> int:
    """Number of classes, checking every label id lies in [0, num_labels)."""
    if label_names is not None:
        if num_labels is not None and num_labels != len(label_names):
            raise ValueError(f"num_labels={num_labels} but {len(label_names)} label_names were given")
        num_labels = len(label_names)
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
    """COCO and COCOeval of faster-coco-eval (preferred: C++ evaluate) or pycocotools."""
    if name not in (None, "faster_coco_eval", "pycocotools"):
        raise ValueError(f"unknown backend {name!r}; known: faster_coco_eval, pycocotools")
    if name in (None, "faster_coco_eval"):
        with contextlib.suppress(ImportError if name is None else ()):  # an explicit choice must be installed
            from faster_coco_eval import COCO, COCOeval_faster

            return {"name": "faster_coco_eval", "COCO": COCO, "COCOeval": COCOeval_faster}
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return {"name": "pycocotools", "COCO": COCO, "COCOeval": COCOeval}


def coco_ground_truth(gt: dict[str, Any], names: list[str]) -> dict:
    """A COCO ground-truth dataset dict: image id = position, category id = label id, annotation ids from 1; every
    class is a category (evaluated, and excluded if without ground truth, as COCOeval does), every image listed."""
    columns = (gt[key].tolist() for key in ("image", "labels", "boxes", "area", "iscrowd"))
    annotations = [{"id": i, "image_id": image, "category_id": label, "bbox": box, "area": area, "iscrowd": crowd}
                   for i, (image, label, box, area, crowd) in enumerate(zip(*columns), start=1)]
    return {"images": [{"id": i} for i in range(gt["num_images"])], "annotations": annotations,
            "categories": [{"id": k, "name": name} for k, name in enumerate(names)]}


def coco_detections(det: dict[str, Any]) -> list[dict]:
    """Detections as the annotations ``COCO.loadRes`` makes of them for boxes (ids from 1 in input order, area
    w * h, not crowd), less the polygon it adds, which bbox evaluation never reads."""
    columns = (det[key].tolist() for key in ("image", "labels", "boxes", "scores"))
    area = (det["boxes"][:, 2] * det["boxes"][:, 3]).tolist()
    return [{"image_id": image, "category_id": label, "bbox": box, "score": score, "area": a, "id": i, "iscrowd": 0}
            for i, (image, label, box, score, a) in enumerate(zip(*columns, area), start=1)]


def run_cocoeval(lib: dict[str, Any], gt_dataset: dict, detections: list[dict]) -> Any:
    """COCOs built in memory (the results one as ``loadRes`` builds it), then evaluate → accumulate → summarize,
    console output swallowed."""
    quiet = {"print_function": lambda *args, **kwargs: None} if lib["name"] == "faster_coco_eval" else {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt, dt = lib["COCO"](), lib["COCO"]()
        gt.dataset = gt_dataset
        dt.dataset = {"images": list(gt_dataset["images"]), "annotations": detections,
                      "categories": [dict(category) for category in gt_dataset["categories"]]}
        gt.createIndex()
        dt.createIndex()
        coco_eval = lib["COCOeval"](gt, dt, "bbox", **quiet)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _per_class_ap(coco_eval: Any) -> dict[str, list]:
    """Per-class AP@[.5:.95] and AP@.5 from COCOeval's precision array [T, R, K, A, M] (area all, maxDets 100): the
    mean of the entries COCOeval filled in (> -1), as ``COCOeval._summarize`` averages; None if there is none."""
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    t50 = int(np.argmin(np.abs(np.asarray(coco_eval.params.iouThrs) - IOU_THRESHOLD)))
    return {key: [float(v[v > -1].mean()) if (v > -1).any() else None for v in per_class] for key, per_class in
            (("per_class_ap", np.moveaxis(precision, 2, 0)), ("per_class_ap50", precision[t50].T))}


def box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of each row pair (dt[i], gt[i]) with the arithmetic of pycocotools' and faster-coco-eval's ``bbIou``,
    operation for operation (so the very same doubles); a crowd region's union is the detection's own area."""
    iw = np.minimum(dt[:, 0] + dt[:, 2], gt[:, 0] + gt[:, 2]) - np.maximum(dt[:, 0], gt[:, 0])
    ih = np.minimum(dt[:, 1] + dt[:, 3], gt[:, 1] + gt[:, 3]) - np.maximum(dt[:, 1], gt[:, 1])
    hit = (iw > 0) & (ih > 0)
    inter, da = iw[hit] * ih[hit], dt[hit, 2] * dt[hit, 3]
    iou = np.zeros(len(dt))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou[hit] = inter / np.where(crowd[hit], da, da + gt[hit, 2] * gt[hit, 3] - inter)
    return iou


def match_detections(det: dict, gt: dict, num_labels: int, max_dets: int = MAX_DETS) -> tuple[np.ndarray, ...]:
    """COCOeval.evaluateImg at IoU 0.5 and area "all" for all images and classes at once: (kept, matched, ignored).
    pycocotools' rules: per image and class the top ``max_dets`` detections by score are kept (stable order); in
    that order each greedily takes the best-IoU free ground truth (regular boxes before crowd/ignored ones, the last
    on equal IoU; crowd regions may be taken many times); one matched to an ignored box is ignored, and so is an
    unmatched one whose area is outside the range. Pairs of a detection and a ground truth of its image and class
    are built in chunks of at most ``PAIR_CHUNK`` and matched one detection rank at a time."""
    det_key, gt_key = det["image"] * num_labels + det["labels"], gt["image"] * num_labels + gt["labels"]
    order = np.lexsort((-det["scores"], det_key))  # by group, then by score descending; stable
    starts = np.flatnonzero(np.r_[True, np.diff(det_key[order]) != 0])
    rank = np.empty(len(order), np.int64)  # position in its group
    rank[order] = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    gt_ignore = (gt["iscrowd"] != 0) | (gt["area"] < AREA_ALL[0]) | (gt["area"] > AREA_ALL[1])
    gt_order = np.lexsort((gt_ignore, gt_key))  # by group, then regular before ignored; stable
    sorted_gt = {"key": gt_key[gt_order], "boxes": gt["boxes"][gt_order], "crowd": gt["iscrowd"][gt_order] != 0,
                 "ignore": gt_ignore[gt_order], "taken": np.zeros(len(gt_order), bool)}
    kept_order = order[rank[order] < max_dets]
    lo = np.searchsorted(sorted_gt["key"], det_key[kept_order], side="left")
    counts = np.searchsorted(sorted_gt["key"], det_key[kept_order], side="right") - lo
    matched, match_ignored, cum = np.zeros(len(order), bool), np.zeros(len(order), bool), np.cumsum(counts)
    edges = np.unique(np.r_[0, np.searchsorted(cum, np.arange(PAIR_CHUNK, cum[-1] if cum.size else 0, PAIR_CHUNK)),
                            len(kept_order)])
    for a, b in itertools.pairwise(edges):
        _match_chunk(det, rank, kept_order[a:b], lo[a:b], counts[a:b], sorted_gt, matched, match_ignored)
    area = det["boxes"][:, 2] * det["boxes"][:, 3]
    ignored = np.where(matched, match_ignored, (area < AREA_ALL[0]) | (area > AREA_ALL[1]))
    return rank < max_dets, matched, ignored


def _match_chunk(det, rank, dets, lo, counts, sorted_gt, matched, match_ignored) -> None:
    """Greedy matching of ``dets`` (whole groups, or a group's next ranks), filling matched / match_ignored: the
    candidate pairs sorted by rank, detection, then preference (regular before ignored, higher IoU, later box)."""
    pair_det = np.repeat(dets, counts)
    pair_gt = np.arange(len(pair_det)) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
    iou = box_iou(det["boxes"][pair_det], sorted_gt["boxes"][pair_gt], sorted_gt["crowd"][pair_gt])
    candidate = iou >= min(IOU_THRESHOLD, 1 - 1e-10)
    pair_det, pair_gt, iou = pair_det[candidate], pair_gt[candidate], iou[candidate]
    order = np.lexsort((-pair_gt, -iou, sorted_gt["ignore"][pair_gt], pair_det, rank[pair_det]))
    pair_det, pair_gt = pair_det[order], pair_gt[order]
    edges = np.r_[np.flatnonzero(np.diff(rank[pair_det])) + 1, len(pair_det)]
    for a, b in zip(np.r_[0, edges[:-1]], edges):  # one rank at a time: its detections are in different groups
        d, g = pair_det[a:b], pair_gt[a:b]
        free = ~sorted_gt["taken"][g] | sorted_gt["crowd"][g]
        d, g = d[free], g[free]
        first = np.r_[True, d[1:] != d[:-1]][:len(d)]  # each detection's preferred free ground truth
        d, g = d[first], g[first]
        matched[d], match_ignored[d], sorted_gt["taken"][g] = True, sorted_gt["ignore"][g], True


def _operating_point(det: dict, gt: dict, num_labels: int) -> dict[str, Any]:
    """Per-class precision/recall at the shared score threshold that maximises mean F1 (see the module docs)."""
    kept, matched, ignored = match_detections(det, gt, num_labels)
    valid = (gt["iscrowd"] == 0) & (gt["area"] >= AREA_ALL[0]) & (gt["area"] <= AREA_ALL[1])
    num_gt = np.bincount(gt["labels"][valid], minlength=num_labels)  # non-crowd ground truth per class
    use = kept & ~ignored & (num_gt[det["labels"]] > 0)  # the detections scored, of the classes with ground truth
    order = np.argsort(det["scores"][use], kind="stable")
    scores, labels, tp = det["scores"][use][order], det["labels"][use][order], matched[use][order]
    candidates, first = np.unique(scores, return_index=True)  # ascending; scores[first[j]:] >= candidates[j]
    f1_sum = np.zeros(candidates.size)
    for k in np.flatnonzero(num_gt):  # class by class, in order, as a plain loop adds (ties resolve the same)
        of_k = labels == k
        kept_at = np.cumsum(of_k[::-1])[::-1][first]  # detections of class k scoring >= each candidate
        tp_at = np.cumsum((of_k & tp)[::-1])[::-1][first]  # true positives among them
        f1_sum += 2 * tp_at / (kept_at + num_gt[k])
    best = int(np.argmax(f1_sum)) if candidates.size else None  # first maximum = lowest threshold, most inclusive
    above = scores >= candidates[best] if best is not None else np.zeros(len(scores), bool)
    kept_n, tp_n = (np.bincount(labels[mask], minlength=num_labels) for mask in (above, above & tp))
    precision, recall = [None] * num_labels, [None] * num_labels  # None: a class without ground truth
    for k in np.flatnonzero(num_gt).tolist():
        precision[k] = float(tp_n[k] / kept_n[k]) if kept_n[k] else 0.0
        recall[k] = float(tp_n[k] / num_gt[k])
    pr = [(p, r) for p, r in zip(precision, recall) if p is not None]
    f1 = [2 * p * r / (p + r) if p + r > 0 else 0.0 for p, r in pr]
    means = [float(np.mean(v)) if v else 0.0 for v in ([p for p, _ in pr], [r for _, r in pr], f1)]  # 0: no class
    return {"per_class_precision": precision, "per_class_recall": recall, "per_class_num_gt": num_gt.tolist(),
            "precision": means[0], "recall": means[1], "f1": means[2],
            "score_threshold": float(candidates[best]) if best is not None else None}
