"""Typed run configuration: a YAML recipe plus CLI overrides become one validated ``TrainConfig``.

Types live only in these dataclasses. Every key is checked against them, unknown keys are rejected with the
nearest valid name, and ``validate`` runs before any Accelerator or model exists, so a typo costs a second, not
a training run. A ``None`` default means "the model's (or task's) own default".
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hf_tasks.coerce import coerce, is_number
from hf_tasks.errors import ConfigError
from hf_tasks.util import nearest

RECIPES_DIR = Path(__file__).parent / "recipes"
MODEL_OPTIONS = "model.config"  # the task-typed mapping: its keys come from the task's option schema

#: The Keras cats-vs-dogs recipe (``ImageDataGenerator(rotation_range=40, width_shift_range=0.2, ...)``).
KERAS_PRESET: dict[str, Any] = dict(
    rotation=40, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2, hflip=True, fill_mode="nearest"
)
#: Everything off.
NO_AUGMENT: dict[str, Any] = dict(
    rotation=0, width_shift=0, height_shift=0, shear=0, zoom=0, hflip=False, fill_mode="nearest"
)


@dataclass
class AugmentConfig:
    """Training augmentation. ``preset`` fills every field left unset (``None``)."""

    preset: Literal["none", "keras"] = "none"
    rotation: float | None = None  # degrees, uniform in [-r, r]
    width_shift: float | None = None  # fraction of the width
    height_shift: float | None = None  # fraction of the height
    shear: float | None = None  # degrees, as Keras' shear_range
    zoom: float | None = None  # each axis scaled by a factor in [1 - z, 1 + z]
    hflip: bool | None = None
    fill_mode: Literal["nearest", "reflect", "constant"] | None = None

    def resolved(self) -> dict[str, Any]:
        """The effective parameters: explicit fields win over the preset's values."""
        base = dict(KERAS_PRESET if self.preset == "keras" else NO_AUGMENT)
        for key in base:
            value = getattr(self, key)
            if value is not None:
                base[key] = value
        return base


@dataclass
class DataConfig:
    """Where the prepared dataset lives and how its samples become model inputs."""

    dataset: str = ""  # a save_to_disk folder, a Parquet folder, or a Hub dataset id
    revision: str | None = None
    train_split: str = "train"
    eval_split: str | None = "validation"  # None: no per-epoch evaluation
    test_split: str | None = "test"  # None: no final test evaluation
    image_column: str = "image"
    label_column: str = "label"
    image_size: int | None = None  # None: the model's own input size
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    """Which network to build.

    ``name`` is a Hub id or local folder (transformers), ``timm/<arch>`` or ``timm:<arch>`` (timm), or
    ``small_cnn`` (the from-scratch baseline). ``config`` overrides architecture fields; with ``pretrained: false``
    and a ``model_type`` (or timm ``architecture``) in it, the model is built with no download at all.
    The ``trust_*`` switches are the user's explicit say-so for loading risky files (see ``hf_tasks.trust``).
    """

    name: str = "small_cnn"
    pretrained: bool = True
    revision: str | None = None  # branch, tag or commit of model.name (a 40-hex sha with trust_remote_code)
    config: dict[str, Any] = field(default_factory=dict)
    freeze_backbone: bool = False  # True: train only the new head (linear probe)
    checkpoint: str | None = None  # classification: a local weights file (.safetensors, timm .pth.tar) to start from
    reset_head: bool = False  # True: a new head for the dataset's labels even when model.name is a fine-tuned run
    trust_pickle: bool = False  # True: pickled weights (.bin/.pt/.pth) may load (they can run code)
    trust_remote_code: bool = False  # True: run the model repo's own code; needs model.revision pinned to a sha


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule.

    The ``step`` schedule multiplies the lr by ``gamma`` after each epoch listed in ``step_epochs``:
    "lr x 0.1 after epoch 50" is ``scheduler: step, step_epochs: [50], gamma: 0.1``.
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw only
    scheduler: Literal["constant", "linear", "cosine", "step"] = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0
    step_epochs: list[int] = field(default_factory=list)
    gamma: float = 0.1
    max_grad_norm: float | None = 1.0  # None: no clipping


