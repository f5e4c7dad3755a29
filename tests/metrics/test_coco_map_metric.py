"""The coco_map evaluate module: its 12 stats equal pycocotools' COCOeval run directly, on hand-built and random
cases (empty images, classes never predicted or never present, crowd regions), its per-class precision/recall a
brute-force sweep over pycocotools' own IoU-0.5 matches (which its vectorised matching reproduces one by one)."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hf_tasks.metrics import available_metrics, load_metric
from tests.helpers import compute_metric_offline

STATS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
         "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
BACKENDS = ["faster_coco_eval", "pycocotools"]


@pytest.fixture(scope="module")
def metric():
    return load_metric("coco_map")


@pytest.fixture(scope="module")
def module(metric):
    return sys.modules[type(metric).__module__]


def _pycocotools_eval(preds: list[dict], refs: list[dict], num_labels: int) -> COCOeval:
    """The reference: pycocotools COCOeval on the same images, written independently of the module."""
    anns, dets = [], []
    for i, ref in enumerate(refs):
        boxes = np.asarray(ref["boxes"], float).reshape(-1, 4)
        crowd = ref.get("iscrowd", [0] * len(boxes))
        area = ref.get("area", [b[2] * b[3] for b in boxes.tolist()])
        for box, label, c, a in zip(boxes.tolist(), ref["labels"], crowd, area):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(label), "bbox": box,
                         "area": float(a), "iscrowd": int(c)})
    for i, pred in enumerate(preds):
        for box, score, label in zip(np.asarray(pred["boxes"], float).reshape(-1, 4).tolist(), pred["scores"],
                                     pred["labels"]):
            dets.append({"image_id": i, "category_id": int(label), "bbox": box, "score": float(score)})
    images = [{"id": i} for i in range(len(refs))]
    categories = [{"id": k} for k in range(num_labels)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "categories": categories, "annotations": anns}
        gt.createIndex()
        if dets:
            dt = gt.loadRes(dets)
        else:  # pycocotools' loadRes cannot take an empty list
            dt = COCO()
            dt.dataset = {"images": images, "categories": categories, "annotations": []}
            dt.createIndex()
        coco_eval = COCOeval(gt, dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _brute_force_pr(coco_eval: COCOeval, num_labels: int) -> tuple[list, list, float | None]:
    """Shared-threshold max-mean-F1 precision/recall from pycocotools' evalImgs (IoU 0.5, area all, 100 dets)."""
    scores = [[] for _ in range(num_labels)]
    tps = [[] for _ in range(num_labels)]
    num_gt = np.zeros(num_labels, int)
    for e in coco_eval.evalImgs:
        if e is None or e["aRng"] != coco_eval.params.areaRng[0]:
            continue
        k = e["category_id"]
        num_gt[k] += int(np.sum(np.asarray(e["gtIgnore"]) == 0))
        for s, m, ig in zip(e["dtScores"], e["dtMatches"][0], e["dtIgnore"][0]):
            if not ig:
                scores[k].append(s)
                tps[k].append(m > 0)
    with_gt = [k for k in range(num_labels) if num_gt[k]]
    thresholds = sorted({s for k in with_gt for s in scores[k]})

    def counts(k: int, t: float) -> tuple[int, int]:
        kept = [tp for s, tp in zip(scores[k], tps[k]) if s >= t]
        return len(kept), sum(kept)

    best_t, best_f1 = None, -1.0
    for t in thresholds:
        f1 = sum(2 * counts(k, t)[1] / (counts(k, t)[0] + num_gt[k]) for k in with_gt)
        if f1 > best_f1:
            best_t, best_f1 = t, f1
    precision, recall = [None] * num_labels, [None] * num_labels
    for k in with_gt:
        kept, tp = counts(k, best_t) if best_t is not None else (0, 0)
        precision[k], recall[k] = (tp / kept if kept else 0.0), tp / num_gt[k]
    return precision, recall, best_t


def _random_case(seed: int, num_images: int = 20, num_labels: int = 5) -> tuple[list[dict], list[dict]]:
    """Random boxes of all sizes; noisy, duplicated and spurious detections; crowd regions; empty images.

    Class ``num_labels - 1`` is never predicted and class ``num_labels - 2`` never has ground truth.
    """
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for _ in range(num_images):
        n_gt = int(rng.choice([0, 0, 1, 3, 6]))
        xy = rng.uniform(0, 400, (n_gt, 2))
        wh = np.exp(rng.uniform(np.log(4), np.log(250), (n_gt, 2)))
        gt_boxes = np.concatenate([xy, wh], axis=1)
        gt_labels = rng.choice([0, 1, 2, num_labels - 1], n_gt)
        ref = {"boxes": gt_boxes.tolist(), "labels": gt_labels.tolist(),
               "iscrowd": (rng.random(n_gt) < 0.1).astype(int).tolist()}
        if rng.random() < 0.3:
            ref["area"] = (wh.prod(axis=1) * rng.uniform(0.3, 1.0, n_gt)).tolist()  # e.g. a mask area
        keep = rng.random(n_gt) < 0.8
        noisy = gt_boxes[keep] + rng.normal(0, 0.08, (keep.sum(), 4)) * np.tile(gt_boxes[keep, 2:], 2)
        noisy[:, 2:] = np.maximum(noisy[:, 2:], 1.0)
        n_fp = int(rng.integers(0, 4))
        spurious = np.concatenate([rng.uniform(0, 400, (n_fp, 2)), rng.uniform(4, 150, (n_fp, 2))], axis=1)
        labels = np.concatenate([gt_labels[keep], rng.integers(0, num_labels - 1, n_fp)])
        labels[rng.random(len(labels)) < 0.1] = num_labels - 2
        labels[labels == num_labels - 1] = 0
        boxes = np.concatenate([noisy, spurious])
        pred = {"boxes": boxes.tolist(), "scores": rng.random(len(boxes)).round(2).tolist(), "labels": labels.tolist()}
        if rng.random() < 0.15:
            pred = {"boxes": [], "scores": [], "labels": []}
        preds.append(pred)
        refs.append(ref)
    return preds, refs


def _assert_stats_equal(out: dict, coco_eval: COCOeval) -> None:
    for name, expected in zip(STATS, coco_eval.stats):
        assert math.isclose(out[name], expected, abs_tol=1e-9), (name, out[name], expected)


def _assert_lists_close(ours: list, theirs: list) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert (a is None) == (b is None or (isinstance(b, float) and math.isnan(b))), (ours, theirs)
        if a is not None:
            assert math.isclose(a, b, abs_tol=1e-9), (ours, theirs)


def test_listed() -> None:
    assert "coco_map" in available_metrics()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(12))
def test_random_cases_match_pycocotools(metric, seed: int, backend: str) -> None:
    preds, refs = _random_case(seed)
    out = metric.compute(predictions=preds, references=refs, num_labels=5, backend=backend)
    coco_eval = _pycocotools_eval(preds, refs, 5)
    _assert_stats_equal(out, coco_eval)
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    expected_ap = [float(np.mean(p[p > -1])) if (p > -1).any() else None for p in np.moveaxis(precision, 2, 0)]
    _assert_lists_close(out["per_class_ap"], expected_ap)
    expected_ap50 = [float(np.mean(p[p > -1])) if (p > -1).any() else None for p in precision[0].T]
    _assert_lists_close(out["per_class_ap50"], expected_ap50)
    assert out["per_class_ap"][3] is None and out["per_class_recall"][3] is None  # class 3: no ground truth
    precision_bf, recall_bf, threshold = _brute_force_pr(coco_eval, 5)
    _assert_lists_close(out["per_class_precision"], precision_bf)
    _assert_lists_close(out["per_class_recall"], recall_bf)
    assert out["score_threshold"] == threshold
    assert out["num_images"] == 20
    json.dumps(out, allow_nan=False)


