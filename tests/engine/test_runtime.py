"""The malloc setting CPU training applies to itself (hf_tasks.engine.accelerator): when it applies, and that it stops the heap
from being handed back to the OS and faulted in again on every step."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from hf_tasks.engine import accelerator as runtime
from tests.helpers import subprocess_env

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="glibc malloc only")

STEPS = """
import ctypes, resource, sys
from hf_tasks.engine.accelerator import keep_freed_memory
applied = keep_freed_memory(sys.argv[1])
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
def step():  # 400 blocks of 100 kB on the heap, written, then freed together like a training step's activations
    blocks = [libc.malloc(100_000) for _ in range(400)]
    for block in blocks:
        ctypes.memset(block, 1, 100_000)
    for block in reversed(blocks):
        libc.free(block)
step()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def page_faults(device_type: str, **env: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", STEPS, device_type], env=subprocess_env(**env), check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0] == "True", int(out[1])


@glibc_only
def test_cpu_runs_keep_freed_memory_instead_of_faulting_it_back():
    applied, with_setting = page_faults("cpu")
    skipped, without = page_faults("cuda")  # not a CPU run: glibc left at its defaults
    assert applied and not skipped
    # 10 steps x 40 MB trimmed and touched again is ~100k faults of 4 kB; kept, the steps reuse the same pages.
    assert without > 50_000
    assert with_setting < 1_000


@glibc_only
def test_a_users_own_malloc_tuning_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert runtime.keep_freed_memory("cpu") is False
    applied, _ = page_faults("cpu", MALLOC_TRIM_THRESHOLD_="131072")
    assert applied is False


def test_gpu_runs_are_left_alone():
    assert runtime.keep_freed_memory("cuda") is False
    assert runtime.keep_freed_memory("mps") is False
