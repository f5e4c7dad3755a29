"""The Accelerator of a run (configured in one place) and the process-level settings a run applies to itself."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hf_tasks.config import TrainConfig

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # the largest value glibc accepts
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory(device_type: str) -> bool:
    """Tell glibc's malloc to keep the memory freed after each step for reuse, on CPU runs; return whether it did.

    By default glibc hands the freed tensor memory back to the OS (heap trimming, mmap for large blocks) and the next
    step page-faults it back in inside the conv and batch-norm kernels: ~6-10 % of a CPU YOLO epoch
    (``benchmarks/RESULTS.md``, YOLO parity). Both thresholds are set, because setting either one switches off glibc's
    dynamic thresholds. Nothing is changed on a GPU run, off glibc, or when the user set any ``MALLOC_*`` variable
    (their own malloc tuning wins)."""
    if device_type != "cpu" or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not done:
        logger.warning("glibc refused the malloc thresholds; CPU steps may page-fault freed memory back in")
    return done


def make_accelerator(cfg: TrainConfig):
    """The only place an Accelerator is configured."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    return Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=cfg.report_to or None,
        project_config=ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=str(Path(cfg.output_dir) / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
