"""What may be unpickled or executed when a model is loaded, and on whose say-so.

- Weights load from safetensors. A pickle file (``pytorch_model.bin``, a ``.pt``/``.pth`` checkpoint) can run code
  when it is unpickled: transformers-format folders and Hub repos that only have pickled weights are refused unless
  the user sets ``model.trust_pickle`` (``--trust-pickle``), and even then torch loads them with
  ``weights_only=True`` (transformers' own rule). Checkpoints whose format is pickle by nature (ultralytics ``.pt``,
  a timm ``.pth``, the registered objects of a training checkpoint) are read with ``weights_only=True`` and need
  ``model.trust_pickle`` only when that restricted unpickler refuses them.
- Code shipped with a model repo (``trust_remote_code``) runs only when the user sets ``model.trust_remote_code``
  AND pins ``model.revision`` to a full 40-hex commit sha, so the code that runs is the code that was reviewed.
  Every ``from_pretrained`` call passes ``trust_remote_code`` explicitly.
- Config values are never evaluated (``hf_tasks.coerce`` parses YAML with ``safe_load`` only).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from hf_tasks.errors import ConfigError

PINNED_SHA = re.compile(r"^[0-9a-f]{40}$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar")
TRUST_PICKLE_HINT = "pass --trust-pickle (model.trust_pickle: true) only if you trust the file"


def validate_trust(model_cfg) -> None:
    """``model.trust_remote_code`` needs ``model.revision`` pinned to a commit sha (branches and tags can move)."""
    if model_cfg.trust_remote_code and not PINNED_SHA.match(model_cfg.revision or ""):
        raise ConfigError(f"'model.trust_remote_code' runs Python code from the model repository: it needs "
                          f"model.revision pinned to a full 40-character commit sha (got {model_cfg.revision!r}), "
                          "so the code that runs is the code you reviewed")


@dataclass(frozen=True)
class LoadPolicy:
    """How far a load may trust the files it reads; the safe defaults refuse pickles and remote code."""

    trust_pickle: bool = False
    trust_remote_code: bool = False
    revision: str | None = None

    @classmethod
    def of(cls, model_cfg) -> LoadPolicy:
        """The policy for ``model.name`` of a run (``ModelConfig``)."""
        return cls(trust_pickle=model_cfg.trust_pickle, trust_remote_code=model_cfg.trust_remote_code,
                   revision=model_cfg.revision)

    def for_part(self) -> LoadPolicy:
        """For other repos a run names (a captioner's encoder/decoder): unpinned, so never remote code."""
        return replace(self, trust_remote_code=False, revision=None)

    def config_kwargs(self) -> dict[str, Any]:
        """For configs, processors and tokenizers."""
        return {"revision": self.revision, "trust_remote_code": self.trust_remote_code}

    def model_kwargs(self) -> dict[str, Any]:
        """For model weights: safetensors only unless pickles are trusted (then transformers picks, weights_only)."""
        return {**self.config_kwargs(), "use_safetensors": None if self.trust_pickle else True}


def load_pretrained(fn: Callable, name: str, key: str, hint: str = "", **kwargs) -> Any:
    """``fn(name, **kwargs)`` with load failures turned into one ``ConfigError`` naming ``key``."""
    with load_errors(key, name, hint, trust_pickle=kwargs.get("use_safetensors") is None):
        return fn(name, **kwargs)


@contextlib.contextmanager
def load_errors(key: str, name: str, hint: str = "", trust_pickle: bool = False) -> Iterator[None]:
    """Turn what loading ``name`` raises (offline, unknown repo, pickle-only weights, custom code) into one
    ``ConfigError`` naming ``key``; ``hint`` says what to do instead."""
    try:
        yield
    except OSError as err:
        refusal = pickle_refusal(key, name) if not trust_pickle and "safetensors" in str(err) else None
        if refusal:
            raise ConfigError(refusal) from None
        reason = " ".join(str(err).split())  # one line: the CLI prints one error line
        raise ConfigError(f"{key!r} {name!r} could not be loaded ({reason}).{' ' + hint if hint else ''}") from None
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise ConfigError(f"{key!r} {name!r} contains custom code that must run to load it; it is not run unless "
                          "you set model.trust_remote_code: true with model.revision pinned to a commit sha, after "
                          "reviewing that code") from None


def pickle_refusal(key: str, name: str) -> str | None:
    """Why a load that found no safetensors was refused, or None when a local folder has no pickles either."""
    files = pickle_files(name)
    if Path(name).is_dir() and not files:
        return None
    found = f"only {', '.join(files)}" if files else "at most pickled weights (pytorch_model.bin)"
    return (f"{key!r} {name!r} has no safetensors weights, {found}: unpickling can run code from the file, so it "
            f"is refused; {TRUST_PICKLE_HINT} (it is then loaded with torch.load(weights_only=True))")


def pickle_files(name: str) -> list[str]:
    """The pickle-format weight files of a local folder (empty for a Hub id)."""
    folder = Path(name)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(PICKLE_SUFFIXES))
