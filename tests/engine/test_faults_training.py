"""Fault injection while training, for every task (issue 9): preemption by SIGTERM, SIGINT and SIGKILL followed by
``--resume auto`` to bitwise-identical final results; atomic, corrupt, incomplete and tampered checkpoints;
NaN/inf losses and gradients (stop with step and sample ids, or ``--skip-nonfinite``), on one process and, under
a 2-process ``accelerate launch``, on every process when one of them sees the fault.

Runs are the tiniest of each task (``tests.faults``). Signals go to real ``python -m hf_tasks.train`` processes whose
forward sleeps a little per batch, so a signal always lands mid-run; sleeping changes no number.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from hf_tasks.errors import HfTasksError
from tests.faults import TASKS, Payload, assert_same_run, checkpoint_steps, poison, task_args, train, weights
from tests.helpers import REPO, read_json, run_launch, subprocess_env

#: checkpoint every 3 optimizer steps of 18 (classification), 14 (detection), 22 (captioning)
COMMON = {"classification": ["--epochs", "3"], "detection": ["--epochs", "2"], "captioning": ["--epochs", "2"]}
PACED_TRAIN = """
import dataclasses, sys, time
import hf_tasks.registry as registry
from hf_tasks.registry import get_task
from hf_tasks.train import main

def paced(name):
    spec = get_task(name)
    def forward(model, batch):
        time.sleep(0.1)
        return spec.forward(model, batch)
    return dataclasses.replace(spec, forward=forward)

registry.get_task = paced
sys.exit(main(sys.argv[1:]))
"""


def common(task: str) -> list[str]:
    return [*COMMON[task], "--checkpoint-every", "3"]


def start(task, fault_data, out, log, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", PACED_TRAIN, *task_args(task, fault_data[task], out, *common(task), *extra)]
    return subprocess.Popen(cmd, env=subprocess_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True)


def wait_for_checkpoint_after(proc: subprocess.Popen, out, step: int, log_path, timeout: float = 120.0) -> int:
    """Poll until a complete checkpoint newer than ``step`` exists; return its step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newer = [s for s in checkpoint_steps(out) if s > step]
        if newer:
            return newer[-1]
        if proc.poll() is not None:
            raise AssertionError(f"run ended (exit {proc.returncode}) before a checkpoint after step {step}:\n"
                                 f"{log_path.read_text()[-3000:]}")
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint after step {step} within {timeout}s")


def stop_with(signum: int, task, fault_data, out, tmp_path, after: int, *extra: str) -> int:
    """Start (or resume) a run, signal it once a checkpoint newer than ``after`` exists; return the step it
    stopped at (the newest complete checkpoint)."""
    log_path = tmp_path / f"{signal.Signals(signum).name}.log"
    with open(log_path, "w") as log:
        proc = start(task, fault_data, out, log, *extra)
        wait_for_checkpoint_after(proc, out, after, log_path)
        proc.send_signal(signum)
        proc.wait(timeout=120)
    stderr = log_path.read_text()
    assert not (out / "results.json").exists(), "the run finished before the signal"
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        return checkpoint_steps(out)[-1]
    assert proc.returncode == 128 + signum, stderr[-3000:]
    name = signal.Signals(signum).name
    match = re.search(rf"error: stopped by {name} at step (\d+); checkpoint saved in (\S+): continue with "
                      r"--resume auto", stderr)
    assert match and match.group(2) == str(out / "checkpoints"), stderr[-3000:]
    stopped = int(match.group(1))
    assert stopped > after and checkpoint_steps(out)[-1] == stopped  # the step it stopped at is saved, complete
    assert "Traceback" not in stderr
    return stopped


@pytest.mark.parametrize("task", TASKS)
def test_sigterm_sigint_sigkill_then_resume_gives_the_uninterrupted_results(task, fault_data, tmp_path, capsys):
    """SIGTERM and SIGINT save a checkpoint at the current step and exit 128+signal; SIGKILL loses only the steps
    after the newest complete checkpoint; ``--resume auto`` after all three ends exactly like an uninterrupted run."""
    reference = tmp_path / "reference"
    train(task, fault_data[task], reference, *common(task))
    out = tmp_path / "run"
    at_term = stop_with(signal.SIGTERM, task, fault_data, out, tmp_path, after=0)
    at_int = stop_with(signal.SIGINT, task, fault_data, out, tmp_path, at_term, "--resume", "auto")
    at_kill = stop_with(signal.SIGKILL, task, fault_data, out, tmp_path, at_int, "--resume", "auto")
    capsys.readouterr()
    train(task, fault_data[task], out, *common(task), "--resume", "auto")
    assert f"resumed from {out / 'checkpoints' / f'checkpoint-{at_kill}'} " in capsys.readouterr().out
    assert_same_run(reference, out)


