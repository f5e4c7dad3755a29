"""Checks of the generic run config: each names the key and the value, before any Accelerator or model exists."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import TYPE_CHECKING, Any

from hf_tasks.errors import ConfigError

if TYPE_CHECKING:
    from hf_tasks.config import TrainConfig


def validate(cfg: TrainConfig) -> None:
    """Fail fast, naming the key, on values that would only break later (before any model is built)."""
    check_finite(cfg)
    checks = [
        (cfg.epochs >= 1, "epochs", "must be >= 1"),
        (cfg.max_steps is None or cfg.max_steps >= 1, "max_steps", "must be >= 1"),
        (cfg.batch_size >= 1, "batch_size", "must be >= 1"),
        (cfg.eval_batch_size is None or cfg.eval_batch_size >= 1, "eval_batch_size", "must be >= 1"),
        (cfg.grad_accum >= 1, "grad_accum", "must be >= 1"),
        (cfg.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1"),
        (cfg.checkpoint_every is None or cfg.checkpoint_every >= 1, "checkpoint_every", "must be >= 1"),
        (cfg.early_stopping_patience is None or cfg.early_stopping_patience >= 1, "early_stopping_patience",
         "must be >= 1"),
        (cfg.log_every >= 1, "log_every", "must be >= 1"),
        (0 <= cfg.max_skipped_fraction <= 1, "max_skipped_fraction", "must be in [0, 1]"),
        (cfg.push_to_hub is None or cfg.push_to_hub.count("/") == 1, "push_to_hub", "must be a repo id user/name"),
        (bool(cfg.data.dataset), "data.dataset", "is required: a dataset folder built by `hf-tasks build-dataset` "
                                                 "or a Hub dataset id"),
        (cfg.data.image_size is None or cfg.data.image_size >= 8, "data.image_size", "must be >= 8"),
        (cfg.data.num_workers >= 0, "data.num_workers", "must be >= 0"),
        (cfg.optim.lr > 0, "optim.lr", "must be > 0"),
        (cfg.optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0"),
        (0 <= cfg.optim.momentum < 1, "optim.momentum", "must be in [0, 1)"),
        (0 <= cfg.optim.warmup_ratio < 1, "optim.warmup_ratio", "must be in [0, 1)"),
        (cfg.optim.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0"),
        (0 < cfg.optim.gamma <= 1, "optim.gamma", "must be in (0, 1]"),
        (cfg.optim.max_grad_norm is None or cfg.optim.max_grad_norm > 0, "optim.max_grad_norm", "must be > 0"),
        (len(cfg.optim.betas) == 2 and all(0 <= b < 1 for b in cfg.optim.betas), "optim.betas",
         "must be two numbers in [0, 1)"),
        (all(e >= 1 for e in cfg.optim.step_epochs), "optim.step_epochs", "must list epochs >= 1"),
        (cfg.optim.scheduler != "step" or bool(cfg.optim.step_epochs), "optim.step_epochs",
         "must list at least one epoch for the step scheduler"),
        (cfg.early_stopping_patience is None or cfg.data.eval_split is not None, "early_stopping_patience",
         "needs data.eval_split"),
    ]
    for ok, key, message in checks:
        if not ok:
            raise ConfigError(f"{key!r} {message} (got {_get(cfg, key)!r})")
    _validate_environment(cfg)
    from hf_tasks.trust import validate_trust

    validate_trust(cfg.model)


def check_finite(section: Any, prefix: str = "") -> None:
    """Every float setting (``float``, ``float | None``, ``list[float]``) must hold finite numbers.

    NaN and inf slip through range checks such as ``lr > 0`` (inf is > 0) and would only break training later, so
    they are refused here for every float field of the typed config, present and future, naming the key.
    """
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        hint, value, key = hints[f.name], getattr(section, f.name), prefix + f.name
        if dataclasses.is_dataclass(hint):
            check_finite(value, f"{key}.")
        elif float in (hint, *typing.get_args(hint)):
            values = value if isinstance(value, list) else [value]
            if not all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in values):
                what = "finite numbers" if isinstance(value, list) else "a finite number"
                raise ConfigError(f"{key!r} must be {what} (got {value!r})")


def _validate_environment(cfg: TrainConfig) -> None:
    if cfg.mixed_precision == "fp16":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("'mixed_precision' fp16 needs a CUDA GPU; use bf16 on the CPU, or no")
    unknown = [t for t in cfg.report_to if t not in ("tensorboard", "wandb", "mlflow", "comet_ml", "aim",
                                                     "clearml", "dvclive", "trackio", "all")]
    if unknown:
        raise ConfigError(f"'report_to' has unknown trackers {unknown}; accelerate knows tensorboard, wandb, "
                          "mlflow, comet_ml, aim, clearml, dvclive, trackio")


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg
