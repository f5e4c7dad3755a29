"""Publishing a build: atomic ``save_to_disk`` or Parquet shards, ``build_report.json``, the dataset card, push.

Everything is written into a temporary sibling folder that is renamed over ``out`` only when complete, so an
interrupted build leaves either the previous dataset or nothing, and re-running replaces it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from hf_tasks.errors import DataError

from .common import REPORT_NAME, BuildResult

# ------------------------------------------------------------------------------------------- publishing
MAX_SHARD_BYTES = 500 * 2**20


def _write_parquet(dataset: DatasetDict, dest: Path) -> None:
    """One folder per split, ``{split}-00000-of-0000N.parquet`` shards (features kept in the schema)."""
    for name, split in dataset.items():
        (dest / name).mkdir(parents=True)
        num_shards = max(1, -(-split.data.nbytes // MAX_SHARD_BYTES))
        for i in range(num_shards):
            shard = split.shard(num_shards, i, contiguous=True)
            shard.to_parquet(str(dest / name / f"{name}-{i:05d}-of-{num_shards:05d}.parquet"))


def _guard_out(out: Path) -> None:
    """Only ever replace an earlier build: never wipe a folder this tool did not write."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} exists and is a file; choose a folder path.")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT_NAME).exists():
        raise DataError(
            f"--out {out} is a non-empty folder that was not written by build-dataset (no {REPORT_NAME}); "
            "refusing to replace it. Choose a new or empty folder."
        )


BUILDER_FILE = ".builder.json"  # inside a temporary build folder: which process is writing it


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(out: Path) -> list[str]:
    """Remove what killed builds of ``out`` left beside it: temporary folders whose builder process is gone, and an
    earlier build moved aside for a swap that never finished (put back when ``out`` itself is missing)."""
    cleaned = []
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            builder = json.loads((tmp / BUILDER_FILE).read_text())
            alive = builder.get("host") == socket.gethostname() and _process_alive(int(builder["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            alive = False
        if not alive:
            shutil.rmtree(tmp, ignore_errors=True)
            cleaned.append(tmp.name)
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        if not out.exists() and (old / REPORT_NAME).is_file():
            os.replace(old, out)
            cleaned.append(f"{old.name} (restored as {out.name})")
        else:
            shutil.rmtree(old, ignore_errors=True)
            cleaned.append(old.name)
    return cleaned


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` with renames, restoring the old build if the second rename fails."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def build_report(result: BuildResult, format: str) -> dict[str, Any]:
    return {"info": {**result.info, "format": format}, "rejected": result.report.to_dict()}


def publish(
    result: BuildResult, out: str | os.PathLike, format: str = "arrow", push_to_hub: str | None = None,
    private: bool = True, revision: str | None = None,
) -> Path:
    """Write the dataset and ``build_report.json`` atomically to ``out``; optionally push to the Hub.

    Everything is written into a temporary sibling folder that is renamed over ``out`` only when complete,
    so an interrupted build leaves either the previous dataset or nothing, and re-running replaces it.
    """
    if format not in ("arrow", "parquet"):
        raise DataError(f"Unknown --format {format!r}; use 'arrow' or 'parquet'.")
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in _clean_stale(out):
        print(f"removed {name}, left by a build of {out.name} that was killed", file=sys.stderr)
    _guard_out(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / BUILDER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        if format == "arrow":
            result.dataset.save_to_disk(str(tmp))
        else:
            _write_parquet(result.dataset, tmp)
        report = build_report(result, format)
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n",
                                       encoding="utf-8")
        card = _card_text(result, report, push_to_hub)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        (tmp / BUILDER_FILE).unlink()
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if push_to_hub:
        from .card import push_dataset_card

        result.dataset.push_to_hub(push_to_hub, private=private, revision=revision)
        push_dataset_card(push_to_hub, card, revision)
    return out


def _card_text(result: BuildResult, report: dict[str, Any], repo_id: str | None) -> str:
    from .card import render_dataset_card

    report = json.loads(json.dumps(report, default=str))  # the card shows what build_report.json holds
    first = next(iter(result.dataset.values()))
    return render_dataset_card(report, {name: str(feature) for name, feature in first.features.items()}, repo_id)