# ------------------------------------------------------------------------------------------- checkpoint files


@pytest.fixture(scope="module")
def short_runs(fault_data, tmp_path_factory):
    """Per task, a finished 4-step run with complete checkpoints at steps 2 and 4 (built on first use)."""
    cache = {}

    def get(task: str):
        if task not in cache:
            cache[task] = tmp_path_factory.mktemp(task) / "run"
            train(task, fault_data[task], cache[task], *SHORT)
            assert checkpoint_steps(cache[task]) == [2, 4]
        return cache[task]

    return get


SHORT = ["--max-steps", "4", "--checkpoint-every", "2", "--keep-checkpoints", "3"]


def copy_run(short_runs, task: str, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(short_runs(task), out)
    return out


@pytest.mark.parametrize("task", TASKS)
def test_resume_auto_skips_incomplete_checkpoints_and_rotation_cleans_them(task, short_runs, fault_data, tmp_path,
                                                                           capsys):
    """A checkpoint without its COMPLETE marker (interrupted while saving) and a stale temporary folder are never
    resumed from: --resume auto takes the newest complete one and redoes the lost steps identically."""
    out = copy_run(short_runs, task, tmp_path)
    (out / "checkpoints" / "checkpoint-4" / "COMPLETE").unlink()
    shutil.copytree(out / "checkpoints" / "checkpoint-4", out / "checkpoints" / ".tmp-checkpoint-6")
    for name in ("results.json", "model.safetensors"):
        (out / name).unlink()
    capsys.readouterr()
    train(task, fault_data[task], out, *SHORT, "--resume", "auto")
    assert f"resumed from {out / 'checkpoints' / 'checkpoint-2'} " in capsys.readouterr().out
    assert_same_run(short_runs(task), out)
    assert checkpoint_steps(out) == [2, 4] and not list((out / "checkpoints").glob(".tmp-*"))


DAMAGE = {  # how the newest checkpoint is damaged, and the file the report must name
    "truncated-weights": ("model.safetensors", lambda f: f.write_bytes(f.read_bytes()[:1000])),
    "garbled-state": ("trainer_state.json", lambda f: f.write_text("{not json")),
    "empty-state": ("trainer_state.json", lambda f: f.write_text("")),
    "state-without-step": ("trainer_state.json", lambda f: f.write_text('{"epoch": 1, "batches_done": 0}')),
    "empty-rng-states": ("random_states_0.pkl", lambda f: f.write_bytes(b"")),
    "truncated-rng-states": ("random_states_0.pkl", lambda f: f.write_bytes(f.read_bytes()[:200])),
    "empty-custom-state": ("custom_checkpoint_0.pkl", lambda f: f.write_bytes(b"")),
    "truncated-optimizer": ("optimizer.bin", lambda f: f.write_bytes(f.read_bytes()[:300])),
}


@pytest.mark.parametrize("task, damage", [(task, "truncated-weights") for task in TASKS] +
                         [("classification", damage) for damage in DAMAGE if damage != "truncated-weights"])
def test_a_damaged_checkpoint_is_named_and_the_previous_one_resumed(task, damage, short_runs, fault_data, tmp_path,
                                                                    capsys):
    """Every file of a checkpoint is checked before use: --resume auto names the damaged file, passes over that
    checkpoint and continues from the previous complete one to the uninterrupted run's results; naming the damaged
    checkpoint explicitly is a one-line error."""
    out = copy_run(short_runs, task, tmp_path)
    checkpoint = out / "checkpoints" / "checkpoint-4"
    name, damage_file = DAMAGE[damage]
    damage_file(checkpoint / name)
    with pytest.raises(HfTasksError, match=re.escape(f"checkpoint {checkpoint} is corrupt: {name}")):
        train(task, fault_data[task], out, *SHORT, "--resume", str(checkpoint))
    train(task, fault_data[task], out, *SHORT, "--resume", "auto")
    printed = capsys.readouterr().out
    assert f"--resume auto: passing over checkpoint {checkpoint}: {name}" in printed
    assert f"resumed from {out / 'checkpoints' / 'checkpoint-2'} " in printed
    assert_same_run(short_runs(task), out)


@pytest.mark.parametrize("task", TASKS)
def test_a_tampered_pickle_stops_the_resume_and_is_never_loaded(task, short_runs, fault_data, tmp_path):
    """A pickle that would run code is never loaded: the resume stops naming the file (no fallback: someone wrote
    it), and nothing is rotated or overwritten."""
    out = copy_run(short_runs, task, tmp_path)
    checkpoint = out / "checkpoints" / "checkpoint-4"
    marker = tmp_path / "PWNED"
    torch.save(Payload(str(marker)), checkpoint / "custom_checkpoint_0.pkl")
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    with pytest.raises(HfTasksError) as err:
        train(task, fault_data[task], out, "--max-steps", "6", "--checkpoint-every", "2", "--resume", "auto")
    assert (f"checkpoint {checkpoint} is corrupt or unsafe: custom_checkpoint_0.pkl cannot be loaded with "
            "weights_only=True") in str(err.value)
    assert not marker.exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # nothing rotated or overwritten


# --------------------------------------------------------------------------------------------- numerical faults


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind, what", [("nan", "loss"), ("inf", "loss"), ("inf-gradient", "gradient norm")])
def test_non_finite_loss_or_gradient_stops_with_step_and_sample_ids(task, kind, what, fault_data, tmp_path,
                                                                     monkeypatch):
    """The 3rd batch's loss (or gradient) is NaN/inf: the run stops at step 3 naming the samples of that batch,
    keeps the last good checkpoint (step 2, finite weights) and writes nothing after the fault."""
    poison(monkeypatch, task, 3, kind)
    out = tmp_path / "run"
    with pytest.raises(HfTasksError) as err:
        train(task, fault_data[task], out, "--checkpoint-every", "2", "--epochs", "1")
    ids = re.search(rf"non-finite {what} at step 3 \(epoch 0, sample ids \[(\d+(?:, \d+)*)\] on process 0\); the "
                    rf"last complete checkpoint in {re.escape(str(out / 'checkpoints'))} is kept", str(err.value))
    assert ids, str(err.value)
    batch_size = 2 if task == "detection" else 4
    assert len(ids.group(1).split(", ")) == batch_size
    assert checkpoint_steps(out, complete_only=False) == [2]
    assert read_json(out / "checkpoints" / "checkpoint-2" / "trainer_state.json")["global_step"] == 2
    assert all(torch.isfinite(w).all() for w in weights(out / "checkpoints" / "checkpoint-2" / "model.safetensors")
               .values())
    for name in ("model.safetensors", "results.json"):
        assert not (out / name).exists(), name


@pytest.mark.parametrize("task", TASKS)
def test_skip_nonfinite_drops_the_step_and_never_saves_non_finite_weights(task, fault_data, tmp_path, monkeypatch,
                                                                          capsys):
    poison(monkeypatch, task, 3, "inf-gradient")
    out = tmp_path / "run"
    results = train(task, fault_data[task], out, "--max-steps", "4", "--skip-nonfinite")
    assert results["train_skipped_steps"] == 1 and results["train_steps"] == 4
    assert "skipping the step: non-finite gradient norm at step 3 (epoch 0, sample ids [" in capsys.readouterr().out
    saved = [out / "model.safetensors", *sorted(out.glob("checkpoints/*/model.safetensors"))]
    assert len(saved) >= 3
    for path in saved:
        assert all(torch.isfinite(w).all() for w in weights(path).values()), path


POISON_ON_PROCESS_1 = """
import dataclasses, sys
import hf_tasks.registry as registry
from accelerate import PartialState
from hf_tasks.registry import get_task
from hf_tasks.train import main

def poisoned(name):
    spec, calls = get_task(name), [0]
    def forward(model, batch):
        calls[0] += 1
        out = spec.forward(model, batch)
        if calls[0] == 2 and PartialState().process_index == 1:
            return {"loss": out["loss"] * float("nan")}
        return out
    return dataclasses.replace(spec, forward=forward)

registry.get_task = poisoned
sys.exit(main(sys.argv[1:]))
"""


def test_non_finite_loss_on_one_process_stops_every_process(fault_data, tmp_path):
    """`accelerate launch` with 2 processes: process 1's 2nd batch has a NaN loss. Both processes stop at step 2
    (process 1 naming its samples), keeping checkpoint-1; no process trains on or saves anything after it."""
    (tmp_path / "poison_process_1.py").write_text(POISON_ON_PROCESS_1)
    out = tmp_path / "run"
    args = task_args("classification", fault_data["classification"], out, "--epochs", "1", "--checkpoint-every", "1")
    proc = run_launch(["poison_process_1", *args], num_processes=2, check=False, timeout=300,
                      PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path}")
    assert proc.returncode != 0
    assert re.search(r"error: non-finite loss at step 2 \(epoch 0, sample ids \[\d+(, \d+)*\] on process 1\); the "
                     r"last complete checkpoint in \S+ is kept", proc.stderr), proc.stderr[-3000:]
    assert "error: non-finite loss at step 2 (epoch 0, a batch on another process)" in proc.stderr
    assert checkpoint_steps(out, complete_only=False) == [1]
    assert not (out / "model.safetensors").exists() and not (out / "results.json").exists()
