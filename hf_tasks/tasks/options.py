"""Typed ``model.config`` schemas shared by the tasks (the lerobot pattern: a dataclass per kind of options).

A task declares its options as a dataclass; where the options are the fields of a transformers config class (a
from-config ViT, the small CNN, a caption decoder), the dataclass is derived from that class's own defaults, so the
keys, their types and the "did you mean" always follow the installed transformers.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from hf_tasks.errors import ConfigError

# what a config carries about itself rather than about the architecture: never a recipe's option
BOOKKEEPING = frozenset({"transformers_version", "architectures", "id2label", "label2id", "num_labels",
                         "_name_or_path", "torch_dtype", "dtype", "return_dict", "output_hidden_states",
                         "output_attentions", "auto_map", "_attn_implementation_autoset"})


@functools.lru_cache(maxsize=None)
def options_from_config(config_class: type, extra: tuple[tuple[str, Any], ...] = (),
                        exclude: frozenset[str] = frozenset()) -> type:
    """A dataclass whose optional fields are ``config_class``'s own keys, typed after its default values (``None``:
    the config's default), plus ``extra`` (name, type) fields; the keys in ``exclude`` are the task's to set."""
    defaults = config_class().to_dict()
    fields = [(key, _type_of(value) | None, dataclasses.field(default=None))
              for key, value in defaults.items() if key not in BOOKKEEPING | exclude]
    names = {name for name, *_ in fields}
    fields += [(name, hint, dataclasses.field(default=None)) for name, hint in extra if name not in names]
    return dataclasses.make_dataclass(f"{config_class.__name__}Options", fields)


def _type_of(value: Any) -> Any:
    for kind in (bool, int, float, str):
        if type(value) is kind:
            return kind
    return list if isinstance(value, (list, tuple)) else Any


def transformers_config_class(model_type: str, key: str) -> type:
    """The config class transformers registers for ``model_type``, or a ConfigError naming the nearest type."""
    from transformers import CONFIG_MAPPING

    from hf_tasks.util import did_you_mean

    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"{key!r} {model_type!r} is unknown to transformers"
                          f"{did_you_mean(str(model_type), list(CONFIG_MAPPING.keys()))}")
    return CONFIG_MAPPING[model_type]


def check_against(options: type, values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``values`` parsed with ``options`` (unknown keys fail naming the nearest), as a plain mapping of what is set."""
    from hf_tasks.config import from_dict

    parsed = from_dict(options, values, prefix=prefix)
    return {k: v for k, v in dataclasses.asdict(parsed).items() if v is not None}


def check_unused(unused: dict[str, Any], config: Any, prefix: str) -> None:
    """Keys a pretrained config did not know (``from_pretrained(..., return_unused_kwargs=True)``): a typo that
    would otherwise be written into config.json and do nothing."""
    from hf_tasks.util import did_you_mean

    for key in unused:
        known = [k for k in config.to_dict() if k not in BOOKKEEPING]
        raise ConfigError(f"unknown key {prefix + key!r} for {type(config).__name__}"
                          f"{did_you_mean(key, known, prefix=prefix)}")
