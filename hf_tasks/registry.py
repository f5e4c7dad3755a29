"""Task registry: a task name maps to a ``TaskSpec``, everything one task plugs into the generic code.

A task is one folder ``hf_tasks/tasks/<name>/`` whose package exposes ``SPEC``; it is found by its folder, so adding
one changes no other file. A task living outside the package (a plugin, a test) is named by its module's import path
(``task: my_package.my_task``), and that module exposes ``SPEC`` the same way.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hf_tasks.errors import ConfigError
from hf_tasks.util import did_you_mean

if TYPE_CHECKING:
    import torch
    from datasets import Dataset

    from hf_tasks.config import TrainConfig

BUILTIN_PACKAGE = "hf_tasks.tasks"
_LOADED: dict[str, TaskSpec] = {}


@dataclass
class ModelBundle:
    """A model with what feeds it (``processor``), what it predicts, and the task's run settings.

    ``settings`` is the task's own object (NMS thresholds, a tokenizer, the image size...), handed to ``predict``,
    ``make_dataset`` and ``save_model`` explicitly instead of riding on the model.
    """

    model: torch.nn.Module
    processor: Any
    label_names: list[str] | None = None
    settings: Any = None


@dataclass
class TaskData:
    """The prepared splits a run uses, and facts about the dataset the task and the card need."""

    splits: dict[str, Dataset]
    info: dict[str, Any]


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


@dataclass(frozen=True)
class CardParts:
    """What a task adds to the generic model card (``hf_tasks.cards``); every function is pure.

    - ``template``: the Jinja file's name in ``model_cards/``, or an absolute path (a task outside the package).
    - ``context(cfg, results, output_dir) -> dict``: the template's task variables (``output_dir`` only tells which
      figure files exist; it may be ``None``).
    - ``card_data(cfg, results) -> ModelCardData``: Hub metadata with the model-index of the test split.
    - ``usage(cfg, model_id, output_dir) -> str``: a snippet that runs as written (a test executes it).
    - ``figures(results, output_dir)``: draws the figures the card shows from ``results.json`` (optional).
    """

    template: str
    context: Callable[[TrainConfig, dict, Path | None], dict]
    card_data: Callable[[TrainConfig, dict], Any]
    usage: Callable[[TrainConfig, str, Path | None], str]
    figures: Callable[[dict, Path], None] | None = None


@dataclass(frozen=True)
class Bar:
    """The learning a task must show on the demo data: ``results[metric] >= threshold``."""

    metric: str
    threshold: float

    def met(self, results: dict[str, Any]) -> bool:
        value = results.get(self.metric)
        return isinstance(value, (int, float)) and value >= self.threshold


@dataclass(frozen=True)
class Preset:
    """A task's built-in demo job on the embedded shapes data: how to build it, which recipe trains it, its bar."""

    recipe: str
    repo_name: str
    build: tuple[str, ...]
    bar: Bar
    overrides: tuple[str, ...] = ()
    quick_build: tuple[str, ...] = ()  # replaces ``build`` with --quick
    quick_overrides: tuple[str, ...] = ()  # appended with --quick


@dataclass(frozen=True)
class DemoParts:
    """What ``hf-tasks demo`` needs of a task.

    - ``preset``: the built-in job (``None``: the task has no built-in job, ``--recipe`` still runs it).
    - ``predict(model_ref, image) -> dict``: load a published model the way its card says and predict one image.
    - ``ground_truth(row, features, image_column, label_column) -> dict``: the held-out row in the same terms.
    - ``draw(image, prediction) -> image``: the picture for the report (default: the image itself).
    - ``describe(prediction, truth) -> str``: one line for the summary (default: both as JSON).
    """

    predict: Callable[[str, Any], dict]
    ground_truth: Callable[[dict, Any, str, str], dict]
    preset: Preset | None = None
    draw: Callable[[Any, dict], Any] | None = None
    describe: Callable[[dict, dict], str] | None = None


