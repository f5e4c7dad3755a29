"""Detection scoring with known answers: an oracle that returns the ground truth (exactly, shifted to IoU 0.62 for
two classes, not at all for odd samples, or both) through the real pipeline — letterbox, predict (NMS, un-letterboxing,
xyxy → COCO xywh), the N-process gather, compute_metrics — on non-square images of eight sizes. The expected
numbers are worked out here from the dataset rows and COCO's rules, not by the code under test."""

from __future__ import annotations

import json
import math
import re
import shutil
from fractions import Fraction

import pytest

from tests.detection_oracle import CLASSES, SHIFTED_CLASSES, oracle_evaluate, write_raw_yolo
from tests.helpers import build_dataset, read_json, run_launch

COCO_THRESHOLDS = [0.5 + 0.05 * k for k in range(10)]


@pytest.fixture(scope="module")
def oracle_data(tmp_path_factory):
    raw = write_raw_yolo(tmp_path_factory.mktemp("raw") / "yolo")
    out = tmp_path_factory.mktemp("ds") / "oracle_ds"
    build_dataset(["yolo", "--src", str(raw), "--out", str(out)])
    return out


def objects_per_class(dataset) -> tuple[dict[str, int], dict[str, int]]:
    """Ground-truth objects of each class in the test split, and those in even-numbered samples."""
    import datasets

    test = datasets.load_from_disk(str(dataset))["test"]
    assert len({(row["width"], row["height"]) for row in test}) == 8 and any(r["width"] != r["height"] for r in test)
    total, even = dict.fromkeys(CLASSES, 0), dict.fromkeys(CLASSES, 0)
    for index, row in enumerate(test):
        for category in row["objects"]["category"]:
            total[CLASSES[category]] += 1
            even[CLASSES[category]] += index % 2 == 0
    assert all(total.values())
    return total, even


def coco_ap_at_recall(recall: Fraction) -> float:
    """COCO's 101-point AP when precision is 1 up to ``recall`` and nothing is found beyond it."""
    return (math.floor(recall * 100) + 1) / 101


def expected(mode: str, dataset) -> dict[str, float]:
    """What COCO's rules give: with precision 1 throughout, AP at a threshold is the 101-point AP up to the recall
    reached, and AR the recall itself; a box at IoU 0.62 counts at thresholds 0.50, 0.55 and 0.60 only."""
    total, even = objects_per_class(dataset)
    ap, recall = {}, {}
    for c in CLASSES:
        found = Fraction(even[c], total[c]) if mode in ("dropped", "mixed") else Fraction(1)
        hit = [c not in SHIFTED_CLASSES or mode not in ("shifted", "mixed") or t < 0.62 for t in COCO_THRESHOLDS]
        ap[c] = [coco_ap_at_recall(found) if h else 0.0 for h in hit]
        recall[c] = [float(found) if h else 0.0 for h in hit]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {"map": mean([mean(ap[c]) for c in CLASSES]), "map_50": mean([ap[c][0] for c in CLASSES]),
            "map_75": mean([ap[c][5] for c in CLASSES]), "mar_100": mean([mean(recall[c]) for c in CLASSES]),
            "per_class_ap": [mean(ap[c]) for c in CLASSES], "per_class_recall": [recall[c][0] for c in CLASSES],
            "num_images": 8}


def assert_scores(metrics: dict, want: dict) -> None:
    for key, value in want.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), (key, metrics[key], value)


@pytest.mark.parametrize("mode", ["exact", "shifted", "dropped", "mixed"])
def test_known_answers_score_exactly(oracle_data, mode):
    want = expected(mode, oracle_data)
    if mode == "exact":
        assert want["map"] == want["mar_100"] == 1.0
    if mode == "mixed":  # distinct numbers, so a swapped pair of keys cannot pass
        assert len({want["map"], want["map_50"], want["map_75"], want["mar_100"]}) == 4
    assert_scores(oracle_evaluate(str(oracle_data), mode), want)


def test_two_processes_score_what_one_process_scores(oracle_data, tmp_path):
    """8 test images in batches of 3 on 2 processes: the sampler pads with repeats that the gather must drop."""
    out = tmp_path / "metrics.json"
    run_launch(["tests.detection_oracle", str(oracle_data), "mixed", str(out)], num_processes=2)
    assert_scores(read_json(out), expected("mixed", oracle_data))


def test_card_model_index_carries_the_results_it_was_given(oracle_data, tmp_path):
    """A detection run's card rebuilt over known, distinct, non-zero test metrics shows each under its own name."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from hf_tasks.cards.render import write_card
    from hf_tasks.engine.evaluation import prefixed
    from tests.tasks.detection.test_detection import tiny, train

    run = tmp_path / "run"
    train(oracle_data, run, *tiny("plots: false"), "--max-steps", "1")
    metrics = oracle_evaluate(str(oracle_data), "mixed")
    metrics.pop("pr_curve")
    results = {**read_json(run / "results.json"), **prefixed(metrics, "test_")}
    (run / "results.json").write_text(json.dumps(results))
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
    card = ModelCard.load(write_card(run))
    _, evals = model_index_to_eval_results(card.data.to_dict()["model-index"])
    shown = {e.metric_type: (e.metric_name, e.metric_value) for e in evals}
    want = expected("mixed", oracle_data)
    assert shown == {"map": ("mAP50-95", pytest.approx(want["map"], abs=1e-6)),
                     "map_50": ("mAP50", pytest.approx(want["map_50"], abs=1e-6))}
    assert shown == {"map": ("mAP50-95", results["test_map"]), "map_50": ("mAP50", results["test_map_50"])}
    for label, key in (("mAP50-95", "map"), ("mAP50", "map_50"), ("mAP75", "map_75")):
        assert f"| {label} | {want[key]:.4f} |" in card.text, label
    for name, ap in zip(CLASSES, want["per_class_ap"]):
        assert re.search(rf"\| {name} \| {ap:.4f} \|", card.text), name