@dataclass
class TrainConfig:
    """One training run. Saved, resolved, next to the weights as ``train_config.yaml``."""

    task: str = "classification"
    output_dir: str = "outputs/run"
    seed: int = 42
    epochs: int = 3
    max_steps: int | None = None  # optimizer steps; stops early when reached
    batch_size: int = 32  # per process
    eval_batch_size: int | None = None  # None: batch_size
    grad_accum: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    checkpoint_every: int | None = None  # optimizer steps; None: at the end of every epoch
    keep_checkpoints: int = 2
    metric_for_best: str | None = None  # None: the task's main metric
    greater_is_better: bool | None = None  # None: inferred from the metric's name
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    resume: str | None = None  # "auto" (newest complete checkpoint) or a checkpoint folder
    overwrite: bool = False
    skip_nonfinite: bool = False  # skip steps with a NaN/inf loss or gradient instead of stopping the run
    max_skipped_fraction: float = 0.1  # with skip_nonfinite: stop once more than this share of the steps was skipped
    report_to: list[str] = field(default_factory=list)  # accelerate trackers, e.g. [tensorboard]
    log_every: int = 10  # optimizer steps between loss logs
    push_to_hub: str | None = None  # a repo id: push the finished run (model, card, results) there in one commit
    hub_private: bool = True  # a repo created by push_to_hub is private unless this is false
    hub_revision: str | None = None  # branch to push to (created if needed)
    hub_license: str = "other"  # the card's license id (e.g. apache-2.0); "other" until the user says
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


# ----------------------------------------------------------------------------------------------- building


def read_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A config from a recipe (path or packaged name) and ``--key value`` overrides, with every generic key
    validated. ``model.config`` stays the raw mapping (recipe values merged with the overrides): its schema is the
    task's, applied by ``hf_tasks.registry.load_config``, the function most callers want."""
    raw: dict[str, Any] = {}
    if recipe:
        raw = read_recipe(recipe)
    cfg = from_dict(TrainConfig, raw, prefix="")
    for key, value in parse_overrides(overrides or []):
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Every generic key's checks (``hf_tasks.validation``), before any model is built."""
    from hf_tasks.validation import validate as check

    check(cfg)


def read_recipe(recipe: str | Path) -> dict[str, Any]:
    """Read a recipe file, or a packaged recipe by name (``cats_vs_dogs_vit``)."""
    path = Path(recipe)
    if not path.is_file():
        packaged = RECIPES_DIR / f"{Path(recipe).stem}.yaml"
        if not packaged.is_file():
            known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
            raise ConfigError(f"recipe {str(recipe)!r} is neither a file nor a packaged recipe"
                              f"{_hint(str(recipe), known)}"
                              f"; packaged recipes: {', '.join(known)}")
        path = packaged
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path} must be a mapping of keys to values")
    return raw


def from_dict(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, rejecting unknown keys and coercing values to field types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        key = str(key).replace("-", "_")
        if key not in names:
            hint = _hint(key, names, prefix)
            if not hint and prefix.startswith(MODEL_OPTIONS):  # a task's options: say which keys there are
                hint = f"; {prefix.rstrip('.')} takes {', '.join(names)}"
            raise ConfigError(f"unknown key {prefix + key!r}{hint}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix + key!r} must be a mapping, got {value!r}")
            kwargs[key] = from_dict(hints[key], value, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def all_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the config, e.g. ``optim.lr``."""
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += all_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def resolve_key(key: str) -> str:
    """Map a CLI key to its dotted name: dashes become underscores, a unique leaf name finds its section."""
    key = key.lstrip("-").replace("-", "_")
    keys = all_keys()
    if key in keys or key.startswith(MODEL_OPTIONS + "."):
        return key
    matches = [k for k in keys if k.rsplit(".", 1)[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"key {key!r} is ambiguous: use one of {', '.join(matches)}")
    raise ConfigError(f"unknown key {key!r}{_hint(key, keys)}")


def parse_overrides(argv: list[str]) -> list[tuple[str, str]]:
    """``--a.b 1 --c=2 d=3`` → ``[("a.b", "1"), ("c", "2"), ("d", "3")]``; values stay strings until coerced."""
    pairs, i = [], 0
    while i < len(argv):
        token = argv[i]
        if "=" in token:
            key, value = token.split("=", 1)
            i += 1
        elif token.startswith("--"):
            if i + 1 >= len(argv) or (argv[i + 1].startswith("--") and not is_number(argv[i + 1])):
                key, value = token, "true"  # a bare flag: --overwrite
                i += 1
            else:
                key, value = token, argv[i + 1]
                i += 2
        else:
            raise ConfigError(f"unexpected argument {token!r}: overrides look like --key value or key=value")
        pairs.append((resolve_key(key), value))
    return pairs


def set_value(cfg: TrainConfig, dotted: str, value: Any) -> None:
    """Set a dotted key on ``cfg``, coercing ``value`` (often a CLI string) to the field's type.

    ``model.config`` is merged, never replaced: ``--model.config '{dropout: 0.2}'`` and ``--model.config.dropout 0.2``
    both change that one key of the recipe's mapping (the task's option schema types and checks it later).
    """
    from_cli = isinstance(value, str)
    if dotted == MODEL_OPTIONS or dotted.startswith(MODEL_OPTIONS + "."):
        path = [part for part in dotted[len(MODEL_OPTIONS):].split(".") if part]
        parsed = coerce(value, dict, dotted, from_cli=from_cli) if not path else \
            (_yaml_scalar(value) if from_cli else value)
        cfg.model.config = merge_options(cfg.model.config, parsed, path)
        return
    *sections, leaf = dotted.split(".")
    target = cfg
    for section in sections:
        target = getattr(target, section)
    hint = typing.get_type_hints(type(target))[leaf]
    setattr(target, leaf, coerce(value, hint, dotted, from_cli=from_cli))


def merge_options(base: dict[str, Any], value: Any, path: list[str]) -> dict[str, Any]:
    """``base`` with ``value`` set at ``path``, as a JSON merge patch (RFC 7386): a mapping is merged key by key
    into what is there, and ``null`` removes a key (``--model.config.encoder null``)."""
    if not path:
        if not isinstance(value, dict):
            return value
        merged = dict(base)
        for key, inner in value.items():
            merged = merge_options(merged, inner, [str(key)])
        return merged
    head, *rest = path
    if value is None and not rest:
        return {k: v for k, v in base.items() if k != head}
    inner = base.get(head)
    return {**base, head: merge_options(inner if isinstance(inner, dict) else {}, value, rest)}


def resolve_options(model: ModelConfig, options: type | None) -> None:
    """Check ``model.config`` against the task's option dataclass: unknown keys fail naming the nearest one, values
    are coerced to the field types, and the mapping keeps only what is set (``None`` means the model's default).
    Without a schema (``options`` is None) the mapping is left to the model's own config class to check."""
    if options is None:
        return
    parsed = from_dict(options, model.config, prefix=MODEL_OPTIONS + ".")
    model.config = {k: v for k, v in dataclasses.asdict(parsed).items() if v is not None}


def _yaml_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


# names users bring from transformers' TrainingArguments and timm's train.py
_ALIASES = {
    "learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size", "gradient_accumulation_steps": "grad_accum",
    "lr_scheduler_type": "scheduler", "sched": "scheduler", "opt": "optimizer", "clip_grad": "max_grad_norm",
    "resume_from_checkpoint": "resume", "model_name_or_path": "name", "warmup_epochs": "warmup_ratio",
    "fp16": "mixed_precision", "bf16": "mixed_precision", "mixed_precision_dtype": "mixed_precision",
    "ignore_mismatched_sizes": "reset_head",
}


def _hint(key: str, valid: list[str], prefix: str = "") -> str:
    leaf = key.rsplit(".", 1)[-1]
    alias = _ALIASES.get(leaf)
    if alias:
        section = key.rsplit(".", 1)[0] + "." if "." in key else ""
        for candidate in (section + alias, alias):
            if candidate in valid:
                return f"; did you mean {prefix + candidate!r}?"
        matches = [v for v in valid if v.rsplit(".", 1)[-1] == alias]
        if matches:
            return f"; did you mean {prefix + matches[0]!r}?"
    close = nearest(key, valid, cutoff=0.5)
    if not close and "." in key:
        close = nearest(key.rsplit(".", 1)[-1], valid, cutoff=0.5)
    return f"; did you mean {prefix + close!r}?" if close else ""


def evaluation_config(task: str, dataset: str, split: str, batch_size: int, image_column: str = "image",
                      label_column: str = "label") -> TrainConfig:
    """A TrainConfig that reads one split for evaluation (the loaders and Accelerator come from it)."""
    data = DataConfig(dataset=dataset, train_split=split, eval_split=None, test_split=None,
                      image_column=image_column, label_column=label_column)
    return TrainConfig(task=task, batch_size=batch_size, data=data)
