"""Convert recipe and CLI values to the config's field types, without ever evaluating code.

CLI values arrive as strings; YAML values arrive typed. Both go through ``coerce``, which raises a
``ConfigError`` naming the key for anything that does not fit the field's annotation.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import yaml

from hf_tasks.errors import ConfigError



def coerce(value: Any, hint: Any, key: str, from_cli: bool = False) -> Any:
    """Convert ``value`` to type ``hint`` or raise a ConfigError naming ``key``. Never evaluates code."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (from_cli and str(value).lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], key, from_cli) if len(inner) == 1 else value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key!r} must be one of {', '.join(map(str, args))}; got {value!r}"
                              f"{suggest(str(value), [str(a) for a in args])}")
        return value
    if origin is list:
        return _coerce_list(value, args[0] if args else Any, key, from_cli)
    if origin is dict or hint is dict:
        if from_cli:
            value = _yaml_value(value, key)
        if not isinstance(value, dict):
            raise ConfigError(f"{key!r} must be a mapping, got {value!r}")
        return value
    return _coerce_scalar(value, hint, key)


def _coerce_list(value: Any, item: Any, key: str, from_cli: bool) -> list:
    if from_cli and isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = _yaml_value(text, key)
        else:
            value = [v.strip() for v in text.split(",") if v.strip()]
    if isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{key!r} must be a list, got {value!r}")
    return [_coerce_scalar(v, item, key) if item is not Any else v for v in value]


def _coerce_scalar(value: Any, hint: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key!r} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key!r} must be an integer, got {value!r}")
        try:
            return int(value) if not isinstance(value, str) else int(value.strip())
        except ValueError:
            raise ConfigError(f"{key!r} must be an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key!r} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key!r} must be a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key!r} must be a string, got {value!r}")
        return str(value)
    return value


def _yaml_value(text: str, key: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{key!r}: cannot parse {text!r}") from None


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def suggest(value: str, valid: list[str]) -> str:
    from hf_tasks.util import did_you_mean

    return did_you_mean(value, valid, cutoff=0.5)
