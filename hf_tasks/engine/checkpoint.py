"""Atomic training checkpoints.

A checkpoint is written into a temporary folder, synced to disk, marked complete and only then renamed into place;
a checkpoint it replaces (the same step saved again) is moved aside first and deleted last, and older checkpoints
are removed only after the new one is in place (accelerate's own rotation deletes first). ``--resume auto`` takes
the newest complete checkpoint whose files all check out, so a crash while saving never leaves a half-written one to
resume from, and a damaged one is named and passed over.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hf_tasks.errors import HfTasksError
from hf_tasks.util import flatten, write_json

COMPLETE = "COMPLETE"
BEST_DIR = "best"  # the best weights so far; never rotated away
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^(?:\.replaced-)?checkpoint-(\d+)$")
#: settings a resumed run may change: they take effect for real (the rest is restored from the checkpoint, or
#: shapes what was already trained, so changing them would leave the saved config saying what was not done)
RESUMABLE_KEYS = ("resume", "overwrite", "model.trust_pickle", "output_dir", "epochs", "max_steps",
                  "checkpoint_every", "keep_checkpoints", "log_every", "report_to", "push_to_hub", "hub_private",
                  "hub_revision", "hub_license", "eval_batch_size", "data.num_workers", "early_stopping_patience",
                  "skip_nonfinite", "max_skipped_fraction")


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
    with out_of_space_is_an_error(tmp, final, is_main=accelerator.is_main_process):
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_json(tmp / STATE_FILE, state, durable=True)
            _fsync_tree(tmp)
            write_json(tmp / COMPLETE, {"step": step}, durable=True)
    if accelerator.is_main_process:
        publish(tmp, final)
        rotate(root, keep)
    accelerator.wait_for_everyone()
    return final


def publish(tmp: Path, final: Path) -> None:
    """Give a complete checkpoint its name; one already there (the same step saved again) is moved aside first and
    deleted only once the new one is in place, so a kill at any moment leaves a complete checkpoint of that step."""
    replaced = final.with_name(f".replaced-{final.name}")
    if final.exists():
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    shutil.rmtree(replaced, ignore_errors=True)


@contextmanager
def out_of_space_is_an_error(tmp: Path, final: Path, is_main: bool) -> Iterator[None]:
    """A full disk while saving: remove the partial folder and say so in one line; older checkpoints stay."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        if not _is_disk_full(err):
            raise
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = list_complete(final.parent)
        previous = f"the newest complete checkpoint {kept[-1]} is kept" if kept else "no earlier checkpoint exists"
        raise HfTasksError(f"no space left on the device while saving checkpoint {final}: the partial folder was "
                           f"removed; {previous}; free some space and continue with --resume auto") from None


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return "No space left" in str(err) or "file write failed" in str(err)  # torch's writer wraps the OSError


