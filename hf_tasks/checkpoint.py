"""Atomic training checkpoints.

A checkpoint is written into a temporary folder, renamed into place, then marked complete; older checkpoints
are removed only after the new one is complete (accelerate's own rotation deletes first). ``--resume auto`` takes
the newest *complete* checkpoint, so a crash while saving never leaves a half-written one to resume from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from hf_tasks.errors import HfTasksError

COMPLETE = "COMPLETE"
BEST_DIR = "best"  # the best weights so far; never rotated away
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
UNCHECKED_KEYS = ("resume", "overwrite", "model.trust_pickle")  # settings a resumed run may change freely


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def save_checkpoint(accelerator, output_dir: str | Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Save model/optimizer/scheduler/RNG states (all processes) plus ``state``; rotate old ones after."""
    root = checkpoint_dir(output_dir)
    final = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_json(tmp / STATE_FILE, state)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _write_json(final / COMPLETE, {"step": step})
        _fsync_dir(root)
        rotate(root, keep)
    accelerator.wait_for_everyone()
    return final


def rotate(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints, and stale temporary folders."""
    for stale in root.glob(".tmp-checkpoint-*"):
        shutil.rmtree(stale, ignore_errors=True)
    complete = list_complete(root)
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def list_complete(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    found = []
    for path in root.glob("checkpoint-*"):
        match = _NAME.match(path.name)
        if match and (path / COMPLETE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def find_resume_checkpoint(output_dir: str | Path, resume: str) -> Path | None:
    """``auto``: the newest complete checkpoint (None when there is none); otherwise the given folder."""
    if resume == "auto":
        complete = list_complete(checkpoint_dir(output_dir))
        return complete[-1] if complete else None
    path = Path(resume)
    if not path.is_dir():
        raise HfTasksError(f"'resume': checkpoint folder {path} does not exist")
    if not (path / COMPLETE).is_file():
        raise HfTasksError(f"'resume': checkpoint {path} is incomplete (no {COMPLETE} marker): it was interrupted "
                           "while being written; pick an earlier one or use --resume auto")
    return path


def check_same_labels(path: Path, saved: list[str] | None, labels: list[str] | None, dataset: str) -> None:
    """A checkpoint's head predicts the labels it was trained on: resuming with others would mislabel everything."""
    if saved is None or labels is None or list(saved) == list(labels):
        return
    raise HfTasksError(f"--resume: checkpoint {path} was trained for {len(saved)} labels {saved[:10]}, but "
                       f"'data.dataset' {dataset!r} now has {len(labels)} labels {labels[:10]}; resume with the "
                       "dataset it was trained on, or train into a new output_dir")


def load_training_state(accelerator, path: Path, trust_pickle: bool = False) -> None:
    """``accelerator.load_state``, after checking the files it would unpickle without ``weights_only``.

    accelerate reads weights from safetensors and the optimizer, scheduler and RNG states with
    ``weights_only=True``, but the objects registered for checkpointing (our scheduler, task hooks such as the
    EMA) come back from ``custom_checkpoint_*.pkl`` with ``weights_only=False``: a tampered file could run code.
    Each must first load under ``weights_only=True`` (ours always do) unless the user trusts pickles.
    """
    import torch

    for file in [] if trust_pickle else sorted(path.glob("custom_checkpoint_*.pkl")):
        try:
            torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:
            raise HfTasksError(f"checkpoint {path} is corrupt or unsafe: {file.name} cannot be loaded with "
                               f"weights_only=True ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                               "pass --trust-pickle (model.trust_pickle: true) only if you trust it") from None
    try:
        accelerator.load_state(str(path))
    except Exception as err:  # a truncated or foreign file: name it, don't dump a stack trace
        raise HfTasksError(f"checkpoint {path} is corrupt or does not match this model: {err}") from None


def read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        raise HfTasksError(f"checkpoint {path} is corrupt: cannot read {STATE_FILE} ({err})") from None


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_best_weights(accelerator, model, output_dir: str | Path) -> None:
    """Write the best weights atomically into ``checkpoints/best`` (all processes call this)."""
    root = checkpoint_dir(output_dir)
    tmp, final = root / ".tmp-best", root / BEST_DIR
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_model(model, str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()


def load_best_weights(model, output_dir: str | Path) -> bool:
    """Load ``checkpoints/best`` into an unwrapped model; False when no evaluation ever ran."""
    from safetensors.torch import load_file

    shards = sorted((checkpoint_dir(output_dir) / BEST_DIR).glob("*.safetensors"))
    if not shards:
        return False
    state_dict = {}
    for shard in shards:
        state_dict.update(load_file(str(shard)))
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    # accelerate's save_model writes one copy of tensors that share storage (tied embeddings): a missing key is
    # fine only when it aliases a loaded one
    loaded = {p.data_ptr() for name, p in model.state_dict().items() if name in state_dict}
    params = model.state_dict()
    untied = [name for name in missing if params[name].data_ptr() not in loaded]
    if unexpected or untied:
        raise HfTasksError(f"best weights in {checkpoint_dir(output_dir) / BEST_DIR} do not match the model "
                           f"(missing {untied[:5]}, unexpected {unexpected[:5]})")
    return True


def check_same_run(current: dict[str, Any], output_dir: Path) -> None:
    """Resuming continues *this* run: the task, model and data must match; other changes are listed."""
    import yaml

    saved_file = Path(output_dir) / "train_config.yaml"
    if not saved_file.is_file():
        return
    saved, now = _flatten(yaml.safe_load(saved_file.read_text()) or {}), _flatten(current)
    # keys the saved config lacks are newer fields; permissions (trust_pickle) may change between attempts
    changed = sorted(k for k in saved if saved.get(k) != now.get(k) and k not in UNCHECKED_KEYS)
    fixed = [k for k in changed if k == "task" or k.startswith(("model.", "data.dataset"))]
    if fixed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in fixed)
        raise HfTasksError(f"--resume: {', '.join(fixed)} differ from the run in {output_dir} ({details}); "
                           "resume with the same settings or train into a new output_dir")
    if changed:
        print(f"--resume: continuing with changed settings: {', '.join(changed)}")


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and f"{prefix}{key}" != "model.config":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
