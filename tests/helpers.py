"""Helpers shared by tests: run CLIs in-process or as `accelerate launch` subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def jpeg_bytes(seed: int, size: int = 16) -> bytes:
    """A real, noisy (so not trivially small) baseline JPEG."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    """Write a raw fixture file, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


OFFLINE_METRIC = """
import json, socket
def refuse(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args}")
socket.socket.connect = refuse
socket.create_connection = refuse
from hf_tasks.metrics import load_metric
"""


def compute_metric_offline(tmp_path: Path, code: str) -> dict:
    """Run ``code`` (which prints one JSON line) in a fresh interpreter: offline flags, empty HF caches, sockets
    refused from start-up, so a metric that loads and computes there needs no network."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf_home"), "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", OFFLINE_METRIC + code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_dataset(argv: list[str]) -> None:
    from dataset_scripts.cli import main

    assert main(["build-dataset", *argv]) == 0


def subprocess_env(**extra: str) -> dict[str, str]:
    from tests.conftest import OFFLINE_ENV

    env = {**os.environ, **OFFLINE_ENV, "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(REPO), **extra}
    return env


def client_env(hub, home: Path) -> dict[str, str]:
    """Environment of a fresh user process: online against the local hub (the ``hub`` fixture), empty cache."""
    return subprocess_env(**{**hub.env, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub")})


def launch_cmd(module_args: list[str], num_processes: int = 1) -> list[str]:
    """`accelerate launch` on the CPU with 1 or N processes (gloo), the way users run multi-process training."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_processes > 1:
        cmd += ["--multi_gpu", "--main_process_port", str(_free_port())]
    return cmd + ["-m", *module_args]


def run_launch(module_args: list[str], num_processes: int = 1, timeout: int = 300, check: bool = True,
               **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(launch_cmd(module_args, num_processes), env=subprocess_env(**env), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-6000:]}")
    return proc


def interrupted_copy(full: Path, resumed: Path) -> None:
    """``resumed``: the finished run ``full`` as if it had died after its second-to-last checkpoint (the last
    checkpoint, the weights and the results gone), ready for ``--resume auto``."""
    import shutil

    shutil.copytree(full, resumed)
    checkpoints = sorted((resumed / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    shutil.rmtree(checkpoints[-1])
    for name in ("results.json", "model.safetensors"):
        (resumed / name).unlink()


def same_weights(a_dir: Path, b_dir: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    a, b = (load_file(str(Path(path) / "model.safetensors")) for path in (a_dir, b_dir))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