def test_recall_at_lowest_threshold_equals_cocoeval(metric) -> None:
    """With every detection a true positive the chosen threshold keeps them all: recall = COCOeval's recall."""
    preds, refs = _random_case(3)
    preds = [{"boxes": r["boxes"], "scores": list(np.linspace(0.9, 0.1, len(r["boxes"]))), "labels": r["labels"]}
             for r in refs]
    out = metric.compute(predictions=preds, references=refs, num_labels=5)
    cocoeval_recall = _pycocotools_eval(preds, refs, 5).eval["recall"][0, :, 0, -1]
    for ours, theirs in zip(out["per_class_recall"], cocoeval_recall):
        assert (ours is None) if theirs == -1 else math.isclose(ours, theirs)


def test_perfect_predictions(metric) -> None:
    refs = [{"boxes": [[0, 0, 10, 10], [50, 50, 60, 40]], "labels": [0, 1]},
            {"boxes": [[5, 5, 200, 150]], "labels": [1]}, {"boxes": [], "labels": []}]
    preds = [{**r, "scores": [0.9] * len(r["labels"])} for r in refs]
    out = metric.compute(predictions=preds, references=refs)
    assert all(out[name] == 1.0 for name in STATS)
    assert out["per_class_ap"] == [1.0, 1.0] and out["per_class_precision"] == [1.0, 1.0]
    assert out["per_class_recall"] == [1.0, 1.0] and out["per_class_num_gt"] == [1, 2]
    _assert_stats_equal(out, _pycocotools_eval(preds, refs, 2))


def test_known_iou(metric) -> None:
    """IoU 0.78 matches at thresholds .50-.75 (6 of 10): AP = 0.6, AP50 = 1, AP75 = 1; medium box, area 100."""
    refs = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    preds = [{"boxes": [[0, 0, 10, 7.8]], "scores": [0.5], "labels": [0]}]
    out = metric.compute(predictions=preds, references=refs)
    assert math.isclose(out["map"], 0.6) and out["map_50"] == 1.0 and out["map_75"] == 1.0
    assert math.isclose(out["map_small"], 0.6) and out["map_medium"] == -1.0 and out["map_large"] == -1.0
    assert math.isclose(out["mar_100"], 0.6)
    _assert_stats_equal(out, _pycocotools_eval(preds, refs, 1))


def test_empty_images_and_false_positives(metric) -> None:
    """A detection on an image without ground truth is a false positive ranked above the true one: AP50 ~ 0.5."""
    refs = [{"boxes": [[0, 0, 40, 40]], "labels": [0]}, {"boxes": [], "labels": []}, {"boxes": [], "labels": []}]
    preds = [{"boxes": [[0, 0, 40, 40]], "scores": [0.5], "labels": [0]},
             {"boxes": [[0, 0, 40, 40]], "scores": [0.9], "labels": [0]},
             {"boxes": [], "scores": [], "labels": []}]
    out = metric.compute(predictions=preds, references=refs)
    _assert_stats_equal(out, _pycocotools_eval(preds, refs, 1))
    assert math.isclose(out["map_50"], 0.5, abs_tol=0.01)
    assert out["per_class_precision"] == [0.5] and out["per_class_recall"] == [1.0]
    assert out["score_threshold"] == 0.5 and out["num_images"] == 3


def test_class_never_predicted_and_class_without_ground_truth(metric) -> None:
    refs = [{"boxes": [[0, 0, 40, 40], [100, 100, 30, 30]], "labels": [0, 1]}]
    preds = [{"boxes": [[0, 0, 40, 40], [200, 200, 10, 10]], "scores": [0.8, 0.7], "labels": [0, 2]}]
    out = metric.compute(predictions=preds, references=refs, label_names=["cat", "dog", "bird"])
    _assert_stats_equal(out, _pycocotools_eval(preds, refs, 3))
    assert out["per_class_ap"] == [1.0, 0.0, None] and out["map"] == 0.5
    assert out["per_class_precision"] == [1.0, 0.0, None] and out["per_class_recall"] == [1.0, 0.0, None]
    assert out["per_class_ap_by_name"] == {"cat": 1.0, "dog": 0.0, "bird": None}


