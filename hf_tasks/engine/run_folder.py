"""A run's output folder: what in it belongs to the run, who is writing it, and whether the run finished.

- **Ownership**: a run writes fixed names (``checkpoints/``, ``results.json``, …) plus the files of the saved model,
  which it lists in ``run_outputs.json`` when it finishes. ``--overwrite`` deletes exactly those and refuses a folder
  that also holds anything else, naming it: a run never deletes what it did not write.
- **One writer**: the main process holds a lock on the folder (``filelock``, released by the OS if the process
  dies) for the whole run; a second run on the same folder fails at once, naming the holder.
- **Finished or not**: ``run_in_progress.json`` exists from the first step until the final files are written, so a
  folder left by a killed or still-running run is never mistaken for a finished one by ``card`` or ``push``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hf_tasks.errors import HfTasksError
from hf_tasks.util import write_json

OUTPUTS_MANIFEST = "run_outputs.json"
IN_PROGRESS = "run_in_progress.json"
LOCK_FILE = ".hf-tasks.lock"
LOCK_INFO = ".hf-tasks.lock.json"
#: the names every run writes before it finishes, whatever its task (the rest, the card included, are listed in the
#: manifest at the end, so a user's own README.md or logs/ beside a killed run is never taken for the run's)
FIXED_ENTRIES = frozenset({"checkpoints", "train_config.yaml", "log_history.json", "results.json",
                           "comparison.json", OUTPUTS_MANIFEST, IN_PROGRESS, LOCK_FILE, LOCK_INFO})
#: any of these means an earlier run used the folder
RUN_MARKERS = ("results.json", "log_history.json", "checkpoints", "train_config.yaml")


def holds_a_run(output_dir: Path) -> bool:
    return output_dir.is_dir() and any((output_dir / name).exists() for name in RUN_MARKERS)


def owned_entries(output_dir: Path) -> set[str]:
    """Top-level names a run wrote into ``output_dir``: the fixed ones and those its manifest lists."""
    owned = set(FIXED_ENTRIES)
    try:
        listed = json.loads((output_dir / OUTPUTS_MANIFEST).read_text())
        owned.update(name for name in listed if isinstance(name, str) and "/" not in name and name not in ("", ".."))
    except (OSError, ValueError, TypeError):
        pass
    return owned


def foreign_entries(output_dir: Path) -> list[str]:
    """Top-level entries of ``output_dir`` that no run wrote."""
    if not output_dir.is_dir():
        return []
    owned = owned_entries(output_dir)
    return sorted(entry.name for entry in output_dir.iterdir() if entry.name not in owned)


def clear_run(output_dir: Path) -> None:
    """``--overwrite``: delete what an earlier run wrote, or refuse (deleting nothing) if anything else is there."""
    foreign = foreign_entries(output_dir)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise HfTasksError(f"--overwrite: {output_dir} also holds {shown}, which no hf-tasks run wrote; nothing was "
                           "deleted: move them away or choose another output_dir")
    for name in owned_entries(output_dir) - {LOCK_FILE, LOCK_INFO}:
        path = output_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def mark_in_progress(output_dir: Path) -> None:
    (output_dir / IN_PROGRESS).write_text(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                      "pid": os.getpid(), "host": socket.gethostname()}))


def mark_finished(output_dir: Path) -> None:
    (output_dir / IN_PROGRESS).unlink(missing_ok=True)


def record_outputs(output_dir: Path, foreign_at_start: set[str]) -> None:
    """List what the run wrote: every entry but the lock and what was already there without being a run's."""
    written = sorted(entry.name for entry in output_dir.iterdir()
                     if entry.name not in foreign_at_start and entry.name not in (LOCK_FILE, LOCK_INFO))
    write_json(output_dir / OUTPUTS_MANIFEST, written)


def check_finished(output_dir: Path, action: str) -> None:
    """``card`` / ``push`` / ``evaluate`` take only a finished run: an interrupted one mixes two runs' files."""
    marker = output_dir / IN_PROGRESS
    if not marker.is_file():
        return
    try:
        started = json.loads(marker.read_text()).get("started", "?")
    except (OSError, ValueError, AttributeError):
        started = "?"
    raise HfTasksError(f"cannot {action} {output_dir}: the run started there at {started} has not finished (it is "
                       "still running, or was stopped before writing its results); finish it with --resume auto")


@contextmanager
def exclusive(output_dir: Path) -> Iterator[None]:
    """Hold the folder's lock for the duration of the block (the main process of a run takes it)."""
    from filelock import FileLock, Timeout

    output_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(output_dir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise HfTasksError(f"output_dir {output_dir} is in use by another run ({_holder(output_dir)}); wait for it "
                           "to end or choose another output_dir") from None
    info = output_dir / LOCK_INFO
    info.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv)}))
    try:
        yield
    finally:
        info.unlink(missing_ok=True)
        lock.release()


def _holder(output_dir: Path) -> str:
    try:
        info = json.loads((output_dir / LOCK_INFO).read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def agree(accelerator, action) -> Any:
    """Run ``action`` on the main process; a user error there is raised by every process, so none waits forever."""
    error, result = None, None
    if accelerator.is_main_process:
        try:
            result = action()
        except HfTasksError as err:
            error = str(err)
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        error = broadcast_object_list([error])[0]
    if error is not None:
        raise HfTasksError(error)
    return result


def prepare(cfg, accelerator) -> tuple[Path, set[str]]:
    """Refuse to clobber an earlier run unless --overwrite or --resume says so; --overwrite removes only what a run
    wrote. Returns the folder and the entries in it that are not the run's (kept, never listed as outputs)."""
    output_dir = Path(cfg.output_dir)

    def on_main() -> set[str]:
        used = holds_a_run(output_dir)
        if used and not (cfg.overwrite or cfg.resume):
            raise HfTasksError(f"output_dir {output_dir} already holds a run; pass --overwrite to replace it or "
                               "--resume auto to continue it")
        if used and cfg.overwrite and not cfg.resume:
            clear_run(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        return set(foreign_entries(output_dir))

    foreign = agree(accelerator, on_main)
    accelerator.wait_for_everyone()
    return output_dir, foreign or set()