def rotate(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints, and stale temporary folders."""
    for stale in root.glob(".tmp-checkpoint-*"):
        shutil.rmtree(stale, ignore_errors=True)
    complete = list_complete(root)
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def list_complete(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first. A step's checkpoint moved aside while it was being replaced counts when
    the replacement never got its name (a kill between the two renames)."""
    found: dict[int, Path] = {}
    for path in sorted(root.glob("*checkpoint-*"), key=lambda p: p.name.startswith(".")):
        match = _NAME.match(path.name)
        if match and (path / COMPLETE).is_file():
            found.setdefault(int(match.group(1)), path)
    return [found[step] for step in sorted(found)]


def find_resume_checkpoint(output_dir: str | Path, resume: str) -> Path | None:
    """``auto``: the newest complete checkpoint whose files check out (None when there is none; a damaged one is
    named and passed over); otherwise the given folder, which must check out."""
    if resume == "auto":
        damaged = []
        for path in reversed(list_complete(checkpoint_dir(output_dir))):
            problem = checkpoint_problem(path)
            if problem is None:
                return path
            print(f"--resume auto: passing over checkpoint {path}: {problem}")
            damaged.append(f"checkpoint {path} is corrupt: {problem}")
        if damaged:  # never start afresh over a run whose every checkpoint is damaged
            raise HfTasksError(f"{damaged[0]}; no earlier complete checkpoint to fall back to")
        return None
    path = Path(resume)
    if not path.is_dir():
        raise HfTasksError(f"'resume': checkpoint folder {path} does not exist")
    if not (path / COMPLETE).is_file():
        raise HfTasksError(f"'resume': checkpoint {path} is incomplete (no {COMPLETE} marker): it was interrupted "
                           "while being written; pick an earlier one or use --resume auto")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise HfTasksError(f"checkpoint {path} is corrupt: {problem}")
    return path


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with a checkpoint's files (naming the file), or None: the state file parses and has the
    fields a resume reads, the weights' headers read, every pickle archive opens, the RNG states load."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as err:
        return f"{STATE_FILE} cannot be read ({err})"
    for key in ("epoch", "global_step", "batches_done"):
        value = state.get(key) if isinstance(state, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{STATE_FILE} has no valid {key!r} (found {value!r})"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return "no model weights (*.safetensors)"
    from safetensors import safe_open

    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own error types for a bad header
            return f"{file.name} is not readable safetensors ({type(err).__name__}: {err})"
    for file in sorted([*path.glob("*.bin"), *path.glob("*.pkl")]):
        try:
            with zipfile.ZipFile(file) as archive:
                archive.namelist()
        except (OSError, zipfile.BadZipFile) as err:
            return f"{file.name} is empty or truncated ({err})"
    return _rng_state_problem(path)


def _rng_state_problem(path: Path) -> str | None:
    from accelerate.utils import load

    for file in sorted(path.glob("random_states_*.pkl")):
        try:
            states = load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # unpickling errors come in many types
            return f"{file.name} cannot be loaded ({type(err).__name__})"
        if not isinstance(states, dict) or "torch_manual_seed" not in states:
            return f"{file.name} holds no random number generator states"
    return None


def check_same_world(path: Path, saved: int | None, now: int) -> None:
    """The lr schedule and which samples each process has seen depend on the number of processes."""
    if saved is not None and saved != now:
        raise HfTasksError(f"--resume: checkpoint {path} was written by a run on {saved} process(es), this one has "
                           f"{now}: the schedule and the samples already seen depend on it; resume with "
                           f"--num_processes {saved}")


def check_same_labels(path: Path, saved: list[str] | None, labels: list[str] | None, dataset: str) -> None:
    """A checkpoint's head predicts the labels it was trained on: resuming with others would mislabel everything."""
    from hf_tasks.labels import check_same_labels as compare

    compare(saved, labels, f"--resume: checkpoint {path} was trained for", f"'data.dataset' {dataset!r} now has",
            "resume with the dataset it was trained on, or train into a new output_dir", error=HfTasksError)


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


def _fsync_tree(root: Path) -> None:
    """Flush every file of a folder, and the folder, to the disk before the folder is marked complete."""
    for file in root.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(root)


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
    """Resuming continues *this* run: only settings that can take effect mid-run (``RESUMABLE_KEYS``) may change;
    any other change is refused, naming it, since the restored state would silently keep the old value."""
    import yaml

    saved_file = Path(output_dir) / "train_config.yaml"
    if not saved_file.is_file():
        return
    keep = {"model.config"}
    saved, now = flatten(yaml.safe_load(saved_file.read_text()) or {}, keep=keep), flatten(current, keep=keep)
    # keys the saved config lacks are newer fields
    changed = sorted(k for k in saved if saved.get(k) != now.get(k) and k not in RESUMABLE_KEYS)
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise HfTasksError(f"--resume: {', '.join(changed)} differ from the run in {output_dir} ({details}); a "
                           "resumed run keeps its settings (only " + ", ".join(RESUMABLE_KEYS[3:8]) + ", ... may "
                           "change): resume with the same settings or train into a new output_dir")