def test_crowd_regions_are_ignored(metric) -> None:
    """Detections inside a crowd region neither count as true nor false positives; crowd is not ground truth."""
    refs = [{"boxes": [[0, 0, 40, 40], [100, 100, 200, 200]], "labels": [0, 0], "iscrowd": [0, 1]}]
    preds = [{"boxes": [[110, 110, 50, 50], [0, 0, 40, 40], [150, 150, 60, 60]], "scores": [0.9, 0.8, 0.7],
              "labels": [0, 0, 0]}]
    out = metric.compute(predictions=preds, references=refs)
    _assert_stats_equal(out, _pycocotools_eval(preds, refs, 1))
    assert out["map"] == 1.0 and out["per_class_num_gt"] == [1]
    assert out["per_class_precision"] == [1.0] and out["per_class_recall"] == [1.0]


def test_equal_iou_takes_the_later_ground_truth(metric) -> None:
    """pycocotools' rule on equal IoUs (2/3 here): the later box is taken, the first is left to the next detection."""
    refs = [{"boxes": [[0, 0, 10, 10], [4, 0, 10, 10]], "labels": [0, 0]}]
    preds = [{"boxes": [[2, 0, 10, 10], [0, 0, 10, 10]], "scores": [0.9, 0.8], "labels": [0, 0]}]
    out = metric.compute(predictions=preds, references=refs)
    _assert_stats_equal(out, _pycocotools_eval(preds, refs, 1))
    assert out["per_class_precision"] == [1.0] and out["per_class_recall"] == [1.0]


def test_regular_match_preferred_over_better_crowd_match(metric) -> None:
    """pycocotools' rule: once a detection matches a regular box it never moves to a crowd region, even one
    with a higher IoU (1.0 here vs 0.976), so this detection is a true positive, not an ignored one."""
    refs = [{"boxes": [[0, 0, 40, 40], [0, 0, 40, 42]], "labels": [0, 0], "iscrowd": [0, 1]}]
    preds = [{"boxes": [[0, 0, 40, 41]], "scores": [0.9], "labels": [0]}]
    out = metric.compute(predictions=preds, references=refs)
    _assert_stats_equal(out, _pycocotools_eval(preds, refs, 1))
    assert out["per_class_recall"] == [1.0] and out["per_class_precision"] == [1.0]


