"""Fair A/B timing on a shared machine: every run in its own fresh subprocess, the order alternated (ABBA ABBA…).

Used by the benchmarks that compare our code with a reference (``yolo_parity``, ``trainer_throughput``): a second
run in the same process finds warm allocator/oneDNN/file caches, and a background job on the shared cores slows
whatever is running at the time; alternating fresh processes spreads both over the two sides evenly.

A child prints one line ``RESULT {json}`` last; ``run_child`` returns that dict.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "YOLO_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
RESULT = "RESULT "


def abba(first: str, second: str, repeats: int) -> list[tuple[int, str]]:
    """``(repeat, side)`` in the order first, second, second, first, first, second, …"""
    order = []
    for repeat in range(repeats):
        pair = (first, second) if repeat % 2 == 0 else (second, first)
        order += [(repeat, side) for side in pair]
    return order


def child_env(threads: int, cpu_only: bool = True, **extra: str) -> dict[str, str]:
    """The same environment for both sides: offline, ``threads`` intra-op threads, the GPU hidden when CPU-only."""
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", **extra}
    if cpu_only:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def busy_cpu_s() -> float:
    """CPU seconds spent by every process on the machine so far (user + nice + system + irq), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(argv: list[str], env: dict[str, str], log: Path | None = None) -> dict:
    """Run ``python argv…`` and return its ``RESULT`` dict; its full output goes to ``log`` (kept for inspection).

    Adds ``other_cpu_s``: CPU seconds that other processes (other people's jobs) used while it ran — the noise.
    """
    busy, own = busy_cpu_s(), children_cpu_s()
    proc = subprocess.run([sys.executable, *argv], env=env, cwd=REPO, capture_output=True, text=True)
    other = (busy_cpu_s() - busy) - (children_cpu_s() - own)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{proc.stdout}\nother_cpu_s {other:.1f}\n--- stderr ---\n{proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{argv} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return {**json.loads(lines[-1][len(RESULT):]), "other_cpu_s": round(other, 1)}


def run_alternating(script: str, argv: list[str], sides: tuple[str, str], repeats: int, env: dict[str, str],
                    logs: Path, tag: str = "") -> list[dict]:
    """``script argv… --child SIDE --repeat R`` for every (R, SIDE) of ``abba(*sides, repeats)``, printing each
    result line as it comes; logs in ``logs/{tag}{side}_{repeat}.log``."""
    runs = []
    for repeat, side in abba(*sides, repeats):
        child_argv = [script, *argv, "--child", side, "--repeat", str(repeat)]
        runs.append(run_child(child_argv, env, log=logs / f"{tag}{side}_{repeat}.log"))
        print(json.dumps(runs[-1]), flush=True)
    return runs


def step_clock(synchronize=None) -> list[float]:
    """``perf_counter`` after every optimizer step of any optimizer in this process (a global post-step hook), after
    ``synchronize()`` when given (a GPU step is only done when the device says so)."""
    import time

    from torch.optim.optimizer import register_optimizer_step_post_hook

    stamps: list[float] = []

    def stamp(*_):
        if synchronize is not None:
            synchronize()
        stamps.append(time.perf_counter())

    register_optimizer_step_post_hook(stamp)
    return stamps


def emit(result: dict) -> None:
    """What a child prints last."""
    print(RESULT + json.dumps(result), flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version()}
