"""Real `accelerate launch` subprocesses: 1 and 2 CPU processes, evaluation parity, kill and resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import build_dataset, launch_cmd, read_json, run_launch, subprocess_env, REPO

TINY = ["--model.name", "small_cnn", "--model.pretrained", "false", "--data.image_size", "32",
        "--model.config", "{hidden_sizes: [8, 16], convs_per_stage: 1, dropout: 0.1}"]


@pytest.fixture(scope="module")
def odd_dataset(tmp_path_factory):
    """Shapes data whose test split (size 11) does not divide by the world size 2."""
    out = tmp_path_factory.mktemp("odd") / "ds"
    build_dataset(["shapes", "--task", "classification", "--num-images", "55", "--image-size", "32",
                   "--classes", "circle,square", "--test-fraction", "0.2", "--val-fraction", "0.1",
                   "--seed", "3", "--out", str(out)])
    import datasets

    sizes = {k: len(v) for k, v in datasets.load_from_disk(str(out)).items()}
    assert sizes["test"] % 2 == 1, sizes
    return out


def train_args(dataset, out, *extra: str) -> list[str]:
    return ["hf_tasks.train", "--data.dataset", str(dataset), "--output-dir", str(out), "--batch-size", "4",
            *TINY, *extra]


def test_launch_two_steps_single_process(odd_dataset, tmp_path):
    proc = run_launch(train_args(odd_dataset, tmp_path / "run", "--max-steps", "2"))
    results = read_json(tmp_path / "run" / "results.json")
    assert results["train_steps"] == 2 and results["num_processes"] == 1
    assert "test_accuracy" in results and (tmp_path / "run" / "model.safetensors").is_file()
    assert "Traceback" not in proc.stderr


def test_two_processes_train_and_evaluate_exactly_like_one(odd_dataset, tmp_path):
    run_launch(train_args(odd_dataset, tmp_path / "run", "--max-steps", "2"), num_processes=2)
    results = read_json(tmp_path / "run" / "results.json")
    assert results["num_processes"] == 2 and results["train_steps"] == 2
    import datasets

    n_test = len(datasets.load_from_disk(str(odd_dataset))["test"])
    assert results["test_num_samples"] == n_test  # no sample dropped or counted twice
    metrics = {}
    for n in (1, 2):
        out = tmp_path / f"metrics_{n}.json"
        run_launch(["hf_tasks", "evaluate", "--model", str(tmp_path / "run"), "--dataset", str(odd_dataset),
                    "--split", "test", "--batch-size", "4", "--output", str(out)], num_processes=n)
        metrics[n] = read_json(out)
    assert metrics[1]["test_num_samples"] == n_test
    assert metrics[1] == metrics[2]


def test_bad_override_is_one_clear_error(odd_dataset, tmp_path):
    proc = run_launch(train_args(odd_dataset, tmp_path / "run", "--optim.lrr", "0.1"), check=False)
    assert proc.returncode != 0
    assert "error: unknown key 'optim.lrr'; did you mean 'optim.lr'?" in proc.stderr
    # accelerate's launcher may add its own CalledProcessError traceback; none comes from our code
    assert f'File "{REPO / "hf_tasks"}' not in proc.stderr


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=subprocess_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_checkpoint(proc: subprocess.Popen, root, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(root.glob("checkpoints/checkpoint-*/COMPLETE")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before its first checkpoint:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def reference_runs(odd_dataset, tmp_path_factory):
    """Uninterrupted runs, keyed by checkpointing mode, that interrupted runs must reproduce exactly."""
    cache = {}

    def get(mode: str, common: list[str]):
        if mode not in cache:
            out = tmp_path_factory.mktemp("reference") / mode
            run_launch(train_args(odd_dataset, out, *common))
            cache[mode] = out
        return cache[mode]

    return get


def _assert_same_run(reference, resumed) -> None:
    expected, got = read_json(reference / "results.json"), read_json(resumed / "results.json")
    for key in ("train_runtime_s", "num_processes", "dataset"):
        expected.pop(key), got.pop(key)
    assert got == expected
    from safetensors.torch import load_file

    a, b = load_file(str(reference / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("checkpointing", [[], ["--checkpoint-every", "5"]], ids=["epoch", "mid-epoch"])
def test_killed_run_resumes_to_the_same_final_metrics(odd_dataset, tmp_path, checkpointing, reference_runs):
    """SIGKILL (nothing runs after it) loses at most the work since the last complete checkpoint."""
    common = ["--epochs", "8", "--seed", "7", "--data.augment.preset", "keras", *checkpointing]
    reference = reference_runs("mid" if checkpointing else "epoch", common)
    killed = tmp_path / "killed"
    proc = _start(launch_cmd(train_args(odd_dataset, killed, *common)))
    _wait_for_checkpoint(proc, killed)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (killed / "results.json").exists(), "the run finished before it could be killed"

    resumed = run_launch(train_args(odd_dataset, killed, *common, "--resume", "auto"))
    assert "resumed from" in resumed.stdout
    _assert_same_run(reference, killed)


def test_sigterm_saves_a_checkpoint_then_resume_matches(odd_dataset, tmp_path, reference_runs):
    """SIGTERM to the training process: it finishes the step, checkpoints it, exits 143, and resumes exactly."""
    common = ["--epochs", "8", "--seed", "7", "--data.augment.preset", "keras", "--checkpoint-every", "5"]
    reference = reference_runs("mid", common)
    stopped = tmp_path / "stopped"
    proc = _start([sys.executable, "-m", *train_args(odd_dataset, stopped, *common)])
    _wait_for_checkpoint(proc, stopped)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    match = re.search(r"error: stopped by SIGTERM at step (\d+); checkpoint saved", stderr)
    assert match, stderr[-3000:]
    assert (stopped / "checkpoints" / f"checkpoint-{match.group(1)}" / "COMPLETE").is_file()
    assert not (stopped / "results.json").exists()
    run_launch(train_args(odd_dataset, stopped, *common, "--resume", "auto"))
    _assert_same_run(reference, stopped)
