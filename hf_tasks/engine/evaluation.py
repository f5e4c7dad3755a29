"""Evaluation on a split, shared by training (every epoch, final test) and ``hf-tasks evaluate`` / ``compare``.

Predictions are gathered with ``gather_for_metrics``, which drops the samples a distributed sampler repeats to
even out the last batch: N processes see exactly the samples 1 process sees, each once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch
from tqdm.auto import tqdm

from hf_tasks.registry import ModelBundle, TaskData, TaskSpec


def make_loader(dataset, batch_size: int, collate, num_workers: int = 0, shuffle: bool = False,
                seed: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader whose shuffling draws from its own seeded generator, never from the global RNG."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                                       num_workers=num_workers, generator=generator)


@torch.no_grad()
def evaluate(accelerator, model: torch.nn.Module, loader, spec: TaskSpec, data: TaskData, bundle: ModelBundle,
             desc: str = "eval") -> dict[str, Any]:
    """Run ``spec.predict`` over a prepared loader and compute the task's metrics on every process."""
    was_training = model.training
    model.eval()
    tensors: dict[str, list[torch.Tensor]] = defaultdict(list)
    objects: list = []
    bar = tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process)
    for batch in bar:
        predicted = spec.predict(model, batch, bundle)
        if isinstance(predicted, dict):
            for key, value in accelerator.gather_for_metrics(predicted).items():
                tensors[key].append(value.detach().cpu())
        else:  # one picklable object per sample: variable-size boxes, generated strings
            objects.extend(accelerator.gather_for_metrics(list(predicted), use_gather_object=True))
    model.train(was_training)
    if objects:
        return spec.compute_metrics(objects, data, bundle)
    return spec.compute_metrics({key: torch.cat(values) for key, values in tensors.items()}, data, bundle)


def scalar_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, int | float]:
    """The finite scalar entries of ``metrics``, prefixed: what trackers and progress bars can show."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[f"{prefix}{key}"] = value
    return flat


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


def prefixed(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def evaluate_bundle(accelerator, spec: TaskSpec, bundle, cfg, data: TaskData, split: str, desc: str) -> dict:
    """Evaluate a loaded model on ``split`` with its own processor, on 1 or N processes."""
    dataset = spec.make_dataset(data.splits[split], bundle, cfg, data, train=False)
    loader = make_loader(dataset, cfg.batch_size, spec.collate, cfg.data.num_workers)
    model, loader = accelerator.prepare(bundle.model, loader)
    return evaluate(accelerator, model, loader, spec, data, bundle, desc=desc)
