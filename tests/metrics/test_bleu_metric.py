"""The bleu evaluate module: every number equals sacrebleu's own on the same data, including images with
different numbers of references (None-padded reference streams), empty hypotheses and all smoothing methods."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from hf_tasks.metrics import available_metrics, load_metric
from tests.helpers import compute_metric_offline

WORDS = "a an the cat dog man woman bike red blue small big is on in with near riding sitting .".split()


@pytest.fixture(scope="module")
def metric():
    return load_metric("bleu")


def _streams(refs: list[list[str]]) -> list[list[str | None]]:
    """sacrebleu's reference streams with None where an image has fewer references (written independently)."""
    width = max(map(len, refs))
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


def _sacrebleu(preds, refs, n: int = 4, **kwargs) -> sacrebleu.BLEUScore:
    return sacrebleu.BLEU(max_ngram_order=n, **kwargs).corpus_score(preds, _streams(refs))


def _random_case(seed: int) -> tuple[list[str], list[list[str]]]:
    """Captions from a small vocabulary (so n-grams match), 1-5 references per image, some empty hypotheses."""
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for _ in range(int(rng.integers(1, 40))):
        refs.append([" ".join(rng.choice(WORDS, int(rng.integers(1, 12)))) for _ in range(int(rng.integers(1, 6)))])
        base = refs[-1][0].split()
        words = [w if rng.random() < 0.7 else str(rng.choice(WORDS)) for w in base][: int(rng.integers(0, 14))]
        preds.append(" ".join(words).capitalize() if rng.random() < 0.3 else " ".join(words))
    return preds, refs


def _assert_equals_sacrebleu(out: dict, preds, refs, **kwargs) -> None:
    full = _sacrebleu(preds, refs, **kwargs)
    assert out["bleu"] == full.score / 100 == out["bleu4"]
    for n in range(1, 5):
        assert out[f"bleu{n}"] == _sacrebleu(preds, refs, n, **kwargs).score / 100, n  # exactly: the same arithmetic
    assert out["precisions"] == [p / 100 for p in full.precisions]
    assert out["brevity_penalty"] == full.bp and out["length_ratio"] == full.ratio
    assert (out["hyp_len"], out["ref_len"]) == (full.sys_len, full.ref_len)


def test_listed() -> None:
    assert "bleu" in available_metrics()


@pytest.mark.parametrize("seed", range(20))
def test_random_cases_match_sacrebleu(metric, seed: int) -> None:
    preds, refs = _random_case(seed)
    out = metric.compute(predictions=preds, references=refs)
    _assert_equals_sacrebleu(out, preds, refs)
    assert out["num_samples"] == len(preds)
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"smooth_method": "none"},
        {"smooth_method": "floor"},
        {"smooth_method": "floor", "smooth_value": 0.3},
        {"smooth_method": "add-k"},
        {"smooth_method": "add-k", "smooth_value": 2},
        {"lowercase": True},
        {"tokenize": "intl"},
        {"tokenize": "char"},
        {"tokenize": "none"},
    ],
)
def test_options_match_sacrebleu(metric, kwargs: dict) -> None:
    for seed in range(5):
        preds, refs = _random_case(100 + seed)
        _assert_equals_sacrebleu(metric.compute(predictions=preds, references=refs, **kwargs), preds, refs, **kwargs)


def test_perfect_match_is_one(metric) -> None:
    preds = ["a man riding a red bike near the dog .", "two small cats sitting on a blue mat"]
    refs = [[preds[0], "someone on a bike"], ["cats", preds[1], "a mat with cats on it", "blue mat"]]
    out = metric.compute(predictions=preds, references=refs)
    for key in ("bleu", "bleu1", "bleu2", "bleu3", "bleu4", "brevity_penalty", "length_ratio"):
        assert math.isclose(out[key], 1.0), key
    assert out["precisions"] == [1.0] * 4


def test_differing_reference_counts_pad_with_none_not_empty_string(metric) -> None:
    """An empty hypothesis has closest reference length 0 against a "" reference: padding with "" would change
    ref_len and the score, so short reference lists are padded with None (which sacrebleu drops)."""
    preds = ["a cat on a mat", "", "the dog runs fast ."]
    refs = [["a cat on a mat", "a cat"], ["something here"], ["the dog is running fast .", "a dog runs", "dog"]]
    out = metric.compute(predictions=preds, references=refs)
    _assert_equals_sacrebleu(out, preds, refs)
    padded_with_empty = [[r[j] if j < len(r) else "" for r in refs] for j in range(3)]
    wrong = sacrebleu.corpus_bleu(preds, padded_with_empty)
    assert wrong.ref_len != out["ref_len"] and not math.isclose(wrong.score / 100, out["bleu"])
    assert "nrefs:var" in out["signature"] and "tokenize=13a" in out["variant"] and "smooth=exp" in out["variant"]


def test_none_entries_are_dropped_like_sacrebleu(metric) -> None:
    preds, refs = ["a cat on a mat", "a dog"], [["a cat on a mat", None], ["a dog runs", "dog", None]]
    out = metric.compute(predictions=preds, references=refs)
    _assert_equals_sacrebleu(out, preds, [[r for r in rs if r is not None] for rs in refs])


def test_empty_hypotheses(metric) -> None:
    refs = [["a cat"], ["a dog on a mat", "dog"]]
    out = metric.compute(predictions=["", ""], references=refs)
    assert out["bleu"] == 0.0 and out["hyp_len"] == 0 and out["brevity_penalty"] == 0.0
    _assert_equals_sacrebleu(out, ["", ""], refs)
    out = metric.compute(predictions=["a cat", ""], references=refs)
    _assert_equals_sacrebleu(out, ["a cat", ""], refs)


def test_single_string_references(metric) -> None:
    """A bare string is one reference (evaluate's Sequence feature would otherwise split it into characters)."""
    preds, refs = ["a cat on a mat", "a dog"], ["a cat on the mat", "a dog runs"]
    out = metric.compute(predictions=preds, references=refs)
    _assert_equals_sacrebleu(out, preds, [[r] for r in refs])
    metric.add(prediction=preds[0], reference=refs[0])
    metric.add(prediction=preds[1], reference=[refs[1]])
    assert metric.compute() == out


def test_incremental_batches_equal_one_shot(metric) -> None:
    preds, refs = _random_case(7)
    half = len(preds) // 2
    metric.add_batch(predictions=preds[:half], references=refs[:half])
    metric.add_batch(predictions=preds[half:], references=refs[half:])
    assert metric.compute() == metric.compute(predictions=preds, references=refs)


@pytest.mark.parametrize(
    ("preds", "refs", "message"),
    [([], [], "zero samples"), (["a cat"], [[]], "no reference"), (["a", "b"], [["a"], [None]], "no reference")],
)
def test_invalid_inputs_raise(metric, preds, refs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metric.compute(predictions=preds, references=refs)


def test_load_makes_no_network_call(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert math.isclose(load_metric("bleu").compute(predictions=["a b c d"], references=[["a b c d"]])["bleu"], 1.0)


def test_offline_load_in_fresh_process(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1, empty HF caches, sockets refused from interpreter start: loading by path still works."""
    out = compute_metric_offline(tmp_path, 'refs = [["a cat on a mat"], ["x", "y"]]\n'
                                 'print(json.dumps(load_metric("bleu").compute(predictions=["a cat on a mat", ""], '
                                 'references=refs)))')
    assert out["hyp_len"] == 5 and out["ref_len"] == 6
