"""``model.checkpoint``: weights from one local file into a built classifier, as timm's ``load_checkpoint`` does,
but safely.

Accepted: ``.safetensors``; or a torch file — timm ``train.py``'s ``model_best.pth.tar`` / ``checkpoint-N.pth.tar``
(its ``state_dict_ema`` preferred, then ``state_dict``), a plain state dict ``.pth`` / ``.bin``. Torch files are
read with ``torch.load(weights_only=True)``; one that needs more (timm's checkpoints carry an ``argparse.Namespace``)
is refused unless ``model.trust_pickle`` — unpickling can run code from the file. Keys may carry DDP's ``module.``
prefix. Every tensor must fit the model except the classification head, which must have as many outputs as the
dataset has labels unless ``model.reset_head`` drops it (a raw weights file has no label names to compare).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hf_tasks.errors import ConfigError
from hf_tasks.trust import TRUST_PICKLE_HINT

KEY = "model.checkpoint"
NESTED = ("state_dict_ema", "model_ema", "state_dict", "model")  # timm's order: EMA weights first


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from a training checkpoint and without ``module.`` prefixes."""
    path = Path(path)
    if path.name.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise ConfigError(f"{KEY!r} {str(path)!r} is not a readable safetensors file ({err})") from None
    obj = _torch_load(path, trust_pickle)
    for key in NESTED:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{KEY!r} {str(path)!r} holds no state dict (a mapping of names to tensors, possibly "
                          f"under one of {', '.join(NESTED)})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _torch_load(path: Path, trust_pickle: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if not trust_pickle:
            reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{KEY!r} {str(path)!r} cannot be loaded with weights_only=True ({reason}); loading it "
                              f"fully runs code from the file: {TRUST_PICKLE_HINT}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ConfigError(f"{KEY!r} {str(path)!r} is not a readable torch file ({err})") from None


def load_checkpoint(model: torch.nn.Module, head: torch.nn.Module, path: str | Path, trust_pickle: bool,
                    reset_head: bool) -> None:
    """Load ``path`` into ``model`` (a timm wrapper's ``timm_model``); ``head`` is its classification layer."""
    target = model.timm_model if getattr(model, "timm_model", None) is not None else model
    prefix = next(name for name, module in target.named_modules() if module is head)
    state = read_state_dict(path, trust_pickle)
    own = target.state_dict()
    head_keys = [k for k in own if k.startswith(prefix + ".")]
    if reset_head:
        state = {k: v for k, v in state.items() if k not in head_keys}
    misfit = [k for k in state if k in own and state[k].shape != own[k].shape]
    if any(k in head_keys for k in misfit):
        weight = next(k for k in misfit if k in head_keys)
        raise ConfigError(f"{KEY!r} {str(path)!r} has a head with {state[weight].shape[0]} outputs, but the dataset "
                          f"has {own[weight].shape[0]} labels: set model.reset_head: true (--reset-head) to train a "
                          "new head, or use a dataset with the same labels")
    missing = [k for k in own if k not in state and not (reset_head and k in head_keys)]
    unexpected = [k for k in state if k not in own]
    if misfit or missing or unexpected:
        raise ConfigError(f"{KEY!r} {str(path)!r} does not fit {model_name(model)}: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}, other shapes {misfit[:5]}")
    target.load_state_dict(state, strict=False)


def model_name(model: torch.nn.Module) -> str:
    timm_model = getattr(model, "timm_model", None)
    return f"timm {type(timm_model).__name__}" if timm_model is not None else type(model).__name__
