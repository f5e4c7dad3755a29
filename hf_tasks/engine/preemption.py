"""Graceful stop on SIGTERM/SIGINT: finish the optimizer step, save a resumable checkpoint, exit 128 + signal.

The handler only sets a flag; the loop checks it after each optimizer step and all processes agree (a gather), so
every rank saves the same step. A second signal falls back to the default behaviour, so a user who presses Ctrl-C
twice is not kept waiting.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import torch

from hf_tasks.errors import HfTasksError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(HfTasksError):
    """Training stopped on a signal after saving a checkpoint; the exit code says which signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class StopFlag:
    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum, frame) -> None:
        self.signum = signum
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)

    def agreed(self, accelerator) -> int | None:
        """The signal any process received (all processes get the same answer), or None."""
        local = torch.tensor([self.signum or 0], device=accelerator.device)
        received = accelerator.gather(local) if accelerator.num_processes > 1 else local
        return int(received.max().item()) or None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Install the flag-setting handlers for the duration of training (main thread only)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, flag)
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