@dataclass(frozen=True)
class TaskSpec:
    """What one task plugs into the shared loop, evaluation, cards and demo.

    Training (``hf_tasks.engine``):

    - ``validate(cfg)``: task-specific config checks, before anything is built.
    - ``options(cfg) -> dataclass type | None``: the typed schema of ``model.config`` for this run's model; unknown
      keys fail naming the nearest one, values are coerced to the field types (``None``: the task takes none).
    - ``load_data(cfg) -> TaskData``: the prepared splits plus dataset facts (label names, ...).
    - ``build_model(cfg, data) -> ModelBundle``: the network to train, sized to the data.
    - ``load_model(path, policy=None) -> ModelBundle``: a saved output folder (or Hub id) back for evaluation;
      safetensors only unless ``policy`` (``hf_tasks.trust.LoadPolicy``) trusts pickles.
    - ``make_dataset(split, bundle, cfg, data, train) -> torch Dataset`` with ``set_epoch``; ``collate`` batches it.
    - ``forward(model, batch) -> {"loss": ...}``; ``predict(model, batch, bundle) -> per-sample outputs``.
    - ``compute_metrics(outputs, data, bundle) -> {metric: value}`` on the gathered ``predict`` outputs.
    - ``save_model(bundle, path, data)``: the loadable output folder (safetensors only).
    - ``make_hooks(cfg, model) -> TrainHooks`` (optional): per-step extras such as an EMA of the weights.

    ``predict`` returns either a dict of per-sample tensors (equal shapes across processes) or a list with one
    picklable object per sample (boxes, strings); both are gathered without duplicates.

    Around training: ``headline`` lists ``(results key, short name)`` pairs, the first being the task's headline
    number; ``check_model_labels`` makes ``hf-tasks evaluate`` refuse a model whose labels are not the dataset's
    (tasks that match classes by name, or have none, leave it off); ``card`` and ``demo`` are described above.
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
    predict: Callable[[torch.nn.Module, dict, ModelBundle], Any]
    compute_metrics: Callable[[Any, TaskData, ModelBundle], dict]
    save_model: Callable[[ModelBundle, Path, TaskData], None]
    card: CardParts
    headline: tuple[tuple[str, str], ...]
    options: Callable[[TrainConfig], type | None] = lambda cfg: None
    make_hooks: Callable[[TrainConfig, torch.nn.Module], TrainHooks] | None = None
    demo: DemoParts | None = None
    check_model_labels: bool = False


def builtin_tasks() -> list[str]:
    """The task folders of ``hf_tasks/tasks/`` (found on disk, nothing imported)."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg)


def get_task(name: str) -> TaskSpec:
    """The spec of a built-in task (``classification``) or of a task module named by import path."""
    if name in _LOADED:
        return _LOADED[name]
    known = builtin_tasks()
    if name in known:
        module_name = f"{BUILTIN_PACKAGE}.{name}"
    elif "." in name:
        module_name = name
    else:
        raise ConfigError(f"unknown task {name!r}{did_you_mean(name, known)} Known tasks: {', '.join(known)}; a "
                          "task of your own is named by its module's import path (my_package.my_task)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and module_name.startswith(err.name):
            raise ConfigError(f"task {name!r}: no module {module_name!r} to import") from None
        raise
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, TaskSpec):
        raise ConfigError(f"task {name!r}: module {module_name!r} defines no SPEC (a hf_tasks.registry.TaskSpec)")
    _LOADED[name] = spec
    return spec


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A recipe plus ``--key value`` overrides as one validated config: the generic keys, then the task's typed
    ``model.config`` options and its own checks, before any Accelerator or model exists."""
    from hf_tasks.config import read_config

    cfg = read_config(recipe, overrides)
    check_task(cfg)
    return cfg


def check_task(cfg: TrainConfig) -> TaskSpec:
    """Resolve ``cfg.model.config`` through the task's option schema (in place) and run the task's checks."""
    from hf_tasks.config import resolve_options

    spec = get_task(cfg.task)
    resolve_options(cfg.model, spec.options(cfg))
    spec.validate(cfg)
    return spec
