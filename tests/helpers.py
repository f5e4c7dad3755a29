"""Helpers shared by tests: run CLIs in-process or as `accelerate launch` subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
