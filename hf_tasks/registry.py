"""Task registry: a task name maps to a ``TaskSpec``, the only thing a task supplies to the shared loop.

Adding a task is one file in ``hf_tasks/tasks/`` that calls ``register_task`` and one line in ``_TASK_MODULES``.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hf_tasks.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from datasets import Dataset

    from hf_tasks.config import TrainConfig

# task name -> module that registers it (imported lazily, so `import hf_tasks` stays light)
_TASK_MODULES = {"classification": "hf_tasks.tasks.classification", "detection": "hf_tasks.tasks.detection",
                 "captioning": "hf_tasks.tasks.captioning"}
_TASKS: dict[str, TaskSpec] = {}


@dataclass
class ModelBundle:
    """A model with everything needed to feed it (processor/tokenizer) and what it was trained to predict."""

    model: torch.nn.Module
    processor: Any
    label_names: list[str] | None = None


@dataclass(frozen=True)
class TaskSpec:
    """What one task plugs into the shared loop, evaluation and saving.

    - ``validate(cfg)``: task-specific config checks, before anything is built.
    - ``load_data(cfg) -> TaskData``: the prepared splits plus dataset facts (label names, ...).
    - ``build_model(cfg, data) -> ModelBundle``: the network to train, sized to the data.
    - ``load_model(path, policy=None) -> ModelBundle``: a saved output folder (or Hub id) back for evaluation;
      safetensors only unless ``policy`` (``hf_tasks.trust.LoadPolicy``) trusts pickles.
    - ``make_dataset(split, bundle, cfg, data, train) -> torch Dataset`` with ``set_epoch``; ``collate`` batches it.
    - ``forward(model, batch) -> {"loss": ...}``; ``predict(model, batch) -> {name: per-sample tensor}``.
    - ``compute_metrics(outputs, data) -> {metric: value}`` on the gathered ``predict`` outputs.
    - ``save_model(bundle, path, data)``: the loadable output folder (safetensors only).
    - ``make_hooks(cfg, model) -> TrainHooks`` (optional): per-step extras such as an EMA of the weights.

    ``predict`` returns either a dict of per-sample tensors (equal shapes across processes) or a list with one
    picklable object per sample (boxes, strings); both are gathered without duplicates.
    """

    name: str
    main_metric: str
    greater_is_better: bool
    validate: Callable[[TrainConfig], None]
    load_data: Callable[[TrainConfig], TaskData]
    build_model: Callable[[TrainConfig, TaskData], ModelBundle]
    load_model: Callable[..., ModelBundle]
    make_dataset: Callable[..., torch.utils.data.Dataset]
    collate: Callable[[list[dict]], dict]
    forward: Callable[[torch.nn.Module, dict], dict]
    predict: Callable[[torch.nn.Module, dict], dict]
    compute_metrics: Callable[[dict, TaskData], dict]
    save_model: Callable[[ModelBundle, Path, TaskData], None]
    make_hooks: Callable[[TrainConfig, torch.nn.Module], TrainHooks] | None = None


class TrainHooks:
    """Optional per-task extras in the shared loop; the defaults do nothing.

    A task returning hooks with state (e.g. an EMA) gets them saved in every checkpoint through
    ``state_dict``/``load_state_dict``, so a resumed run continues exactly.
    """

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        """Called after every optimizer step with the (prepared) model."""

    def model_for_eval(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to evaluate and to keep as best/final weights (an EMA copy, or the model itself)."""
        return model

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class TaskData:
    """The prepared splits a run uses, and facts about the dataset the task and the card need."""

    splits: dict[str, Dataset]
    info: dict[str, Any]


def register_task(spec: TaskSpec) -> TaskSpec:
    _TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    if name not in _TASK_MODULES:
        close = difflib.get_close_matches(name, list(_TASK_MODULES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown task {name!r}{hint} Known tasks: {', '.join(sorted(_TASK_MODULES))}")
    if name not in _TASKS:
        importlib.import_module(_TASK_MODULES[name])
    return _TASKS[name]


def known_tasks() -> list[str]:
    return sorted(_TASK_MODULES)
