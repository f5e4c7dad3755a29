"""The accuracy evaluate module: agreement with sklearn, input validation, and offline loading by path."""

from __future__ import annotations

import json
import math
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from hf_tasks.metrics import METRICS_DIR, available_metrics, load_metric
from tests.helpers import compute_metric_offline



@pytest.fixture(scope="module")
def metric():
    return load_metric("accuracy")


def _sklearn_macro_f1(refs, preds, labels=None) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return f1_score(refs, preds, average="macro", labels=labels)


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Random labels where some classes are never predicted (and sometimes never present at all)."""
    rng = np.random.default_rng(seed)
    num_labels = int(rng.integers(2, 8))
    n = int(rng.integers(1, 60))
    refs = rng.integers(0, num_labels, size=n)
    preds = np.where(rng.random(n) < 0.6, refs, rng.integers(0, num_labels, size=n))
    preds[preds == num_labels - 1] = 0  # the last class is never predicted
    return preds, refs, num_labels


def test_known_metrics_listed() -> None:
    assert "accuracy" in available_metrics()
    assert (METRICS_DIR / "accuracy" / "accuracy.py").is_file()


def test_unknown_metric_lists_known_names() -> None:
    with pytest.raises(ValueError, match="known metrics: .*accuracy"):
        load_metric("acuracy")


@pytest.mark.parametrize("seed", range(25))
def test_matches_sklearn_with_num_labels(metric, seed: int) -> None:
    preds, refs, num_labels = _random_case(seed)
    labels = list(range(num_labels))
    out = metric.compute(predictions=preds, references=refs, num_labels=num_labels)
    assert out["num_samples"] == len(refs)
    assert math.isclose(out["accuracy"], accuracy_score(refs, preds))
    assert math.isclose(out["macro_f1"], _sklearn_macro_f1(refs, preds, labels))
    assert out["confusion_matrix"] == confusion_matrix(refs, preds, labels=labels).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        recalls = recall_score(refs, preds, average=None, labels=labels, zero_division=np.nan)
    for ours, theirs in zip(out["per_class_accuracy"], recalls, strict=True):
        assert (ours is None) if np.isnan(theirs) else math.isclose(ours, theirs)


@pytest.mark.parametrize("seed", range(10))
def test_matches_sklearn_default_labels(metric, seed: int) -> None:
    """Without num_labels, macro F1 averages over classes present in references or predictions, like sklearn."""
    preds, refs, _ = _random_case(100 + seed)
    out = metric.compute(predictions=preds.tolist(), references=refs.tolist())
    assert math.isclose(out["macro_f1"], _sklearn_macro_f1(refs, preds))
    assert len(out["confusion_matrix"]) == max(preds.max(), refs.max()) + 1


def test_class_missing_from_predictions_and_references(metric) -> None:
    out = metric.compute(predictions=[0, 0, 1], references=[0, 1, 1], num_labels=4, label_names=list("abcd"))
    assert out["per_class_accuracy"] == [1.0, 0.5, None, None]
    assert out["per_class_accuracy_by_name"] == {"a": 1.0, "b": 0.5, "c": None, "d": None}
    assert out["confusion_matrix"] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert math.isclose(out["macro_f1"], _sklearn_macro_f1([0, 1, 1], [0, 0, 1], range(4)))
    json.dumps(out)  # None, not NaN: results.json stays valid JSON


def test_incremental_batches_equal_one_shot(metric) -> None:
    preds, refs, num_labels = _random_case(7)
    metric.add_batch(predictions=preds[:10], references=refs[:10])
    metric.add_batch(predictions=preds[10:], references=refs[10:])
    assert metric.compute(num_labels=num_labels) == metric.compute(
        predictions=preds, references=refs, num_labels=num_labels
    )


@pytest.mark.parametrize(
    ("preds", "refs", "kwargs", "message"),
    [
        ([], [], {}, "zero samples"),
        ([0, 3], [0, 1], {"num_labels": 3}, "out of range"),
        ([0, 1], [0, 5], {"num_labels": 3}, "out of range"),
        ([0, -1], [0, 1], {}, ">= 0"),
        ([0, 1], [0, 1], {"num_labels": 3, "label_names": ["a", "b"]}, "label_names"),
    ],
)
def test_invalid_inputs_raise(metric, preds, refs, kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metric.compute(predictions=preds, references=refs, **kwargs)


def test_two_instances_do_not_share_state() -> None:
    first, second = load_metric("accuracy"), load_metric("accuracy")
    assert first.experiment_id != second.experiment_id
    first.add_batch(predictions=[0, 1], references=[0, 0])
    assert second.compute(predictions=[1], references=[1])["accuracy"] == 1.0
    assert first.compute()["num_samples"] == 2


def test_load_makes_no_network_call(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    metric = load_metric("accuracy")
    assert metric.compute(predictions=[1, 0], references=[1, 1])["accuracy"] == 0.5


def test_offline_load_in_fresh_process_and_cache(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1, empty HF caches, sockets refused from interpreter start: loading by path still works."""
    out = compute_metric_offline(tmp_path, 'print(json.dumps(load_metric("accuracy").compute('
                                 'predictions=[0, 1, 1], references=[0, 1, 0], num_labels=2)))')
    assert math.isclose(out["accuracy"], 2 / 3)
    assert out["confusion_matrix"] == [[1, 1], [0, 1]]
