"""Shared parts of the fault-injection tests (tests/test_faults_*.py): the tiniest model and data of each task, an
in-process run, fault injection into a task's forward, and the bitwise comparison of two finished runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from tests.helpers import build_dataset, read_json

TASKS = ("classification", "detection", "captioning")

#: shapes datasets per task, with their train batches: classification 22 images (6 batches of 4), detection 14
#: (7 of 2), captioning 14 images x 3 captions (11 of 4); the evaluation splits hold 9, 3 and 3 images
DATASETS = {
    "classification": ["--num-images", "40", "--image-size", "32", "--classes", "circle,square,triangle"],
    "detection": ["--num-images", "20", "--image-size", "64", "--objects", "2"],
    "captioning": ["--num-images", "20", "--image-size", "32", "--objects", "2"],
}
MODELS = {
    "classification": ["--model.name", "small_cnn", "--model.pretrained", "false", "--data.image_size", "32",
                       "--batch-size", "4", "--model.config", "{hidden_sizes: [8, 16], convs_per_stage: 1}"],
    "detection": ["--task", "detection", "--model.name", "yolov8n.yaml", "--data.image_size", "64", "--batch-size", "2",
                  "--model.config", "{width_multiple: 0.0625, max_channels: 64, plots: false}"],
    "captioning": ["--task", "captioning", "--model.name", "cnn_lstm", "--model.pretrained", "false",
                   "--data.image_size", "32", "--batch-size", "4", "--lr", "0.01", "--model.config",
                   "{encoder: {model_type: resnet, embedding_size: 8, hidden_sizes: [8, 16], depths: [1, 1]},"
                   " decoder: {model_type: lstm, hidden_size: 16, embedding_size: 8, attention_size: 8},"
                   " generation: {max_new_tokens: 6}}"],
}


def build_fault_datasets(root: Path) -> dict[str, Path]:
    paths = {}
    for task in TASKS:
        paths[task] = root / task
        build_dataset(["shapes", "--task", task, *DATASETS[task], "--val-fraction", "0.2", "--test-fraction", "0.2",
                       "--seed", "0", "--out", str(paths[task])])
    return paths


def task_args(task: str, dataset: Path, out: Path, *extra: str) -> list[str]:
    """CLI overrides of a tiny run of ``task`` (``hf-tasks train`` / ``hf_tasks.engine.loop.train`` accept the same)."""
    return ["--data.dataset", str(dataset), "--output-dir", str(out), "--seed", "3", *MODELS[task], *extra]


def train(task: str, dataset: Path, out: Path, *extra: str) -> dict:
    from hf_tasks.registry import load_config
    from hf_tasks.train import train as run

    return run(load_config(None, task_args(task, dataset, out, *extra)))


class Payload:
    """Unpickling this creates a file: what a hostile pickle could do instead."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class InfGradient(torch.autograd.Function):
    """Adds 0 to the loss, but its gradient is +inf: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, weight):
        ctx.save_for_backward(weight)
        return weight.sum() * 0.0

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return torch.full_like(weight, float("inf"))


def poison(monkeypatch, task: str, at_call: int, kind: str) -> None:
    """Make the ``at_call``-th forward of ``task`` return a NaN/inf loss, or a finite loss with an inf gradient."""
    import hf_tasks.registry as registry
    from hf_tasks.registry import get_task

    spec, calls = get_task(task), {"n": 0}

    def forward(model, batch):
        calls["n"] += 1
        out = spec.forward(model, batch)
        if calls["n"] != at_call:
            return out
        if kind in ("nan", "inf"):
            return {"loss": out["loss"] * float(kind)}
        weight = next(p for p in model.parameters() if p.requires_grad)
        return {"loss": out["loss"] + InfGradient.apply(weight)}

    monkeypatch.setattr(registry, "get_task", lambda name: dataclasses.replace(spec, forward=forward))


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_run(reference: Path, other: Path) -> None:
    """Identical results.json (but for wall time and the dataset's path) and bitwise-identical saved weights."""
    expected, got = read_json(reference / "results.json"), read_json(other / "results.json")
    for results in (expected, got):
        results.pop("train_runtime_s")
    assert got == expected
    a, b = weights(reference / "model.safetensors"), weights(other / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def checkpoint_steps(out: Path, complete_only: bool = True) -> list[int]:
    root = out / "checkpoints"
    found = [p for p in root.glob("checkpoint-*") if not complete_only or (p / "COMPLETE").is_file()]
    return sorted(int(p.name.split("-")[1]) for p in found)
