"""Real `accelerate launch` subprocesses: 1 and 2 CPU processes, evaluation parity, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
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


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(launch_cmd(args), env=subprocess_env(), cwd=REPO, stdout=subprocess.DEVNULL,
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


@pytest.mark.parametrize("checkpointing", [[], ["--checkpoint-every", "5"]], ids=["epoch", "mid-epoch"])
def test_killed_run_resumes_to_the_same_final_metrics(odd_dataset, tmp_path, checkpointing):
    common = ["--epochs", "8", "--seed", "7", "--data.augment.preset", "keras", *checkpointing]
    reference = tmp_path / "reference"
    run_launch(train_args(odd_dataset, reference, *common))

    killed = tmp_path / "killed"
    proc = _start(train_args(odd_dataset, killed, *common))
    _wait_for_checkpoint(proc, killed)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (killed / "results.json").exists(), "the run finished before it could be killed"

    resumed = run_launch(train_args(odd_dataset, killed, *common, "--resume", "auto"))
    assert "resumed from" in resumed.stdout
    expected, got = read_json(reference / "results.json"), read_json(killed / "results.json")
    for key in ("train_runtime_s", "num_processes"):
        expected.pop(key), got.pop(key)
    assert got == expected
    from safetensors.torch import load_file

    a, b = load_file(str(reference / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