def test_tied_f1_picks_the_lowest_threshold(metric) -> None:
    """TP .9, TP .8, FP .7, FP .6, TP .5 against 4 boxes: F1 = 2/3 at both .8 and .5; the lower one is kept."""
    refs = [{"boxes": [[100 * i, 0, 50, 50] for i in range(4)], "labels": [0] * 4}]
    boxes = [[0, 0, 50, 50], [100, 0, 50, 50], [0, 300, 50, 50], [100, 300, 50, 50], [200, 0, 50, 50]]
    preds = [{"boxes": boxes, "scores": [0.9, 0.8, 0.7, 0.6, 0.5], "labels": [0] * 5}]
    out = metric.compute(predictions=preds, references=refs)
    assert out["score_threshold"] == 0.5
    assert out["per_class_precision"] == [0.6] and out["per_class_recall"] == [0.75]
    assert math.isclose(out["f1"], 2 / 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections_at_all(metric, backend: str) -> None:
    preds, refs = _random_case(5)
    preds = [{"boxes": [], "scores": [], "labels": []} for _ in preds]
    out = metric.compute(predictions=preds, references=refs, num_labels=5, backend=backend)
    _assert_stats_equal(out, _pycocotools_eval(preds, refs, 5))
    assert out["score_threshold"] is None and out["precision"] == 0.0
    assert out["per_class_precision"] == [0.0 if n else None for n in out["per_class_num_gt"]]


def test_no_ground_truth_at_all(metric) -> None:
    refs = [{"boxes": [], "labels": []}] * 2
    preds = [{"boxes": [[0, 0, 5, 5]], "scores": [0.3], "labels": [1]}, {"boxes": [], "scores": [], "labels": []}]
    out = metric.compute(predictions=preds, references=refs, num_labels=2)
    assert [out[name] for name in STATS] == [-1.0] * 12
    assert out["per_class_ap"] == [None, None] and out["per_class_num_gt"] == [0, 0]


def test_numpy_inputs_and_incremental_batches(metric) -> None:
    preds, refs = _random_case(11)
    as_np = [{k: np.asarray(v) for k, v in p.items()} for p in preds]
    metric.add_batch(predictions=as_np[:7], references=refs[:7])
    metric.add(prediction=as_np[7], reference=refs[7])
    metric.add_batch(predictions=as_np[8:], references=refs[8:])
    assert metric.compute(num_labels=5) == metric.compute(predictions=preds, references=refs, num_labels=5)


@pytest.mark.parametrize(
    ("preds", "refs", "kwargs", "message"),
    [
        ([], [], {}, "zero images"),
        ([{"boxes": [[0, 0, 1, 1]], "scores": [], "labels": [0]}], [{"boxes": [], "labels": []}], {},
         "1 boxes, 0 scores"),
        ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [[0, 0, 1, 1]], "labels": [3]}],
         {"num_labels": 2}, "out of range"),
        ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [], "labels": []}], {}, "num_labels"),
        ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [], "labels": []}],
         {"num_labels": 2, "label_names": ["a"]}, "label_names"),
        ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [], "labels": []}],
         {"num_labels": 1, "backend": "detectron"}, "unknown backend"),
    ],
)
def test_invalid_inputs_raise(metric, preds, refs, kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metric.compute(predictions=preds, references=refs, **kwargs)


def test_offline_load_in_fresh_process(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1, empty HF caches, sockets refused from interpreter start: loading by path still works."""
    out = compute_metric_offline(tmp_path, 'box = {"boxes": [[10, 10, 20, 20]], "labels": [0]}\n'
                                 'print(json.dumps(load_metric("coco_map").compute('
                                 'predictions=[{**box, "scores": [0.9]}], references=[box])))')
    assert out["map"] == 1.0 and out["per_class_ap"] == [1.0]


def _crowded_case(seed: int) -> tuple[list[dict], list[dict]]:
    """>100 detections per image and class, tied scores, duplicate/crowd/out-of-range (area > 1e10) boxes."""
    rng, preds, refs = np.random.default_rng(seed), [], []
    for _ in range(4):
        n = int(rng.integers(0, 25))
        gt = np.concatenate([rng.choice([0.0, 10.0, 20.0, 30.0], (n, 2)), rng.choice([0.0, 10.0, 20.0], (n, 2))], 1)
        gt[: n // 4] = gt[n // 4: 2 * (n // 4)]  # duplicates
        crowd, area = (rng.random(n) < 0.2).astype(int).tolist(), rng.choice([-1.0, 50.0, 400.0, 2e10], n).tolist()
        refs.append({"boxes": gt.tolist(), "labels": rng.integers(0, 3, n).tolist(), "iscrowd": crowd, "area": area})
        boxes = rng.choice([0.0, 1.0, 5.0, 2e5], (m := int(rng.choice([0, 30, 260])), 4), p=[0.4, 0.3, 0.2, 0.1])
        boxes += gt[rng.integers(0, n, m)] if n else rng.uniform(0, 40, (m, 4))
        preds.append({"boxes": boxes.tolist(), "scores": rng.choice([0.2, 0.5, 0.9], m).tolist(),
                      "labels": rng.integers(0, 3, m).tolist()})
    return preds, refs


@pytest.mark.parametrize(("seed", "chunk"), [(0, 1 << 20), (1, 1 << 20), (2, 7), (3, 1), (4, 1 << 20), (5, 3)])
def test_matching_equals_pycocotools_per_detection(metric, module, monkeypatch, seed: int, chunk: int) -> None:
    """Each detection's kept / matched / ignored (IoU .5, area all) are pycocotools' evalImgs, chunked or not."""
    monkeypatch.setattr(module, "PAIR_CHUNK", chunk)
    preds, refs = _crowded_case(seed)
    coco_eval = _pycocotools_eval(preds, refs, 3)
    expected = {d: (m > 0, bool(i)) for e in coco_eval.evalImgs if e and e["aRng"] == coco_eval.params.areaRng[0]
                for d, m, i in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0])}  # id = input position + 1
    kept, matched, ignored = module.match_detections(module._columns(preds, "predictions"),
                                                     module._columns(refs, "references"), 3)
    assert {i + 1: (bool(matched[i]), bool(ignored[i])) for i in np.flatnonzero(kept)} == expected
    out = metric.compute(predictions=preds, references=refs, num_labels=3)
    _assert_stats_equal(out, coco_eval)
    precision, recall, threshold = _brute_force_pr(coco_eval, 3)
    _assert_lists_close(out["per_class_precision"] + out["per_class_recall"], precision + recall)
    assert out["score_threshold"] == threshold


@pytest.mark.parametrize("library", ["faster_coco_eval.core.mask", "pycocotools.mask"])
def test_box_iou_is_the_libraries_own(module, library: str) -> None:
    """Bit for bit the IoU of the library's C ``bbIou`` (so the IoU >= 0.5 decisions are COCOeval's own)."""
    dt = np.concatenate([(rng := np.random.default_rng(0)).choice([0.0, 0.5, 10.0], (60, 2)),
                         rng.choice([0.0, 1 / 3, 10.0, 20.0], (60, 2))], 1)
    dt[30:] = rng.uniform(0, 30, (30, 4))
    gt, crowd = dt[rng.permutation(60)] + rng.choice([0.0, 0.1], (60, 4)), rng.random(60) < 0.3
    expected = np.asarray(importlib.import_module(library).iou(dt.tolist(), gt.tolist(), crowd.astype(int).tolist()))
    d, g = np.repeat(np.arange(60), 60), np.tile(np.arange(60), 60)  # every pair, in the library's order
    assert np.array_equal(module.box_iou(dt[d], gt[g], crowd[g]), expected.reshape(-1))


def test_fast_path_equals_storage_and_image_by_image_paths(metric, module) -> None:
    """One ``compute`` with all data = add_batch + compute(); irregular images (flat boxes, float labels) the same."""
    preds, refs = _random_case(7)
    refs[2].pop("iscrowd", None)
    mixed = [{k: np.asarray(v) for k, v in p.items()} if i % 2 else p for i, p in enumerate(preds)]  # and lists
    direct = metric.compute(predictions=mixed, references=refs, num_labels=5)
    metric.add_batch(predictions=preds[:9], references=refs[:9])
    metric.add_batch(predictions=preds[9:], references=refs[9:])
    assert metric.compute(num_labels=5) == direct
    irregular = [{"boxes": np.asarray(p["boxes"]).reshape(-1).tolist(), "scores": p["scores"],
                  "labels": [float(x) for x in p["labels"]] if i % 2 else np.asarray(p["labels"], np.uint8)}
                 for i, p in enumerate(preds)]
    assert module._bulk(irregular, "predictions") is None  # not converted at once
    assert metric.compute(predictions=irregular, references=refs, num_labels=5) == direct


@pytest.mark.parametrize(("bad", "message"), [
    ({0: {"labels": [0.5]}, 1: {"scores": [float("nan")]}}, r"predictions\[0\]\['labels'\]\[0\] is 0.5"),
    ({1: {"scores": [float("inf")]}, 2: {"labels": ["a"]}}, r"predictions\[1\]\['scores'\]\[0\] is inf"),
    ({1: {"boxes": [[0, 0, 1, float("nan")]]}}, r"predictions\[1\]\['boxes'\]\[0\] is \[0.0, 0.0, 1.0, nan\]"),
    ({2: {"boxes": [[0, 0, float("nan"), 1]], "labels": [1.5]}}, r"predictions\[2\]\['boxes'\]\[0\]"),
])
def test_first_invalid_image_is_named(metric, bad: dict, message: str) -> None:
    """Checking all images at once does not change which error is raised: the first, image by image."""
    preds = [{"boxes": [[0, 0, 1, 1]], "scores": [0.5], "labels": [0], **bad.get(i, {})} for i in range(3)]
    with pytest.raises(ValueError, match=message):
        metric.compute(predictions=preds, references=[{"boxes": [], "labels": []}] * 3, num_labels=2)
